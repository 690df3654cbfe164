/*
 * train_ref.c — reference optimizer ops: the AdamW update of one tensor, the sum of squares
 * behind the global gradient norm, scaling in place, and the search for a non-finite value.
 *
 * adamw_step_ref is torch.optim.AdamW's single-tensor path (torch/optim/adam.py,
 * _single_tensor_adam, decoupled_weight_decay=True) in float32 with torch's two fused
 * multiply-adds, lerp_ (ATen Lerp.h) and addcmul_, written as fmaf; see train/adamw.c for
 * how the scalars are rounded. This file is built for baseline x86-64, where fmaf is a libm
 * call: exactly rounded, like the instruction, so the bits are those of any FMA build. No
 * product here feeds an addition except through fmaf, so a compiler allowed to contract
 * a*b+c has nothing to fuse; the decay is a pass of its own for that reason (torch stores
 * p * decay before the update adds to it).
 */
#include <math.h>

#include "ops/ops.h"
#include "ops/ref/ops_ref.h"

/* torch.maximum: a NaN in either operand wins. */
static float max_nan(float a, float b) { return (a != a || a >= b) ? a : b; }

void adamw_step_ref(float *p,       // (n) parameter, updated
                    const float *g, // (n) gradient
                    float *m,       // (n) first moment, updated
                    float *v,       // (n) second moment, updated
                    float *vmax,    // (n) running max of v (amsgrad), or NULL
                    int64_t n, const mmt_adamw_scalars *s) {
    if (s->apply_decay)
        for (int64_t i = 0; i < n; i++) p[i] = p[i] * s->decay;
    int lerp_small = fabsf(s->lerp_weight) < 0.5f;
    for (int64_t i = 0; i < n; i++) {
        float grad = g[i];
        /* Lerp.h: small weight -> self + w*(end - self), else end - (end - self)*(1 - w),
         * both as one fmadd. */
        float diff = grad - m[i];
        float avg = lerp_small ? fmaf(s->lerp_weight, diff, m[i])
                               : fmaf(s->lerp_weight - 1.0f, diff, grad);
        float sq = fmaf(s->one_minus_beta2 * grad, grad, v[i] * s->beta2);
        m[i] = avg;
        v[i] = sq;
        if (vmax) {
            sq = max_nan(vmax[i], sq);
            vmax[i] = sq;
        }
        float denom = sqrtf(sq) / s->bias_correction2_sqrt + s->eps;
        p[i] = p[i] + (s->neg_step * avg) / denom;
    }
}

double sum_squares_ref(const float *x, // (n)
                       int64_t n) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)x[i] * x[i];
    return sum;
}

void scale_ref(float *x, // (n)
               float factor, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * factor;
}

int64_t find_nonfinite_ref(const float *x, // (n)
                           int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}
