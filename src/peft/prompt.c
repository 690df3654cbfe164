/* prompt.c — prompt and prefix tuning tensors on a model view (see prompt.h). */
#include "peft/prompt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "ops/ops.h"
#include "peft/peft_keys.h"

#define VISUAL_SHALLOW_KEY "mmtune.visual_prompt.shallow"
#define VISUAL_DEEP_KEY "mmtune.visual_prompt.deep."
#define PREFIX_VISION_KEY "mmtune.prefix.vision"
#define ENCODER_KEY "mmtune.prefix_encoder."

static const char *const TOWER_NAME[2] = {"text", "vision"};

/* ---- random numbers (splitmix64) -------------------------------------------------------- */

static double uniform01(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static void fill_normal(float *x, int64_t n, double std, uint64_t *rng) {
    for (int64_t i = 0; i < n; i++) { /* Box-Muller; 1 - u keeps the log finite */
        double u = 1.0 - uniform01(rng), v = uniform01(rng);
        x[i] = (float)(std * sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v));
    }
}

static void fill_uniform(float *x, int64_t n, double bound, uint64_t *rng) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)((2.0 * uniform01(rng) - 1.0) * bound);
}

/* ---- construction ----------------------------------------------------------------------- */

static float *store_floats(mmt_prompt *p, int64_t n) {
    float *x = mmt_arena_alloc(&p->store, (size_t)(n > 0 ? n : 1) * sizeof(float), 64);
    if (x) memset(x, 0, (size_t)(n > 0 ? n : 1) * sizeof(float));
    return x;
}

/* Registers data/grad with the view under name when trainable. */
static mmt_status reg(mmt_prompt *p, const char *name, float *data, float *grad, int ndim, int64_t d0, int64_t d1,
                      int no_decay) {
    if (!p->settings.trainable) return MMT_OK;
    int64_t shape[2] = {d0, d1};
    return p->model->add_param(p->model->ctx, name, data, grad, ndim, shape, no_decay);
}

/* The raw key of a tower's prefixes (PEFT's name for the text tower). */
static const char *prefix_key(int tower) { return tower == 0 ? MMT_PEFT_PROMPT_KEY : PREFIX_VISION_KEY; }

static void encoder_key(int tower, const char *what, char *out, size_t cap) {
    snprintf(out, cap, ENCODER_KEY "%s.%s", TOWER_NAME[tower], what);
}

static mmt_status prefix_create(mmt_prompt *p, int tower, const mmt_tower_dims *c, uint64_t *rng) {
    const mmt_prompt_settings *s = &p->settings;
    mmt_prompt_prefix *x = &p->prefix[tower];
    int tr = s->trainable;
    x->V = s->prefix_tokens;
    x->L = c->layers;
    x->C = c->hidden;
    x->E = s->encoder_hidden_size > 0 ? s->encoder_hidden_size : c->hidden;
    x->projection = s->prefix_projection;
    int64_t V = x->V, C = x->C, E = x->E, O = x->L * 2 * x->C;
    x->kv = store_floats(p, V * O);
    x->dkv = tr ? store_floats(p, V * O) : NULL;
    if (!x->kv || (tr && !x->dkv)) return MMT_STATUS_OUT_OF_MEMORY;
    if (!x->projection) {
        fill_normal(x->kv, V * O, 1.0, rng);
        return reg(p, prefix_key(tower), x->kv, x->dkv, 2, V, O, 1);
    }
    x->emb = store_floats(p, V * C);
    x->w1 = store_floats(p, E * C);
    x->b1 = store_floats(p, E);
    x->w2 = store_floats(p, O * E);
    x->b2 = store_floats(p, O);
    x->hidden = store_floats(p, V * E);
    x->dhidden = store_floats(p, V * E);
    x->dpre = store_floats(p, V * E);
    if (!x->emb || !x->w1 || !x->b1 || !x->w2 || !x->b2 || !x->hidden || !x->dhidden || !x->dpre)
        return MMT_STATUS_OUT_OF_MEMORY;
    if (tr) {
        x->demb = store_floats(p, V * C);
        x->dw1 = store_floats(p, E * C);
        x->db1 = store_floats(p, E);
        x->dw2 = store_floats(p, O * E);
        x->db2 = store_floats(p, O);
        if (!x->demb || !x->dw1 || !x->db1 || !x->dw2 || !x->db2) return MMT_STATUS_OUT_OF_MEMORY;
    }
    fill_normal(x->emb, V * C, 1.0, rng);
    fill_uniform(x->w1, E * C, 1.0 / sqrt((double)C), rng);
    fill_uniform(x->b1, E, 1.0 / sqrt((double)C), rng);
    fill_uniform(x->w2, O * E, 1.0 / sqrt((double)E), rng);
    fill_uniform(x->b2, O, 1.0 / sqrt((double)E), rng);
    char key[160];
    encoder_key(tower, "embedding.weight", key, sizeof key);
    MMT_TRY(reg(p, key, x->emb, x->demb, 2, V, C, 1));
    encoder_key(tower, "transform.0.weight", key, sizeof key);
    MMT_TRY(reg(p, key, x->w1, x->dw1, 2, E, C, 0));
    encoder_key(tower, "transform.0.bias", key, sizeof key);
    MMT_TRY(reg(p, key, x->b1, x->db1, 1, E, 0, 1));
    encoder_key(tower, "transform.2.weight", key, sizeof key);
    MMT_TRY(reg(p, key, x->w2, x->dw2, 2, O, E, 0));
    encoder_key(tower, "transform.2.bias", key, sizeof key);
    return reg(p, key, x->b2, x->db2, 1, O, 0, 1);
}

/* kv (V, O) = tanh(emb W1^T + b1) W2^T + b2 (PEFT's PrefixEncoder with prefix_projection). */
static void projection_forward(const mmt_ops *ops, mmt_prompt_prefix *x) {
    int64_t O = x->L * 2 * x->C;
    ops->matmul_fwd(x->hidden, x->emb, x->w1, x->b1, x->V, x->C, x->E);
    ops->tanh_fwd(x->hidden, x->hidden, x->V * x->E);
    ops->matmul_fwd(x->kv, x->hidden, x->w2, x->b2, x->V, x->E, O);
}

/* The MLP's gradients from the view's dkv (+=), then dkv = 0 for the next backward. */
static void projection_backward(const mmt_ops *ops, mmt_prompt_prefix *x) {
    int64_t O = x->L * 2 * x->C, VE = x->V * x->E;
    ops->buffer_fill(x->dhidden, 0.0f, VE);
    ops->matmul_bwd(x->dhidden, x->dw2, x->db2, x->dkv, x->hidden, x->w2, x->V, x->E, O);
    ops->buffer_fill(x->dpre, 0.0f, VE);
    ops->tanh_bwd(x->dpre, x->dhidden, x->hidden, VE);
    ops->matmul_bwd(NULL, x->dw1, x->db1, x->dpre, x->emb, x->w1, x->V, x->C, x->E);
    if (x->demb) ops->matmul_bwd(x->demb, NULL, NULL, x->dpre, x->emb, x->w1, x->V, x->C, x->E);
    ops->buffer_fill(x->dkv, 0.0f, x->V * O);
}

static mmt_status hook_before_forward(void *ctx) {
    mmt_prompt *p = ctx;
    for (int t = 0; t < 2; t++)
        if (p->prefix[t].V > 0 && p->prefix[t].projection) projection_forward(p->ops, &p->prefix[t]);
    return MMT_OK;
}

static mmt_status hook_after_backward(void *ctx) {
    mmt_prompt *p = ctx;
    for (int t = 0; t < 2; t++)
        if (p->prefix[t].V > 0 && p->prefix[t].projection && p->prefix[t].dkv) projection_backward(p->ops, &p->prefix[t]);
    return MMT_OK;
}

static mmt_status attach_all(mmt_prompt *p, const mmt_prompt_settings *s) {
    const mmt_model_dims *dims = &p->model->dims;
    const mmt_model_iface *m = p->model;
    if ((s->text_tokens > 0 && (!m->set_text_prompt || !m->token_embedding)) ||
        (s->visual_tokens > 0 && !m->set_visual_prompt) || (s->prefix_tokens > 0 && (!m->set_prefix || !m->add_hooks)))
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this model family takes no %s", m->source,
                        s->text_tokens > 0 && (!m->set_text_prompt || !m->token_embedding) ? "text prompts"
                        : s->visual_tokens > 0 && !m->set_visual_prompt                   ? "visual prompts"
                                                                                           : "prefixes");
    uint64_t rng = s->seed ^ 0x9a0b7c3d5e6f1023ull;
    int tr = s->trainable;
    char key[160];
    p->text_dim = dims->text.hidden;
    p->vision_dim = dims->vision.hidden;
    p->vision_layers = dims->vision.layers;
    if (s->text_tokens < 0 || s->visual_tokens < 0 || s->prefix_tokens < 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "prompt and prefix token counts must not be negative");
    if (s->text_tokens > 0 && s->prefix_tokens > 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "text prompts and text prefixes cannot be combined (both are PEFT's prompt_embeddings)");
    if (s->text_tokens == 0 && s->visual_tokens == 0 && s->prefix_tokens == 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "prompt tuning needs text, visual or prefix tokens");
    if (s->text_tokens > 0) {
        int64_t M = s->text_tokens, C = p->text_dim;
        p->text = store_floats(p, M * C);
        p->dtext = tr ? store_floats(p, M * C) : NULL;
        if (!p->text || (tr && !p->dtext)) return MMT_STATUS_OUT_OF_MEMORY;
        if (s->init_ids && s->n_init_ids > 0) {
            const float *tok = m->token_embedding(m->ctx);
            for (int64_t m = 0; m < M; m++) {
                int32_t id = s->init_ids[m % s->n_init_ids];
                if (id < 0 || id >= dims->text.vocab)
                    return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "prompt init token %d is outside the vocabulary", id);
                memcpy(p->text + m * C, tok + (int64_t)id * C, (size_t)C * sizeof(float));
            }
        } else {
            fill_normal(p->text, M * C, s->text_init_std > 0 ? s->text_init_std : 0.02, &rng);
        }
        MMT_TRY(m->set_text_prompt(m->ctx, M, p->text, p->dtext));
        MMT_TRY(reg(p, MMT_PEFT_PROMPT_KEY, p->text, p->dtext, 2, M, C, 1));
    }
    if (s->visual_tokens > 0) {
        int64_t P = s->visual_tokens, C = p->vision_dim, blocks = s->visual_deep ? p->vision_layers : 1;
        int64_t patch = dims->vision.patch;
        p->visual = store_floats(p, blocks * P * C);
        p->dvisual = tr ? store_floats(p, blocks * P * C) : NULL;
        if (!p->visual || (tr && !p->dvisual)) return MMT_STATUS_OUT_OF_MEMORY;
        fill_uniform(p->visual, blocks * P * C, sqrt(6.0 / (double)(3 * patch * patch + C)), &rng);
        MMT_TRY(m->set_visual_prompt(m->ctx, P, s->visual_deep, p->visual, p->dvisual));
        for (int64_t i = 0; i < blocks; i++) {
            if (i == 0) snprintf(key, sizeof key, VISUAL_SHALLOW_KEY);
            else snprintf(key, sizeof key, VISUAL_DEEP_KEY "%lld", (long long)i);
            MMT_TRY(reg(p, key, p->visual + i * P * C, tr ? p->dvisual + i * P * C : NULL, 2, P, C, 1));
        }
    }
    if (s->prefix_tokens > 0) {
        for (int t = 0; t < 2; t++) {
            if (t == 1 && !s->prefix_vision) continue;
            MMT_TRY(prefix_create(p, t, t == 0 ? &dims->text : &dims->vision, &rng));
            MMT_TRY(m->set_prefix(m->ctx, t, p->prefix[t].V, p->prefix[t].kv, p->prefix[t].dkv));
        }
        if (s->prefix_projection) {
            MMT_TRY(m->add_hooks(m->ctx, p, hook_before_forward, hook_after_backward));
            p->hooked = 1;
        }
    }
    return MMT_OK;
}

mmt_status mmt_prompt_attach(const mmt_model_iface *model, const mmt_prompt_settings *settings, mmt_prompt **out) {
    *out = NULL;
    mmt_prompt *p = mmt_calloc(1, sizeof *p);
    if (!p) return MMT_STATUS_OUT_OF_MEMORY;
    p->settings = *settings;
    p->settings.init_ids = NULL;
    p->settings.n_init_ids = 0;
    p->settings.source = NULL;
    p->model = model;
    p->ops = model->ops;
    mmt_arena_init(&p->store, (size_t)1 << 20);
    mmt_status s = attach_all(p, settings);
    if (s != MMT_OK) {
        mmt_prompt_free(p);
        /* the view's limits (context length, ...) are checked there, without the file's name */
        return settings->source ? mmt_error_prefix(s, "%s: ", settings->source) : s;
    }
    *out = p;
    return MMT_OK;
}

void mmt_prompt_free(mmt_prompt *p) {
    if (!p) return;
    const mmt_model_iface *m = p->model;
    if (p->text) m->set_text_prompt(m->ctx, 0, NULL, NULL);
    if (p->visual) m->set_visual_prompt(m->ctx, 0, 0, NULL, NULL);
    for (int t = 0; t < 2; t++)
        if (p->prefix[t].V > 0) m->set_prefix(m->ctx, t, 0, NULL, NULL);
    if (p->hooked) m->remove_hooks(m->ctx, p);
    mmt_arena_free(&p->store);
    mmt_free(p);
}

int64_t mmt_prompt_numel(const mmt_prompt *p) {
    const mmt_prompt_settings *s = &p->settings;
    int64_t n = s->text_tokens * p->text_dim;
    n += s->visual_tokens * p->vision_dim * (s->visual_deep ? p->vision_layers : 1);
    for (int t = 0; t < 2; t++) {
        const mmt_prompt_prefix *x = &p->prefix[t];
        int64_t O = x->L * 2 * x->C;
        if (x->V == 0) continue;
        n += x->projection ? x->V * x->C + x->E * x->C + x->E + O * x->E + O : x->V * O;
    }
    return n;
}

/* ---- files ------------------------------------------------------------------------------ */

typedef struct tensor_ref {
    char key[160];
    float *data;
    int ndim;
    int64_t shape[2];
    int baked; /* a projection's output: written, and on load only read when the MLP is absent */
} tensor_ref;

static int64_t add_ref(tensor_ref *r, int64_t k, const char *key, float *data, int ndim, int64_t d0, int64_t d1,
                       int baked) {
    snprintf(r[k].key, sizeof r[k].key, "%s", key);
    r[k].data = data;
    r[k].ndim = ndim;
    r[k].shape[0] = d0;
    r[k].shape[1] = d1;
    r[k].baked = baked;
    return k + 1;
}

/* Every tensor of the prompt, in a fixed order; at most 2 + L_vision + 2 * 6 of them. */
static tensor_ref *prompt_tensors(const mmt_prompt *p, int64_t *count) {
    const mmt_prompt_settings *s = &p->settings;
    int64_t cap = 16 + p->vision_layers, k = 0;
    tensor_ref *r = mmt_calloc((size_t)cap, sizeof *r);
    if (!r) return NULL;
    char key[160];
    if (s->text_tokens > 0) k = add_ref(r, k, MMT_PEFT_PROMPT_KEY, p->text, 2, s->text_tokens, p->text_dim, 0);
    if (s->visual_tokens > 0) {
        int64_t P = s->visual_tokens, C = p->vision_dim, blocks = s->visual_deep ? p->vision_layers : 1;
        for (int64_t i = 0; i < blocks; i++) {
            if (i == 0) snprintf(key, sizeof key, VISUAL_SHALLOW_KEY);
            else snprintf(key, sizeof key, VISUAL_DEEP_KEY "%lld", (long long)i);
            k = add_ref(r, k, key, p->visual + i * P * C, 2, P, C, 0);
        }
    }
    for (int t = 0; t < 2; t++) {
        const mmt_prompt_prefix *x = &p->prefix[t];
        int64_t O = x->L * 2 * x->C;
        if (x->V == 0) continue;
        k = add_ref(r, k, prefix_key(t), x->kv, 2, x->V, O, x->projection);
        if (!x->projection) continue;
        encoder_key(t, "embedding.weight", key, sizeof key);
        k = add_ref(r, k, key, x->emb, 2, x->V, x->C, 0);
        encoder_key(t, "transform.0.weight", key, sizeof key);
        k = add_ref(r, k, key, x->w1, 2, x->E, x->C, 0);
        encoder_key(t, "transform.0.bias", key, sizeof key);
        k = add_ref(r, k, key, x->b1, 1, x->E, 0, 0);
        encoder_key(t, "transform.2.weight", key, sizeof key);
        k = add_ref(r, k, key, x->w2, 2, O, x->E, 0);
        encoder_key(t, "transform.2.bias", key, sizeof key);
        k = add_ref(r, k, key, x->b2, 1, O, 0, 0);
    }
    *count = k;
    return r;
}

mmt_status mmt_prompt_save_tensors(mmt_prompt *p, const char *path) {
    MMT_TRY(hook_before_forward(p)); /* the baked prefixes of the current MLP */
    int64_t n = 0;
    tensor_ref *r = prompt_tensors(p, &n);
    mmt_st_write_tensor *w = r ? mmt_calloc((size_t)(n > 0 ? n : 1), sizeof *w) : NULL;
    mmt_status s = w ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < n; i++) {
        w[i].name = r[i].key;
        w[i].dtype = MMT_DTYPE_F32;
        w[i].ndim = r[i].ndim;
        w[i].shape = r[i].shape;
        w[i].data = r[i].data;
    }
    if (s == MMT_OK) s = mmt_safetensors_write(path, w, n, NULL, 0);
    mmt_free(w);
    mmt_free(r);
    return s;
}

/* The file's tensor for r, when it has r's shape and a float dtype. */
static mmt_status find_checked(const mmt_safetensors *st, const char *path, const tensor_ref *r,
                               const mmt_st_tensor **out) {
    const mmt_st_tensor *t = *out = mmt_safetensors_find(st, r->key);
    if (!t) return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: missing tensor %s", path, r->key);
    int same = t->ndim == r->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == r->shape[d];
    if (!same)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s has %d dimensions (%lld, ...), this model needs (%lld%s%lld)", path,
                        r->key, t->ndim, t->ndim > 0 ? (long long)t->shape[0] : 0LL, (long long)r->shape[0],
                        r->ndim > 1 ? ", " : "", r->ndim > 1 ? (long long)r->shape[1] : 0LL);
    if (t->dtype != MMT_DTYPE_F32 && t->dtype != MMT_DTYPE_F16 && t->dtype != MMT_DTYPE_BF16)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: %s has dtype %s; adapters must be F32, F16 or BF16", path, r->key,
                        mmt_dtype_name(t->dtype));
    return MMT_OK;
}

/* Every tensor is checked before any is read, so a bad file leaves the prompt as it was. */
mmt_status mmt_prompt_load_tensors(mmt_prompt *p, const char *path) {
    mmt_safetensors *st = NULL;
    MMT_TRY(mmt_safetensors_open(path, &st));
    int64_t n = 0;
    tensor_ref *r = prompt_tensors(p, &n);
    const mmt_st_tensor **found = r ? mmt_calloc((size_t)n + 1, sizeof *found) : NULL;
    mmt_status s = found ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < n; i++) s = find_checked(st, path, &r[i], &found[i]);
    for (int64_t j = 0; s == MMT_OK && j < st->n_tensors; j++) {
        int known = 0;
        for (int64_t i = 0; i < n && !known; i++) known = strcmp(st->tensors[j].name, r[i].key) == 0;
        if (!known)
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor %s does not belong to this prompt / prefix adapter", path,
                         st->tensors[j].name);
    }
    for (int64_t i = 0; s == MMT_OK && i < n; i++) s = mmt_st_tensor_to_f32_finite(found[i], r[i].data);
    mmt_free(found);
    mmt_free(r);
    mmt_safetensors_close(st);
    if (s == MMT_OK) s = hook_before_forward(p);
    return s;
}

/* ---- settings from a file, config from settings -------------------------------------------- */

/* The tensor's first dimension when it exists with ndim 2 and the given second dimension. */
static mmt_status rows_of(const mmt_safetensors *st, const char *path, const char *key, int64_t cols, int64_t *rows) {
    const mmt_st_tensor *t = mmt_safetensors_find(st, key);
    *rows = 0;
    if (!t) return MMT_OK;
    if (t->ndim != 2 || t->shape[1] != cols || t->shape[0] < 1)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s must be (N, %lld) for this model", path, key, (long long)cols);
    *rows = t->shape[0];
    return MMT_OK;
}

mmt_status mmt_prompt_settings_from_file(const mmt_peft_config *cfg, const char *tensors_path,
                                         const mmt_model_dims *dims, mmt_prompt_settings *out) {
    memset(out, 0, sizeof *out);
    out->source = tensors_path;
    if (cfg->peft_type != MMT_PEFT_PROMPT_TUNING && cfg->peft_type != MMT_PEFT_PREFIX_TUNING)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: %s is not prompt or prefix tuning", tensors_path,
                        mmt_peft_type_name(cfg->peft_type));
    mmt_safetensors *st = NULL;
    MMT_TRY(mmt_safetensors_open(tensors_path, &st));
    int64_t Ct = dims->text.hidden, Cv = dims->vision.hidden, Lt = dims->text.layers, Lv = dims->vision.layers;
    int prefix = cfg->peft_type == MMT_PEFT_PREFIX_TUNING;
    int64_t rows = 0;
    mmt_status s = rows_of(st, tensors_path, MMT_PEFT_PROMPT_KEY, prefix ? Lt * 2 * Ct : Ct, &rows);
    if (s == MMT_OK && rows > 0 && rows != cfg->num_virtual_tokens)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: prompt_embeddings has %lld rows, adapter_config.json says num_virtual_tokens %lld",
                     tensors_path, (long long)rows, (long long)cfg->num_virtual_tokens);
    if (prefix) out->prefix_tokens = rows;
    else out->text_tokens = rows;
    if (s == MMT_OK && prefix && rows == 0)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: prefix tuning without prompt_embeddings", tensors_path);
    if (s == MMT_OK) s = rows_of(st, tensors_path, VISUAL_SHALLOW_KEY, Cv, &out->visual_tokens);
    char key[160];
    snprintf(key, sizeof key, VISUAL_DEEP_KEY "1");
    out->visual_deep = s == MMT_OK && out->visual_tokens > 0 && Lv > 1 && mmt_safetensors_find(st, key) != NULL;
    int64_t vrows = 0;
    if (s == MMT_OK && prefix) s = rows_of(st, tensors_path, PREFIX_VISION_KEY, Lv * 2 * Cv, &vrows);
    if (s == MMT_OK && vrows > 0) {
        if (vrows != rows)
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s has %lld rows, prompt_embeddings %lld", tensors_path,
                         PREFIX_VISION_KEY, (long long)vrows, (long long)rows);
        out->prefix_vision = 1;
    }
    /* the projection trains only when its MLP was saved (PEFT keeps only the baked output) */
    encoder_key(0, "embedding.weight", key, sizeof key);
    if (s == MMT_OK && prefix && cfg->prefix_projection && mmt_safetensors_find(st, key)) {
        encoder_key(0, "transform.0.weight", key, sizeof key);
        out->prefix_projection = 1;
        /* the MLP's width sizes what attach allocates: it must come from a tensor that holds
         * that many rows of C, not from a shape such as (2^60, 0) that holds no bytes */
        s = rows_of(st, tensors_path, key, Ct, &out->encoder_hidden_size);
        if (s == MMT_OK && cfg->encoder_hidden_size > 0 && out->encoder_hidden_size != cfg->encoder_hidden_size)
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: the prefix encoder is %lld wide, adapter_config.json says encoder_hidden_size %lld",
                         tensors_path, (long long)out->encoder_hidden_size, (long long)cfg->encoder_hidden_size);
    }
    if (s == MMT_OK && !out->text_tokens && !out->visual_tokens && !out->prefix_tokens)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: no prompt or prefix tensors", tensors_path);
    mmt_safetensors_close(st);
    return s;
}

mmt_status mmt_prompt_peft_config(const mmt_prompt_settings *s, const mmt_model_dims *dims,
                                  const char *init_text, mmt_peft_config *out) {
    int prefix = s->prefix_tokens > 0;
    MMT_TRY(mmt_peft_config_default(out, prefix ? MMT_PEFT_PREFIX_TUNING : MMT_PEFT_PROMPT_TUNING));
    mmt_status st = MMT_OK;
    if (prefix) {
        out->num_virtual_tokens = s->prefix_tokens;
        out->prefix_projection = s->prefix_projection;
        if (s->encoder_hidden_size > 0) out->encoder_hidden_size = s->encoder_hidden_size;
    } else if (s->text_tokens > 0) {
        out->num_virtual_tokens = s->text_tokens;
        if (init_text && init_text[0]) {
            char *a = mmt_strdup("TEXT"), *b = mmt_strdup(init_text);
            mmt_free(out->prompt_tuning_init);
            out->prompt_tuning_init = a;
            out->prompt_tuning_init_text = b;
            if (!a || !b) st = MMT_STATUS_OUT_OF_MEMORY;
        }
    } else {
        /* visual prompts only: the sizes describe the vision tower */
        out->num_virtual_tokens = s->visual_tokens;
        out->token_dim = dims->vision.hidden;
        out->num_layers = dims->vision.layers;
        out->num_attention_heads = dims->vision.heads;
    }
    if (st == MMT_OK) st = mmt_peft_config_fill_from_model(out, dims);
    if (st != MMT_OK) mmt_peft_config_free(out);
    return st;
}
