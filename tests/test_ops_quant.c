/*
 * test_ops_quant.c — the quantized-weight ops (ops.h mmt_qmat, issue 13): every fast table's
 * entries, and every int8 GEMM microkernel this CPU can run, against the reference table;
 * the reference against independent formulas.
 *
 * References and tolerances:
 *   s8_pack            the layout written out in ops.h, rebuilt here byte by byte: exact.
 *   s8_quantize_rows   ref vs hand-worked values (half-way cases round to even, the largest
 *                      |x| gives +-127, zero rows give scale 0); fast vs ref: identical bytes
 *                      and identical scale bits.
 *   s8_matmul_fwd      the int32 sums against an int64 sum computed here (exact); the floats
 *                      of every fast table and kernel (avx2 sign trick, AVX-VNNI, AVX512_VNNI)
 *                      bitwise the ref's, on ragged shapes, several K blocks (the int32
 *                      partial sums kept in y), any thread count, zero rows and all-extreme
 *                      values (+-127 everywhere: no int16 saturation in the sign trick).
 *   qmat_dequant_rows  ref vs the bitsandbytes formula; fast vs ref: identical bits.
 *   qmat_matmul_fwd    fast vs ref: |fast - ref| <= 2 sqrt(K) eps32 (sum_k |x w| + |b|) (float
 *                      sums in two orders, as test_ops' matmul); fast vs the same table's
 *                      matmul_fwd on the dequantized W: bitwise equal (the same K blocks).
 *   qmat_matmul_bwd_dx likewise with N as the sum's length; bitwise the table's matmul_bwd dx.
 * Shapes: M = 1, 2, 7, 33, 100; N and K not multiples of 4/16/64, NF4 blocks straddling rows,
 * odd N*K, K across the int8 K blocks (1024) and the float K blocks (256). Outputs sit between
 * guard words (ops_fixture.h).
 */
#include <float.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "check.h"
#include "core/cpu.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"
#include "ops_fixture.h"

/* bitsandbytes' NF4 code (functional.py, create_normal_map). */
static const float nf4_code[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982251167297f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

static int8_t *random_s8(int64_t n, int lo, int hi) {
    int8_t *p = malloc((size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = (int8_t)(lo + (int)(rng_next() % (uint64_t)(hi - lo + 1)));
    return p;
}

/* A quantized weight and the memory it points at (one owner: free with qmat_free). */
typedef struct test_qmat {
    mmt_qmat w;
    int8_t *s8;
    float *scale, *absmax;
    uint8_t *nf4;
    void *packed;
} test_qmat;

static test_qmat make_s8(int64_t N, int64_t K, int lo, int hi) {
    test_qmat t = {0};
    t.s8 = random_s8(N * K, lo, hi);
    t.scale = malloc((size_t)(N > 0 ? N : 1) * sizeof(float));
    for (int64_t n = 0; n < N; n++) t.scale[n] = (0.5f + rng_unit()) / 127.0f;
    size_t bytes = mmt_ops_ref()->s8_packed_bytes(N, K);
    t.packed = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    mmt_ops_ref()->s8_pack(t.packed, t.s8, N, K);
    t.w = (mmt_qmat){.type = MMT_QMAT_S8, .rows = N, .cols = K, .s8 = t.s8, .scale = t.scale,
                     .s8_packed = t.packed};
    return t;
}

static test_qmat make_nf4(int64_t N, int64_t K, int64_t blocksize) {
    test_qmat t = {0};
    const int64_t n = N * K, blocks = (n + blocksize - 1) / blocksize;
    t.nf4 = malloc((size_t)((n + 1) / 2 + 1));
    for (int64_t i = 0; i < (n + 1) / 2; i++) t.nf4[i] = (uint8_t)rng_next();
    t.absmax = malloc((size_t)(blocks > 0 ? blocks : 1) * sizeof(float));
    for (int64_t b = 0; b < blocks; b++) t.absmax[b] = 0.05f + rng_unit();
    t.w = (mmt_qmat){.type = MMT_QMAT_NF4, .rows = N, .cols = K, .nf4 = t.nf4,
                     .absmax = t.absmax, .code = nf4_code, .blocksize = blocksize};
    return t;
}

static void qmat_free(test_qmat *t) {
    free(t->s8), free(t->scale), free(t->absmax), free(t->nf4), free(t->packed);
}

/* ---- the reference against the formulas ----------------------------------------------- */

/* s8_pack's bytes and row sums are ops.h's formula. */
static void test_pack_layout(void) {
    static const int64_t shapes[][2] = {{1, 1}, {3, 5}, {16, 4}, {17, 8}, {33, 13}, {40, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t N = shapes[s][0], K = shapes[s][1], NP = (N + 15) / 16, KG = (K + 3) / 4;
        int8_t *w = random_s8(N * K, -127, 127);
        const size_t bytes = mmt_ops_ref()->s8_packed_bytes(N, K);
        CHECK(bytes == (size_t)(NP * KG * 64 + NP * 16 * 4));
        unsigned char *p = malloc(bytes + 1);
        p[bytes] = 0xA5;
        mmt_ops_ref()->s8_pack(p, w, N, K);
        CHECK(p[bytes] == 0xA5);
        for (int64_t n = 0; n < NP * 16; n++) {
            int32_t sum = 0, stored;
            for (int64_t k = 0; k < KG * 4; k++) {
                const int8_t want = n < N && k < K ? w[n * K + k] : 0;
                const int8_t got = (int8_t)p[(n / 16) * KG * 64 + (k / 4) * 64 + (n % 16) * 4 + k % 4];
                CHECK_MSG(got == want, "N=%lld K=%lld n=%lld k=%lld", (long long)N, (long long)K,
                          (long long)n, (long long)k);
                sum += want;
            }
            memcpy(&stored, p + NP * KG * 64 + n * 4, 4);
            CHECK(stored == sum);
        }
        /* every table packs the one layout */
        for (int t = 0; t < FAST_TABLES; t++) {
            const mmt_ops *ops = mmt_ops_cpu_named(fast_table_names[t]);
            if (!ops) continue;
            unsigned char *q = malloc(bytes);
            CHECK(ops->s8_packed_bytes(N, K) == bytes);
            ops->s8_pack(q, w, N, K);
            CHECK(memcmp(p, q, bytes) == 0);
            free(q);
        }
        free(w), free(p);
    }
}

/* The rounding rule on values worked by hand: amax 127 makes inv exactly 1, so x * inv = x. */
static void test_quantize_ref_rule(void) {
    const float x[8] = {127.0f, -127.0f, 2.5f, 3.5f, -2.5f, 0.49f, -0.5f, 126.5f};
    const int8_t want[8] = {127, -127, 2, 4, -2, 0, 0, 126}; /* half to even */
    int8_t q[8 + 8];
    float scale[2];
    memset(q, 0x55, sizeof q);
    mmt_ops_ref()->s8_quantize_rows(q, scale, x, 1, 8);
    CHECK(scale[0] == 1.0f);
    for (int i = 0; i < 8; i++) CHECK_MSG(q[i] == want[i], "i=%d q=%d", i, q[i]);
    CHECK(q[8] == 0x55); /* nothing past the row */
    /* a zero row: scale 0, q 0; a scaled row: x ~= q * scale within half a step */
    float x2[2 * 5] = {0, 0, 0, 0, 0, 0.3f, -1.7f, 0.01f, 1.7f, -0.85f};
    mmt_ops_ref()->s8_quantize_rows(q, scale, x2, 2, 5);
    CHECK(scale[0] == 0.0f);
    for (int i = 0; i < 5; i++) CHECK(q[i] == 0);
    CHECK(scale[1] == 1.7f / 127.0f);
    CHECK(q[6] == -127 && q[8] == 127);
    for (int i = 5; i < 10; i++) CHECK(fabsf(q[i] * scale[1] - x2[i]) <= 0.5f * scale[1] * 1.0001f);
}

static void test_dequant_ref_formula(void) {
    test_qmat t = make_nf4(3, 5, 4); /* blocks of 4 straddle the rows of 5; 15 is odd */
    float d[15];
    mmt_ops_ref()->qmat_dequant_rows(d, &t.w, 0, 3);
    for (int i = 0; i < 15; i++) {
        int nib = i % 2 == 0 ? t.nf4[i / 2] >> 4 : t.nf4[i / 2] & 15;
        CHECK(d[i] == nf4_code[nib] * t.absmax[i / 4]);
    }
    qmat_free(&t);
    t = make_s8(3, 5, -127, 127);
    mmt_ops_ref()->qmat_dequant_rows(d, &t.w, 1, 3);
    for (int i = 0; i < 10; i++) CHECK(d[i] == (float)t.s8[5 + i] * t.scale[1 + i / 5]);
    qmat_free(&t);
}

/* ---- s8_quantize_rows: fast vs ref ------------------------------------------------------ */

static void test_quantize_fast_matches_ref(void) {
    static const int64_t Ms[] = {1, 2, 7, 33};
    static const int64_t Ks[] = {1, 3, 15, 16, 17, 31, 33, 64, 100, 768};
    for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
        for (size_t b = 0; b < sizeof Ks / sizeof Ks[0]; b++) {
            const int64_t M = Ms[a], K = Ks[b];
            float *x = random_floats(M * K, 3.0f);
            if (M > 1) memset(x + K, 0, (size_t)K * sizeof(float)); /* a zero row */
            if (M > 2) /* half-way cases: amax 127 makes x * inv = x */
                for (int64_t k = 0; k < K; k++) x[2 * K + k] = k == 0 ? 127.0f : (float)(k % 9) - 4.5f;
            if (M > 3) x[3 * K] = 1e-40f, x[3 * K + (K > 1)] = 1e-40f; /* subnormal amax */
            int8_t *qr = malloc((size_t)(M * K + 32)), *qf = malloc((size_t)(M * K + 32));
            float *sr = guarded_alloc(M), *sf = guarded_alloc(M);
            memset(qf + M * K, 0x5a, 32);
            mmt_ops_ref()->s8_quantize_rows(qr, sr, x, M, K);
            fast_ops()->s8_quantize_rows(qf, sf, x, M, K);
            CHECK_MSG(memcmp(qr, qf, (size_t)(M * K)) == 0, "M=%lld K=%lld", (long long)M, (long long)K);
            CHECK(memcmp(sr, sf, (size_t)M * sizeof(float)) == 0);
            CHECK(guarded_ok(sf, M));
            for (int i = 0; i < 32; i++) CHECK(qf[M * K + i] == 0x5a);
            for (int64_t i = 0; i < M * K; i++) CHECK(qr[i] >= -127 && qr[i] <= 127);
            free(x), free(qr), free(qf), guarded_free(sr), guarded_free(sf);
        }
}

/* ---- s8_matmul_fwd ---------------------------------------------------------------------- */

/* The int8 kernels this CPU can run, each through the shared driver. */
static const qgemm_kernel *qgemm_kernels[3];
static int n_qgemm_kernels;

static void find_qgemm_kernels(void) {
    const mmt_cpu_features cpu = mmt_cpu_detect();
    n_qgemm_kernels = 0;
    if (cpu.avx2) qgemm_kernels[n_qgemm_kernels++] = &qgemm_kernel_avx2;
    if (cpu.avx_vnni) qgemm_kernels[n_qgemm_kernels++] = &qgemm_kernel_avxvnni;
    else printf("note: no AVX-VNNI on this CPU; its int8 kernel is not tested\n");
    if (cpu.avx512_vnni) qgemm_kernels[n_qgemm_kernels++] = &qgemm_kernel_avx512vnni;
    else printf("note: no AVX512_VNNI on this CPU; its int8 kernel is not tested\n");
}

/* One case: every kernel (1 and 2 threads) and the current fast table against the ref,
 * bitwise; with unit scales and no bias the ref's floats are checked against int64 sums. */
static void check_s8_case(int64_t M, int64_t N, int64_t K, int xlo, int xhi, int wlo, int whi,
                          int zero_row, int unit_scales, int with_bias) {
    test_qmat t = make_s8(N, K, wlo, whi);
    int8_t *xq = random_s8(M * K, xlo, xhi);
    float *xscale = malloc((size_t)M * sizeof(float));
    for (int64_t m = 0; m < M; m++) xscale[m] = unit_scales ? 1.0f : (0.5f + rng_unit()) / 127.0f;
    if (unit_scales)
        for (int64_t n = 0; n < N; n++) t.scale[n] = 1.0f;
    if (zero_row && M > 1) {
        memset(xq + (M / 2) * K, 0, (size_t)K);
        xscale[M / 2] = 0.0f;
    }
    float *bias = with_bias ? random_floats(N, 2.0f) : NULL;
    float *yr = guarded_alloc(M * N), *yf = guarded_alloc(M * N);
    mmt_ops_ref()->s8_matmul_fwd(yr, xq, xscale, &t.w, bias, M);
    if (unit_scales && !with_bias)
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                int64_t s = 0;
                for (int64_t k = 0; k < K; k++) s += (int64_t)xq[m * K + k] * t.s8[n * K + k];
                CHECK(yr[m * N + n] == (float)s);
            }
    fast_ops()->s8_matmul_fwd(yf, xq, xscale, &t.w, bias, M);
    CHECK_MSG(memcmp(yr, yf, (size_t)(M * N) * sizeof(float)) == 0, "table %s M=%lld N=%lld K=%lld",
              fast_ops()->name, (long long)M, (long long)N, (long long)K);
    CHECK(guarded_ok(yf, M * N));
    for (int k = 0; k < n_qgemm_kernels; k++)
        for (int threads = 1; threads <= 2; threads++) {
            for (int64_t i = 0; i < M * N; i++) yf[i] = NAN;
            qgemm_matmul(qgemm_kernels[k], yf, xq, xscale, &t.w, bias, M, threads);
            CHECK_MSG(memcmp(yr, yf, (size_t)(M * N) * sizeof(float)) == 0,
                      "kernel %s threads %d M=%lld N=%lld K=%lld", qgemm_kernels[k]->name, threads,
                      (long long)M, (long long)N, (long long)K);
            CHECK(guarded_ok(yf, M * N));
        }
    free(xq), free(xscale), free(bias), guarded_free(yr), guarded_free(yf), qmat_free(&t);
}

static void test_s8_matmul_fast_matches_ref(void) {
    static const int64_t Ms[] = {1, 2, 7, 33, 100};
    /* ragged N and K; 1030 and 2100 cross the int8 kernels' 1024-deep K blocks */
    static const int64_t NK[][2] = {{1, 1},   {5, 3},   {16, 4},  {17, 5},  {33, 63},
                                    {48, 64}, {50, 65}, {100, 257}, {37, 1030}, {20, 2100}};
    for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
        for (size_t b = 0; b < sizeof NK / sizeof NK[0]; b++) {
            const int64_t M = Ms[a], N = NK[b][0], K = NK[b][1];
            check_s8_case(M, N, K, -127, 127, -127, 127, 1, 0, (a + b) % 2 == 0);
            check_s8_case(M, N, K, -127, 127, -127, 127, 0, 1, 0);
        }
}

/* +-127 everywhere: every pair of products is +-2 * 127^2, the most vpmaddubsw can be given,
 * and the sums reach 127^2 K; all one sign, mixed signs, and x = -127 against w = -127. */
static void test_s8_matmul_extremes(void) {
    const int64_t shapes[][3] = {{7, 33, 2100}, {33, 17, 1029}, {2, 64, 4096}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        check_s8_case(M, N, K, 127, 127, 127, 127, 0, 1, 0);
        check_s8_case(M, N, K, -127, -127, -127, -127, 0, 1, 0);
        check_s8_case(M, N, K, 127, 127, -127, -127, 0, 1, 0);
        check_s8_case(M, N, K, -127, -127, 127, 127, 0, 1, 1);
        /* random signs of magnitude 127 */
        test_qmat t = make_s8(N, K, 0, 1);
        for (int64_t i = 0; i < N * K; i++) t.s8[i] = t.s8[i] ? 127 : -127;
        mmt_ops_ref()->s8_pack(t.packed, t.s8, N, K);
        int8_t *xq = random_s8(M * K, 0, 1);
        for (int64_t i = 0; i < M * K; i++) xq[i] = xq[i] ? 127 : -127;
        float *xscale = malloc((size_t)M * sizeof(float));
        for (int64_t m = 0; m < M; m++) xscale[m] = 1.0f;
        float *yr = guarded_alloc(M * N), *yf = guarded_alloc(M * N);
        mmt_ops_ref()->s8_matmul_fwd(yr, xq, xscale, &t.w, NULL, M);
        for (int k = 0; k < n_qgemm_kernels; k++) {
            qgemm_matmul(qgemm_kernels[k], yf, xq, xscale, &t.w, NULL, M, 2);
            CHECK(memcmp(yr, yf, (size_t)(M * N) * sizeof(float)) == 0);
        }
        fast_ops()->s8_matmul_fwd(yf, xq, xscale, &t.w, NULL, M);
        CHECK(memcmp(yr, yf, (size_t)(M * N) * sizeof(float)) == 0);
        CHECK(guarded_ok(yf, M * N));
        free(xq), free(xscale), guarded_free(yr), guarded_free(yf), qmat_free(&t);
    }
}

/* The pipeline of int8 inference: quantize x, multiply; close to the float product. */
static void test_s8_pipeline_close_to_float(void) {
    const int64_t M = 9, N = 40, K = 300;
    test_qmat t = make_s8(N, K, -127, 127);
    float *x = random_floats(M * K, 1.0f), *wf = malloc((size_t)(N * K) * sizeof(float));
    int8_t *xq = malloc((size_t)(M * K));
    float *xs = malloc((size_t)M * sizeof(float)), *y = malloc((size_t)(M * N) * sizeof(float));
    mmt_ops_ref()->qmat_dequant_rows(wf, &t.w, 0, N);
    fast_ops()->s8_quantize_rows(xq, xs, x, M, K);
    fast_ops()->s8_matmul_fwd(y, xq, xs, &t.w, NULL, M);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double exact = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) {
                exact += (double)x[m * K + k] * wf[n * K + k];
                mag += fabs((double)wf[n * K + k]);
            }
            /* each x is off by at most half a step, xs / 2 */
            CHECK_NEAR(y[m * N + n], exact, 0.5 * xs[m] * mag * 1.001 + 1e-5);
        }
    free(x), free(wf), free(xq), free(xs), free(y), qmat_free(&t);
}

/* ---- float GEMMs on a quantized W ------------------------------------------------------- */

/* A W for a case: kind 0 int8, 1 NF4 with bitsandbytes' 64-blocks, 2 NF4 with 7-blocks
 * (straddling every row). */
static test_qmat make_case_w(int kind, int64_t N, int64_t K) {
    return kind == 0 ? make_s8(N, K, -127, 127) : make_nf4(N, K, kind == 1 ? 64 : 7);
}

static void test_dequant_fast_matches_ref(void) {
    static const int64_t NK[][2] = {{1, 1}, {3, 5}, {7, 33}, {17, 64}, {5, 129}, {9, 301}};
    for (int kind = 0; kind < 3; kind++)
        for (size_t s = 0; s < sizeof NK / sizeof NK[0]; s++) {
            const int64_t N = NK[s][0], K = NK[s][1];
            test_qmat t = make_case_w(kind, N, K);
            for (int64_t r0 = 0; r0 < N; r0 += 2) {
                const int64_t r1 = N - (r0 % 3 == 0 ? 0 : 1) > r0 ? N - (r0 % 3 == 0 ? 0 : 1) : N;
                float *dr = guarded_alloc((r1 - r0) * K), *df = guarded_alloc((r1 - r0) * K);
                mmt_ops_ref()->qmat_dequant_rows(dr, &t.w, r0, r1);
                fast_ops()->qmat_dequant_rows(df, &t.w, r0, r1);
                CHECK_MSG(memcmp(dr, df, (size_t)((r1 - r0) * K) * sizeof(float)) == 0,
                          "kind %d N=%lld K=%lld rows %lld..%lld", kind, (long long)N, (long long)K,
                          (long long)r0, (long long)r1);
                CHECK(guarded_ok(df, (r1 - r0) * K));
                guarded_free(dr), guarded_free(df);
            }
            qmat_free(&t);
        }
}

static void check_qmat_fwd_case(int kind, int64_t M, int64_t N, int64_t K, int with_bias) {
    test_qmat t = make_case_w(kind, N, K);
    float *x = random_floats(M * K, 1.0f), *bias = with_bias ? random_floats(N, 1.0f) : NULL;
    float *wf = malloc((size_t)(N * K > 0 ? N * K : 1) * sizeof(float));
    float *yr = guarded_alloc(M * N), *yf = guarded_alloc(M * N), *yd = guarded_alloc(M * N);
    mmt_ops_ref()->qmat_dequant_rows(wf, &t.w, 0, N);
    mmt_ops_ref()->qmat_matmul_fwd(yr, x, &t.w, bias, M);
    fast_ops()->qmat_matmul_fwd(yf, x, &t.w, bias, M);
    fast_ops()->matmul_fwd(yd, x, wf, bias, M, K, N);
    int bad = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double mag = bias ? fabs(bias[n]) : 0;
            for (int64_t k = 0; k < K; k++) mag += fabs((double)x[m * K + k] * wf[n * K + k]);
            const double tol = 2.0 * sqrt((double)K) * FLT_EPSILON * mag;
            if (!(fabs((double)yf[m * N + n] - yr[m * N + n]) <= tol) && bad++ < 3)
                CHECK_MSG(0, "kind %d M=%lld N=%lld K=%lld: %.9g vs ref %.9g", kind, (long long)M,
                          (long long)N, (long long)K, yf[m * N + n], yr[m * N + n]);
        }
    CHECK(bad == 0);
    CHECK_MSG(memcmp(yf, yd, (size_t)(M * N) * sizeof(float)) == 0,
              "qmat_matmul_fwd is not the table's matmul_fwd bitwise: kind %d M=%lld N=%lld K=%lld",
              kind, (long long)M, (long long)N, (long long)K);
    CHECK(guarded_ok(yf, M * N));
    free(x), free(bias), free(wf), guarded_free(yr), guarded_free(yf), guarded_free(yd);
    qmat_free(&t);
}

static void check_qmat_bwd_case(int kind, int64_t M, int64_t N, int64_t K) {
    test_qmat t = make_case_w(kind, N, K);
    float *dy = random_floats(M * N, 1.0f), *dx0 = random_floats(M * K, 1.0f);
    float *wf = malloc((size_t)(N * K > 0 ? N * K : 1) * sizeof(float));
    float *dxr = guarded_copy(dx0, M * K), *dxf = guarded_copy(dx0, M * K), *dxd = guarded_copy(dx0, M * K);
    mmt_ops_ref()->qmat_dequant_rows(wf, &t.w, 0, N);
    mmt_ops_ref()->qmat_matmul_bwd_dx(dxr, dy, &t.w, M);
    fast_ops()->qmat_matmul_bwd_dx(dxf, dy, &t.w, M);
    fast_ops()->matmul_bwd(dxd, NULL, NULL, dy, dx0, wf, M, K, N);
    int bad = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++) {
            double mag = fabs(dx0[m * K + k]);
            for (int64_t n = 0; n < N; n++) mag += fabs((double)dy[m * N + n] * wf[n * K + k]);
            const double tol = 2.0 * sqrt((double)N + 1) * FLT_EPSILON * mag;
            if (!(fabs((double)dxf[m * K + k] - dxr[m * K + k]) <= tol) && bad++ < 3)
                CHECK_MSG(0, "bwd kind %d M=%lld N=%lld K=%lld: %.9g vs ref %.9g", kind,
                          (long long)M, (long long)N, (long long)K, dxf[m * K + k], dxr[m * K + k]);
        }
    CHECK(bad == 0);
    CHECK_MSG(memcmp(dxf, dxd, (size_t)(M * K) * sizeof(float)) == 0,
              "qmat_matmul_bwd_dx is not the table's matmul_bwd bitwise: kind %d M=%lld N=%lld K=%lld",
              kind, (long long)M, (long long)N, (long long)K);
    CHECK(guarded_ok(dxf, M * K));
    free(dy), free(dx0), free(wf), guarded_free(dxr), guarded_free(dxf), guarded_free(dxd);
    qmat_free(&t);
}

static void test_qmat_fwd_fast_matches_ref(void) {
    static const int64_t Ms[] = {1, 2, 7, 33, 100};
    /* 300 and 600 cross the float GEMM's 256-deep K blocks; 130 and 300 rows cross panels */
    static const int64_t NK[][2] = {{1, 1}, {5, 3}, {17, 33}, {33, 64}, {130, 65}, {40, 300}, {300, 37}, {9, 600}};
    for (int kind = 0; kind < 3; kind++)
        for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
            for (size_t b = 0; b < sizeof NK / sizeof NK[0]; b++)
                check_qmat_fwd_case(kind, Ms[a], NK[b][0], NK[b][1], (a + b + (size_t)kind) % 2 == 0);
}

static void test_qmat_bwd_fast_matches_ref(void) {
    static const int64_t Ms[] = {1, 2, 7, 33, 100};
    static const int64_t NK[][2] = {{1, 1}, {5, 3}, {17, 33}, {33, 64}, {65, 130}, {300, 40}, {37, 300}, {600, 9}};
    for (int kind = 0; kind < 3; kind++)
        for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
            for (size_t b = 0; b < sizeof NK / sizeof NK[0]; b++)
                check_qmat_bwd_case(kind, Ms[a], NK[b][0], NK[b][1]);
}

/* Calls big enough to be split over threads, with 4 threads whatever the machine: the int8
 * GEMM over N (few rows) and over M, the float GEMMs over panels of W and over rows. The
 * split must not change a bit. */
static void test_thread_splits(void) {
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    omp_set_num_threads(4);
#endif
    check_s8_case(3, 1000, 1400, -127, 127, -127, 127, 0, 0, 1);  /* 4.2M MACs: split over N */
    check_s8_case(300, 40, 1100, -127, 127, -127, 127, 1, 0, 0);  /* split over M */
    for (int kind = 0; kind < 2; kind++) {
        check_qmat_fwd_case(kind, 2, 600, 2000, 1);  /* 3 panels of 256 rows over threads */
        check_qmat_fwd_case(kind, 300, 100, 300, 0); /* one panel: split over M */
        check_qmat_bwd_case(kind, 2, 2000, 600);     /* 3 chunks of dx columns */
        check_qmat_bwd_case(kind, 300, 300, 100);    /* one chunk: split over M */
        check_qmat_fwd_case(kind, 300, 600, 300, 1); /* 3 panels, 4 threads, many rows: split over M */
        check_qmat_bwd_case(kind, 300, 300, 600);    /* 3 chunks, 4 threads, many rows: split over M */
    }
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
}

/* M = 0 and K = 0: nothing written, and bias alone. */
static void test_empty_shapes(void) {
    test_qmat t = make_s8(3, 0, -1, 1);
    float bias[3] = {1.5f, -2.0f, 0.25f}, y[6], yr[6];
    const float x[1] = {0};
    mmt_ops_ref()->qmat_matmul_fwd(yr, x, &t.w, bias, 2);
    fast_ops()->qmat_matmul_fwd(y, x, &t.w, bias, 2);
    CHECK(memcmp(y, yr, sizeof y) == 0 && y[4] == -2.0f);
    const int8_t xq[1] = {0};
    const float xs[2] = {1.0f, 1.0f};
    fast_ops()->s8_matmul_fwd(y, xq, xs, &t.w, bias, 2);
    CHECK(y[0] == 1.5f && y[5] == 0.25f);
    float untouched = 42.0f;
    fast_ops()->s8_matmul_fwd(&untouched, xq, xs, &t.w, bias, 0);
    fast_ops()->qmat_matmul_fwd(&untouched, x, &t.w, bias, 0);
    CHECK(untouched == 42.0f);
    qmat_free(&t);
}

int main(void) {
    rng_state = 0x51ed270b4c3a1f95ull; /* this file's stream of random inputs */
    mmt_log_set_level(MMT_LOG_SILENT);
    find_qgemm_kernels();
    RUN(test_pack_layout);
    RUN(test_quantize_ref_rule);
    RUN(test_dequant_ref_formula);
    for (int t = 0; t < FAST_TABLES; t++) {
        if (!fast_table_use(t)) continue;
        RUN(test_quantize_fast_matches_ref);
        RUN(test_s8_matmul_fast_matches_ref);
        RUN(test_s8_matmul_extremes);
        RUN(test_s8_pipeline_close_to_float);
        RUN(test_dequant_fast_matches_ref);
        RUN(test_qmat_fwd_fast_matches_ref);
        RUN(test_qmat_bwd_fast_matches_ref);
        RUN(test_empty_shapes);
        RUN(test_thread_splits);
    }
    return check_summary();
}
