/*
 * quant_ref.c — reference kernels for quantized weights (ops.h, mmt_qmat): the float GEMMs on
 * a dequantized W, dequantization itself, per-row int8 activation quantization, the packed
 * int8 weight layout and the int8 GEMM.
 *
 * Plain loops, written to be obviously right: an element of deq(W) is computed where it is
 * used (qmat_weight), so nothing is allocated and no panel logic can hide a bug; the float
 * sums run left to right exactly as matmul_fwd_ref / matmul_bwd_ref sum, so on deq(W) they
 * give those kernels' bits. The int8 GEMM reads the unpacked s8 so that it checks the packed
 * layout the fast kernels read, instead of sharing it.
 */
#include <float.h>
#include <math.h>

#include "ops/ops.h"
#include "ops/ref/ops_ref.h"

/* deq(W)[n, k] (ops.h): one float multiply. */
static float qmat_weight(const mmt_qmat *w, int64_t n, int64_t k) {
    if (w->type == MMT_QMAT_S8) return (float)w->s8[n * w->cols + k] * w->scale[n];
    const int64_t i = n * w->cols + k;
    const uint8_t byte = w->nf4[i / 2];
    const int nibble = (i % 2 == 0) ? byte >> 4 : byte & 15;
    return w->code[nibble] * w->absmax[i / w->blocksize];
}

void qmat_dequant_rows_ref(float *dst, const mmt_qmat *w, int64_t r0, int64_t r1) {
    const int64_t K = w->cols;
    for (int64_t n = r0; n < r1; n++)
        for (int64_t k = 0; k < K; k++) dst[(n - r0) * K + k] = qmat_weight(w, n, k);
}

void qmat_matmul_fwd_ref(float *y,           // (M, N)
                         const float *x,     // (M, K)
                         const mmt_qmat *w,  // (N, K)
                         const float *bias,  // (N) or NULL
                         int64_t M) {
    const int64_t N = w->rows, K = w->cols;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float sum = 0.0f;
            for (int64_t k = 0; k < K; k++) sum += x[i * K + k] * qmat_weight(w, j, k);
            y[i * N + j] = bias ? sum + bias[j] : sum;
        }
}

void qmat_matmul_bwd_dx_ref(float *dx,          // (M, K), accumulated
                            const float *dy,    // (M, N)
                            const mmt_qmat *w,  // (N, K)
                            int64_t M) {
    const int64_t N = w->rows, K = w->cols;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            const float g = dy[i * N + j];
            for (int64_t k = 0; k < K; k++) dx[i * K + k] += g * qmat_weight(w, j, k);
        }
}

/* The rule is written out in ops.h (s8_quantize_rows); each step here is one of its steps. */
void s8_quantize_rows_ref(int8_t *q, float *scale, const float *x, int64_t M, int64_t K) {
    for (int64_t m = 0; m < M; m++) {
        const float *xm = x + m * K;
        int8_t *qm = q + m * K;
        float amax = 0.0f;
        for (int64_t k = 0; k < K; k++) amax = fmaxf(amax, fabsf(xm[k]));
        if (!(amax > 0.0f)) { /* zero row (a NaN amax lands here too: unspecified) */
            scale[m] = 0.0f;
            for (int64_t k = 0; k < K; k++) qm[k] = 0;
            continue;
        }
        scale[m] = amax / 127.0f;
        const float inv = fminf(127.0f / amax, FLT_MAX);
        for (int64_t k = 0; k < K; k++) {
            float r = nearbyintf(xm[k] * inv);
            r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
            qm[k] = r == r ? (int8_t)r : 0; /* NaN (non-finite input): unspecified, kept defined */
        }
    }
}

size_t s8_packed_bytes_ref(int64_t N, int64_t K) {
    const int64_t NP = (N + 15) / 16, KG = (K + 3) / 4;
    return (size_t)(NP * KG * 64 + NP * 16 * (int64_t)sizeof(int32_t));
}

void s8_pack_ref(void *dst, const int8_t *s8, int64_t N, int64_t K) {
    const int64_t NP = (N + 15) / 16, KG = (K + 3) / 4;
    int8_t *panels = dst;
    int32_t rowsum[16];
    unsigned char *sums = (unsigned char *)dst + NP * KG * 64;
    for (int64_t p = 0; p < NP; p++) {
        for (int j = 0; j < 16; j++) rowsum[j] = 0;
        for (int64_t g = 0; g < KG; g++)
            for (int j = 0; j < 16; j++)
                for (int t = 0; t < 4; t++) {
                    const int64_t n = 16 * p + j, k = 4 * g + t;
                    const int8_t v = (n < N && k < K) ? s8[n * K + k] : 0;
                    panels[p * KG * 64 + g * 64 + j * 4 + t] = v;
                    rowsum[j] += v;
                }
        /* byte copies: the sums need not be 4-byte aligned when dst is not */
        for (int j = 0; j < 16; j++)
            for (size_t b = 0; b < sizeof(int32_t); b++)
                sums[(p * 16 + j) * 4 + (int64_t)b] = ((const unsigned char *)&rowsum[j])[b];
    }
}

void s8_matmul_fwd_ref(float *y,             // (M, N)
                       const int8_t *xq,     // (M, K)
                       const float *xscale,  // (M)
                       const mmt_qmat *w,    // (N, K), S8
                       const float *bias,    // (N) or NULL
                       int64_t M) {
    const int64_t N = w->rows, K = w->cols;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            int32_t acc = 0;
            for (int64_t k = 0; k < K; k++) acc += (int32_t)xq[i * K + k] * w->s8[j * K + k];
            y[i * N + j] = fmaf((float)acc * xscale[i], w->scale[j], bias ? bias[j] : 0.0f);
        }
}
