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

/* ---- backward ------------------------------------------------------------------------ */

void softmax_bwd_row_avx2(float *dx, const float *dy, const float *y, int64_t n, int64_t C,
                          float scale, int accumulate) {
    __m256 acc = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= n; c += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(dy + c), _mm256_loadu_ps(y + c), acc);
    if (c < n)
        acc = _mm256_fmadd_ps(load_partial_avx2(dy + c, n - c, 0.0f),
                              load_partial_avx2(y + c, n - c, 0.0f), acc);
    const __m256 dot = _mm256_set1_ps(hsum_avx2(acc)), s = _mm256_set1_ps(scale);
    for (c = 0; c + 8 <= n; c += 8) {
        /* dy and y are read before dx is written, so dx may alias dy (attention does). */
        __m256 g = _mm256_mul_ps(_mm256_loadu_ps(y + c), _mm256_sub_ps(_mm256_loadu_ps(dy + c), dot));
        g = _mm256_mul_ps(g, s);
        if (accumulate) g = _mm256_add_ps(g, _mm256_loadu_ps(dx + c));
        _mm256_storeu_ps(dx + c, g);
    }
    if (c < n) {
        __m256 g = _mm256_mul_ps(load_partial_avx2(y + c, n - c, 0.0f),
                                 _mm256_sub_ps(load_partial_avx2(dy + c, n - c, 0.0f), dot));
        g = _mm256_mul_ps(g, s);
        if (accumulate) g = _mm256_add_ps(g, load_partial_avx2(dx + c, n - c, 0.0f));
        store_partial_avx2(dx + c, n - c, g);
    }
    for (c = n; !accumulate && c < C; c++) dx[c] = 0.0f;
}

void softmax_bwd_avx2(float *dx,        // (R, C)
                      const float *dy,  // (R, C)
                      const float *y,   // (R, C)
                      int64_t R, int64_t C) {
    MMT_OMP("omp parallel for schedule(static) if(R * C >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t r = 0; r < R; r++)
        softmax_bwd_row_avx2(dx + r * C, dy + r * C, y + r * C, C, C, 1.0f, 1);
}

/* Up to 8 lanes of row r starting at column c (n lanes, the rest 0): g = dy * weight and
 * xhat = (x - mean) * rstd, the two quantities every LayerNorm gradient is built from. */
static inline void layernorm_lanes_bwd(__m256 *g, __m256 *xhat, const float *dyr,
                                       const float *xr, const float *weight, __m256 m,
                                       __m256 rs, int64_t c, int64_t n) {
    __m256 dyv = n == 8 ? _mm256_loadu_ps(dyr + c) : load_partial_avx2(dyr + c, n, 0.0f);
    __m256 xv = n == 8 ? _mm256_loadu_ps(xr + c) : load_partial_avx2(xr + c, n, 0.0f);
    if (weight)
        dyv = _mm256_mul_ps(dyv, n == 8 ? _mm256_loadu_ps(weight + c)
                                        : load_partial_avx2(weight + c, n, 0.0f));
    *g = dyv;
    /* Padding lanes: x = 0 gives xhat = -mean * rstd, but g = 0 there, so they add nothing. */
    *xhat = _mm256_mul_ps(_mm256_sub_ps(xv, m), rs);
}

/* dx for one row: rstd * (g - mean(g) - xhat * mean(g * xhat)) (see layernorm_ref.c). */
static void layernorm_row_bwd(float *dxr, const float *dyr, const float *xr,
                              const float *weight, float mu, float rstd, int64_t C) {
    const __m256 m = _mm256_set1_ps(mu), rs = _mm256_set1_ps(rstd);
    __m256 g_sum = _mm256_setzero_ps(), gx_sum = _mm256_setzero_ps(), g, xhat;
    int64_t c = 0;
    for (; c < C; c += 8) {
        layernorm_lanes_bwd(&g, &xhat, dyr, xr, weight, m, rs, c, C - c < 8 ? C - c : 8);
        g_sum = _mm256_add_ps(g_sum, g);
        gx_sum = _mm256_fmadd_ps(g, xhat, gx_sum);
    }
    const __m256 g_mean = _mm256_set1_ps(hsum_avx2(g_sum) / (float)C);
    const __m256 gx_mean = _mm256_set1_ps(hsum_avx2(gx_sum) / (float)C);
    for (c = 0; c < C; c += 8) {
        int64_t n = C - c < 8 ? C - c : 8;
        layernorm_lanes_bwd(&g, &xhat, dyr, xr, weight, m, rs, c, n);
        __m256 d = _mm256_fnmadd_ps(xhat, gx_mean, _mm256_sub_ps(g, g_mean));
        d = _mm256_mul_ps(d, rs);
        if (n == 8) _mm256_storeu_ps(dxr + c, _mm256_add_ps(_mm256_loadu_ps(dxr + c), d));
        else store_partial_avx2(dxr + c, n, _mm256_add_ps(load_partial_avx2(dxr + c, n, 0.0f), d));
    }
}

/* Rows per partial sum in the column reductions: summing blocks of rows first and then the
 * block sums keeps the float error near eps (64 + R / 64) instead of eps R for R rows. */
#define LAYERNORM_ROW_BLOCK 64

/* dweight (C) += sum_r dy * xhat and dbias (C) += sum_r dy over columns [c0, c0 + n),
 * n <= 16, rows in order (in blocks of LAYERNORM_ROW_BLOCK). */
static void layernorm_columns_bwd(float *dweight, float *dbias, const float *dy, const float *x,
                                  const float *mean, const float *rstd, int64_t R, int64_t C,
                                  int64_t c0, int64_t n) {
    __m256 w_total[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 b_total[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t r0 = 0; r0 < R; r0 += LAYERNORM_ROW_BLOCK) {
        const int64_t r1 = R - r0 < LAYERNORM_ROW_BLOCK ? R : r0 + LAYERNORM_ROW_BLOCK;
        __m256 w_acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        __m256 b_acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int64_t r = r0; r < r1; r++) {
            const __m256 m = _mm256_set1_ps(mean[r]), rs = _mm256_set1_ps(rstd[r]);
            for (int v = 0; v < 2 && 8 * v < n; v++) {
                int64_t c = c0 + 8 * v, lanes = n - 8 * v < 8 ? n - 8 * v : 8;
                __m256 g, xhat;
                layernorm_lanes_bwd(&g, &xhat, dy + r * C, x + r * C, NULL, m, rs, c, lanes);
                w_acc[v] = _mm256_fmadd_ps(g, xhat, w_acc[v]);
                b_acc[v] = _mm256_add_ps(b_acc[v], g);
            }
        }
        for (int v = 0; v < 2; v++) {
            w_total[v] = _mm256_add_ps(w_total[v], w_acc[v]);
            b_total[v] = _mm256_add_ps(b_total[v], b_acc[v]);
        }
    }
    for (int v = 0; v < 2 && 8 * v < n; v++) {
        int64_t c = c0 + 8 * v, lanes = n - 8 * v < 8 ? n - 8 * v : 8;
        _Alignas(32) float ws[8], bs[8];
        _mm256_store_ps(ws, w_total[v]);
        _mm256_store_ps(bs, b_total[v]);
        for (int64_t l = 0; l < lanes; l++) {
            if (dweight) dweight[c + l] += ws[l];
            if (dbias) dbias[c + l] += bs[l];
        }
    }
}

/* Two passes: dx row by row (threads over rows), then dweight/dbias column block by column
 * block (threads over columns, each summing its columns over all rows in order). Neither
 * pass shares an accumulator between threads, so results are the same for any thread
 * count, which a single fused pass with per-thread partial sums would not give. */
void layernorm_bwd_avx2(float *dx,            // (R, C) or NULL
                        float *dweight,       // (C) or NULL
                        float *dbias,         // (C) or NULL
                        const float *dy,      // (R, C)
                        const float *x,       // (R, C)
                        const float *mean,    // (R)
                        const float *rstd,    // (R)
                        const float *weight,  // (C) or NULL
                        int64_t R, int64_t C) {
    if (C <= 0) return;
    if (dx) {
        MMT_OMP("omp parallel for schedule(static) if(R * C >= CPU_PARALLEL_MIN_ELEMENTS)")
        for (int64_t r = 0; r < R; r++)
            layernorm_row_bwd(dx + r * C, dy + r * C, x + r * C, weight, mean[r], rstd[r], C);
    }
    if (dweight || dbias) {
        const int64_t blocks = (C + 15) / 16;
        MMT_OMP("omp parallel for schedule(static) if(R * C >= CPU_PARALLEL_MIN_ELEMENTS)")
        for (int64_t blk = 0; blk < blocks; blk++)
            layernorm_columns_bwd(dweight, dbias, dy, x, mean, rstd, R, C, 16 * blk,
                                  C - 16 * blk < 16 ? C - 16 * blk : 16);
    }
}
