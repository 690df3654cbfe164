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

/* The reference packs nothing: matmul_fwd_packed is matmul_fwd on w. */
int64_t matmul_pack_ref(float *dst, const float *w, int64_t K, int64_t N) {
    (void)dst, (void)w, (void)K, (void)N;
    return 0;
}

void matmul_fwd_packed_ref(float *y, const float *x, const float *w, const float *panels,
                           const float *bias, int64_t M, int64_t K, int64_t N) {
    (void)panels;
    matmul_fwd_ref(y, x, w, bias, M, K, N);
}

/* Backward of y = x @ w^T + bias, as sums of scaled rows accumulated straight into the
 * outputs: dx row i gathers w rows, dw row j gathers x rows. The innermost loops walk
 * contiguous rows, so even the reference runs the CLIP shapes in about a second. */
void matmul_bwd_ref(float *dx,          // (M, K) or NULL
                    float *dw,          // (N, K) or NULL
                    float *dbias,       // (N) or NULL
                    const float *dy,    // (M, N)
                    const float *x,     // (M, K)
                    const float *w,     // (N, K)
                    int64_t M, int64_t K, int64_t N) {
    if (dx) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                const float g = dy[i * N + j];
                for (int64_t k = 0; k < K; k++) dx[i * K + k] += g * w[j * K + k];
            }
    }
    if (dw) {
        for (int64_t j = 0; j < N; j++)
            for (int64_t i = 0; i < M; i++) {
                const float g = dy[i * N + j];
                for (int64_t k = 0; k < K; k++) dw[j * K + k] += g * x[i * K + k];
            }
    }
    if (dbias) {
        for (int64_t j = 0; j < N; j++) {
            double sum = 0.0; /* in double: the oracle for the fast column sums */
            for (int64_t i = 0; i < M; i++) sum += dy[i * N + j];
            dbias[j] += (float)sum;
        }
    }
}
