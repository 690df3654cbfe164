/*
 * norm_avx2.c — AVX2 row-wise LayerNorm and softmax.
 *
 * Both work one row at a time with 8-lane float accumulators; rows are split over OpenMP
 * threads when the tensor is large. LayerNorm uses two passes (mean, then squared deviations)
 * like the reference, so there is no E[x^2] - E[x]^2 cancellation. softmax_row_avx2 also
 * serves attention (a scale and a causal length), so the two paths share one exp.
 */
#include <math.h>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/vmath_avx2.h"

static float row_sum(const float *x, int64_t C) {
    __m256 s = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= C; c += 8) s = _mm256_add_ps(s, _mm256_loadu_ps(x + c));
    if (c < C) s = _mm256_add_ps(s, load_partial_avx2(x + c, C - c, 0.0f));
    return hsum_avx2(s);
}

static float row_sq_dev(const float *x, int64_t C, float mean) {
    const __m256 m = _mm256_set1_ps(mean);
    __m256 s = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= C; c += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + c), m);
        s = _mm256_fmadd_ps(d, d, s);
    }
    if (c < C) { /* pad with the mean so the padding contributes 0 */
        __m256 d = _mm256_sub_ps(load_partial_avx2(x + c, C - c, mean), m);
        s = _mm256_fmadd_ps(d, d, s);
    }
    return hsum_avx2(s);
}

static inline __m256 layernorm_lanes(__m256 x, __m256 m, __m256 rs, const float *weight,
                                     const float *bias, int64_t c, int64_t n) {
    __m256 v = _mm256_mul_ps(_mm256_sub_ps(x, m), rs);
    if (weight) v = _mm256_mul_ps(v, n == 8 ? _mm256_loadu_ps(weight + c)
                                            : load_partial_avx2(weight + c, n, 0.0f));
    if (bias) v = _mm256_add_ps(v, n == 8 ? _mm256_loadu_ps(bias + c)
                                          : load_partial_avx2(bias + c, n, 0.0f));
    return v;
}

void layernorm_fwd_avx2(float *y,             // (R, C)
                        float *mean,          // (R) or NULL
                        float *rstd,          // (R) or NULL
                        const float *x,       // (R, C)
                        const float *weight,  // (C) or NULL
                        const float *bias,    // (C) or NULL
                        int64_t R, int64_t C, float eps) {
    MMT_OMP("omp parallel for schedule(static) if(R * C >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float mu = C > 0 ? row_sum(xr, C) / (float)C : 0.0f;
        float var = C > 0 ? row_sq_dev(xr, C, mu) / (float)C : 0.0f;
        float rs = 1.0f / sqrtf(var + eps);
        const __m256 m = _mm256_set1_ps(mu), s = _mm256_set1_ps(rs);
        int64_t c = 0;
        for (; c + 8 <= C; c += 8)
            _mm256_storeu_ps(yr + c, layernorm_lanes(_mm256_loadu_ps(xr + c), m, s, weight,
                                                     bias, c, 8));
        if (c < C)
            store_partial_avx2(yr + c, C - c,
                               layernorm_lanes(load_partial_avx2(xr + c, C - c, 0.0f), m, s,
                                               weight, bias, c, C - c));
        if (mean) mean[r] = mu;
        if (rstd) rstd[r] = rs;
    }
}

void softmax_row_avx2(float *y, const float *x, int64_t n, int64_t C, float scale) {
    __m256 mx = _mm256_set1_ps(-INFINITY);
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(x + c));
    if (c < n) mx = _mm256_max_ps(mx, load_partial_avx2(x + c, n - c, -INFINITY));
    /* exp((x - max) * scale) with scale > 0, so max(x * scale) = max(x) * scale. */
    const __m256 m = _mm256_set1_ps(hmax_avx2(mx)), s = _mm256_set1_ps(scale);
    __m256 sum = _mm256_setzero_ps();
    for (c = 0; c + 8 <= n; c += 8) {
        __m256 e = exp_avx2(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), m), s));
        sum = _mm256_add_ps(sum, e);
        _mm256_storeu_ps(y + c, e);
    }
    if (c < n) { /* padding lanes hold -inf, whose exp is 0 */
        __m256 e = exp_avx2(
            _mm256_mul_ps(_mm256_sub_ps(load_partial_avx2(x + c, n - c, -INFINITY), m), s));
        sum = _mm256_add_ps(sum, e);
        store_partial_avx2(y + c, n - c, e);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / hsum_avx2(sum));
    for (c = 0; c + 8 <= n; c += 8) _mm256_storeu_ps(y + c, _mm256_mul_ps(_mm256_loadu_ps(y + c), inv));
    for (; c < n; c++) y[c] *= _mm256_cvtss_f32(inv);
    for (c = n; c < C; c++) y[c] = 0.0f;
}

void softmax_fwd_avx2(float *y,        // (R, C)
                      const float *x,  // (R, C)
                      int64_t R, int64_t C) {
    MMT_OMP("omp parallel for schedule(static) if(R * C >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t r = 0; r < R; r++) softmax_row_avx2(y + r * C, x + r * C, C, C, 1.0f);
}
