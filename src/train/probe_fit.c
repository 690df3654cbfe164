/* probe_fit.c — the linear probe by L-BFGS logistic regression with a C sweep (see probe_fit.h). */
#define _XOPEN_SOURCE 700
#include "train/probe_fit.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/dir.h"
#include "core/file.h"
#include "core/json.h"
#include "core/log.h"
#include "core/rng.h"

/* ---- the objective ------------------------------------------------------------------------ */

/* Threads split the examples (and the classes) when the build has OpenMP and the problem is
 * big enough to pay for them; `work` must be in scope. PROBE_SIMD marks inner loops without
 * a reduction (lanes are independent, so the bits do not change) for GCC to vectorise at -O2,
 * whose default cost model would not. */
#ifdef _OPENMP
#define PROBE_PARALLEL_FOR _Pragma("omp parallel for schedule(static) if(work >= 4194304)")
#define PROBE_SIMD _Pragma("omp simd")
#else
#define PROBE_PARALLEL_FOR
#define PROBE_SIMD
#endif

struct mmt_probe_logreg {
    const float *emb;       /* borrowed (n, P) */
    const int32_t *labels;  /* borrowed (n) */
    int64_t n, P, K;
    double *resid;          /* owned (n, K): softmax - one-hot, then divided by n */
    double *wt;             /* owned (P, K): W transposed, so a logit row is a sum of rows */
    double *loss;           /* owned (n): each example's cross-entropy */
};

mmt_status mmt_probe_logreg_create(const float *emb, const int32_t *labels, int64_t n, int64_t P, int64_t K,
                                   mmt_probe_logreg **out) {
    *out = NULL;
    if (n < 1 || P < 1 || K < 2)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "logistic regression: needs n >= 1, P >= 1, K >= 2 (got %lld, %lld, %lld)",
                        (long long)n, (long long)P, (long long)K);
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= K)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "logistic regression: example %lld: label %d is not in 0..%lld",
                            (long long)i, (int)labels[i], (long long)K - 1);
    mmt_probe_logreg *lr = mmt_calloc(1, sizeof *lr);
    if (!lr) return MMT_STATUS_OUT_OF_MEMORY;
    *lr = (mmt_probe_logreg){.emb = emb, .labels = labels, .n = n, .P = P, .K = K};
    lr->resid = mmt_malloc((size_t)(n * K) * sizeof(double));
    lr->loss = mmt_malloc((size_t)n * sizeof(double));
    lr->wt = mmt_malloc((size_t)(P * K) * sizeof(double));
    if (!lr->resid || !lr->loss || !lr->wt) {
        mmt_probe_logreg_free(lr);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    *out = lr;
    return MMT_OK;
}

void mmt_probe_logreg_free(mmt_probe_logreg *lr) {
    if (!lr) return;
    mmt_free(lr->resid);
    mmt_free(lr->loss);
    mmt_free(lr->wt);
    mmt_free(lr);
}

int64_t mmt_probe_logreg_size(const mmt_probe_logreg *lr) { return lr->K * (lr->P + 1); }

/* z (K) = W e + b for one embedding e (P). */
static void example_logits(const double *theta, int64_t K, int64_t P, const float *e, double *z) {
    const double *b = theta + K * P;
    for (int64_t k = 0; k < K; k++) {
        const double *w = theta + k * P;
        double acc = 0;
        for (int64_t j = 0; j < P; j++) acc += w[j] * (double)e[j];
        z[k] = acc + b[k];
    }
}

/* log sum_k exp z_k, shifted by the maximum. */
static double logsumexp(const double *z, int64_t K) {
    double m = z[0], s = 0;
    for (int64_t k = 1; k < K; k++) m = fmax(m, z[k]);
    for (int64_t k = 0; k < K; k++) s += exp(z[k] - m);
    return m + log(s);
}

/* Each example is independent, so the threads of the first loop write disjoint rows; the
 * sums run in a fixed order afterwards, so the result does not depend on the thread count.
 * A logit row is accumulated as z (K) = b + sum_j e_j W^T[j] (K), which vectorises across
 * the classes without reordering any sum.
 *   dJ/dW (K, P) = R^T (K, n) . E (n, P) + W / (C n),   dJ/db (K) = column sums of R,
 * R (n, K) = (softmax(z_i) - onehot(y_i)) / n. */
double mmt_probe_logreg_objective(mmt_probe_logreg *lr, double C, const double *theta, double *grad, double *mean_ce) {
    const int64_t n = lr->n, P = lr->P, K = lr->K;
    const double inv_n = 1.0 / (double)n;
    const int64_t work = n * P * K;
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < P; j++) lr->wt[j * K + k] = theta[k * P + j];
    PROBE_PARALLEL_FOR
    for (int64_t i = 0; i < n; i++) {
        double *z = lr->resid + i * K;
        const float *e = lr->emb + i * P;
        for (int64_t k = 0; k < K; k++) z[k] = theta[K * P + k];
        for (int64_t j = 0; j < P; j++) {
            const double ej = e[j], *w = lr->wt + j * K;
            PROBE_SIMD
            for (int64_t k = 0; k < K; k++) z[k] += ej * w[k];
        }
        double lse = logsumexp(z, K);
        lr->loss[i] = lse - z[lr->labels[i]];
        for (int64_t k = 0; k < K; k++) z[k] = exp(z[k] - lse) * inv_n;
        z[lr->labels[i]] -= inv_n;
    }
    double ce = 0, w2 = 0;
    for (int64_t i = 0; i < n; i++) ce += lr->loss[i];
    ce *= inv_n;
    for (int64_t j = 0; j < K * P; j++) w2 += theta[j] * theta[j];
    if (mean_ce) *mean_ce = ce;
    const double penalty = 1.0 / (C * (double)n);
    if (grad) {
        PROBE_PARALLEL_FOR
        for (int64_t k = 0; k < K; k++) {
            double *g = grad + k * P, db = 0;
            const double *w = theta + k * P;
            for (int64_t j = 0; j < P; j++) g[j] = penalty * w[j];
            for (int64_t i = 0; i < n; i++) {
                double r = lr->resid[i * K + k];
                const float *e = lr->emb + i * P;
                db += r;
                PROBE_SIMD
                for (int64_t j = 0; j < P; j++) g[j] += r * (double)e[j];
            }
            grad[K * P + k] = db;
        }
    }
    return ce + 0.5 * penalty * w2;
}

typedef struct fit_ctx {
    mmt_probe_logreg *lr;
    double C;
} fit_ctx;

static mmt_status fit_eval(void *ctx, const double *x, double *f, double *grad) {
    fit_ctx *c = ctx;
    *f = mmt_probe_logreg_objective(c->lr, c->C, x, grad, NULL);
    return MMT_OK;
}

mmt_status mmt_probe_logreg_fit(mmt_probe_logreg *lr, double C, const mmt_lbfgs_params *p, double *theta,
                                mmt_lbfgs_result *result) {
    if (!(C > 0) || !isfinite(C)) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "logistic regression: C must be positive, got %g", C);
    fit_ctx c = {lr, C};
    MMT_TRY(mmt_lbfgs_minimize(fit_eval, &c, mmt_probe_logreg_size(lr), theta, p, result));
    double *b = theta + lr->K * lr->P, mean = 0;
    for (int64_t k = 0; k < lr->K; k++) mean += b[k];
    mean /= (double)lr->K;
    for (int64_t k = 0; k < lr->K; k++) b[k] -= mean;
    return MMT_OK;
}

mmt_status mmt_probe_predict(const double *theta, int64_t K, int64_t P, const float *emb, const int32_t *labels,
                             int64_t n, int32_t *pred, int64_t *correct, double *mean_ce) {
    double z[256], *zp = K <= 256 ? z : mmt_malloc((size_t)K * sizeof(double));
    double loss = 0;
    int64_t hits = 0;
    if (!zp) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < n; i++) {
        example_logits(theta, K, P, emb + i * P, zp);
        int64_t best = 0;
        for (int64_t k = 1; k < K; k++)
            if (zp[k] > zp[best]) best = k;
        if (pred) pred[i] = (int32_t)best;
        if (labels) {
            hits += best == labels[i];
            loss += logsumexp(zp, K) - zp[labels[i]];
        }
    }
    if (zp != z) mmt_free(zp);
    if (correct) *correct = hits;
    if (mean_ce) *mean_ce = labels && n > 0 ? loss / (double)n : NAN;
    return MMT_OK;
}

/* ---- the sweep ---------------------------------------------------------------------------- */

void mmt_probe_fit_params_default(mmt_probe_fit_params *p) {
    memset(p, 0, sizeof *p);
    p->heldout_fraction = 0.2;
    p->c_min = 1e-6;
    p->c_max = 1e6;
    p->refine_steps = 3;
    p->fallback_C = 1.0;
    mmt_lbfgs_params_default(&p->lbfgs);
}

void mmt_probe_fit_result_free(mmt_probe_fit_result *r) {
    if (!r) return;
    mmt_free(r->sweep);
    r->sweep = NULL;
    r->n_sweep = 0;
}

/* Marks held[i] = 1 for a stratified, seeded held-out split: per class (in label order), a
 * Fisher-Yates shuffle of its examples (in file order) and the first round(fraction x count),
 * at most count - 1, held out. Returns the number held out. */
static int64_t split_heldout(const int32_t *labels, int64_t n, int64_t K, double fraction, uint64_t seed,
                             unsigned char *held, int64_t *scratch) {
    memset(held, 0, (size_t)n);
    int64_t total = 0;
    for (int64_t k = 0; k < K; k++) {
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++)
            if (labels[i] == k) scratch[m++] = i;
        uint64_t state = seed ^ (UINT64_C(0xd1b54a32d192ed03) * (uint64_t)(k + 1));
        for (int64_t i = m - 1; i > 0; i--) {
            int64_t j = (int64_t)(mmt_splitmix64(&state) % (uint64_t)(i + 1));
            int64_t t = scratch[i];
            scratch[i] = scratch[j];
            scratch[j] = t;
        }
        int64_t h = (int64_t)floor(fraction * (double)m + 0.5);
        if (h > m - 1) h = m - 1;
        for (int64_t i = 0; i < h; i++) held[scratch[i]] = 1;
        total += h > 0 ? h : 0;
    }
    return total;
}

/* The split's two sides as contiguous copies. */
typedef struct split {
    float *fit_emb, *held_emb;      /* owned (n_fit, P), (n_held, P) */
    int32_t *fit_labels, *held_labels;
    int64_t n_fit, n_held;
} split;

static void split_free(split *s) {
    mmt_free(s->fit_emb);
    mmt_free(s->held_emb);
    mmt_free(s->fit_labels);
    mmt_free(s->held_labels);
    memset(s, 0, sizeof *s);
}

static mmt_status split_make(const float *emb, const int32_t *labels, int64_t n, int64_t P, int64_t K,
                             const mmt_probe_fit_params *p, split *out) {
    memset(out, 0, sizeof *out);
    unsigned char *held = mmt_malloc((size_t)n);
    int64_t *scratch = mmt_malloc((size_t)n * sizeof(int64_t));
    mmt_status s = held && scratch ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) {
        out->n_held = p->heldout_fraction > 0 ? split_heldout(labels, n, K, p->heldout_fraction, p->seed, held, scratch) : 0;
        out->n_fit = n - out->n_held;
    }
    if (s == MMT_OK && out->n_held > 0) {
        out->fit_emb = mmt_malloc((size_t)(out->n_fit * P) * sizeof(float));
        out->held_emb = mmt_malloc((size_t)(out->n_held * P) * sizeof(float));
        out->fit_labels = mmt_malloc((size_t)out->n_fit * sizeof(int32_t));
        out->held_labels = mmt_malloc((size_t)out->n_held * sizeof(int32_t));
        if (!out->fit_emb || !out->held_emb || !out->fit_labels || !out->held_labels) s = MMT_STATUS_OUT_OF_MEMORY;
    }
    if (s == MMT_OK && out->n_held > 0) {
        int64_t a = 0, b = 0;
        for (int64_t i = 0; i < n; i++) {
            float *dst = held[i] ? out->held_emb + b * P : out->fit_emb + a * P;
            memcpy(dst, emb + i * P, (size_t)P * sizeof(float));
            if (held[i]) out->held_labels[b++] = labels[i];
            else out->fit_labels[a++] = labels[i];
        }
    }
    mmt_free(held);
    mmt_free(scratch);
    if (s != MMT_OK) split_free(out);
    return s;
}

/* Whether sweep point a beats b: higher held-out accuracy, then lower held-out loss. */
static int better(const mmt_probe_sweep_point *a, const mmt_probe_sweep_point *b) {
    if (a->heldout_accuracy != b->heldout_accuracy) return a->heldout_accuracy > b->heldout_accuracy;
    return a->heldout_loss < b->heldout_loss;
}

typedef struct sweep {
    const mmt_probe_fit_params *p;
    mmt_probe_logreg *lr;           /* on the fit side */
    const split *sp;
    int64_t K, P, size;
    double *theta;                  /* (size) the current warm start */
    double *best_theta;             /* (size) the solution at the best C so far */
    mmt_probe_fit_result *r;
    int64_t cap;
    int64_t best;                   /* index into r->sweep, -1 before the first */
} sweep;

/* Fits at C from start (copied into theta), scores on the held-out side, logs one line and
 * records the point; the best solution is kept in best_theta. */
static mmt_status sweep_try(sweep *w, double C, const double *start) {
    if (start != w->theta) memcpy(w->theta, start, (size_t)w->size * sizeof(double));
    mmt_lbfgs_result lr;
    MMT_TRY(mmt_probe_logreg_fit(w->lr, C, &w->p->lbfgs, w->theta, &lr));
    mmt_probe_sweep_point pt = {.C = C, .iterations = lr.iterations};
    int64_t correct = 0;
    MMT_TRY(mmt_probe_predict(w->theta, w->K, w->P, w->sp->held_emb, w->sp->held_labels, w->sp->n_held, NULL, &correct,
                              &pt.heldout_loss));
    pt.heldout_accuracy = (double)correct / (double)w->sp->n_held;
    MMT_TRY(mmt_grow((void **)&w->r->sweep, &w->cap, w->r->n_sweep + 1, sizeof pt));
    w->r->sweep[w->r->n_sweep] = pt;
    mmt_log_info("linear probe: C %-9.3g held-out accuracy %.4f (%lld/%lld), loss %.4f, %lld L-BFGS iterations (%s)", C,
                 pt.heldout_accuracy, (long long)correct, (long long)w->sp->n_held, pt.heldout_loss,
                 (long long)lr.iterations, mmt_lbfgs_stop_name(lr.stop));
    if (w->best < 0 || better(&pt, &w->r->sweep[w->best])) {
        w->best = w->r->n_sweep;
        memcpy(w->best_theta, w->theta, (size_t)w->size * sizeof(double));
    }
    w->r->n_sweep++;
    return MMT_OK;
}

/* The decades c_min..c_max along the regularisation path, then the refinement in log C.
 * On success best_theta holds the solution at the chosen C (a warm start for the refit). */
static mmt_status sweep_run(sweep *w) {
    const mmt_probe_fit_params *p = w->p;
    int64_t lo = (int64_t)floor(log10(p->c_min) + 0.5), hi = (int64_t)floor(log10(p->c_max) + 0.5);
    memset(w->theta, 0, (size_t)w->size * sizeof(double));
    for (int64_t e = lo; e <= hi; e++) MMT_TRY(sweep_try(w, pow(10.0, (double)e), w->theta));
    double h = 1.0;
    for (int64_t r = 0; r < p->refine_steps; r++) {
        h *= 0.5;
        double center = w->r->sweep[w->best].C;
        /* the best solution is overwritten when a neighbour wins: start both from a copy */
        double *start = mmt_malloc((size_t)w->size * sizeof(double));
        if (!start) return MMT_STATUS_OUT_OF_MEMORY;
        memcpy(start, w->best_theta, (size_t)w->size * sizeof(double));
        mmt_status s = sweep_try(w, center * pow(10.0, -h), start);
        if (s == MMT_OK) s = sweep_try(w, center * pow(10.0, h), start);
        mmt_free(start);
        MMT_TRY(s);
    }
    return MMT_OK;
}

mmt_status mmt_probe_fit(const float *emb, const int32_t *labels, int64_t n, const mmt_probe_fit_params *p,
                         mmt_probe_head *head, mmt_probe_fit_result *result) {
    memset(result, 0, sizeof *result);
    result->heldout_accuracy = result->heldout_loss = NAN;
    const int64_t K = head->K, P = head->P;
    if (!(p->heldout_fraction >= 0 && p->heldout_fraction < 1) || !(p->c_min > 0 && p->c_min <= p->c_max) ||
        !isfinite(p->c_max) || p->refine_steps < 0 || !(p->fallback_C > 0) || !(p->C >= 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "linear probe: needs 0 <= heldout_fraction < 1, 0 < c_min <= c_max, refine_steps >= 0, C >= 0");
    double t0 = mmt_now_seconds();
    split sp = {0};
    mmt_probe_logreg *lr_fit = NULL, *lr_all = NULL;
    sweep w = {.p = p, .sp = &sp, .K = K, .P = P, .size = K * (P + 1), .r = result, .best = -1};
    double *theta = mmt_calloc((size_t)w.size, sizeof(double));
    w.theta = mmt_calloc((size_t)w.size, sizeof(double));
    w.best_theta = mmt_calloc((size_t)w.size, sizeof(double));
    mmt_status s = theta && w.theta && w.best_theta ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = mmt_probe_logreg_create(emb, labels, n, P, K, &lr_all);
    if (s == MMT_OK && p->C == 0) s = split_make(emb, labels, n, P, K, p, &sp);
    result->n_fit = sp.n_held > 0 ? sp.n_fit : n;
    result->n_heldout = sp.n_held;
    result->C = p->C > 0 ? p->C : p->fallback_C;
    if (s == MMT_OK && sp.n_held > 0) {
        mmt_log_info("linear probe: choosing C on %lld held-out of %lld examples (%lld classes, dim %lld)",
                     (long long)sp.n_held, (long long)n, (long long)K, (long long)P);
        s = mmt_probe_logreg_create(sp.fit_emb, sp.fit_labels, sp.n_fit, P, K, &lr_fit);
        w.lr = lr_fit;
        if (s == MMT_OK) s = sweep_run(&w);
        if (s == MMT_OK) {
            const mmt_probe_sweep_point *b = &result->sweep[w.best];
            result->C = b->C;
            result->heldout_accuracy = b->heldout_accuracy;
            result->heldout_loss = b->heldout_loss;
            memcpy(theta, w.best_theta, (size_t)w.size * sizeof(double));
            mmt_log_info("linear probe: chose C %.3g (held-out accuracy %.4f); refitting on all %lld examples", b->C,
                         b->heldout_accuracy, (long long)n);
        }
    } else if (s == MMT_OK && p->C == 0) {
        mmt_log_info("linear probe: too few examples per class to hold any out; C %g", result->C);
    }
    mmt_lbfgs_result lb;
    if (s == MMT_OK) s = mmt_probe_logreg_fit(lr_all, result->C, &p->lbfgs, theta, &lb);
    if (s == MMT_OK) {
        result->iterations = lb.iterations;
        result->stop = lb.stop;
        result->objective = mmt_probe_logreg_objective(lr_all, result->C, theta, NULL, &result->train_loss);
        for (int64_t j = 0; j < K * P; j++) head->weight[j] = (float)theta[j];
        for (int64_t k = 0; k < K; k++) head->bias[k] = (float)theta[K * P + k];
        result->seconds = mmt_now_seconds() - t0;
        mmt_log_info("linear probe: C %.3g: training loss %.4f, objective %.6f, %lld L-BFGS iterations (%s), %.2f s",
                     result->C, result->train_loss, result->objective, (long long)lb.iterations,
                     mmt_lbfgs_stop_name(lb.stop), result->seconds);
    }
    mmt_free(theta);
    mmt_free(w.theta);
    mmt_free(w.best_theta);
    mmt_probe_logreg_free(lr_fit);
    mmt_probe_logreg_free(lr_all);
    split_free(&sp);
    if (s != MMT_OK) mmt_probe_fit_result_free(result);
    return s;
}

mmt_status mmt_probe_task_fit(mmt_probe_task *t, const mmt_probe_fit_params *p, mmt_probe_fit_result *result) {
    int64_t n;
    const int32_t *labels = mmt_probe_task_labels(t, &n);
    return mmt_probe_fit(mmt_probe_task_embeddings(t), labels, n, p, mmt_probe_task_head_mutable(t), result);
}

/* ---- the record and the folder ------------------------------------------------------------ */

/* JSON has no NaN: null instead. */
static void json_number(mmt_strbuf *b, double v) {
    if (isfinite(v)) mmt_strbuf_printf(b, "%.17g", v);
    else mmt_strbuf_printf(b, "null");
}

char *mmt_probe_fit_json(const mmt_probe_fit_result *r, const mmt_probe_fit_params *p) {
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{\n    \"solver\": \"lbfgs\",\n    \"objective\": \"mean cross-entropy + ||W||^2 / (2 C n)\","
                          "\n    \"C\": ");
    json_number(&b, r->C);
    mmt_strbuf_printf(&b, ",\n    \"l2_lambda\": ");
    json_number(&b, 1.0 / (r->C * (double)(r->n_fit + r->n_heldout)));
    mmt_strbuf_printf(&b, ",\n    \"heldout_fraction\": ");
    json_number(&b, p->heldout_fraction);
    mmt_strbuf_printf(&b, ",\n    \"heldout_examples\": %lld,\n    \"heldout_accuracy\": ", (long long)r->n_heldout);
    json_number(&b, r->heldout_accuracy);
    mmt_strbuf_printf(&b, ",\n    \"heldout_loss\": ");
    json_number(&b, r->heldout_loss);
    mmt_strbuf_printf(&b, ",\n    \"train_loss\": ");
    json_number(&b, r->train_loss);
    mmt_strbuf_printf(&b, ",\n    \"iterations\": %lld,\n    \"stop\": \"%s\",\n    \"sweep\": [", (long long)r->iterations,
                      mmt_lbfgs_stop_name(r->stop));
    for (int64_t i = 0; i < r->n_sweep; i++) {
        const mmt_probe_sweep_point *s = &r->sweep[i];
        mmt_strbuf_printf(&b, "%s\n      {\"C\": %.6g, \"heldout_accuracy\": ", i ? "," : "", s->C);
        json_number(&b, s->heldout_accuracy);
        mmt_strbuf_printf(&b, ", \"heldout_loss\": ");
        json_number(&b, s->heldout_loss);
        mmt_strbuf_printf(&b, ", \"iterations\": %lld}", (long long)s->iterations);
    }
    mmt_strbuf_printf(&b, "%s]\n  }", r->n_sweep ? "\n    " : "");
    if (b.failed) {
        mmt_strbuf_free(&b);
        return NULL;
    }
    return b.data;
}

mmt_status mmt_probe_head_publish(const mmt_probe_head *h, const char *base_model, const mmt_probe_fit_result *r,
                                  const mmt_probe_fit_params *p, const char *run_dir) {
    char *final = mmt_path_join(run_dir, "adapter"), *tmp = NULL;
    char *fit = r && p ? mmt_probe_fit_json(r, p) : NULL;
    mmt_status s = final && (fit || !r || !p) ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = mmt_dir_begin(final, &tmp);
    if (s == MMT_OK) s = mmt_probe_head_save_fit(h, base_model, fit, tmp);
    if (tmp) s = mmt_dir_finish(tmp, final, s);
    mmt_free(fit);
    mmt_free(tmp);
    mmt_free(final);
    return s;
}
