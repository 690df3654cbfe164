/*
 * test_scan.c — the search-scan kernels (ops/scan.h): the AVX2 table against the reference.
 *
 * The int8 dot must equal the reference bit for bit (its integer sums are exact in any
 * order; with unit scales the score is the sum itself), for every int8 value including -128
 * and for widths that exercise every tail of the vector loops. The float32 dot is compared
 * with a tolerance of 1e-5 relative to the row's |x|.|q| (another summation order). top_k
 * and quantize_i8 are checked against their definitions.
 */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "ops/scan.h"
#include "rng.h"


static int8_t random_i8(void) { return (int8_t)(rng_next() & 0xff); }

static float random_f32(void) { return (float)((double)(rng_next() >> 11) * 0x1.0p-53 * 2 - 1); }

static void test_dot_i8_exact(void) {
    const mmt_scan_ops *ref = mmt_scan_ref(), *fast = mmt_scan_avx2();
    if (!fast) check_skip("no AVX2 on this CPU");
    const int64_t widths[] = {1, 15, 16, 17, 31, 32, 33, 64, 100, 512, 777};
    for (size_t w = 0; w < sizeof widths / sizeof *widths; w++) {
        int64_t D = widths[w], N = 300;
        int8_t *rows = malloc((size_t)(N * D)), *q = malloc((size_t)D);
        float *ones = malloc((size_t)N * sizeof(float)), *a = malloc((size_t)N * sizeof(float)),
              *b = malloc((size_t)N * sizeof(float));
        for (int64_t i = 0; i < N * D; i++) rows[i] = random_i8();
        for (int64_t j = 0; j < D; j++) q[j] = random_i8();
        for (int64_t j = 0; j < D && j < 3; j++) rows[j] = -128, q[j] = -128; /* the extreme product */
        for (int64_t i = 0; i < N; i++) ones[i] = 1.0f;
        ref->dot_i8(a, rows, ones, q, 1.0f, NULL, N, D);
        fast->dot_i8(b, rows, ones, q, 1.0f, NULL, N, D);
        CHECK_MSG(memcmp(a, b, (size_t)N * sizeof(float)) == 0, "D=%lld: integer sums differ", (long long)D);
        /* a subset of rows with real scales: the same float operations in the same order */
        int64_t which[5] = {0, 7, 8, 150, N - 1};
        float scales[300];
        for (int64_t i = 0; i < N; i++) scales[i] = (float)(i + 1) / 1000.0f;
        ref->dot_i8(a, rows, scales, q, 0.0123f, which, 5, D);
        fast->dot_i8(b, rows, scales, q, 0.0123f, which, 5, D);
        CHECK_MSG(memcmp(a, b, 5 * sizeof(float)) == 0, "D=%lld: scaled scores differ", (long long)D);
        free(rows);
        free(q);
        free(ones);
        free(a);
        free(b);
    }
}

static void test_dot_f32_close(void) {
    const mmt_scan_ops *ref = mmt_scan_ref(), *fast = mmt_scan_avx2();
    if (!fast) check_skip("no AVX2 on this CPU");
    const int64_t widths[] = {1, 7, 8, 9, 31, 32, 33, 512, 1000};
    for (size_t w = 0; w < sizeof widths / sizeof *widths; w++) {
        int64_t D = widths[w], N = 400; /* N * D above the OpenMP threshold for the wide ones */
        float *rows = malloc((size_t)(N * D) * sizeof(float)), *q = malloc((size_t)D * sizeof(float));
        float *a = malloc((size_t)N * sizeof(float)), *b = malloc((size_t)N * sizeof(float));
        for (int64_t i = 0; i < N * D; i++) rows[i] = random_f32();
        for (int64_t j = 0; j < D; j++) q[j] = random_f32();
        ref->dot_f32(a, rows, q, NULL, N, D);
        fast->dot_f32(b, rows, q, NULL, N, D);
        for (int64_t i = 0; i < N; i++) CHECK_NEAR(a[i], b[i], 1e-5 * (double)D);
        int64_t which[3] = {N - 1, 2, 2};
        fast->dot_f32(a, rows, q, which, 3, D);
        CHECK(a[0] == b[N - 1] && a[1] == b[2] && a[2] == b[2]); /* a row scores the same wherever it is asked */
        free(rows);
        free(q);
        free(a);
        free(b);
    }
}

static void test_top_k(void) {
    const mmt_scan_ops *ref = mmt_scan_ref();
    float scores[] = {0.5f, 0.9f, NAN, 0.9f, -1.0f, 0.7f, 0.5f};
    int64_t best[7];
    ref->top_k(best, scores, 7, 7);
    int64_t want[7] = {1, 3, 5, 0, 6, 4, 2}; /* ties by position, NaN last */
    CHECK(memcmp(best, want, sizeof want) == 0);
    ref->top_k(best, scores, 7, 2);
    CHECK(best[0] == 1 && best[1] == 3);
    /* against a full sort on random scores with many ties */
    enum { N = 5000, K = 37 };
    static float s[N];
    static int64_t got[K];
    for (int i = 0; i < N; i++) s[i] = (float)(rng_next() % 100);
    ref->top_k(got, s, N, K);
    int64_t at = 0;
    for (int v = 99; v >= 0 && at < K; v--)
        for (int i = 0; i < N && at < K; i++)
            if (s[i] == (float)v) CHECK(got[at++] == i);
}

static void test_quantize(void) {
    const mmt_scan_ops *ref = mmt_scan_ref();
    float x[2][4] = {{0.5f, -1.0f, 0.25f, 0.0f}, {0, 0, 0, 0}};
    int8_t q[8];
    float scales[2];
    ref->quantize_i8(q, scales, &x[0][0], 2, 4);
    CHECK_NEAR(scales[0], 1.0 / 127, 1e-9);
    CHECK(q[0] == 64 && q[1] == -127 && q[2] == 32 && q[3] == 0); /* 63.5 rounds to even */
    CHECK(scales[1] == 0 && q[4] == 0 && q[7] == 0);
}

int main(void) {
    RUN(test_top_k);
    RUN(test_quantize);
    RUN(test_dot_i8_exact);
    RUN(test_dot_f32_close);
    return check_summary();
}
