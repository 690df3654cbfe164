/*
 * layernorm_ref.c — reference LayerNorm over the last dimension (torch.nn.functional.layer_norm)
 * and its backward.
 *
 * Mean and the biased variance are accumulated in double with two passes (mean first, then
 * squared deviations) so the oracle itself carries no cancellation error. weight and bias may
 * be NULL, which means no affine transform (elementwise_affine=False).
 */
#include <math.h>

#include "ops/ref/ops_ref.h"

void layernorm_fwd_ref(float *y,             // (R, C)
                       float *mean,          // (R) or NULL
                       float *rstd,          // (R) or NULL
                       const float *x,       // (R, C)
                       const float *weight,  // (C) or NULL
                       const float *bias,    // (C) or NULL
                       int64_t R, int64_t C, float eps) {
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        double sum = 0.0;
        for (int64_t c = 0; c < C; c++) sum += xr[c];
        double mu = C > 0 ? sum / (double)C : 0.0;
        double sq = 0.0;
        for (int64_t c = 0; c < C; c++) sq += (xr[c] - mu) * (xr[c] - mu);
        double var = C > 0 ? sq / (double)C : 0.0;
        double rs = 1.0 / sqrt(var + (double)eps);
        for (int64_t c = 0; c < C; c++) {
            double v = (xr[c] - mu) * rs;
            if (weight) v *= weight[c];
            if (bias) v += bias[c];
            yr[c] = (float)v;
        }
        if (mean) mean[r] = (float)mu;
        if (rstd) rstd[r] = (float)rs;
    }
}

/* Backward with the saved mean and rstd. With xhat = (x - mean) * rstd and g = dy * weight
 * (g = dy without affine), the input gradient is
 *     dx = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)),
 * the standard result for a normalization whose mean and variance depend on x (as in
 * llm.c's layernorm_backward). dweight and dbias are the column sums of dy * xhat and dy;
 * they are computed whenever asked for, so a forward with a bias but no weight can still get
 * dbias. All sums are accumulated in double. */
void layernorm_bwd_ref(float *dx,            // (R, C) or NULL
                       float *dweight,       // (C) or NULL
                       float *dbias,         // (C) or NULL
                       const float *dy,      // (R, C)
                       const float *x,       // (R, C)
                       const float *mean,    // (R)
                       const float *rstd,    // (R)
                       const float *weight,  // (C) or NULL
                       int64_t R, int64_t C) {
    for (int64_t r = 0; dx && r < R; r++) {
        const float *xr = x + r * C, *dyr = dy + r * C;
        const double mu = mean[r], rs = rstd[r];
        double g_sum = 0.0, gx_sum = 0.0;
        for (int64_t c = 0; c < C; c++) {
            double g = weight ? (double)dyr[c] * weight[c] : dyr[c];
            g_sum += g;
            gx_sum += g * (xr[c] - mu) * rs;
        }
        const double g_mean = g_sum / (double)C, gx_mean = gx_sum / (double)C;
        for (int64_t c = 0; c < C; c++) {
            double g = weight ? (double)dyr[c] * weight[c] : dyr[c];
            double xhat = (xr[c] - mu) * rs;
            dx[r * C + c] += (float)(rs * (g - g_mean - xhat * gx_mean));
        }
    }
    /* Column sums over all rows, in double, added once. */
    for (int64_t c = 0; (dweight || dbias) && c < C; c++) {
        double w_sum = 0.0, b_sum = 0.0;
        for (int64_t r = 0; r < R; r++) {
            double g = dy[r * C + c];
            w_sum += g * (x[r * C + c] - (double)mean[r]) * rstd[r];
            b_sum += g;
        }
        if (dweight) dweight[c] += (float)w_sum;
        if (dbias) dbias[c] += (float)b_sum;
    }
}
