/*
 * clip_train.c — CLIP's training graph (see clip_train.h).
 *
 * Each encoder layer keeps, for backward: its input x_in, both layernorms' mean/rstd, q, k,
 * v, the attention probabilities, the residual x_mid and fc1's output before the activation;
 * and the attention output and the activation only when out_proj and fc2 read them in
 * backward (they train, or carry LoRA). The layernorms' outputs are recomputed in backward
 * when needed (nn/block.h). With checkpointing only x_in is kept and the block's forward is
 * re-run into scratch during backward. Backward walks the layers down to the lowest one with
 * something trainable and stops there.
 *
 * Prompt and prefix tuning (peft/prompt.h owns their tensors) change the sequences:
 *   - text prompts (CoOp, Zhou et al. 2022): M context vectors after the BOS embedding,
 *     [BOS][ctx_1..ctx_M][caption][EOS], position embeddings over the shifted sequence, the
 *     pooled EOS moved by M; a caption too long for the context then loses its last tokens
 *     (never BOS or EOS);
 *   - visual prompts (VPT, Jia et al. 2022): P tokens after CLS, [CLS][p_1..p_P][patches],
 *     without position embeddings, entering before pre_layrnorm as in the CLIP ports of VPT
 *     (MaPLe / IVLP, Khattak et al. 2023, VisionTransformer_MaPLe: prompts are concatenated
 *     after the position embeddings and then ln_pre runs). VPT-deep: layer i >= 1 overwrites
 *     those rows of its input with its own P tokens, which enter the residual stream as they
 *     are. The vision tower has no mask, so "after CLS" and MaPLe's "after the patches" give
 *     the same numbers; the pooled output stays CLS;
 *   - prefixes (Li & Liang 2021; PEFT's past_key_values): per layer, V learned key rows and
 *     value rows in front of the projected keys and values; in the causal text tower every
 *     query sees all of them (attention_kv_fwd with causal offset V).
 */
#include "models/clip_train.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "dist/comm.h"
#include "models/clip_internal.h"
#include "models/clip_modules.h"
#include "nn/block.h"
#include "nn/embed.h"
#include "nn/loss.h"

typedef struct ct_tower {
    const mmt_clip_tower_config *cfg;
    mmt_block_config bc;  /* the tower's encoder blocks (nn/block.h) */
    int is_text;
    int present;       /* the checkpoint has this tower (a lone text or vision model lacks one) */
    mmt_block *layers;
    mmt_linear proj;   /* (P, C), no bias */
    mmt_linear patch;  /* vision: (C, Cin*P*P), no bias */
    const float *tok_emb, *pos_emb, *cls, *pre_w, *pre_b, *fin_w, *fin_b;
    float *dtok_emb, *dpos_emb, *dcls, *dpre_w, *dpre_b, *dfin_w, *dfin_b;
    /* saved by forward */
    int64_t B, T;
    int64_t *pool;     /* (B) pooled position */
    int32_t *ids;      /* (B, T) text */
    float *patches;    /* (B*Np, K) vision */
    float *x0;         /* vision: pre-layernorm input (B, T, C) */
    float *pre_mean, *pre_rstd;
    float *x_out;      /* last layer's output (B, T, C) */
    float *pooled, *fin_mean, *fin_rstd, *hfin, *proj_out, *norm, *emb;
    float *demb;       /* gradient at the embeddings (B, P) */
    uint64_t seed;
    /* prompts: text (n_prompt, C) after BOS; vision (deep ? num_layers : 1, n_prompt, C), row
     * block 0 after CLS before pre_layrnorm, block i >= 1 replacing them at layer i's input.
     * dprompt NULL: frozen. Text prompt slots hold id -1 in ids. */
    int64_t n_prompt;
    int prompt_deep;
    const float *prompt;
    float *dprompt;
    /* set for one inference forward when rows differ (mixed batches), else NULL: vision rows
     * padded after their last position (row_keys[b] real positions), per-row prefixes */
    int64_t *row_keys, *row_n_prefix;
} ct_tower;

typedef struct ct_hook {
    void *ctx;
    mmt_status (*before_forward)(void *ctx);
    mmt_status (*after_backward)(void *ctx);
} ct_hook;

#define CT_MAX_HOOKS 4

struct mmt_clip_train {
    mmt_clip *model;
    const mmt_ops *ops;
    mmt_clip_train_options opt;
    ct_tower text, vision;
    float logit_scale, dlogit_scale;
    int full;
    mmt_arena store;   /* owned: layer tables, full fine-tuning copies, gradients, names */
    mmt_arena step;    /* owned: activations, reset each forward */
    mmt_arena scratch; /* owned: per-block scratch of backward */
    mmt_nn_param *params; /* owned (mmt_malloc) */
    int64_t n_params, cap_params;
    double last_loss;
    double dscale;
    int eval_mode;     /* forward_loss computes the loss only: no dropout, nothing kept */
    ct_hook hooks[CT_MAX_HOOKS];
    int n_hooks;
    mmt_clip_row_prompts *rows; /* owned (mmt_malloc): per-row prompts of inference, NULL: none */
    int states_pending; /* a vision_states_train forward awaits its backward */
    int64_t n_rows;
    mmt_model_iface iface; /* what peft/ sees of this view (nn/model.h) */
};

#define ALLOC_F(ar, n) ((float *)mmt_arena_alloc((ar), (size_t)(n) * sizeof(float), 64))

/* ---- construction ------------------------------------------------------------------ */

void mmt_clip_train_options_default(mmt_clip_train_options *o) {
    memset(o, 0, sizeof *o);
    o->distill_temperature = 1;
    o->task_weight = 1;
}

static void linear_init(mmt_linear *l, const float *w, const float *b, int64_t in, int64_t out) {
    memset(l, 0, sizeof *l);
    l->w = w;
    l->b = b;
    l->in = in;
    l->out = out;
}

static mmt_status tower_init(mmt_clip_train *ct, ct_tower *t, const clip_tower *src, int is_text) {
    const mmt_clip_tower_config *c = src->cfg;
    int64_t C = c->hidden_size, I = c->intermediate_size;
    t->cfg = c;
    t->is_text = is_text;
    t->present = 1;
    t->layers = mmt_arena_calloc(&ct->store, (size_t)c->num_layers, sizeof(mmt_block));
    if (!t->layers) return MMT_STATUS_OUT_OF_MEMORY;
    clip_block_config(c, is_text, &t->bc);
    for (int64_t i = 0; i < c->num_layers; i++) {
        mmt_block_weights w;
        clip_block_weights(&src->layers[i], &w);
        nn_block_init(&t->layers[i], &w, C, I);
    }
    linear_init(&t->proj, src->projection, NULL, C, ct->model->cfg.projection_dim);
    t->proj.qw = src->projection_qw;
    t->pos_emb = src->position_embedding;
    if (is_text) {
        t->tok_emb = src->token_embedding;
        t->fin_w = src->final_ln_w;
        t->fin_b = src->final_ln_b;
    } else {
        int64_t P = c->patch_size;
        linear_init(&t->patch, src->patch_weight, NULL, c->num_channels * P * P, C);
        t->cls = src->class_embedding;
        t->pre_w = src->pre_ln_w;
        t->pre_b = src->pre_ln_b;
        t->fin_w = src->post_ln_w;
        t->fin_b = src->post_ln_b;
    }
    return MMT_OK;
}

/* ---- the view as PEFT methods see it (nn/model.h) ------------------------------------ */

static mmt_status iface_list_modules(void *ctx, mmt_module_info **out, int64_t *n) {
    return mmt_clip_modules(&((mmt_clip_train *)ctx)->model->cfg, out, n);
}
static mmt_linear *iface_linear(void *ctx, const char *m) { return mmt_clip_train_linear(ctx, m); }
static mmt_bottleneck **iface_bottleneck_slot(void *ctx, const char *m) { return mmt_clip_train_bottleneck_slot(ctx, m); }
static mmt_status iface_add_param(void *ctx, const char *name, float *data, float *grad, int ndim, const int64_t *shape,
                                  int no_decay) {
    return mmt_clip_train_add_param(ctx, name, data, grad, ndim, shape, no_decay);
}
static const mmt_nn_param *iface_params(void *ctx, int64_t *n) { return mmt_clip_train_params(ctx, n); }
static mmt_status iface_make_module_trainable(void *ctx, const char *module, const char *key_prefix, int64_t *n_added) {
    return mmt_clip_train_make_module_trainable(ctx, module, key_prefix, n_added);
}
static const float *iface_token_embedding(void *ctx) { return mmt_clip_train_token_embedding(ctx); }
static mmt_status iface_set_text_prompt(void *ctx, int64_t M, const float *p, float *dp) {
    return mmt_clip_train_set_text_prompt(ctx, M, p, dp);
}
static mmt_status iface_set_visual_prompt(void *ctx, int64_t P, int deep, const float *p, float *dp) {
    return mmt_clip_train_set_visual_prompt(ctx, P, deep, p, dp);
}
static mmt_status iface_set_prefix(void *ctx, int vision, int64_t V, const float *kv, float *dkv) {
    return mmt_clip_train_set_prefix(ctx, vision, V, kv, dkv);
}
static mmt_status iface_add_hooks(void *ctx, void *hook_ctx, mmt_status (*before)(void *), mmt_status (*after)(void *)) {
    return mmt_clip_train_add_hooks(ctx, hook_ctx, before, after);
}
static void iface_remove_hooks(void *ctx, void *hook_ctx) { mmt_clip_train_remove_hooks(ctx, hook_ctx); }

const mmt_model_iface *mmt_clip_train_iface(mmt_clip_train *ct) { return &ct->iface; }

mmt_status mmt_clip_train_create(mmt_clip *model, const mmt_clip_train_options *o,
                                 mmt_clip_train **out) {
    *out = NULL;
    mmt_clip_train *ct = mmt_calloc(1, sizeof *ct);
    if (!ct) return MMT_STATUS_OUT_OF_MEMORY;
    ct->model = model;
    ct->ops = model->ops;
    ct->opt = *o;
    ct->iface = (mmt_model_iface){.ctx = ct, .source = model->dir, .ops = model->ops, .list_modules = iface_list_modules, .linear = iface_linear,
                                  .bottleneck_slot = iface_bottleneck_slot, .add_param = iface_add_param,
                                  .params = iface_params, .make_module_trainable = iface_make_module_trainable,
                                  .token_embedding = iface_token_embedding, .set_text_prompt = iface_set_text_prompt,
                                  .set_visual_prompt = iface_set_visual_prompt, .set_prefix = iface_set_prefix,
                                  .add_hooks = iface_add_hooks, .remove_hooks = iface_remove_hooks};
    mmt_clip_model_dims(&model->cfg, &ct->iface.dims);
    ct->logit_scale = model->logit_scale;
    mmt_arena_init(&ct->store, (size_t)64 << 10); /* layer tables: a view is cheap, a server keeps many */
    /* activations and scratch live where the kernels compute: the op table's buffers */
    mmt_arena_init_with(&ct->step, (size_t)64 << 20, model->ops->buffer_alloc, model->ops->buffer_free);
    mmt_arena_init_with(&ct->scratch, (size_t)16 << 20, model->ops->buffer_alloc, model->ops->buffer_free);
    mmt_status s = MMT_OK;
    ct->text.cfg = &model->cfg.text;
    ct->vision.cfg = &model->cfg.vision;
    ct->text.is_text = 1;
    if (model->cfg.has_text) s = tower_init(ct, &ct->text, &model->text, 1);
    if (s == MMT_OK && model->cfg.has_vision) s = tower_init(ct, &ct->vision, &model->vision, 0);
    if (s == MMT_OK && o->train_logit_scale) {
        int64_t shape[1] = {1};
        s = mmt_clip_train_add_param(ct, "logit_scale", &ct->logit_scale, &ct->dlogit_scale, 0, shape, 1);
    }
    if (s != MMT_OK) {
        mmt_clip_train_free(ct);
        return s;
    }
    *out = ct;
    return MMT_OK;
}

void mmt_clip_train_free(mmt_clip_train *ct) {
    if (!ct) return;
    mmt_arena_free(&ct->store);
    mmt_arena_free(&ct->step);
    mmt_arena_free(&ct->scratch);
    mmt_free(ct->params);
    mmt_free(ct->rows);
    mmt_free(ct);
}

mmt_clip *mmt_clip_train_model(mmt_clip_train *ct) { return ct->model; }
float mmt_clip_train_scale(const mmt_clip_train *ct) {
    return ct->opt.fixed_temperature > 0 ? 1.0f / ct->opt.fixed_temperature : expf(ct->logit_scale);
}
float mmt_clip_train_logit_scale(const mmt_clip_train *ct) { return ct->logit_scale; }
void mmt_clip_train_set_eval(mmt_clip_train *ct, int eval) { ct->eval_mode = eval != 0; }
void mmt_clip_train_after_step(mmt_clip_train *ct) {
    if (ct->opt.train_logit_scale) ct->logit_scale = fminf(fmaxf(ct->logit_scale, 0.0f), logf(100.0f));
}
size_t mmt_clip_train_peak_activation_bytes(const mmt_clip_train *ct) {
    return ct->step.peak_bytes + ct->scratch.peak_bytes;
}
const float *mmt_clip_train_image_embeds(const mmt_clip_train *ct) { return ct->vision.emb; }
const float *mmt_clip_train_text_embeds(const mmt_clip_train *ct) { return ct->text.emb; }

mmt_status mmt_clip_train_add_param(mmt_clip_train *ct, const char *name, float *data,
                                    float *grad, int ndim, const int64_t *shape, int no_decay) {
    for (int64_t i = 0; i < ct->n_params; i++)
        if (strcmp(ct->params[i].name, name) == 0)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "trainable tensor %s registered twice", name);
    if (ndim < 0 || ndim > MMT_PARAM_MAX_DIMS)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "trainable tensor %s: %d dimensions", name, ndim);
    if (ct->n_params == ct->cap_params) {
        int64_t cap = ct->cap_params ? ct->cap_params * 2 : 64;
        mmt_nn_param *p = mmt_realloc(ct->params, (size_t)cap * sizeof *p);
        if (!p) return MMT_STATUS_OUT_OF_MEMORY;
        ct->params = p;
        ct->cap_params = cap;
    }
    size_t len = strlen(name);
    char *copy = mmt_arena_alloc(&ct->store, len + 1, 1);
    if (!copy) return MMT_STATUS_OUT_OF_MEMORY;
    memcpy(copy, name, len + 1);
    mmt_nn_param *p = &ct->params[ct->n_params++];
    memset(p, 0, sizeof *p);
    p->name = copy;
    p->data = data;
    p->grad = grad;
    p->ndim = ndim;
    p->numel = 1;
    for (int d = 0; d < ndim; d++) {
        p->shape[d] = shape[d];
        p->numel *= shape[d];
    }
    p->no_decay = no_decay;
    return MMT_OK;
}

const mmt_nn_param *mmt_clip_train_params(const mmt_clip_train *ct, int64_t *n) {
    *n = ct->n_params;
    return ct->params;
}

void mmt_clip_train_zero_grad(mmt_clip_train *ct) {
    for (int64_t i = 0; i < ct->n_params; i++)
        if (ct->params[i].grad) memset(ct->params[i].grad, 0, (size_t)ct->params[i].numel * sizeof(float));
}

mmt_linear *mmt_clip_train_linear(mmt_clip_train *ct, const char *name) {
    ct_tower *t = NULL;
    const char *rest = NULL;
    if (strncmp(name, "text_model.", 11) == 0) t = &ct->text, rest = name + 11;
    else if (strncmp(name, "vision_model.", 13) == 0) t = &ct->vision, rest = name + 13;
    else if (strcmp(name, "text_projection") == 0) return ct->text.present ? &ct->text.proj : NULL;
    else if (strcmp(name, "visual_projection") == 0) return ct->vision.present ? &ct->vision.proj : NULL;
    else return NULL;
    if (!t->present) return NULL;
    if (!t->is_text && strcmp(rest, "embeddings.patch_embedding") == 0) return &t->patch;
    long long idx;
    int used = 0;
    if (sscanf(rest, "encoder.layers.%lld.%n", &idx, &used) != 1 || used == 0) return NULL;
    if (idx < 0 || idx >= t->cfg->num_layers) return NULL;
    char check[48];
    snprintf(check, sizeof check, "encoder.layers.%lld.", idx);
    if ((size_t)used != strlen(check) || strncmp(rest, check, (size_t)used) != 0) return NULL; /* "01", "+1" */
    mmt_block *y = &t->layers[idx];
    const char *m = rest + used;
    if (strcmp(m, "self_attn.q_proj") == 0) return &y->q;
    if (strcmp(m, "self_attn.k_proj") == 0) return &y->k;
    if (strcmp(m, "self_attn.v_proj") == 0) return &y->v;
    if (strcmp(m, "self_attn.out_proj") == 0) return &y->o;
    if (strcmp(m, "mlp.fc1") == 0) return &y->fc1;
    if (strcmp(m, "mlp.fc2") == 0) return &y->fc2;
    return NULL;
}

mmt_bottleneck **mmt_clip_train_bottleneck_slot(mmt_clip_train *ct, const char *name) {
    ct_tower *t;
    const char *rest;
    if (strncmp(name, "text_model.", 11) == 0) t = &ct->text, rest = name + 11;
    else if (strncmp(name, "vision_model.", 13) == 0) t = &ct->vision, rest = name + 13;
    else return NULL;
    long long idx;
    if (!t->present) return NULL;
    if (sscanf(rest, "encoder.layers.%lld.", &idx) != 1 || idx < 0 || idx >= t->cfg->num_layers) return NULL;
    char want[96];
    snprintf(want, sizeof want, "encoder.layers.%lld.adapter_attn", idx);
    if (strcmp(rest, want) == 0) return &t->layers[idx].adapter_attn;
    snprintf(want, sizeof want, "encoder.layers.%lld.adapter_mlp", idx);
    if (strcmp(rest, want) == 0) return &t->layers[idx].adapter_mlp;
    return NULL;
}

/* ---- full fine-tuning: owned copies of every base tensor ---------------------------- */

typedef struct full_ctx {
    mmt_clip_train *ct;
    mmt_status s;
    const char *under;      /* only tensors of this module (and below); NULL: all */
    const char *key_prefix; /* prepended to the registered names ("" for full fine-tuning) */
    int64_t added;
} full_ctx;

/* Copies *w into owned memory, allocates its gradient, registers it. */
static void make_trainable(full_ctx *f, const float **w, float **dw, int64_t numel, int ndim,
                           const int64_t *shape, int no_decay, const char *fmt, ...) MMT_PRINTF(8, 9);
static void make_trainable(full_ctx *f, const float **w, float **dw, int64_t numel, int ndim,
                           const int64_t *shape, int no_decay, const char *fmt, ...) {
    if (f->s != MMT_OK || !*w) return;
    char hf[256], name[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(hf, sizeof hf, fmt, ap);
    va_end(ap);
    if (f->under) {
        size_t n = strlen(f->under);
        if (strncmp(hf, f->under, n) != 0 || hf[n] != '.') return;
    }
    if (*dw) return; /* trainable already (a module listed twice) */
    snprintf(name, sizeof name, "%s%s", f->key_prefix, hf);
    f->added++;
    float *copy = ALLOC_F(&f->ct->store, numel);
    float *grad = mmt_arena_calloc(&f->ct->store, (size_t)numel, sizeof(float));
    if (!copy || !grad) {
        f->s = MMT_STATUS_OUT_OF_MEMORY;
        return;
    }
    memcpy(copy, *w, (size_t)numel * sizeof(float));
    *w = copy;
    *dw = grad;
    f->s = mmt_clip_train_add_param(f->ct, name, copy, grad, ndim, shape, no_decay);
}

static void full_linear(full_ctx *f, mmt_linear *l, const char *module, int ndim, const int64_t *wshape) {
    int64_t bshape[1] = {l->out};
    if (f->s == MMT_OK && l->qw) {
        f->s = mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: its weight is quantized and cannot be trained; train an adapter "
                                                "(LoRA, IA3...) on the quantized base, or load the fp32 model", module);
        return;
    }
    make_trainable(f, &l->w, &l->dw, l->in * l->out, ndim, wshape, 0, "%s.weight", module);
    if (l->b) make_trainable(f, &l->b, &l->db, l->out, 1, bshape, 1, "%s.bias", module);
}

static void full_tower(full_ctx *f, ct_tower *t, const char *prefix) {
    if (!t->present) return;
    const mmt_clip_tower_config *c = t->cfg;
    int64_t C = c->hidden_size;
    int64_t vshape[1] = {C};
    char name[160];
    if (t->is_text) {
        int64_t s1[2] = {c->vocab_size, C}, s2[2] = {c->max_positions, C};
        make_trainable(f, &t->tok_emb, &t->dtok_emb, c->vocab_size * C, 2, s1, 1, "%s.embeddings.token_embedding.weight", prefix);
        make_trainable(f, &t->pos_emb, &t->dpos_emb, c->max_positions * C, 2, s2, 1, "%s.embeddings.position_embedding.weight", prefix);
    } else {
        int64_t P = c->patch_size, G = c->image_size / P;
        int64_t s1[2] = {G * G + 1, C}, ps[4] = {C, c->num_channels, P, P};
        make_trainable(f, &t->cls, &t->dcls, C, 1, vshape, 1, "%s.embeddings.class_embedding", prefix);
        snprintf(name, sizeof name, "%s.embeddings.patch_embedding", prefix);
        full_linear(f, &t->patch, name, 4, ps);
        make_trainable(f, &t->pos_emb, &t->dpos_emb, (G * G + 1) * C, 2, s1, 1, "%s.embeddings.position_embedding.weight", prefix);
        make_trainable(f, &t->pre_w, &t->dpre_w, C, 1, vshape, 1, "%s.pre_layrnorm.weight", prefix);
        make_trainable(f, &t->pre_b, &t->dpre_b, C, 1, vshape, 1, "%s.pre_layrnorm.bias", prefix);
    }
    for (int64_t i = 0; i < c->num_layers; i++) {
        mmt_block *y = &t->layers[i];
        long long n = (long long)i;
        struct { mmt_linear *l; const char *what; } lin[6] = {
            {&y->k, "self_attn.k_proj"}, {&y->v, "self_attn.v_proj"}, {&y->q, "self_attn.q_proj"},
            {&y->o, "self_attn.out_proj"}, {&y->fc1, "mlp.fc1"}, {&y->fc2, "mlp.fc2"}};
        make_trainable(f, &y->ln1_w, &y->dln1_w, C, 1, vshape, 1, "%s.encoder.layers.%lld.layer_norm1.weight", prefix, n);
        make_trainable(f, &y->ln1_b, &y->dln1_b, C, 1, vshape, 1, "%s.encoder.layers.%lld.layer_norm1.bias", prefix, n);
        for (int j = 0; j < 6; j++) {
            int64_t ws[2] = {lin[j].l->out, lin[j].l->in};
            snprintf(name, sizeof name, "%s.encoder.layers.%lld.%s", prefix, n, lin[j].what);
            full_linear(f, lin[j].l, name, 2, ws);
            if (j == 3) {
                make_trainable(f, &y->ln2_w, &y->dln2_w, C, 1, vshape, 1, "%s.encoder.layers.%lld.layer_norm2.weight", prefix, n);
                make_trainable(f, &y->ln2_b, &y->dln2_b, C, 1, vshape, 1, "%s.encoder.layers.%lld.layer_norm2.bias", prefix, n);
            }
        }
    }
    const char *fin = t->is_text ? "final_layer_norm" : "post_layernorm";
    make_trainable(f, &t->fin_w, &t->dfin_w, C, 1, vshape, 1, "%s.%s.weight", prefix, fin);
    make_trainable(f, &t->fin_b, &t->dfin_b, C, 1, vshape, 1, "%s.%s.bias", prefix, fin);
}

static void walk_all(full_ctx *f) {
    mmt_clip_train *ct = f->ct;
    full_tower(f, &ct->text, "text_model");
    full_tower(f, &ct->vision, "vision_model");
    int64_t ps[2] = {ct->model->cfg.projection_dim, ct->vision.cfg->hidden_size};
    if (ct->vision.present) full_linear(f, &ct->vision.proj, "visual_projection", 2, ps);
    ps[1] = ct->text.cfg->hidden_size;
    if (ct->text.present) full_linear(f, &ct->text.proj, "text_projection", 2, ps);
}

mmt_status mmt_clip_train_make_full(mmt_clip_train *ct) {
    if (ct->full) return MMT_OK;
    full_ctx f = {ct, MMT_OK, NULL, "", 0};
    walk_all(&f);
    if (f.s == MMT_OK) ct->full = 1;
    return f.s;
}

mmt_status mmt_clip_train_make_module_trainable(mmt_clip_train *ct, const char *module,
                                                const char *key_prefix, int64_t *n_added) {
    full_ctx f = {ct, MMT_OK, module, key_prefix ? key_prefix : "", 0};
    walk_all(&f);
    if (n_added) *n_added = f.added;
    if (f.s == MMT_OK && f.added == 0)
        return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: no tensors of this module can be trained (or they already are)", module);
    return f.s;
}

/* ---- what needs gradients ------------------------------------------------------------ */

/* The lowest layer backward must reach (num_layers: none), and whether anything below the
 * encoder (embeddings, pre-layernorm, patch embedding) trains. */
static int64_t lowest_trainable_layer(const ct_tower *t, int *below) {
    *below = t->dtok_emb || t->dpos_emb || t->dcls || t->dpre_w || nn_linear_has_grads(&t->patch) || t->dprompt;
    if (*below) return 0;
    for (int64_t i = 0; i < t->cfg->num_layers; i++)
        if (nn_block_has_grads(&t->layers[i])) return i;
    return t->cfg->num_layers;
}

static int tower_has_grads(const ct_tower *t) {
    if (!t->present) return 0;
    int below;
    return lowest_trainable_layer(t, &below) < t->cfg->num_layers || below || t->dfin_w ||
           nn_linear_has_grads(&t->proj);
}

/* ---- one encoder layer --------------------------------------------------------------- */

/* ---- towers ---------------------------------------------------------------------------- */

/* The visual prompts of row b: count, tensor and depth (the view's own, or the row's). */
static int64_t row_visual(const mmt_clip_train *ct, const ct_tower *t, int64_t b, const float **p, int *deep) {
    if (ct->rows) {
        *p = ct->rows[b].visual;
        *deep = ct->rows[b].visual_deep;
        return ct->rows[b].visual_tokens;
    }
    *p = t->prompt;
    *deep = t->prompt_deep;
    return t->n_prompt;
}

/* VPT-deep: rows 1..P of every sequence in x (B, T, C) become layer li's own prompt tokens. */
static mmt_status deep_prompt_insert(mmt_clip_train *ct, const ct_tower *t, int64_t li, float *x, int64_t B, int64_t T) {
    int64_t C = t->cfg->hidden_size;
    int64_t *n = mmt_arena_alloc(&ct->step, (size_t)B * sizeof *n, 8);
    const float **src = mmt_arena_alloc(&ct->step, (size_t)B * sizeof *src, 8);
    if (!n || !src) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t b = 0; b < B; b++) {
        const float *prompt;
        int deep;
        n[b] = row_visual(ct, t, b, &prompt, &deep);
        src[b] = deep && n[b] > 0 ? prompt + li * n[b] * C : NULL;
    }
    nn_rows_replace(ct->ops, x, n, src, 1, B, T, C);
    return MMT_OK;
}

/* Runs the encoder on t->layers[0].x_in (already filled), leaving t->x_out. Training keeps
 * every layer's input for backward; inference needs only two buffers, used in turn. */
static mmt_status encoder_forward(mmt_clip_train *ct, ct_tower *t, int64_t B, int64_t T, int train) {
    int64_t L = t->cfg->num_layers, C = t->cfg->hidden_size, NC = B * T * C;
    float *spare = NULL; /* inference: the buffer the next layer writes */
    int deep = t->prompt_deep;
    for (int64_t b = 0; ct->rows && b < B; b++) deep |= ct->rows[b].visual_deep && !t->is_text;
    const float **row_prefix = NULL; /* per-row prefixes: each row's rows of the current layer */
    const mmt_clip_row_prompts *rp = ct->rows;
    for (int64_t b = 0; rp && !row_prefix && b < B; b++)
        if (rp[b].prefix_tokens[!t->is_text] > 0 &&
            !(row_prefix = mmt_arena_alloc(&ct->step, (size_t)B * sizeof *row_prefix, 8)))
            return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < L; i++) {
        mmt_block *y = &t->layers[i];
        if (i > 0 && deep) MMT_TRY(deep_prompt_insert(ct, t, i, y->x_in, B, T));
        for (int64_t b = 0; row_prefix && b < B; b++)
            row_prefix[b] = rp[b].prefix_tokens[!t->is_text] > 0 ? rp[b].prefix[!t->is_text] + 2 * i * C : NULL;
        y->row_keys = t->row_keys;
        y->row_n_prefix = row_prefix ? t->row_n_prefix : NULL;
        y->row_prefix = row_prefix;
        if (row_prefix) y->prefix_stride = L * 2 * C;
        float *out = !train && spare ? spare : ALLOC_F(&ct->step, NC);
        if (!out) return MMT_STATUS_OUT_OF_MEMORY;
        if (!train) spare = y->x_in;
        if (i + 1 < L) t->layers[i + 1].x_in = out;
        else t->x_out = out;
        if (train && !ct->opt.checkpointing) {
            y->scratch = &ct->scratch; /* what backward does not read */
            y->recompute = ct->opt.recompute;
            MMT_TRY(nn_block_forward(y, &t->bc, ct->ops, &ct->step, y->x_in, out, B, T, t->seed, i, 1));
        } else {
            mmt_arena_mark mark = mmt_arena_get_mark(&ct->scratch);
            /* train still applies dropout: backward's recomputation must see the same mask */
            mmt_status s = nn_block_forward(y, &t->bc, ct->ops, &ct->scratch, y->x_in, out, B, T, t->seed, i, train);
            mmt_arena_rewind(&ct->scratch, mark);
            y->row_keys = y->row_n_prefix = NULL; /* they live in this forward's arena */
            y->row_prefix = NULL;
            MMT_TRY(s);
        }
    }
    return MMT_OK;
}

/* pooled (B, C) rows -> final/post layernorm -> projection -> normalised t->emb (B, P). */
static mmt_status head_forward(mmt_clip_train *ct, ct_tower *t, int64_t B, int train) {
    int64_t C = t->cfg->hidden_size, P = ct->model->cfg.projection_dim;
    t->fin_mean = ALLOC_F(&ct->step, B);
    t->fin_rstd = ALLOC_F(&ct->step, B);
    t->hfin = ALLOC_F(&ct->step, B * C);
    t->proj_out = ALLOC_F(&ct->step, B * P);
    t->norm = ALLOC_F(&ct->step, B);
    t->emb = ALLOC_F(&ct->step, B * P);
    if (!t->fin_mean || !t->fin_rstd || !t->hfin || !t->proj_out || !t->norm || !t->emb)
        return MMT_STATUS_OUT_OF_MEMORY;
    ct->ops->layernorm_fwd(t->hfin, t->fin_mean, t->fin_rstd, t->pooled, t->fin_w, t->fin_b, B, C,
                           (float)t->cfg->layer_norm_eps);
    if (t->proj.lora) t->proj.lora->dropout_seed = nn_dropout_seed(t->seed, 1000003, 0);
    MMT_TRY(nn_linear_forward(&t->proj, ct->ops, &ct->step, t->proj_out, t->hfin, B, train));
    ct->ops->l2_normalize_fwd(t->emb, t->norm, t->proj_out, B, P);
    return MMT_OK;
}

/* The text prompt of row b: count and tensor (the view's own, or the row's). */
static int64_t row_text(const mmt_clip_train *ct, const ct_tower *t, int64_t b, const float **p) {
    *p = ct->rows ? ct->rows[b].text : t->prompt;
    return ct->rows ? ct->rows[b].text_tokens : t->n_prompt;
}

/* The text input with CoOp context vectors: for each row [BOS][ctx_1..ctx_M][caption][EOS]
 * (id -1 marks a context slot in t->ids), position embeddings over the whole row, t->pool
 * at the EOS. A caption that no longer fits the context length keeps its first tokens. Rows
 * are cut after the furthest EOS (causal attention: later positions cannot matter); shorter
 * rows are padded with their EOS id. Leaves t->B, t->T, t->ids, t->pooled, layer 0's x_in. */

static mmt_status text_prompt_forward(mmt_clip_train *ct, ct_tower *t, const int32_t *ids, int64_t B, int64_t L) {
    const mmt_clip_tower_config *c = t->cfg;
    int64_t C = c->hidden_size, T = 1;
    for (int64_t b = 0; b < B; b++) {
        const float *prompt;
        int64_t M = row_text(ct, t, b, &prompt);
        int64_t eos = mmt_clip_pool_position(ids + b * L, L, c->eos_token_id);
        int64_t kept = eos - 1 < c->max_positions - M - 2 ? eos - 1 : c->max_positions - M - 2;
        if (kept < 0) kept = 0;
        /* a row without context vectors (mixed batches) pools where it would alone */
        t->pool[b] = M > 0 ? 1 + M + kept : eos;
        if (t->pool[b] + 1 > T) T = t->pool[b] + 1;
    }
    t->B = B;
    t->T = T;
    t->ids = mmt_arena_alloc(&ct->step, (size_t)(B * T) * sizeof(int32_t), 64);
    float *x = ALLOC_F(&ct->step, B * T * C);
    t->pooled = ALLOC_F(&ct->step, B * C);
    const float **prompts = mmt_arena_alloc(&ct->step, (size_t)B * sizeof *prompts, 8);
    if (!t->ids || !x || !t->pooled || !prompts) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t b = 0; b < B; b++) {
        const float *prompt;
        int64_t M = row_text(ct, t, b, &prompt);
        prompts[b] = prompt;
        const int32_t *src = ids + b * L;
        int32_t *row = t->ids + b * T, eos_id = src[mmt_clip_pool_position(src, L, c->eos_token_id)];
        int64_t kept = t->pool[b] - 1 - M;
        row[0] = src[0];
        for (int64_t m = 0; m < M; m++) row[1 + m] = -1;
        for (int64_t j = 0; j < kept; j++) row[1 + M + j] = src[1 + j];
        for (int64_t j = t->pool[b]; j < T; j++) row[j] = eos_id;
    }
    nn_token_embed_fwd(ct->ops, x, t->ids, t->tok_emb, t->pos_emb, prompts, B, T, C);
    t->layers[0].x_in = x;
    return MMT_OK;
}

/* Per-row prefix counts of tower t for an inference forward over mixed rows (t->row_n_prefix). */
static mmt_status rows_prepare(mmt_clip_train *ct, ct_tower *t, int64_t B) {
    t->row_keys = t->row_n_prefix = NULL;
    if (!ct->rows) return MMT_OK;
    if (B > ct->n_rows)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "a batch of %lld rows, per-row prompts for %lld", (long long)B,
                        (long long)ct->n_rows);
    t->row_n_prefix = mmt_arena_alloc(&ct->step, (size_t)B * sizeof(int64_t), 8);
    if (!t->row_n_prefix) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t b = 0; b < B; b++) t->row_n_prefix[b] = ct->rows[b].prefix_tokens[!t->is_text];
    return MMT_OK;
}

static mmt_status text_forward(mmt_clip_train *ct, const int32_t *ids, int64_t B, int64_t L, int train) {
    ct_tower *t = &ct->text;
    const mmt_clip_tower_config *c = t->cfg;
    int64_t C = c->hidden_size;
    if (L <= 0 || L > c->max_positions)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "token sequence length %lld is outside 1..%lld",
                        (long long)L, (long long)c->max_positions);
    for (int64_t i = 0; i < B * L; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "token id %d at row %lld is outside the vocabulary (%lld)",
                            ids[i], (long long)(i / L), (long long)c->vocab_size);
    t->pool = mmt_arena_alloc(&ct->step, (size_t)B * sizeof(int64_t), 8);
    if (!t->pool) return MMT_STATUS_OUT_OF_MEMORY;
    MMT_TRY(rows_prepare(ct, t, B));
    int prompted = t->n_prompt > 0;
    for (int64_t b = 0; ct->rows && b < B; b++) prompted |= ct->rows[b].text_tokens > 0;
    if (prompted) {
        MMT_TRY(text_prompt_forward(ct, t, ids, B, L));
        MMT_TRY(encoder_forward(ct, t, B, t->T, train));
        for (int64_t b = 0; b < B; b++)
            memcpy(t->pooled + b * C, t->x_out + (b * t->T + t->pool[b]) * C, (size_t)C * sizeof(float));
        return head_forward(ct, t, B, train);
    }
    /* Causal attention: positions after the furthest pooled one cannot change the result. */
    int64_t T = 1;
    for (int64_t b = 0; b < B; b++) {
        t->pool[b] = mmt_clip_pool_position(ids + b * L, L, c->eos_token_id);
        if (t->pool[b] + 1 > T) T = t->pool[b] + 1;
    }
    t->B = B;
    t->T = T;
    t->ids = mmt_arena_alloc(&ct->step, (size_t)(B * T) * sizeof(int32_t), 64);
    float *x = ALLOC_F(&ct->step, B * T * C);
    t->pooled = ALLOC_F(&ct->step, B * C);
    if (!t->ids || !x || !t->pooled) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t b = 0; b < B; b++) memcpy(t->ids + b * T, ids + b * L, (size_t)T * sizeof(int32_t));
    nn_token_embed_fwd(ct->ops, x, t->ids, t->tok_emb, t->pos_emb, NULL, B, T, C);
    t->layers[0].x_in = x;
    MMT_TRY(encoder_forward(ct, t, B, T, train));
    for (int64_t b = 0; b < B; b++) memcpy(t->pooled + b * C, t->x_out + (b * T + t->pool[b]) * C, (size_t)C * sizeof(float));
    return head_forward(ct, t, B, train);
}

/* The vision tower up to its last encoder layer: leaves t->x_out (B, t->T, C). */
static mmt_status vision_encode(mmt_clip_train *ct, const float *pixels, int64_t B, int train) {
    ct_tower *t = &ct->vision;
    const mmt_clip_tower_config *c = t->cfg;
    const mmt_ops *ops = ct->ops;
    int64_t C = c->hidden_size, P = c->patch_size, S = c->image_size, Ch = c->num_channels;
    int64_t G = S / P, Np = G * G, Pv = t->n_prompt, K = Ch * P * P;
    MMT_TRY(rows_prepare(ct, t, B));
    for (int64_t b = 0; ct->rows && b < B; b++)
        if (ct->rows[b].visual_tokens > Pv) Pv = ct->rows[b].visual_tokens;
    int64_t T = Np + 1 + Pv;
    if (ct->rows && Pv > 0) { /* rows with fewer prompts end in padding */
        if (!(t->row_keys = mmt_arena_alloc(&ct->step, (size_t)B * sizeof(int64_t), 8))) return MMT_STATUS_OUT_OF_MEMORY;
        for (int64_t b = 0; b < B; b++) t->row_keys[b] = Np + 1 + ct->rows[b].visual_tokens;
    }
    t->B = B;
    t->T = T;
    t->patches = ALLOC_F(&ct->step, B * Np * K);
    float *emb = ALLOC_F(&ct->step, B * Np * C);
    t->x0 = ALLOC_F(&ct->step, B * T * C);
    t->pre_mean = ALLOC_F(&ct->step, B * T);
    t->pre_rstd = ALLOC_F(&ct->step, B * T);
    float *x = ALLOC_F(&ct->step, B * T * C);
    t->pooled = ALLOC_F(&ct->step, B * C);
    if (!t->patches || !emb || !t->x0 || !t->pre_mean || !t->pre_rstd || !x || !t->pooled)
        return MMT_STATUS_OUT_OF_MEMORY;
    ops->patchify_fwd(t->patches, pixels, B, Ch, S, S, P);
    if (t->patch.lora) t->patch.lora->dropout_seed = nn_dropout_seed(t->seed, 1000004, 0);
    /* an int8 model's inference: the integer patch embedding, unless this view trains the
     * patch weight (its own copy) or puts DoRA on it */
    const clip_tower *src = &ct->model->vision;
    int int8_patch = !train && src->patch_qw && t->patch.w == src->patch_weight && !t->patch.dw &&
                     !(t->patch.lora && t->patch.lora->magnitude);
    t->patch.qw = int8_patch ? src->patch_qw : NULL;
    MMT_TRY(nn_linear_forward(&t->patch, ops, &ct->step, emb, t->patches, B * Np, train));
    int64_t *n_prompt = mmt_arena_alloc(&ct->step, (size_t)B * sizeof *n_prompt, 8);
    const float **prompts = mmt_arena_alloc(&ct->step, (size_t)B * sizeof *prompts, 8);
    if (!n_prompt || !prompts) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t b = 0; b < B; b++) {
        int deep;
        n_prompt[b] = row_visual(ct, t, b, &prompts[b], &deep);
    }
    nn_vit_embed_fwd(ops, t->x0, emb, t->cls, t->pos_emb, n_prompt, prompts, B, Np, T, C);
    ops->layernorm_fwd(x, t->pre_mean, t->pre_rstd, t->x0, t->pre_w, t->pre_b, B * T, C, (float)c->layer_norm_eps);
    t->layers[0].x_in = x;
    return encoder_forward(ct, t, B, T, train);
}

static mmt_status vision_forward(mmt_clip_train *ct, const float *pixels, int64_t B, int train) {
    ct_tower *t = &ct->vision;
    int64_t C = t->cfg->hidden_size;
    MMT_TRY(vision_encode(ct, pixels, B, train));
    for (int64_t b = 0; b < B; b++) memcpy(t->pooled + b * C, t->x_out + b * t->T * C, (size_t)C * sizeof(float));
    return head_forward(ct, t, B, train);
}

/* Backward of one tower from t->demb (B, P). */
static mmt_status encoder_backward(mmt_clip_train *ct, ct_tower *t, float *dx);

static mmt_status tower_backward(mmt_clip_train *ct, ct_tower *t) {
    const mmt_ops *ops = ct->ops;
    const mmt_clip_tower_config *c = t->cfg;
    int64_t B = t->B, T = t->T, C = c->hidden_size;
    int64_t P = ct->model->cfg.projection_dim, N = B * T, L = c->num_layers;
    int below;
    int64_t lowest = lowest_trainable_layer(t, &below);
    mmt_arena *ar = &ct->step;
    /* head: normalise <- projection <- layernorm on pooled rows */
    float *dproj = ALLOC_F(ar, B * P), *dh = ALLOC_F(ar, B * C), *dpooled = ALLOC_F(ar, B * C);
    if (!dproj || !dh || !dpooled) return MMT_STATUS_OUT_OF_MEMORY;
    memset(dproj, 0, (size_t)(B * P) * sizeof(float));
    ct->ops->l2_normalize_bwd(dproj, t->demb, t->emb, t->norm, B, P);
    int need_below_head = lowest < L || below;
    memset(dh, 0, (size_t)(B * C) * sizeof(float));
    MMT_TRY(nn_linear_backward(&t->proj, ops, &ct->scratch, dh, dproj, t->hfin, B));
    memset(dpooled, 0, (size_t)(B * C) * sizeof(float));
    ops->layernorm_bwd(need_below_head ? dpooled : NULL, t->dfin_w, t->dfin_b, dh, t->pooled, t->fin_mean,
                       t->fin_rstd, t->fin_w, B, C);
    if (!need_below_head) return MMT_OK;
    /* encoder: dx flows down from the pooled rows */
    float *dx = ALLOC_F(ar, N * C);
    if (!dx) return MMT_STATUS_OUT_OF_MEMORY;
    memset(dx, 0, (size_t)(N * C) * sizeof(float));
    for (int64_t b = 0; b < B; b++) {
        int64_t pos = t->is_text ? t->pool[b] : 0;
        memcpy(dx + (b * T + pos) * C, dpooled + b * C, (size_t)C * sizeof(float));
    }
    return encoder_backward(ct, t, dx);
}

/* Backward from dx (B, T, C), the gradient at the last layer's output (overwritten), down
 * through the layers and the embeddings to whatever trains. */
static mmt_status encoder_backward(mmt_clip_train *ct, ct_tower *t, float *dx) {
    const mmt_ops *ops = ct->ops;
    const mmt_clip_tower_config *c = t->cfg;
    int64_t B = t->B, T = t->T, C = c->hidden_size, N = B * T, L = c->num_layers;
    int below;
    int64_t lowest = lowest_trainable_layer(t, &below);
    if (lowest >= L && !below) return MMT_OK;
    mmt_arena *ar = &ct->step;
    float *dx_next = ALLOC_F(ar, N * C);
    mmt_block_grads s;
    if (!dx_next || nn_block_grads_alloc(ar, &t->bc, B, T, t->layers[0].n_prefix, &s) != MMT_OK)
        return MMT_STATUS_OUT_OF_MEMORY;
    int64_t stop = below ? 0 : lowest;
    for (int64_t i = L - 1; i >= stop; i--) {
        mmt_block *y = &t->layers[i];
        int need_dx = i > stop || below;
        if (need_dx) memset(dx_next, 0, (size_t)(N * C) * sizeof(float));
        mmt_arena_mark mark = mmt_arena_get_mark(&ct->scratch);
        mmt_status st = MMT_OK;
        if (ct->opt.checkpointing) {
            float *out = ALLOC_F(&ct->scratch, N * C);
            st = out ? nn_block_forward(y, &t->bc, ops, &ct->scratch, y->x_in, out, B, T, t->seed, i, 1)
                     : MMT_STATUS_OUT_OF_MEMORY;
        }
        if (st == MMT_OK) st = nn_block_backward(y, &t->bc, ops, &ct->scratch, &s, y->x_in, dx, need_dx ? dx_next : NULL, B, T);
        mmt_arena_rewind(&ct->scratch, mark);
        MMT_TRY(st);
        if (need_dx && i > 0 && t->prompt_deep) /* layer i's own prompts replaced those rows */
            nn_rows_replace_bwd(ops, dx_next, t->dprompt ? t->dprompt + i * t->n_prompt * C : NULL, t->n_prompt, 1, B,
                                T, C);
        float *tmp = dx;
        dx = dx_next;
        dx_next = tmp;
    }
    if (!below) return MMT_OK;
    /* embeddings: dx is now the gradient at layer 0's input */
    if (t->is_text) {
        nn_token_embed_bwd(ops, t->dtok_emb, t->dprompt, t->dpos_emb, dx, t->ids, B, T, C);
        return MMT_OK;
    }
    int64_t Pv = t->n_prompt, Np = T - 1 - Pv;
    float *dx0 = ALLOC_F(ar, N * C);
    int train_patch = nn_linear_has_grads(&t->patch);
    float *demb = train_patch ? ALLOC_F(ar, B * Np * C) : NULL;
    if (!dx0 || (train_patch && !demb)) return MMT_STATUS_OUT_OF_MEMORY;
    memset(dx0, 0, (size_t)(N * C) * sizeof(float));
    ops->layernorm_bwd(dx0, t->dpre_w, t->dpre_b, dx, t->x0, t->pre_mean, t->pre_rstd, t->pre_w, N, C);
    nn_vit_embed_bwd(t->dcls, t->dpos_emb, t->dprompt, demb, dx0, Pv, B, Np, T, C);
    if (train_patch) MMT_TRY(nn_linear_backward(&t->patch, ops, &ct->scratch, NULL, demb, t->patches, B * Np));
    return MMT_OK;
}

/* ---- public forward / backward ---------------------------------------------------------- */

static mmt_status run_before_forward(mmt_clip_train *ct) {
    for (int i = 0; i < ct->n_hooks; i++)
        if (ct->hooks[i].before_forward) MMT_TRY(ct->hooks[i].before_forward(ct->hooks[i].ctx));
    return MMT_OK;
}

/* Whether a training forward_loss gathers every rank's embeddings (see the options). */
static int gathers(const mmt_clip_train *ct) {
    return ct->opt.gather_with_grad && ct->opt.comm && mmt_comm_size(ct->opt.comm) > 1 && !ct->eval_mode;
}

/* open_clip's gather_with_grad: every rank's embeddings (B, P) in rank order, img and txt
 * and, when distilling, the frozen model's (ti, tt), in one all-gather; then the loss over
 * the global batch with this rank's gradients (nn_contrastive_loss_gathered). The batch
 * sizes are gathered first, so that ranks that disagree all fail with the same message
 * instead of exchanging buffers of different lengths. */
static mmt_status gathered_loss(mmt_clip_train *ct, const float *ti, const float *tt, int64_t B, int64_t P) {
    mmt_comm *c = ct->opt.comm;
    int64_t R = mmt_comm_size(c), r = mmt_comm_rank(c), N = R * B;
    int64_t *rows = mmt_arena_alloc(&ct->step, (size_t)R * sizeof(int64_t), 64);
    if (!rows) return MMT_STATUS_OUT_OF_MEMORY;
    MMT_TRY(mmt_comm_allgather(c, &B, sizeof B, rows));
    for (int64_t q = 1; q < R; q++)
        if (rows[q] != rows[0])
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "gather-with-grad: rank 0 has %lld pairs in its micro-batch and "
                            "rank %lld has %lld; gathering the embeddings needs the same number on every rank",
                            (long long)rows[0], (long long)q, (long long)rows[q]);
    int64_t k = ti ? 4 : 2, n = B * P; /* blocks of one rank: img, txt (, ti, tt) */
    const float *mine[4] = {ct->vision.emb, ct->text.emb, ti, tt};
    float *send = ALLOC_F(&ct->step, k * n), *recv = ALLOC_F(&ct->step, R * k * n);
    float *all = ALLOC_F(&ct->step, k * N * P); /* block b of every rank: (N, P) at b * N * P */
    float *teacher = ti ? ALLOC_F(&ct->step, N * N) : NULL;
    if (!send || !recv || !all || (ti && !teacher)) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t b = 0; b < k; b++) memcpy(send + b * n, mine[b], (size_t)n * sizeof(float));
    MMT_TRY(mmt_comm_allgather(c, send, k * n * (int64_t)sizeof(float), recv));
    for (int64_t q = 0; q < R; q++)
        for (int64_t b = 0; b < k; b++)
            memcpy(all + b * N * P + q * n, recv + (q * k + b) * n, (size_t)n * sizeof(float));
    float scale = mmt_clip_train_scale(ct);
    if (ti) nn_clip_logits(teacher, all + 2 * N * P, all + 3 * N * P, N, P, scale);
    return nn_contrastive_loss_gathered(all, all + N * P, R, r, B, P, scale, teacher, ct->opt.distill_weight,
                                        &ct->scratch, &ct->last_loss, ct->vision.demb, ct->text.demb, &ct->dscale);
}

/* The loss with another model as teacher (the options' distill_teacher): task_weight x
 * clip_loss + nn_distill_loss against the teacher's embeddings of the same batch. The
 * teacher runs in its own view (its own arenas), forward only. */
static mmt_status teacher_loss(mmt_clip_train *ct, const float *pixels, const int32_t *ids, int64_t B, int64_t L) {
    if (gathers(ct))
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "distillation from another model cannot go with gather-with-grad");
    mmt_clip_train *tv = ct->opt.distill_teacher;
    int64_t P = ct->model->cfg.projection_dim, Pt = tv->model->cfg.projection_dim;
    float *ti = ALLOC_F(&ct->step, B * Pt), *tt = ALLOC_F(&ct->step, B * Pt);
    ct->text.demb = ALLOC_F(&ct->step, B * P);
    ct->vision.demb = ALLOC_F(&ct->step, B * P);
    if (!ti || !tt || !ct->text.demb || !ct->vision.demb) return MMT_STATUS_OUT_OF_MEMORY;
    memset(ct->text.demb, 0, (size_t)(B * P) * sizeof(float));
    memset(ct->vision.demb, 0, (size_t)(B * P) * sizeof(float));
    MMT_TRY(mmt_clip_train_encode_pixels(tv, pixels, B, ti));
    MMT_TRY(mmt_clip_train_encode_ids(tv, ids, B, L, tt));
    double task = 0, distill = 0, ds = 0;
    float w = ct->opt.task_weight, scale = mmt_clip_train_scale(ct);
    if (w != 0) {
        MMT_TRY(nn_contrastive_loss(ct->vision.emb, ct->text.emb, B, P, scale, NULL, 0, &ct->scratch, &task,
                                    ct->vision.demb, ct->text.demb, &ds));
        for (int64_t k = 0; w != 1 && k < B * P; k++) {
            ct->vision.demb[k] *= w;
            ct->text.demb[k] *= w;
        }
    }
    ct->dscale = w * ds;
    MMT_TRY(nn_distill_loss(ct->vision.emb, ct->text.emb, ti, tt, B, P, Pt, scale, mmt_clip_train_scale(tv),
                            ct->opt.distill_temperature, ct->opt.distill_weight, ct->opt.distill_cosine, &ct->scratch,
                            &distill, ct->vision.demb, ct->text.demb, &ct->dscale));
    ct->last_loss = w * task + distill;
    return MMT_OK;
}

mmt_status mmt_clip_train_forward_loss(mmt_clip_train *ct, const float *pixels,
                                       const int32_t *ids, int64_t B, int64_t L, uint64_t seed,
                                       double *loss) {
    if (B < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "a training batch needs at least one pair");
    if (ct->rows) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "per-row prompts are for inference; clear them to train");
    if (!ct->text.present || !ct->vision.present)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: training needs both towers (this checkpoint has only the %s tower)",
                        ct->model->dir, ct->text.present ? "text" : "vision");
    mmt_arena_reset(&ct->step);
    mmt_arena_reset(&ct->scratch);
    MMT_TRY(run_before_forward(ct));
    ct->text.seed = nn_dropout_seed(seed, 1, 0);
    ct->vision.seed = nn_dropout_seed(seed, 2, 0);
    MMT_TRY(text_forward(ct, ids, B, L, !ct->eval_mode));
    MMT_TRY(vision_forward(ct, pixels, B, !ct->eval_mode));
    if (ct->opt.distill_teacher) {
        MMT_TRY(teacher_loss(ct, pixels, ids, B, L));
        *loss = ct->last_loss;
        return MMT_OK;
    }
    int64_t P = ct->model->cfg.projection_dim;
    float *teacher = NULL, *ti = NULL, *tt = NULL;
    int gather = gathers(ct);
    if (ct->opt.distill_weight > 0) {
        ti = ALLOC_F(&ct->step, B * P);
        tt = ALLOC_F(&ct->step, B * P);
        teacher = gather ? NULL : ALLOC_F(&ct->step, B * B);
        if (!ti || !tt || (!gather && !teacher)) return MMT_STATUS_OUT_OF_MEMORY;
        if (ct->opt.base_teacher) {
            MMT_TRY(mmt_clip_train_encode_pixels(ct->opt.base_teacher, pixels, B, ti));
            MMT_TRY(mmt_clip_train_encode_ids(ct->opt.base_teacher, ids, B, L, tt));
        } else {
            MMT_TRY(mmt_clip_encode_pixels(ct->model, pixels, B, ti));
            MMT_TRY(mmt_clip_encode_ids(ct->model, ids, B, L, tt));
        }
        if (!gather) nn_clip_logits(teacher, ti, tt, B, P, mmt_clip_train_scale(ct));
    }
    ct->text.demb = ALLOC_F(&ct->step, B * P);
    ct->vision.demb = ALLOC_F(&ct->step, B * P);
    if (!ct->text.demb || !ct->vision.demb) return MMT_STATUS_OUT_OF_MEMORY;
    memset(ct->text.demb, 0, (size_t)(B * P) * sizeof(float));
    memset(ct->vision.demb, 0, (size_t)(B * P) * sizeof(float));
    ct->dscale = 0;
    if (gather)
        MMT_TRY(gathered_loss(ct, ti, tt, B, P));
    else
        MMT_TRY(nn_contrastive_loss(ct->vision.emb, ct->text.emb, B, P, mmt_clip_train_scale(ct), teacher,
                                    ct->opt.distill_weight, &ct->scratch, &ct->last_loss, ct->vision.demb,
                                    ct->text.demb, &ct->dscale));
    *loss = ct->last_loss;
    return MMT_OK;
}

mmt_status mmt_clip_train_backward(mmt_clip_train *ct) { return mmt_clip_train_backward_split(ct, NULL, NULL); }

int64_t mmt_clip_train_early_params(const mmt_clip_train *ct, uint8_t *early) {
    int gathered = ct->opt.gather_with_grad && ct->opt.comm && mmt_comm_size(ct->opt.comm) > 1;
    if (ct->n_hooks || gathered || !tower_has_grads(&ct->text) || !tower_has_grads(&ct->vision)) return 0;
    int64_t n = 0;
    for (int64_t i = 0; i < ct->n_params; i++) {
        /* the text tower's own tensors and adapters: text_model.*, text_projection (PEFT keys
         * carry a base_model.model. prefix) */
        const char *name = ct->params[i].name;
        early[i] = strstr(name, "text_model.") != NULL || strstr(name, "text_projection") != NULL;
        n += early[i];
    }
    return n;
}

mmt_status mmt_clip_train_backward_split(mmt_clip_train *ct, void (*ready)(void *user), void *user) {
    if (ct->eval_mode) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "backward on a view in evaluation mode");
    if (!ct->text.emb || !ct->vision.emb)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "backward without a forward_loss");
    if (ct->opt.train_logit_scale && ct->opt.fixed_temperature <= 0)
        ct->dlogit_scale += (float)(ct->dscale * exp((double)ct->logit_scale));
    if (tower_has_grads(&ct->text)) MMT_TRY(tower_backward(ct, &ct->text));
    if (ready) ready(user);
    if (tower_has_grads(&ct->vision)) MMT_TRY(tower_backward(ct, &ct->vision));
    for (int i = 0; i < ct->n_hooks; i++)
        if (ct->hooks[i].after_backward) MMT_TRY(ct->hooks[i].after_backward(ct->hooks[i].ctx));
    return MMT_OK;
}

mmt_status mmt_clip_train_encode_pixels(mmt_clip_train *ct, const float *pixels, int64_t B,
                                        float *out) {
    if (!ct->vision.present)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this checkpoint has no vision tower", ct->model->dir);
    if (B <= 0) return MMT_OK;
    mmt_arena_reset(&ct->step);
    mmt_arena_reset(&ct->scratch);
    MMT_TRY(run_before_forward(ct));
    MMT_TRY(vision_forward(ct, pixels, B, 0));
    memcpy(out, ct->vision.emb, (size_t)(B * ct->model->cfg.projection_dim) * sizeof(float));
    ct->vision.emb = ct->text.emb = NULL; /* no backward from an inference pass */
    return MMT_OK;
}

mmt_status mmt_clip_train_encode_ids(mmt_clip_train *ct, const int32_t *ids, int64_t B,
                                     int64_t L, float *out) {
    if (!ct->text.present)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this checkpoint has no text tower", ct->model->dir);
    if (B <= 0) return MMT_OK;
    mmt_arena_reset(&ct->step);
    mmt_arena_reset(&ct->scratch);
    MMT_TRY(run_before_forward(ct));
    MMT_TRY(text_forward(ct, ids, B, L, 0));
    memcpy(out, ct->text.emb, (size_t)(B * ct->model->cfg.projection_dim) * sizeof(float));
    ct->vision.emb = ct->text.emb = NULL;
    return MMT_OK;
}

mmt_status mmt_clip_train_vision_states_train(mmt_clip_train *ct, const float *pixels, int64_t B, uint64_t seed,
                                              float **states) {
    if (!ct->vision.present)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this checkpoint has no vision tower", ct->model->dir);
    if (B < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "a training batch needs at least one image");
    if (ct->rows) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "per-row prompts are for inference; clear them to train");
    mmt_arena_reset(&ct->step);
    mmt_arena_reset(&ct->scratch);
    MMT_TRY(run_before_forward(ct));
    ct_tower *t = &ct->vision;
    int64_t C = t->cfg->hidden_size;
    t->seed = nn_dropout_seed(seed, 2, 0);
    MMT_TRY(vision_encode(ct, pixels, B, !ct->eval_mode));
    int64_t N = B * t->T;
    t->fin_mean = ALLOC_F(&ct->step, N);
    t->fin_rstd = ALLOC_F(&ct->step, N);
    t->hfin = ALLOC_F(&ct->step, N * C);
    if (!t->fin_mean || !t->fin_rstd || !t->hfin) return MMT_STATUS_OUT_OF_MEMORY;
    ct->ops->layernorm_fwd(t->hfin, t->fin_mean, t->fin_rstd, t->x_out, t->fin_w, t->fin_b, N, C,
                           (float)t->cfg->layer_norm_eps);
    ct->text.emb = ct->vision.emb = NULL; /* no contrastive backward from here */
    ct->states_pending = 1;
    *states = t->hfin;
    return MMT_OK;
}

mmt_status mmt_clip_train_vision_states_backward(mmt_clip_train *ct, const float *dstates) {
    if (ct->eval_mode) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "backward on a view in evaluation mode");
    if (!ct->states_pending) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "vision states backward without its forward");
    ct->states_pending = 0;
    ct_tower *t = &ct->vision;
    int64_t C = t->cfg->hidden_size, N = t->B * t->T;
    if (tower_has_grads(t)) {
        int below;
        int need_below = lowest_trainable_layer(t, &below) < t->cfg->num_layers || below;
        float *dx = need_below ? ALLOC_F(&ct->step, N * C) : NULL;
        if (need_below && !dx) return MMT_STATUS_OUT_OF_MEMORY;
        if (dx) memset(dx, 0, (size_t)(N * C) * sizeof(float));
        ct->ops->layernorm_bwd(dx, t->dfin_w, t->dfin_b, dstates, t->x_out, t->fin_mean, t->fin_rstd, t->fin_w, N, C);
        if (dx) MMT_TRY(encoder_backward(ct, t, dx));
    }
    for (int i = 0; i < ct->n_hooks; i++)
        if (ct->hooks[i].after_backward) MMT_TRY(ct->hooks[i].after_backward(ct->hooks[i].ctx));
    return MMT_OK;
}

int mmt_clip_train_vision_trains(const mmt_clip_train *ct) { return tower_has_grads(&ct->vision); }

mmt_status mmt_clip_train_vision_states(mmt_clip_train *ct, const float *pixels, int64_t B, float *out) {
    if (!ct->vision.present)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this checkpoint has no vision tower", ct->model->dir);
    if (B <= 0) return MMT_OK;
    mmt_arena_reset(&ct->step);
    mmt_arena_reset(&ct->scratch);
    MMT_TRY(run_before_forward(ct));
    ct_tower *t = &ct->vision;
    MMT_TRY(vision_encode(ct, pixels, B, 0));
    ct->ops->layernorm_fwd(out, NULL, NULL, t->x_out, t->fin_w, t->fin_b, B * t->T, t->cfg->hidden_size,
                           (float)t->cfg->layer_norm_eps);
    ct->vision.emb = ct->text.emb = NULL;
    return MMT_OK;
}

/* ---- prompts, prefixes and hooks --------------------------------------------------------- */

const float *mmt_clip_train_token_embedding(const mmt_clip_train *ct) { return ct->text.tok_emb; }

mmt_status mmt_clip_train_set_text_prompt(mmt_clip_train *ct, int64_t M, const float *prompt, float *dprompt) {
    ct_tower *t = &ct->text;
    if (!t->present) return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: a text prompt needs the text tower", ct->model->dir);
    if (M < 0 || M > t->cfg->max_positions - 2)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%lld text prompt tokens: the context length %lld leaves room for 0..%lld",
                        (long long)M, (long long)t->cfg->max_positions, (long long)(t->cfg->max_positions - 2));
    if (M > 0 && t->n_prompt > 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the text tower already has prompt tokens");
    t->n_prompt = M;
    t->prompt = M > 0 ? prompt : NULL;
    t->dprompt = M > 0 ? dprompt : NULL;
    return MMT_OK;
}

mmt_status mmt_clip_train_set_visual_prompt(mmt_clip_train *ct, int64_t P, int deep, const float *prompt,
                                            float *dprompt) {
    ct_tower *t = &ct->vision;
    if (!t->present) return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: a visual prompt needs the vision tower", ct->model->dir);
    if (P < 0 || P > 4096)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%lld visual prompt tokens is outside 0..4096", (long long)P);
    if (P > 0 && t->n_prompt > 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the vision tower already has prompt tokens");
    t->n_prompt = P;
    t->prompt_deep = P > 0 && deep;
    t->prompt = P > 0 ? prompt : NULL;
    t->dprompt = P > 0 ? dprompt : NULL;
    return MMT_OK;
}

mmt_status mmt_clip_train_set_prefix(mmt_clip_train *ct, int vision, int64_t V, const float *kv, float *dkv) {
    ct_tower *t = vision ? &ct->vision : &ct->text;
    if (!t->present)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this checkpoint has no %s tower", ct->model->dir, vision ? "vision" : "text");
    int64_t L = t->cfg->num_layers, C = t->cfg->hidden_size;
    if (V < 0 || V > 4096)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%lld prefix tokens is outside 0..4096", (long long)V);
    if (V > 0 && t->layers[0].n_prefix > 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the %s tower already has prefixes", vision ? "vision" : "text");
    for (int64_t i = 0; i < L; i++) {
        mmt_block *y = &t->layers[i];
        y->n_prefix = V;
        y->prefix_stride = L * 2 * C;
        y->prefix = V > 0 ? kv + 2 * i * C : NULL;
        y->dprefix = V > 0 && dkv ? dkv + 2 * i * C : NULL;
    }
    return MMT_OK;
}

mmt_status mmt_clip_train_set_row_prompts(mmt_clip_train *ct, const mmt_clip_row_prompts *rows, int64_t B) {
    mmt_free(ct->rows);
    ct->rows = NULL;
    ct->n_rows = 0;
    if (!rows || B <= 0) return MMT_OK;
    if (ct->text.n_prompt > 0 || ct->vision.n_prompt > 0 || (ct->text.present && ct->text.layers[0].n_prefix > 0) ||
        (ct->vision.present && ct->vision.layers[0].n_prefix > 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "per-row prompts on a view that has prompts of its own");
    const mmt_clip_config *c = &ct->model->cfg;
    for (int64_t b = 0; b < B; b++) {
        const mmt_clip_row_prompts *r = &rows[b];
        if (r->text_tokens < 0 || r->visual_tokens < 0 || r->prefix_tokens[0] < 0 || r->prefix_tokens[1] < 0 ||
            (r->text_tokens > 0 && (!r->text || !ct->text.present || r->text_tokens > c->text.max_positions - 2)) ||
            (r->visual_tokens > 0 && (!r->visual || !ct->vision.present || r->visual_tokens > 4096)) ||
            (r->prefix_tokens[0] > 0 && (!r->prefix[0] || !ct->text.present || r->prefix_tokens[0] > 4096)) ||
            (r->prefix_tokens[1] > 0 && (!r->prefix[1] || !ct->vision.present || r->prefix_tokens[1] > 4096)))
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "per-row prompts of row %lld do not fit this model", (long long)b);
    }
    if (!(ct->rows = mmt_malloc((size_t)B * sizeof *ct->rows))) return MMT_STATUS_OUT_OF_MEMORY;
    memcpy(ct->rows, rows, (size_t)B * sizeof *ct->rows);
    ct->n_rows = B;
    return MMT_OK;
}

mmt_status mmt_clip_train_add_hooks(mmt_clip_train *ct, void *ctx, mmt_status (*before_forward)(void *ctx),
                                    mmt_status (*after_backward)(void *ctx)) {
    if (ct->n_hooks == CT_MAX_HOOKS) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "too many hooks on a training view");
    ct->hooks[ct->n_hooks++] = (ct_hook){ctx, before_forward, after_backward};
    return MMT_OK;
}

void mmt_clip_train_remove_hooks(mmt_clip_train *ct, void *ctx) {
    int k = 0;
    for (int i = 0; i < ct->n_hooks; i++)
        if (ct->hooks[i].ctx != ctx) ct->hooks[k++] = ct->hooks[i];
    ct->n_hooks = k;
}
