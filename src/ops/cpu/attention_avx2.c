/*
 * attention_avx2.c — AVX2 multi-head attention as two small GEMMs per (batch, head).
 *
 * For each of the B*H heads (the OpenMP loop; 384 heads for a ViT-B/32 batch of 32, so two
 * threads balance well): scores = q_h @ k_h^T goes straight into its (T, T) slice of att,
 * each row becomes probabilities in place (scale, causal length, softmax), and
 * out_h = p @ v_h is written into the head's columns of out. Heads are strided views of the
 * (B, T, H*D) tensors, so nothing is copied; the GEMMs (attention_head_gemm_avx2: unpacked, bitwise the
 * packed driver's) run single-threaded inside the loop.
 * With the causal mask the masked half of q k^T is still computed and then zeroed: the text
 * tower has T = 77, where skipping it would save little.
 *
 * The kernels take Tq queries against Tk keys with a causal offset (query i sees keys up to
 * i + offset; prefix tuning); the square attention_fwd/bwd_avx2 are the case Tq = Tk,
 * offset 0.
 */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#include "ops/cpu/cpu_ops.h"

/* ---- per-head GEMMs without packing ------------------------------------------------- */

/* A head's products are small (ViT-B/32: 50 x 50 x 64) and their depth fits one K block of
 * the packed driver, where the packing, 16-column tiles (50 columns padded to 64) and edge
 * tiles cost more than the arithmetic. attention_head_gemm_avx2 computes them directly: each element is
 * one chain of fused multiply-adds over k in order from zero, stored as fma(1, acc, c or 0),
 * which is exactly what sgemm_avx2 does for a depth <= SGEMM_KC (one K block; the 6x16
 * kernel and tile_store), so the results are bitwise the packed path's and the AVX2 and
 * AVX-512 tables still agree. A is read element by element (any strides); B's rows must
 * be contiguous, so a transposed B (k^T, v^T) is copied once per head into a buffer. */
#define HEAD_KC 256               /* sgemm_avx2's K block (SGEMM_KC): deeper goes to sgemm_avx2 */
#define HEAD_BT_FLOATS (64 * 320) /* the transposed B buffer: D 64 x Tk up to 320 */

/* Stores R rows of NV vectors (the first n columns) at c: fma(1, acc, c) or fma(1, acc, 0).
 * Out of line so that the k loop keeps every accumulator in a register (sgemm's tile_store). */
__attribute__((noinline)) static void head_store(const __m256 *acc, int R, int NV, int64_t n, float *c,
                                                 int64_t ldc, int accumulate) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int v = 0; v < NV; v++) {
        int64_t left = n - 8 * v;
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left < 8 ? left : 8)), lane);
        for (int i = 0; i < R; i++) {
            float *cv = c + i * ldc + 8 * v;
            __m256 add = !accumulate ? _mm256_setzero_ps() : left >= 8 ? _mm256_loadu_ps(cv) : _mm256_maskload_ps(cv, m);
            __m256 r = _mm256_fmadd_ps(one, acc[i * NV + v], add);
            if (left >= 8) _mm256_storeu_ps(cv, r);
            else _mm256_maskstore_ps(cv, m, r);
        }
    }
}

/* c (R, n <= 8 NV) (+)= a (R, K) @ b (K, n), b's rows contiguous (ldb apart). full: n = 8 NV. */
static inline __attribute__((always_inline)) void head_tile(const int R, const int NV, const int full, int64_t K,
                                                            const float *a, int64_t a_rs, int64_t a_cs,
                                                            const float *b, int64_t ldb, int64_t n, float *c,
                                                            int64_t ldc, int accumulate) {
    __m256 acc[6][2];
    for (int i = 0; i < R; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = _mm256_setzero_ps();
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lane);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - 8)), lane);
    for (int64_t k = 0; k < K; k++) {
        const float *bk = b + k * ldb;
        __m256 bv[2];
        bv[0] = full || NV == 2 ? _mm256_loadu_ps(bk) : _mm256_maskload_ps(bk, m0);
        if (NV == 2) bv[1] = full ? _mm256_loadu_ps(bk + 8) : _mm256_maskload_ps(bk + 8, m1);
        for (int i = 0; i < R; i++) {
            const __m256 x = _mm256_broadcast_ss(a + i * a_rs + k * a_cs);
            for (int v = 0; v < NV; v++) acc[i][v] = _mm256_fmadd_ps(x, bv[v], acc[i][v]);
        }
    }
    __m256 out[12];
    for (int i = 0; i < R; i++)
        for (int v = 0; v < NV; v++) out[i * NV + v] = acc[i][v];
    head_store(out, R, NV, n, c, ldc, accumulate);
}

/* One block of up to 6 rows over every column: 16 columns at a time, then 8, then the tail. */
static inline __attribute__((always_inline)) void head_rows(const int R, int64_t N, int64_t K, const float *a,
                                                            int64_t a_rs, int64_t a_cs, const float *b, int64_t ldb,
                                                            float *c, int64_t ldc, int accumulate) {
    int64_t j = 0;
    for (; j + 16 <= N; j += 16) head_tile(R, 2, 1, K, a, a_rs, a_cs, b + j, ldb, 16, c + j, ldc, accumulate);
    if (j + 8 <= N) {
        head_tile(R, 1, 1, K, a, a_rs, a_cs, b + j, ldb, 8, c + j, ldc, accumulate);
        j += 8;
    }
    if (j < N) head_tile(R, 1, 0, K, a, a_rs, a_cs, b + j, ldb, N - j, c + j, ldc, accumulate);
}

/* c (M, N) = a (M, K) @ b (K, N), or c += it with accumulate (cpu_ops.h). */
void attention_head_gemm_avx2(int64_t M, int64_t N, int64_t K, sgemm_view a, sgemm_view b, float *c, int64_t ldc,
                              int accumulate) {
    if (M <= 0 || N <= 0) return;
    const float *bp = b.data;
    int64_t ldb = b.row_stride;
    _Alignas(64) float bt[HEAD_BT_FLOATS];
    if (K < 1 || K > HEAD_KC || (b.col_stride != 1 && K * N > HEAD_BT_FLOATS)) {
        sgemm_avx2(M, N, K, a, b, c, ldc, NULL, accumulate, 1);
        return;
    }
    if (b.col_stride != 1) { /* rows of B contiguous: bt (K, N) */
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < N; j++) bt[k * N + j] = b.data[k * b.row_stride + j * b.col_stride];
        bp = bt;
        ldb = N;
    }
    int64_t i = 0;
    for (; i + 6 <= M; i += 6)
        head_rows(6, N, K, a.data + i * a.row_stride, a.row_stride, a.col_stride, bp, ldb, c + i * ldc, ldc, accumulate);
    const float *ai = a.data + i * a.row_stride;
    float *ci = c + i * ldc;
    switch (M - i) {
    case 5: head_rows(5, N, K, ai, a.row_stride, a.col_stride, bp, ldb, ci, ldc, accumulate); break;
    case 4: head_rows(4, N, K, ai, a.row_stride, a.col_stride, bp, ldb, ci, ldc, accumulate); break;
    case 3: head_rows(3, N, K, ai, a.row_stride, a.col_stride, bp, ldb, ci, ldc, accumulate); break;
    case 2: head_rows(2, N, K, ai, a.row_stride, a.col_stride, bp, ldb, ci, ldc, accumulate); break;
    case 1: head_rows(1, N, K, ai, a.row_stride, a.col_stride, bp, ldb, ci, ldc, accumulate); break;
    default: break;
    }
}

/* ---- attention ------------------------------------------------------------------------ */

static int64_t visible_keys(int64_t i, int64_t Tk, int causal, int64_t offset) {
    if (!causal) return Tk;
    int64_t n = i + offset + 1;
    return n < 0 ? 0 : n > Tk ? Tk : n;
}

void attention_kv_fwd_avx2(float *out,      // (B, Tq, H*D)
                           float *att,      // (B, H, Tq, Tk)
                           const float *q,  // (B, Tq, H*D)
                           const float *k,  // (B, Tk, H*D)
                           const float *v,  // (B, Tk, H*D)
                           int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t D, int causal,
                           int64_t causal_offset) {
    const int64_t C = H * D, heads = B * H;
    const float scale = 1.0f / sqrtf((float)D);
    MMT_OMP("omp parallel for schedule(dynamic, 1) if(heads > 1 && Tq * Tk * D * heads >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t bh = 0; bh < heads; bh++) {
        const int64_t b = bh / H, h = bh % H, qoff = b * Tq * C + h * D, koff = b * Tk * C + h * D;
        float *scores = att + bh * Tq * Tk;
        sgemm_view qh = {q + qoff, C, 1}; /* (Tq, D) */
        sgemm_view kt = {k + koff, 1, C}; /* (D, Tk): k_h transposed */
        attention_head_gemm_avx2(Tq, Tk, D, qh, kt, scores, Tk, 0);
        for (int64_t i = 0; i < Tq; i++)
            softmax_row_avx2(scores + i * Tk, scores + i * Tk, visible_keys(i, Tk, causal, causal_offset), Tk,
                             scale);
        sgemm_view p = {scores, Tk, 1};   /* (Tq, Tk) */
        sgemm_view vh = {v + koff, C, 1}; /* (Tk, D) */
        attention_head_gemm_avx2(Tq, D, Tk, p, vh, out + qoff, C, 0);
    }
}

void attention_fwd_avx2(float *out, float *att, const float *q, const float *k, const float *v,
                        int64_t B, int64_t T, int64_t H, int64_t D, int causal) {
    attention_kv_fwd_avx2(out, att, q, k, v, B, T, T, H, D, causal, 0);
}

/* Backward, again per (batch, head) with small single-threaded GEMMs on strided views (the
 * formulas are in attention_ref.c). With P the head's saved (T, T) probabilities and dO its
 * output gradient (T, D):
 *     dV += P^T @ dO,   dP = dO @ V^T (into datt),   dS = scale * P * (dP - rowdot(P, dP)),
 *     dQ += dS @ K,     dK += dS^T @ Q.
 * dS overwrites dP in place, row by row. Each head owns its own columns of dq/dk/dv and its
 * own slice of datt, so the threads share nothing and the result does not depend on them.
 * Causal rows stop at the diagonal: the masked dS entries are set to zero (P is zero there). */
void attention_kv_bwd_avx2(float *dq,          // (B, Tq, H*D) or NULL
                           float *dk,          // (B, Tk, H*D) or NULL
                           float *dv,          // (B, Tk, H*D) or NULL
                           float *datt,        // (B, H, Tq, Tk) scratch
                           const float *dout,  // (B, Tq, H*D)
                           const float *q,     // (B, Tq, H*D)
                           const float *k,     // (B, Tk, H*D)
                           const float *v,     // (B, Tk, H*D)
                           const float *att,   // (B, H, Tq, Tk)
                           int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t D, int causal,
                           int64_t causal_offset) {
    const int64_t C = H * D, heads = B * H;
    const float scale = 1.0f / sqrtf((float)D);
    MMT_OMP("omp parallel for schedule(dynamic, 1) if(heads > 1 && Tq * Tk * D * heads >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t bh = 0; bh < heads; bh++) {
        const int64_t b = bh / H, h = bh % H, qoff = b * Tq * C + h * D, koff = b * Tk * C + h * D;
        const float *p = att + bh * Tq * Tk;
        float *ds = datt + bh * Tq * Tk;
        sgemm_view dout_h = {dout + qoff, C, 1}; /* (Tq, D) */
        if (dv) {
            sgemm_view pt = {p, 1, Tk}; /* P^T: (Tk, Tq) */
            attention_head_gemm_avx2(Tk, D, Tq, pt, dout_h, dv + koff, C, 1);
        }
        if (!dq && !dk) continue;
        sgemm_view vt = {v + koff, 1, C}; /* V^T: (D, Tk) */
        attention_head_gemm_avx2(Tq, Tk, D, dout_h, vt, ds, Tk, 0);
        for (int64_t i = 0; i < Tq; i++)
            softmax_bwd_row_avx2(ds + i * Tk, ds + i * Tk, p + i * Tk, visible_keys(i, Tk, causal, causal_offset),
                                 Tk, scale, 0);
        if (dq) {
            sgemm_view s = {ds, Tk, 1};        /* (Tq, Tk) */
            sgemm_view kh = {k + koff, C, 1};  /* (Tk, D) */
            attention_head_gemm_avx2(Tq, D, Tk, s, kh, dq + qoff, C, 1);
        }
        if (dk) {
            sgemm_view st = {ds, 1, Tk};       /* dS^T: (Tk, Tq) */
            sgemm_view qh = {q + qoff, C, 1};  /* (Tq, D) */
            attention_head_gemm_avx2(Tk, D, Tq, st, qh, dk + koff, C, 1);
        }
    }
}

void attention_bwd_avx2(float *dq, float *dk, float *dv, float *datt, const float *dout,
                        const float *q, const float *k, const float *v, const float *att,
                        int64_t B, int64_t T, int64_t H, int64_t D, int causal) {
    attention_kv_bwd_avx2(dq, dk, dv, datt, dout, q, k, v, att, B, T, T, H, D, causal, 0);
}
