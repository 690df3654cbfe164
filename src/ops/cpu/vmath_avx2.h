/*
 * vmath_avx2.h — vectorized exp and erf for 8 floats; include only from *_avx2.c files.
 *
 * exp: Cephes expf (as in avx_mathfun): x = n ln2 + r with |r| <= ln2/2, a degree-6
 * polynomial for e^r, and 2^n built in the exponent bits; relative error <= 1.2e-7 (1 ulp)
 * measured over the normal range. Inputs are clamped to +-88.376, so exp(-inf) = 0 (masked
 * softmax entries) and large inputs give +inf.
 * erf: the rational approximation Eigen and XLA use for float, x * P(x^2) / Q(x^2) on x
 * clamped to [-4, 4]; absolute error <= 3.3e-7 measured on a 1e-4 grid over [-6, 6], so the
 * exact-erf GELU of torch.nn.GELU() is off by at most 1.7e-7 |x| (tests/test_ops.c checks
 * 5e-7 max(1, |x|)).
 */
#ifndef MMT_OPS_VMATH_AVX2_H
#define MMT_OPS_VMATH_AVX2_H

#include <immintrin.h>

static inline __m256 exp_avx2(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f));
    /* n = floor(x log2 e + 1/2): floor (not round-to-even) keeps n >= -127 at the clamp, so
     * 2^n stays a valid (zero) bit pattern. */
    __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f),
                                               _mm256_set1_ps(0.5f)));
    /* r = x - n ln2, with ln2 split in two so the product is exact enough. */
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, one));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __m256 erf_avx2(__m256 x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(4.0f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-4.0f));
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-2.72614225801306e-10f);
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(2.77068142495902e-08f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-2.10102402082508e-06f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-5.69250639462346e-05f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-7.34990630326855e-04f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-2.95459980854025e-03f));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-1.60960333262415e-02f));
    p = _mm256_mul_ps(p, x);
    __m256 q = _mm256_set1_ps(-1.45660718464996e-05f);
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-2.13374055278905e-04f));
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-1.68282697438203e-03f));
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-7.37332916720468e-03f));
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-1.42647390514189e-02f));
    return _mm256_div_ps(p, q);
}

/* Horizontal sum and max of 8 lanes. */
static inline float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax_avx2(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Loads the first n (< 8) floats of p and fills the other lanes with `fill`, without reading
 * past p + n. */
static inline __m256 load_partial_avx2(const float *p, int64_t n, float fill) {
    _Alignas(32) float tmp[8];
    for (int i = 0; i < 8; i++) tmp[i] = i < n ? p[i] : fill;
    return _mm256_load_ps(tmp);
}

static inline void store_partial_avx2(float *p, int64_t n, __m256 v) {
    _Alignas(32) float tmp[8];
    _mm256_store_ps(tmp, v);
    for (int64_t i = 0; i < n; i++) p[i] = tmp[i];
}

#endif
