/*
 * sgemm_v2_dot_avx2.c — version 2: AVX2 dot products, no packing.
 *
 * In the nn.Linear layout both operands are contiguous along K, so a 4-row x 3-column block
 * of outputs keeps 12 ymm partial sums (8 k at a time) and reduces them horizontally at the
 * end: 7 loads per 12 FMAs, nothing copied. OpenMP over row blocks. Tails (M % 4, N % 3,
 * K % 8) fall back to scalar code. The question it answers: how far does a kernel get
 * without packing?
 */
#include <immintrin.h>

#include "sgemm_versions.h"

static float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static float dot_scalar(const float *a, const float *b, int64_t k0, int64_t K) {
    float s = 0.0f;
    for (int64_t k = k0; k < K; k++) s += a[k] * b[k];
    return s;
}

void sgemm_v2(float *y, const float *x, const float *w, const float *bias, int64_t M, int64_t K,
              int64_t N) {
    const int64_t K8 = K / 8 * 8;
#pragma omp parallel for schedule(static)
    for (int64_t i0 = 0; i0 < M; i0 += 4) {
        int64_t mr = M - i0 < 4 ? M - i0 : 4;
        for (int64_t j0 = 0; j0 < N; j0 += 3) {
            int64_t nr = N - j0 < 3 ? N - j0 : 3;
            if (mr < 4 || nr < 3) {
                for (int64_t i = i0; i < i0 + mr; i++)
                    for (int64_t j = j0; j < j0 + nr; j++)
                        y[i * N + j] = dot_scalar(x + i * K, w + j * K, 0, K) + (bias ? bias[j] : 0.0f);
                continue;
            }
            __m256 acc[4][3];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 3; j++) acc[i][j] = _mm256_setzero_ps();
            for (int64_t k = 0; k < K8; k += 8) {
                __m256 wv[3];
                for (int j = 0; j < 3; j++) wv[j] = _mm256_loadu_ps(w + (j0 + j) * K + k);
                for (int i = 0; i < 4; i++) {
                    __m256 xv = _mm256_loadu_ps(x + (i0 + i) * K + k);
                    for (int j = 0; j < 3; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
                }
            }
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 3; j++)
                    y[(i0 + i) * N + j0 + j] =
                        hsum(acc[i][j]) + dot_scalar(x + (i0 + i) * K, w + (j0 + j) * K, K8, K) +
                        (bias ? bias[j0 + j] : 0.0f);
        }
    }
}
