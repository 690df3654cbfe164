/*
 * linear.h — nn.Linear with forward and backward, and the two PEFT methods that live inside
 * a linear layer: LoRA (a low-rank update added to the output) and IA3 (a learned scaling of
 * the output, or of the input for feed-forward layers).
 *
 * The math here is the one in PEFT's layer classes (peft/tuners/lora/layer.py Linear.forward,
 * peft/tuners/ia3/layer.py Linear.forward):
 *     LoRA:        y = x W^T + b + scaling * (dropout(x) A^T) B^T
 *     IA3 output:  y = (x W^T + b) * l          (l has `out` entries)
 *     IA3 input:   y = (x * l) W^T + b          (l has `in` entries; PEFT's feedforward case)
 *     DoRA:        y = x W^T + b + (k - 1) * (xd W^T) + k * scaling * (xd A^T) B^T
 *                  with xd = dropout(x) and k = m / ||W + scaling B A|| per output row
 * DoRA is peft/tuners/lora/dora.py DoraLinearLayer.forward with variants.py's dropout rule:
 * without dropout (or in eval) xd = x and the line above is k (x W^T + scaling x A^T B^T) + b,
 * the bias is not rescaled. The row norm is detached as in PEFT (DoRA paper §4.3): backward
 * treats it as a constant, so the A and B gradients are PEFT's, not the exact derivative of the
 * forward; the magnitude gradient is exact.
 * A Conv2d whose kernel equals its stride (CLIP's patch embedding) is the same linear on
 * flattened patches, so LoRA on it uses A (r, Cin*P*P) and B (out, r): PEFT's conv lora_A
 * (r, Cin, P, P) and lora_B (out, r, 1, 1) hold the same numbers.
 *
 * The layer does not own its tensors: the base weights belong to the model (possibly a
 * read-only mapping), the LoRA/IA3 tensors and all gradients to whoever attached them.
 * A NULL gradient pointer means "frozen": backward then skips that product entirely.
 *
 * Usage per training step: nn_linear_forward(..., train = 1) saves what backward needs into
 * the step arena (the layer keeps pointers to it until the next forward); nn_linear_backward
 * is then called once with the same x. Forward with train = 0 saves nothing and applies no
 * dropout (inference, evaluation).
 */
#ifndef MMT_NN_LINEAR_H
#define MMT_NN_LINEAR_H

#include <stdint.h>

#include "core/arena.h"
#include "core/status.h"
#include "ops/ops.h"

typedef struct mmt_lora {
    int64_t r;
    float scaling;        /* lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA */
    float dropout;        /* probability in [0, 1) */
    float *a, *b;         /* A (r, in), B (out, r) */
    float *da, *db;       /* their gradients, NULL when frozen */
    uint64_t dropout_seed;/* set by the caller before each forward; backward reuses it */
    float *magnitude;     /* DoRA's m (out); NULL: plain LoRA */
    float *dmagnitude;    /* its gradient, NULL when frozen */
    /* saved by a training forward (step arena) */
    float *saved_xa;      /* dropout(x) A^T (M, r) */
    float *saved_k;       /* DoRA: m / ||W + scaling B A|| (out) */
    float *saved_inv_norm;/* DoRA: 1 / ||W + scaling B A|| (out) */
    float *saved_z;       /* DoRA: xd W^T + scaling xa B^T (M, out), for the magnitude gradient */
} mmt_lora;

typedef enum mmt_ia3_mode { MMT_IA3_NONE, MMT_IA3_OUTPUT, MMT_IA3_INPUT } mmt_ia3_mode;

/* Rows of a mixed batch that one adapter owns (inference only): the rows of sequences
 * [seq0, seq0 + n_seq) of the layer's input get that adapter's LoRA product added, or its IA3
 * scaling. The tensors are the adapter's, shared read-only by every batch that uses it. */
typedef struct mmt_linear_group {
    int64_t seq0, n_seq;
    const mmt_lora *lora;     /* plain LoRA (not DoRA): a, b, r, scaling are read; NULL: none */
    const float *ia3;         /* NULL: none */
    mmt_ia3_mode ia3_mode;
} mmt_linear_group;

/* A frozen fp32 weight's GEMM panels, packed once for inference (ops.h matmul_pack): used by
 * the base product while the layer's w is still the w they were packed from, the op table is
 * the one that packed them and the weight has no gradient. */
typedef struct mmt_packed_linear {
    const float *w;
    const float *panels;
    const struct mmt_ops *ops;
} mmt_packed_linear;

/* A model's prepacked linears, made in two walks over the same weights: the first (items
 * NULL) counts each weight nn_pack_set_add is given, nn_pack_set_alloc allocates, the second
 * packs each and returns its entry. */
typedef struct mmt_pack_set {
    const struct mmt_ops *ops;
    mmt_packed_linear *items; /* owned */
    float *panels;            /* owned */
    int64_t n, floats;        /* counted by the first walk */
    int64_t filled, offset;   /* the second walk's progress */
} mmt_pack_set;

/* First walk: counts w (out, in) and returns NULL; second: packs it, returns its entry. */
const mmt_packed_linear *nn_pack_set_add(mmt_pack_set *s, const float *w, int64_t out, int64_t in);
/* Between the walks: allocates what the first counted. Nothing to pack (no fp32 weight, or a
 * table that does not pack) leaves items NULL, and the second walk need not run. */
mmt_status nn_pack_set_alloc(mmt_pack_set *s);
void nn_pack_set_free(mmt_pack_set *s);

typedef struct mmt_linear {
    int64_t in, out;
    const float *w;       /* (out, in); NULL when the weight is kept quantized (qw) */
    /* A frozen weight kept quantized (ops.h mmt_qmat), or NULL. Inference with an int8 weight
     * that has its packed copy quantizes x per row and multiplies in integers (s8_matmul_fwd);
     * training, and NF4 always, multiply x by the weight dequantized panel by panel
     * (qmat_matmul_fwd), so backward's dx = dy deq(W) is the exact gradient of that forward.
     * A quantized weight cannot be trained (dw NULL) nor carry DoRA. */
    const mmt_qmat *qw;
    const mmt_packed_linear *packed; /* NULL: none */
    const float *b;       /* (out) or NULL */
    float *dw, *db;       /* gradients, NULL when frozen */
    mmt_lora *lora;       /* NULL: none */
    mmt_ia3_mode ia3_mode;
    float *ia3, *dia3;    /* (out) for OUTPUT, (in) for INPUT; dia3 NULL when frozen */
    /* saved by a training forward (step arena) */
    float *saved_ia3;     /* OUTPUT: x W^T + b before scaling (M, out); INPUT: x * l (M, in) */
    /* Mixed batches (inference): the base product runs once for all rows, then each group's
     * adapter on its own rows; group_batch sequences in all (the input's M rows are
     * group_batch equal runs of M / group_batch). Set for one forward by the run context;
     * n_groups 0: none. A layer with groups has no lora / ia3 of its own. */
    const mmt_linear_group *groups;
    int64_t n_groups, group_batch;
} mmt_linear;

/* y (M, out) = layer(x (M, in)). Scratch and saved tensors come from `arena`. */
mmt_status nn_linear_forward(mmt_linear *l, const mmt_ops *ops, mmt_arena *arena, float *y,
                             const float *x, int64_t M, int train);

/* nn_linear_forward of n layers over the same x (M, in), ys[j] = layer j (x): when every
 * one multiplies in integers (inference, int8 weights, no IA3 input scaling), x is quantized
 * once for all of them (attention's q, k, v); the results are the bits of n separate calls.
 * With train = 0 the arena is left as it was (inference keeps nothing). */
mmt_status nn_linear_forward_shared(mmt_linear *const *ls, int n, const mmt_ops *ops, mmt_arena *arena,
                                    float *const *ys, const float *x, int64_t M, int train);

/* Gradients for the last training forward on x: dx (M, in) += (NULL: not needed), and the
 * layer's non-NULL parameter gradients +=. Scratch comes from `arena` and is given back
 * before returning. x may be NULL when nn_linear_reads_input(l) is 0. */
mmt_status nn_linear_backward(mmt_linear *l, const mmt_ops *ops, mmt_arena *arena, float *dx,
                              const float *dy, const float *x, int64_t M);

/* DoRA's row norms ||W + scaling B A|| (out), summed in double. A DoRA layer's base weight
 * must stay frozen (dw NULL): PEFT never trains it, and its gradient would need the norm. */
void nn_dora_row_norms(const mmt_linear *l, double *norms);

/* 1 when backward has anything to do besides dx. */
int nn_linear_has_grads(const mmt_linear *l);

/* 1 when backward reads the forward's input x: a trained weight, a trained LoRA A, DoRA, or
 * a trained IA3 input scaling. A frozen linear (or one whose LoRA trains only B) needs only
 * dy and its weight, so a training forward need not keep x for it. */
int nn_linear_reads_input(const mmt_linear *l);

/* The dropout seed of one linear: a mix of the step's seed and the layer's place (a, b). */
static inline uint64_t nn_dropout_seed(uint64_t seed, uint64_t a, uint64_t b) {
    uint64_t z = seed ^ (a * 0xd6e8feb86659fd93ull) ^ (b * 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 32)) * 0xd6e8feb86659fd93ull;
    return z ^ (z >> 32);
}

/* Keep-or-drop of element i under a dropout seed: a counter-based hash, so backward (and a
 * recomputed forward under gradient checkpointing) sees the same mask without storing it. */
static inline int nn_dropout_keep(uint64_t seed, uint64_t i, float p) {
    uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0) >= (double)p;
}

#endif
