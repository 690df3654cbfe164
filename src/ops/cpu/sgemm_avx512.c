/*
 * sgemm_avx512.c — the AVX-512 GEMM: a 14x32 zmm microkernel and a 16-column rows path,
 * plugged into the driver of sgemm_avx2.c (packing, cache blocks, threads), and the
 * matmul_fwd, gemm and matmul_bwd entries of the "avx512" table built on them.
 *
 * The microkernel keeps 14 rows x 2 zmm = 28 accumulators, two B vectors and broadcasts A
 * from memory as the FMA's operand: 30 of the 32 zmm registers, 28 FMAs per 2 loads. Against
 * AVX2's 6x16 tile it does twice the flops per instruction and per byte of B.
 * kc is AVX2's (256): both kernels then cut K into the same blocks and sum each element in
 * the same order with the same fused multiply-adds, so the "avx2" and "avx512" tables give the
 * same bits (test_ops checks it). mc and nc were chosen with dev/kernels (README there).
 *
 * The rows path (M <= SGEMM_ROWS_MAX_M rows, w contiguous along K: decoding) streams w once
 * instead of packing it: 16 rows of w are loaded 16 k at a time, transposed in registers
 * (16x16, 64 shuffles) and fed to one accumulator per row of x, exactly as the packed
 * microkernel would see them.
 */
#include <immintrin.h>
#include <stddef.h>

#include "ops/cpu/cpu_ops.h"

#define MR 14 /* microkernel rows (A) */
#define NR 32 /* microkernel columns (B): two zmm vectors */

#ifndef SGEMM512_KC
#define SGEMM512_KC 256 /* AVX2's: the same K blocks, the same bits (file comment) */
#endif
#ifndef SGEMM512_MC
#define SGEMM512_MC 112 /* 112 x 256 x 4 B = 112 KiB of packed A, in L2 */
#endif
#ifndef SGEMM512_NC
#define SGEMM512_NC 256 /* 256 KiB of packed B; a 32-column micro-panel is 32 KiB, in L1 */
#endif

_Static_assert(SGEMM512_MC % MR == 0 && SGEMM512_NC % NR == 0, "blocks must hold whole panels");
_Static_assert(SGEMM512_MC * SGEMM512_KC <= SGEMM_PACK_A_FLOATS &&
                   SGEMM512_NC * SGEMM512_KC <= SGEMM_PACK_B_FLOATS && MR * NR <= SGEMM_TILE_FLOATS,
               "the driver's stack buffers hold the AVX-512 blocks");

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Writes a finished 14x32 tile; out of line for the reason given at sgemm_avx2.c's
 * tile_store (inlined, the epilogue's registers push accumulators onto the stack). */
__attribute__((noinline)) static void tile_store(const __m512 *acc, float *restrict c, int64_t ldc,
                                                 sgemm_store st) {
    const __m512 alpha = _mm512_set1_ps(st.alpha), beta = _mm512_set1_ps(st.beta);
    const int use_bias = st.beta == 0.0f && st.bias, scale_c = st.beta != 0.0f && st.beta != 1.0f;
    __m512 add0 = use_bias ? _mm512_loadu_ps(st.bias) : _mm512_setzero_ps();
    __m512 add1 = use_bias ? _mm512_loadu_ps(st.bias + 16) : _mm512_setzero_ps();
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * ldc;
        if (st.beta != 0.0f) {
            add0 = _mm512_loadu_ps(ci);
            add1 = _mm512_loadu_ps(ci + 16);
            if (scale_c) add0 = _mm512_mul_ps(add0, beta), add1 = _mm512_mul_ps(add1, beta);
        }
        _mm512_storeu_ps(ci, _mm512_fmadd_ps(alpha, acc[2 * i], add0));
        _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(alpha, acc[2 * i + 1], add1));
    }
}

/* c (14,32) = store(ap (14,kc) @ bp (kc,32)), ap and bp packed k-major. */
static void kernel_14x32(int64_t kc, const float *restrict ap, const float *restrict bp,
                         float *restrict c, int64_t ldc, sgemm_store st) {
    __m512 acc[MR][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    /* The C tile is touched only after the k loop: fetch it now (see the AVX2 kernel). */
    for (int i = 0; i < MR; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp + k * NR), b1 = _mm512_load_ps(bp + k * NR + 16);
        for (int i = 0; i < MR; i++) {
            __m512 a = _mm512_set1_ps(ap[k * MR + i]);
            acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
        }
    }
    __m512 out[2 * MR]; /* a copy, so that acc itself stays in registers */
    for (int i = 0; i < MR; i++) out[2 * i] = acc[i][0], out[2 * i + 1] = acc[i][1];
    tile_store(out, c, ldc, st);
}

/* Transposes 16 rows of 16 floats in place: afterwards r[j] holds the old column j. Two
 * rounds within 128-bit lanes (unpack, shuffle) leave r[4g + c] holding, in its lane L, rows
 * 4g..4g+3 of column 4L + c; two rounds of 128-bit lane shuffles then gather lane L of
 * r[c], r[4 + c], r[8 + c], r[12 + c] into column 4L + c. */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) {
        r[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int c = 0; c < 4; c++) {
        __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44);
        __m512 u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xee);
        __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44);
        __m512 u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xee);
        t[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(u0, u2, 0xdd);
        t[8 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xdd);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* The rows path (cpu_ops.h): c[0:M, n0:n1] for the M <= SGEMM_ROWS_MAX_M rows of a (K
 * contiguous) times B stored as (N, K) rows with K contiguous, 16 columns at a time, with
 * the packed path's k order, kc blocks and store rule, so with its bits. */
static void rows_avx512(int64_t M, int64_t n0, int64_t n1, int64_t K, int64_t kc_step,
                        sgemm_view a, sgemm_view b, float *c, int64_t ldc, sgemm_store st) {
    const __m512 alpha = _mm512_set1_ps(st.alpha), beta = _mm512_set1_ps(st.beta);
    for (int64_t j = n0; j < n1; j += 16) {
        const int64_t nj = min64(16, n1 - j);
        const __mmask16 jmask = (__mmask16)((1u << nj) - 1);
        const float *bj = b.data + j * b.col_stride; /* B(k, j + r) = bj[r * col_stride + k] */
        __m512 cv[SGEMM_ROWS_MAX_M];
        for (int64_t pc = 0; pc < K; pc += kc_step) {
            const int64_t kc = min64(kc_step, K - pc);
            __m512 acc[SGEMM_ROWS_MAX_M];
            for (int64_t i = 0; i < M; i++) acc[i] = _mm512_setzero_ps();
            for (int64_t k = pc; k < pc + kc; k += 16) {
                const int64_t nk = min64(16, pc + kc - k);
                const __mmask16 kmask = (__mmask16)((1u << nk) - 1);
                __m512 t[16];
                for (int r = 0; r < 16; r++)
                    t[r] = r >= nj   ? _mm512_setzero_ps()
                           : nk == 16 ? _mm512_loadu_ps(bj + r * b.col_stride + k)
                                      : _mm512_maskz_loadu_ps(kmask, bj + r * b.col_stride + k);
                transpose16(t);
                for (int64_t kk = 0; kk < nk; kk++)
                    for (int64_t i = 0; i < M; i++)
                        acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(a.data[i * a.row_stride + k + kk]),
                                                 t[kk], acc[i]);
            }
            for (int64_t i = 0; i < M; i++) {
                if (pc == 0) {
                    const float *ci = c + i * ldc + j;
                    if (st.beta == 0.0f)
                        cv[i] = st.bias ? _mm512_maskz_loadu_ps(jmask, st.bias + j) : _mm512_setzero_ps();
                    else if (st.beta == 1.0f)
                        cv[i] = _mm512_maskz_loadu_ps(jmask, ci);
                    else
                        cv[i] = _mm512_mul_ps(_mm512_maskz_loadu_ps(jmask, ci), beta);
                }
                cv[i] = _mm512_fmadd_ps(alpha, acc[i], cv[i]);
            }
        }
        for (int64_t i = 0; i < M; i++) _mm512_mask_storeu_ps(c + i * ldc + j, jmask, cv[i]);
    }
}

const sgemm_kernel sgemm_kernel_avx512 = {
    .name = "avx512",
    .mr = MR, .nr = NR,
    .kc = SGEMM512_KC, .mc = SGEMM512_MC, .nc = SGEMM512_NC,
    .tile = kernel_14x32,
    .rows = rows_avx512,
    .rows_max_m = SGEMM_ROWS_MAX_M, /* dev/kernels/bench_rows: ahead of packing up to M = 8 */
    .rows_width = 16,
};

int64_t matmul_pack_avx512(float *dst, const float *w, int64_t K, int64_t N) {
    if (dst) sgemm_pack_b(&sgemm_kernel_avx512, dst, w, K, N);
    return sgemm_panels_ld(&sgemm_kernel_avx512, N) * K;
}

void matmul_fwd_packed_avx512(float *y, const float *x, const float *w, const float *panels,
                              const float *bias, int64_t M, int64_t K, int64_t N) {
    sgemm_matmul_fwd_packed(&sgemm_kernel_avx512, y, x, w, panels, bias, M, K, N);
}

void matmul_fwd_avx512(float *y, const float *x, const float *w, const float *bias, int64_t M,
                       int64_t K, int64_t N) {
    sgemm_matmul_fwd(&sgemm_kernel_avx512, y, x, w, bias, M, K, N);
}

void gemm_avx512(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    sgemm_gemm(&sgemm_kernel_avx512, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

void matmul_bwd_avx512(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                       const float *w, int64_t M, int64_t K, int64_t N) {
    sgemm_matmul_bwd(&sgemm_kernel_avx512, dx, dw, dbias, dy, x, w, M, K, N);
}
