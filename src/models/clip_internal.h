/*
 * clip_internal.h — the loaded CLIP model's layout, shared by the files of src/models that
 * run it (clip.c: loading and inference; clip_train.c: the training graph). Not for use
 * outside src/models: other layers go through clip.h and clip_train.h.
 */
#ifndef MMT_MODELS_CLIP_INTERNAL_H
#define MMT_MODELS_CLIP_INTERNAL_H

#include <pthread.h>

#include "core/arena.h"
#include "data/preprocess.h"
#include "models/clip.h"
#include "models/qlinear.h"
#include "nn/block.h"
#include "ops/ops.h"

struct mmt_tokenizer;

/* Weights of one pre-LN encoder layer (modeling_clip.py CLIPEncoderLayer). */
typedef struct clip_layer {
    const float *ln1_w, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *out_w, *out_b;
    const float *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    const mmt_qmat *qw[6];       /* q, k, v, out, fc1, fc2 kept quantized, else NULL (qlinear.h) */
    const mmt_packed_linear *packed[6]; /* their prepacked panels (mmt_clip_prepack), else NULL */
} clip_layer;

typedef struct clip_tower {
    const mmt_clip_tower_config *cfg;
    clip_layer *layers;          /* cfg->num_layers, in the model arena */
    const float *projection;     /* (P, C); NULL when kept quantized */
    const mmt_qmat *projection_qw;
    /* text */
    const float *token_embedding, *position_embedding, *final_ln_w, *final_ln_b;
    /* vision */
    const float *class_embedding, *patch_weight, *pre_ln_w, *pre_ln_b, *post_ln_w, *post_ln_b;
    /* An int8 copy of patch_weight for inference when the tower's first block computes in
     * int8 (NULL otherwise): in memory only, files keep the patch embedding float32 as
     * transformers does (docs/quantization.md). */
    const mmt_qmat *patch_qw;
} clip_tower;

struct mmt_clip {
    char *dir;                   /* owned */
    mmt_clip_config cfg;
    mmt_weights *weights;        /* owned unless borrowed_weights: the mapped checkpoint */
    int borrowed_weights;        /* a tower inside another model's checkpoint (GIT) */
    mmt_arena store;             /* owned: converted weights, layer tables */
    mmt_qlinears qlinears;       /* owned: every linear weight, fp32 or quantized (qlinear.h) */
    pthread_mutex_t spare_mu;    /* guards spare_view */
    struct mmt_clip_train *spare_view; /* owned: a finished inference view kept for the next call */
    clip_tower text, vision;
    float logit_scale;           /* the raw parameter (log of the temperature) */
    const mmt_ops *ops;
    struct mmt_tokenizer *tokenizer;    /* owned, NULL without vocab files */
    mmt_image_processor processor;
    mmt_dicom_options dicom;     /* DICOM rendering of image files; zero = each file's rule */
    mmt_pack_set packs;          /* owned: the encoders' prepacked linears (mmt_clip_prepack) */
};

/* Writes the tensor `name` of the given shape (numel floats into w) when a model is made from
 * a config instead of a checkpoint. `name` is only valid during the call. */
typedef mmt_status (*clip_tensor_fill)(void *ctx, const char *name, int ndim, const int64_t *shape,
                                       float *w);
/* A model with cfg whose every tensor (in clip.c's one walk over CLIP's names and shapes, the
 * same walk loading uses) comes from fill, in a fixed order. No tokenizer; the CLIP default
 * processor. */
mmt_status mmt_clip_create_generated(const mmt_clip_config *cfg, clip_tensor_fill fill, void *ctx,
                                     mmt_clip **out);

/* A vision tower alone, without projection (projection_dim 0), read from a checkpoint
 * another model owns and keeps open (weights borrowed): every tensor name is prefix +
 * CLIP's ("git.image_encoder." + "vision_model.encoder..."). dir names it in errors. The CLIP
 * default processor at the tower's image size. GIT's image encoder is this tower. */
mmt_status mmt_clip_vision_tower_from(const mmt_clip_tower_config *vcfg, mmt_weights *weights, const char *prefix,
                                      const char *dir, mmt_clip **out);

/* A tower's encoder block settings (nn/block.h): text towers are causal. */
static inline void clip_block_config(const mmt_clip_tower_config *c, int causal, mmt_block_config *bc) {
    bc->hidden = c->hidden_size;
    bc->intermediate = c->intermediate_size;
    bc->heads = c->num_heads;
    bc->eps = (float)c->layer_norm_eps;
    bc->act = c->act == MMT_ACT_GELU ? MMT_BLOCK_GELU : MMT_BLOCK_QUICK_GELU;
    bc->causal = causal;
}

static inline void clip_block_weights(const clip_layer *s, mmt_block_weights *w) {
    *w = (mmt_block_weights){s->q_w,   s->q_b,   s->k_w,   s->k_b,   s->v_w,   s->v_b,   s->out_w, s->out_b,
                             s->fc1_w, s->fc1_b, s->fc2_w, s->fc2_b, s->ln1_w, s->ln1_b, s->ln2_w, s->ln2_b,
                             {s->qw[0], s->qw[1], s->qw[2], s->qw[3], s->qw[4], s->qw[5]},
                             {s->packed[0], s->packed[1], s->packed[2], s->packed[3], s->packed[4], s->packed[5]}};
}

/* HF's pooling position (modeling_clip.py CLIPTextModel.forward): legacy configs with
 * eos_token_id == 2 take argmax(ids) (first maximum); others the first id == eos_token_id,
 * and 0 when a row has none. */
int64_t mmt_clip_pool_position(const int32_t *ids, int64_t L, int64_t eos_token_id);

#endif
