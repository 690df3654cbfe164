/*
 * test_ops_bwd.c — the backward kernels and gemm: the reference against finite differences
 * of the reference forward, every fast kernel against the reference, and the accumulate /
 * NULL-output contract of ops.h.
 *
 * 1. Reference vs finite differences. For an op with output y and a fixed random R, the loss
 *    L = sum(y * R) (summed in double) has dL/dinput = the op's backward given dy = R. Each
 *    input element is moved by +-h, h = 1e-3, and (L+ - L-) / (x+ - x-) (the float-rounded
 *    step) is compared with the analytic gradient:
 *        |analytic - fd| <= 1e-3 + 1e-2 |fd|.
 *    Why these numbers: with inputs and R of size ~1 the central difference's truncation
 *    error is h^2/6 |f'''| ~ 1e-7, and its rounding error is the float forward's error
 *    (~1e-7 per output it touches, times sqrt of their number) divided by 2h, a few 1e-5;
 *    the absolute 1e-3 leaves a 10x margin (observed worst: 7% of the bound) while any real
 *    mistake in a formula (a missing term, a wrong scale) shows up as 1e-2 .. 1.
 *    gemm (both tables, all four transpose combinations, several alpha/beta) is checked
 *    against a double loop instead: |c - exact| <= 2 sqrt(K) eps32 (|alpha| sum|a b| + |beta c|).
 * 2. Fast vs reference over many shapes: tiny, odd, not multiples of the 6x16 tile or the
 *    cache blocks, and the CLIP ViT-B/32 / text shapes. Outputs sit between guard words and
 *    start from random values (every backward accumulates). Tolerances:
 *      matmul_bwd |fast - ref| <= 2 sqrt(n) eps32 (||a row|| ||b col|| + |c0|), n the
 *                 reduction length: the Cauchy-Schwarz bound on sum |a b| times the usual
 *                 float dot-product error (the forward test uses the same form; observed
 *                 <= 0.3 of the bound, 0.04 at the CLIP shapes);
 *      layernorm  dx 2e-5 absolute (|dx| ~ 1; observed 1.2e-7, except 9e-6 at C = 1, where
 *                 rstd = 1/sqrt(eps) = 316 magnifies one rounding of dy * weight);
 *                 dweight/dbias 2e-6 sqrt(R) + 2 eps32 (sums of R terms of size <= 2;
 *                 observed 1.5e-5 at R = 1600, the reference sums in double);
 *      softmax    1e-6 (|dy|, |y| <= 1);
 *      gelu, quick_gelu  |fast - ref| <= 1e-6 |dy| + 2 eps32 |dx| (the AVX2 erf/exp are
 *                 good to ~3e-7 absolute, see vmath_avx2.h; the final dx + dy f' is one
 *                 fused rounding in the fast kernel, two in the reference);
 *      attention  1e-5 on dq, dk, dv (|q|, |k|, |v|, |dout| <= 1; observed <= 2e-6);
 *      embedding, patchify: bitwise equal (same additions in the same order).
 * 3. Contract: a pre-filled output gets += (compared with prefill + a zero-start run,
 *    relative 1e-5); NULL outputs are skipped and leave the other outputs bitwise
 *    unchanged; the fast kernels give bitwise the same result on 1 and 2 threads.
 * Parts 2 and 3 run once per fast table ("avx2", "avx512") this CPU has (ops_fixture.h).
 */
#include <float.h>
#include <stdint.h>

#include "check.h"
#include "ops/ops.h"
#include "ops_fixture.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- helpers ------------------------------------------------------------------------- */

static float *copy_floats(const float *src, int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (n > 0) memcpy(p, src, (size_t)n * sizeof(float));
    return p;
}

static double dot_double(const float *a, const float *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst;
}

static int same_bits(const float *a, const float *b, int64_t n) {
    return n <= 0 || memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

static void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ---- finite differences -------------------------------------------------------------- */

/* A forward to differentiate: run(ctx) recomputes ctx's output from its inputs (which the
 * checker perturbs in place); the loss is sum(out * weights). */
typedef struct fd_problem {
    void (*run)(void *ctx);
    void *ctx;
    const float *out;
    const float *weights; /* R, also the dy given to the backward */
    int64_t n_out;
} fd_problem;

static double fd_loss(const fd_problem *p) {
    p->run(p->ctx);
    return dot_double(p->out, p->weights, p->n_out);
}

#define FD_STEP 1e-3f

/* Compares grad (n) with central differences of the loss w.r.t. input (n), one element at a
 * time; returns the worst |grad - fd| / (1e-3 + 1e-2 |fd|) (pass: <= 1). */
static double fd_check(const char *what, const fd_problem *p, float *input, const float *grad,
                       int64_t n) {
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float saved = input[i], up = saved + FD_STEP, down = saved - FD_STEP;
        input[i] = up;
        double loss_up = fd_loss(p);
        input[i] = down;
        double loss_down = fd_loss(p);
        input[i] = saved;
        double fd = (loss_up - loss_down) / ((double)up - (double)down);
        double err = fabs(grad[i] - fd) / (1e-3 + 1e-2 * fabs(fd));
        if (err > 1.0)
            fprintf(stderr, "  %s[%lld]: analytic %.7g, finite difference %.7g\n", what,
                    (long long)i, grad[i], fd);
        worst = fmax(worst, err);
    }
    p->run(p->ctx); /* leave the output of the unperturbed inputs */
    return worst;
}

/* matmul: y = x @ w^T + bias */
typedef struct matmul_ctx {
    float *y, *x, *w, *bias;
    int64_t M, K, N;
} matmul_ctx;

static void matmul_run(void *ctx) {
    matmul_ctx *c = ctx;
    mmt_ops_ref()->matmul_fwd(c->y, c->x, c->w, c->bias, c->M, c->K, c->N);
}

static void test_matmul_bwd_ref_matches_fd(void) {
    for (int with_bias = 0; with_bias <= 1; with_bias++) {
        const int64_t M = 5, K = 7, N = 4;
        matmul_ctx c = {random_floats(M * N, 1), random_floats(M * K, 1), random_floats(N * K, 1),
                        with_bias ? random_floats(N, 1) : NULL, M, K, N};
        float *r = random_floats(M * N, 1.0f);
        float *dx = calloc(M * K, sizeof(float)), *dw = calloc(N * K, sizeof(float));
        float *db = calloc(N, sizeof(float));
        fd_problem p = {matmul_run, &c, c.y, r, M * N};
        mmt_ops_ref()->matmul_bwd(dx, dw, with_bias ? db : NULL, r, c.x, c.w, M, K, N);
        CHECK(fd_check("dx", &p, c.x, dx, M * K) <= 1.0);
        CHECK(fd_check("dw", &p, c.w, dw, N * K) <= 1.0);
        if (with_bias) CHECK(fd_check("dbias", &p, c.bias, db, N) <= 1.0);
        free(c.y), free(c.x), free(c.w), free(c.bias), free(r), free(dx), free(dw), free(db);
    }
}

/* layernorm */
typedef struct layernorm_ctx {
    float *y, *x, *weight, *bias;
    int64_t R, C;
} layernorm_ctx;

static void layernorm_run(void *ctx) {
    layernorm_ctx *c = ctx;
    mmt_ops_ref()->layernorm_fwd(c->y, NULL, NULL, c->x, c->weight, c->bias, c->R, c->C, 1e-5f);
}

static void test_layernorm_bwd_ref_matches_fd(void) {
    for (int affine = 0; affine <= 1; affine++) {
        const int64_t R = 4, C = 9;
        layernorm_ctx c = {random_floats(R * C, 1), random_floats(R * C, 1.5f),
                           affine ? random_floats(C, 1) : NULL,
                           affine ? random_floats(C, 1) : NULL, R, C};
        for (int64_t i = 0; i < C; i++) c.x[i] += 3.0f; /* a row with a mean far from 0 */
        float *r = random_floats(R * C, 1.0f), mean[4], rstd[4];
        float *dx = calloc(R * C, sizeof(float)), *dw = calloc(C, sizeof(float));
        float *db = calloc(C, sizeof(float));
        mmt_ops_ref()->layernorm_fwd(c.y, mean, rstd, c.x, c.weight, c.bias, R, C, 1e-5f);
        mmt_ops_ref()->layernorm_bwd(dx, affine ? dw : NULL, affine ? db : NULL, r, c.x, mean,
                                     rstd, c.weight, R, C);
        fd_problem p = {layernorm_run, &c, c.y, r, R * C};
        CHECK_MSG(fd_check("dx", &p, c.x, dx, R * C) <= 1.0, "affine=%d", affine);
        if (affine) {
            CHECK(fd_check("dweight", &p, c.weight, dw, C) <= 1.0);
            CHECK(fd_check("dbias", &p, c.bias, db, C) <= 1.0);
        }
        free(c.y), free(c.x), free(c.weight), free(c.bias), free(r), free(dx), free(dw), free(db);
    }
}

/* softmax */
typedef struct rows_ctx {
    float *y, *x;
    int64_t R, C;
} rows_ctx;

static void softmax_run(void *ctx) {
    rows_ctx *c = ctx;
    mmt_ops_ref()->softmax_fwd(c->y, c->x, c->R, c->C);
}

static void test_softmax_bwd_ref_matches_fd(void) {
    const int64_t R = 3, C = 7;
    rows_ctx c = {random_floats(R * C, 1), random_floats(R * C, 3.0f), R, C};
    float *r = random_floats(R * C, 1.0f), *dx = calloc(R * C, sizeof(float));
    softmax_run(&c);
    mmt_ops_ref()->softmax_bwd(dx, r, c.y, R, C);
    fd_problem p = {softmax_run, &c, c.y, r, R * C};
    CHECK(fd_check("dx", &p, c.x, dx, R * C) <= 1.0);
    free(c.y), free(c.x), free(r), free(dx);
}

/* gelu, quick_gelu (R = 1 row of n) */
static int activation_quick;
static void activation_run(void *ctx) {
    rows_ctx *c = ctx;
    if (activation_quick) mmt_ops_ref()->quick_gelu_fwd(c->y, c->x, c->C);
    else mmt_ops_ref()->gelu_fwd(c->y, c->x, c->C);
}

static void test_activation_bwd_ref_matches_fd(void) {
    const int64_t n = 201;
    for (activation_quick = 0; activation_quick <= 1; activation_quick++) {
        rows_ctx c = {random_floats(n, 1), random_floats(n, 5.0f), 1, n};
        c.x[0] = 0.0f, c.x[1] = 1e-4f, c.x[2] = -7.0f, c.x[3] = 7.0f;
        float *r = random_floats(n, 1.0f), *dx = calloc(n, sizeof(float));
        if (activation_quick) mmt_ops_ref()->quick_gelu_bwd(dx, r, c.x, n);
        else mmt_ops_ref()->gelu_bwd(dx, r, c.x, n);
        fd_problem p = {activation_run, &c, c.y, r, n};
        CHECK_MSG(fd_check("dx", &p, c.x, dx, n) <= 1.0, "%s", activation_quick ? "quick_gelu" : "gelu");
        free(c.y), free(c.x), free(r), free(dx);
    }
    /* Far tails: the derivative is exactly 0 (left) or 1 (right), never NaN. */
    float x[] = {-1e6f, -3e38f, -60.0f, 60.0f, 1e6f, 3e38f}, dy[6] = {1, 1, 1, 1, 1, 1};
    float expect[] = {0, 0, 0, 1, 1, 1};
    for (int quick = 0; quick <= 1; quick++)
        for (int t = 0; t < 2; t++) {
            const mmt_ops *ops = t ? fast_ops() : mmt_ops_ref();
            float dx[6] = {0};
            (quick ? ops->quick_gelu_bwd : ops->gelu_bwd)(dx, dy, x, 6);
            for (int i = 0; i < 6; i++)
                CHECK_MSG(fabs(dx[i] - expect[i]) <= 1e-30, "%s %s f'(%g) = %g", ops->name,
                          quick ? "quick_gelu" : "gelu", x[i], dx[i]);
        }
}

/* attention */
typedef struct attention_ctx {
    float *out, *att, *q, *k, *v;
    int64_t B, T, H, D;
    int causal;
} attention_ctx;

static void attention_run(void *ctx) {
    attention_ctx *c = ctx;
    mmt_ops_ref()->attention_fwd(c->out, c->att, c->q, c->k, c->v, c->B, c->T, c->H, c->D,
                                 c->causal);
}

static void test_attention_bwd_ref_matches_fd(void) {
    static const int64_t shapes[][4] = {{2, 5, 2, 3}, {1, 1, 1, 2}, {1, 4, 3, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int causal = 0; causal <= 1; causal++) {
            const int64_t B = shapes[s][0], T = shapes[s][1], H = shapes[s][2], D = shapes[s][3];
            const int64_t n = B * T * H * D, na = B * H * T * T;
            attention_ctx c = {random_floats(n, 1), random_floats(na, 1), random_floats(n, 1.5f),
                               random_floats(n, 1.5f), random_floats(n, 1), B, T, H, D, causal};
            float *r = random_floats(n, 1.0f), *datt = random_floats(na, 1.0f);
            float *dq = calloc(n, sizeof(float)), *dk = calloc(n, sizeof(float));
            float *dv = calloc(n, sizeof(float));
            attention_run(&c);
            mmt_ops_ref()->attention_bwd(dq, dk, dv, datt, r, c.q, c.k, c.v, c.att, B, T, H, D,
                                         causal);
            fd_problem p = {attention_run, &c, c.out, r, n};
            CHECK_MSG(fd_check("dq", &p, c.q, dq, n) <= 1.0, "shape %zu causal %d", s, causal);
            CHECK_MSG(fd_check("dk", &p, c.k, dk, n) <= 1.0, "shape %zu causal %d", s, causal);
            CHECK_MSG(fd_check("dv", &p, c.v, dv, n) <= 1.0, "shape %zu causal %d", s, causal);
            free(c.out), free(c.att), free(c.q), free(c.k), free(c.v);
            free(r), free(datt), free(dq), free(dk), free(dv);
        }
}

/* embedding */
typedef struct embedding_ctx {
    float *y, *table;
    const int32_t *ids;
    int64_t N, C;
} embedding_ctx;

static void embedding_run(void *ctx) {
    embedding_ctx *c = ctx;
    mmt_ops_ref()->embedding_fwd(c->y, c->ids, c->table, c->N, c->C);
}

static void test_embedding_bwd_ref_matches_fd(void) {
    const int64_t V = 6, N = 8, C = 3;
    static const int32_t ids[8] = {1, 4, 1, 0, 1, 2, 4, 1}; /* 3 and 5 unused, 1 four times */
    embedding_ctx c = {random_floats(N * C, 1), random_floats(V * C, 1), ids, N, C};
    float *r = random_floats(N * C, 1.0f), *dt = calloc(V * C, sizeof(float));
    mmt_ops_ref()->embedding_bwd(dt, r, ids, N, C);
    fd_problem p = {embedding_run, &c, c.y, r, N * C};
    CHECK(fd_check("dtable", &p, c.table, dt, V * C) <= 1.0);
    for (int64_t col = 0; col < C; col++) {
        CHECK(dt[3 * C + col] == 0.0f && dt[5 * C + col] == 0.0f);
        float sum = r[0 * C + col] + r[2 * C + col] + r[4 * C + col] + r[7 * C + col];
        CHECK_NEAR(dt[1 * C + col], sum, 1e-6);
    }
    free(c.y), free(c.table), free(r), free(dt);
}

/* patchify */
typedef struct patchify_ctx {
    float *y, *x;
    int64_t B, Cin, Hh, Ww, P;
} patchify_ctx;

static void patchify_run(void *ctx) {
    patchify_ctx *c = ctx;
    mmt_ops_ref()->patchify_fwd(c->y, c->x, c->B, c->Cin, c->Hh, c->Ww, c->P);
}

static void test_patchify_bwd_ref_matches_fd(void) {
    /* 7 x 9 with P = 3: the last image row is dropped; 2 x 8 with P = 2... and 5 x 5, P = 5. */
    static const int64_t shapes[][5] = {{2, 2, 7, 9, 3}, {1, 3, 5, 8, 2}, {1, 1, 5, 5, 5}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t B = shapes[s][0], Cin = shapes[s][1], Hh = shapes[s][2], Ww = shapes[s][3];
        const int64_t P = shapes[s][4], L = (Hh / P) * (Ww / P), F = Cin * P * P;
        const int64_t nx = B * Cin * Hh * Ww, ny = B * L * F;
        patchify_ctx c = {random_floats(ny, 1), random_floats(nx, 1), B, Cin, Hh, Ww, P};
        float *r = random_floats(ny, 1.0f), *dx = calloc(nx, sizeof(float));
        mmt_ops_ref()->patchify_bwd(dx, r, B, Cin, Hh, Ww, P);
        fd_problem p = {patchify_run, &c, c.y, r, ny};
        CHECK(fd_check("dx", &p, c.x, dx, nx) <= 1.0);
        for (int64_t i = 0; i < nx; i++) { /* dropped pixels: exactly 0 */
            int64_t row = i / Ww % Hh, col = i % Ww;
            if (row >= Hh / P * P || col >= Ww / P * P) CHECK(dx[i] == 0.0f);
        }
        free(c.y), free(c.x), free(r), free(dx);
    }
}

/* ---- gemm ---------------------------------------------------------------------------- */

/* Runs table->gemm on random operands stored with padded strides and checks it against a
 * double loop: |c - exact| <= 2 sqrt(K) eps32 (|alpha| sum_k |a b| + |beta c0|). beta == 0
 * starts c from NaN, which must not leak through; columns past N must stay untouched. */
static void gemm_case(const mmt_ops *ops, int ta, int tb, int64_t M, int64_t N, int64_t K,
                      float alpha, float beta) {
    const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, lda = a_cols + 3;
    const int64_t b_rows = tb ? N : K, b_cols = tb ? K : N, ldb = b_cols + 1;
    const int64_t ldc = N + 5;
    float *a = random_floats(a_rows * lda, 1.0f), *b = random_floats(b_rows * ldb, 1.0f);
    float *c0 = random_floats(M * ldc, 1.0f);
    if (beta == 0.0f)
        for (int64_t i = 0; i < M * ldc; i++) c0[i] = NAN;
    for (int64_t i = 0; i < M; i++) /* the padding holds a marker value */
        for (int64_t j = N; j < ldc; j++) c0[i * ldc + j] = 777.0f;
    float *c = guarded_copy(c0, M * ldc);
    ops->gemm(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
    double worst = 0.0;
    int padding_ok = 1;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double sum = 0.0, mag = 0.0;
            for (int64_t k = 0; k < K; k++) {
                double av = ta ? a[k * lda + i] : a[i * lda + k];
                double bv = tb ? b[j * ldb + k] : b[k * ldb + j];
                sum += av * bv;
                mag += fabs(av * bv);
            }
            double old = beta == 0.0f ? 0.0 : c0[i * ldc + j];
            double exact = alpha * sum + beta * old;
            double bound = 2.0 * sqrt((double)(K > 0 ? K : 1)) * FLT_EPSILON *
                           (fabs(alpha) * mag + fabs(beta * old)) + 1e-30;
            double err = fabs(c[i * ldc + j] - exact) / bound;
            worst = isnan(err) ? INFINITY : fmax(worst, err);
        }
        for (int64_t j = N; j < ldc; j++) padding_ok &= c[i * ldc + j] == 777.0f;
    }
    CHECK_MSG(worst <= 1.0, "%s gemm ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g: %.3g",
              ops->name, ta, tb, (long long)M, (long long)N, (long long)K, alpha, beta, worst);
    CHECK(padding_ok && guarded_ok(c, M * ldc));
    free(a), free(b), free(c0), guarded_free(c);
}

static void gemm_matches_double(const mmt_ops *table) {
    /* {M, N, K}: trivial, tile tails, K = 0, LoRA-like low rank, large enough to thread. */
    static const int64_t shapes[][3] = {{1, 1, 1},  {7, 5, 19},   {16, 16, 8}, {33, 70, 300},
                                        {5, 3, 0},  {1, 300, 8},  {200, 16, 768},
                                        {130, 200, 600}, {61, 97, 257}};
    static const float scalars[][2] = {{1, 0}, {1, 1}, {0.5f, -2}, {2, 0}, {0, 0.5f}, {0, 0},
                                       {-1, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int ta = 0; ta <= 1; ta++)
                for (int tb = 0; tb <= 1; tb++)
                    for (size_t k = 0; k < sizeof scalars / sizeof scalars[0]; k++) {
                        if (shapes[s][0] * shapes[s][1] * shapes[s][2] > 100000 && k > 2) continue;
                        gemm_case(table, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2],
                                  scalars[k][0], scalars[k][1]);
                    }
}

static void test_gemm_ref_matches_double(void) { gemm_matches_double(mmt_ops_ref()); }
static void test_gemm_fast_matches_double(void) { gemm_matches_double(fast_ops()); }

/* ---- fast vs reference --------------------------------------------------------------- */

/* Worst |a - b| / (2 sqrt(n) eps32 (bound_i + |c0_i|) + tiny) over an (rows, cols) output,
 * where bound_i = ||row r of A|| ||col c of B|| comes from the two norm vectors. */
static double product_error(const float *fast, const float *ref, const float *c0,
                            const double *row_norm, const double *col_norm, int64_t rows,
                            int64_t cols, int64_t n) {
    double worst = 0.0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int64_t i = r * cols + c;
            double bound = 2.0 * sqrt((double)n) * FLT_EPSILON *
                           (row_norm[r] * col_norm[c] + fabs(c0[i])) + 1e-30;
            worst = fmax(worst, fabs((double)fast[i] - ref[i]) / bound);
        }
    return worst;
}

/* Euclidean norms of the rows (by_rows) or columns of a row-major (rows, cols) matrix. */
static double *norms(const float *m, int64_t rows, int64_t cols, int by_rows) {
    int64_t n = by_rows ? rows : cols;
    double *out = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) out[by_rows ? r : c] += (double)m[r * cols + c] * m[r * cols + c];
    for (int64_t i = 0; i < n; i++) out[i] = sqrt(out[i]);
    return out;
}

static void test_matmul_bwd_fast_matches_ref(void) {
    /* {M, K, N}: tails of the 6x16 tile and of the 256/72/256 blocks, K or N or M = 1, and
     * the CLIP shapes (vision qkv/out 1600x768x768, MLP 1600x768x3072 down, text 2464x512). */
    static const int64_t shapes[][3] = {
        {1, 1, 1},     {2, 3, 1},      {5, 7, 3},     {7, 17, 9},   {6, 16, 16},
        {13, 33, 65},  {73, 257, 31},  {100, 300, 257}, {1, 768, 768}, {50, 768, 50},
        {37, 3072, 19}, {300, 1, 5},   {1600, 768, 768}, {2464, 512, 512},
    };
    const mmt_ops *fast = fast_ops();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *x = random_floats(M * K, 1.0f), *w = random_floats(N * K, 0.5f);
        float *dy = random_floats(M * N, 1.0f);
        float *dx0 = random_floats(M * K, 1.0f), *dw0 = random_floats(N * K, 1.0f);
        float *db0 = random_floats(N, 1.0f);
        float *dx_ref = guarded_copy(dx0, M * K), *dx_fast = guarded_copy(dx0, M * K);
        float *dw_ref = guarded_copy(dw0, N * K), *dw_fast = guarded_copy(dw0, N * K);
        float *db_ref = guarded_copy(db0, N), *db_fast = guarded_copy(db0, N);
        mmt_ops_ref()->matmul_bwd(dx_ref, dw_ref, db_ref, dy, x, w, M, K, N);
        fast->matmul_bwd(dx_fast, dw_fast, db_fast, dy, x, w, M, K, N);
        /* dx = dy @ w: rows of dy times columns of w; dw = dy^T @ x: columns of dy times
         * columns of x; dbias = ones^T @ dy: sqrt(M) times columns of dy. */
        double *dy_rows = norms(dy, M, N, 1), *w_cols = norms(w, N, K, 0);
        double *dy_cols = norms(dy, M, N, 0), *x_cols = norms(x, M, K, 0);
        double ones_norm = sqrt((double)M);
        double e_dx = product_error(dx_fast, dx_ref, dx0, dy_rows, w_cols, M, K, N);
        double e_dw = product_error(dw_fast, dw_ref, dw0, dy_cols, x_cols, N, K, M);
        double e_db = product_error(db_fast, db_ref, db0, &ones_norm, dy_cols, 1, N, M);
        CHECK_MSG(e_dx <= 1.0 && e_dw <= 1.0 && e_db <= 1.0,
                  "M=%lld K=%lld N=%lld: dx %.3g dw %.3g dbias %.3g (of the bound)", (long long)M,
                  (long long)K, (long long)N, e_dx, e_dw, e_db);
        CHECK(guarded_ok(dx_fast, M * K) && guarded_ok(dw_fast, N * K) && guarded_ok(db_fast, N));
        free(x), free(w), free(dy), free(dx0), free(dw0), free(db0);
        free(dy_rows), free(w_cols), free(dy_cols), free(x_cols);
        guarded_free(dx_ref), guarded_free(dx_fast), guarded_free(dw_ref), guarded_free(dw_fast);
        guarded_free(db_ref), guarded_free(db_fast);
    }
}

static void test_layernorm_bwd_fast_matches_ref(void) {
    static const int64_t shapes[][2] = {{1, 1},   {3, 7},     {4, 8},    {5, 9},   {17, 33},
                                        {2, 1000}, {77, 512}, {1600, 768}, {3, 17}};
    const mmt_ops *fast = fast_ops();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int affine = 0; affine <= 1; affine++) {
            const int64_t R = shapes[s][0], C = shapes[s][1];
            float *x = random_floats(R * C, 3.0f), *g = random_floats(C, 1.0f);
            float *b = random_floats(C, 1.0f), *dy = random_floats(R * C, 1.0f);
            for (int64_t i = 0; i < R * C; i++) x[i] += 20.0f; /* a mean far from 0 */
            float *y = malloc((size_t)(R * C) * sizeof(float));
            float *mean = malloc((size_t)R * sizeof(float)), *rstd = malloc((size_t)R * sizeof(float));
            mmt_ops_ref()->layernorm_fwd(y, mean, rstd, x, affine ? g : NULL, affine ? b : NULL,
                                         R, C, 1e-5f);
            float *dx0 = random_floats(R * C, 1.0f), *dw0 = random_floats(C, 1.0f);
            float *db0 = random_floats(C, 1.0f);
            float *dx_ref = guarded_copy(dx0, R * C), *dx_fast = guarded_copy(dx0, R * C);
            float *dw_ref = guarded_copy(dw0, C), *dw_fast = guarded_copy(dw0, C);
            float *db_ref = guarded_copy(db0, C), *db_fast = guarded_copy(db0, C);
            mmt_ops_ref()->layernorm_bwd(dx_ref, affine ? dw_ref : NULL, affine ? db_ref : NULL,
                                         dy, x, mean, rstd, affine ? g : NULL, R, C);
            fast->layernorm_bwd(dx_fast, affine ? dw_fast : NULL, affine ? db_fast : NULL, dy, x,
                                mean, rstd, affine ? g : NULL, R, C);
            double e_dx = max_abs_diff(dx_fast, dx_ref, R * C);
            double e_dw = max_abs_diff(dw_fast, dw_ref, C), e_db = max_abs_diff(db_fast, db_ref, C);
            double tol_col = 2e-6 * sqrt((double)R) + 2.0 * FLT_EPSILON;
            CHECK_MSG(e_dx <= 2e-5 && e_dw <= tol_col && e_db <= tol_col,
                      "R=%lld C=%lld affine=%d: dx %.3g dweight %.3g dbias %.3g", (long long)R,
                      (long long)C, affine, e_dx, e_dw, e_db);
            if (!affine) CHECK(same_bits(dw_fast, dw0, C) && same_bits(db_fast, db0, C));
            CHECK(guarded_ok(dx_fast, R * C) && guarded_ok(dw_fast, C) && guarded_ok(db_fast, C));
            free(x), free(g), free(b), free(dy), free(y), free(mean), free(rstd);
            free(dx0), free(dw0), free(db0);
            guarded_free(dx_ref), guarded_free(dx_fast), guarded_free(dw_ref);
            guarded_free(dw_fast), guarded_free(db_ref), guarded_free(db_fast);
        }
}

static void test_softmax_bwd_fast_matches_ref(void) {
    static const int64_t shapes[][2] = {{1, 1}, {2, 7},  {3, 8},    {4, 9},     {50, 50},
                                        {12, 77}, {3, 1000}, {19200, 50}, {64, 1030}};
    const mmt_ops *fast = fast_ops();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t R = shapes[s][0], C = shapes[s][1];
        float *x = random_floats(R * C, 4.0f), *y = malloc((size_t)(R * C) * sizeof(float));
        float *dy = random_floats(R * C, 1.0f), *dx0 = random_floats(R * C, 1.0f);
        mmt_ops_ref()->softmax_fwd(y, x, R, C);
        float *dx_ref = guarded_copy(dx0, R * C), *dx_fast = guarded_copy(dx0, R * C);
        mmt_ops_ref()->softmax_bwd(dx_ref, dy, y, R, C);
        fast->softmax_bwd(dx_fast, dy, y, R, C);
        double e = max_abs_diff(dx_fast, dx_ref, R * C);
        CHECK_MSG(e <= 1e-6, "R=%lld C=%lld: %.3g", (long long)R, (long long)C, e);
        CHECK(guarded_ok(dx_fast, R * C));
        free(x), free(y), free(dy), free(dx0), guarded_free(dx_ref), guarded_free(dx_fast);
    }
}

static void test_activation_bwd_fast_matches_ref(void) {
    /* A dense sweep over [-10, 10], then extremes (tiny, huge, around the erf clamp and the
     * exp limits), then lengths that leave vector tails and a threaded length. */
    static const float extremes[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-8f, 3.5f, -3.5f, 4.0f,
                                     -4.0f, 5.6f, -5.6f, 10.0f, -10.0f, 13.0f, -13.5f, 50.0f,
                                     -50.0f, 52.0f, -55.0f, 87.0f, -87.0f, 100.0f, -100.0f,
                                     1e6f, -1e6f, 3e38f, -3e38f};
    const int64_t sweep = 20001, n_ext = (int64_t)(sizeof extremes / sizeof extremes[0]);
    const int64_t n = sweep + n_ext, big = 1 << 18;
    float *x = malloc((size_t)big * sizeof(float));
    for (int64_t i = 0; i < sweep; i++) x[i] = -10.0f + 20.0f * (float)i / (float)(sweep - 1);
    for (int64_t i = 0; i < n_ext; i++) x[sweep + i] = extremes[i];
    for (int64_t i = n; i < big; i++) x[i] = rng_uniform() * 8.0f;
    float *dy = random_floats(big, 1.0f), *dx0 = random_floats(big, 1.0f);
    const mmt_ops *fast = fast_ops();
    static const int64_t lengths[] = {1, 7, 8, 9, 31, 20028, 1 << 18};
    for (int quick = 0; quick <= 1; quick++)
        for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
            const int64_t len = lengths[l];
            const float *xs = x + (len < 100 ? 5 : 0);
            float *dx_ref = guarded_copy(dx0, len), *dx_fast = guarded_copy(dx0, len);
            (quick ? mmt_ops_ref()->quick_gelu_bwd : mmt_ops_ref()->gelu_bwd)(dx_ref, dy, xs, len);
            (quick ? fast->quick_gelu_bwd : fast->gelu_bwd)(dx_fast, dy, xs, len);
            double worst = 0.0;
            int64_t at = 0;
            for (int64_t i = 0; i < len; i++) {
                double err = fabs((double)dx_fast[i] - dx_ref[i]) /
                             (1e-6 * fabs(dy[i]) + 2.0 * FLT_EPSILON * fabs(dx_ref[i]) + 1e-30);
                if (err > worst) worst = err, at = i;
            }
            CHECK_MSG(worst <= 1.0, "%s len %lld: x = %.9g: fast %.9g ref %.9g (%.3g of the bound)",
                      quick ? "quick_gelu" : "gelu", (long long)len, xs[at], dx_fast[at],
                      dx_ref[at], worst);
            CHECK(guarded_ok(dx_fast, len));
            guarded_free(dx_ref), guarded_free(dx_fast);
        }
    free(x), free(dy), free(dx0);
}

static void test_attention_bwd_fast_matches_ref(void) {
    /* {B, T, H, D, causal}: trivial, odd, ViT-B/32 (4 x 50 tokens, 12 heads of 64), text
     * (4 x 77, 8 heads, causal), a head wider than a cache block. */
    static const int64_t shapes[][5] = {{1, 1, 1, 1, 0},  {1, 1, 1, 1, 1},  {2, 7, 3, 5, 0},
                                        {2, 7, 3, 5, 1},  {3, 17, 2, 24, 1}, {4, 50, 12, 64, 0},
                                        {4, 77, 8, 64, 1}, {1, 20, 1, 130, 0}, {1, 300, 1, 8, 1}};
    const mmt_ops *fast = fast_ops();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t B = shapes[s][0], T = shapes[s][1], H = shapes[s][2], D = shapes[s][3];
        const int causal = (int)shapes[s][4];
        const int64_t n = B * T * H * D, na = B * H * T * T;
        float *q = random_floats(n, 1.0f), *k = random_floats(n, 1.0f), *v = random_floats(n, 1.0f);
        float *dout = random_floats(n, 1.0f), *out = malloc((size_t)n * sizeof(float));
        float *att = malloc((size_t)na * sizeof(float));
        mmt_ops_ref()->attention_fwd(out, att, q, k, v, B, T, H, D, causal);
        float *g0[3], *g_ref[3], *g_fast[3];
        for (int i = 0; i < 3; i++) {
            g0[i] = random_floats(n, 1.0f);
            g_ref[i] = guarded_copy(g0[i], n), g_fast[i] = guarded_copy(g0[i], n);
        }
        float *datt_ref = guarded_alloc(na), *datt_fast = guarded_alloc(na);
        mmt_ops_ref()->attention_bwd(g_ref[0], g_ref[1], g_ref[2], datt_ref, dout, q, k, v, att,
                                     B, T, H, D, causal);
        fast->attention_bwd(g_fast[0], g_fast[1], g_fast[2], datt_fast, dout, q, k, v, att, B,
                            T, H, D, causal);
        double e[3];
        for (int i = 0; i < 3; i++) e[i] = max_abs_diff(g_fast[i], g_ref[i], n);
        CHECK_MSG(e[0] <= 1e-5 && e[1] <= 1e-5 && e[2] <= 1e-5,
                  "B=%lld T=%lld H=%lld D=%lld causal=%d: dq %.3g dk %.3g dv %.3g", (long long)B,
                  (long long)T, (long long)H, (long long)D, causal, e[0], e[1], e[2]);
        for (int i = 0; i < 3; i++) CHECK(guarded_ok(g_fast[i], n));
        CHECK(guarded_ok(datt_fast, na));
        free(q), free(k), free(v), free(dout), free(out), free(att);
        for (int i = 0; i < 3; i++) free(g0[i]), guarded_free(g_ref[i]), guarded_free(g_fast[i]);
        guarded_free(datt_ref), guarded_free(datt_fast);
    }
}

static void test_embedding_bwd_fast_matches_ref(void) {
    /* {V, N, C}: C below, at and above the 64-column blocks; the CLIP text batch. */
    static const int64_t shapes[][3] = {{1, 1, 1}, {11, 9, 13}, {5, 40, 64}, {7, 100, 130},
                                        {1000, 2464, 512}, {3, 5000, 16}, {50, 1000, 130}};
    const mmt_ops *fast = fast_ops();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t V = shapes[s][0], N = shapes[s][1], C = shapes[s][2];
        int32_t *ids = malloc((size_t)N * sizeof(int32_t));
        for (int64_t i = 0; i < N; i++) { /* repeats: every other row hits ids 0..2 */
            int64_t any = (int64_t)((rng_uniform() + 1.0f) * 0.5f * (float)V) % V;
            ids[i] = (int32_t)(i % 2 ? any : i % 3 % V);
        }
        float *dy = random_floats(N * C, 1.0f), *t0 = random_floats(V * C, 1.0f);
        float *t_ref = guarded_copy(t0, V * C), *t_fast = guarded_copy(t0, V * C);
        mmt_ops_ref()->embedding_bwd(t_ref, dy, ids, N, C);
        fast->embedding_bwd(t_fast, dy, ids, N, C);
        CHECK_MSG(same_bits(t_ref, t_fast, V * C), "V=%lld N=%lld C=%lld", (long long)V,
                  (long long)N, (long long)C);
        CHECK(guarded_ok(t_fast, V * C));
        free(ids), free(dy), free(t0), guarded_free(t_ref), guarded_free(t_fast);
    }
}

static void test_patchify_bwd_fast_matches_ref(void) {
    static const int64_t shapes[][5] = {{1, 1, 1, 1, 1}, {2, 3, 8, 8, 4}, {2, 2, 9, 7, 3},
                                        {1, 3, 10, 13, 4}, {32, 3, 224, 224, 32},
                                        {2, 3, 230, 225, 16}};
    const mmt_ops *fast = fast_ops();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t B = shapes[s][0], Cin = shapes[s][1], Hh = shapes[s][2], Ww = shapes[s][3];
        const int64_t P = shapes[s][4], nx = B * Cin * Hh * Ww;
        const int64_t ny = B * (Hh / P) * (Ww / P) * Cin * P * P;
        float *dy = random_floats(ny, 1.0f), *x0 = random_floats(nx, 1.0f);
        float *dx_ref = guarded_copy(x0, nx), *dx_fast = guarded_copy(x0, nx);
        mmt_ops_ref()->patchify_bwd(dx_ref, dy, B, Cin, Hh, Ww, P);
        fast->patchify_bwd(dx_fast, dy, B, Cin, Hh, Ww, P);
        CHECK(same_bits(dx_ref, dx_fast, nx));
        CHECK(guarded_ok(dx_fast, nx));
        free(dy), free(x0), guarded_free(dx_ref), guarded_free(dx_fast);
    }
}

/* ---- the accumulate / NULL contract, and determinism ----------------------------------- */

/* |after - (before + fresh)| <= 1e-5 (|before| + |fresh|) + 1e-7 everywhere: the output was
 * added to, not overwritten. */
static int accumulated(const float *after, const float *before, const float *fresh, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double expect = (double)before[i] + fresh[i];
        if (!(fabs(after[i] - expect) <= 1e-5 * (fabs(before[i]) + fabs(fresh[i])) + 1e-7)) return 0;
    }
    return 1;
}

/* Every backward of one table, run three ways: into zeros, into pre-filled outputs, and with
 * each gradient output NULL in turn (the others must come out bitwise as in the full run). */
static void contract_for_table(const mmt_ops *ops) {
    /* matmul_bwd */
    {
        const int64_t M = 13, K = 300, N = 21;
        float *x = random_floats(M * K, 1), *w = random_floats(N * K, 1), *dy = random_floats(M * N, 1);
        int64_t sizes[3] = {M * K, N * K, N};
        float *zero[3], *pre[3], *full[3], *part[3];
        for (int i = 0; i < 3; i++) {
            zero[i] = calloc((size_t)sizes[i], sizeof(float));
            pre[i] = random_floats(sizes[i], 1);
            full[i] = copy_floats(pre[i], sizes[i]);
        }
        ops->matmul_bwd(zero[0], zero[1], zero[2], dy, x, w, M, K, N);
        ops->matmul_bwd(full[0], full[1], full[2], dy, x, w, M, K, N);
        for (int i = 0; i < 3; i++)
            CHECK_MSG(accumulated(full[i], pre[i], zero[i], sizes[i]), "%s matmul_bwd output %d", ops->name, i);
        for (int skip = 0; skip < 3; skip++) {
            for (int i = 0; i < 3; i++) part[i] = i == skip ? NULL : copy_floats(pre[i], sizes[i]);
            ops->matmul_bwd(part[0], part[1], part[2], dy, x, w, M, K, N);
            for (int i = 0; i < 3; i++)
                if (part[i]) CHECK_MSG(same_bits(part[i], full[i], sizes[i]), "%s matmul_bwd NULL %d", ops->name, skip);
            for (int i = 0; i < 3; i++) free(part[i]);
        }
        ops->matmul_bwd(NULL, NULL, NULL, dy, x, w, M, K, N); /* nothing to do, no crash */
        free(x), free(w), free(dy);
        for (int i = 0; i < 3; i++) free(zero[i]), free(pre[i]), free(full[i]);
    }
    /* layernorm_bwd */
    {
        const int64_t R = 70, C = 1001; /* R * C above the threading threshold */
        float *x = random_floats(R * C, 2), *g = random_floats(C, 1), *dy = random_floats(R * C, 1);
        float *y = malloc((size_t)(R * C) * sizeof(float)), *mean = malloc((size_t)R * sizeof(float));
        float *rstd = malloc((size_t)R * sizeof(float));
        ops->layernorm_fwd(y, mean, rstd, x, g, NULL, R, C, 1e-5f);
        int64_t sizes[3] = {R * C, C, C};
        float *zero[3], *pre[3], *full[3], *part[3];
        for (int i = 0; i < 3; i++) {
            zero[i] = calloc((size_t)sizes[i], sizeof(float));
            pre[i] = random_floats(sizes[i], 1);
            full[i] = copy_floats(pre[i], sizes[i]);
        }
        ops->layernorm_bwd(zero[0], zero[1], zero[2], dy, x, mean, rstd, g, R, C);
        ops->layernorm_bwd(full[0], full[1], full[2], dy, x, mean, rstd, g, R, C);
        for (int i = 0; i < 3; i++)
            CHECK_MSG(accumulated(full[i], pre[i], zero[i], sizes[i]), "%s layernorm_bwd output %d", ops->name, i);
        for (int skip = 0; skip < 3; skip++) {
            for (int i = 0; i < 3; i++) part[i] = i == skip ? NULL : copy_floats(pre[i], sizes[i]);
            ops->layernorm_bwd(part[0], part[1], part[2], dy, x, mean, rstd, g, R, C);
            for (int i = 0; i < 3; i++)
                if (part[i]) CHECK_MSG(same_bits(part[i], full[i], sizes[i]), "%s layernorm_bwd NULL %d", ops->name, skip);
            for (int i = 0; i < 3; i++) free(part[i]);
        }
        free(x), free(g), free(dy), free(y), free(mean), free(rstd);
        for (int i = 0; i < 3; i++) free(zero[i]), free(pre[i]), free(full[i]);
    }
    /* attention_bwd */
    {
        const int64_t B = 2, T = 9, H = 3, D = 10, n = B * T * H * D, na = B * H * T * T;
        for (int causal = 0; causal <= 1; causal++) {
            float *q = random_floats(n, 1), *k = random_floats(n, 1), *v = random_floats(n, 1);
            float *dout = random_floats(n, 1), *out = malloc((size_t)n * sizeof(float));
            float *att = malloc((size_t)na * sizeof(float)), *datt = guarded_alloc(na);
            ops->attention_fwd(out, att, q, k, v, B, T, H, D, causal);
            float *zero[3], *pre[3], *full[3], *part[3];
            for (int i = 0; i < 3; i++) {
                zero[i] = calloc((size_t)n, sizeof(float));
                pre[i] = random_floats(n, 1);
                full[i] = copy_floats(pre[i], n);
            }
            ops->attention_bwd(zero[0], zero[1], zero[2], datt, dout, q, k, v, att, B, T, H, D, causal);
            ops->attention_bwd(full[0], full[1], full[2], datt, dout, q, k, v, att, B, T, H, D, causal);
            for (int i = 0; i < 3; i++)
                CHECK_MSG(accumulated(full[i], pre[i], zero[i], n), "%s attention_bwd output %d", ops->name, i);
            for (int skip = 0; skip < 3; skip++) {
                for (int i = 0; i < 3; i++) part[i] = i == skip ? NULL : copy_floats(pre[i], n);
                ops->attention_bwd(part[0], part[1], part[2], datt, dout, q, k, v, att, B, T, H, D, causal);
                for (int i = 0; i < 3; i++)
                    if (part[i]) CHECK_MSG(same_bits(part[i], full[i], n), "%s attention_bwd NULL %d", ops->name, skip);
                for (int i = 0; i < 3; i++) free(part[i]);
            }
            CHECK(guarded_ok(datt, na));
            free(q), free(k), free(v), free(dout), free(out), free(att), guarded_free(datt);
            for (int i = 0; i < 3; i++) free(zero[i]), free(pre[i]), free(full[i]);
        }
    }
    /* The single-output kernels: pre-filled output vs zero start. */
    {
        const int64_t R = 7, C = 33, n = R * C;
        float *x = random_floats(n, 3), *y = malloc((size_t)n * sizeof(float)), *dy = random_floats(n, 1);
        ops->softmax_fwd(y, x, R, C);
        float *pre = random_floats(n, 1), *zero = calloc((size_t)n, sizeof(float));
        float *acc = copy_floats(pre, n);
        ops->softmax_bwd(zero, dy, y, R, C);
        ops->softmax_bwd(acc, dy, y, R, C);
        CHECK_MSG(accumulated(acc, pre, zero, n), "%s softmax_bwd", ops->name);
        for (int quick = 0; quick <= 1; quick++) {
            void (*bwd)(float *, const float *, const float *, int64_t) =
                quick ? ops->quick_gelu_bwd : ops->gelu_bwd;
            memset(zero, 0, (size_t)n * sizeof(float));
            memcpy(acc, pre, (size_t)n * sizeof(float));
            bwd(zero, dy, x, n);
            bwd(acc, dy, x, n);
            CHECK_MSG(accumulated(acc, pre, zero, n), "%s %s_bwd", ops->name, quick ? "quick_gelu" : "gelu");
        }
        /* embedding (V = 4 rows, N = R rows of C) and patchify (1 x 1 x 3 x 11 image, P = 3). */
        const int32_t ids[7] = {2, 0, 2, 3, 2, 0, 1};
        float *tpre = random_floats(4 * C, 1), *tzero = calloc(4 * (size_t)C, sizeof(float));
        float *tacc = copy_floats(tpre, 4 * C);
        ops->embedding_bwd(tzero, dy, ids, R, C);
        ops->embedding_bwd(tacc, dy, ids, R, C);
        CHECK_MSG(accumulated(tacc, tpre, tzero, 4 * C), "%s embedding_bwd", ops->name);
        memset(zero, 0, (size_t)n * sizeof(float));
        memcpy(acc, pre, (size_t)n * sizeof(float));
        ops->patchify_bwd(zero, dy, 1, 1, 3, 11, 3); /* dy: 3 patches of 9 */
        ops->patchify_bwd(acc, dy, 1, 1, 3, 11, 3);
        CHECK_MSG(accumulated(acc, pre, zero, 33), "%s patchify_bwd", ops->name);
        free(x), free(y), free(dy), free(pre), free(zero), free(acc), free(tpre), free(tzero), free(tacc);
    }
}

static void test_accumulate_and_null_outputs(void) {
    contract_for_table(mmt_ops_ref());
    contract_for_table(fast_ops());
}

/* The fast kernels give bitwise the same gradients on 1 and on 2 threads, and on repeated
 * runs (training must be reproducible): no output element is reduced by more than one
 * thread or in a thread-dependent order. */
static void test_bwd_deterministic(void) {
    const mmt_ops *fast = fast_ops();
    const int saved = max_threads();
    const int64_t M = 400, K = 300, N = 200;              /* matmul */
    const int64_t B = 4, T = 50, H = 4, D = 64, C = H * D; /* attention */
    const int64_t n = B * T * C, na = B * H * T * T;
    float *x = random_floats(M * K, 1), *w = random_floats(N * K, 1), *dy = random_floats(M * N, 1);
    float *q = random_floats(n, 1), *k = random_floats(n, 1), *v = random_floats(n, 1);
    float *dout = random_floats(n, 1), *out = malloc((size_t)n * sizeof(float));
    float *att = malloc((size_t)na * sizeof(float)), *datt = malloc((size_t)na * sizeof(float));
    float *mean = malloc((size_t)M * sizeof(float)), *rstd = malloc((size_t)M * sizeof(float));
    float *ln_y = malloc((size_t)(M * K) * sizeof(float)), *g = random_floats(K, 1);
    fast->attention_fwd(out, att, q, k, v, B, T, H, D, 0);
    fast->layernorm_fwd(ln_y, mean, rstd, x, g, NULL, M, K, 1e-5f);
    /* Results of run r (0, 1: default threads; 2: one thread). */
    enum { OUTS = 9 };
    const int64_t sizes[OUTS] = {M * K, N * K, N, n, n, n, M * K, K, K};
    float *res[3][OUTS];
    for (int r = 0; r < 3; r++) {
        set_threads(r == 2 ? (saved > 1 ? 1 : 2) : saved);
        for (int i = 0; i < OUTS; i++) res[r][i] = calloc((size_t)sizes[i], sizeof(float));
        fast->matmul_bwd(res[r][0], res[r][1], res[r][2], dy, x, w, M, K, N);
        fast->attention_bwd(res[r][3], res[r][4], res[r][5], datt, dout, q, k, v, att, B, T, H, D, 0);
        fast->layernorm_bwd(res[r][6], res[r][7], res[r][8], x, x, mean, rstd, g, M, K);
    }
    set_threads(saved);
    for (int r = 1; r < 3; r++)
        for (int i = 0; i < OUTS; i++)
            CHECK_MSG(same_bits(res[0][i], res[r][i], sizes[i]), "run %d output %d", r, i);
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < OUTS; i++) free(res[r][i]);
    free(x), free(w), free(dy), free(q), free(k), free(v), free(dout), free(out), free(att);
    free(datt), free(mean), free(rstd), free(ln_y), free(g);
}

static void test_tables_complete(void) {
    const mmt_ops *tables[4] = {mmt_ops_ref(), mmt_ops_cpu(), mmt_ops_cpu_named("avx2"),
                                mmt_ops_cpu_named("avx512")};
    for (int t = 0; t < 4; t++) {
        const mmt_ops *o = tables[t];
        if (!o) continue;
        CHECK_MSG(o->gemm && o->matmul_bwd && o->layernorm_bwd && o->softmax_bwd && o->gelu_bwd &&
                      o->quick_gelu_bwd && o->attention_bwd && o->embedding_bwd && o->patchify_bwd,
                  "table %s", o->name);
    }
}

int main(void) {
    rng_state = 0x2545f4914f6cdd1dull; /* this file's stream of random inputs */
    mmt_log_set_level(MMT_LOG_SILENT);
    RUN(test_tables_complete);
    RUN(test_matmul_bwd_ref_matches_fd);
    RUN(test_layernorm_bwd_ref_matches_fd);
    RUN(test_softmax_bwd_ref_matches_fd);
    RUN(test_activation_bwd_ref_matches_fd);
    RUN(test_attention_bwd_ref_matches_fd);
    RUN(test_embedding_bwd_ref_matches_fd);
    RUN(test_patchify_bwd_ref_matches_fd);
    RUN(test_gemm_ref_matches_double);
    for (int t = 0; t < FAST_TABLES; t++) {
        if (!fast_table_use(t)) continue;
        RUN(test_gemm_fast_matches_double);
        RUN(test_matmul_bwd_fast_matches_ref);
        RUN(test_layernorm_bwd_fast_matches_ref);
        RUN(test_softmax_bwd_fast_matches_ref);
        RUN(test_activation_bwd_fast_matches_ref);
        RUN(test_attention_bwd_fast_matches_ref);
        RUN(test_embedding_bwd_fast_matches_ref);
        RUN(test_patchify_bwd_fast_matches_ref);
        RUN(test_accumulate_and_null_outputs);
        RUN(test_bwd_deterministic);
    }
    return check_summary();
}
