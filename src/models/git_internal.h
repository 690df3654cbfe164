/*
 * git_internal.h — the GIT model's and run context's layout, shared by git.c (loading,
 * inference, decoding) and git_train.c (the training graph and the PEFT interface). Not for
 * use outside src/models.
 */
#ifndef MMT_MODELS_GIT_INTERNAL_H
#define MMT_MODELS_GIT_INTERNAL_H

#include "core/arena.h"
#include "core/weights.h"
#include "data/preprocess.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "models/git.h"
#include "models/qlinear.h"
#include "nn/block.h"
#include "nn/linear.h"
#include "nn/model.h"
#include "nn/param.h"
#include "ops/ops.h"

#define GIT_MAX_HOOKS 4

typedef struct git_hook {
    void *ctx;
    mmt_status (*before_forward)(void *ctx);
    mmt_status (*after_backward)(void *ctx);
} git_hook;

/* What backward needs of the last training forward. */
typedef struct git_saved {
    int64_t B, L, T, Ni;       /* rows, text tokens, positions, image tokens */
    int64_t P, Lt;             /* prompt rows in front of the text, decoder text rows P + L */
    int64_t first, Rb;         /* the first text row that predicts a token, rows per caption that do */
    int32_t *ids, *targets;    /* (B, L) and (B, L-1): ids[:, 1:] where labels count, else -1 */
    float *states;             /* (B, Ni, Cv): the vision tower's (in its view's arena) */
    float *proj_pre, *proj_mean, *proj_rstd;  /* projection before its LayerNorm (B*Ni, C) */
    float *emb_pre, *emb_mean, *emb_rstd;     /* text embeddings before their LayerNorm (B*Lt, C) */
    float *x_out;              /* the last block's output (B, T, C) */
    float *h, *logits;         /* gathered text rows (R, C) and their logits (R, V) */
    int64_t R;                 /* rows that predict a token: B * Rb */
    int vision_train;          /* the vision tower had something trainable */
    uint64_t seed;
    int pending;               /* a forward awaits its backward */
} git_saved;

struct mmt_git {
    char *dir;                 /* owned */
    mmt_git_config cfg;
    mmt_weights *weights;      /* owned: the mapped checkpoint */
    mmt_arena store;           /* owned: converted weights, tables */
    mmt_clip *vision;          /* owned: the image encoder (borrows weights) */
    const float *word_emb, *pos_emb, *emb_ln_w, *emb_ln_b;
    mmt_block_weights *layers; /* cfg.num_layers, in store */
    const float *proj_w, *proj_b, *proj_ln_w, *proj_ln_b;
    const mmt_qmat *proj_qw;   /* the projection kept quantized (proj_w NULL), else NULL */
    mmt_qlinears qlinears;     /* owned: the decoder's linears and the projection (qlinear.h) */
    const float *out_w, *out_b;
    mmt_image_processor processor;
    mmt_dicom_options dicom;   /* DICOM rendering of image files; zero = each file's rule */
    const mmt_ops *ops;
    struct mmt_wordpiece *tokenizer; /* owned; NULL without tokenizer.json */
    mmt_pack_set packs;        /* owned: the decoder's prepacked linears (mmt_git_prepack) */
};

/* One decoding: the KV caches of its rows, per layer, and how far each row has got. Rows
 * may differ in length once rows join a running decoding (mmt_git_run_join). */
struct mmt_git_cache {
    int64_t n_layers;
    mmt_arena ar[3];           /* owned: the caches, double-buffered for select and join (ar[cur]);
                                * ar[2]: the rows a join brings in, before they are merged */
    int cur;
    mmt_kv_cache *layers;      /* owned (mmt_malloc), n_layers */
    int64_t B, cap;            /* rows decoding, text tokens of room per row */
    int64_t *lens, *keys;      /* owned (B): text tokens cached per row; cache positions per row
                                * (prefix + image + prompt rows + text) */
    int64_t *spare;            /* owned (B): scratch for reordering the two above */
    mmt_kv_cache *held;        /* owned (mmt_malloc), n_layers: the running rows' caches while a
                                * join computes the new ones */
    int64_t rows_cap;          /* what lens, keys and spare hold */
};

struct mmt_git_run {
    mmt_git *m;                /* borrowed */
    const mmt_ops *ops;
    mmt_clip_train *vision;    /* owned: the image encoder's view */
    mmt_block *blocks;         /* owned (mmt_malloc), cfg.num_layers */
    mmt_block_config bc;
    mmt_linear proj, out;      /* visual_projection.0, output */
    mmt_arena step, scratch;   /* owned: activations (reset per call), per-layer scratch */
    mmt_git_cache *own;        /* owned: the run's own decoding */
    mmt_git_cache *kv;         /* the decoding in use: own, or the caller's (mmt_git_run_use_cache) */
    const float *dec_feats;    /* borrowed: the images of mmt_git_run_decoder */
    int64_t dec_images;
    /* the base tensors outside linears and blocks as this run computes with them: the
     * model's, or owned copies once full fine-tuning makes them trainable */
    const float *word_emb, *pos_emb, *emb_ln_w, *emb_ln_b, *proj_ln_w, *proj_ln_b;
    /* prompt tuning (PEFT's PROMPT_TUNING): n_prompt rows in front of the text embeddings,
     * before the position embeddings and the LayerNorm (set through the PEFT interface) */
    int64_t n_prompt;
    const float *prompt;       /* borrowed (n_prompt, C) */
    float *dprompt;            /* borrowed (n_prompt, C); NULL: frozen */
    /* ---- training (git_train.c) ---- */
    mmt_arena store;           /* owned: trainable copies, gradients, names */
    mmt_nn_param *params;      /* owned (mmt_malloc): registered here */
    int64_t n_params, cap_params;
    mmt_nn_param *merged;      /* owned: params + the vision view's, as params() lists them */
    int64_t n_merged, merged_vision; /* what merged was built from */
    float *dword_emb, *dpos_emb, *demb_ln_w, *demb_ln_b, *dproj_ln_w, *dproj_ln_b; /* NULL: frozen */
    int eval_mode;
    git_hook hooks[GIT_MAX_HOOKS];
    int n_hooks;
    mmt_model_iface iface;
    git_saved saved;           /* the last forward_loss's activations (step arena) */
};


/* pre (B, P + L, C) = [the run's P prompt rows; word_embeddings[ids (B, L)]] +
 * position_embeddings[pos0 .. pos0 + P + L): GitEmbeddings before its LayerNorm (P is 0 or
 * r->n_prompt). */
void git_text_embed_pre(const mmt_git_run *r, float *pre, const int32_t *ids, int64_t B, int64_t L, int64_t P,
                        int64_t pos0);

/* git_train.c: the run's training state and PEFT interface, set up and freed with the run. */
void git_run_train_init(mmt_git_run *r);
void git_run_train_free(mmt_git_run *r);

#endif
