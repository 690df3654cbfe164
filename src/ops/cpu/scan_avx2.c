/*
 * scan_avx2.c — the AVX2 search-scan kernels (see ops/scan.h), tested against scan_ref.c.
 *
 * Both scans are bound by memory bandwidth once the rows outgrow the caches (a 512-wide row
 * is 2 KiB in float32, 512 bytes in int8), so the aim is simply to keep loads wide and let
 * OpenMP spread the rows over cores. The int8 dot widens both sides to int16 and uses
 * vpmaddwd, exact for every int8 value (vpmaddubsw would be faster in the core but needs an
 * unsigned operand and saturates, which -128 would break).
 */
#include <immintrin.h>

#include "ops/cpu/cpu_ops.h"
#include "ops/scan.h"

/* Rows scanned per OpenMP chunk: large enough that a chunk is worth a scheduling step. */
#define SCAN_CHUNK 256

static float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

static int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

static float dot_f32_row(const float *row, const float *q, int64_t D) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t j = 0;
    for (; j + 32 <= D; j += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + j), _mm256_loadu_ps(q + j), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(row + j + 8), _mm256_loadu_ps(q + j + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(row + j + 16), _mm256_loadu_ps(q + j + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(row + j + 24), _mm256_loadu_ps(q + j + 24), a3);
    }
    for (; j + 8 <= D; j += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + j), _mm256_loadu_ps(q + j), a0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; j < D; j++) sum += row[j] * q[j];
    return sum;
}

void scan_dot_f32_avx2(float *scores, const float *rows, const float *q, const int64_t *which, int64_t n,
                       int64_t D) {
    int parallel = n * D >= CPU_PARALLEL_MIN_ELEMENTS;
    (void)parallel;
    MMT_OMP("omp parallel for schedule(static, SCAN_CHUNK) if(parallel)")
    for (int64_t i = 0; i < n; i++) scores[i] = dot_f32_row(rows + (which ? which[i] : i) * D, q, D);
}

static int32_t dot_i8_row(const int8_t *row, const int8_t *q, int64_t D) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0;
    int64_t j = 0;
    for (; j + 32 <= D; j += 32) {
        __m256i r0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(row + j)));
        __m256i r1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(row + j + 16)));
        __m256i q0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(q + j)));
        __m256i q1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(q + j + 16)));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(r0, q0));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(r1, q1));
    }
    for (; j + 16 <= D; j += 16) {
        __m256i r0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(row + j)));
        __m256i q0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(q + j)));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(r0, q0));
    }
    int32_t sum = hsum_epi32(_mm256_add_epi32(a0, a1));
    for (; j < D; j++) sum += (int32_t)row[j] * (int32_t)q[j];
    return sum;
}

void scan_dot_i8_avx2(float *scores, const int8_t *rows, const float *scales, const int8_t *q, float q_scale,
                      const int64_t *which, int64_t n, int64_t D) {
    int parallel = n * D >= CPU_PARALLEL_MIN_ELEMENTS;
    (void)parallel;
    MMT_OMP("omp parallel for schedule(static, SCAN_CHUNK) if(parallel)")
    for (int64_t i = 0; i < n; i++) {
        int64_t r = which ? which[i] : i;
        scores[i] = (float)dot_i8_row(rows + r * D, q, D) * scales[r] * q_scale;
    }
}
