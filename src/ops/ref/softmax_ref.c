/*
 * softmax_ref.c — reference row softmax, max-subtracted so exp never overflows, and its
 * backward.
 *
 * y may alias x: each element is read before the same index is written.
 */
#include <math.h>

#include "ops/ref/ops_ref.h"

void softmax_fwd_ref(float *y,        // (R, C)
                     const float *x,  // (R, C)
                     int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float max = -INFINITY;
        for (int64_t c = 0; c < C; c++) max = xr[c] > max ? xr[c] : max;
        double sum = 0.0;
        for (int64_t c = 0; c < C; c++) {
            yr[c] = expf(xr[c] - max);
            sum += yr[c];
        }
        float inv = (float)(1.0 / sum);
        for (int64_t c = 0; c < C; c++) yr[c] *= inv;
    }
}

/* Backward of y = softmax(x) per row: dx += y * (dy - sum_j dy_j y_j), the product of the
 * softmax Jacobian diag(y) - y y^T with dy. The row dot product is accumulated in double. */
void softmax_bwd_ref(float *dx,        // (R, C)
                     const float *dy,  // (R, C)
                     const float *y,   // (R, C), the forward's output
                     int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++) {
        const float *yr = y + r * C, *dyr = dy + r * C;
        double dot = 0.0;
        for (int64_t c = 0; c < C; c++) dot += (double)dyr[c] * yr[c];
        for (int64_t c = 0; c < C; c++) dx[r * C + c] += (float)(yr[c] * (dyr[c] - dot));
    }
}
