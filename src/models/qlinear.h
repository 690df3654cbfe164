/*
 * qlinear.h — the linear layers of a loaded model whose frozen weights may be kept quantized.
 *
 * A model records every nn.Linear weight it loads here (its module name, its out x in shape
 * and the two fields of the model that hold it: the fp32 pointer and the quantized matrix).
 * That one list serves three jobs:
 *   - loading a snapshot transformers + bitsandbytes saved (load_in_4bit NF4, load_in_8bit
 *     LLM.int8): mmt_qlinear_load reads such a tensor as a quantized matrix (ops.h mmt_qmat)
 *     instead of fp32, so the weights stay 4- or 8-bit in memory;
 *   - quantizing an fp32 model after loading (`--int8` on the command line, QLoRA's
 *     `--quantize nf4`): mmt_qlinears_quantize replaces the fp32 pointer of the chosen layers
 *     by a quantized matrix in the model's arena;
 *   - writing a quantized snapshot (`mmtune quantize`): the list says which tensors are
 *     linear weights and how each is stored.
 * Which layers a model quantizes follows transformers' bitsandbytes integration
 * (get_keys_to_not_convert): every nn.Linear except the model's last module, which it keeps
 * as the output head: CLIP's text_projection stays fp32 and its visual_projection is
 * quantized; GIT's output head stays fp32; a Conv2d patch embedding is never converted. So a
 * snapshot mmtune writes loads in transformers, and --int8 computes what that file would.
 * mmt_qlinear_policy can keep more in fp32.
 *
 * The model must not have run contexts or views yet when it quantizes: they copy the weight
 * pointers when created.
 */
#ifndef MMT_MODELS_QLINEAR_H
#define MMT_MODELS_QLINEAR_H

#include <stdint.h>

#include "core/arena.h"
#include "core/status.h"
#include "core/weights.h"
#include "mmtune.h"
#include "ops/ops.h"

typedef struct mmt_qlinear_slot {
    char module[192];       /* "vision_model.encoder.layers.3.mlp.fc1"; the weight is module.weight */
    const float **w;        /* the model's fp32 field: NULL while the weight is quantized */
    const mmt_qmat **qw;    /* the model's quantized field: NULL while the weight is fp32 */
    int64_t out, in;
    int64_t layer;          /* block index inside its stack, -1 outside blocks (projections) */
    int64_t n_layers;       /* blocks in that stack (0 outside blocks) */
    int from_file;          /* 1: the snapshot stored it quantized */
    int keep_fp32;          /* 1: never quantized from fp32 (mmt_qlinears_keep_fp32) */
} mmt_qlinear_slot;

typedef struct mmt_qlinears {
    mmt_qlinear_slot *slots; /* owned (mmt_malloc) */
    int64_t n, cap;
} mmt_qlinears;

/* Which recorded fp32 layers mmt_qlinears_quantize converts. */
typedef struct mmt_qlinear_policy {
    mmt_qmat_type type;     /* MMT_QMAT_S8 (per-row int8, LLM.int8's layout) or MMT_QMAT_NF4 */
    int keep_edges;         /* 1: the first and last block of every stack stay fp32 */
    int keep_outside;       /* 1: layers outside blocks (projections) stay fp32 */
    int nf4_double_quant;   /* NF4: quantize the absmax values too (bitsandbytes' compress_statistics) */
} mmt_qlinear_policy;

/* bitsandbytes' defaults: NF4 blocks of 64, the absmax values in blocks of 256 under double
 * quantization; and LLM.int8's dequantization constant 1/127 rounded to float. */
#define MMT_QLINEAR_NF4_BLOCKSIZE 64
#define MMT_QLINEAR_NF4_NESTED_BLOCKSIZE 256
#define MMT_QLINEAR_INV127 0.007874016f

void mmt_qlinears_free(mmt_qlinears *set);

/* Records a linear whose weight the caller made (*w fp32, or *qw already quantized). */
mmt_status mmt_qlinears_add(mmt_qlinears *set, const char *module, int64_t out, int64_t in, int64_t layer,
                           int64_t n_layers, const float **w, const mmt_qmat **qw);

/* Loads the weight of `module` ((out, in), tensor module + ".weight") into *w (fp32 view) or,
 * when the snapshot holds it in a bitsandbytes layout, into *qw (in `store`; *w = NULL), and
 * records the slot. layer / n_layers place it for the policy (-1 / 0: not in a block). */
mmt_status mmt_qlinear_load(mmt_qlinears *set, mmt_weights *weights, mmt_arena *store, const mmt_ops *ops,
                            const char *module, int64_t out, int64_t in, int64_t layer, int64_t n_layers,
                            const float **w, const mmt_qmat **qw);

/* Quantizes every fp32 slot the policy selects (each from its fp32 values), the matrices and
 * their packed copies in `store`. Slots already quantized are left as they are. *n_done
 * (may be NULL) gets the number converted. */
mmt_status mmt_qlinears_quantize(mmt_qlinears *set, mmt_arena *store, const mmt_ops *ops,
                                 const mmt_qlinear_policy *policy, int64_t *n_done);

/* mmt_qlinears_quantize with the public options (mmtune.h mmt_quant_options). */
mmt_status mmt_qlinears_quantize_as(mmt_qlinears *set, mmt_arena *store, const mmt_ops *ops,
                                    const mmt_quant_options *o, int64_t *n_done);

/* Marks `module` as one mmt_qlinears_quantize leaves in fp32 (a model's last module, which
 * transformers' bitsandbytes integration never converts). */
void mmt_qlinears_keep_fp32(mmt_qlinears *set, const char *module);

/* Quantizes slot `index` alone when the options select it (type NONE or o NULL: nothing), so a
 * loader can quantize each weight as it reads it and never hold the whole model in float32. */
mmt_status mmt_qlinears_quantize_slot(mmt_qlinears *set, int64_t index, mmt_arena *store, const mmt_ops *ops,
                                      const mmt_quant_options *o);

/* *qw = an int8 copy of w (out, in) for the integer kernels (LLM.int8's rows and the packed
 * copy), in `store`, outside any slot: w stays as it is and no file ever holds the copy (a
 * model computes its patch embedding with it when its linears are int8; clip.c). */
mmt_status mmt_qmat_s8_from(const float *w, int64_t out, int64_t in, mmt_arena *store, const mmt_ops *ops,
                            const mmt_qmat **qw);

/* The slot whose weight tensor is `tensor` ("....weight"), or NULL. */
const mmt_qlinear_slot *mmt_qlinears_find(const mmt_qlinears *set, const char *tensor);

#endif
