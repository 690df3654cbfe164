/* lbfgs.c — limited-memory BFGS with a strong-Wolfe line search (see lbfgs.h). */
#include "train/lbfgs.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/alloc.h"

void mmt_lbfgs_params_default(mmt_lbfgs_params *p) {
    p->memory = 10;
    p->max_iterations = 1000;
    p->max_line_search = 50;
    p->gtol = 1e-6;
    p->ftol = 64 * DBL_EPSILON;
    p->c1 = 1e-4;
    p->c2 = 0.9;
}

const char *mmt_lbfgs_stop_name(mmt_lbfgs_stop stop) {
    switch (stop) {
    case MMT_LBFGS_STOP_GRADIENT: return "gradient";
    case MMT_LBFGS_STOP_FUNCTION: return "function";
    case MMT_LBFGS_STOP_MAX_ITERATIONS: return "max_iterations";
    case MMT_LBFGS_STOP_LINE_SEARCH: return "line_search";
    }
    return "?";
}

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double max_abs(const double *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

/* The working state: the current point and the memory of (s, y) pairs, a ring buffer. */
typedef struct lbfgs {
    mmt_lbfgs_fn fn;
    void *ctx;
    const mmt_lbfgs_params *p;
    int64_t n, m;
    double *x, *g;            /* borrowed x (the caller's), owned g (n) */
    double f;
    double *d;                /* owned (n): search direction */
    double *xt, *gt;          /* owned (n): the trial point of the line search and its gradient */
    double *xb, *gb;          /* owned (n): the best trial so far that meets sufficient decrease */
    double *s, *y;            /* owned (m, n) */
    double *rho, *alpha;      /* owned (m) */
    int64_t count, newest;    /* pairs held; index of the newest */
    int64_t evaluations;
} lbfgs;

/* f and gradient at xt into *f, gt; a non-finite value becomes +infinity. */
static mmt_status eval_trial(lbfgs *L, double a, double *f) {
    for (int64_t i = 0; i < L->n; i++) L->xt[i] = L->x[i] + a * L->d[i];
    L->evaluations++;
    MMT_TRY(L->fn(L->ctx, L->xt, f, L->gt));
    if (!isfinite(*f) || !isfinite(max_abs(L->gt, L->n))) *f = INFINITY;
    return MMT_OK;
}

/* d = -H g by the two-loop recursion with H0 = (s'y / y'y) I (Nocedal & Wright Alg. 7.4). */
static void direction(lbfgs *L) {
    int64_t n = L->n;
    for (int64_t i = 0; i < n; i++) L->d[i] = -L->g[i];
    int64_t k = L->newest;
    for (int64_t c = 0; c < L->count; c++, k = (k + L->m - 1) % L->m) {
        L->alpha[k] = L->rho[k] * dot(L->s + k * n, L->d, n);
        const double *y = L->y + k * n;
        for (int64_t i = 0; i < n; i++) L->d[i] -= L->alpha[k] * y[i];
    }
    if (L->count > 0) {
        const double *s = L->s + L->newest * n, *y = L->y + L->newest * n;
        double gamma = dot(s, y, n) / dot(y, y, n);
        for (int64_t i = 0; i < n; i++) L->d[i] *= gamma;
    }
    k = (L->newest + L->m - L->count + 1) % L->m; /* the oldest */
    for (int64_t c = 0; c < L->count; c++, k = (k + 1) % L->m) {
        double beta = L->rho[k] * dot(L->y + k * n, L->d, n);
        const double *s = L->s + k * n;
        for (int64_t i = 0; i < n; i++) L->d[i] += (L->alpha[k] - beta) * s[i];
    }
}

/* The minimiser of the cubic through (a, fa, da) and (b, fb, db) (Nocedal & Wright eq. 3.59),
 * kept at least a tenth of the interval away from both ends; the midpoint when the cubic
 * has no usable minimum. */
static double cubic_step(double a, double fa, double da, double b, double fb, double db) {
    double lo = fmin(a, b), hi = fmax(a, b), margin = 0.1 * (hi - lo), mid = 0.5 * (a + b);
    if (!isfinite(fa) || !isfinite(fb)) return mid;
    double d1 = da + db - 3 * (fa - fb) / (a - b);
    double disc = d1 * d1 - da * db;
    if (!(disc >= 0)) return mid;
    double d2 = copysign(sqrt(disc), b - a);
    double t = b - (b - a) * (db + d2 - d1) / (db - da + 2 * d2);
    if (!isfinite(t) || t < lo + margin || t > hi - margin) return mid;
    return t;
}

typedef struct ls_point {
    double a, f, d; /* step, f and directional derivative there */
} ls_point;

/* Keeps the trial as the best point meeting sufficient decrease. */
static void keep_best(lbfgs *L) {
    memcpy(L->xb, L->xt, (size_t)L->n * sizeof(double));
    memcpy(L->gb, L->gt, (size_t)L->n * sizeof(double));
}

/* Strong-Wolfe line search from step a0 along d, with dphi0 = g'd < 0. On success the new
 * point is in xb, gb with f *f_out and *found = 1. When the evaluations run out it settles
 * for the lowest point that meets sufficient decrease; *found = 0 when there is none. */
static mmt_status line_search(lbfgs *L, double a0, double dphi0, double *f_out, int *found) {
    const double phi0 = L->f, c1 = L->p->c1, c2 = L->p->c2;
    ls_point prev = {0, phi0, dphi0}, lo = {0}, hi = {0};
    double best_f = INFINITY, a = a0;
    int64_t evals = 0, zooming = 0;
    *found = 0;
    /* Bracketing (Algorithm 3.5): grow the step until it overshoots a minimum of phi. */
    while (!zooming) {
        if (evals++ >= L->p->max_line_search) goto settle;
        ls_point cur = {a, 0, 0};
        MMT_TRY(eval_trial(L, a, &cur.f));
        cur.d = isfinite(cur.f) ? dot(L->gt, L->d, L->n) : NAN;
        int armijo = cur.f <= phi0 + c1 * a * dphi0;
        if (armijo && cur.f < best_f) {
            best_f = cur.f;
            keep_best(L);
        }
        if (!armijo || (evals > 1 && cur.f >= prev.f)) {
            lo = prev;
            hi = cur;
            zooming = 1;
        } else if (fabs(cur.d) <= -c2 * dphi0) {
            keep_best(L);
            *f_out = cur.f;
            *found = 1;
            return MMT_OK;
        } else if (cur.d >= 0) {
            lo = cur;
            hi = prev;
            zooming = 1;
        } else {
            prev = cur;
            a = 4 * a;
        }
    }
    /* Zoom (Algorithm 3.6): lo always meets sufficient decrease and is the lowest so far. */
    for (;;) {
        if (evals++ >= L->p->max_line_search) goto settle;
        if (fabs(hi.a - lo.a) <= 1e-16 * fmax(fabs(lo.a), fabs(hi.a))) goto settle;
        ls_point cur;
        cur.a = cubic_step(lo.a, lo.f, lo.d, hi.a, hi.f, isfinite(hi.d) ? hi.d : 0);
        MMT_TRY(eval_trial(L, cur.a, &cur.f));
        cur.d = isfinite(cur.f) ? dot(L->gt, L->d, L->n) : NAN;
        if (cur.f > phi0 + c1 * cur.a * dphi0 || cur.f >= lo.f) {
            hi = cur;
            continue;
        }
        if (fabs(cur.d) <= -c2 * dphi0) {
            keep_best(L);
            *f_out = cur.f;
            *found = 1;
            return MMT_OK;
        }
        best_f = cur.f; /* below lo, the lowest so far */
        keep_best(L);
        if (cur.d * (hi.a - lo.a) >= 0) hi = lo;
        lo = cur;
    }
settle:
    if (best_f < phi0) {
        *f_out = best_f;
        *found = 1;
    }
    return MMT_OK;
}

/* Adds the pair (s, y) = (xb - x, gb - g) unless s'y is too small for a positive-definite
 * update. A refused pair has already overwritten the oldest slot, which is then dropped. */
static void remember(lbfgs *L) {
    int64_t n = L->n, k = (L->newest + 1) % L->m;
    double *s = L->s + k * n, *y = L->y + k * n;
    for (int64_t i = 0; i < n; i++) {
        s[i] = L->xb[i] - L->x[i];
        y[i] = L->gb[i] - L->g[i];
    }
    double sy = dot(s, y, n), yy = dot(y, y, n);
    if (!(sy > DBL_EPSILON * yy) || !(yy > 0)) {
        if (L->count == L->m) L->count--;
        return;
    }
    L->rho[k] = 1 / sy;
    L->newest = k;
    if (L->count < L->m) L->count++;
}

mmt_status mmt_lbfgs_minimize(mmt_lbfgs_fn fn, void *ctx, int64_t n, double *x, const mmt_lbfgs_params *p,
                              mmt_lbfgs_result *result) {
    memset(result, 0, sizeof *result);
    if (n < 1 || p->memory < 1 || p->max_line_search < 1 || !(p->c1 > 0 && p->c1 < p->c2 && p->c2 < 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "L-BFGS: needs n >= 1, memory >= 1, max_line_search >= 1 and 0 < c1 < c2 < 1");
    lbfgs L = {.fn = fn, .ctx = ctx, .p = p, .n = n, .m = p->memory, .x = x, .newest = p->memory - 1};
    size_t vec = (size_t)n * sizeof(double);
    L.g = mmt_malloc(vec);
    L.d = mmt_malloc(vec);
    L.xt = mmt_malloc(vec);
    L.gt = mmt_malloc(vec);
    L.xb = mmt_malloc(vec);
    L.gb = mmt_malloc(vec);
    L.s = mmt_malloc((size_t)L.m * vec);
    L.y = mmt_malloc((size_t)L.m * vec);
    L.rho = mmt_malloc((size_t)L.m * sizeof(double));
    L.alpha = mmt_malloc((size_t)L.m * sizeof(double));
    mmt_status s = MMT_OK;
    if (!L.g || !L.d || !L.xt || !L.gt || !L.xb || !L.gb || !L.s || !L.y || !L.rho || !L.alpha) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    L.evaluations = 1;
    if ((s = fn(ctx, x, &L.f, L.g)) != MMT_OK) goto done;
    double gnorm = max_abs(L.g, n);
    if (!isfinite(L.f) || !isfinite(gnorm)) {
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "L-BFGS: the objective or its gradient is not finite at the start");
        goto done;
    }
    result->stop = MMT_LBFGS_STOP_MAX_ITERATIONS;
    int64_t it = 0;
    for (; gnorm > p->gtol; it++) {
        if (it >= p->max_iterations) goto finish;
        direction(&L);
        double gd = dot(L.g, L.d, n);
        if (!(gd < 0)) { /* not a descent direction: start the memory afresh */
            L.count = 0;
            direction(&L);
            gd = dot(L.g, L.d, n);
        }
        double a0 = L.count ? 1.0 : fmin(1.0, 1.0 / sqrt(dot(L.g, L.g, n)));
        double f_new;
        int found;
        if ((s = line_search(&L, a0, gd, &f_new, &found)) != MMT_OK) goto done;
        if (!found && L.count > 0) { /* retry along -g with no memory */
            L.count = 0;
            direction(&L);
            gd = dot(L.g, L.d, n);
            a0 = fmin(1.0, 1.0 / sqrt(dot(L.g, L.g, n)));
            if ((s = line_search(&L, a0, gd, &f_new, &found)) != MMT_OK) goto done;
        }
        if (!found) {
            result->stop = MMT_LBFGS_STOP_LINE_SEARCH;
            goto finish;
        }
        remember(&L);
        double f_prev = L.f;
        memcpy(x, L.xb, vec);
        memcpy(L.g, L.gb, vec);
        L.f = f_new;
        gnorm = max_abs(L.g, n);
        if (f_prev - L.f <= p->ftol * fmax(fmax(fabs(f_prev), fabs(L.f)), 1.0) && gnorm > p->gtol) {
            it++;
            result->stop = MMT_LBFGS_STOP_FUNCTION;
            goto finish;
        }
    }
    result->stop = MMT_LBFGS_STOP_GRADIENT;
finish:
    result->iterations = it;
    result->f = L.f;
    result->gnorm = gnorm;
done:
    result->evaluations = L.evaluations;
    mmt_free(L.g);
    mmt_free(L.d);
    mmt_free(L.xt);
    mmt_free(L.gt);
    mmt_free(L.xb);
    mmt_free(L.gb);
    mmt_free(L.s);
    mmt_free(L.y);
    mmt_free(L.rho);
    mmt_free(L.alpha);
    return s;
}
