/*
 * matmul_ref.c — reference y = x @ w^T + bias (nn.Linear), one dot product per output, and
 * its backward (dx, dw, dbias).
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

/* Backward of y = x @ w^T + bias. Each gradient is summed in float first and then added to
 * its output once, so a pre-filled output only sees one extra rounding. The three products
 * walk contiguous rows: dx row i is a sum of w rows, dw row j a sum of x rows. */
void matmul_bwd_ref(float *dx,          // (M, K) or NULL
                    float *dw,          // (N, K) or NULL
                    float *dbias,       // (N) or NULL
                    const float *dy,    // (M, N)
                    const float *x,     // (M, K)
                    const float *w,     // (N, K)
                    int64_t M, int64_t K, int64_t N) {
    if (dx) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t k = 0; k < K; k++) {
                float sum = 0.0f;
                for (int64_t j = 0; j < N; j++) sum += dy[i * N + j] * w[j * K + k];
                dx[i * K + k] += sum;
            }
    }
    if (dw) {
        for (int64_t j = 0; j < N; j++)
            for (int64_t k = 0; k < K; k++) {
                float sum = 0.0f;
                for (int64_t i = 0; i < M; i++) sum += dy[i * N + j] * x[i * K + k];
                dw[j * K + k] += sum;
            }
    }
    if (dbias) {
        for (int64_t j = 0; j < N; j++) {
            float sum = 0.0f;
            for (int64_t i = 0; i < M; i++) sum += dy[i * N + j];
            dbias[j] += sum;
        }
    }
}
