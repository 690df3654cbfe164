/*
 * activation_ref.c — reference elementwise ops: exact GELU, QuickGELU, add.
 *
 * The activations are evaluated in double and rounded once, so the oracle is correctly
 * rounded up to libm's erf/exp accuracy.
 * GELU: torch.nn.GELU() (approximate='none'), x * 0.5 * (1 + erf(x / sqrt 2)).
 * QuickGELU: transformers.activations.QuickGELUActivation, x * sigmoid(1.702 x), which the
 * OpenAI CLIP checkpoints use (hidden_act = "quick_gelu").
 */
#include <math.h>

#include "ops/ref/ops_ref.h"

void gelu_fwd_ref(float *y, const float *x, int64_t n) {  // (n), (n)
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        y[i] = (float)(0.5 * v * (1.0 + erf(v * 0.70710678118654752440)));
    }
}

void quick_gelu_fwd_ref(float *y, const float *x, int64_t n) {  // (n), (n)
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        y[i] = (float)(v / (1.0 + exp(-1.702 * v)));
    }
}

void add_fwd_ref(float *y, const float *a, const float *b, int64_t n) {  // (n), (n), (n)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
