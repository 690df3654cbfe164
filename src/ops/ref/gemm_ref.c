/*
 * gemm_ref.c — reference general matrix product, c = alpha * op(a) @ op(b) + beta * c.
 *
 * The BLAS sgemm contract in row-major form (semantics in ops.h): op() transposes a stored
 * matrix when its flag is set, lda/ldb/ldc are row strides as stored. Like BLAS, beta == 0
 * never reads c (so NaN or garbage there is ignored) and alpha == 0 never reads a or b.
 * One float dot product per output, summed over k in order, as matmul_fwd_ref does.
 */
#include "ops/ref/ops_ref.h"

void gemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
              const float *a,  // (M, K) with row stride lda, or (K, M) when ta
              int64_t lda,
              const float *b,  // (K, N) with row stride ldb, or (N, K) when tb
              int64_t ldb, float beta,
              float *c,  // (M, N) with row stride ldc
              int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float sum = 0.0f;
            for (int64_t k = 0; alpha != 0.0f && k < K; k++) {
                float av = ta ? a[k * lda + i] : a[i * lda + k];
                float bv = tb ? b[j * ldb + k] : b[k * ldb + j];
                sum += av * bv;
            }
            float *cij = c + i * ldc + j;
            *cij = beta == 0.0f ? alpha * sum : alpha * sum + beta * *cij;
        }
}
