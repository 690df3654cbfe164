/*
 * test_ops.c — the kernel layer: every op of the fast CPU table against the reference table,
 * and the reference itself against independent double-precision formulas.
 *
 * Fast vs reference runs random inputs over many shapes: tiny ones (1x1x1), sizes that are
 * not multiples of the 6x16 microkernel or the cache blocks, K = 1 and K = 3072, and the
 * CLIP head shapes. Outputs sit between guard words so a kernel writing past its tensor
 * fails. Every fast table this CPU has ("avx2", "avx512") is compared in turn; one it lacks
 * is skipped with a note. The GEMM's few-rows path (M <= SGEMM_ROWS_MAX_M, w streamed
 * unpacked) must give bitwise the packed path's result (the same rows computed among more
 * rows), and the avx2 and avx512 GEMM entries bitwise the same result; attention's unpacked
 * per-head products bitwise the packed driver's. Tolerances are stated
 * with each check:
 *   matmul     |fast - ref| <= 2 sqrt(K) eps32 * (sum_k |x w| + |b|)  (float sums in two orders;
 *              observed <= 0.4)
 *   layernorm  |fast - ref| <= 1e-5 (|y| ~ 1), mean 1e-6 relative, rstd 1e-5 relative
 *   softmax    |fast - ref| <= 2e-6 * p + 1e-9
 *   gelu, quick_gelu  |fast - ref| <= 5e-7 * max(1, |x|)  (about 4 ulp where |y| ~ |x|)
 *   attention  probabilities 2e-6, outputs 1e-5 (|v| <= 1)
 *   add, embedding, patchify: bitwise equal.
 * The reference is checked against double-precision evaluations with tolerances near float
 * rounding (each test names its formula: torch.layer_norm, erf-GELU at known points, ...).
 */
#include <float.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"
#include "ops_fixture.h"

/* ---- helpers ------------------------------------------------------------------------- */

static int tables_complete(const mmt_ops *t) {
    return t && t->name && t->matmul_fwd && t->layernorm_fwd && t->softmax_fwd && t->gelu_fwd &&
           t->quick_gelu_fwd && t->add_fwd && t->attention_fwd && t->embedding_fwd &&
           t->patchify_fwd;
}

/* The GEMM microkernel behind the current fast table. */
static const sgemm_kernel *fast_kernel(void) {
    return strcmp(fast_ops()->name, "avx512") == 0 ? &sgemm_kernel_avx512 : &sgemm_kernel_avx2;
}

/* ---- dispatch ------------------------------------------------------------------------ */

static void test_tables_complete(void) {
    CHECK(tables_complete(mmt_ops_cpu()));
    CHECK(tables_complete(mmt_ops_ref()));
    CHECK(strcmp(mmt_ops_ref()->name, "ref") == 0);
    CHECK(mmt_ops_cpu_named("ref") == mmt_ops_ref());
    CHECK(mmt_ops_cpu_named("no-such-backend") == NULL);
    CHECK(mmt_ops_cpu_named(NULL) == NULL);
    const mmt_ops *avx2 = mmt_ops_cpu_named("avx2");
    if (avx2) {
        CHECK(tables_complete(avx2));
        CHECK(strcmp(avx2->name, "avx2") == 0);
        CHECK(mmt_ops_cpu() == avx2 || mmt_ops_cpu_named("avx512") || getenv("MMT_KERNELS"));
    } else {
        printf("note: no AVX2 on this CPU; fast-vs-ref comparisons run the reference twice\n");
    }
    const mmt_ops *avx512 = mmt_ops_cpu_named("avx512");
    CHECK(avx512 == NULL || tables_complete(avx512));
    if (avx512) {
        CHECK(avx2 != NULL && strcmp(avx512->name, "avx512") == 0);
        CHECK(mmt_ops_cpu() == avx512 || getenv("MMT_KERNELS")); /* the best table wins */
    } else {
        printf("note: no AVX-512 on this CPU; the avx512 table is not available\n");
    }
    CHECK(mmt_ops_cpu() == mmt_ops_cpu());
}

static int warnings_logged;
static void count_warning(mmt_log_level level, const char *message, void *user) {
    if (level == MMT_LOG_WARN && strstr(message, "MMT_KERNELS")) warnings_logged++;
}

/* Runs mmt_ops_cpu() in a child with MMT_KERNELS=value (the choice is made once per
 * process) and returns 0 when it picked `expect` and warned iff `expect_warning`. */
static int kernels_env_child(const char *value, const char *expect, int expect_warning) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("MMT_KERNELS", value, 1);
        mmt_log_set_level(MMT_LOG_WARN);
        mmt_log_set_callback(count_warning, NULL);
        const mmt_ops *ops = mmt_ops_cpu();
        int ok = ops && strcmp(ops->name, expect) == 0 && (warnings_logged > 0) == expect_warning;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_kernels_env(void) {
    const int has_avx2 = mmt_ops_cpu_named("avx2") != NULL;
    const int has_avx512 = mmt_ops_cpu_named("avx512") != NULL;
    const char *best = has_avx512 ? "avx512" : has_avx2 ? "avx2" : "ref";
    CHECK(kernels_env_child("ref", "ref", 0) == 0);
    CHECK(kernels_env_child("avx2", has_avx2 ? "avx2" : best, !has_avx2) == 0);
    CHECK(kernels_env_child("avx512", best, !has_avx512) == 0);
    CHECK(kernels_env_child("fastest-please", best, 1) == 0);
}

/* ---- matmul -------------------------------------------------------------------------- */

/* Largest |y - y_other| (y_other NULL: the exact double product) in units of
 * sqrt(K) eps32 (sum_k |x w| + |b|), the typical rounding error of a float dot product. */
static double matmul_max_error(const float *y, const float *x, const float *w, const float *bias,
                               int64_t M, int64_t K, int64_t N, const float *y_other) {
    double worst = 0.0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double exact = bias ? bias[j] : 0.0, mag = bias ? fabs(bias[j]) : 0.0;
            for (int64_t k = 0; k < K; k++) {
                exact += (double)x[i * K + k] * w[j * K + k];
                mag += fabs((double)x[i * K + k] * w[j * K + k]);
            }
            double other = y_other ? y_other[i * N + j] : exact;
            double err = fabs(y[i * N + j] - other) / ((mag > 0 ? mag : 1.0) * sqrt((double)K) * FLT_EPSILON);
            worst = err > worst ? err : worst;
        }
    return worst;
}

static void test_matmul_ref_matches_double(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 2}, {4, 64, 7}, {9, 300, 5}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *x = random_floats(M * K, 1.0f), *w = random_floats(N * K, 1.0f);
        float *b = random_floats(N, 1.0f), *y = guarded_alloc(M * N);
        mmt_ops_ref()->matmul_fwd(y, x, w, b, M, K, N);
        CHECK_MSG(matmul_max_error(y, x, w, b, M, K, N, NULL) <= 2.0, "M=%lld K=%lld N=%lld",
                  (long long)M, (long long)K, (long long)N);
        CHECK(guarded_ok(y, M * N));
        free(x), free(w), free(b), guarded_free(y);
    }
    /* A hand-made case: [1 2; 3 4] @ [[1 0]; [1 1]]^T + [10, 20]. */
    float x[] = {1, 2, 3, 4}, w[] = {1, 0, 1, 1}, b[] = {10, 20}, y[4];
    mmt_ops_ref()->matmul_fwd(y, x, w, b, 2, 2, 2);
    CHECK(y[0] == 11 && y[1] == 23 && y[2] == 13 && y[3] == 27);
}

static void test_matmul_fast_matches_ref(void) {
    /* {M, K, N}: tails of the 6x16 tile and of the K/M/N blocks (256/72/256), K = 1,
     * K = 3072, M = 1 (column split over threads), shapes big enough to run threaded. */
    static const int64_t shapes[][3] = {
        {1, 1, 1},     {1, 1, 17},    {2, 3, 1},     {5, 7, 3},     {6, 16, 16},
        {7, 17, 9},    {6, 1, 32},    {12, 8, 33},   {13, 33, 65},  {64, 64, 64},
        {73, 257, 31}, {100, 300, 257}, {1, 768, 768}, {3, 512, 2048}, {150, 512, 300},
        {37, 3072, 19}, {50, 768, 50}, {67, 768, 45},  {200, 40, 513},
        /* the few-rows path: M <= 8, K and N off the 8/16 vector widths, kc tails */
        {2, 768, 3072}, {3, 17, 33},  {5, 300, 31},  {8, 257, 100}, {9, 64, 64}, {1, 3072, 50},
    };
    const mmt_ops *fast = fast_ops();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *x = random_floats(M * K, 1.0f), *w = random_floats(N * K, 0.5f);
        float *b = random_floats(N, 1.0f);
        float *y_ref = guarded_alloc(M * N), *y_fast = guarded_alloc(M * N);
        for (int with_bias = 0; with_bias <= 1; with_bias++) {
            const float *bias = with_bias ? b : NULL;
            mmt_ops_ref()->matmul_fwd(y_ref, x, w, bias, M, K, N);
            fast->matmul_fwd(y_fast, x, w, bias, M, K, N);
            double err = matmul_max_error(y_fast, x, w, bias, M, K, N, y_ref);
            CHECK_MSG(err <= 2.0, "M=%lld K=%lld N=%lld bias=%d: error %.2f sqrt(K) eps",
                      (long long)M, (long long)K, (long long)N, with_bias, err);
            CHECK(guarded_ok(y_fast, M * N));
        }
        free(x), free(w), free(b), guarded_free(y_ref), guarded_free(y_fast);
    }
}

/* The strided GEMM under matmul and attention, used directly: transposed views, a row
 * stride wider than N, accumulate mode. Compared with a double loop. */
static void test_sgemm_views(void) {
    const sgemm_kernel *kern = fast_kernel();
    static const int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 19}, {50, 64, 50}, {33, 300, 70}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2], ldc = N + 3;
        float *a = random_floats(K * M, 1.0f); /* stored transposed: (K, M) */
        float *b = random_floats(K * N, 1.0f); /* stored row-major: (K, N) */
        float *c = guarded_alloc(M * ldc), *c0 = random_floats(M * ldc, 1.0f);
        for (int64_t i = 0; i < M * ldc; i++) c[i] = c0[i];
        sgemm_view av = {a, 1, M}, bv = {b, N, 1};
        sgemm_run(kern, M, N, K, av, bv, c, ldc, (sgemm_store){1.0f, 1.0f, NULL}, 2);
        double worst = 0.0;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < ldc; j++) {
                double exact = c0[i * ldc + j], mag = fabs(exact);
                for (int64_t k = 0; j < N && k < K; k++) {
                    exact += (double)a[k * M + i] * b[k * N + j];
                    mag += fabs((double)a[k * M + i] * b[k * N + j]);
                }
                double err = fabs(c[i * ldc + j] - exact) / (mag * sqrt((double)K) * FLT_EPSILON);
                worst = err > worst ? err : worst;
            }
        CHECK_MSG(worst <= 2.0, "M=%lld K=%lld N=%lld: %.2f", (long long)M, (long long)K,
                  (long long)N, worst);
        CHECK(guarded_ok(c, M * ldc));
        free(a), free(b), free(c0), guarded_free(c);
    }
}

/* attention_head_gemm_avx2 (attention's unpacked per-head products) against sgemm_avx2 on
 * one thread, bit for bit, in every layout attention uses: a row-major or transposed, b with
 * contiguous rows or transposed (copied), c strided, overwrite and accumulate; the ViT and
 * text head shapes, tails of every width, and shapes it hands back to sgemm_avx2 (K > 256, a
 * transposed b too big for its buffer). */
static void test_attention_head_gemm_bits(void) {
    static const int64_t shapes[][3] = {{1, 1, 1},  {50, 50, 64}, {50, 64, 50},  {77, 77, 64}, {7, 13, 3},
                                        {6, 16, 256}, {5, 9, 257}, {4, 400, 64}, {13, 24, 31}, {2, 7, 100}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int layout = 0; layout < 4; layout++)
            for (int acc = 0; acc <= 1; acc++) {
                int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ldc = N + 5;
                int ta = layout & 1, tb = layout >> 1;
                float *a = random_floats(M * K + 3, 1.0f), *b = random_floats(K * N + 3, 1.0f);
                float *c0 = random_floats(M * ldc, 1.0f), *c1 = guarded_alloc(M * ldc), *c2 = guarded_alloc(M * ldc);
                memcpy(c1, c0, (size_t)(M * ldc) * sizeof(float));
                memcpy(c2, c0, (size_t)(M * ldc) * sizeof(float));
                sgemm_view av = ta ? (sgemm_view){a, 1, M} : (sgemm_view){a, K, 1};
                sgemm_view bv = tb ? (sgemm_view){b, 1, K} : (sgemm_view){b, N, 1};
                sgemm_avx2(M, N, K, av, bv, c1, ldc, NULL, acc, 1);
                attention_head_gemm_avx2(M, N, K, av, bv, c2, ldc, acc);
                CHECK_MSG(!memcmp(c1, c2, (size_t)(M * ldc) * sizeof(float)),
                          "M=%lld N=%lld K=%lld a%s b%s accumulate=%d: differs from sgemm_avx2", (long long)M,
                          (long long)N, (long long)K, ta ? "^T" : "", tb ? "^T" : "", acc);
                CHECK(guarded_ok(c2, M * ldc));
                free(a), free(b), free(c0), guarded_free(c1), guarded_free(c2);
            }
}

/* The few-rows path against the packed one: the first M rows of an (M + 9)-row product
 * (packed: M + 9 > SGEMM_ROWS_MAX_M) must equal, bit for bit, the same M rows multiplied
 * alone (rows path), with and without bias; and both within matmul's tolerance of the
 * reference. N * K large enough for two threads on the last shapes. */
static void test_rows_path_matches_packed(void) {
    static const int64_t ms[] = {1, 2, 3, 5, 8};
    static const int64_t kn[][2] = {{1, 1},   {5, 7},    {16, 16},  {17, 33},  {100, 31},
                                    {257, 100}, {300, 17}, {768, 50}, {512, 513}, {768, 1000}};
    const mmt_ops *fast = fast_ops();
    const int64_t extra = 9;
    for (size_t s = 0; s < sizeof kn / sizeof kn[0]; s++)
        for (size_t m = 0; m < sizeof ms / sizeof ms[0]; m++) {
            const int64_t M = ms[m], K = kn[s][0], N = kn[s][1], Mb = M + extra;
            float *x = random_floats(Mb * K, 1.0f), *w = random_floats(N * K, 0.5f);
            float *b = random_floats(N, 1.0f), *y_ref = guarded_alloc(M * N);
            float *y_big = guarded_alloc(Mb * N), *y_small = guarded_alloc(M * N);
            for (int with_bias = 0; with_bias <= 1; with_bias++) {
                const float *bias = with_bias ? b : NULL;
                fast->matmul_fwd(y_big, x, w, bias, Mb, K, N);
                fast->matmul_fwd(y_small, x, w, bias, M, K, N);
                mmt_ops_ref()->matmul_fwd(y_ref, x, w, bias, M, K, N);
                CHECK_MSG(memcmp(y_small, y_big, (size_t)(M * N) * sizeof(float)) == 0,
                          "%s M=%lld K=%lld N=%lld bias=%d: rows path differs from packed",
                          fast->name, (long long)M, (long long)K, (long long)N, with_bias);
                double err = matmul_max_error(y_small, x, w, bias, M, K, N, y_ref);
                CHECK_MSG(err <= 2.0, "M=%lld K=%lld N=%lld: error %.2f sqrt(K) eps", (long long)M,
                          (long long)K, (long long)N, err);
                CHECK(guarded_ok(y_small, M * N) && guarded_ok(y_big, Mb * N));
            }
            free(x), free(w), free(b), guarded_free(y_ref), guarded_free(y_big), guarded_free(y_small);
        }
}

/* gemm through the few-rows path with strided views: a (M, K) in rows of lda > K, b stored
 * (N, K) in rows of ldb > K (tb), c in rows of ldc > N, alpha and beta. The M rows must
 * equal bitwise the same rows of a product with 9 more rows (packed path); the columns past
 * N keep their contents. With a transposed (ta: K not contiguous) the packed path runs and
 * gives the same bits again. */
static void test_rows_path_gemm_views(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {1, 37, 9}, {2, 768, 8}, {3, 33, 65},
                                        {5, 8, 768}, {8, 250, 40}};
    static const float scalars[][2] = {{1, 0}, {1, 1}, {0.5f, -2}, {-1, 0.25f}};
    const mmt_ops *fast = fast_ops();
    const int64_t extra = 9;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t k = 0; k < sizeof scalars / sizeof scalars[0]; k++) {
            const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], Mb = M + extra;
            const int64_t lda = K + 3, ldb = K + 5, ldc = N + 2;
            const float alpha = scalars[k][0], beta = scalars[k][1];
            float *a = random_floats(Mb * lda, 1.0f), *b = random_floats(N * ldb, 1.0f);
            float *at = malloc((size_t)(K * Mb) * sizeof(float)); /* a transposed: (K, Mb) */
            for (int64_t i = 0; i < Mb; i++)
                for (int64_t kk = 0; kk < K; kk++) at[kk * Mb + i] = a[i * lda + kk];
            float *c0 = random_floats(Mb * ldc, 1.0f);
            float *c_big = guarded_copy(c0, Mb * ldc), *c_small = guarded_copy(c0, M * ldc);
            float *c_t = guarded_copy(c0, M * ldc);
            fast->gemm(0, 1, Mb, N, K, alpha, a, lda, b, ldb, beta, c_big, ldc);
            fast->gemm(0, 1, M, N, K, alpha, a, lda, b, ldb, beta, c_small, ldc);
            fast->gemm(1, 1, M, N, K, alpha, at, Mb, b, ldb, beta, c_t, ldc);
            int same = 1, kept = 1, same_t = 1;
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < ldc; j++) {
                    float v = c_small[i * ldc + j];
                    if (j < N) same &= memcmp(&v, &c_big[i * ldc + j], sizeof v) == 0;
                    else kept &= v == c0[i * ldc + j];
                    same_t &= memcmp(&v, &c_t[i * ldc + j], sizeof v) == 0;
                }
            CHECK_MSG(same && kept && same_t,
                      "%s M=%lld N=%lld K=%lld alpha=%g beta=%g: same %d kept %d transposed %d",
                      fast->name, (long long)M, (long long)N, (long long)K, alpha, beta, same, kept,
                      same_t);
            CHECK(guarded_ok(c_big, Mb * ldc) && guarded_ok(c_small, M * ldc) && guarded_ok(c_t, M * ldc));
            free(a), free(b), free(at), free(c0);
            guarded_free(c_big), guarded_free(c_small), guarded_free(c_t);
        }
}

/* avx2 and avx512 cut K into the same blocks and sum every element in the same order with
 * the same fused multiply-adds (cpu_ops.h), so their GEMM entries agree bit for bit: a model
 * gives the same numbers on an AVX2 and an AVX-512 machine. */
static void test_fast_tables_same_gemm_bits(void) {
    const mmt_ops *t2 = mmt_ops_cpu_named("avx2"), *t5 = mmt_ops_cpu_named("avx512");
    if (!t2 || !t5) {
        printf("note: avx2 and avx512 are not both available; their agreement is not checked\n");
        return;
    }
    static const int64_t shapes[][3] = {{1, 768, 768}, {3, 300, 31},  {13, 33, 65},
                                        {100, 300, 257}, {150, 768, 300}, {29, 1000, 70}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *x = random_floats(M * K, 1.0f), *w = random_floats(N * K, 0.5f);
        float *b = random_floats(N, 1.0f), *dy = random_floats(M * N, 1.0f);
        float *y[2], *dx[2], *dw[2];
        for (int t = 0; t < 2; t++) {
            const mmt_ops *ops = t ? t5 : t2;
            y[t] = malloc((size_t)(M * N) * sizeof(float));
            dx[t] = calloc((size_t)(M * K), sizeof(float));
            dw[t] = calloc((size_t)(N * K), sizeof(float));
            ops->matmul_fwd(y[t], x, w, b, M, K, N);
            ops->matmul_bwd(dx[t], dw[t], NULL, dy, x, w, M, K, N);
            ops->gemm(1, 0, M, N, K, 0.5f, x, M, w, N, -1.0f, y[t], N); /* x, w reread as (K, M), (K, N) */
        }
        CHECK_MSG(memcmp(y[0], y[1], (size_t)(M * N) * sizeof(float)) == 0 &&
                      memcmp(dx[0], dx[1], (size_t)(M * K) * sizeof(float)) == 0 &&
                      memcmp(dw[0], dw[1], (size_t)(N * K) * sizeof(float)) == 0,
                  "M=%lld K=%lld N=%lld", (long long)M, (long long)K, (long long)N);
        for (int t = 0; t < 2; t++) free(y[t]), free(dx[t]), free(dw[t]);
        free(x), free(w), free(b), free(dy);
    }
}

/* Fast matmul is bitwise reproducible, whatever the thread count: each output element is
 * summed in the same order by whichever thread owns it. */
static void test_matmul_deterministic(void) {
    static const int64_t shapes[][3] = {{130, 600, 200}, {2, 768, 1000}}; /* packed, rows path */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *x = random_floats(M * K, 1.0f), *w = random_floats(N * K, 1.0f);
        float *y1 = malloc(M * N * sizeof(float)), *y2 = malloc(M * N * sizeof(float));
        fast_ops()->matmul_fwd(y1, x, w, NULL, M, K, N);
#ifdef _OPENMP
        int threads = omp_get_max_threads();
        omp_set_num_threads(threads > 1 ? 1 : 2);
#endif
        fast_ops()->matmul_fwd(y2, x, w, NULL, M, K, N);
#ifdef _OPENMP
        omp_set_num_threads(threads);
#endif
        CHECK_MSG(memcmp(y1, y2, M * N * sizeof(float)) == 0, "M=%lld", (long long)M);
        free(x), free(w), free(y1), free(y2);
    }
}

/* ---- layernorm ----------------------------------------------------------------------- */

static void test_layernorm_ref_matches_formula(void) {
    const int64_t R = 3, C = 10;
    float *x = random_floats(R * C, 2.0f), *g = random_floats(C, 1.0f), *b = random_floats(C, 1.0f);
    for (int64_t i = 0; i < C; i++) x[C + i] += 100.0f; /* a row far from zero */
    float y[30], mean[3], rstd[3], y_plain[30];
    const float eps = 1e-5f;
    mmt_ops_ref()->layernorm_fwd(y, mean, rstd, x, g, b, R, C, eps);
    mmt_ops_ref()->layernorm_fwd(y_plain, NULL, NULL, x, NULL, NULL, R, C, eps);
    for (int64_t r = 0; r < R; r++) {
        double mu = 0, var = 0;
        for (int64_t c = 0; c < C; c++) mu += x[r * C + c];
        mu /= C;
        for (int64_t c = 0; c < C; c++) var += (x[r * C + c] - mu) * (x[r * C + c] - mu);
        var /= C; /* biased, as torch.layer_norm */
        double rs = 1.0 / sqrt(var + eps);
        CHECK_NEAR(mean[r], mu, 1e-6 * fabs(mu) + 1e-7);
        CHECK_NEAR(rstd[r], rs, 1e-6 * rs);
        for (int64_t c = 0; c < C; c++) {
            double plain = (x[r * C + c] - mu) * rs;
            CHECK_NEAR(y_plain[r * C + c], plain, 1e-5);
            CHECK_NEAR(y[r * C + c], plain * g[c] + b[c], 1e-5);
        }
    }
    /* C = 1: zero variance, so y = bias exactly. */
    float one = 3.0f, gw = 2.0f, gb = 0.25f, out;
    mmt_ops_ref()->layernorm_fwd(&out, NULL, NULL, &one, &gw, &gb, 1, 1, eps);
    CHECK(out == 0.25f);
    free(x), free(g), free(b);
}

static void test_layernorm_fast_matches_ref(void) {
    static const int64_t shapes[][2] = {{1, 1}, {3, 7}, {4, 8}, {5, 9}, {17, 33},
                                        {50, 768}, {77, 512}, {2, 1000}};
    const mmt_ops *fast = fast_ops();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t R = shapes[s][0], C = shapes[s][1];
        float *x = random_floats(R * C, 3.0f), *g = random_floats(C, 1.0f), *b = random_floats(C, 1.0f);
        for (int64_t i = 0; i < R * C; i++) x[i] += 20.0f; /* a mean far from 0 */
        float *y_ref = guarded_alloc(R * C), *y_fast = guarded_alloc(R * C);
        float *m_ref = guarded_alloc(R), *m_fast = guarded_alloc(R);
        float *r_ref = guarded_alloc(R), *r_fast = guarded_alloc(R);
        for (int affine = 0; affine <= 1; affine++) {
            mmt_ops_ref()->layernorm_fwd(y_ref, m_ref, r_ref, x, affine ? g : NULL, affine ? b : NULL, R, C, 1e-5f);
            fast->layernorm_fwd(y_fast, m_fast, r_fast, x, affine ? g : NULL, affine ? b : NULL, R, C, 1e-5f);
            double worst = 0;
            for (int64_t i = 0; i < R * C; i++) {
                double d = fabs(y_fast[i] - y_ref[i]);
                worst = d > worst ? d : worst;
            }
            CHECK_MSG(worst <= 1e-5, "R=%lld C=%lld: |dy| %.3g", (long long)R, (long long)C, worst);
            for (int64_t r = 0; r < R; r++) {
                CHECK_NEAR(m_fast[r], m_ref[r], 1e-6 * fabs(m_ref[r]));
                CHECK_NEAR(r_fast[r], r_ref[r], 1e-5 * r_ref[r]);
            }
            CHECK(guarded_ok(y_fast, R * C) && guarded_ok(m_fast, R) && guarded_ok(r_fast, R));
        }
        /* mean/rstd may be NULL. */
        fast->layernorm_fwd(y_fast, NULL, NULL, x, g, b, R, C, 1e-5f);
        CHECK(guarded_ok(y_fast, R * C));
        free(x), free(g), free(b);
        guarded_free(y_ref), guarded_free(y_fast), guarded_free(m_ref), guarded_free(m_fast);
        guarded_free(r_ref), guarded_free(r_fast);
    }
}

/* ---- softmax ------------------------------------------------------------------------- */

static void test_softmax_ref_matches_formula(void) {
    float x[] = {1.0f, 2.0f, 3.0f, 1000.0f, 1001.0f, 999.0f, -5.0f, -5.0f, -5.0f}, y[9];
    mmt_ops_ref()->softmax_fwd(y, x, 3, 3);
    for (int r = 0; r < 3; r++) {
        double mx = fmax(fmax(x[3 * r], x[3 * r + 1]), x[3 * r + 2]), sum = 0, total = 0;
        for (int c = 0; c < 3; c++) sum += exp((double)x[3 * r + c] - mx);
        for (int c = 0; c < 3; c++) {
            CHECK_NEAR(y[3 * r + c], exp((double)x[3 * r + c] - mx) / sum, 1e-7);
            total += y[3 * r + c];
        }
        CHECK_NEAR(total, 1.0, 1e-6); /* no overflow at 1000 */
    }
    CHECK_NEAR(y[6], 1.0 / 3.0, 1e-7);
}

static void test_softmax_fast_matches_ref(void) {
    static const int64_t shapes[][2] = {{1, 1}, {2, 7}, {3, 8}, {4, 9}, {50, 50},
                                        {12, 77}, {3, 1000}, {64, 1030}};
    const mmt_ops *fast = fast_ops();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t R = shapes[s][0], C = shapes[s][1];
        float *x = random_floats(R * C, 10.0f);
        float *y_ref = guarded_alloc(R * C), *y_fast = guarded_alloc(R * C);
        mmt_ops_ref()->softmax_fwd(y_ref, x, R, C);
        fast->softmax_fwd(y_fast, x, R, C);
        for (int64_t i = 0; i < R * C; i++)
            CHECK_MSG(fabs(y_fast[i] - y_ref[i]) <= 2e-6 * y_ref[i] + 1e-9,
                      "R=%lld C=%lld i=%lld: %.9g vs %.9g", (long long)R, (long long)C,
                      (long long)i, y_fast[i], y_ref[i]);
        CHECK(guarded_ok(y_fast, R * C));
        /* In place (y aliases x) gives the same result. */
        fast->softmax_fwd(x, x, R, C);
        CHECK(memcmp(x, y_fast, (size_t)(R * C) * sizeof(float)) == 0);
        free(x), guarded_free(y_ref), guarded_free(y_fast);
    }
}

/* ---- activations and add ------------------------------------------------------------- */

static void test_activation_ref_known_values(void) {
    /* torch.nn.GELU()(x) in float64. */
    static const double gelu_at[][2] = {{0.0, 0.0},
                                        {1.0, 0.8413447460685429},
                                        {-1.0, -0.15865525393145707},
                                        {2.0, 1.9544997361036416},
                                        {-3.0, -0.00404969409489031},
                                        {0.5, 0.34573123063700656}};
    for (size_t i = 0; i < sizeof gelu_at / sizeof gelu_at[0]; i++) {
        float x = (float)gelu_at[i][0], y;
        mmt_ops_ref()->gelu_fwd(&y, &x, 1);
        CHECK_NEAR(y, gelu_at[i][1], 1e-7 * fmax(1.0, fabs(gelu_at[i][1])) + 1e-9);
    }
    for (float x = -8.0f; x <= 8.0f; x += 0.37f) {
        float y;
        mmt_ops_ref()->quick_gelu_fwd(&y, &x, 1);
        double expect = x / (1.0 + exp(-1.702 * x));
        CHECK_NEAR(y, expect, 1e-7 * fmax(1.0, fabs(expect)));
    }
    float one = 1.0f, q;
    mmt_ops_ref()->quick_gelu_fwd(&q, &one, 1);
    CHECK_NEAR(q, 0.8457957659328212, 1e-7); /* 1 / (1 + e^-1.702) */
}

/* x values: a dense sweep, then extremes and odd spots (tiny, huge, around the erf clamp). */
static float *activation_inputs(int64_t *n_out) {
    static const float extremes[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-8f, 3.5f, -3.5f, 4.0f, -4.0f,
                                     5.6f, -5.6f, 10.0f, -10.0f, 50.0f, -50.0f, 87.0f, -87.0f,
                                     100.0f, -100.0f, 1e6f, -1e6f, 3e38f, -3e38f};
    const int64_t sweep = 20001, n = sweep + (int64_t)(sizeof extremes / sizeof extremes[0]);
    float *x = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < sweep; i++) x[i] = -10.0f + 20.0f * (float)i / (float)(sweep - 1);
    for (size_t i = 0; i < sizeof extremes / sizeof extremes[0]; i++) x[sweep + (int64_t)i] = extremes[i];
    *n_out = n;
    return x;
}

static void test_activation_fast_matches_ref(void) {
    int64_t n;
    float *x = activation_inputs(&n);
    float *y_ref = guarded_alloc(n), *y_fast = guarded_alloc(n);
    const mmt_ops *fast = fast_ops();
    struct {
        const char *name;
        void (*ref)(float *, const float *, int64_t);
        void (*fast)(float *, const float *, int64_t);
        double tol;
    } cases[] = {{"gelu", mmt_ops_ref()->gelu_fwd, fast->gelu_fwd, 5e-7},
                 {"quick_gelu", mmt_ops_ref()->quick_gelu_fwd, fast->quick_gelu_fwd, 5e-7}};
    for (size_t c = 0; c < 2; c++) {
        /* Lengths that leave vector tails, including the whole input. */
        static const int64_t lengths[] = {1, 7, 8, 9, 31};
        for (size_t l = 0; l <= sizeof lengths / sizeof lengths[0]; l++) {
            int64_t len = l < sizeof lengths / sizeof lengths[0] ? lengths[l] : n;
            float *xs = x + (len < n ? 3 : 0);
            cases[c].ref(y_ref, xs, len);
            cases[c].fast(y_fast, xs, len);
            for (int64_t i = 0; i < len; i++)
                CHECK_MSG(fabs(y_fast[i] - y_ref[i]) <= cases[c].tol * fmax(1.0, fabs(xs[i])),
                          "%s(%.9g) = %.9g, ref %.9g", cases[c].name, xs[i], y_fast[i], y_ref[i]);
            CHECK(guarded_ok(y_fast, n) || len < n);
        }
        /* In place. */
        float *copy = malloc((size_t)n * sizeof(float));
        memcpy(copy, x, (size_t)n * sizeof(float));
        cases[c].fast(y_fast, x, n);
        cases[c].fast(copy, copy, n);
        CHECK(memcmp(copy, y_fast, (size_t)n * sizeof(float)) == 0);
        free(copy);
    }
    /* A large array takes the threaded path. */
    int64_t big = 1 << 18;
    float *xb = random_floats(big, 6.0f), *yr = malloc(big * sizeof(float)), *yf = malloc(big * sizeof(float));
    mmt_ops_ref()->gelu_fwd(yr, xb, big);
    fast->gelu_fwd(yf, xb, big);
    double worst = 0;
    for (int64_t i = 0; i < big; i++) worst = fmax(worst, fabs(yf[i] - yr[i]) / fmax(1.0, fabs(xb[i])));
    CHECK_MSG(worst <= 5e-7, "gelu large: %.3g", worst);
    free(xb), free(yr), free(yf);
    free(x), guarded_free(y_ref), guarded_free(y_fast);
}

static void test_add_fast_matches_ref(void) {
    static const int64_t lengths[] = {0, 1, 7, 8, 9, 100, 100003};
    const mmt_ops *fast = fast_ops();
    for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
        int64_t n = lengths[l];
        float *a = random_floats(n, 1.0f), *b = random_floats(n, 1.0f);
        float *y_ref = guarded_alloc(n), *y_fast = guarded_alloc(n);
        mmt_ops_ref()->add_fwd(y_ref, a, b, n);
        fast->add_fwd(y_fast, a, b, n);
        CHECK(memcmp(y_ref, y_fast, (size_t)n * sizeof(float)) == 0);
        CHECK(guarded_ok(y_fast, n));
        for (int64_t i = 0; i < n; i++) CHECK(y_ref[i] == a[i] + b[i]);
        fast->add_fwd(a, a, b, n); /* y aliases a */
        CHECK(memcmp(a, y_ref, (size_t)n * sizeof(float)) == 0);
        free(a), free(b), guarded_free(y_ref), guarded_free(y_fast);
    }
}

/* ---- attention ----------------------------------------------------------------------- */

/* Double-precision attention, written independently of the kernels (explicit view of the
 * (B, T, H, D) layout), for the reference check. */
static void attention_double(double *out, double *att, const float *q, const float *k,
                             const float *v, int64_t B, int64_t T, int64_t H, int64_t D,
                             int causal) {
#define AT(t, b, s, h, d) ((double)(t)[(((b) * T + (s)) * H + (h)) * D + (d)])
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                double *p = att + ((b * H + h) * T + i) * T, mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < T; j++) {
                    double s = 0;
                    for (int64_t d = 0; d < D; d++) s += AT(q, b, i, h, d) * AT(k, b, j, h, d);
                    p[j] = (causal && j > i) ? -INFINITY : s / sqrt((double)D);
                    mx = fmax(mx, p[j]);
                }
                for (int64_t j = 0; j < T; j++) sum += (p[j] = exp(p[j] - mx));
                for (int64_t j = 0; j < T; j++) p[j] /= sum;
                for (int64_t d = 0; d < D; d++) {
                    double o = 0;
                    for (int64_t j = 0; j < T; j++) o += p[j] * AT(v, b, j, h, d);
                    out[((b * T + i) * H + h) * D + d] = o;
                }
            }
#undef AT
}

static void test_attention_ref_matches_double(void) {
    const int64_t B = 2, T = 5, H = 3, D = 4, n = B * T * H * D, na = B * H * T * T;
    float *q = random_floats(n, 2.0f), *k = random_floats(n, 2.0f), *v = random_floats(n, 1.0f);
    float *out = guarded_alloc(n), *att = guarded_alloc(na);
    double *out_d = malloc(n * sizeof(double)), *att_d = malloc(na * sizeof(double));
    for (int causal = 0; causal <= 1; causal++) {
        mmt_ops_ref()->attention_fwd(out, att, q, k, v, B, T, H, D, causal);
        attention_double(out_d, att_d, q, k, v, B, T, H, D, causal);
        for (int64_t i = 0; i < na; i++) CHECK_NEAR(att[i], att_d[i], 1e-6);
        for (int64_t i = 0; i < n; i++) CHECK_NEAR(out[i], out_d[i], 1e-6);
        for (int64_t r = 0; r < B * H * T; r++) {
            double sum = 0;
            for (int64_t j = 0; j < T; j++) {
                sum += att[r * T + j];
                if (causal && j > r % T) CHECK(att[r * T + j] == 0.0f); /* future keys */
            }
            CHECK_NEAR(sum, 1.0, 1e-6);
        }
        CHECK(guarded_ok(out, n) && guarded_ok(att, na));
    }
    free(q), free(k), free(v), free(out_d), free(att_d), guarded_free(out), guarded_free(att);
}

static void test_attention_fast_matches_ref(void) {
    /* {B, T, H, D, causal}: trivial, odd, ViT-B/32 (T = 50, 12 heads of 64), text (T = 77). */
    static const int64_t shapes[][5] = {{1, 1, 1, 1, 0}, {1, 1, 1, 1, 1}, {2, 7, 3, 5, 0},
                                        {2, 7, 3, 5, 1},  {3, 17, 2, 24, 1}, {2, 50, 12, 64, 0},
                                        {2, 77, 8, 64, 1}, {1, 20, 1, 130, 0}};
    const mmt_ops *fast = fast_ops();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t B = shapes[s][0], T = shapes[s][1], H = shapes[s][2], D = shapes[s][3];
        int causal = (int)shapes[s][4];
        int64_t n = B * T * H * D, na = B * H * T * T;
        float *q = random_floats(n, 1.0f), *k = random_floats(n, 1.0f), *v = random_floats(n, 1.0f);
        float *out_ref = guarded_alloc(n), *out_fast = guarded_alloc(n);
        float *att_ref = guarded_alloc(na), *att_fast = guarded_alloc(na);
        mmt_ops_ref()->attention_fwd(out_ref, att_ref, q, k, v, B, T, H, D, causal);
        fast->attention_fwd(out_fast, att_fast, q, k, v, B, T, H, D, causal);
        double worst_att = 0, worst_out = 0;
        for (int64_t i = 0; i < na; i++) worst_att = fmax(worst_att, fabs(att_fast[i] - att_ref[i]));
        for (int64_t i = 0; i < n; i++) worst_out = fmax(worst_out, fabs(out_fast[i] - out_ref[i]));
        CHECK_MSG(worst_att <= 2e-6 && worst_out <= 1e-5, "B=%lld T=%lld H=%lld D=%lld causal=%d: att %.3g out %.3g",
                  (long long)B, (long long)T, (long long)H, (long long)D, causal, worst_att, worst_out);
        for (int64_t r = 0; causal && r < B * H * T; r++)
            for (int64_t j = r % T + 1; j < T; j++) CHECK(att_fast[r * T + j] == 0.0f);
        CHECK(guarded_ok(out_fast, n) && guarded_ok(att_fast, na));
        free(q), free(k), free(v);
        guarded_free(out_ref), guarded_free(out_fast), guarded_free(att_ref), guarded_free(att_fast);
    }
}

/* ---- embedding and patchify ---------------------------------------------------------- */

static void test_embedding(void) {
    const int64_t V = 11, C = 13, N = 9;
    float *table = random_floats(V * C, 1.0f);
    int32_t ids[9] = {0, 10, 3, 3, 7, 1, 0, 9, 5};
    float *y_ref = guarded_alloc(N * C), *y_fast = guarded_alloc(N * C);
    mmt_ops_ref()->embedding_fwd(y_ref, ids, table, N, C);
    fast_ops()->embedding_fwd(y_fast, ids, table, N, C);
    for (int64_t i = 0; i < N; i++) CHECK(memcmp(y_ref + i * C, table + ids[i] * C, C * sizeof(float)) == 0);
    CHECK(memcmp(y_ref, y_fast, N * C * sizeof(float)) == 0);
    CHECK(guarded_ok(y_ref, N * C) && guarded_ok(y_fast, N * C));
    free(table), guarded_free(y_ref), guarded_free(y_fast);
}

/* patchify followed by a matmul with the flattened Conv2d weight must equal a direct
 * Conv2d(kernel = stride = P, no padding) computed here in double; fast must equal ref. */
static void test_patchify_is_conv_im2col(void) {
    /* {B, Cin, Hh, Ww, P}; the last ones do not divide evenly (Conv2d drops the rest). */
    static const int64_t shapes[][5] = {{1, 1, 1, 1, 1}, {2, 3, 8, 8, 4}, {1, 3, 64, 64, 32},
                                        {2, 2, 9, 7, 3}, {1, 3, 10, 13, 4}};
    const int64_t Cout = 5;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t B = shapes[s][0], Cin = shapes[s][1], Hh = shapes[s][2], Ww = shapes[s][3], P = shapes[s][4];
        int64_t GH = Hh / P, GW = Ww / P, L = GH * GW, F = Cin * P * P;
        float *x = random_floats(B * Cin * Hh * Ww, 1.0f), *w = random_floats(Cout * F, 1.0f);
        float *cols_ref = guarded_alloc(B * L * F), *cols_fast = guarded_alloc(B * L * F);
        float *y = malloc(B * L * Cout * sizeof(float));
        mmt_ops_ref()->patchify_fwd(cols_ref, x, B, Cin, Hh, Ww, P);
        fast_ops()->patchify_fwd(cols_fast, x, B, Cin, Hh, Ww, P);
        CHECK(memcmp(cols_ref, cols_fast, B * L * F * sizeof(float)) == 0);
        CHECK(guarded_ok(cols_ref, B * L * F) && guarded_ok(cols_fast, B * L * F));
        mmt_ops_ref()->matmul_fwd(y, cols_ref, w, NULL, B * L, F, Cout);
        for (int64_t b = 0; b < B; b++)
            for (int64_t o = 0; o < Cout; o++)
                for (int64_t gy = 0; gy < GH; gy++)
                    for (int64_t gx = 0; gx < GW; gx++) {
                        double conv = 0;
                        for (int64_t c = 0; c < Cin; c++)
                            for (int64_t ky = 0; ky < P; ky++)
                                for (int64_t kx = 0; kx < P; kx++)
                                    conv += (double)w[((o * Cin + c) * P + ky) * P + kx] *
                                            x[((b * Cin + c) * Hh + gy * P + ky) * Ww + gx * P + kx];
                        float got = y[(b * L + gy * GW + gx) * Cout + o];
                        CHECK_NEAR(got, conv, 1e-6 * sqrt((double)F) * 8);
                    }
        free(x), free(w), free(y), guarded_free(cols_ref), guarded_free(cols_fast);
    }
}

int main(void) {
    rng_state = 0x9e3779b97f4a7c15ull; /* this file's stream of random inputs */
    mmt_log_set_level(MMT_LOG_SILENT);
    RUN(test_kernels_env); /* first: forks before any OpenMP thread exists */
    RUN(test_tables_complete);
    RUN(test_matmul_ref_matches_double);
    RUN(test_layernorm_ref_matches_formula);
    RUN(test_softmax_ref_matches_formula);
    RUN(test_activation_ref_known_values);
    RUN(test_attention_ref_matches_double);
    RUN(test_fast_tables_same_gemm_bits);
    if (mmt_ops_cpu_named("avx2")) RUN(test_attention_head_gemm_bits);
    else printf("note: no AVX2 here: attention's per-head products not checked\n");
    for (int t = 0; t < FAST_TABLES; t++) {
        if (!fast_table_use(t)) continue;
        RUN(test_matmul_fast_matches_ref);
        RUN(test_sgemm_views);
        RUN(test_rows_path_matches_packed);
        RUN(test_rows_path_gemm_views);
        RUN(test_matmul_deterministic);
        RUN(test_layernorm_fast_matches_ref);
        RUN(test_softmax_fast_matches_ref);
        RUN(test_activation_fast_matches_ref);
        RUN(test_add_fast_matches_ref);
        RUN(test_attention_fast_matches_ref);
        RUN(test_embedding);
        RUN(test_patchify_is_conv_im2col);
    }
    return check_summary();
}
