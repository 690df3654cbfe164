/*
 * block.h — the pre-LN transformer encoder block with forward, hand-written backward and
 * recomputation, shared by every model family (CLIP's text and vision towers now; the
 * captioner's towers next), so that no family carries a copy of it.
 *
 *     x_mid = x_in + adapter_attn(out_proj(attention(q, k, v of layernorm1(x_in))))
 *     x_out = x_mid + adapter_mlp(fc2(act(fc1(layernorm2(x_mid)))))
 *
 * as transformers' CLIPEncoderLayer (modeling_clip.py), with PEFT's pieces where they sit:
 * LoRA / DoRA / IA3 inside the six linears (nn/linear.h), bottleneck adapters on out_proj's
 * and fc2's outputs before each residual add (Houlsby's places, nn/bottleneck.h), and prefix
 * tuning's learned key/value rows in front of the keys and values (PEFT's
 * past_key_values): with V prefix rows every query attends to all of them and, when causal,
 * to the sequence causally (ops attention_kv with causal_offset V).
 *
 * The block does not own its tensors: base weights belong to the model, adapters to whoever
 * attached them, saved activations to the arena a training forward draws from (they stay
 * valid until that arena is rewound). Gradient checkpointing = forward with train into a
 * scratch arena, rewind, and run forward again into scratch right before backward; a
 * layer's LoRA dropout masks come from (seed, index), so the recomputation sees the same.
 */
#ifndef MMT_NN_BLOCK_H
#define MMT_NN_BLOCK_H

#include <stdint.h>

#include "core/arena.h"
#include "core/status.h"
#include "nn/bottleneck.h"
#include "nn/linear.h"
#include "ops/ops.h"

typedef enum mmt_block_act { MMT_BLOCK_QUICK_GELU, MMT_BLOCK_GELU } mmt_block_act;

typedef struct mmt_block_config {
    int64_t hidden, intermediate, heads;
    float eps;          /* layer norm epsilon */
    mmt_block_act act;
    int causal;         /* mask keys after the query (text towers, decoders) */
    /* post-LN (BERT, GIT's decoder) instead of pre-LN:
     *     x_mid = layernorm1(x_in + adapter_attn(out_proj(attention(q, k, v of x_in))))
     *     x_out = layernorm2(x_mid + adapter_mlp(fc2(act(fc1(x_mid)))))
     * (ln1 = attention.output.LayerNorm, ln2 = output.LayerNorm in BERT's names) */
    int post_ln;
    /* causal blocks only: the first n_bidir positions attend to each other both ways (and to
     * no later position); the others causally to everything before them (GIT: image tokens,
     * then text). 0: plainly causal. With prefix rows the block is counted in keys from the
     * first prefix row, as transformers does (block.c bidir_q0 has the exact rule). */
    int64_t n_bidir;
} mmt_block_config;

/* The frozen weights of one block as a model stores them ([out, in] linears). */
typedef struct mmt_block_weights {
    const float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *out_w, *out_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    /* The linears kept quantized (their *_w is then NULL), or NULL: q, k, v, out, fc1, fc2. */
    const mmt_qmat *qw[6];
    /* Their prepacked panels (linear.h), or NULL. */
    const mmt_packed_linear *packed[6];
} mmt_block_weights;

/* Keys and values of the positions a sequence has seen, for decoding one step at a time:
 * k and v (B, cap, C) each, rows [0, len) of every sequence filled. A layer's prefix rows,
 * when it has them, are the cache's first n_prefix rows. The run context owns the memory. */
typedef struct mmt_kv_cache {
    float *k, *v;
    int64_t cap, len;
    /* Rows of different lengths (continuous batching: sequences that started at different
     * steps share the cache). NULL: every row holds len positions. Otherwise row b holds
     * row_len[b] >= 1 positions (the caller's array, shared by every layer's cache): a
     * forward must then bring one position per row (T = 1), which goes in at row_len[b] and
     * attends to the row's row_len[b] + 1 keys; the caller advances row_len after the last
     * layer, and len is left alone. */
    const int64_t *row_len;
} mmt_kv_cache;

/* A cache of cap positions for B sequences of C channels, from `ar`; len 0, row_len NULL. */
mmt_status nn_kv_cache_init(mmt_kv_cache *cache, mmt_arena *ar, int64_t B, int64_t cap, int64_t C);

typedef struct mmt_block {
    mmt_linear q, k, v, o, fc1, fc2;
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    float *dln1_w, *dln1_b, *dln2_w, *dln2_b; /* NULL: frozen */
    /* bottleneck adapters on out_proj's and fc2's outputs, before each residual add (NULL: none;
     * the adapter that attached them owns them) */
    mmt_bottleneck *adapter_attn, *adapter_mlp;
    /* saved by forward: x_in (N, C) is set by the caller; the rest by a training forward */
    float *x_in, *mean1, *rstd1, *h1, *q_out, *k_out, *v_out, *att, *a, *x_mid, *mean2, *rstd2, *h2, *f, *g;
    /* A training forward's temporaries (NULL: none; must not be the forward's own arena).
     * With it, a training forward keeps only what backward reads: the layernorm outputs h1
     * and h2 go here (backward recomputes them from x_in, x_mid and the saved mean/rstd when
     * a linear reading them trains: bitwise the same numbers), and so do the attention
     * output a and the activation g when out_proj and fc2 do not read their input
     * (nn_linear_reads_input: a frozen base without LoRA there). h1, h2, a, g are then NULL
     * after forward. Rewound before forward returns. */
    mmt_arena *scratch;
    /* Selective recomputation (only with scratch): the attention probabilities att (plain
     * self-attention: no prefix, cache or bidirectional rows) and fc1's output f (when fc1 is
     * a plain frozen linear: no gradient, LoRA or IA3) go to scratch too, and backward
     * recomputes them (attention_fwd; layernorm2 and fc1): bitwise the same numbers, for about
     * one more fc1 product per layer. att and f are then NULL after forward. */
    int recompute;
    float *r1, *r2; /* post-LN: the sums before layernorm1 and layernorm2 (h1, h2 unused) */
    /* prefix tuning: n_prefix key rows at prefix + r * prefix_stride, the value rows C floats
     * after each key row; dprefix likewise (NULL: frozen). k_full / v_full (B, n_prefix + T, C)
     * are the keys and values with the prefix in front (saved by forward). */
    int64_t n_prefix, prefix_stride;
    const float *prefix;
    float *dprefix;
    float *k_full, *v_full;
    /* inference with a KV cache (NULL: none): a forward appends its T positions' keys and
     * values after the cache's len rows and attends to all of them, the new positions
     * causally after the cached ones when the block is causal; then len += T. */
    mmt_kv_cache *cache;
    /* inference over rows that differ (mixed batches; NULL: every row alike): row b attends
     * to its first row_keys[b] positions (keys after them are padding) and to the
     * row_n_prefix[b] prefix rows at row_prefix[b] (prefix_stride apart, values C floats
     * after each key, as prefix above; NULL or 0: none). n_prefix must be 0 then. */
    const int64_t *row_keys, *row_n_prefix;
    const float *const *row_prefix;
} mmt_block;

/* One walk step of a model's mmt_pack_set (nn/linear.h) over a block's fp32 linears (q k v
 * out fc1 fc2; those kept quantized are skipped): the first walk counts them, the second
 * packs them and records their entries in w->packed. */
void nn_block_weights_pack(mmt_block_weights *w, mmt_pack_set *s, int64_t hidden, int64_t intermediate);

/* A block over the given weights: no adapters, nothing trainable. */
void nn_block_init(mmt_block *y, const mmt_block_weights *w, int64_t hidden, int64_t intermediate);

/* x_out (B, T, C) = block(x_in (B, T, C)); x_out must not alias x_in. Every intermediate is
 * allocated from `ar` and recorded in y (backward reads them while `ar` is not rewound);
 * train applies LoRA dropout from (seed, index). */
mmt_status nn_block_forward(mmt_block *y, const mmt_block_config *c, const mmt_ops *ops, mmt_arena *ar,
                            const float *x_in, float *x_out, int64_t B, int64_t T, uint64_t seed, int64_t index,
                            int train);

/* With y->cache set, x_in (B, T, C) holds positions cache->len .. cache->len + T - 1 of each
 * sequence; train must be 0 (nothing is kept for backward). */

/* Scratch gradients of one block's backward, allocated once per backward pass. */
typedef struct mmt_block_grads {
    float *dh, *dq, *dk, *dv, *da, *datt, *df, *dg, *dmid;
} mmt_block_grads;

mmt_status nn_block_grads_alloc(mmt_arena *ar, const mmt_block_config *c, int64_t B, int64_t T, int64_t n_prefix,
                                mmt_block_grads *s);

/* For the last training forward of y on x_in: dx_in (B, T, C) += the gradient at the input
 * given dx_out (dx_in NULL: not needed), and every non-NULL parameter gradient +=. Scratch
 * comes from `ar` (the caller rewinds it). */
mmt_status nn_block_backward(mmt_block *y, const mmt_block_config *c, const mmt_ops *ops, mmt_arena *ar,
                             const mmt_block_grads *s, const float *x_in, const float *dx_out, float *dx_in,
                             int64_t B, int64_t T);

/* 1 when anything in the block trains (backward must reach it). */
int nn_block_has_grads(const mmt_block *y);

#endif
