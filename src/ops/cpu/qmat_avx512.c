/*
 * qmat_avx512.c — the "avx512" table's float GEMMs on a quantized weight: the drivers of
 * qmat_avx2.c on the AVX-512 GEMM kernel, with an AVX-512 dequantizer (NF4: 32 elements
 * per step, the 16-entry code in one zmm looked up by vpermps). Same values as the AVX2
 * dequantizer (one float multiply per element), so the GEMMs give the avx512 table's
 * matmul bits, which test_ops shows equal to the avx2 table's.
 */
#include <immintrin.h>

#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static inline int nf4_nibble(const uint8_t *nf4, int64_t i) {
    const uint8_t byte = nf4[i / 2];
    return (i % 2 == 0) ? byte >> 4 : byte & 15;
}

static void nf4_flat_avx512(float *dst, const mmt_qmat *w, int64_t i, int64_t n) {
    const __m512 code = _mm512_loadu_ps(w->code);
    const __m128i low4 = _mm_set1_epi8(15);
    while (n > 0) {
        const int64_t block = i / w->blocksize;
        const int64_t seg = min64(n, (block + 1) * w->blocksize - i);
        const float s = w->absmax[block];
        const __m512 vs = _mm512_set1_ps(s);
        int64_t j = 0;
        if (i % 2 != 0) {
            dst[0] = w->code[nf4_nibble(w->nf4, i)] * s;
            j = 1;
        }
        for (; j + 32 <= seg; j += 32) {
            const __m128i bytes = _mm_loadu_si128((const __m128i *)(w->nf4 + (i + j) / 2));
            const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
            const __m128i lo = _mm_and_si128(bytes, low4);
            const __m512i i0 = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(hi, lo));
            const __m512i i1 = _mm512_cvtepu8_epi32(_mm_unpackhi_epi8(hi, lo));
            _mm512_storeu_ps(dst + j, _mm512_mul_ps(_mm512_permutexvar_ps(i0, code), vs));
            _mm512_storeu_ps(dst + j + 16, _mm512_mul_ps(_mm512_permutexvar_ps(i1, code), vs));
        }
        for (; j < seg; j++) dst[j] = w->code[nf4_nibble(w->nf4, i + j)] * s;
        dst += seg, i += seg, n -= seg;
    }
}

void qmat_dequant_avx512(float *dst, int64_t ld, const mmt_qmat *w, int64_t r0, int64_t r1,
                         int64_t k0, int64_t k1) {
    const int64_t K = w->cols;
    for (int64_t r = r0; r < r1; r++) {
        float *d = dst + (r - r0) * ld;
        if (w->type == MMT_QMAT_NF4) {
            nf4_flat_avx512(d, w, r * K + k0, k1 - k0);
            continue;
        }
        const int8_t *src = w->s8 + r * K;
        const __m512 vs = _mm512_set1_ps(w->scale[r]);
        for (int64_t k = k0; k < k1; k += 16) {
            const int64_t width = min64(16, k1 - k);
            const __mmask16 mask = (__mmask16)((1u << width) - 1u);
            const __m512i v = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, src + k));
            _mm512_mask_storeu_ps(d + k - k0, mask, _mm512_mul_ps(_mm512_cvtepi32_ps(v), vs));
        }
    }
}

void qmat_matmul_fwd_avx512(float *y, const float *x, const mmt_qmat *w, const float *bias,
                            int64_t M) {
    qmat_fwd_run(&sgemm_kernel_avx512, qmat_dequant_avx512, y, x, w, bias, M);
}

void qmat_matmul_bwd_dx_avx512(float *dx, const float *dy, const mmt_qmat *w, int64_t M) {
    qmat_bwd_dx_run(&sgemm_kernel_avx512, qmat_dequant_avx512, dx, dy, w, M);
}

void qmat_dequant_rows_avx512(float *dst, const mmt_qmat *w, int64_t r0, int64_t r1) {
    const int64_t K = w->cols;
    MMT_OMP("omp parallel for schedule(static) if((r1 - r0) * K >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t r = r0; r < r1; r++) qmat_dequant_avx512(dst + (r - r0) * K, K, w, r, r + 1, 0, K);
}
