/*
 * qmat_avx2.c — float GEMMs on a quantized weight (ops.h qmat_matmul_fwd, qmat_matmul_bwd_dx,
 * qmat_dequant_rows): the drivers that every CPU table shares, and the AVX2 dequantizer.
 *
 * W is never dequantized whole. The drivers cut it into panels of at most QMAT_BUF_FLOATS
 * floats, dequantize one into a buffer on the thread's stack and hand it to the fp32 GEMM
 * driver (sgemm_run) as an ordinary strided operand. The panels follow the GEMM's own K
 * blocks (sgemm_kc_step): the forward dequantizes rows [n0, n0 + 256) x one K block and
 * runs it with "store" for the first block and "add" for the others, which is what sgemm_run
 * does between its K blocks; the backward (whose GEMM depth is N) likewise dequantizes one N
 * block x 256 columns of dx. Since sgemm_run sums each element the same way whatever the
 * rows, columns and threads around it, the results are bitwise the table's matmul_fwd /
 * matmul_bwd on the whole deq(W) (test_ops_quant checks it).
 *
 * Cost: the dequantization runs once per element of W per call (per row range of x when
 * threads split M), so at M >= 32 it is a few percent of the multiply; at M = 1..8 the call
 * is memory-bound either way and reads 4x (int8) or 8x (NF4) fewer bytes of W than fp32.
 *
 * Dequantization (exact: one float multiply per element, so every table gives the same
 * bits): int8 widens 8 bytes to floats; NF4 splits 8 bytes into 16 nibbles in element order
 * (the even element in the high nibble), looks the 16-entry code up with two vpermps over
 * its halves and a blend on bit 3, and multiplies by the block's absmax. Blocks run over the
 * flat N*K array, so a row slice is walked block segment by block segment, with an odd
 * first element (odd K) handled alone.
 */
#include <immintrin.h>

#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* The panel buffer: 256 rows x one 256-deep K block (256 KiB): 256 rows keep the packed A
 * blocks of sgemm_run as long-lived as in a plain matmul (measured: 128 rows cost ~10%). */
#ifndef QMAT_PANEL_MAX
#define QMAT_PANEL_MAX 256
#endif
#define QMAT_BUF_FLOATS (QMAT_PANEL_MAX * 256)

/* Below this many multiply-adds a second thread costs more than it saves. */
#define QMAT_PARALLEL_MIN_MACS 2.0e6

/* ---- dequantization (AVX2) -------------------------------------------------------------- */

static inline int nf4_nibble(const uint8_t *nf4, int64_t i) {
    const uint8_t byte = nf4[i / 2];
    return (i % 2 == 0) ? byte >> 4 : byte & 15;
}

/* dst[0 .. n) = deq of flat elements [i, i + n) of an NF4 matrix. */
static void nf4_flat_avx2(float *dst, const mmt_qmat *w, int64_t i, int64_t n) {
    const __m256 code_lo = _mm256_loadu_ps(w->code), code_hi = _mm256_loadu_ps(w->code + 8);
    const __m128i low4 = _mm_set1_epi8(15);
    while (n > 0) {
        const int64_t block = i / w->blocksize;
        const int64_t seg = min64(n, (block + 1) * w->blocksize - i);
        const float s = w->absmax[block];
        const __m256 vs = _mm256_set1_ps(s);
        int64_t j = 0;
        if (i % 2 != 0) { /* odd start: the low nibble of a byte on its own */
            dst[0] = w->code[nf4_nibble(w->nf4, i)] * s;
            j = 1;
        }
        for (; j + 16 <= seg; j += 16) {
            const __m128i bytes = _mm_loadl_epi64((const __m128i *)(w->nf4 + (i + j) / 2));
            const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
            const __m128i lo = _mm_and_si128(bytes, low4);
            const __m128i nib = _mm_unpacklo_epi8(hi, lo); /* element order */
            for (int h = 0; h < 2; h++) {
                const __m256i idx = _mm256_cvtepu8_epi32(h ? _mm_srli_si128(nib, 8) : nib);
                const __m256 a = _mm256_permutevar8x32_ps(code_lo, idx);
                const __m256 b = _mm256_permutevar8x32_ps(code_hi, idx);
                const __m256 hi8 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)); /* bit 3 */
                const __m256 v = _mm256_blendv_ps(a, b, hi8);
                _mm256_storeu_ps(dst + j + 8 * h, _mm256_mul_ps(v, vs));
            }
        }
        for (; j < seg; j++) dst[j] = w->code[nf4_nibble(w->nf4, i + j)] * s;
        dst += seg, i += seg, n -= seg;
    }
}

void qmat_dequant_avx2(float *dst, int64_t ld, const mmt_qmat *w, int64_t r0, int64_t r1,
                       int64_t k0, int64_t k1) {
    const int64_t K = w->cols;
    for (int64_t r = r0; r < r1; r++) {
        float *d = dst + (r - r0) * ld;
        if (w->type == MMT_QMAT_NF4) {
            nf4_flat_avx2(d, w, r * K + k0, k1 - k0);
            continue;
        }
        const int8_t *src = w->s8 + r * K;
        const float s = w->scale[r];
        const __m256 vs = _mm256_set1_ps(s);
        int64_t k = k0;
        for (; k + 8 <= k1; k += 8) {
            const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(src + k)));
            _mm256_storeu_ps(d + k - k0, _mm256_mul_ps(_mm256_cvtepi32_ps(v), vs));
        }
        for (; k < k1; k++) d[k - k0] = (float)src[k] * s;
    }
}

/* ---- the drivers ------------------------------------------------------------------------- */

/* How a call is split over threads: `parts` independent ranges of W (panels), times row
 * ranges of x when there are fewer parts than threads. */
typedef struct qmat_split {
    int64_t tm, tn;
} qmat_split;

static qmat_split qmat_split_for(int64_t M, int64_t parts, double macs, int64_t mr) {
    int64_t threads = cpu_max_threads();
    if (macs < QMAT_PARALLEL_MIN_MACS) threads = 1;
    qmat_split s;
    s.tn = min64(parts, threads);
    s.tm = min64(threads / s.tn, ceil_div(M, mr));
    if (s.tm < 1) s.tm = 1;
    /* Parts that do not divide among the threads (ViT-B/32's 768-row weights are 3 panels:
     * 2 and 1 on two threads, one idle a third of the time) split the rows instead when there
     * are enough of them: each thread then dequantizes all of W, a few percent of its
     * multiply at M >= 32 (the file comment), against a third. */
    if (threads > 1 && parts % threads != 0 && ceil_div(M, mr) >= 4 * threads) {
        s.tn = 1;
        s.tm = threads;
    }
    return s;
}

/* Work item `it` of a split: rows [*m0, *m1) of x (whole microkernel blocks of mr rows) and
 * parts [*p0, *p1) of W; *m0 >= *m1 means nothing to do. */
static void qmat_item(const qmat_split *sp, int64_t it, int64_t M, int64_t mr, int64_t parts, int64_t *m0,
                      int64_t *m1, int64_t *p0, int64_t *p1) {
    const int64_t mblocks = ceil_div(M, mr), im = it / sp->tn, in = it % sp->tn;
    *m0 = mblocks * im / sp->tm * mr;
    *m1 = min64(M, mblocks * (im + 1) / sp->tm * mr);
    *p0 = parts * in / sp->tn;
    *p1 = parts * (in + 1) / sp->tn;
}

void qmat_fwd_run(const sgemm_kernel *kern, qmat_dequant_fn dequant, float *y, const float *x,
                  const mmt_qmat *w, const float *bias, int64_t M) {
    const int64_t N = w->rows, K = w->cols;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* y = bias (or 0), as matmul_fwd */
        const sgemm_view none = {x, 0, 0};
        sgemm_run(kern, M, N, 0, none, none, y, N, (sgemm_store){1.0f, 0.0f, bias}, 1);
        return;
    }
    const int64_t kc = sgemm_kc_step(kern, K);
    const int64_t nb = min64(QMAT_PANEL_MAX, QMAT_BUF_FLOATS / kc);
    const int64_t panels = ceil_div(N, nb);
    const qmat_split sp = qmat_split_for(M, panels, (double)M * N * K, kern->mr);
    const int64_t items = sp.tm * sp.tn;
    const int team = (int)items;
    (void)team; /* unused without OpenMP */
    MMT_OMP("omp parallel for num_threads(team) schedule(static) if(team > 1)")
    for (int64_t it = 0; it < items; it++) {
        _Alignas(64) float buf[QMAT_BUF_FLOATS];
        int64_t m0, m1, p0, p1;
        qmat_item(&sp, it, M, kern->mr, panels, &m0, &m1, &p0, &p1);
        if (m0 >= m1) continue;
        for (int64_t p = p0; p < p1; p++) {
            const int64_t n0 = p * nb, nw = min64(nb, N - n0);
            for (int64_t pc = 0; pc < K; pc += kc) {
                const int64_t kw = min64(kc, K - pc);
                dequant(buf, kw, w, n0, n0 + nw, pc, pc + kw);
                const sgemm_view a = {x + m0 * K + pc, K, 1};
                const sgemm_view b = {buf, 1, kw}; /* B(k, j) = buf[j * kw + k] */
                const sgemm_store st = pc == 0 ? (sgemm_store){1.0f, 0.0f, bias ? bias + n0 : NULL}
                                               : (sgemm_store){1.0f, 1.0f, NULL};
                sgemm_run(kern, m1 - m0, nw, kw, a, b, y + m0 * N + n0, N, st, 1);
            }
        }
    }
}

void qmat_bwd_dx_run(const sgemm_kernel *kern, qmat_dequant_fn dequant, float *dx,
                     const float *dy, const mmt_qmat *w, int64_t M) {
    const int64_t N = w->rows, K = w->cols;
    if (M <= 0 || N <= 0 || K <= 0) return;
    const int64_t kc = sgemm_kc_step(kern, N); /* the GEMM's depth is N */
    const int64_t kb = min64(QMAT_PANEL_MAX, QMAT_BUF_FLOATS / kc);
    const int64_t chunks = ceil_div(K, kb);
    const qmat_split sp = qmat_split_for(M, chunks, (double)M * N * K, kern->mr);
    const int64_t items = sp.tm * sp.tn;
    const sgemm_store add = {1.0f, 1.0f, NULL};
    const int team = (int)items;
    (void)team;
    MMT_OMP("omp parallel for num_threads(team) schedule(static) if(team > 1)")
    for (int64_t it = 0; it < items; it++) {
        _Alignas(64) float buf[QMAT_BUF_FLOATS];
        int64_t m0, m1, c0, c1;
        qmat_item(&sp, it, M, kern->mr, chunks, &m0, &m1, &c0, &c1);
        if (m0 >= m1) continue;
        for (int64_t c = c0; c < c1; c++) {
            const int64_t k0 = c * kb, kw = min64(kb, K - k0);
            for (int64_t q = 0; q < N; q += kc) {
                const int64_t nq = min64(kc, N - q);
                dequant(buf, kw, w, q, q + nq, k0, k0 + kw);
                const sgemm_view a = {dy + m0 * N + q, N, 1}; /* (M, nq) slice of dy */
                const sgemm_view b = {buf, kw, 1};            /* (nq, kw) */
                sgemm_run(kern, m1 - m0, kw, nq, a, b, dx + m0 * K + k0, K, add, 1);
            }
        }
    }
}

/* ---- the "avx2" table's entries ----------------------------------------------------------- */

void qmat_matmul_fwd_avx2(float *y, const float *x, const mmt_qmat *w, const float *bias,
                          int64_t M) {
    qmat_fwd_run(&sgemm_kernel_avx2, qmat_dequant_avx2, y, x, w, bias, M);
}

void qmat_matmul_bwd_dx_avx2(float *dx, const float *dy, const mmt_qmat *w, int64_t M) {
    qmat_bwd_dx_run(&sgemm_kernel_avx2, qmat_dequant_avx2, dx, dy, w, M);
}

void qmat_dequant_rows_avx2(float *dst, const mmt_qmat *w, int64_t r0, int64_t r1) {
    const int64_t K = w->cols;
    MMT_OMP("omp parallel for schedule(static) if((r1 - r0) * K >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t r = r0; r < r1; r++) qmat_dequant_avx2(dst + (r - r0) * K, K, w, r, r + 1, 0, K);
}
