/*
 * scan.c — picks the search-scan kernels for this CPU (see scan.h). The AVX2 table takes its
 * dot products from cpu/scan_avx2.c and the reference's quantizer and top-k, which run once
 * per index write or per search and gain nothing from SIMD.
 */
#include "ops/scan.h"

#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"

/* cpu/scan_avx2.c, built with -mavx2 -mfma: call only after mmt_cpu_detect reported AVX2. */
void scan_dot_f32_avx2(float *scores, const float *rows, const float *q, const int64_t *which, int64_t n,
                       int64_t D);
void scan_dot_i8_avx2(float *scores, const int8_t *rows, const float *scales, const int8_t *q, float q_scale,
                      const int64_t *which, int64_t n, int64_t D);

/* ref/scan_ref.c */
void scan_quantize_i8_ref(int8_t *q, float *scales, const float *x, int64_t N, int64_t D);
void scan_top_k_ref(int64_t *best, const float *scores, int64_t n, int64_t k);

static const mmt_scan_ops SCAN_AVX2 = {
    .name = "avx2",
    .dot_f32 = scan_dot_f32_avx2,
    .dot_i8 = scan_dot_i8_avx2,
    .quantize_i8 = scan_quantize_i8_ref,
    .top_k = scan_top_k_ref,
};

const mmt_scan_ops *mmt_scan_avx2(void) { return mmt_cpu_detect().avx2 ? &SCAN_AVX2 : NULL; }

const mmt_scan_ops *mmt_scan_best(void) {
    const char *forced = getenv("MMT_KERNELS");
    if (forced && !strcmp(forced, "ref")) return mmt_scan_ref();
    const mmt_scan_ops *fast = mmt_scan_avx2();
    return fast ? fast : mmt_scan_ref();
}
