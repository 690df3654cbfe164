/* adapter.c — LoRA / IA3 / bottleneck tensors on a model view, PEFT's keys (see adapter.h). */
#include "peft/adapter.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/tensor.h"

static float uniform01(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) * (1.0 / 9007199254740992.0));
}

void mmt_adapter_key(const mmt_adapter_entry *e, const char *suffix, char *out, size_t cap) {
    snprintf(out, cap, "base_model.model.%s.%s", e->module, suffix);
}

/* Shapes as PEFT saves them. */
static int lora_a_shape(const mmt_adapter_entry *e, int64_t *shape) {
    shape[0] = e->lora.r;
    if (e->is_conv) {
        shape[1] = e->conv_shape[1], shape[2] = e->conv_shape[2], shape[3] = e->conv_shape[3];
        return 4;
    }
    shape[1] = e->linear->in;
    return 2;
}
static int lora_b_shape(const mmt_adapter_entry *e, int64_t *shape) {
    shape[0] = e->linear->out;
    shape[1] = e->lora.r;
    if (e->is_conv) {
        shape[2] = shape[3] = 1;
        return 4;
    }
    return 2;
}
static int magnitude_shape(const mmt_adapter_entry *e, int64_t *shape) {
    if (e->is_conv) {
        shape[0] = shape[2] = shape[3] = 1;
        shape[1] = e->linear->out;
        return 4;
    }
    shape[0] = e->linear->out;
    return 1;
}
static int ia3_shape(const mmt_adapter_entry *e, int64_t *shape) {
    shape[0] = e->feedforward ? 1 : e->linear->out;
    shape[1] = e->feedforward ? e->linear->in : 1;
    return 2;
}

static float *store_floats(mmt_adapter *ad, int64_t n) {
    float *p = mmt_arena_alloc(&ad->store, (size_t)n * sizeof(float), 64);
    if (p) memset(p, 0, (size_t)n * sizeof(float));
    return p;
}

static mmt_status attach_one(mmt_adapter *ad, mmt_adapter_entry *e, const mmt_adapter_target *t,
                             uint64_t *rng) {
    const mmt_adapter_settings *st = &ad->settings;
    mmt_linear *l = e->linear;
    int64_t shape[4];
    char key[512];
    if (st->method == MMT_ADAPTER_LORA) {
        if (t->r < 1 || t->r > (l->in < l->out ? l->in : l->out) * 64)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: LoRA rank %lld is out of range", t->module, (long long)t->r);
        mmt_lora *a = &e->lora;
        a->r = t->r;
        a->scaling = (float)(st->use_rslora ? t->alpha / sqrt((double)t->r) : t->alpha / (double)t->r);
        a->dropout = st->dropout;
        a->a = store_floats(ad, t->r * l->in);
        a->b = store_floats(ad, l->out * t->r);
        if (!a->a || !a->b) return MMT_STATUS_OUT_OF_MEMORY;
        float bound = 1.0f / sqrtf((float)l->in);
        for (int64_t i = 0; i < t->r * l->in; i++) a->a[i] = (2.0f * uniform01(rng) - 1.0f) * bound;
        if (st->trainable) {
            a->da = store_floats(ad, t->r * l->in);
            a->db = store_floats(ad, l->out * t->r);
            if (!a->da || !a->db) return MMT_STATUS_OUT_OF_MEMORY;
            int nd = lora_a_shape(e, shape);
            mmt_adapter_key(e, "lora_A.weight", key, sizeof key);
            MMT_TRY(ad->model->add_param(ad->model->ctx, key, a->a, a->da, nd, shape, 0));
            nd = lora_b_shape(e, shape);
            mmt_adapter_key(e, "lora_B.weight", key, sizeof key);
            MMT_TRY(ad->model->add_param(ad->model->ctx, key, a->b, a->db, nd, shape, 0));
        }
        if (st->use_dora) {
            double *norms = mmt_malloc((size_t)l->out * sizeof(double));
            a->magnitude = store_floats(ad, l->out);
            if (!norms || !a->magnitude) {
                mmt_free(norms);
                return MMT_STATUS_OUT_OF_MEMORY;
            }
            /* nn_dora_row_norms reads the LoRA through the layer, which is hooked up later */
            mmt_linear probe = *l;
            probe.lora = a;
            nn_dora_row_norms(&probe, norms);
            for (int64_t o = 0; o < l->out; o++) a->magnitude[o] = (float)norms[o];
            mmt_free(norms);
            if (st->trainable) {
                if (!(a->dmagnitude = store_floats(ad, l->out))) return MMT_STATUS_OUT_OF_MEMORY;
                int nd = magnitude_shape(e, shape);
                mmt_adapter_key(e, "lora_magnitude_vector", key, sizeof key);
                MMT_TRY(ad->model->add_param(ad->model->ctx, key, a->magnitude, a->dmagnitude, nd, shape, 0));
            }
        }
        return MMT_OK;
    }
    if (e->is_conv) return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: IA3 on a convolution is not supported", t->module);
    e->feedforward = t->feedforward;
    int64_t n = t->feedforward ? l->in : l->out;
    e->ia3 = store_floats(ad, n);
    if (!e->ia3) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < n; i++) e->ia3[i] = 1.0f;
    if (st->trainable) {
        e->dia3 = store_floats(ad, n);
        if (!e->dia3) return MMT_STATUS_OUT_OF_MEMORY;
        int nd = ia3_shape(e, shape);
        mmt_adapter_key(e, "ia3_l", key, sizeof key);
        MMT_TRY(ad->model->add_param(ad->model->ctx, key, e->ia3, e->dia3, nd, shape, 0));
    }
    return MMT_OK;
}

/* A bottleneck adapter at slot e->module: width t->r, the tower's hidden size. */
static mmt_status attach_bottleneck(mmt_adapter *ad, mmt_adapter_entry *e, const mmt_adapter_target *t,
                                    uint64_t *rng) {
    mmt_bottleneck **slot = ad->model->bottleneck_slot ? ad->model->bottleneck_slot(ad->model->ctx, t->module) : NULL;
    if (!slot) return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: no bottleneck adapter place by this name", t->module);
    if (*slot) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: this place already has an adapter", t->module);
    int64_t C = strncmp(t->module, "text_model.", 11) == 0 ? ad->model->dims.text.hidden : ad->model->dims.vision.hidden;
    int64_t D = t->r;
    if (D < 1 || D > 64 * C)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: bottleneck width %lld is out of range", t->module, (long long)D);
    mmt_bottleneck *bn = &e->bottleneck;
    bn->dim = C;
    bn->hidden = D;
    bn->act = ad->settings.bottleneck_act;
    bn->down_w = store_floats(ad, D * C);
    bn->down_b = store_floats(ad, D);
    bn->up_w = store_floats(ad, C * D);
    bn->up_b = store_floats(ad, C);
    if (!bn->down_w || !bn->down_b || !bn->up_w || !bn->up_b) return MMT_STATUS_OUT_OF_MEMORY;
    float bound = 1.0f / sqrtf((float)C);
    for (int64_t i = 0; i < D * C; i++) bn->down_w[i] = (2.0f * uniform01(rng) - 1.0f) * bound;
    e->slot = slot;
    if (!ad->settings.trainable) return MMT_OK;
    struct { const char *suffix; float *data, **grad; int64_t n, shape[2]; int nd, no_decay; } ts[4] = {
        {"down.weight", bn->down_w, &bn->ddown_w, D * C, {D, C}, 2, 0},
        {"down.bias", bn->down_b, &bn->ddown_b, D, {D, 0}, 1, 1},
        {"up.weight", bn->up_w, &bn->dup_w, C * D, {C, D}, 2, 0},
        {"up.bias", bn->up_b, &bn->dup_b, C, {C, 0}, 1, 1},
    };
    char key[512];
    for (int k = 0; k < 4; k++) {
        if (!(*ts[k].grad = store_floats(ad, ts[k].n))) return MMT_STATUS_OUT_OF_MEMORY;
        mmt_adapter_key(e, ts[k].suffix, key, sizeof key);
        MMT_TRY(ad->model->add_param(ad->model->ctx, key, ts[k].data, *ts[k].grad, ts[k].nd, ts[k].shape, ts[k].no_decay));
    }
    return MMT_OK;
}

static void hook_up(mmt_adapter_entry *e, mmt_adapter_method method) {
    if (method == MMT_ADAPTER_BOTTLENECK) {
        *e->slot = &e->bottleneck;
        return;
    }
    if (method == MMT_ADAPTER_LORA) {
        e->linear->lora = &e->lora;
    } else {
        e->linear->ia3_mode = e->feedforward ? MMT_IA3_INPUT : MMT_IA3_OUTPUT;
        e->linear->ia3 = e->ia3;
        e->linear->dia3 = e->dia3;
    }
}

mmt_status mmt_adapter_attach(const mmt_model_iface *model, const mmt_adapter_settings *settings,
                              const mmt_adapter_target *targets, int64_t n, mmt_adapter **out) {
    *out = NULL;
    if (n < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "an adapter needs at least one target module");
    mmt_adapter *ad = mmt_calloc(1, sizeof *ad);
    if (!ad) return MMT_STATUS_OUT_OF_MEMORY;
    ad->settings = *settings;
    ad->model = model;
    /* one chunk sized for the tensors, so that an adapter costs about its own bytes (a
     * server keeps hundreds); bottleneck adapters and anything unforeseen take more chunks */
    size_t est = 4096;
    for (int64_t i = 0; i < n; i++) {
        const mmt_linear *l = settings->method == MMT_ADAPTER_BOTTLENECK ? NULL : model->linear(model->ctx, targets[i].module);
        size_t floats = !l ? (size_t)1 << 14
                        : settings->method == MMT_ADAPTER_IA3 ? (size_t)(l->in > l->out ? l->in : l->out)
                                                              : (size_t)(targets[i].r * (l->in + l->out) + (settings->use_dora ? l->out : 0));
        est += (floats * sizeof(float) + 3 * 64) * (settings->trainable ? 2 : 1);
    }
    mmt_arena_init(&ad->store, est);
    mmt_status s = MMT_OK;
    ad->entries = mmt_calloc((size_t)n, sizeof *ad->entries);
    if (!ad->entries) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto fail;
    }
    uint64_t rng = settings->seed ^ 0x5eed5eed5eed5eedull;
    for (int64_t i = 0; i < n; i++) {
        mmt_adapter_entry *e = &ad->entries[i];
        const char *name = targets[i].module;
        if (settings->method == MMT_ADAPTER_BOTTLENECK) {
            if (!(e->module = mmt_strdup(name))) {
                s = MMT_STATUS_OUT_OF_MEMORY;
                goto fail;
            }
            ad->n = i + 1;
            if ((s = attach_bottleneck(ad, e, &targets[i], &rng)) != MMT_OK) goto fail;
            hook_up(e, settings->method);
            continue;
        }
        e->linear = model->linear(model->ctx, name);
        if (!e->linear) {
            s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: no linear or patch-embedding module by this name", name);
            goto fail;
        }
        if (e->linear->lora || e->linear->ia3_mode != MMT_IA3_NONE) {
            s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: this module already has an adapter", name);
            goto fail;
        }
        if (!(e->module = mmt_strdup(name))) {
            s = MMT_STATUS_OUT_OF_MEMORY;
            goto fail;
        }
        ad->n = i + 1;
        if (strcmp(name, "vision_model.embeddings.patch_embedding") == 0) {
            int64_t P = model->dims.vision.patch;
            e->is_conv = 1;
            e->conv_shape[0] = model->dims.vision.hidden;
            e->conv_shape[1] = model->dims.vision.channels;
            e->conv_shape[2] = e->conv_shape[3] = P;
        }
        if ((s = attach_one(ad, e, &targets[i], &rng)) != MMT_OK) goto fail;
        hook_up(e, settings->method);
    }
    *out = ad;
    return MMT_OK;
fail:
    mmt_adapter_free(ad);
    return s;
}

void mmt_adapter_free(mmt_adapter *ad) {
    if (!ad) return;
    mmt_adapter_unmerge_in_view(ad); /* the view gets its own tensors back */
    for (int64_t i = 0; i < ad->n; i++) {
        mmt_adapter_entry *e = &ad->entries[i];
        if (e->slot && *e->slot == &e->bottleneck) *e->slot = NULL;
        if (e->linear && e->linear->lora == &e->lora) e->linear->lora = NULL;
        if (e->linear && e->ia3 && e->linear->ia3 == e->ia3) {
            e->linear->ia3_mode = MMT_IA3_NONE;
            e->linear->ia3 = e->linear->dia3 = NULL;
        }
        mmt_free(e->module);
    }
    mmt_free(ad->entries);
    mmt_free(ad->saved);
    mmt_arena_free(&ad->store);
    mmt_free(ad);
}

int64_t mmt_adapter_numel(const mmt_adapter *ad) {
    int64_t n = 0;
    for (int64_t i = 0; i < ad->n; i++) {
        const mmt_adapter_entry *e = &ad->entries[i];
        if (ad->settings.method == MMT_ADAPTER_BOTTLENECK)
            n += e->bottleneck.hidden * (2 * e->bottleneck.dim + 1) + e->bottleneck.dim;
        else if (ad->settings.method == MMT_ADAPTER_LORA)
            n += e->lora.r * (e->linear->in + e->linear->out) + (e->lora.magnitude ? e->linear->out : 0);
        else n += e->feedforward ? e->linear->in : e->linear->out;
    }
    return n;
}

/* ---- files --------------------------------------------------------------------------- */

typedef struct tensor_ref {
    char key[512];
    float *data;
    int ndim;
    int64_t shape[4];
} tensor_ref;

/* Every tensor of the adapter with its key, in entry order (1 to 4 per entry). */
static tensor_ref *adapter_tensors(const mmt_adapter *ad, int64_t *count) {
    tensor_ref *refs = mmt_calloc((size_t)(4 * ad->n + ad->n_saved + 1), sizeof *refs);
    if (!refs) return NULL;
    int64_t k = 0;
    for (int64_t i = 0; i < ad->n_saved; i++, k++) {
        const mmt_adapter_saved *sv = &ad->saved[i];
        snprintf(refs[k].key, sizeof refs[k].key, "%s", sv->key);
        refs[k].data = sv->data;
        refs[k].ndim = sv->ndim;
        memcpy(refs[k].shape, sv->shape, sizeof refs[k].shape);
    }
    for (int64_t i = 0; i < ad->n; i++) {
        const mmt_adapter_entry *e = &ad->entries[i];
        if (ad->settings.method == MMT_ADAPTER_BOTTLENECK) {
            const mmt_bottleneck *bn = &e->bottleneck;
            const char *suffix[4] = {"down.weight", "down.bias", "up.weight", "up.bias"};
            float *data[4] = {bn->down_w, bn->down_b, bn->up_w, bn->up_b};
            int64_t rows[4] = {bn->hidden, bn->hidden, bn->dim, bn->dim}, cols[4] = {bn->dim, 0, bn->hidden, 0};
            for (int j = 0; j < 4; j++, k++) {
                mmt_adapter_key(e, suffix[j], refs[k].key, sizeof refs[k].key);
                refs[k].data = data[j];
                refs[k].ndim = cols[j] ? 2 : 1;
                refs[k].shape[0] = rows[j];
                refs[k].shape[1] = cols[j];
            }
        } else if (ad->settings.method == MMT_ADAPTER_LORA) {
            mmt_adapter_key(e, "lora_A.weight", refs[k].key, sizeof refs[k].key);
            refs[k].data = e->lora.a;
            refs[k].ndim = lora_a_shape(e, refs[k].shape);
            k++;
            mmt_adapter_key(e, "lora_B.weight", refs[k].key, sizeof refs[k].key);
            refs[k].data = e->lora.b;
            refs[k].ndim = lora_b_shape(e, refs[k].shape);
            k++;
            if (e->lora.magnitude) {
                mmt_adapter_key(e, "lora_magnitude_vector", refs[k].key, sizeof refs[k].key);
                refs[k].data = e->lora.magnitude;
                refs[k].ndim = magnitude_shape(e, refs[k].shape);
                k++;
            }
        } else {
            mmt_adapter_key(e, "ia3_l", refs[k].key, sizeof refs[k].key);
            refs[k].data = e->ia3;
            refs[k].ndim = ia3_shape(e, refs[k].shape);
            k++;
        }
    }
    *count = k;
    return refs;
}

mmt_status mmt_adapter_save_tensors(const mmt_adapter *ad, const char *path) {
    int64_t n;
    tensor_ref *refs = adapter_tensors(ad, &n);
    mmt_st_write_tensor *w = refs ? mmt_calloc((size_t)n, sizeof *w) : NULL;
    if (!w) {
        mmt_free(refs);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    for (int64_t i = 0; i < n; i++) {
        w[i].name = refs[i].key;
        w[i].dtype = MMT_DTYPE_F32;
        w[i].ndim = refs[i].ndim;
        w[i].shape = refs[i].shape;
        w[i].data = refs[i].data;
    }
    mmt_status s = mmt_safetensors_write(path, w, n, NULL, 0);
    mmt_free(w);
    mmt_free(refs);
    return s;
}

/* Whether the file's tensor t can fill ref: right shape and a float dtype. */
static mmt_status check_tensor(const mmt_st_tensor *t, const tensor_ref *ref, const char *path) {
    int same = t->ndim == ref->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == ref->shape[d];
    if (!same) {
        char want[96] = "", got[96] = "";
        for (int d = 0; d < ref->ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "", (long long)ref->shape[d]);
        for (int d = 0; d < t->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s has shape (%s), this model needs (%s)", path, ref->key, got, want);
    }
    if (t->dtype != MMT_DTYPE_F32 && t->dtype != MMT_DTYPE_F16 && t->dtype != MMT_DTYPE_BF16)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: %s has dtype %s; adapters must be F32, F16 or BF16", path,
                        ref->key, mmt_dtype_name(t->dtype));
    return MMT_OK;
}

/* Every tensor is checked before any is read: modules_to_save tensors are the view's own
 * weights, so a file that fails half way must not have changed them. */
mmt_status mmt_adapter_load_tensors(mmt_adapter *ad, const char *path) {
    mmt_safetensors *st = NULL;
    MMT_TRY(mmt_safetensors_open(path, &st));
    int64_t n = 0;
    tensor_ref *refs = adapter_tensors(ad, &n);
    const mmt_st_tensor **found = refs ? mmt_calloc((size_t)n + 1, sizeof *found) : NULL;
    mmt_status s = found ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < n && s == MMT_OK; i++) {
        if (!(found[i] = mmt_safetensors_find(st, refs[i].key)))
            s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: missing tensor %s", path, refs[i].key);
        else
            s = check_tensor(found[i], &refs[i], path);
    }
    /* A tensor the adapter does not expect means the config and the weights disagree. */
    for (int64_t j = 0; j < st->n_tensors && s == MMT_OK; j++) {
        int known = 0;
        for (int64_t i = 0; i < n && !known; i++) known = strcmp(st->tensors[j].name, refs[i].key) == 0;
        if (!known)
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor %s does not belong to the modules adapter_config.json targets",
                         path, st->tensors[j].name);
    }
    for (int64_t i = 0; i < n && s == MMT_OK; i++) s = mmt_st_tensor_to_f32_finite(found[i], refs[i].data);
    mmt_free(found);
    mmt_free(refs);
    mmt_safetensors_close(st);
    return s;
}

int mmt_adapter_merged_tensor(const mmt_adapter *ad, const char *name, const float *base,
                              int64_t numel, float *out) {
    for (int64_t i = 0; i < ad->n_saved; i++)
        if (strcmp(ad->saved[i].hf_name, name) == 0 && ad->saved[i].numel == numel) {
            memcpy(out, ad->saved[i].data, (size_t)numel * sizeof(float));
            return 1;
        }
    (void)base;
    if (ad->settings.method == MMT_ADAPTER_BOTTLENECK) return 0; /* adds layers; changes no tensor */
    for (int64_t i = 0; i < ad->n; i++) {
        const mmt_adapter_entry *e = &ad->entries[i];
        size_t len = strlen(e->module);
        if (strncmp(name, e->module, len) != 0 || name[len] != '.') continue;
        const char *what = name + len + 1;
        const mmt_linear *l = e->linear;
        int is_weight = strcmp(what, "weight") == 0, is_bias = strcmp(what, "bias") == 0;
        if (is_weight && numel != l->in * l->out) return 0;
        if (ad->settings.method == MMT_ADAPTER_LORA) {
            if (!is_weight) return 0;
            /* W (out, in) + scaling * B (out, r) @ A (r, in), summed in double */
            int64_t r = e->lora.r;
            for (int64_t o = 0; o < l->out; o++) {
                /* twice for DoRA: the row's norm first, then the row rescaled to m / norm */
                double f = 1, sq = 0;
                for (int pass = e->lora.magnitude ? 0 : 1; pass < 2; pass++) {
                    for (int64_t j = 0; j < l->in; j++) {
                        double acc = 0;
                        for (int64_t k = 0; k < r; k++) acc += (double)e->lora.b[o * r + k] * e->lora.a[k * l->in + j];
                        double v = (double)base[o * l->in + j] + e->lora.scaling * acc;
                        if (pass == 0) sq += v * v;
                        else out[o * l->in + j] = (float)(f * v);
                    }
                    if (pass == 0) f = (double)e->lora.magnitude[o] / sqrt(sq);
                }
            }
            return 1;
        }
        if (is_weight) {
            for (int64_t o = 0; o < l->out; o++)
                for (int64_t j = 0; j < l->in; j++)
                    out[o * l->in + j] = base[o * l->in + j] * (e->feedforward ? e->ia3[j] : e->ia3[o]);
            return 1;
        }
        if (is_bias && !e->feedforward && numel == l->out) {
            for (int64_t o = 0; o < l->out; o++) out[o] = base[o] * e->ia3[o];
            return 1;
        }
        return 0;
    }
    return 0;
}

mmt_status mmt_adapter_save_modules(mmt_adapter *ad, const char *const *modules, int64_t n) {
    static const char prefix[] = "base_model.model.";
    for (int64_t m = 0; m < n; m++) {
        int64_t before, after, added;
        ad->model->params(ad->model->ctx, &before);
        MMT_TRY(ad->model->make_module_trainable(ad->model->ctx, modules[m], prefix, &added));
        const mmt_nn_param *p = ad->model->params(ad->model->ctx, &after);
        mmt_adapter_saved *grown = mmt_realloc(ad->saved, (size_t)(ad->n_saved + after - before) * sizeof *grown);
        if (!grown) return MMT_STATUS_OUT_OF_MEMORY;
        ad->saved = grown;
        for (int64_t i = before; i < after; i++) {
            mmt_adapter_saved *sv = &ad->saved[ad->n_saved++];
            memset(sv, 0, sizeof *sv);
            size_t len = strlen(p[i].name);
            sv->key = mmt_arena_alloc(&ad->store, len + 1, 1);
            if (!sv->key) return MMT_STATUS_OUT_OF_MEMORY;
            memcpy(sv->key, p[i].name, len + 1);
            sv->hf_name = sv->key + sizeof prefix - 1;
            sv->data = p[i].data;
            sv->ndim = p[i].ndim;
            for (int d = 0; d < p[i].ndim && d < 4; d++) sv->shape[d] = p[i].shape[d];
            sv->numel = p[i].numel;
        }
    }
    return MMT_OK;
}

/* ---- merging in memory (serving) ------------------------------------------------------ */

mmt_status mmt_adapter_merge_in_view(mmt_adapter *ad) {
    if (ad->merged) return MMT_OK;
    if (ad->settings.method == MMT_ADAPTER_BOTTLENECK)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "bottleneck adapters add layers and cannot be merged into weights");
    for (int64_t i = 0; i < ad->n; i++) {
        mmt_adapter_entry *e = &ad->entries[i];
        mmt_linear *l = e->linear;
        char name[600];
        if (l->qw) {
            for (int64_t j = 0; j < i; j++) {
                mmt_free(ad->entries[j].merged_w), ad->entries[j].merged_w = NULL;
                mmt_free(ad->entries[j].merged_b), ad->entries[j].merged_b = NULL;
            }
            return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: the base weight is quantized; the adapter runs unmerged on it",
                            e->module);
        }
        e->merged_w = mmt_malloc((size_t)(l->in * l->out) * sizeof(float));
        if (!e->merged_w) goto oom;
        snprintf(name, sizeof name, "%s.weight", e->module);
        if (!mmt_adapter_merged_tensor(ad, name, l->w, l->in * l->out, e->merged_w)) {
            mmt_free(e->merged_w);
            e->merged_w = NULL;
            for (int64_t j = 0; j <= i; j++) mmt_free(ad->entries[j].merged_b), ad->entries[j].merged_b = NULL;
            for (int64_t j = 0; j < i; j++) mmt_free(ad->entries[j].merged_w), ad->entries[j].merged_w = NULL;
            return mmt_fail(MMT_STATUS_INTERNAL, "%s: the adapter did not produce a merged weight", e->module);
        }
        if (l->b) {
            e->merged_b = mmt_malloc((size_t)l->out * sizeof(float));
            if (!e->merged_b) goto oom;
            snprintf(name, sizeof name, "%s.bias", e->module);
            if (!mmt_adapter_merged_tensor(ad, name, l->b, l->out, e->merged_b)) {
                mmt_free(e->merged_b);
                e->merged_b = NULL;
            }
        }
    }
    for (int64_t i = 0; i < ad->n; i++) { /* all merged copies exist: switch the layers over */
        mmt_adapter_entry *e = &ad->entries[i];
        mmt_linear *l = e->linear;
        e->orig_w = l->w;
        e->orig_b = l->b;
        l->w = e->merged_w;
        if (e->merged_b) l->b = e->merged_b;
        l->lora = NULL;
        l->ia3_mode = MMT_IA3_NONE;
        l->ia3 = l->dia3 = NULL;
    }
    ad->merged = 1;
    return MMT_OK;
oom:
    for (int64_t j = 0; j < ad->n; j++) {
        mmt_free(ad->entries[j].merged_w);
        mmt_free(ad->entries[j].merged_b);
        ad->entries[j].merged_w = ad->entries[j].merged_b = NULL;
    }
    return MMT_STATUS_OUT_OF_MEMORY;
}

void mmt_adapter_unmerge_in_view(mmt_adapter *ad) {
    if (!ad->merged) return;
    for (int64_t i = 0; i < ad->n; i++) {
        mmt_adapter_entry *e = &ad->entries[i];
        e->linear->w = e->orig_w;
        e->linear->b = e->orig_b;
        hook_up(e, ad->settings.method);
        mmt_free(e->merged_w);
        mmt_free(e->merged_b);
        e->merged_w = e->merged_b = NULL;
    }
    ad->merged = 0;
}
