/*
 * test_ops_train.c — the optimizer and normalisation ops (adamw_step, sum_squares, scale,
 * find_nonfinite, l2_normalize_fwd/_bwd, tanh_fwd/_bwd): each fast CPU entry against its reference twin on
 * random shapes, and each reference against an independent double-precision formula.
 *
 * Tolerances:
 *   fast vs ref: bitwise for every op (the same arithmetic; the AVX2 AdamW uses exactly
 *     rounded fma, sqrt and division lane by lane), NaN compared as "both NaN".
 *   adamw_step_ref vs the update in double: 1e-5 relative to the parameter's change plus
 *     1e-6 (float32 rounding of a handful of operations); v to 1e-6 relative, m to 1e-6 of
 *     beta1 |m| + (1 - beta1) |g| (the terms cancel).
 *   sum_squares_ref vs a double sum: exact (the same order); against a long double sum
 *     n * DBL_EPSILON relative (the bound of a recursive sum).
 *   l2_normalize_fwd_ref vs double: 2e-7 per element (|y| <= 1), norms 1e-7 relative;
 *   l2_normalize_bwd_ref vs the double formula: 2e-6 * (1 + |dy|) / norm.
 *   tanh_fwd_ref vs double tanh: 2 ulp (2 * FLT_EPSILON * |y|, tanhf's documented
 *     accuracy is about 1 ulp); tanh_bwd_ref vs dy (1 - y^2) in double: 1e-6 * |dy| + 1e-12.
 * The fast-vs-ref checks run once per fast table ("avx2", "avx512") this CPU has.
 * torch parity of AdamW itself is tests/test_optimizer.c and test_train_parity.c.
 */
#include <float.h>
#include <stdint.h>

#include "check.h"
#include "ops/ops.h"
#include "ops_fixture.h"

/* Equal bits, or both NaN. */
static int same_floats(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (a[i] != a[i] && b[i] != b[i]) continue;
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) return 0;
    }
    return 1;
}

static const int64_t sizes[] = {0, 1, 7, 8, 9, 15, 16, 17, 100, 1023, 4099};
#define N_SIZES (sizeof sizes / sizeof sizes[0])

static mmt_adamw_scalars scalars(double lr, double beta1, double beta2, double eps, double wd,
                                 int64_t t) {
    double bc1 = 1.0 - pow(beta1, (double)t), bc2 = 1.0 - pow(beta2, (double)t);
    mmt_adamw_scalars s;
    s.decay = (float)(1.0 - lr * wd);
    s.apply_decay = wd != 0.0;
    s.neg_step = (float)(-(lr / bc1));
    s.lerp_weight = (float)(1.0 - beta1);
    s.beta2 = (float)beta2;
    s.one_minus_beta2 = (float)(1.0 - beta2);
    s.bias_correction2_sqrt = (float)pow(bc2, 0.5);
    s.eps = (float)eps;
    return s;
}

/* Three steps of both tables on copies of the same state, over sizes around the vector
 * width, with and without amsgrad and decay, both lerp branches, and a few non-finite
 * gradients. */
static void test_adamw_fast_matches_ref(void) {
    const mmt_ops *ref = mmt_ops_ref(), *fast = fast_ops();
    if (fast == ref) printf("     (no AVX2: the reference runs against itself)\n");
    static const double betas1[] = {0.9, 0.3};
    for (size_t k = 0; k < N_SIZES; k++)
        for (int amsgrad = 0; amsgrad < 2; amsgrad++)
            for (int b = 0; b < 2; b++) {
                int64_t n = sizes[k];
                float *p0 = random_floats(n, 1.0f), *g = random_floats(n, 0.1f);
                float *m0 = random_floats(n, 0.01f), *v0 = random_floats(n, 1e-4f);
                for (int64_t i = 0; i < n; i++) v0[i] = fabsf(v0[i]);
                if (n > 9) g[3] = NAN, g[9] = INFINITY;
                float *p[2], *m[2], *v[2], *vmax[2];
                for (int j = 0; j < 2; j++) {
                    p[j] = guarded_copy(p0, n), m[j] = guarded_copy(m0, n);
                    v[j] = guarded_copy(v0, n), vmax[j] = amsgrad ? guarded_copy(v0, n) : NULL;
                }
                for (int64_t t = 1; t <= 3; t++) {
                    mmt_adamw_scalars s = scalars(1e-2, betas1[b], 0.999, 1e-8, t == 2 ? 0.0 : 0.1, t);
                    ref->adamw_step(p[0], g, m[0], v[0], vmax[0], n, &s);
                    fast->adamw_step(p[1], g, m[1], v[1], vmax[1], n, &s);
                }
                CHECK_MSG(same_floats(p[0], p[1], n) && same_floats(m[0], m[1], n) &&
                              same_floats(v[0], v[1], n) &&
                              (!amsgrad || same_floats(vmax[0], vmax[1], n)),
                          "n=%lld amsgrad=%d beta1=%g", (long long)n, amsgrad, betas1[b]);
                for (int j = 0; j < 2; j++) {
                    CHECK(guarded_ok(p[j], n) && guarded_ok(m[j], n) && guarded_ok(v[j], n));
                    if (amsgrad) CHECK(guarded_ok(vmax[j], n));
                    guarded_free(p[j]), guarded_free(m[j]), guarded_free(v[j]), guarded_free(vmax[j]);
                }
                free(p0), free(g), free(m0), free(v0);
            }
}

/* One step of the reference against AdamW written in double. */
static void test_adamw_ref_matches_double(void) {
    int64_t n = 257;
    double lr = 3e-3, beta1 = 0.9, beta2 = 0.99, eps = 1e-6, wd = 0.05;
    int64_t t = 4;
    float *p = random_floats(n, 1.0f), *g = random_floats(n, 0.5f);
    float *m = random_floats(n, 0.1f), *v = random_floats(n, 0.01f);
    for (int64_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    double *pd = malloc((size_t)n * sizeof *pd), *md = malloc((size_t)n * sizeof *md);
    double *vd = malloc((size_t)n * sizeof *vd);
    for (int64_t i = 0; i < n; i++) {
        double bc1 = 1.0 - pow(beta1, (double)t), bc2 = 1.0 - pow(beta2, (double)t);
        md[i] = beta1 * m[i] + (1.0 - beta1) * g[i];
        vd[i] = beta2 * v[i] + (1.0 - beta2) * (double)g[i] * g[i];
        double decayed = p[i] * (1.0 - lr * wd);
        pd[i] = decayed - lr / bc1 * md[i] / (sqrt(vd[i]) / sqrt(bc2) + eps);
    }
    /* The scale of the first moment's terms: its error is relative to them, not to m. */
    double *m_scale = malloc((size_t)n * sizeof *m_scale);
    for (int64_t i = 0; i < n; i++) m_scale[i] = beta1 * fabs(m[i]) + (1.0 - beta1) * fabs(g[i]);
    float *p_before = malloc((size_t)n * sizeof *p_before);
    memcpy(p_before, p, (size_t)n * sizeof *p);
    mmt_adamw_scalars s = scalars(lr, beta1, beta2, eps, wd, t);
    mmt_ops_ref()->adamw_step(p, g, m, v, NULL, n, &s);
    for (int64_t i = 0; i < n; i++) {
        double change = fabs(pd[i] - p_before[i]);
        CHECK_NEAR(p[i], pd[i], 1e-5 * change + 1e-6);
        CHECK_NEAR(m[i], md[i], 1e-6 * m_scale[i]);
        CHECK_NEAR(v[i], vd[i], 1e-6 * fabs(vd[i]) + 1e-15);
    }
    free(p), free(g), free(m), free(v), free(pd), free(md), free(vd), free(p_before), free(m_scale);
}

static void test_sum_squares(void) {
    const mmt_ops *ref = mmt_ops_ref(), *fast = fast_ops();
    for (size_t k = 0; k < N_SIZES; k++) {
        int64_t n = sizes[k];
        float *x = random_floats(n, 3.0f);
        double in_order = 0.0;
        long double wide = 0.0L;
        for (int64_t i = 0; i < n; i++) {
            in_order += (double)x[i] * x[i];
            wide += (long double)x[i] * x[i];
        }
        double r = ref->sum_squares(x, n), f = fast->sum_squares(x, n);
        CHECK_MSG(r == in_order && f == r, "n=%lld", (long long)n);
        CHECK_NEAR(r, (double)wide, (double)n * DBL_EPSILON * (double)wide);
        free(x);
    }
    float x[] = {3.0f, -4.0f};
    CHECK(mmt_ops_ref()->sum_squares(x, 2) == 25.0);
}

static void test_scale_and_find_nonfinite(void) {
    const mmt_ops *ref = mmt_ops_ref(), *fast = fast_ops();
    for (size_t k = 0; k < N_SIZES; k++) {
        int64_t n = sizes[k];
        float *x = random_floats(n, 2.0f);
        float *a = guarded_copy(x, n), *b = guarded_copy(x, n);
        ref->scale(a, 0.37f, n);
        fast->scale(b, 0.37f, n);
        for (int64_t i = 0; i < n; i++) CHECK(a[i] == x[i] * 0.37f);
        CHECK(same_floats(a, b, n) && guarded_ok(a, n) && guarded_ok(b, n));
        CHECK(ref->find_nonfinite(x, n) == -1 && fast->find_nonfinite(x, n) == -1);
        if (n > 5) {
            x[n - 2] = -INFINITY;
            CHECK(ref->find_nonfinite(x, n) == n - 2 && fast->find_nonfinite(x, n) == n - 2);
            x[5] = NAN;
            CHECK(ref->find_nonfinite(x, n) == 5 && fast->find_nonfinite(x, n) == 5);
        }
        guarded_free(a), guarded_free(b), free(x);
    }
}

static const int64_t rows[][2] = {{1, 1}, {1, 8}, {3, 5}, {4, 512}, {32, 768}, {7, 9}};
#define N_ROWS (sizeof rows / sizeof rows[0])

static void test_l2_normalize_fwd(void) {
    const mmt_ops *ref = mmt_ops_ref(), *fast = fast_ops();
    for (size_t k = 0; k < N_ROWS; k++) {
        int64_t B = rows[k][0], P = rows[k][1];
        float *x = random_floats(B * P, 2.0f);
        if (B > 1) memset(x + P, 0, (size_t)P * sizeof(float)); /* a zero row gives zeros */
        float *y = guarded_alloc(B * P), *yf = guarded_alloc(B * P);
        float *norm = guarded_alloc(B), *nf = guarded_alloc(B);
        ref->l2_normalize_fwd(y, norm, x, B, P);
        fast->l2_normalize_fwd(yf, nf, x, B, P);
        CHECK(same_floats(y, yf, B * P) && same_floats(norm, nf, B));
        CHECK(guarded_ok(y, B * P) && guarded_ok(norm, B) && guarded_ok(yf, B * P));
        for (int64_t b = 0; b < B; b++) {
            double ss = 0;
            for (int64_t j = 0; j < P; j++) ss += (double)x[b * P + j] * x[b * P + j];
            double nd = sqrt(ss);
            CHECK_NEAR(norm[b], nd, 1e-7 * nd);
            for (int64_t j = 0; j < P; j++)
                CHECK_NEAR(y[b * P + j], nd > 0 ? x[b * P + j] / nd : 0.0, 2e-7);
        }
        /* In place, and without norms: the same bits. */
        float *z = guarded_copy(x, B * P);
        fast->l2_normalize_fwd(z, NULL, z, B, P);
        CHECK(same_floats(z, y, B * P) && guarded_ok(z, B * P));
        guarded_free(z), guarded_free(y), guarded_free(yf), guarded_free(norm), guarded_free(nf);
        free(x);
    }
}

static void test_l2_normalize_bwd(void) {
    const mmt_ops *ref = mmt_ops_ref(), *fast = fast_ops();
    for (size_t k = 0; k < N_ROWS; k++) {
        int64_t B = rows[k][0], P = rows[k][1];
        float *x = random_floats(B * P, 2.0f), *dy = random_floats(B * P, 1.0f);
        if (B > 1) memset(x + P, 0, (size_t)P * sizeof(float));
        float *y = malloc((size_t)(B * P) * sizeof(float)), *norm = malloc((size_t)B * sizeof(float));
        ref->l2_normalize_fwd(y, norm, x, B, P);
        float *dx0 = random_floats(B * P, 0.5f);
        float *dx = guarded_copy(dx0, B * P), *dxf = guarded_copy(dx0, B * P);
        ref->l2_normalize_bwd(dx, dy, y, norm, B, P);
        fast->l2_normalize_bwd(dxf, dy, y, norm, B, P);
        CHECK(same_floats(dx, dxf, B * P) && guarded_ok(dx, B * P) && guarded_ok(dxf, B * P));
        for (int64_t b = 0; b < B; b++) {
            double dot = 0;
            for (int64_t j = 0; j < P; j++) dot += (double)y[b * P + j] * dy[b * P + j];
            for (int64_t j = 0; j < P; j++) {
                int64_t i = b * P + j;
                double want = dx0[i] + (norm[b] > 0 ? (dy[i] - y[i] * dot) / norm[b] : 0.0);
                CHECK_NEAR(dx[i], want, norm[b] > 0 ? 2e-6 * (1 + fabs(dy[i])) / norm[b] : 0.0);
            }
        }
        guarded_free(dx), guarded_free(dxf);
        free(x), free(dy), free(y), free(norm), free(dx0);
    }
}

static void test_tanh(void) {
    const mmt_ops *ref = mmt_ops_ref(), *fast = fast_ops();
    for (size_t k = 0; k < N_SIZES; k++) {
        int64_t n = sizes[k];
        float *x = random_floats(n, 4.0f), *dy = random_floats(n, 1.0f);
        float *y = guarded_alloc(n), *yf = guarded_copy(x, n);
        ref->tanh_fwd(y, x, n);
        fast->tanh_fwd(yf, yf, n); /* in place */
        CHECK(same_floats(y, yf, n) && guarded_ok(y, n) && guarded_ok(yf, n));
        for (int64_t i = 0; i < n; i++) CHECK_NEAR(y[i], tanh((double)x[i]), 2 * FLT_EPSILON * fabs(tanh((double)x[i])) + 1e-30);
        float *dx0 = random_floats(n, 0.5f);
        float *dx = guarded_copy(dx0, n), *dxf = guarded_copy(dx0, n);
        ref->tanh_bwd(dx, dy, y, n);
        fast->tanh_bwd(dxf, dy, y, n);
        CHECK(same_floats(dx, dxf, n) && guarded_ok(dx, n) && guarded_ok(dxf, n));
        for (int64_t i = 0; i < n; i++)
            CHECK_NEAR(dx[i], dx0[i] + dy[i] * (1.0 - (double)y[i] * y[i]), 1e-6 * (fabs(dy[i]) + fabs(dx0[i])) + 1e-12);
        guarded_free(y), guarded_free(yf), guarded_free(dx), guarded_free(dxf);
        free(x), free(dy), free(dx0);
    }
}

int main(void) {
    rng_state = 0x5851f42d4c957f2dull; /* this file's stream of random inputs */
    mmt_log_set_level(MMT_LOG_SILENT);
    RUN(test_adamw_ref_matches_double);
    for (int t = 0; t < FAST_TABLES; t++) {
        if (!fast_table_use(t)) continue;
        RUN(test_adamw_fast_matches_ref);
        RUN(test_sum_squares);
        RUN(test_scale_and_find_nonfinite);
        RUN(test_l2_normalize_fwd);
        RUN(test_l2_normalize_bwd);
        RUN(test_tanh);
    }
    return check_summary();
}
