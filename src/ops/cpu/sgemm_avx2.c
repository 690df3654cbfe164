/*
 * sgemm_avx2.c — cache-blocked, packed single-precision GEMM for AVX2 + FMA, the driver it
 * shares with sgemm_avx512.c, and the nn.Linear forward/backward and gemm entries built on it.
 *
 * Structure (Goto/BLIS): a register-blocked microkernel runs over packed panels. K is cut
 * into blocks of at most kc so a B micro-panel (kc x nr) stays in L1 while the microkernel
 * sweeps the packed A block (mc x kc) held in L2; the packed B block (kc x nc) is reused for
 * every A block of the thread's rows. Edge tiles (M % mr, N % nr) run the same microkernel
 * on zero-padded panels into a scratch tile that is then merged, so any M, N, K >= 1 works
 * with one kernel. The driver (packing, blocking, threads) is written once and takes an
 * sgemm_kernel (cpu_ops.h): AVX2's 6x16 ymm tile here, AVX-512's 14x32 zmm tile in
 * sgemm_avx512.c. Packing is AVX2 code, which every AVX-512 CPU also runs.
 *
 * Threads: the output is split into a grid of rectangles (over M first, over N when M is too
 * small), one per OpenMP thread; each packs its own panels into buffers on its own stack, so
 * the call allocates nothing, cannot fail and needs no barrier. The price is that B is packed
 * once per row range (twice on 2 threads) and A once per nc columns, a few percent of the
 * multiply at the CLIP shapes (dev/kernels/README.md has the measurements that chose the
 * block sizes).
 *
 * Few rows (decoding: one row per beam): packing B then costs more than the multiply, which
 * only reads B once. When M <= kernel->rows_max_m and B is stored with K contiguous (w of
 * nn.Linear) and A has K contiguous, the kernel's `rows` path streams B instead: it
 * transposes 8x8 (16x16) blocks of B in registers, the same thing packing writes to memory,
 * and runs the same fused multiply-adds in the same order, so its results are bitwise those
 * of the packed path (and of the other instruction set): a row's output never depends on how
 * many rows came with it, on the thread count or on the table.
 *
 * Operands are strided views (cpu_ops.h), so the same code serves x @ w^T (nn.Linear),
 * attention's q @ k^T and p @ v, and the backward products. Packing has fast paths for the
 * two common layouts (unit stride along the packed rows, or along K: 8x8 transposes).
 */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "ops/cpu/cpu_ops.h"

#define MR 6  /* AVX2 microkernel rows (A) */
#define NR 16 /* AVX2 microkernel columns (B): two ymm vectors */

/* Block sizes; overridable at compile time for the tuning runs in dev/kernels. */
#ifndef SGEMM_KC
#define SGEMM_KC 256 /* depth of one packed block: kc x 16 B micro-panel = 16 KiB, in L1 */
#endif
#ifndef SGEMM_MC
#define SGEMM_MC 72 /* rows of the packed A block: 72 x 256 x 4 B = 72 KiB, in L2 */
#endif
#ifndef SGEMM_NC
#define SGEMM_NC 256 /* columns of the packed B block: 256 KiB, in L2/L3 */
#endif
/* Below this many flops a second thread costs more than it saves. */
#define SGEMM_PARALLEL_MIN_FLOPS 4.0e6
/* The rows path is memory-bound: it goes parallel when B is at least this big. */
#ifndef SGEMM_ROWS_PARALLEL_MIN_BYTES
#define SGEMM_ROWS_PARALLEL_MIN_BYTES (512 * 1024)
#endif

_Static_assert(SGEMM_MC % MR == 0 && SGEMM_NC % NR == 0, "blocks must hold whole panels");
_Static_assert(SGEMM_MC * SGEMM_KC <= SGEMM_PACK_A_FLOATS &&
                   SGEMM_NC * SGEMM_KC <= SGEMM_PACK_B_FLOATS && MR * NR <= SGEMM_TILE_FLOATS,
               "the driver's stack buffers hold the AVX2 blocks");

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Transposes 8 rows of 8 floats in place: afterwards r[j] holds the old column j. */
static inline void transpose8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        s[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
    }
}

/* Packs the (rows x kc) slice of a strided matrix into panels of `width` rows, each stored
 * k-major (panel[k * width + r]) and zero-padded to `width` rows. For A, rows are M
 * (width mr); for B the caller passes the transposed view so rows are N (width nr). `width`
 * is a multiple of 8, or one plus 6 (6, 14). `stride_r` and `stride_k` are the element
 * strides along rows and along K. */
static void pack_panels(float *dst, const float *src, int64_t rows, int64_t kc, int64_t stride_r,
                        int64_t stride_k, int width) {
    for (int64_t r0 = 0; r0 < rows; r0 += width, dst += width * kc) {
        int64_t nr = min64(width, rows - r0);
        const float *s = src + r0 * stride_r;
        int64_t k = 0;
        if (stride_k == 1) {
            /* Rows contiguous along K: transpose 8 rows x 8 k at a time. Rows past nr read
             * as zeros (the padding). */
            for (; k + 8 <= kc; k += 8) {
                for (int g = 0; g < width; g += 8) {
                    __m256 v[8];
                    for (int i = 0; i < 8; i++)
                        v[i] = g + i < nr ? _mm256_loadu_ps(s + (g + i) * stride_r + k)
                                          : _mm256_setzero_ps();
                    transpose8(v);
                    int lanes = width - g < 8 ? width - g : 8; /* 8, or 6 at the end of A panels */
                    for (int i = 0; i < 8; i++) {
                        float *d = dst + (k + i) * width + g;
                        if (lanes == 8) {
                            _mm256_storeu_ps(d, v[i]);
                        } else { /* lanes == 6 */
                            _mm_storeu_ps(d, _mm256_castps256_ps128(v[i]));
                            _mm_storel_pi((__m64 *)(d + 4), _mm256_extractf128_ps(v[i], 1));
                        }
                    }
                }
            }
        } else if (stride_r == 1 && nr == width) {
            /* Panel rows contiguous in memory (e.g. p @ v): plain vector copies. */
            for (; k < kc; k++) {
                const float *sk = s + k * stride_k;
                int r = 0;
                for (; r + 8 <= width; r += 8)
                    _mm256_storeu_ps(dst + k * width + r, _mm256_loadu_ps(sk + r));
                for (; r < width; r++) dst[k * width + r] = sk[r];
            }
        }
        for (; k < kc; k++) /* generic strides and the K tail */
            for (int r = 0; r < width; r++)
                dst[k * width + r] = r < nr ? s[r * stride_r + k * stride_k] : 0.0f;
    }
}

/* Writes a finished 6x16 tile. Kept out of line on purpose: inlined, GCC keeps alpha, beta
 * and the bias rows in registers across the microkernel's k loop, which then spills an
 * accumulator to the stack on every iteration (seen in perf annotate: 5x slower). */
__attribute__((noinline)) static void tile_store(const __m256 *acc, float *restrict c, int64_t ldc,
                                                 sgemm_store st) {
    const __m256 alpha = _mm256_set1_ps(st.alpha), beta = _mm256_set1_ps(st.beta);
    const int use_bias = st.beta == 0.0f && st.bias, scale_c = st.beta != 0.0f && st.beta != 1.0f;
    __m256 add0 = use_bias ? _mm256_loadu_ps(st.bias) : _mm256_setzero_ps();
    __m256 add1 = use_bias ? _mm256_loadu_ps(st.bias + 8) : _mm256_setzero_ps();
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * ldc;
        if (st.beta != 0.0f) {
            add0 = _mm256_loadu_ps(ci);
            add1 = _mm256_loadu_ps(ci + 8);
            if (scale_c) add0 = _mm256_mul_ps(add0, beta), add1 = _mm256_mul_ps(add1, beta);
        }
        _mm256_storeu_ps(ci, _mm256_fmadd_ps(alpha, acc[2 * i], add0));
        _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(alpha, acc[2 * i + 1], add1));
    }
}

/* The 6x16 microkernel: c (6,16) = store(ap (6,kc) @ bp (kc,16)), ap and bp packed k-major.
 * The arrays of accumulators are fully unrolled into registers by -O3: 12 accumulators, two
 * B vectors and one broadcast A value use 15 of the 16 ymm registers. */
static void kernel_6x16(int64_t kc, const float *restrict ap, const float *restrict bp,
                        float *restrict c, int64_t ldc, sgemm_store st) {
    __m256 acc[MR][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
#ifndef SGEMM_NO_PREFETCH_C /* (the switch is for dev/kernels measurements) */
    /* Fetch the C tile now: it is read or written only after the k loop, and at the CLIP
     * shapes C is far bigger than the caches, so waiting for it then would idle the FMAs. */
    for (int i = 0; i < MR; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
#endif
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(bp + k * NR), b1 = _mm256_load_ps(bp + k * NR + 8);
        for (int i = 0; i < MR; i++) {
            __m256 a = _mm256_broadcast_ss(ap + k * MR + i);
            acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
        }
    }
    /* a copy, so that only the copy's address escapes and acc stays in registers */
    __m256 out[2 * MR];
    for (int i = 0; i < MR; i++) out[2 * i] = acc[i][0], out[2 * i + 1] = acc[i][1];
    tile_store(out, c, ldc, st);
}

/* The rows path for AVX2 (the file comment): c[0:M, n0:n1] for M <= SGEMM_ROWS_MAX_M rows
 * of a (K contiguous) times B stored as (N, K) rows with K contiguous, 8 columns at a time.
 * For each block of 8 k the 8 B rows are loaded and transposed in registers so that t[kk]
 * holds B(k + kk, j..j+7), and every row's accumulator takes one fused multiply-add per k,
 * in k order, from zero at each kc block; the blocks are stored with the packed path's
 * rule. That order and that store rule are what make the result bitwise the packed path's. */
static void rows_avx2(int64_t M, int64_t n0, int64_t n1, int64_t K, int64_t kc_step,
                      sgemm_view a, sgemm_view b, float *c, int64_t ldc, sgemm_store st) {
    const __m256 alpha = _mm256_set1_ps(st.alpha), beta = _mm256_set1_ps(st.beta);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t j = n0; j < n1; j += 8) {
        const int64_t nj = min64(8, n1 - j);
        const __m256i jmask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nj), lane);
        const float *bj = b.data + j * b.col_stride; /* B(k, j + r) = bj[r * col_stride + k] */
        __m256 cv[SGEMM_ROWS_MAX_M];
        for (int64_t pc = 0; pc < K; pc += kc_step) {
            const int64_t kc = min64(kc_step, K - pc);
            __m256 acc[SGEMM_ROWS_MAX_M];
            for (int64_t i = 0; i < M; i++) acc[i] = _mm256_setzero_ps();
            for (int64_t k = pc; k < pc + kc; k += 8) {
                const int64_t nk = min64(8, pc + kc - k);
                const __m256i kmask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nk), lane);
                __m256 t[8];
                for (int r = 0; r < 8; r++)
                    t[r] = r >= nj   ? _mm256_setzero_ps()
                           : nk == 8 ? _mm256_loadu_ps(bj + r * b.col_stride + k)
                                     : _mm256_maskload_ps(bj + r * b.col_stride + k, kmask);
                transpose8(t);
                for (int64_t kk = 0; kk < nk; kk++)
                    for (int64_t i = 0; i < M; i++)
                        acc[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(a.data + i * a.row_stride + k + kk),
                                                 t[kk], acc[i]);
            }
            for (int64_t i = 0; i < M; i++) {
                if (pc == 0) {
                    float *ci = c + i * ldc + j;
                    if (st.beta == 0.0f)
                        cv[i] = st.bias ? _mm256_maskload_ps(st.bias + j, jmask) : _mm256_setzero_ps();
                    else if (st.beta == 1.0f)
                        cv[i] = _mm256_maskload_ps(ci, jmask);
                    else
                        cv[i] = _mm256_mul_ps(_mm256_maskload_ps(ci, jmask), beta);
                }
                cv[i] = _mm256_fmadd_ps(alpha, acc[i], cv[i]);
            }
        }
        for (int64_t i = 0; i < M; i++) _mm256_maskstore_ps(c + i * ldc + j, jmask, cv[i]);
    }
}

const sgemm_kernel sgemm_kernel_avx2 = {
    .name = "avx2",
    .mr = MR, .nr = NR,
    .kc = SGEMM_KC, .mc = SGEMM_MC, .nc = SGEMM_NC,
    .tile = kernel_6x16,
    .rows = rows_avx2,
    .rows_max_m = 4, /* dev/kernels/bench_rows: level with packing from M = 5 on */
    .rows_width = 8,
};

/* ---- the shared driver -------------------------------------------------------------- */

/* c block (mc, nc) = store(packed A (mc, kc) @ packed B (kc, nc)). The B micro-panel is the
 * outer loop so it stays in L1 while the A panels stream from L2. */
static void macro_kernel(const sgemm_kernel *kern, int64_t mc, int64_t nc, int64_t kc,
                         const float *apack, const float *bpack, float *c, int64_t ldc,
                         sgemm_store st) {
    const sgemm_store plain = {1.0f, 0.0f, NULL};
    const int64_t mr_full = kern->mr, nr_full = kern->nr;
    for (int64_t j = 0; j < nc; j += nr_full) {
        int64_t nr = min64(nr_full, nc - j);
        const float *bp = bpack + j * kc;
        sgemm_store tile_st = st;
        if (st.bias) tile_st.bias = st.bias + j;
        for (int64_t i = 0; i < mc; i += mr_full) {
            int64_t mr = min64(mr_full, mc - i);
            const float *ap = apack + i * kc;
            float *cij = c + i * ldc + j;
            if (mr == mr_full && nr == nr_full) {
                kern->tile(kc, ap, bp, cij, ldc, tile_st);
                continue;
            }
            _Alignas(64) float tile[SGEMM_TILE_FLOATS];
            kern->tile(kc, ap, bp, tile, nr_full, plain);
            for (int64_t r = 0; r < mr; r++)
                for (int64_t s = 0; s < nr; s++) {
                    float *cv = cij + r * ldc + s, add;
                    if (st.beta == 0.0f) add = st.bias ? tile_st.bias[s] : 0.0f;
                    else add = st.beta == 1.0f ? *cv : *cv * st.beta;
                    *cv = fmaf(st.alpha, tile[r * nr_full + s], add);
                }
        }
    }
}

/* One thread's rectangle c[m0:m1, n0:n1] over the full K.
 * A rectangle wider than the kernel's nc packs B for up to SGEMM_WIDE_NC columns at once
 * into a heap buffer, so that each block of A is packed once per K block instead of once
 * per nc columns (ViT-B/32's fc1, 3072 wide: 12 times). The width of the B block changes
 * which columns a packed A block meets, never the order in which an element's products are
 * summed (that is the K blocks'), so the result is the same bits either way. Without the
 * buffer (allocation failed) it keeps the stack block. */
#define SGEMM_WIDE_NC 4096
static void sgemm_range(const sgemm_kernel *kern, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                        int64_t K, sgemm_view a, sgemm_view b, const float *panels, int64_t panels_ld,
                        float *c, int64_t ldc, sgemm_store st) {
    _Alignas(64) float apack[SGEMM_PACK_A_FLOATS];
    _Alignas(64) float bstack[SGEMM_PACK_B_FLOATS];
    float *bpack = bstack, *wide = NULL;
    const int64_t kc_step = sgemm_kc_step(kern, K);
    const int64_t mc_step = cpu_balanced_step(m1 - m0, kern->mc, kern->mr);
    int64_t nc_max = kern->nc;
    if (panels) {
        nc_max = n1 - n0; /* B is packed already: all columns, A packed once per K block */
    } else if (n1 - n0 > kern->nc && m1 - m0 > mc_step) { /* several A blocks would repack */
        int64_t w = min64(n1 - n0, SGEMM_WIDE_NC);
        w = (w + kern->nr - 1) / kern->nr * kern->nr;
        wide = aligned_alloc(64, (size_t)(w * kc_step) * sizeof(float));
        if (wide) bpack = wide, nc_max = w;
    }
    const int64_t nc_step = cpu_balanced_step(n1 - n0, nc_max, kern->nr);
    for (int64_t jc = n0; jc < n1; jc += nc_step) {
        int64_t nc = min64(nc_step, n1 - jc);
        for (int64_t pc = 0; pc < K; pc += kc_step) {
            int64_t kc = min64(kc_step, K - pc);
            /* B is packed through its transpose: panel rows are B's columns. Prepacked: the
             * block's panels start pc * panels_ld floats in, column jc's jc * kc further. */
            const float *bp = bpack;
            if (panels)
                bp = panels + pc * panels_ld + jc * kc;
            else
                pack_panels(bpack, b.data + pc * b.row_stride + jc * b.col_stride, nc, kc,
                            b.col_stride, b.row_stride, kern->nr);
            /* The first K block stores as asked (bias, beta); later ones add to it. */
            sgemm_store block_st = {st.alpha, 1.0f, NULL};
            if (pc == 0) block_st = (sgemm_store){st.alpha, st.beta, st.bias ? st.bias + jc : NULL};
            for (int64_t ic = m0; ic < m1; ic += mc_step) {
                int64_t mc = min64(mc_step, m1 - ic);
                pack_panels(apack, a.data + ic * a.row_stride + pc * a.col_stride, mc, kc,
                            a.row_stride, a.col_stride, kern->mr);
                macro_kernel(kern, mc, nc, kc, apack, bp, c + ic * ldc + jc, ldc, block_st);
            }
        }
    }
    free(wide);
}

/* The rows path over threads: contiguous column ranges (whole rows_width blocks), one per
 * thread, each streaming its part of B once. */
static void sgemm_rows(const sgemm_kernel *kern, int64_t M, int64_t N, int64_t K, sgemm_view a,
                       sgemm_view b, float *c, int64_t ldc, sgemm_store st, int max_threads) {
    const int64_t kc_step = sgemm_kc_step(kern, K);
    const int64_t blocks = ceil_div(N, kern->rows_width);
    int64_t threads = max_threads > 1 ? max_threads : 1;
    if ((double)N * (double)K * sizeof(float) < SGEMM_ROWS_PARALLEL_MIN_BYTES) threads = 1;
    threads = min64(threads, blocks);
    const int team = (int)threads;
    (void)team; /* unused without OpenMP */
    MMT_OMP("omp parallel for num_threads(team) schedule(static) if(team > 1)")
    for (int64_t t = 0; t < threads; t++) {
        int64_t n0 = blocks * t / threads * kern->rows_width;
        int64_t n1 = min64(N, blocks * (t + 1) / threads * kern->rows_width);
        if (n0 < n1) kern->rows(M, n0, n1, K, kc_step, a, b, c, ldc, st);
    }
}

void sgemm_run(const sgemm_kernel *kern, int64_t M, int64_t N, int64_t K, sgemm_view a,
               sgemm_view b, float *c, int64_t ldc, sgemm_store st, int max_threads) {
    sgemm_run_prepacked(kern, M, N, K, a, b, NULL, 0, c, ldc, st, max_threads);
}

void sgemm_run_prepacked(const sgemm_kernel *kern, int64_t M, int64_t N, int64_t K, sgemm_view a,
                         sgemm_view b, const float *panels, int64_t panels_ld, float *c, int64_t ldc,
                         sgemm_store st, int max_threads) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* empty sum: c = bias (or 0), or beta * c */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                float *cv = c + i * ldc + j;
                if (st.beta == 0.0f) *cv = st.bias ? st.bias[j] : 0.0f;
                else if (st.beta != 1.0f) *cv *= st.beta;
            }
        return;
    }
    if (M <= kern->rows_max_m && a.col_stride == 1 && b.row_stride == 1) {
        sgemm_rows(kern, M, N, K, a, b, c, ldc, st, max_threads);
        return;
    }
    const int64_t mblocks = ceil_div(M, kern->mr), nblocks = ceil_div(N, kern->nr);
    int64_t threads = max_threads > 1 ? max_threads : 1;
    if (2.0 * (double)M * (double)N * (double)K < SGEMM_PARALLEL_MIN_FLOPS) threads = 1;
    /* Each thread packs its rows of A and its columns of B: a row split packs all of B on
     * every thread, a column split all of A. So split the columns when B is the wider one
     * (N > M: few rows, e.g. one image's 50 tokens against a 768 x 3072 weight, where
     * packing B twice cost more than the GEMM's gain from the second thread), else rows
     * first and columns only when rows run out. The split never changes an element's sum. */
    int64_t tm, tn;
    if (N > M && nblocks >= threads) {
        tn = threads;
        tm = 1;
    } else {
        tm = min64(threads, mblocks);
        tn = min64(nblocks, threads / tm);
    }
    const int64_t items = tm * tn;
    const int team = (int)items; /* one rectangle per thread */
    (void)team;                  /* unused without OpenMP */
    MMT_OMP("omp parallel for num_threads(team) schedule(static) if(team > 1)")
    for (int64_t it = 0; it < items; it++) {
        int64_t im = it / tn, in = it % tn;
        int64_t m0 = mblocks * im / tm * kern->mr, m1 = min64(M, mblocks * (im + 1) / tm * kern->mr);
        int64_t n0 = nblocks * in / tn * kern->nr, n1 = min64(N, nblocks * (in + 1) / tn * kern->nr);
        sgemm_range(kern, m0, m1, n0, n1, K, a, b, panels, panels_ld, c, ldc, st);
    }
}

void sgemm_avx2(int64_t M, int64_t N, int64_t K, sgemm_view a, sgemm_view b, float *c,
                int64_t ldc, const float *bias, int accumulate, int max_threads) {
    sgemm_store st = {1.0f, accumulate ? 1.0f : 0.0f, accumulate ? NULL : bias};
    sgemm_run(&sgemm_kernel_avx2, M, N, K, a, b, c, ldc, st, max_threads);
}

void sgemm_matmul_fwd(const sgemm_kernel *kern,
                      float *y,           // (M, N)
                      const float *x,     // (M, K)
                      const float *w,     // (N, K)
                      const float *bias,  // (N) or NULL
                      int64_t M, int64_t K, int64_t N) {
    sgemm_view a = {x, K, 1}; /* A(i, k) = x[i*K + k] */
    sgemm_view b = {w, 1, K}; /* B(k, j) = w[j*K + k]: w^T without a copy */
    sgemm_store st = {1.0f, 0.0f, bias};
    sgemm_run(kern, M, N, K, a, b, y, N, st, cpu_max_threads());
}

void matmul_fwd_avx2(float *y, const float *x, const float *w, const float *bias, int64_t M,
                     int64_t K, int64_t N) {
    sgemm_matmul_fwd(&sgemm_kernel_avx2, y, x, w, bias, M, K, N);
}

int64_t sgemm_panels_ld(const sgemm_kernel *kern, int64_t N) { return ceil_div(N, kern->nr) * kern->nr; }

/* The panels sgemm_range would pack for columns [0, N), every K block, once: pack_panels
 * over the transposed view as there, so the floats are the same. */
void sgemm_pack_b(const sgemm_kernel *kern, float *dst, const float *w, int64_t K, int64_t N) {
    const int64_t kc_step = sgemm_kc_step(kern, K), ld = sgemm_panels_ld(kern, N);
    MMT_OMP("omp parallel for schedule(static) if(N * K >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t pc = 0; pc < K; pc += kc_step)
        pack_panels(dst + pc * ld, w + pc, N, min64(kc_step, K - pc), K, 1, kern->nr);
}

void sgemm_matmul_fwd_packed(const sgemm_kernel *kern, float *y, const float *x, const float *w,
                             const float *panels, const float *bias, int64_t M, int64_t K, int64_t N) {
    sgemm_view a = {x, K, 1};
    sgemm_view b = {w, 1, K};
    sgemm_store st = {1.0f, 0.0f, bias};
    sgemm_run_prepacked(kern, M, N, K, a, b, panels, panels ? sgemm_panels_ld(kern, N) : 0, y, N, st,
                        cpu_max_threads());
}

int64_t matmul_pack_avx2(float *dst, const float *w, int64_t K, int64_t N) {
    if (dst) sgemm_pack_b(&sgemm_kernel_avx2, dst, w, K, N);
    return sgemm_panels_ld(&sgemm_kernel_avx2, N) * K;
}

void matmul_fwd_packed_avx2(float *y, const float *x, const float *w, const float *panels,
                            const float *bias, int64_t M, int64_t K, int64_t N) {
    sgemm_matmul_fwd_packed(&sgemm_kernel_avx2, y, x, w, panels, bias, M, K, N);
}

/* c (M,N) = alpha op(a) @ op(b) + beta c (ops.h). A transposed operand is just a view with
 * its strides swapped, so all four combinations run the same packed kernel; alpha and beta
 * are applied when a tile is stored, costing nothing extra. alpha == 0 or K == 0 leaves only
 * the beta * c part, and like BLAS then reads neither a nor b. */
void sgemm_gemm(const sgemm_kernel *kern, int ta, int tb, int64_t M, int64_t N, int64_t K,
                float alpha,
                const float *a,  // (M, K) with row stride lda, or (K, M) when ta
                int64_t lda,
                const float *b,  // (K, N) with row stride ldb, or (N, K) when tb
                int64_t ldb, float beta,
                float *c,  // (M, N) with row stride ldc
                int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (alpha == 0.0f) K = 0;
    sgemm_view av = ta ? (sgemm_view){a, 1, lda} : (sgemm_view){a, lda, 1};
    sgemm_view bv = tb ? (sgemm_view){b, 1, ldb} : (sgemm_view){b, ldb, 1};
    sgemm_store st = {alpha, beta, NULL};
    sgemm_run(kern, M, N, K, av, bv, c, ldc, st, cpu_max_threads());
}

void gemm_avx2(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *a,
               int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    sgemm_gemm(&sgemm_kernel_avx2, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* dbias (N) += column sums of dy (M, N). Threads take disjoint column blocks and each sums
 * its columns over the rows in order, so the result is the same for any thread count. Rows
 * are summed in blocks of ROWS first, keeping the float error near eps (ROWS + M / ROWS)
 * rather than eps M. */
static void column_sums_add(float *dbias, const float *dy, int64_t M, int64_t N) {
    enum { BLOCK = 32, ROWS = 64 }; /* columns per task (four ymm), rows per partial sum */
    const int64_t blocks = ceil_div(N, BLOCK);
    MMT_OMP("omp parallel for schedule(static) if(M * N >= CPU_PARALLEL_MIN_ELEMENTS && blocks > 1)")
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t j0 = blk * BLOCK, width = min64(BLOCK, N - j0);
        _Alignas(32) float total[BLOCK] = {0}, part[BLOCK];
        for (int64_t i0 = 0; i0 < M; i0 += ROWS) {
            const int64_t i1 = min64(M, i0 + ROWS);
            if (width == BLOCK) {
                __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                                 _mm256_setzero_ps()};
                for (int64_t i = i0; i < i1; i++)
                    for (int v = 0; v < 4; v++)
                        acc[v] = _mm256_add_ps(acc[v], _mm256_loadu_ps(dy + i * N + j0 + 8 * v));
                for (int v = 0; v < 4; v++) _mm256_store_ps(part + 8 * v, acc[v]);
            } else {
                for (int64_t j = 0; j < width; j++) part[j] = 0.0f;
                for (int64_t i = i0; i < i1; i++)
                    for (int64_t j = 0; j < width; j++) part[j] += dy[i * N + j0 + j];
            }
            for (int64_t j = 0; j < width; j++) total[j] += part[j];
        }
        for (int64_t j = 0; j < width; j++) dbias[j0 + j] += total[j];
    }
}

/* Backward of y = x @ w^T + bias as two GEMMs on views of the same buffers (no copies):
 * dx (M,K) += dy (M,N) @ w (N,K) and dw (N,K) += dy^T (N,M) @ x (M,K). The reduction of dw
 * runs over the M = batch x tokens rows inside one thread per output tile, so dw is
 * deterministic (no atomics, no per-thread partial sums) and equal for any thread count. */
void sgemm_matmul_bwd(const sgemm_kernel *kern,
                      float *dx,        // (M, K) or NULL
                      float *dw,        // (N, K) or NULL
                      float *dbias,     // (N) or NULL
                      const float *dy,  // (M, N)
                      const float *x,   // (M, K)
                      const float *w,   // (N, K)
                      int64_t M, int64_t K, int64_t N) {
    const int threads = cpu_max_threads();
    const sgemm_store add = {1.0f, 1.0f, NULL};
    if (dx) {
        sgemm_view a = {dy, N, 1}; /* (M, N) */
        sgemm_view b = {w, K, 1};  /* (N, K) */
        sgemm_run(kern, M, K, N, a, b, dx, K, add, threads);
    }
    if (dw) {
        sgemm_view a = {dy, 1, N}; /* dy^T: (N, M) */
        sgemm_view b = {x, K, 1};  /* (M, K) */
        sgemm_run(kern, N, K, M, a, b, dw, K, add, threads);
    }
    if (dbias) column_sums_add(dbias, dy, M, N);
}

void matmul_bwd_avx2(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                     const float *w, int64_t M, int64_t K, int64_t N) {
    sgemm_matmul_bwd(&sgemm_kernel_avx2, dx, dw, dbias, dy, x, w, M, K, N);
}
