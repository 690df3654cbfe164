/*
 * sgemm_v1_naive.c — version 1: the reference loop (same as src/ops/ref/matmul_ref.c).
 * One float dot product per output, x row and w row both contiguous. The baseline, and the
 * oracle the timing program checks every other version against.
 */
#include "sgemm_versions.h"

void sgemm_v1(float *y, const float *x, const float *w, const float *bias, int64_t M, int64_t K,
              int64_t N) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float sum = 0.0f;
            for (int64_t k = 0; k < K; k++) sum += x[i * K + k] * w[j * K + k];
            y[i * N + j] = bias ? sum + bias[j] : sum;
        }
}
