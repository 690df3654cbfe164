/*
 * qgemm_avx2.c — the int8 GEMM of s8_matmul_fwd (ops.h): the driver every instruction set
 * shares (threads, blocking, packing x), the AVX2 microkernel and tile store, the "avx2"
 * table's s8_matmul_fwd and s8_quantize_rows.
 *
 * W comes packed once at load (ops.h s8_pack: 16-row panels of 4-byte k groups, one zmm or
 * two ymm per group), so only x is packed per call: a block of mb rows x kgb groups at a
 * time, into tiles of mr rows stored group-major, so the microkernel broadcasts one row's 4
 * bytes and multiplies them into 16 columns of W per vector.
 *
 * Blocking (Goto, as sgemm_avx2.c): the tile's panels of W (nv x kg x 64 bytes) stay in
 * L1/L2 while the tiles of the packed x block (in L2) sweep them. The int32 sums are exact,
 * so K blocks only matter for the stack: when K needs more than one block, the partial sums
 * wait in y's own memory as int32 until the last block applies the float epilogue. Every
 * kernel therefore gives the same integers, and the one epilogue (ops.h) the same floats.
 *
 * Products without saturation: vpdpbusd (the VNNI kernels) multiplies unsigned by signed
 * bytes and sums 4 of them into int32 exactly, so x is fed as x + 128 and 128 * rowsum(W) is
 * subtracted at the end (wrapping int32 arithmetic makes that exact whenever the true sum
 * fits). AVX2 has only vpmaddubsw, which adds two u8 x s8 products into a SATURATING int16:
 * with x + 128 that overflows (2 * 255 * 127), so it gets |x| as the unsigned operand and
 * sign(w, x) (w negated where x < 0, zeroed where x == 0) as the signed one: with values in
 * [-127, 127] a pair is at most 2 * 127 * 127 = 32258 < 32767, and vpmaddwd with ones then
 * widens the pairs to int32.
 *
 * Threads: like sgemm, the output is split into rectangles over M first (each packs its own
 * x rows and sweeps all of W) and over N when M is too small (decoding: M = 1..8), one per
 * OpenMP thread, each with its buffers on its own stack.
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
static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Below this many multiply-adds a second thread costs more than it saves. */
#define QGEMM_PARALLEL_MIN_MACS 4.0e6

/* ---- packing x ----------------------------------------------------------------------- */

/* Packs rows [0, rows) of x (row stride K), groups [g0, g0 + kg), into tiles of mr rows:
 * tile t at dst + t * mr * kg * per_row (per_row = 4 bytes, 8 for the raw + |x| form), its
 * bytes [g * mr * 4 + i * 4 + t] = x[i, 4 (g0 + g) + t] (+ 128 when a_u8), then for raw
 * tiles |x| in the same order. Columns past K and rows past `rows` up to whole tiles read
 * as x = 0. */
static void pack_x(uint8_t *dst, const int8_t *x, int64_t rows, int64_t K, int64_t g0, int64_t kg,
                   int mr, int a_u8) {
    const int64_t per_row = a_u8 ? 4 : 8;
    const int64_t tiles = ceil_div(rows, mr);
    const uint32_t zero = a_u8 ? 0x80808080u : 0u;
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t t = 0; t < tiles; t++) {
        uint8_t *tile = dst + t * mr * kg * per_row;
        uint8_t *tile_abs = tile + mr * kg * 4; /* raw tiles only */
        for (int i = 0; i < mr; i++) {
            const int64_t r = t * mr + i;
            uint8_t *d = tile + i * 4, *da = tile_abs + i * 4;
            int64_t g = 0;
            if (r < rows) {
                const int8_t *s = x + r * K + g0 * 4;
                /* 8 groups (32 bytes) at a time while they lie inside the row */
                for (; g + 8 <= kg && (g0 + g + 8) * 4 <= K; g += 8) {
                    __m256i v = _mm256_loadu_si256((const __m256i *)(s + g * 4));
                    __m256i u = a_u8 ? _mm256_xor_si256(v, flip) : v;
                    uint32_t out[8], outa[8];
                    _mm256_storeu_si256((__m256i *)out, u);
                    if (!a_u8) _mm256_storeu_si256((__m256i *)outa, _mm256_abs_epi8(v));
                    for (int j = 0; j < 8; j++) {
                        memcpy(d + (g + j) * mr * 4, &out[j], 4);
                        if (!a_u8) memcpy(da + (g + j) * mr * 4, &outa[j], 4);
                    }
                }
                for (; g < kg; g++) /* the tail, one byte at a time (K may end inside a group) */
                    for (int b = 0; b < 4; b++) {
                        const int64_t k = (g0 + g) * 4 + b;
                        const int8_t v = k < K ? s[g * 4 + b] : 0;
                        d[g * mr * 4 + b] = a_u8 ? (uint8_t)(v ^ 0x80) : (uint8_t)v;
                        if (!a_u8) da[g * mr * 4 + b] = (uint8_t)(v < 0 ? -v : v);
                    }
            }
            for (; g < kg; g++) { /* rows past the end */
                memcpy(d + g * mr * 4, &zero, 4);
                if (!a_u8) memcpy(da + g * mr * 4, &zero, 4);
            }
        }
    }
}

/* ---- the driver ---------------------------------------------------------------------- */

/* One thread's rectangle: rows [m0, m1), panels [q0, q1) of W. */
static void qgemm_range(const qgemm_kernel *kern, int64_t m0, int64_t m1, int64_t q0, int64_t q1,
                        float *y, const int8_t *xq, const int8_t *panels, int64_t N, int64_t K,
                        const qgemm_epilogue *e) {
    _Alignas(64) uint8_t apack[QGEMM_PACK_A_BYTES];
    _Alignas(64) int32_t acc[QGEMM_MR_MAX * QGEMM_NV_MAX * 16];
    const int64_t KG = ceil_div(K, 4), per_row = kern->a_u8 ? 4 : 8;
    const int64_t kgb = KG > 0 ? cpu_balanced_step(KG, kern->kgb, 1) : 1;
    const int64_t mb = cpu_balanced_step(m1 - m0, kern->mb, kern->mr);
    const int64_t ld_acc = 16 * kern->nv;
    for (int64_t ic = m0; ic < m1; ic += mb) {
        const int64_t mrows = min64(mb, m1 - ic);
        int64_t g0 = 0;
        do {
            const int64_t kg = min64(kgb, KG - g0);
            const int first = g0 == 0, last = g0 + kg >= KG;
            pack_x(apack, xq + ic * K, mrows, K, g0, kg, kern->mr, kern->a_u8);
            for (int64_t jp = q0; jp < q1; jp += kern->nv) {
                const int np = (int)min64(kern->nv, q1 - jp);
                const int64_t col0 = jp * 16, cols = min64(np * 16, N - col0);
                const int8_t *bp = panels + jp * KG * 64 + g0 * 64;
                for (int64_t ir = 0; ir < mrows; ir += kern->mr) {
                    const int rows = (int)min64(kern->mr, mrows - ir);
                    float *yt = y + (ic + ir) * N + col0;
                    /* Fetch the output tile now (written only after the k loop): at the CLIP
                     * shapes y is far bigger than the caches (sgemm's kernels do the same). */
                    for (int r = 0; r < rows; r++)
                        for (int64_t c = 0; c < cols; c += 16)
                            _mm_prefetch((const char *)(yt + r * N + c), _MM_HINT_T0);
                    kern->tile(kg, apack + ir * kg * per_row, bp, KG * 64, rows, np, acc);
                    kern->store(acc, ld_acc, rows, cols, first, last, ic + ir, col0, e, yt, N);
                }
            }
            g0 += kg;
        } while (g0 < KG);
    }
}

void qgemm_matmul(const qgemm_kernel *kern, float *y, const int8_t *xq, const float *xscale,
                  const mmt_qmat *w, const float *bias, int64_t M, int max_threads) {
    const int64_t N = w->rows, K = w->cols;
    if (M <= 0 || N <= 0) return;
    const int64_t NP = ceil_div(N, 16), KG = ceil_div(K, 4);
    const int8_t *panels = w->s8_packed;
    const qgemm_epilogue e = {xscale, w->scale, bias,
                              kern->a_u8 ? (const int32_t *)(panels + NP * KG * 64) : NULL};
    const int64_t mtiles = ceil_div(M, kern->mr), pgroups = ceil_div(NP, kern->nv);
    int64_t threads = max_threads > 1 ? max_threads : 1;
    if ((double)M * (double)N * (double)K < QGEMM_PARALLEL_MIN_MACS) threads = 1;
    /* Few rows (one image: 50 tokens, 7 tiles of 8): a row split leaves one thread 4 tiles and
     * the other 2 and a sliver, so split the weight's panels instead (prepacked: no thread
     * packs more for it). Many rows: rows first. The split never changes a sum. */
    int64_t tm, tn;
    if (mtiles < 8 * threads && pgroups >= threads) {
        tm = 1;
        tn = threads;
    } else {
        tm = min64(threads, mtiles);
        tn = min64(pgroups, threads / tm);
    }
    const int64_t items = tm * tn;
    const int team = (int)items;
    (void)team; /* unused without OpenMP */
    MMT_OMP("omp parallel for num_threads(team) schedule(static) if(team > 1)")
    for (int64_t it = 0; it < items; it++) {
        const int64_t im = it / tn, in = it % tn;
        const int64_t m0 = mtiles * im / tm * kern->mr;
        const int64_t m1 = min64(M, mtiles * (im + 1) / tm * kern->mr);
        const int64_t q0 = pgroups * in / tn * kern->nv;
        const int64_t q1 = min64(NP, pgroups * (in + 1) / tn * kern->nv);
        if (m0 < m1 && q0 < q1) qgemm_range(kern, m0, m1, q0, q1, y, xq, panels, N, K, &e);
    }
}

/* ---- the AVX2 tile store (also the AVX-VNNI kernel's) -------------------------------- */

void qgemm_store_avx2(const int32_t *acc, int64_t ld_acc, int rows, int64_t cols, int first,
                      int last, int64_t row0, int64_t col0, const qgemm_epilogue *e, float *y,
                      int64_t ldy) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t j = 0; j < cols; j += 8) {
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)min64(8, cols - j)), lane);
        const int64_t n = col0 + j;
        __m256 ws = _mm256_setzero_ps(), b = _mm256_setzero_ps();
        __m256i corr = _mm256_setzero_si256();
        if (last) {
            ws = _mm256_maskload_ps(e->wscale + n, mask);
            if (e->bias) b = _mm256_maskload_ps(e->bias + n, mask);
            if (e->rowsum) /* 128 * rowsum; the layout pads rowsum to whole panels */
                corr = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(e->rowsum + n)), 7);
        }
        for (int i = 0; i < rows; i++) {
            int *yi = (int *)(y + i * ldy + j);
            __m256i a = _mm256_loadu_si256((const __m256i *)(acc + i * ld_acc + j));
            if (!first) a = _mm256_add_epi32(a, _mm256_maskload_epi32(yi, mask));
            if (!last) {
                _mm256_maskstore_epi32(yi, mask, a);
                continue;
            }
            a = _mm256_sub_epi32(a, corr);
            __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(a), _mm256_set1_ps(e->xscale[row0 + i]));
            _mm256_maskstore_ps(y + i * ldy + j, mask, _mm256_fmadd_ps(f, ws, b));
        }
    }
}

/* ---- the AVX2 microkernel: 4 rows x 16 columns --------------------------------------- */

#define MR 4
#define NV 1
#define MB 48   /* 48 rows x 1024 k x (x, |x|) = 96 KiB of packed x, in L2 */
#define KGB 256 /* 1024 k per block: a 16-column panel slice is 16 KiB, in L1 */
_Static_assert(MR <= QGEMM_MR_MAX && NV <= QGEMM_NV_MAX && MB % MR == 0, "tile limits");
_Static_assert(MB * KGB * 8 <= QGEMM_PACK_A_BYTES, "the packed x block fits the stack buffer");

static inline int32_t load4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The body for a constant row count: per group, two ymm of W (16 rows x 4 k) and for each
 * row of x its 4 bytes and their absolute values broadcast; 4 sums of 2 products per lane
 * and row. */
static inline __attribute__((always_inline)) void tile_rows(int64_t kg, const uint8_t *ap,
                                                            const int8_t *bp, int32_t *out,
                                                            const int rows) {
    const __m256i ones = _mm256_set1_epi16(1);
    const uint8_t *aabs = ap + MR * kg * 4;
    /* Unsigned lanes (wrapping adds, one vector type throughout): with __m256i GCC 12 keeps
     * the array in memory and stores it every iteration (qgemm_avx512vnni.c). */
    __v8su acc[MR][2];
    for (int i = 0; i < rows; i++) acc[i][0] = acc[i][1] = (__v8su)_mm256_setzero_si256();
    for (int64_t g = 0; g < kg; g++) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(bp + g * 64));
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(bp + g * 64 + 32));
        for (int i = 0; i < rows; i++) {
            const __m256i x = _mm256_set1_epi32(load4(ap + g * MR * 4 + i * 4));
            const __m256i xa = _mm256_set1_epi32(load4(aabs + g * MR * 4 + i * 4));
            __m256i p0 = _mm256_maddubs_epi16(xa, _mm256_sign_epi8(b0, x));
            __m256i p1 = _mm256_maddubs_epi16(xa, _mm256_sign_epi8(b1, x));
            acc[i][0] += (__v8su)_mm256_madd_epi16(p0, ones);
            acc[i][1] += (__v8su)_mm256_madd_epi16(p1, ones);
        }
    }
    for (int i = 0; i < rows; i++) {
        _mm256_storeu_si256((__m256i *)(out + i * 16 * NV), (__m256i)acc[i][0]);
        _mm256_storeu_si256((__m256i *)(out + i * 16 * NV + 8), (__m256i)acc[i][1]);
    }
}

static void tile_avx2(int64_t kg, const uint8_t *ap, const int8_t *bp, int64_t panel_stride,
                      int rows, int np, int32_t *acc) {
    (void)panel_stride, (void)np; /* one panel per tile */
    switch (rows) {
    case 1: tile_rows(kg, ap, bp, acc, 1); break;
    case 2: tile_rows(kg, ap, bp, acc, 2); break;
    case 3: tile_rows(kg, ap, bp, acc, 3); break;
    default: tile_rows(kg, ap, bp, acc, 4); break;
    }
}

const qgemm_kernel qgemm_kernel_avx2 = {
    .name = "avx2",
    .mr = MR, .nv = NV, .a_u8 = 0,
    .mb = MB, .kgb = KGB,
    .tile = tile_avx2,
    .store = qgemm_store_avx2,
};

/* ---- the "avx2" table's entries ------------------------------------------------------ */

static pthread_once_t avx2_once = PTHREAD_ONCE_INIT;
static const qgemm_kernel *avx2_kernel;

static void avx2_choose(void) {
    avx2_kernel = mmt_cpu_detect().avx_vnni ? &qgemm_kernel_avxvnni : &qgemm_kernel_avx2;
}

/* AVX-VNNI where cpuid has it (Alder Lake and later, Zen 5), the sign trick elsewhere: the
 * same integers either way. */
void s8_matmul_fwd_avx2(float *y, const int8_t *xq, const float *xscale, const mmt_qmat *w,
                        const float *bias, int64_t M) {
    pthread_once(&avx2_once, avx2_choose);
    qgemm_matmul(avx2_kernel, y, xq, xscale, w, bias, M, cpu_max_threads());
}

/* ---- s8_quantize_rows ------------------------------------------------------------------ */

/* One element by the rule of ops.h (the vector loop's tail). */
static inline int8_t quantize_one(float x, float inv) {
    float r = nearbyintf(x * inv);
    r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
    return r == r ? (int8_t)r : 0;
}

/* Each row: the max of |x| (exact in any order), then x * inv rounded half to even by
 * vroundps, clamped to [-127, 127] in float (a NaN becomes 127 there: vminps returns its
 * second operand) and narrowed with saturating packs, which cannot saturate any more. */
void s8_quantize_rows_avx2(int8_t *q, float *scale, const float *x, int64_t M, int64_t K) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    MMT_OMP("omp parallel for schedule(static) if(M * K >= CPU_PARALLEL_MIN_ELEMENTS && M > 1)")
    for (int64_t m = 0; m < M; m++) {
        const float *xm = x + m * K;
        int8_t *qm = q + m * K;
        __m256 vmax = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 8 <= K; k += 8)
            vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(xm + k), absmask));
        float lanes[8], amax = 0.0f;
        _mm256_storeu_ps(lanes, vmax);
        for (int i = 0; i < 8; i++) amax = fmaxf(amax, lanes[i]);
        for (; k < K; k++) amax = fmaxf(amax, fabsf(xm[k]));
        if (!(amax > 0.0f)) {
            scale[m] = 0.0f;
            memset(qm, 0, (size_t)K);
            continue;
        }
        scale[m] = amax / 127.0f;
        const float inv = fminf(127.0f / amax, FLT_MAX);
        const __m256 vinv = _mm256_set1_ps(inv);
        k = 0;
        for (; k + 32 <= K; k += 32) {
            __m256i v[4];
            for (int j = 0; j < 4; j++) {
                __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xm + k + 8 * j), vinv),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                v[j] = _mm256_cvttps_epi32(_mm256_max_ps(_mm256_min_ps(r, hi), lo));
            }
            const __m256i lo16 = _mm256_packs_epi32(v[0], v[1]);
            const __m256i hi16 = _mm256_packs_epi32(v[2], v[3]);
            const __m256i b = _mm256_packs_epi16(lo16, hi16);
            _mm256_storeu_si256((__m256i *)(qm + k), _mm256_permutevar8x32_epi32(b, order));
        }
        for (; k < K; k++) qm[k] = quantize_one(xm[k], inv);
    }
}
