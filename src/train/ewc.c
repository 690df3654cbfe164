/* ewc.c — Elastic Weight Consolidation: the Fisher state, its file, its estimate and the
 * penalty (see ewc.h). */
#include "train/ewc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/safetensors.h"
#include "dist/comm.h"
#include "ops/ops.h"

#define ESTIMATOR "mean over micro-batches of the squared gradient of the micro-batch mean loss"

void mmt_ewc_state_free(mmt_ewc_state *s) {
    if (!s) return;
    for (int64_t i = 0; i < s->n; i++) {
        mmt_free(s->tensors[i].name);
        mmt_free(s->tensors[i].fisher);
        mmt_free(s->tensors[i].theta);
    }
    mmt_free(s->tensors);
    mmt_free(s);
}

/* A state of n empty tensors (names and buffers set by the caller). */
static mmt_ewc_state *state_new(int64_t n) {
    mmt_ewc_state *s = mmt_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->tensors = mmt_calloc((size_t)(n > 0 ? n : 1), sizeof *s->tensors);
    if (!s->tensors) {
        mmt_free(s);
        return NULL;
    }
    s->n = n;
    return s;
}

/* Shape and buffers of tensor t; 0 when out of memory. */
static int tensor_init(mmt_ewc_tensor *t, const char *name, int ndim, const int64_t *shape) {
    t->name = mmt_strdup(name);
    t->ndim = ndim;
    t->numel = 1;
    for (int d = 0; d < ndim; d++) t->numel *= (t->shape[d] = shape[d]);
    t->fisher = mmt_malloc((size_t)(t->numel > 0 ? t->numel : 1) * sizeof(float));
    t->theta = mmt_malloc((size_t)(t->numel > 0 ? t->numel : 1) * sizeof(float));
    return t->name && t->fisher && t->theta;
}

/* ---- the file ------------------------------------------------------------------------------ */

static int64_t metadata_int(const mmt_safetensors *st, const char *key, int64_t def) {
    const char *v = mmt_safetensors_metadata(st, key);
    char *end;
    long long x = v ? strtoll(v, &end, 10) : def;
    return v && (*end || !*v) ? -1 : x;
}

/* Reads the fisher./theta. pairs into s->tensors; *made counts the entries filled. */
static mmt_status load_pairs_of(const mmt_safetensors *st, const char *path, mmt_ewc_state *s, int64_t *made) {
    int64_t k = 0;
    for (int64_t i = 0; i < st->n_tensors; i++) {
        const mmt_st_tensor *f = &st->tensors[i];
        if (strncmp(f->name, "fisher.", 7) != 0) {
            if (strncmp(f->name, "theta.", 6) != 0)
                return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor %s is neither fisher.<name> nor theta.<name>", path, f->name);
            continue;
        }
        const char *name = f->name + 7;
        char key[1024];
        snprintf(key, sizeof key, "theta.%s", name);
        const mmt_st_tensor *th = mmt_safetensors_find(st, key);
        if (!th) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: fisher.%s has no theta.%s", path, name, name);
        if (th->ndim != f->ndim || th->numel != f->numel || f->ndim > MMT_PARAM_MAX_DIMS)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: fisher.%s and theta.%s differ in shape", path, name, name);
        mmt_ewc_tensor *t = &s->tensors[k++];
        *made = k;
        if (!tensor_init(t, name, f->ndim, f->shape)) return MMT_STATUS_OUT_OF_MEMORY;
        MMT_TRY(mmt_st_tensor_to_f32_finite(f, t->fisher));
        MMT_TRY(mmt_st_tensor_to_f32_finite(th, t->theta));
        for (int64_t j = 0; j < t->numel; j++)
            if (!isfinite(t->fisher[j]) || t->fisher[j] < 0 || !isfinite(t->theta[j]))
                return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s[%lld] is %g (Fisher values are finite and >= 0, weights finite)",
                                path, !isfinite(t->theta[j]) ? key : f->name, (long long)j,
                                !isfinite(t->theta[j]) ? (double)t->theta[j] : (double)t->fisher[j]);
    }
    if (2 * k != st->n_tensors) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: a theta.<name> tensor has no fisher.<name>", path);
    return MMT_OK;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

mmt_status mmt_ewc_state_load(const char *path, mmt_ewc_state **out) {
    *out = NULL;
    char *file = is_dir(path) ? mmt_path_join(path, MMT_EWC_FILE) : mmt_strdup(path);
    if (!file) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_safetensors *st = NULL;
    mmt_ewc_state *s = NULL;
    mmt_status r = MMT_OK;
    if (!mmt_file_exists(file)) {
        r = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: no EWC state (train the earlier task with --save-fisher)", file);
        goto done;
    }
    if ((r = mmt_safetensors_open(file, &st)) != MMT_OK) goto done;
    const char *kind = mmt_safetensors_metadata(st, "mmtune");
    if (!kind || strcmp(kind, "ewc") != 0) {
        r = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: not an EWC state (metadata \"mmtune\" is not \"ewc\")", file);
        goto done;
    }
    /* n counts the entries to free: all of them until the tensors are read */
    if (!(s = state_new(st->n_tensors / 2 + 1))) {
        r = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    s->tasks = metadata_int(st, "tasks", 1);
    s->micro_batches = metadata_int(st, "micro_batches", 0);
    s->batch_size = metadata_int(st, "batch_size", 0);
    if (s->tasks < 1 || s->micro_batches < 0 || s->batch_size < 0) {
        r = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: metadata tasks, micro_batches or batch_size is not a count", file);
        goto done;
    }
    int64_t k = 0;
    if ((r = load_pairs_of(st, file, s, &k)) != MMT_OK) goto done;
    s->n = k;
    if (s->n == 0) r = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: no tensors", file);
done:
    mmt_safetensors_close(st);
    mmt_free(file);
    if (r != MMT_OK) {
        mmt_ewc_state_free(s);
        return r;
    }
    *out = s;
    return MMT_OK;
}

mmt_status mmt_ewc_state_save(const mmt_ewc_state *s, const char *path) {
    mmt_st_write_tensor *w = mmt_calloc((size_t)(2 * s->n + 1), sizeof *w);
    char **names = mmt_calloc((size_t)(2 * s->n + 1), sizeof *names);
    mmt_status r = w && names ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; r == MMT_OK && i < s->n; i++) {
        const mmt_ewc_tensor *t = &s->tensors[i];
        size_t len = strlen(t->name) + 8;
        names[2 * i] = mmt_malloc(len);
        names[2 * i + 1] = mmt_malloc(len);
        if (!names[2 * i] || !names[2 * i + 1]) {
            r = MMT_STATUS_OUT_OF_MEMORY;
            break;
        }
        snprintf(names[2 * i], len, "fisher.%s", t->name);
        snprintf(names[2 * i + 1], len, "theta.%s", t->name);
        w[2 * i] = (mmt_st_write_tensor){names[2 * i], MMT_DTYPE_F32, t->ndim, t->shape, t->fisher};
        w[2 * i + 1] = (mmt_st_write_tensor){names[2 * i + 1], MMT_DTYPE_F32, t->ndim, t->shape, t->theta};
    }
    char tasks[32], batches[32], bs[32];
    snprintf(tasks, sizeof tasks, "%lld", (long long)s->tasks);
    snprintf(batches, sizeof batches, "%lld", (long long)s->micro_batches);
    snprintf(bs, sizeof bs, "%lld", (long long)s->batch_size);
    const char *const meta[] = {"mmtune", "ewc", "version", "1", "tasks", tasks, "micro_batches", batches,
                                "batch_size", bs, "estimator", ESTIMATOR};
    if (r == MMT_OK) r = mmt_safetensors_write(path, w, 2 * s->n, meta, 6);
    for (int64_t i = 0; names && i < 2 * s->n; i++) mmt_free(names[i]);
    mmt_free(names);
    mmt_free(w);
    return r;
}

/* ---- the estimate ------------------------------------------------------------------------- */

static uint64_t mix(uint64_t a, uint64_t b) { /* splitmix64 over a combination, as the trainer's */
    uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Matches the state's tensors with params by name and shape: at[i] = the state entry of
 * params[i]. */
static mmt_status match(const mmt_ewc_state *s, const char *what, const mmt_nn_param *p, int64_t n, int64_t *at) {
    for (int64_t i = 0; i < n; i++) {
        at[i] = -1;
        for (int64_t k = 0; k < s->n && at[i] < 0; k++)
            if (strcmp(s->tensors[k].name, p[i].name) == 0) at[i] = k;
        if (at[i] < 0)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s has no Fisher values for %s, which this run trains (the earlier "
                            "adapter had other settings; EWC needs the same method, targets and sizes)", what, p[i].name);
        const mmt_ewc_tensor *t = &s->tensors[at[i]];
        int same = t->ndim == p[i].ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == p[i].shape[d];
        if (!same)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: %s has %lld numbers in its Fisher values and %lld in this run "
                            "(the earlier adapter had other sizes)", what, p[i].name, (long long)t->numel, (long long)p[i].numel);
    }
    if (s->n != n) {
        for (int64_t k = 0; k < s->n; k++) {
            int used = 0;
            for (int64_t i = 0; i < n && !used; i++) used = at[i] == k;
            if (!used)
                return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s has Fisher values for %s, which this run does not train (the "
                                "earlier adapter had other settings)", what, s->tensors[k].name);
        }
    }
    return MMT_OK;
}

mmt_status mmt_ewc_estimate(const mmt_train_task *task, const mmt_ewc_estimate_options *o, mmt_ewc_state **out) {
    *out = NULL;
    int64_t n_params = 0;
    const mmt_nn_param *p = task->params(task->ctx, &n_params);
    int64_t n = o->n_examples > 0 && o->n_examples <= task->n_examples ? o->n_examples : task->n_examples;
    int64_t B = o->batch_size < n ? o->batch_size : n;
    if (B < 1 || n_params < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "EWC estimate: no examples or nothing trainable");
    if (task->ops && strcmp(task->ops->name, "cuda") == 0)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "EWC runs on the CPU; the model is on %s", task->ops->name);
    int64_t M = n / B;
    if (o->max_batches > 0 && M > o->max_batches) M = o->max_batches;
    int rank = o->comm ? mmt_comm_rank(o->comm) : 0, ranks = o->comm ? mmt_comm_size(o->comm) : 1;
    int64_t total = 0;
    for (int64_t i = 0; i < n_params; i++) total += p[i].numel;
    int64_t *perm = mmt_malloc((size_t)n * sizeof *perm), *at = mmt_calloc((size_t)n_params, sizeof *at);
    double *sum = mmt_calloc((size_t)(total > 0 ? total : 1), sizeof *sum);
    mmt_ewc_state *s = state_new(n_params);
    mmt_status r = perm && at && sum && s ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (r == MMT_OK && o->previous) r = match(o->previous, "the earlier EWC state", p, n_params, at);
    /* a fixed shuffle, so that a class-sorted file does not make one-class micro-batches */
    uint64_t state = mix(o->seed, 0x6577632d66697368ull); /* "ewc-fish" */
    for (int64_t i = 0; perm && i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; perm && i > 0; i--) {
        state = mix(state, (uint64_t)i);
        int64_t j = (int64_t)(state % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int64_t j = rank; r == MMT_OK && j < M; j += ranks) {
        for (int64_t i = 0; i < n_params; i++) memset(p[i].grad, 0, (size_t)p[i].numel * sizeof(float));
        double loss;
        if (task->prefetch && (r = task->prefetch(task->ctx, j * B, perm + j * B, B)) != MMT_OK) break;
        if ((r = task->load_batch(task->ctx, perm + j * B, B)) != MMT_OK) break;
        if ((r = task->forward_loss(task->ctx, mix(o->seed, (uint64_t)j + 0x100000000ull), &loss)) != MMT_OK) break;
        if (!isfinite(loss)) {
            r = mmt_fail(MMT_STATUS_INTERNAL, "EWC estimate: micro-batch %lld: the loss is %g", (long long)j + 1, loss);
            break;
        }
        if ((r = task->backward(task->ctx)) != MMT_OK) break;
        for (int64_t i = 0, off = 0; i < n_params; off += p[i].numel, i++)
            for (int64_t k = 0; k < p[i].numel; k++) sum[off + k] += (double)p[i].grad[k] * (double)p[i].grad[k];
    }
    if (ranks > 1) { /* every rank reaches the sum, even one that failed (with what it has) */
        mmt_status c = mmt_comm_allreduce_sum_f64(o->comm, sum, total);
        if (r == MMT_OK) r = c;
    }
    for (int64_t i = 0, off = 0; r == MMT_OK && i < n_params; off += p[i].numel, i++) {
        mmt_ewc_tensor *t = &s->tensors[i];
        if (!tensor_init(t, p[i].name, p[i].ndim, p[i].shape)) {
            r = MMT_STATUS_OUT_OF_MEMORY;
            break;
        }
        const float *prev = o->previous ? o->previous->tensors[at[i]].fisher : NULL;
        for (int64_t k = 0; k < t->numel; k++)
            t->fisher[k] = (float)(sum[off + k] / (double)M + (prev ? (double)prev[k] : 0.0));
        memcpy(t->theta, p[i].data, (size_t)t->numel * sizeof(float));
    }
    if (r == MMT_OK) {
        s->tasks = o->previous ? o->previous->tasks + 1 : 1;
        s->micro_batches = M;
        s->batch_size = B;
    }
    mmt_free(perm);
    mmt_free(at);
    mmt_free(sum);
    if (r != MMT_OK) {
        mmt_ewc_state_free(s);
        return r;
    }
    *out = s;
    return MMT_OK;
}

/* ---- the penalty ------------------------------------------------------------------------------ */

struct mmt_ewc {
    const mmt_ewc_state *state; /* borrowed */
    const mmt_nn_param *params; /* borrowed */
    int64_t n;
    int64_t *at;                /* owned: the state entry of params[i] */
    double lambda;
};

mmt_status mmt_ewc_create(const mmt_ewc_state *state, const char *what, const mmt_nn_param *params, int64_t n,
                          double lambda, mmt_ewc **out) {
    *out = NULL;
    if (!(lambda >= 0) || !isfinite(lambda))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--ewc takes a strength >= 0, not %g", lambda);
    mmt_ewc *e = mmt_calloc(1, sizeof *e);
    if (e) e->at = mmt_calloc((size_t)(n > 0 ? n : 1), sizeof *e->at);
    if (!e || !e->at) {
        mmt_ewc_free(e);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    e->state = state;
    e->params = params;
    e->n = n;
    e->lambda = lambda;
    mmt_status s = match(state, what, params, n, e->at);
    if (s != MMT_OK) {
        mmt_ewc_free(e);
        return s;
    }
    *out = e;
    return MMT_OK;
}

void mmt_ewc_free(mmt_ewc *e) {
    if (!e) return;
    mmt_free(e->at);
    mmt_free(e);
}

double mmt_ewc_penalty(const mmt_ewc *e) {
    double sum = 0;
    for (int64_t i = 0; i < e->n; i++) {
        const mmt_ewc_tensor *t = &e->state->tensors[e->at[i]];
        const float *x = e->params[i].data;
        for (int64_t k = 0; k < t->numel; k++) {
            double d = (double)x[k] - (double)t->theta[k];
            sum += (double)t->fisher[k] * d * d;
        }
    }
    return 0.5 * e->lambda * sum;
}

mmt_status mmt_ewc_regularize(void *ewc, double *penalty) {
    mmt_ewc *e = ewc;
    double sum = 0;
    for (int64_t i = 0; i < e->n; i++) {
        const mmt_ewc_tensor *t = &e->state->tensors[e->at[i]];
        const float *x = e->params[i].data;
        float *g = e->params[i].grad;
        for (int64_t k = 0; k < t->numel; k++) {
            double d = (double)x[k] - (double)t->theta[k], fd = (double)t->fisher[k] * d;
            sum += fd * d;
            g[k] += (float)(e->lambda * fd);
        }
    }
    *penalty = 0.5 * e->lambda * sum;
    return MMT_OK;
}
