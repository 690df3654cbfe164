/*
 * activation_ref.c — reference elementwise ops: exact GELU, QuickGELU, add; and the
 * derivatives of the two activations.
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

/* d/dx [x Phi(x)] = Phi(x) + x phi(x), with Phi the standard normal CDF
 * 0.5 (1 + erf(x / sqrt 2)) and phi its density exp(-x^2 / 2) / sqrt(2 pi); in double. */
void gelu_bwd_ref(float *dx, const float *dy, const float *x, int64_t n) {  // (n) each
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        double cdf = 0.5 * (1.0 + erf(v * 0.70710678118654752440));
        double pdf = exp(-0.5 * v * v) * 0.39894228040143267794;
        dx[i] += (float)(dy[i] * (cdf + v * pdf));
    }
}

/* d/dx [x s(a x)] = s + a x s (1 - s) with s = sigmoid(a x), a = 1.702; in double, where
 * s saturates to exactly 0 or 1 for huge |x| and the formula then gives 0 or 1. */
void quick_gelu_bwd_ref(float *dx, const float *dy, const float *x, int64_t n) {  // (n) each
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        double s = 1.0 / (1.0 + exp(-1.702 * v));
        dx[i] += (float)(dy[i] * (s + 1.702 * v * s * (1.0 - s)));
    }
}

/* tanh in float32 (libm's tanhf, as torch.tanh on float tensors), for PEFT's PrefixEncoder
 * (peft/prompt.c). */
void tanh_fwd_ref(float *y,       // (n), may alias x
                  const float *x, // (n)
                  int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}

/* d tanh(x) / dx = 1 - tanh(x)^2, from the forward's output y. */
void tanh_bwd_ref(float *dx,       // (n), accumulated
                  const float *dy, // (n)
                  const float *y,  // (n)
                  int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}
