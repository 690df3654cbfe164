/*
 * git_train.c — GIT's training graph and the model interface PEFT methods attach through
 * (see git.h).
 *
 * forward_loss keeps, for backward: the vision tower's activations (in its CLIP view, when
 * anything there trains), the projection's and the text embeddings' inputs to their
 * LayerNorms with mean/rstd, every decoder block's activations (nn/block.h), the text rows
 * that predict a token and their logits' gradient. Backward walks the decoder down to the
 * lowest block with something trainable, and further down (embeddings, projection, vision
 * tower) only when something there trains.
 *
 * GIT's dropout (hidden_dropout_prob, attention_probs_dropout_prob) is not applied: training
 * computes what transformers computes in eval() mode (LoRA's own dropout applies).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "models/git_internal.h"
#include "models/git_modules.h"
#include "nn/loss.h"

#define ALLOC_F(ar, n) ((float *)mmt_arena_alloc((ar), (size_t)(n) * sizeof(float), 64))

static const char VISION_PREFIX[] = "git.image_encoder.";

/* ---- parameters ------------------------------------------------------------------------ */

static mmt_status add_param(mmt_git_run *r, const char *name, float *data, float *grad, int ndim, const int64_t *shape,
                            int no_decay) {
    for (int64_t i = 0; i < r->n_params; i++)
        if (strcmp(r->params[i].name, name) == 0)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "trainable tensor %s registered twice", name);
    int64_t nv = 0;
    const mmt_nn_param *vp = mmt_clip_train_params(r->vision, &nv);
    for (int64_t i = 0; i < nv; i++)
        if (strcmp(vp[i].name, name) == 0)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "trainable tensor %s registered twice", name);
    if (ndim < 0 || ndim > MMT_PARAM_MAX_DIMS)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "trainable tensor %s: %d dimensions", name, ndim);
    if (r->n_params == r->cap_params) {
        int64_t cap = r->cap_params ? 2 * r->cap_params : 64;
        mmt_nn_param *p = mmt_realloc(r->params, (size_t)cap * sizeof *p);
        if (!p) return MMT_STATUS_OUT_OF_MEMORY;
        r->params = p;
        r->cap_params = cap;
    }
    size_t len = strlen(name);
    char *copy = mmt_arena_alloc(&r->store, len + 1, 1);
    if (!copy) return MMT_STATUS_OUT_OF_MEMORY;
    memcpy(copy, name, len + 1);
    mmt_nn_param *p = &r->params[r->n_params++];
    memset(p, 0, sizeof *p);
    p->name = copy;
    p->data = data;
    p->grad = grad;
    p->ndim = ndim;
    p->numel = 1;
    for (int d = 0; d < ndim; d++) p->shape[d] = shape[d], p->numel *= shape[d];
    p->no_decay = no_decay;
    return MMT_OK;
}

const mmt_nn_param *mmt_git_run_params(mmt_git_run *r, int64_t *n) {
    int64_t nv = 0;
    const mmt_nn_param *vp = mmt_clip_train_params(r->vision, &nv);
    *n = r->n_params + nv;
    if (*n == 0) return NULL;
    /* rebuilt only when a tensor was registered since: the list stays valid for the trainer */
    if (r->merged && r->n_merged == *n && r->merged_vision == nv) return r->merged;
    mmt_free(r->merged);
    r->n_merged = r->merged_vision = 0;
    if (!(r->merged = mmt_malloc((size_t)*n * sizeof *r->merged))) {
        *n = 0;
        return NULL;
    }
    /* the vision view's tensors (full fine-tuning of the tower) come first: the tower comes
     * before the decoder in named_modules() */
    if (nv > 0) memcpy(r->merged, vp, (size_t)nv * sizeof *vp);
    if (r->n_params > 0) memcpy(r->merged + nv, r->params, (size_t)r->n_params * sizeof *r->params);
    r->n_merged = *n;
    r->merged_vision = nv;
    return r->merged;
}

void mmt_git_run_zero_grad(mmt_git_run *r) {
    int64_t n;
    const mmt_nn_param *p = mmt_git_run_params(r, &n);
    for (int64_t i = 0; i < n; i++)
        if (p[i].grad) memset(p[i].grad, 0, (size_t)p[i].numel * sizeof(float));
}

void mmt_git_run_set_eval(mmt_git_run *r, int eval) {
    r->eval_mode = eval != 0;
    mmt_clip_train_set_eval(r->vision, eval);
}

/* ---- module lookup --------------------------------------------------------------------- */

/* Layer index and the rest of a decoder module name "git.encoder.layer.<i>.<rest>", or -1. */
static int64_t decoder_layer(const mmt_git_run *r, const char *name, const char **rest) {
    static const char pre[] = "git.encoder.layer.";
    if (strncmp(name, pre, sizeof pre - 1) != 0) return -1;
    long long idx;
    int used = 0;
    if (sscanf(name + sizeof pre - 1, "%lld.%n", &idx, &used) != 1 || used == 0) return -1;
    char check[48];
    snprintf(check, sizeof check, "%lld.", idx);
    if ((size_t)used != strlen(check) || strncmp(name + sizeof pre - 1, check, (size_t)used) != 0) return -1;
    if (idx < 0 || idx >= r->m->cfg.num_layers) return -1;
    *rest = name + sizeof pre - 1 + used;
    return (int64_t)idx;
}

mmt_linear *mmt_git_run_linear(mmt_git_run *r, const char *name) {
    if (strncmp(name, VISION_PREFIX, sizeof VISION_PREFIX - 1) == 0)
        return mmt_clip_train_linear(r->vision, name + sizeof VISION_PREFIX - 1);
    if (strcmp(name, "git.visual_projection.visual_projection.0") == 0) return &r->proj;
    if (strcmp(name, "output") == 0) return &r->out;
    const char *rest;
    int64_t i = decoder_layer(r, name, &rest);
    if (i < 0) return NULL;
    mmt_block *y = &r->blocks[i];
    if (strcmp(rest, "attention.self.query") == 0) return &y->q;
    if (strcmp(rest, "attention.self.key") == 0) return &y->k;
    if (strcmp(rest, "attention.self.value") == 0) return &y->v;
    if (strcmp(rest, "attention.output.dense") == 0) return &y->o;
    if (strcmp(rest, "intermediate.dense") == 0) return &y->fc1;
    if (strcmp(rest, "output.dense") == 0) return &y->fc2;
    return NULL;
}

static mmt_bottleneck **bottleneck_slot(mmt_git_run *r, const char *name) {
    if (strncmp(name, VISION_PREFIX, sizeof VISION_PREFIX - 1) == 0)
        return mmt_clip_train_bottleneck_slot(r->vision, name + sizeof VISION_PREFIX - 1);
    const char *rest;
    int64_t i = decoder_layer(r, name, &rest);
    if (i < 0) return NULL;
    if (strcmp(rest, "adapter_attn") == 0) return &r->blocks[i].adapter_attn;
    if (strcmp(rest, "adapter_mlp") == 0) return &r->blocks[i].adapter_mlp;
    return NULL;
}

/* ---- full fine-tuning: owned copies of base tensors ------------------------------------- */

typedef struct full_ctx {
    mmt_git_run *r;
    mmt_status s;
    const char *under;      /* only this module's tensors; NULL: all */
    const char *key_prefix;
    int64_t added;
} full_ctx;

static void make_trainable(full_ctx *f, const float **w, float **dw, int64_t numel, int ndim, const int64_t *shape,
                           int no_decay, const char *fmt, ...) MMT_PRINTF(8, 9);

static void make_trainable(full_ctx *f, const float **w, float **dw, int64_t numel, int ndim, const int64_t *shape,
                           int no_decay, const char *fmt, ...) {
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
    if (*dw) return;
    snprintf(name, sizeof name, "%s%s", f->key_prefix, hf);
    float *copy = ALLOC_F(&f->r->store, numel);
    float *grad = mmt_arena_calloc(&f->r->store, (size_t)numel, sizeof(float));
    if (!copy || !grad) {
        f->s = MMT_STATUS_OUT_OF_MEMORY;
        return;
    }
    memcpy(copy, *w, (size_t)numel * sizeof(float));
    *w = copy;
    *dw = grad;
    f->added++;
    f->s = add_param(f->r, name, copy, grad, ndim, shape, no_decay);
}

static void full_linear(full_ctx *f, mmt_linear *l, const char *module) {
    int64_t ws[2] = {l->out, l->in}, bs[1] = {l->out};
    if (f->s == MMT_OK && l->qw) {
        f->s = mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: its weight is quantized and cannot be trained; train an adapter "
                                                "(LoRA, IA3...) on the quantized base, or load the fp32 model", module);
        return;
    }
    make_trainable(f, &l->w, &l->dw, l->in * l->out, 2, ws, 0, "%s.weight", module);
    if (l->b) make_trainable(f, &l->b, &l->db, l->out, 1, bs, 1, "%s.bias", module);
}

static void full_layernorm(full_ctx *f, const float **w, float **dw, const float **b, float **db, int64_t C,
                           const char *module) {
    int64_t s[1] = {C};
    make_trainable(f, w, dw, C, 1, s, 1, "%s.weight", module);
    make_trainable(f, b, db, C, 1, s, 1, "%s.bias", module);
}

static void walk_decoder(full_ctx *f) {
    mmt_git_run *r = f->r;
    const mmt_git_config *c = &r->m->cfg;
    int64_t C = c->hidden_size;
    int64_t ws[2] = {c->vocab_size, C}, ps[2] = {c->max_positions, C};
    char name[160];
    make_trainable(f, &r->word_emb, &r->dword_emb, c->vocab_size * C, 2, ws, 1, "git.embeddings.word_embeddings.weight");
    make_trainable(f, &r->pos_emb, &r->dpos_emb, c->max_positions * C, 2, ps, 1,
                   "git.embeddings.position_embeddings.weight");
    full_layernorm(f, &r->emb_ln_w, &r->demb_ln_w, &r->emb_ln_b, &r->demb_ln_b, C, "git.embeddings.LayerNorm");
    for (int64_t i = 0; i < c->num_layers; i++) {
        mmt_block *y = &r->blocks[i];
        long long l = (long long)i;
        struct { mmt_linear *lin; const char *what; } lins[3] = {
            {&y->q, "attention.self.query"}, {&y->k, "attention.self.key"}, {&y->v, "attention.self.value"}};
        for (int j = 0; j < 3; j++) {
            snprintf(name, sizeof name, "git.encoder.layer.%lld.%s", l, lins[j].what);
            full_linear(f, lins[j].lin, name);
        }
        snprintf(name, sizeof name, "git.encoder.layer.%lld.attention.output.dense", l);
        full_linear(f, &y->o, name);
        snprintf(name, sizeof name, "git.encoder.layer.%lld.attention.output.LayerNorm", l);
        full_layernorm(f, &y->ln1_w, &y->dln1_w, &y->ln1_b, &y->dln1_b, C, name);
        snprintf(name, sizeof name, "git.encoder.layer.%lld.intermediate.dense", l);
        full_linear(f, &y->fc1, name);
        snprintf(name, sizeof name, "git.encoder.layer.%lld.output.dense", l);
        full_linear(f, &y->fc2, name);
        snprintf(name, sizeof name, "git.encoder.layer.%lld.output.LayerNorm", l);
        full_layernorm(f, &y->ln2_w, &y->dln2_w, &y->ln2_b, &y->dln2_b, C, name);
    }
    full_linear(f, &r->proj, "git.visual_projection.visual_projection.0");
    full_layernorm(f, &r->proj_ln_w, &r->dproj_ln_w, &r->proj_ln_b, &r->dproj_ln_b, C,
                   "git.visual_projection.visual_projection.1");
    full_linear(f, &r->out, "output");
}

/* The vision tower's tensors through its CLIP view, named git.image_encoder.<CLIP name>. */
static mmt_status vision_trainable(mmt_git_run *r, const char *under, const char *key_prefix, int64_t *added) {
    char prefix[320];
    snprintf(prefix, sizeof prefix, "%s%s", key_prefix, VISION_PREFIX);
    const char *module = "vision_model";
    if (under) {
        size_t n = sizeof VISION_PREFIX - 1;
        if (strncmp(under, VISION_PREFIX, n) == 0) module = under + n;
        else if (strcmp(under, "git") == 0 || strcmp(under, "git.image_encoder") == 0) module = "vision_model";
        else return MMT_OK;
    }
    *added = 0;
    mmt_status s = mmt_clip_train_make_module_trainable(r->vision, module, prefix, added);
    if (s == MMT_STATUS_NOT_FOUND) s = MMT_OK; /* nothing (more) there */
    return s;
}

mmt_status mmt_git_run_make_full(mmt_git_run *r) {
    full_ctx f = {r, MMT_OK, NULL, "", 0};
    int64_t added = 0;
    MMT_TRY(vision_trainable(r, NULL, "", &added));
    walk_decoder(&f);
    return f.s;
}

static mmt_status make_module_trainable(mmt_git_run *r, const char *module, const char *key_prefix, int64_t *n_added) {
    full_ctx f = {r, MMT_OK, module, key_prefix ? key_prefix : "", 0};
    int64_t vision = 0;
    MMT_TRY(vision_trainable(r, module, f.key_prefix, &vision));
    walk_decoder(&f);
    if (n_added) *n_added = f.added + vision;
    if (f.s == MMT_OK && f.added + vision == 0)
        return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: no tensors of this module can be trained (or they already are)", module);
    return f.s;
}

/* ---- forward and loss ---------------------------------------------------------------------- */

static int decoder_below_trains(const mmt_git_run *r) {
    return r->dword_emb || r->dpos_emb || r->demb_ln_w || r->dprompt || r->dproj_ln_w || nn_linear_has_grads(&r->proj) ||
           mmt_clip_train_vision_trains(r->vision);
}

static int64_t lowest_trainable_block(const mmt_git_run *r) {
    for (int64_t i = 0; i < r->m->cfg.num_layers; i++)
        if (nn_block_has_grads(&r->blocks[i])) return i;
    return r->m->cfg.num_layers;
}

static mmt_status run_before_forward(mmt_git_run *r) {
    for (int i = 0; i < r->n_hooks; i++)
        if (r->hooks[i].before_forward) MMT_TRY(r->hooks[i].before_forward(r->hooks[i].ctx));
    return MMT_OK;
}

mmt_status mmt_git_run_forward_loss(mmt_git_run *r, const float *pixels, const int32_t *ids, const int32_t *labels,
                                    int64_t B, int64_t L, float label_smoothing, uint64_t seed, double *loss) {
    const mmt_git_config *c = &r->m->cfg;
    int64_t room = c->max_positions - r->blocks[0].n_prefix - r->n_prompt;
    if (B < 1 || L < 2 || L > room)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "GIT training: %lld rows of %lld tokens: need >= 1 row and "
                        "2..%lld tokens", (long long)B, (long long)L, (long long)room);
    if (!(label_smoothing >= 0 && label_smoothing < 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "label smoothing %g is outside [0, 1)", (double)label_smoothing);
    for (int64_t i = 0; i < B * L; i++) {
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "token id %d is outside the vocabulary (%lld)", ids[i],
                            (long long)c->vocab_size);
        if (labels[i] != -100 && (labels[i] < 0 || labels[i] >= c->vocab_size))
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "label %d is neither -100 nor a token id", labels[i]);
    }
    const mmt_ops *ops = r->ops;
    git_saved *sv = &r->saved;
    int train = !r->eval_mode;
    /* P prompt rows in front of the text; PEFT's labels are -100 there, so the last of them
     * predicts labels[:, 0] and the text rows before the last predict the rest */
    int64_t P = r->n_prompt, Lt = P + L, first = P > 0 ? P - 1 : 0, Rb = P > 0 ? L : L - 1, lab0 = P > 0 ? 0 : 1;
    int64_t Ni = mmt_git_image_tokens_of(c), C = c->hidden_size, Cv = c->vision.hidden_size, T = Ni + Lt, V = c->vocab_size;
    mmt_arena_reset(&r->step);
    mmt_arena_reset(&r->scratch);
    memset(sv, 0, sizeof *sv);
    MMT_TRY(run_before_forward(r));
    *sv = (git_saved){.B = B, .L = L, .T = T, .Ni = Ni, .P = P, .Lt = Lt, .first = first, .Rb = Rb, .R = B * Rb,
                      .seed = seed};
    /* image features */
    sv->vision_train = train && mmt_clip_train_vision_trains(r->vision);
    if (sv->vision_train) {
        MMT_TRY(mmt_clip_train_vision_states_train(r->vision, pixels, B, seed, &sv->states));
    } else {
        if (!(sv->states = ALLOC_F(&r->step, B * Ni * Cv))) return MMT_STATUS_OUT_OF_MEMORY;
        MMT_TRY(mmt_clip_train_vision_states(r->vision, pixels, B, sv->states));
    }
    int64_t NI = B * Ni, NL = B * Lt;
    sv->proj_pre = ALLOC_F(&r->step, NI * C);
    sv->proj_mean = ALLOC_F(&r->step, NI);
    sv->proj_rstd = ALLOC_F(&r->step, NI);
    sv->emb_pre = ALLOC_F(&r->step, NL * C);
    sv->emb_mean = ALLOC_F(&r->step, NL);
    sv->emb_rstd = ALLOC_F(&r->step, NL);
    float *feats = ALLOC_F(&r->step, NI * C), *text = ALLOC_F(&r->step, NL * C), *x = ALLOC_F(&r->step, B * T * C);
    sv->ids = mmt_arena_alloc(&r->step, (size_t)(B * L) * sizeof(int32_t), 64);
    sv->targets = mmt_arena_alloc(&r->step, (size_t)sv->R * sizeof(int32_t), 64);
    if (!sv->proj_pre || !sv->proj_mean || !sv->proj_rstd || !sv->emb_pre || !sv->emb_mean || !sv->emb_rstd || !feats ||
        !text || !x || !sv->ids || !sv->targets)
        return MMT_STATUS_OUT_OF_MEMORY;
    if (r->proj.lora) r->proj.lora->dropout_seed = nn_dropout_seed(seed, 3000001, 0);
    MMT_TRY(nn_linear_forward(&r->proj, ops, &r->step, sv->proj_pre, sv->states, NI, train));
    ops->layernorm_fwd(feats, sv->proj_mean, sv->proj_rstd, sv->proj_pre, r->proj_ln_w, r->proj_ln_b, NI, C,
                       (float)c->vision.layer_norm_eps);
    /* text embeddings */
    memcpy(sv->ids, ids, (size_t)(B * L) * sizeof(int32_t));
    git_text_embed_pre(r, sv->emb_pre, ids, B, L, P, r->blocks[0].n_prefix); /* after a prefix */
    ops->layernorm_fwd(text, sv->emb_mean, sv->emb_rstd, sv->emb_pre, r->emb_ln_w, r->emb_ln_b, NL, C,
                       (float)c->layer_norm_eps);
    for (int64_t b = 0; b < B; b++) {
        ops->buffer_copy(x + b * T * C, feats + b * Ni * C, (size_t)(Ni * C) * sizeof(float));
        ops->buffer_copy(x + (b * T + Ni) * C, text + b * Lt * C, (size_t)(Lt * C) * sizeof(float));
    }
    /* decoder */
    uint64_t dseed = nn_dropout_seed(seed, 3, 0);
    for (int64_t i = 0; i < c->num_layers; i++) {
        mmt_block *y = &r->blocks[i];
        y->x_in = x;
        float *out = ALLOC_F(&r->step, B * T * C);
        if (!out) return MMT_STATUS_OUT_OF_MEMORY;
        if (train) {
            y->scratch = &r->scratch; /* what backward does not read */
            MMT_TRY(nn_block_forward(y, &r->bc, ops, &r->step, x, out, B, T, dseed, i, 1));
        } else {
            mmt_arena_mark mark = mmt_arena_get_mark(&r->scratch);
            mmt_status s = nn_block_forward(y, &r->bc, ops, &r->scratch, x, out, B, T, dseed, i, 0);
            mmt_arena_rewind(&r->scratch, mark);
            MMT_TRY(s);
        }
        x = out;
    }
    sv->x_out = x;
    /* the rows that predict a token: position Ni + first + j predicts labels[:, j + lab0] */
    sv->h = ALLOC_F(&r->step, sv->R * C);
    sv->logits = ALLOC_F(&r->step, sv->R * V);
    if (!sv->h || !sv->logits) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t b = 0; b < B; b++) {
        ops->buffer_copy(sv->h + b * Rb * C, x + (b * T + Ni + first) * C, (size_t)(Rb * C) * sizeof(float));
        for (int64_t j = 0; j < Rb; j++) {
            int32_t t = labels[b * L + j + lab0];
            sv->targets[b * Rb + j] = t == -100 ? -1 : t;
        }
    }
    if (r->out.lora) r->out.lora->dropout_seed = nn_dropout_seed(seed, 3000002, 0);
    MMT_TRY(nn_linear_forward(&r->out, ops, &r->step, sv->logits, sv->h, sv->R, train));
    /* the gradient at the logits replaces them (backward needs only it) */
    MMT_TRY(nn_lm_loss(sv->logits, sv->targets, sv->R, V, label_smoothing, loss, train ? sv->logits : NULL, NULL));
    sv->pending = train;
    return MMT_OK;
}

/* Backward of git_text_embed_pre given demb (B, P + L, C): the gradients that are kept +=:
 * the prompt's (summed over the rows), the token embeddings' at ids (B, L), the positions'. */
static void text_embed_backward(mmt_git_run *r, const float *demb, const int32_t *ids, int64_t B, int64_t L, int64_t P) {
    const mmt_ops *ops = r->ops;
    int64_t C = r->m->cfg.hidden_size, Lt = P + L, pos0 = r->blocks[0].n_prefix;
    for (int64_t b = 0; b < B; b++) {
        const float *row = demb + b * Lt * C;
        if (P > 0 && r->dprompt) ops->add_fwd(r->dprompt, r->dprompt, row, P * C);
        if (r->dword_emb) ops->embedding_bwd(r->dword_emb, row + P * C, ids + b * L, L, C);
        if (r->dpos_emb) ops->add_fwd(r->dpos_emb + pos0 * C, r->dpos_emb + pos0 * C, row, Lt * C);
    }
}

mmt_status mmt_git_run_backward(mmt_git_run *r) {
    git_saved *sv = &r->saved;
    if (r->eval_mode) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "backward in evaluation mode");
    if (!sv->pending) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "backward without a forward_loss");
    sv->pending = 0;
    const mmt_git_config *c = &r->m->cfg;
    const mmt_ops *ops = r->ops;
    mmt_arena *ar = &r->step;
    int64_t B = sv->B, L = sv->L, T = sv->T, Ni = sv->Ni, C = c->hidden_size, N = B * T, NI = B * Ni;
    int64_t P = sv->P, Lt = sv->Lt, NL = B * Lt, Rb = sv->Rb;
    int64_t layers = c->num_layers, lowest = lowest_trainable_block(r);
    int below = decoder_below_trains(r);
    int need_h = lowest < layers || below;
    float *dh = need_h ? ALLOC_F(ar, sv->R * C) : NULL;
    if (need_h && !dh) return MMT_STATUS_OUT_OF_MEMORY;
    if (dh) memset(dh, 0, (size_t)(sv->R * C) * sizeof(float));
    MMT_TRY(nn_linear_backward(&r->out, ops, &r->scratch, dh, sv->logits, sv->h, sv->R));
    if (need_h) {
        float *dx = ALLOC_F(ar, N * C), *dx_next = ALLOC_F(ar, N * C);
        mmt_block_grads s;
        if (!dx || !dx_next || nn_block_grads_alloc(ar, &r->bc, B, T, r->blocks[0].n_prefix, &s) != MMT_OK)
            return MMT_STATUS_OUT_OF_MEMORY;
        memset(dx, 0, (size_t)(N * C) * sizeof(float));
        for (int64_t b = 0; b < B; b++)
            ops->buffer_copy(dx + (b * T + Ni + sv->first) * C, dh + b * Rb * C, (size_t)(Rb * C) * sizeof(float));
        int64_t stop = below ? 0 : lowest;
        for (int64_t i = layers - 1; i >= stop; i--) {
            mmt_block *y = &r->blocks[i];
            int need_dx = i > stop || below;
            if (need_dx) memset(dx_next, 0, (size_t)(N * C) * sizeof(float));
            mmt_arena_mark mark = mmt_arena_get_mark(&r->scratch);
            mmt_status st = nn_block_backward(y, &r->bc, ops, &r->scratch, &s, y->x_in, dx, need_dx ? dx_next : NULL, B, T);
            mmt_arena_rewind(&r->scratch, mark);
            MMT_TRY(st);
            float *tmp = dx;
            dx = dx_next;
            dx_next = tmp;
        }
        if (below) { /* dx: the gradient at the decoder's input [image features; text] */
            float *dtext = ALLOC_F(ar, NL * C), *dfeat = ALLOC_F(ar, NI * C);
            if (!dtext || !dfeat) return MMT_STATUS_OUT_OF_MEMORY;
            for (int64_t b = 0; b < B; b++) {
                ops->buffer_copy(dfeat + b * Ni * C, dx + b * T * C, (size_t)(Ni * C) * sizeof(float));
                ops->buffer_copy(dtext + b * Lt * C, dx + (b * T + Ni) * C, (size_t)(Lt * C) * sizeof(float));
            }
            /* text: LayerNorm <- [prompt rows; token embeddings] + position embeddings */
            int emb = r->dword_emb || r->dpos_emb || r->dprompt;
            float *demb = emb ? ALLOC_F(ar, NL * C) : NULL;
            if (emb && !demb) return MMT_STATUS_OUT_OF_MEMORY;
            if (demb) memset(demb, 0, (size_t)(NL * C) * sizeof(float));
            if (emb || r->demb_ln_w)
                ops->layernorm_bwd(demb, r->demb_ln_w, r->demb_ln_b, dtext, sv->emb_pre, sv->emb_mean, sv->emb_rstd,
                                   r->emb_ln_w, NL, C);
            if (demb) text_embed_backward(r, demb, sv->ids, B, L, P);
            /* image: LayerNorm <- Linear <- vision states */
            int vision = sv->vision_train, proj = nn_linear_has_grads(&r->proj) || vision;
            float *dpre = proj ? ALLOC_F(ar, NI * C) : NULL;
            if (proj && !dpre) return MMT_STATUS_OUT_OF_MEMORY;
            if (dpre) memset(dpre, 0, (size_t)(NI * C) * sizeof(float));
            if (proj || r->dproj_ln_w)
                ops->layernorm_bwd(dpre, r->dproj_ln_w, r->dproj_ln_b, dfeat, sv->proj_pre, sv->proj_mean, sv->proj_rstd,
                                   r->proj_ln_w, NI, C);
            if (proj) {
                int64_t Cv = c->vision.hidden_size;
                float *dstates = vision ? ALLOC_F(ar, NI * Cv) : NULL;
                if (vision && !dstates) return MMT_STATUS_OUT_OF_MEMORY;
                if (dstates) memset(dstates, 0, (size_t)(NI * Cv) * sizeof(float));
                MMT_TRY(nn_linear_backward(&r->proj, ops, &r->scratch, dstates, dpre, sv->states, NI));
                if (vision) MMT_TRY(mmt_clip_train_vision_states_backward(r->vision, dstates));
            }
        }
    }
    for (int i = 0; i < r->n_hooks; i++)
        if (r->hooks[i].after_backward) MMT_TRY(r->hooks[i].after_backward(r->hooks[i].ctx));
    return MMT_OK;
}

/* ---- the interface PEFT methods see ------------------------------------------------------- */

static mmt_status iface_list_modules(void *ctx, mmt_module_info **out, int64_t *n) {
    return mmt_git_modules(&((mmt_git_run *)ctx)->m->cfg, out, n);
}
static mmt_linear *iface_linear(void *ctx, const char *m) { return mmt_git_run_linear(ctx, m); }
static mmt_bottleneck **iface_bottleneck_slot(void *ctx, const char *m) { return bottleneck_slot(ctx, m); }
static mmt_status iface_add_param(void *ctx, const char *name, float *data, float *grad, int ndim, const int64_t *shape,
                                  int no_decay) {
    return add_param(ctx, name, data, grad, ndim, shape, no_decay);
}
static const mmt_nn_param *iface_params(void *ctx, int64_t *n) { return mmt_git_run_params(ctx, n); }
static mmt_status iface_make_module_trainable(void *ctx, const char *module, const char *key_prefix, int64_t *n_added) {
    return make_module_trainable(ctx, module, key_prefix, n_added);
}
static const float *iface_token_embedding(void *ctx) { return ((mmt_git_run *)ctx)->word_emb; }
static mmt_status iface_add_hooks(void *ctx, void *hook_ctx, mmt_status (*before)(void *), mmt_status (*after)(void *)) {
    mmt_git_run *r = ctx;
    if (r->n_hooks == GIT_MAX_HOOKS) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "too many hooks on a GIT run");
    r->hooks[r->n_hooks++] = (git_hook){hook_ctx, before, after};
    return MMT_OK;
}
/* Prefix tuning (PEFT's past_key_values) of the decoder (vision 0), or of the image encoder
 * through its CLIP view. Text positions then start at V, as transformers counts them after a
 * cache of V entries. */
static mmt_status iface_set_prefix(void *ctx, int vision, int64_t V, const float *kv, float *dkv) {
    mmt_git_run *r = ctx;
    if (vision) return mmt_clip_train_set_prefix(r->vision, 1, V, kv, dkv);
    const mmt_git_config *c = &r->m->cfg;
    int64_t L = c->num_layers, C = c->hidden_size;
    if (V < 0 || V >= c->max_positions)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%lld prefix tokens: the decoder has %lld positions", (long long)V,
                        (long long)c->max_positions);
    if (V > 0 && r->blocks[0].n_prefix > 0) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the decoder already has prefixes");
    for (int64_t i = 0; i < L; i++) {
        mmt_block *y = &r->blocks[i];
        y->n_prefix = V;
        y->prefix_stride = L * 2 * C;
        y->prefix = V > 0 ? kv + 2 * i * C : NULL;
        y->dprefix = V > 0 && dkv ? dkv + 2 * i * C : NULL;
    }
    return MMT_OK;
}

/* Prompt tuning (PEFT's PROMPT_TUNING on GitForCausalLM): M rows (M, C) in front of every
 * row's text embeddings, before the position embeddings and GitEmbeddings' LayerNorm, as
 * PeftModelForCausalLM.forward passes inputs_embeds = [prompt; word_embeddings(input_ids)]. */
static mmt_status iface_set_text_prompt(void *ctx, int64_t M, const float *prompt, float *dprompt) {
    mmt_git_run *r = ctx;
    const mmt_git_config *c = &r->m->cfg;
    if (M < 0 || M + r->blocks[0].n_prefix >= c->max_positions)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%lld prompt tokens: the decoder has %lld text positions", (long long)M,
                        (long long)c->max_positions);
    if (M > 0 && r->n_prompt > 0) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the decoder already has prompt tokens");
    r->n_prompt = M;
    r->prompt = M > 0 ? prompt : NULL;
    r->dprompt = M > 0 ? dprompt : NULL;
    return MMT_OK;
}

static void iface_remove_hooks(void *ctx, void *hook_ctx) {
    mmt_git_run *r = ctx;
    int k = 0;
    for (int i = 0; i < r->n_hooks; i++)
        if (r->hooks[i].ctx != hook_ctx) r->hooks[k++] = r->hooks[i];
    r->n_hooks = k;
}

void git_run_train_init(mmt_git_run *r) {
    const mmt_git *m = r->m;
    r->word_emb = m->word_emb, r->pos_emb = m->pos_emb, r->emb_ln_w = m->emb_ln_w, r->emb_ln_b = m->emb_ln_b;
    r->proj_ln_w = m->proj_ln_w, r->proj_ln_b = m->proj_ln_b;
    mmt_arena_init(&r->store, (size_t)64 << 10);
    r->iface = (mmt_model_iface){.ctx = r, .source = m->dir, .ops = m->ops, .list_modules = iface_list_modules,
                                 .linear = iface_linear, .bottleneck_slot = iface_bottleneck_slot,
                                 .add_param = iface_add_param, .params = iface_params,
                                 .make_module_trainable = iface_make_module_trainable,
                                 .token_embedding = iface_token_embedding, .set_text_prompt = iface_set_text_prompt,
                                 .set_prefix = iface_set_prefix,
                                 .add_hooks = iface_add_hooks,
                                 .remove_hooks = iface_remove_hooks};
    mmt_git_model_dims(&m->cfg, &r->iface.dims);
}

void git_run_train_free(mmt_git_run *r) {
    mmt_arena_free(&r->store);
    mmt_free(r->params);
    mmt_free(r->merged);
}

const mmt_model_iface *mmt_git_run_iface(mmt_git_run *r) { return &r->iface; }
