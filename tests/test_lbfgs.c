/*
 * test_lbfgs.c — the L-BFGS optimiser (train/lbfgs.h) on functions with known minima:
 *   - Rosenbrock in 2 and 10 dimensions from the textbook starts (-1.2, 1, ...): converges to
 *     x = (1, ..., 1) within 1e-6 per coordinate, f below 1e-12, by the gradient test;
 *   - an ill-conditioned quadratic (50 eigenvalues 1 .. 1e4) reaches its minimiser within 1e-6
 *     in at most 1000 iterations (scipy's L-BFGS-B with maxcor 10 takes 798 to |g| <= 1e-8);
 *   - the start already optimal: zero iterations; a cap of 3 iterations stops there;
 *   - a function that is NaN past a wall the quasi-Newton step overshoots: the line search
 *     backs off and still converges; an error from the callback comes back unchanged; a non-finite start and bad
 *     parameters are errors; out-of-memory on each allocation fails cleanly.
 */
#include <stdint.h>

#include "check.h"
#include "core/alloc.h"
#include "train/lbfgs.h"

static int64_t calls;

/* sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2 (the chained Rosenbrock function). */
static mmt_status rosenbrock(void *ctx, const double *x, double *f, double *g) {
    int64_t n = *(const int64_t *)ctx;
    calls++;
    *f = 0;
    for (int64_t i = 0; i < n; i++) g[i] = 0;
    for (int64_t i = 0; i + 1 < n; i++) {
        double a = x[i + 1] - x[i] * x[i], b = 1 - x[i];
        *f += 100 * a * a + b * b;
        g[i] += -400 * a * x[i] - 2 * b;
        g[i + 1] += 200 * a;
    }
    return MMT_OK;
}

static void check_rosenbrock(int64_t n) {
    double x[10];
    for (int64_t i = 0; i < n; i++) x[i] = i % 2 == 0 ? -1.2 : 1.0;
    mmt_lbfgs_params p;
    mmt_lbfgs_params_default(&p);
    p.gtol = 1e-9;
    p.ftol = 0; /* only the gradient test: f reaches ~1e-16 where 64 eps would stop it */
    mmt_lbfgs_result r;
    calls = 0;
    CHECK_OK(mmt_lbfgs_minimize(rosenbrock, &n, n, x, &p, &r));
    CHECK_MSG(r.stop == MMT_LBFGS_STOP_GRADIENT, "n %lld: stopped by %s after %lld iterations", (long long)n,
              mmt_lbfgs_stop_name(r.stop), (long long)r.iterations);
    for (int64_t i = 0; i < n; i++) CHECK_NEAR(x[i], 1.0, 1e-6);
    CHECK_MSG(r.f < 1e-12 && r.gnorm <= 1e-9, "f %.3g |g| %.3g", r.f, r.gnorm);
    CHECK(r.evaluations == calls && r.iterations > 10 && r.iterations < 200);
}

static void test_rosenbrock(void) {
    check_rosenbrock(2);
    check_rosenbrock(10);
}

/* 0.5 sum_i d_i (x_i - c_i)^2 with d_i from 1 to 1e4, c_i = i / n. */
static mmt_status quadratic(void *ctx, const double *x, double *f, double *g) {
    int64_t n = *(const int64_t *)ctx;
    *f = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = pow(1e4, (double)i / (double)(n - 1)), e = x[i] - (double)i / (double)n;
        *f += 0.5 * d * e * e;
        g[i] = d * e;
    }
    return MMT_OK;
}

static void test_ill_conditioned_quadratic(void) {
    int64_t n = 50;
    double x[50] = {0};
    mmt_lbfgs_params p;
    mmt_lbfgs_params_default(&p);
    p.gtol = 1e-8;
    p.ftol = 0;
    mmt_lbfgs_result r;
    CHECK_OK(mmt_lbfgs_minimize(quadratic, &n, n, x, &p, &r));
    CHECK_MSG(r.stop == MMT_LBFGS_STOP_GRADIENT && r.iterations <= 1000, "%s after %lld iterations, |g| %.3g",
              mmt_lbfgs_stop_name(r.stop), (long long)r.iterations, r.gnorm);
    for (int64_t i = 0; i < n; i++) CHECK_NEAR(x[i], (double)i / (double)n, 1e-6);
    /* from the minimiser: nothing to do */
    CHECK_OK(mmt_lbfgs_minimize(quadratic, &n, n, x, &p, &r));
    CHECK(r.iterations == 0 && r.evaluations == 1 && r.stop == MMT_LBFGS_STOP_GRADIENT);
    /* an iteration cap */
    for (int64_t i = 0; i < n; i++) x[i] = 5;
    p.max_iterations = 3;
    CHECK_OK(mmt_lbfgs_minimize(quadratic, &n, n, x, &p, &r));
    CHECK(r.iterations == 3 && r.stop == MMT_LBFGS_STOP_MAX_ITERATIONS && r.f < 0.5 * 1e4 * 25 * n);
}

/* sqrt(1 + (x - 3)^2) for x < 10, NaN beyond. Far from 3 it is nearly linear, so the secant
 * curvature is tiny and the quasi-Newton step lands far past the wall: the line search must
 * back off from the non-finite region. */
static mmt_status walled(void *ctx, const double *x, double *f, double *g) {
    (void)ctx;
    double d = x[0] - 3, r = sqrt(1 + d * d);
    *f = x[0] < 10 ? r : NAN;
    g[0] = d / r;
    return MMT_OK;
}

static void test_non_finite_region(void) {
    double x[1] = {-100};
    mmt_lbfgs_params p;
    mmt_lbfgs_params_default(&p);
    mmt_lbfgs_result r;
    CHECK_OK(mmt_lbfgs_minimize(walled, NULL, 1, x, &p, &r));
    CHECK_MSG(fabs(x[0] - 3) < 1e-5 && r.stop == MMT_LBFGS_STOP_GRADIENT, "x %.9g after %lld iterations (%s)", x[0],
              (long long)r.iterations, mmt_lbfgs_stop_name(r.stop));
    x[0] = 11;
    CHECK_FAILS(mmt_lbfgs_minimize(walled, NULL, 1, x, &p, &r), MMT_STATUS_INVALID_ARGUMENT, "not finite at the start");
}

static int64_t fail_at;
static mmt_status failing(void *ctx, const double *x, double *f, double *g) {
    if (--fail_at == 0) return mmt_fail(MMT_STATUS_IO, "callback says no");
    return rosenbrock(ctx, x, f, g);
}

static void test_errors(void) {
    int64_t n = 2;
    double x[2] = {-1.2, 1};
    mmt_lbfgs_params p;
    mmt_lbfgs_params_default(&p);
    mmt_lbfgs_result r;
    for (fail_at = 1; fail_at <= 5;) {
        int64_t at = fail_at;
        x[0] = -1.2;
        x[1] = 1;
        CHECK_FAILS(mmt_lbfgs_minimize(failing, &n, n, x, &p, &r), MMT_STATUS_IO, "callback says no");
        CHECK(r.evaluations == at);
        fail_at = at + 1;
    }
    p.c2 = p.c1 / 2;
    CHECK_FAILS(mmt_lbfgs_minimize(rosenbrock, &n, n, x, &p, &r), MMT_STATUS_INVALID_ARGUMENT, "0 < c1 < c2 < 1");
    mmt_lbfgs_params_default(&p);
    CHECK_FAILS(mmt_lbfgs_minimize(rosenbrock, &n, 0, x, &p, &r), MMT_STATUS_INVALID_ARGUMENT, "n >= 1");
    for (long k = 1; k <= 10; k++) {
        x[0] = -1.2;
        x[1] = 1;
        mmt_alloc_fail_after(k);
        mmt_status s = mmt_lbfgs_minimize(rosenbrock, &n, n, x, &p, &r);
        mmt_alloc_fail_after(0);
        CHECK_MSG(s == MMT_STATUS_OUT_OF_MEMORY, "allocation %ld: %s", k, mmt_status_name(s));
    }
}

int main(void) {
    RUN(test_rosenbrock);
    RUN(test_ill_conditioned_quadratic);
    RUN(test_non_finite_region);
    RUN(test_errors);
    return check_summary();
}
