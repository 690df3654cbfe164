/*
 * qgemm_avx512.c — the "avx512" table's int8 entries: s8_matmul_fwd (the AVX512_VNNI kernel
 * where cpuid has it, else the AVX2 table's choice), the 16-column tile store the VNNI kernel
 * uses, and s8_quantize_rows on zmm. Built with the plain AVX-512 flags, so nothing here
 * needs VNNI; qgemm_avx512vnni.c holds the only VNNI instructions.
 */
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "core/cpu.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* qgemm_kernel.store (cpu_ops.h) 16 columns at a time, the column tail under a mask; the
 * float steps are ops.h's epilogue: (float)acc, times xscale, fused multiply-add with the
 * weight scale and the bias (or +0). */
void qgemm_store_avx512(const int32_t *acc, int64_t ld_acc, int rows, int64_t cols, int first,
                        int last, int64_t row0, int64_t col0, const qgemm_epilogue *e, float *y,
                        int64_t ldy) {
    for (int64_t j = 0; j < cols; j += 16) {
        const int64_t n = col0 + j, width = min64(16, cols - j);
        const __mmask16 mask = (__mmask16)((1u << width) - 1u);
        __m512 ws = _mm512_setzero_ps(), b = _mm512_setzero_ps();
        __m512i corr = _mm512_setzero_si512();
        if (last) {
            ws = _mm512_maskz_loadu_ps(mask, e->wscale + n);
            if (e->bias) b = _mm512_maskz_loadu_ps(mask, e->bias + n);
            if (e->rowsum) /* 128 * rowsum; the layout pads rowsum to whole panels */
                corr = _mm512_slli_epi32(_mm512_loadu_si512(e->rowsum + n), 7);
        }
        for (int i = 0; i < rows; i++) {
            float *yi = y + i * ldy + j;
            __m512i a = _mm512_loadu_si512(acc + i * ld_acc + j);
            if (!first) a = _mm512_add_epi32(a, _mm512_maskz_loadu_epi32(mask, yi));
            if (!last) {
                _mm512_mask_storeu_epi32(yi, mask, a);
                continue;
            }
            a = _mm512_sub_epi32(a, corr);
            __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(a), _mm512_set1_ps(e->xscale[row0 + i]));
            _mm512_mask_storeu_ps(yi, mask, _mm512_fmadd_ps(f, ws, b));
        }
    }
}

static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;
static int avx512_has_vnni;

static void avx512_choose(void) { avx512_has_vnni = mmt_cpu_detect().avx512_vnni; }

/* AVX512_VNNI where cpuid has it (Ice Lake, Sapphire Rapids, Zen 4); the first AVX-512 CPUs
 * (Skylake-X) lack it and take the avx2 table's kernel: the same integers either way. */
void s8_matmul_fwd_avx512(float *y, const int8_t *xq, const float *xscale, const mmt_qmat *w,
                          const float *bias, int64_t M) {
    pthread_once(&avx512_once, avx512_choose);
    if (avx512_has_vnni)
        qgemm_matmul(&qgemm_kernel_avx512vnni, y, xq, xscale, w, bias, M, cpu_max_threads());
    else
        s8_matmul_fwd_avx2(y, xq, xscale, w, bias, M);
}

static inline int8_t quantize_one(float x, float inv) {
    float r = nearbyintf(x * inv);
    r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
    return r == r ? (int8_t)r : 0;
}

/* s8_quantize_rows_avx2 on zmm: the same steps (ops.h's rule), the same bytes. The narrowing
 * vpmovsdb saturates like the AVX2 packs, and after the clamp nothing saturates. */
void s8_quantize_rows_avx512(int8_t *q, float *scale, const float *x, int64_t M, int64_t K) {
    const __m512 hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
    MMT_OMP("omp parallel for schedule(static) if(M * K >= CPU_PARALLEL_MIN_ELEMENTS && M > 1)")
    for (int64_t m = 0; m < M; m++) {
        const float *xm = x + m * K;
        int8_t *qm = q + m * K;
        __m512 vmax = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 16 <= K; k += 16)
            vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(xm + k)));
        if (k < K) {
            const __mmask16 tail = (__mmask16)((1u << (K - k)) - 1u);
            vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail, xm + k)));
        }
        const float amax = _mm512_reduce_max_ps(vmax);
        if (!(amax > 0.0f)) {
            scale[m] = 0.0f;
            memset(qm, 0, (size_t)K);
            continue;
        }
        scale[m] = amax / 127.0f;
        const float inv = fminf(127.0f / amax, FLT_MAX);
        const __m512 vinv = _mm512_set1_ps(inv);
        for (k = 0; k + 16 <= K; k += 16) {
            __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(xm + k), vinv),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            __m512i v = _mm512_cvttps_epi32(_mm512_max_ps(_mm512_min_ps(r, hi), lo));
            _mm_storeu_si128((__m128i *)(qm + k), _mm512_cvtsepi32_epi8(v));
        }
        for (; k < K; k++) qm[k] = quantize_one(xm[k], inv);
    }
}
