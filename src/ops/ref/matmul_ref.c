/*
 * matmul_ref.c — reference y = x @ w^T + bias (nn.Linear), one dot product per output.
 *
 * Both x rows and w rows are contiguous along K in the nn.Linear layout, so the innermost
 * loop walks two contiguous rows. Accumulation is in float, left to right, like a naive
 * PyTorch CPU loop; tests compare it with a double-precision sum on small cases.
 */
#include "ops/ref/ops_ref.h"

void matmul_fwd_ref(float *y,           // (M, N)
                    const float *x,     // (M, K)
                    const float *w,     // (N, K)
                    const float *bias,  // (N) or NULL
                    int64_t M, int64_t K, int64_t N) {
    for (int64_t i = 0; i < M; i++) {
        const float *xi = x + i * K;
        for (int64_t j = 0; j < N; j++) {
            const float *wj = w + j * K;
            float sum = 0.0f;
            for (int64_t k = 0; k < K; k++) sum += xi[k] * wj[k];
            y[i * N + j] = bias ? sum + bias[j] : sum;
        }
    }
}
