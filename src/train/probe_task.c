/* probe_task.c — linear probing on frozen CLIP image embeddings (see probe_task.h). */
#include "train/probe_task.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "data/image.h"
#include "data/preprocess.h"
#include "core/weights.h"
#include "nn/loss.h"
#include "nn/param.h"

#define HEAD_CONFIG "head_config.json"
#define HEAD_WEIGHTS "head.safetensors"

/* ---- the head ----------------------------------------------------------------------------- */

static mmt_probe_head *head_new(int64_t K, int64_t P) {
    mmt_probe_head *h = mmt_calloc(1, sizeof *h);
    if (!h) return NULL;
    h->K = K;
    h->P = P;
    h->classes = mmt_calloc((size_t)K, sizeof *h->classes);
    h->weight = mmt_calloc((size_t)(K * P), sizeof(float));
    h->bias = mmt_calloc((size_t)K, sizeof(float));
    if (!h->classes || !h->weight || !h->bias) {
        mmt_probe_head_free(h);
        return NULL;
    }
    return h;
}

void mmt_probe_head_free(mmt_probe_head *h) {
    if (!h) return;
    if (h->classes)
        for (int64_t k = 0; k < h->K; k++) mmt_free(h->classes[k]);
    mmt_free(h->classes);
    mmt_free(h->weight);
    mmt_free(h->bias);
    mmt_free(h);
}

void mmt_probe_head_logits(const mmt_probe_head *h, const float *emb, int64_t B, float *logits) {
    for (int64_t i = 0; i < B; i++) {
        const float *e = emb + i * h->P;
        for (int64_t k = 0; k < h->K; k++) {
            const float *w = h->weight + k * h->P;
            double acc = h->bias[k];
            for (int64_t j = 0; j < h->P; j++) acc += (double)w[j] * e[j];
            logits[i * h->K + k] = (float)acc;
        }
    }
}

/* Binary search over the sorted class names. */
int64_t mmt_probe_head_class(const mmt_probe_head *h, const char *name) {
    int64_t lo = 0, hi = h->K;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(h->classes[mid], name);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

const char *mmt_probe_pair_class(const mmt_pair *p) { return p->label ? p->label : p->text; }

mmt_status mmt_probe_head_save(const mmt_probe_head *h, const char *base_model, const char *dir) {
    return mmt_probe_head_save_fit(h, base_model, NULL, dir);
}

mmt_status mmt_probe_head_save_fit(const mmt_probe_head *h, const char *base_model, const char *fit_json,
                                   const char *dir) {
    char *cfg = mmt_path_join(dir, HEAD_CONFIG), *wpath = mmt_path_join(dir, HEAD_WEIGHTS);
    mmt_strbuf b = {0};
    mmt_status s = cfg && wpath ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) {
        int64_t wshape[2] = {h->K, h->P}, bshape[1] = {h->K};
        mmt_st_write_tensor t[2] = {{"head.bias", MMT_DTYPE_F32, 1, bshape, h->bias},
                                    {"head.weight", MMT_DTYPE_F32, 2, wshape, h->weight}};
        s = mmt_safetensors_write(wpath, t, 2, NULL, 0);
    }
    if (s == MMT_OK) {
        mmt_strbuf_printf(&b, "{\n  \"type\": \"linear_probe\",\n  \"input\": \"normalized_image_embeds\",\n"
                              "  \"projection_dim\": %lld,\n  \"num_classes\": %lld,\n  \"base_model_name_or_path\": ",
                          (long long)h->P, (long long)h->K);
        if (base_model) mmt_strbuf_json_string(&b, base_model, strlen(base_model));
        else mmt_strbuf_printf(&b, "null");
        mmt_strbuf_printf(&b, ",\n  \"classes\": [");
        for (int64_t k = 0; k < h->K; k++) {
            mmt_strbuf_printf(&b, "%s\n    ", k ? "," : "");
            mmt_strbuf_json_string(&b, h->classes[k], strlen(h->classes[k]));
        }
        mmt_strbuf_printf(&b, "\n  ]");
        if (fit_json) mmt_strbuf_printf(&b, ",\n  \"fit\": %s", fit_json);
        mmt_strbuf_printf(&b, "\n}\n");
        s = b.failed ? MMT_STATUS_OUT_OF_MEMORY : mmt_file_write_atomic(cfg, b.data, b.len);
    }
    mmt_strbuf_free(&b);
    mmt_free(cfg);
    mmt_free(wpath);
    return s;
}

/* The class list of a head_config.json: a non-empty array of distinct strings, sorted. */
static mmt_status read_classes(const mmt_json *root, const char *path, int64_t P, mmt_probe_head **out) {
    const mmt_json *cl = mmt_json_get(root, "classes");
    if (!cl || cl->type != MMT_JSON_ARRAY || cl->len < 1)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: classes: expected a non-empty array of names", path);
    mmt_probe_head *h = head_new((int64_t)cl->len, P);
    if (!h) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t k = 0; k < h->K; k++) {
        const mmt_json *c = &cl->items[k];
        if (c->type != MMT_JSON_STRING || !c->len || strlen(c->string) != c->len) {
            mmt_probe_head_free(h);
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: classes[%lld]: expected a non-empty string", path, (long long)k);
        }
        if (k > 0 && strcmp(cl->items[k - 1].string, c->string) >= 0) {
            mmt_probe_head_free(h);
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: classes[%lld]: names must be distinct and sorted", path,
                            (long long)k);
        }
        if (!(h->classes[k] = mmt_strdup(c->string))) {
            mmt_probe_head_free(h);
            return MMT_STATUS_OUT_OF_MEMORY;
        }
    }
    *out = h;
    return MMT_OK;
}

/* Reads "head.weight" (K, P) and "head.bias" (K) of a head file into h. */
static mmt_status read_head_tensors(mmt_probe_head *h, const char *path) {
    mmt_safetensors *st = NULL;
    MMT_TRY(mmt_safetensors_open(path, &st));
    mmt_status s = MMT_OK;
    const mmt_st_tensor *w = mmt_safetensors_find(st, "head.weight"), *b = mmt_safetensors_find(st, "head.bias");
    if (!w || !b)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: missing tensor %s", path, w ? "head.bias" : "head.weight");
    else if (w->ndim != 2 || w->shape[0] != h->K || w->shape[1] != h->P)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: head.weight: expected shape [%lld, %lld] (classes, projection_dim)",
                     path, (long long)h->K, (long long)h->P);
    else if (b->ndim != 1 || b->shape[0] != h->K)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: head.bias: expected shape [%lld] (one per class)", path, (long long)h->K);
    if (s == MMT_OK) s = mmt_st_tensor_to_f32_finite(w, h->weight);
    if (s == MMT_OK) s = mmt_st_tensor_to_f32_finite(b, h->bias);
    mmt_safetensors_close(st);
    return s;
}

mmt_status mmt_probe_head_load(const char *dir, mmt_probe_head **out) {
    *out = NULL;
    char *cfg = mmt_path_join(dir, HEAD_CONFIG), *wpath = mmt_path_join(dir, HEAD_WEIGHTS);
    mmt_json_doc *doc = NULL;
    mmt_probe_head *h = NULL;
    mmt_status s = cfg && wpath ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = mmt_json_parse_file(cfg, &doc);
    const mmt_json *root = doc ? mmt_json_root(doc) : NULL;
    const char *type = NULL;
    int64_t P = 0;
    if (s == MMT_OK && root->type != MMT_JSON_OBJECT) s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected a JSON object", cfg);
    if (s == MMT_OK) s = mmt_json_get_string(root, "type", NULL, &type, cfg, "");
    if (s == MMT_OK && (!type || strcmp(type, "linear_probe") != 0))
        s = mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: type: expected \"linear_probe\"", cfg);
    if (s == MMT_OK) s = mmt_json_get_int(root, "projection_dim", 0, &P, cfg, "");
    if (s == MMT_OK && P < 1) s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: projection_dim: expected a positive integer", cfg);
    if (s == MMT_OK) s = read_classes(root, cfg, P, &h);
    if (s == MMT_OK) s = read_head_tensors(h, wpath);
    if (s == MMT_OK) {
        *out = h;
        h = NULL;
    }
    mmt_probe_head_free(h);
    mmt_json_free(doc);
    mmt_free(cfg);
    mmt_free(wpath);
    return s;
}

/* Class indices of pairs under a head; an unknown class is an error naming the pair. */
static mmt_status pair_labels(const mmt_probe_head *h, const mmt_pairs *pairs, int32_t *labels) {
    for (int64_t i = 0; i < pairs->n; i++) {
        const char *name = mmt_probe_pair_class(&pairs->items[i]);
        int64_t k = mmt_probe_head_class(h, name);
        if (k < 0)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: pair %lld: class \"%s\" is not one of the head's %lld classes",
                            pairs->source, (long long)i + 1, name, (long long)h->K);
        labels[i] = (int32_t)k;
    }
    return MMT_OK;
}

mmt_status mmt_probe_evaluate(const mmt_probe_head *h, const mmt_pairs *pairs, const float *emb,
                              mmt_probe_metrics *out) {
    memset(out, 0, sizeof *out);
    int32_t *labels = mmt_malloc((size_t)pairs->n * sizeof(int32_t));
    float *logits = mmt_malloc((size_t)h->K * sizeof(float));
    mmt_status s = labels && logits ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = pair_labels(h, pairs, labels);
    double loss = 0;
    for (int64_t i = 0; s == MMT_OK && i < pairs->n; i++) {
        mmt_probe_head_logits(h, emb + i * h->P, 1, logits);
        int64_t best = 0;
        for (int64_t k = 1; k < h->K; k++)
            if (logits[k] > logits[best]) best = k;
        out->correct += best == labels[i];
        loss += nn_cross_entropy(logits, labels + i, 1, h->K, NULL);
    }
    if (s == MMT_OK) {
        out->n = pairs->n;
        out->accuracy = pairs->n ? (double)out->correct / (double)pairs->n : 0;
        out->loss = pairs->n ? loss / (double)pairs->n : 0;
    }
    mmt_free(labels);
    mmt_free(logits);
    return s;
}

/* ---- the task ----------------------------------------------------------------------------- */

struct mmt_probe_task {
    mmt_clip *model;            /* borrowed */
    const mmt_pairs *pairs;     /* borrowed */
    mmt_probe_head *head;       /* owned: the trainable W, b */
    float *dweight, *dbias;     /* owned: gradients (K, P), (K) */
    mmt_nn_param params[2];     /* names owned */
    float *emb;                 /* owned (n, P): every example's normalised image embedding */
    int32_t *labels;            /* owned (n): class index per example */
    float *batch_emb;           /* owned (B, P) current micro-batch */
    int32_t *batch_labels;      /* owned (B) */
    float *logits, *dlogits;    /* owned (B, K) */
    int64_t B, cap_B;
};

static int compare_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The sorted distinct class names of the pairs, as a zero head. */
static mmt_status make_head(const mmt_pairs *pairs, int64_t P, mmt_probe_head **out) {
    const char **names = mmt_malloc((size_t)pairs->n * sizeof *names);
    if (!names) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < pairs->n; i++) names[i] = mmt_probe_pair_class(&pairs->items[i]);
    qsort(names, (size_t)pairs->n, sizeof *names, compare_names);
    int64_t K = 0;
    for (int64_t i = 0; i < pairs->n; i++)
        if (i == 0 || strcmp(names[i], names[K - 1]) != 0) names[K++] = names[i];
    mmt_status s = MMT_OK;
    mmt_probe_head *h = NULL;
    if (K < 2)
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                     "%s: linear probing needs at least two classes (labels, or distinct texts), found %lld",
                     pairs->source, (long long)K);
    else if (!(h = head_new(K, P)))
        s = MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t k = 0; s == MMT_OK && k < K; k++)
        if (!(h->classes[k] = mmt_strdup(names[k]))) s = MMT_STATUS_OUT_OF_MEMORY;
    mmt_free(names);
    if (s != MMT_OK) {
        mmt_probe_head_free(h);
        return s;
    }
    *out = h;
    return MMT_OK;
}

/* Every pair's image through the frozen tower, in fixed chunks of the file order. */
/* Every image through the frozen tower once (mmt_clip_embed_image_files works in fixed
 * chunks, so the embeddings, and a resumed run, do not depend on anything else). */
static mmt_status embed_all(mmt_probe_task *t) {
    int64_t n = t->pairs->n;
    const char **paths = mmt_malloc((size_t)(n > 0 ? n : 1) * sizeof *paths);
    if (!paths) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < n; i++) paths[i] = t->pairs->items[i].image_path;
    mmt_status s = mmt_clip_embed_image_files(t->model, paths, n, t->emb);
    mmt_free(paths);
    return s;
}

static mmt_status task_load_batch(void *ctx, const int64_t *indices, int64_t n) {
    mmt_probe_task *t = ctx;
    int64_t K = t->head->K, P = t->head->P;
    if (n > t->cap_B) {
        mmt_free(t->batch_emb);
        mmt_free(t->batch_labels);
        mmt_free(t->logits);
        mmt_free(t->dlogits);
        t->batch_emb = mmt_malloc((size_t)(n * P) * sizeof(float));
        t->batch_labels = mmt_malloc((size_t)n * sizeof(int32_t));
        t->logits = mmt_malloc((size_t)(n * K) * sizeof(float));
        t->dlogits = mmt_malloc((size_t)(n * K) * sizeof(float));
        t->cap_B = 0;
        if (!t->batch_emb || !t->batch_labels || !t->logits || !t->dlogits) return MMT_STATUS_OUT_OF_MEMORY;
        t->cap_B = n;
    }
    for (int64_t i = 0; i < n; i++) {
        memcpy(t->batch_emb + i * P, t->emb + indices[i] * P, (size_t)P * sizeof(float));
        t->batch_labels[i] = t->labels[indices[i]];
    }
    t->B = n;
    return MMT_OK;
}

/* No dropout: the seed is unused. The gradient of the loss w.r.t. the logits is kept for
 * backward. */
static mmt_status task_forward_loss(void *ctx, uint64_t seed, double *loss) {
    mmt_probe_task *t = ctx;
    (void)seed;
    int64_t K = t->head->K;
    mmt_probe_head_logits(t->head, t->batch_emb, t->B, t->logits);
    memset(t->dlogits, 0, (size_t)(t->B * K) * sizeof(float));
    *loss = nn_cross_entropy(t->logits, t->batch_labels, t->B, K, t->dlogits);
    return MMT_OK;
}

/* dW (K, P) += dlogits^T (K, B) . E (B, P);  db (K) += column sums of dlogits. */
static mmt_status task_backward(void *ctx) {
    mmt_probe_task *t = ctx;
    int64_t K = t->head->K, P = t->head->P;
    for (int64_t k = 0; k < K; k++) {
        float *dw = t->dweight + k * P;
        double db = 0;
        for (int64_t i = 0; i < t->B; i++) {
            float g = t->dlogits[i * K + k];
            const float *e = t->batch_emb + i * P;
            db += g;
            for (int64_t j = 0; j < P; j++) dw[j] += g * e[j];
        }
        t->dbias[k] += (float)db;
    }
    return MMT_OK;
}

static const mmt_nn_param *task_params(void *ctx, int64_t *n) {
    *n = 2;
    return ((mmt_probe_task *)ctx)->params;
}

static mmt_status task_save(void *ctx, const char *dir) {
    mmt_probe_task *t = ctx;
    return mmt_probe_head_save(t->head, mmt_clip_weights(t->model)->dir, dir);
}

/* Resume: the checkpoint's head must be over the same classes as the data. */
static mmt_status task_load(void *ctx, const char *dir) {
    mmt_probe_task *t = ctx;
    mmt_probe_head *h = NULL;
    MMT_TRY(mmt_probe_head_load(dir, &h));
    mmt_status s = MMT_OK;
    if (h->K != t->head->K || h->P != t->head->P)
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: the head has %lld classes of dim %lld, the data and model %lld of %lld",
                     dir, (long long)h->K, (long long)h->P, (long long)t->head->K, (long long)t->head->P);
    for (int64_t k = 0; s == MMT_OK && k < h->K; k++)
        if (strcmp(h->classes[k], t->head->classes[k]) != 0)
            s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: class %lld is \"%s\" there, \"%s\" in the data", dir,
                         (long long)k, h->classes[k], t->head->classes[k]);
    if (s == MMT_OK) {
        memcpy(t->head->weight, h->weight, (size_t)(h->K * h->P) * sizeof(float));
        memcpy(t->head->bias, h->bias, (size_t)h->K * sizeof(float));
    }
    mmt_probe_head_free(h);
    return s;
}

static mmt_status set_param(mmt_nn_param *p, const char *name, float *data, float *grad, int ndim,
                            int64_t d0, int64_t d1, int no_decay) {
    memset(p, 0, sizeof *p);
    if (!(p->name = mmt_strdup(name))) return MMT_STATUS_OUT_OF_MEMORY;
    p->data = data;
    p->grad = grad;
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->numel = ndim == 2 ? d0 * d1 : d0;
    p->no_decay = no_decay;
    return MMT_OK;
}

mmt_status mmt_probe_task_create(mmt_clip *model, const mmt_pairs *pairs, mmt_probe_task **out) {
    *out = NULL;
    mmt_probe_task *t = mmt_calloc(1, sizeof *t);
    if (!t) return MMT_STATUS_OUT_OF_MEMORY;
    t->model = model;
    t->pairs = pairs;
    int64_t P = mmt_clip_config_of(model)->projection_dim, n = pairs->n;
    mmt_status s = make_head(pairs, P, &t->head);
    if (s != MMT_OK) goto fail;
    int64_t K = t->head->K;
    t->dweight = mmt_calloc((size_t)(K * P), sizeof(float));
    t->dbias = mmt_calloc((size_t)K, sizeof(float));
    t->emb = mmt_malloc((size_t)(n * P) * sizeof(float));
    t->labels = mmt_malloc((size_t)n * sizeof(int32_t));
    if (!t->dweight || !t->dbias || !t->emb || !t->labels) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto fail;
    }
    if ((s = pair_labels(t->head, pairs, t->labels)) != MMT_OK) goto fail;
    if ((s = set_param(&t->params[0], "head.weight", t->head->weight, t->dweight, 2, K, P, 0)) != MMT_OK) goto fail;
    if ((s = set_param(&t->params[1], "head.bias", t->head->bias, t->dbias, 1, K, 0, 1)) != MMT_OK) goto fail;
    mmt_log_info("linear probe: embedding %lld images (%lld classes)", (long long)n, (long long)K);
    if ((s = embed_all(t)) != MMT_OK) goto fail;
    *out = t;
    return MMT_OK;
fail:
    mmt_probe_task_free(t);
    return s;
}

void mmt_probe_task_free(mmt_probe_task *t) {
    if (!t) return;
    mmt_probe_head_free(t->head);
    mmt_free(t->params[0].name);
    mmt_free(t->params[1].name);
    mmt_free(t->dweight);
    mmt_free(t->dbias);
    mmt_free(t->emb);
    mmt_free(t->labels);
    mmt_free(t->batch_emb);
    mmt_free(t->batch_labels);
    mmt_free(t->logits);
    mmt_free(t->dlogits);
    mmt_free(t);
}

void mmt_probe_task_bind(mmt_probe_task *t, mmt_train_task *out) {
    memset(out, 0, sizeof *out);
    out->ctx = t;
    out->n_examples = t->pairs->n;
    out->load_batch = task_load_batch;
    out->forward_loss = task_forward_loss;
    out->backward = task_backward;
    out->params = task_params;
    out->save = task_save;
    out->load = task_load;
}

const mmt_probe_head *mmt_probe_task_head(const mmt_probe_task *t) { return t->head; }
const float *mmt_probe_task_embeddings(const mmt_probe_task *t) { return t->emb; }
mmt_probe_head *mmt_probe_task_head_mutable(mmt_probe_task *t) { return t->head; }
const int32_t *mmt_probe_task_labels(const mmt_probe_task *t, int64_t *n) {
    *n = t->pairs->n;
    return t->labels;
}
