/*
 * adamw_avx2.c — the AdamW update of one tensor, eight floats at a time.
 *
 * The same arithmetic as adamw_step_ref (src/ops/ref/train_ref.c), lane by lane: the fmaf
 * calls become _mm256_fmadd_ps and sqrtf/division their vector forms, all exactly rounded,
 * so the bits equal the reference's (tests/test_ops_train.c checks it). GCC may contract an
 * intrinsic multiply into a following add (-ffp-contract=fast), so, as in the reference, no
 * product feeds an addition here except inside an explicit fmadd, and the decay is its own
 * pass. The tail (n mod 8) runs the reference.
 */
#include <immintrin.h>
#include <math.h>

#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"
#include "ops/ref/ops_ref.h"

void adamw_step_avx2(float *p,       // (n)
                     const float *g, // (n)
                     float *m,       // (n)
                     float *v,       // (n)
                     float *vmax,    // (n) or NULL
                     int64_t n, const mmt_adamw_scalars *s) {
    int64_t n8 = n & ~(int64_t)7;
    if (s->apply_decay) {
        __m256 decay = _mm256_set1_ps(s->decay);
        for (int64_t i = 0; i < n8; i += 8)
            _mm256_storeu_ps(p + i, _mm256_mul_ps(_mm256_loadu_ps(p + i), decay));
    }
    int lerp_small = fabsf(s->lerp_weight) < 0.5f;
    __m256 weight = _mm256_set1_ps(lerp_small ? s->lerp_weight : s->lerp_weight - 1.0f);
    __m256 beta2 = _mm256_set1_ps(s->beta2), one_minus_beta2 = _mm256_set1_ps(s->one_minus_beta2);
    __m256 bc2 = _mm256_set1_ps(s->bias_correction2_sqrt), eps = _mm256_set1_ps(s->eps);
    __m256 neg_step = _mm256_set1_ps(s->neg_step);
    for (int64_t i = 0; i < n8; i += 8) {
        __m256 grad = _mm256_loadu_ps(g + i), mi = _mm256_loadu_ps(m + i);
        __m256 diff = _mm256_sub_ps(grad, mi);
        __m256 avg = _mm256_fmadd_ps(weight, diff, lerp_small ? mi : grad);
        __m256 sq = _mm256_fmadd_ps(_mm256_mul_ps(one_minus_beta2, grad), grad,
                                    _mm256_mul_ps(_mm256_loadu_ps(v + i), beta2));
        _mm256_storeu_ps(m + i, avg);
        _mm256_storeu_ps(v + i, sq);
        if (vmax) {
            /* torch.maximum(vmax, sq): vmax where it is NaN or >= sq, else sq. */
            __m256 old = _mm256_loadu_ps(vmax + i);
            __m256 keep = _mm256_or_ps(_mm256_cmp_ps(old, old, _CMP_UNORD_Q),
                                       _mm256_cmp_ps(old, sq, _CMP_GE_OQ));
            sq = _mm256_blendv_ps(sq, old, keep);
            _mm256_storeu_ps(vmax + i, sq);
        }
        __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(sq), bc2), eps);
        __m256 update = _mm256_div_ps(_mm256_mul_ps(neg_step, avg), denom);
        _mm256_storeu_ps(p + i, _mm256_add_ps(_mm256_loadu_ps(p + i), update));
    }
    /* The tail's decay has not run yet: the reference does it with the same scalars. */
    if (n8 < n) adamw_step_ref(p + n8, g + n8, m + n8, v + n8, vmax ? vmax + n8 : NULL, n - n8, s);
}
