/*
 * layernorm_ref.c — reference LayerNorm over the last dimension (torch.nn.functional.layer_norm).
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
