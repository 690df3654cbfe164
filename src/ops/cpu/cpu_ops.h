/*
 * cpu_ops.h — internal interface of the fast CPU backends (src/ops/cpu/).
 *
 * The AVX2 files (*_avx2.c, built with -mavx2 -mfma) define the *_avx2 kernels that ops.c
 * puts in the "avx2" table; layout_cpu.c holds the ISA-independent data-movement kernels any
 * CPU table can share. sgemm_avx2 is the general strided GEMM under matmul_fwd_avx2,
 * attention_fwd_avx2, gemm_avx2 and the matmul and attention backwards. The "avx512" table
 * is the avx2 one with the GEMM entries (matmul_fwd, matmul_bwd, gemm) taken from
 * sgemm_avx512.c, which plugs a wider microkernel into the same driver (sgemm_run).
 * Only call *_avx2 functions after mmt_cpu_detect() reported AVX2, *_avx512 ones after it
 * reported AVX-512 (ops.c does this).
 */
#ifndef MMT_OPS_CPU_H
#define MMT_OPS_CPU_H

#include <stdint.h>

/* OpenMP through a macro so that builds without -fopenmp (MMT_OPENMP=OFF, the fuzz build)
 * compile without unknown-pragma warnings and run single-threaded. */
#ifdef _OPENMP
#include <omp.h>
#define MMT_OMP(directive) _Pragma(directive)
static inline int cpu_max_threads(void) { return omp_get_max_threads(); }
#else
#define MMT_OMP(directive)
static inline int cpu_max_threads(void) { return 1; }
#endif

/* Elementwise loops go parallel only above this many elements: below it a fork/join costs
 * more than the work. */
#define CPU_PARALLEL_MIN_ELEMENTS ((int64_t)1 << 16)

/* A strided read-only matrix: element (r, c) is data[r * row_stride + c * col_stride], so one
 * struct describes a row-major matrix, its transpose, or a head slice of a (B, T, H*D) tensor. */
typedef struct sgemm_view {
    const float *data;
    int64_t row_stride, col_stride;
} sgemm_view;

/* How a finished block of c is stored: c = alpha * product + (beta == 0 ? bias : beta * c).
 * beta == 0 never reads c; bias (N, at the block's first column) may be NULL (zero). With
 * alpha == 1 the fused multiply-add is exact in its product, so the plain nn.Linear path
 * rounds exactly as a plain add would. */
typedef struct sgemm_store {
    float alpha, beta;
    const float *bias;
} sgemm_store;

/* The rows path (sgemm_avx2.c) serves at most this many rows of A. */
#define SGEMM_ROWS_MAX_M 8
/* Capacity of the driver's per-thread stack buffers, in floats: packed A, packed B, and an
 * edge tile. Every sgemm_kernel's blocks must fit (each kernel file asserts it). */
#define SGEMM_PACK_A_FLOATS (112 * 256)
#define SGEMM_PACK_B_FLOATS (256 * 256)
#define SGEMM_TILE_FLOATS (16 * 32)

/* One instruction set's pieces for the shared GEMM driver sgemm_run.
 * tile: c (mr, nr) = store(ap (mr, kc) @ bp (kc, nr)), ap and bp packed k-major (ap[k*mr+i],
 *   bp[k*nr+j]); mr is a multiple of 8 or 8k+6, nr a multiple of 8 (what packing writes).
 * rows: the few-rows path, c[0:M, n0:n1] for M <= rows_max_m, a with K contiguous
 *   (a.col_stride == 1), b with K contiguous (b.row_stride == 1), without packing; K is cut
 *   into blocks of kc_step exactly as the packed path cuts it, so the results are the same
 *   bits. n0 is a multiple of rows_width. */
typedef struct sgemm_kernel {
    const char *name;
    int mr, nr;
    int64_t kc, mc, nc;
    void (*tile)(int64_t kc, const float *restrict ap, const float *restrict bp,
                 float *restrict c, int64_t ldc, sgemm_store st);
    void (*rows)(int64_t M, int64_t n0, int64_t n1, int64_t K, int64_t kc_step, sgemm_view a,
                 sgemm_view b, float *c, int64_t ldc, sgemm_store st);
    int64_t rows_max_m;
    int64_t rows_width;
} sgemm_kernel;

extern const sgemm_kernel sgemm_kernel_avx2;   /* sgemm_avx2.c: 6x16 ymm */
extern const sgemm_kernel sgemm_kernel_avx512; /* sgemm_avx512.c: 14x32 zmm */

/* Splits n into near-equal steps of at most `max`, rounded up to a multiple of `unit`, so a
 * range is not left with a sliver of a block at its end. */
static inline int64_t cpu_balanced_step(int64_t n, int64_t max, int64_t unit) {
    int64_t parts = (n + max - 1) / max;
    int64_t per = (n + parts - 1) / parts;
    int64_t step = (per + unit - 1) / unit * unit;
    return step < max ? step : max;
}

/* The K blocks sgemm_run cuts a depth-K product into: [0, step), [step, 2 step), ... Callers
 * that run the K blocks themselves (qmat_avx2.c) cut at the same places to get the same bits. */
static inline int64_t sgemm_kc_step(const sgemm_kernel *kern, int64_t K) {
    return cpu_balanced_step(K, kern->kc, 1);
}

/* c (M, N), row stride ldc = store(a (M, K) @ b (K, N)) with kern's microkernel: packed
 * blocks, or the rows path when M is small and the layout fits. Each element is summed in
 * the same order on every path, thread count and kernel. max_threads bounds the OpenMP team.
 * Allocates nothing; c must not overlap a or b. */
void sgemm_run(const sgemm_kernel *kern, int64_t M, int64_t N, int64_t K, sgemm_view a,
               sgemm_view b, float *c, int64_t ldc, sgemm_store st, int max_threads);
/* sgemm_run with B also given as its panels (sgemm_pack_b; panels_ld = sgemm_panels_ld): the
 * packed path reads them instead of packing b (the same floats, so the same bits); the rows
 * path still streams b. panels NULL: sgemm_run. */
void sgemm_run_prepacked(const sgemm_kernel *kern, int64_t M, int64_t N, int64_t K, sgemm_view a,
                         sgemm_view b, const float *panels, int64_t panels_ld, float *c, int64_t ldc,
                         sgemm_store st, int max_threads);
/* Prepacking w (N, K) for kern (sgemm_run_prepacked's panels). sgemm_panels_ld: the floats
 * of one k row of a K block's panels, N rounded up to nr. sgemm_pack_b writes K x that many
 * floats to dst: each K block of sgemm_kc_step, the N columns in panels of nr, zero-padded,
 * exactly what the packed path packs per call. */
int64_t sgemm_panels_ld(const sgemm_kernel *kern, int64_t N);
void sgemm_pack_b(const sgemm_kernel *kern, float *dst, const float *w, int64_t K, int64_t N);
/* matmul_fwd_packed (ops.h) on kern: panels from sgemm_pack_b, or NULL (matmul_fwd). */
void sgemm_matmul_fwd_packed(const sgemm_kernel *kern, float *y, const float *x, const float *w,
                             const float *panels, const float *bias, int64_t M, int64_t K, int64_t N);
/* The matmul_fwd, gemm and matmul_bwd entries (ops.h) on kern. */
void sgemm_matmul_fwd(const sgemm_kernel *kern, float *y, const float *x, const float *w,
                      const float *bias, int64_t M, int64_t K, int64_t N);
void sgemm_gemm(const sgemm_kernel *kern, int ta, int tb, int64_t M, int64_t N, int64_t K,
                float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                float beta, float *c, int64_t ldc);
void sgemm_matmul_bwd(const sgemm_kernel *kern, float *dx, float *dw, float *dbias,
                      const float *dy, const float *x, const float *w, int64_t M, int64_t K,
                      int64_t N);

/* c (M, N), row stride ldc  =  [c +] a (M, K) @ b (K, N) [+ bias (N)].
 * accumulate = 0 overwrites c (adding bias when not NULL); 1 adds the product to c (bias
 * must then be NULL). max_threads bounds the OpenMP team (1 inside an outer parallel loop).
 * Packing buffers live on the calling thread's stack (SGEMM_PACK_A/B_FLOATS, 368 KiB), so the call
 * allocates nothing and cannot fail. c must not overlap a or b. */
void sgemm_avx2(int64_t M, int64_t N, int64_t K, sgemm_view a, sgemm_view b, float *c,
                int64_t ldc, const float *bias, int accumulate, int max_threads);

/* The per-head products of attention_avx2.c: sgemm_avx2(M, N, K, a, b, c, ldc, NULL,
 * accumulate, 1) bit for bit, computed without packing when K <= 256 (and a transposed b
 * fits its buffer), else by that very call. Single-threaded; a's strides are free, b is
 * copied once when its rows are not contiguous. */
void attention_head_gemm_avx2(int64_t M, int64_t N, int64_t K, sgemm_view a, sgemm_view b, float *c, int64_t ldc,
                              int accumulate);

/* Row softmax of x * scale over the first n of C entries; entries n..C-1 become 0 (the
 * causal mask). y may alias x. Shared by softmax_fwd_avx2 and attention_fwd_avx2. */
void softmax_row_avx2(float *y, const float *x, int64_t n, int64_t C, float scale);

/* Softmax backward of one row over its first n of C entries:
 * dx = [dx +] scale * y * (dy - dy . y); with accumulate = 0, entries n..C-1 become 0.
 * dx may alias dy. Shared by softmax_bwd_avx2 and attention_bwd_avx2. */
void softmax_bwd_row_avx2(float *dx, const float *dy, const float *y, int64_t n, int64_t C,
                          float scale, int accumulate);

int64_t matmul_pack_avx2(float *dst, const float *w, int64_t K, int64_t N);
void matmul_fwd_packed_avx2(float *y, const float *x, const float *w, const float *panels,
                            const float *bias, int64_t M, int64_t K, int64_t N);
void matmul_fwd_avx2(float *y, const float *x, const float *w, const float *bias, int64_t M,
                     int64_t K, int64_t N);
void layernorm_fwd_avx2(float *y, float *mean, float *rstd, const float *x, const float *weight,
                        const float *bias, int64_t R, int64_t C, float eps);
void softmax_fwd_avx2(float *y, const float *x, int64_t R, int64_t C);
void gelu_fwd_avx2(float *y, const float *x, int64_t n);
void quick_gelu_fwd_avx2(float *y, const float *x, int64_t n);
void add_fwd_avx2(float *y, const float *a, const float *b, int64_t n);
void attention_fwd_avx2(float *out, float *att, const float *q, const float *k, const float *v,
                        int64_t B, int64_t T, int64_t H, int64_t D, int causal);

void gemm_avx2(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *a,
               int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
void matmul_bwd_avx2(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                     const float *w, int64_t M, int64_t K, int64_t N);
void layernorm_bwd_avx2(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                        const float *mean, const float *rstd, const float *weight, int64_t R,
                        int64_t C);
void softmax_bwd_avx2(float *dx, const float *dy, const float *y, int64_t R, int64_t C);
void gelu_bwd_avx2(float *dx, const float *dy, const float *x, int64_t n);
void quick_gelu_bwd_avx2(float *dx, const float *dy, const float *x, int64_t n);
void attention_bwd_avx2(float *dq, float *dk, float *dv, float *datt, const float *dout,
                        const float *q, const float *k, const float *v, const float *att,
                        int64_t B, int64_t T, int64_t H, int64_t D, int causal);

void attention_kv_fwd_avx2(float *out, float *att, const float *q, const float *k, const float *v,
                           int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t D, int causal,
                           int64_t causal_offset);
void attention_kv_bwd_avx2(float *dq, float *dk, float *dv, float *datt, const float *dout,
                           const float *q, const float *k, const float *v, const float *att,
                           int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t D, int causal,
                           int64_t causal_offset);

int64_t matmul_pack_avx512(float *dst, const float *w, int64_t K, int64_t N);
void matmul_fwd_packed_avx512(float *y, const float *x, const float *w, const float *panels,
                              const float *bias, int64_t M, int64_t K, int64_t N);
void matmul_fwd_avx512(float *y, const float *x, const float *w, const float *bias, int64_t M,
                       int64_t K, int64_t N);
void gemm_avx512(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
void matmul_bwd_avx512(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                       const float *w, int64_t M, int64_t K, int64_t N);

/* ---- quantized weights (ops.h mmt_qmat; qgemm_*.c, qmat_*.c) ------------------------- */

struct mmt_qmat;

/* What the epilogue needs beside the sums (ops.h s8_matmul_fwd); row0/col0 index these. */
typedef struct qgemm_epilogue {
    const float *xscale;   /* (M) */
    const float *wscale;   /* (N) */
    const float *bias;     /* (N) or NULL */
    const int32_t *rowsum; /* the packed layout's; NULL for kernels that feed raw x */
} qgemm_epilogue;

/* The int8 GEMM behind s8_matmul_fwd. W is in the packed layout of ops.h (16-row panels of
 * 4-byte k groups, then int32 row sums); x is packed per call, a block of rows at a time,
 * into tiles of mr rows stored group-major (tile[g*mr*4 + i*4 + t] = x[i, 4g + t]), either
 * as x + 128 (a_u8: the unsigned operand of vpdpbusd, corrected by 128 * rowsum at the end)
 * or as raw x followed by |x| (the AVX2 sign trick). */
typedef struct qgemm_kernel {
    const char *name;
    int mr;     /* rows of x per tile, <= QGEMM_MR_MAX */
    int nv;     /* 16-row panels of W per tile (tile width 16 nv), <= QGEMM_NV_MAX */
    int a_u8;   /* 1: tiles hold x + 128; 0: raw x, then |x| */
    int64_t mb; /* rows of x per packed block (a multiple of mr) */
    int64_t kgb; /* k groups (4 k) per packed block */
    /* acc (rows, 16 np), row stride 16 nv, = the exact int32 sums over kg groups of the
     * tile's rows (rows <= mr) with np <= nv panels of W (panel j at bp + j * panel_stride,
     * already offset to the block's first group); a_u8 kernels' sums include 128 * rowsum. */
    void (*tile)(int64_t kg, const uint8_t *ap, const int8_t *bp, int64_t panel_stride, int rows,
                 int np, int32_t *acc);
    /* Stores acc (rows, cols) at y (row stride ldy) with the s8_matmul_fwd epilogue when
     * `last`, as int32 partial sums in y's memory otherwise; adds y's partial sums unless
     * `first`. qgemm_store_avx2 / qgemm_store_avx512. */
    void (*store)(const int32_t *acc, int64_t ld_acc, int rows, int64_t cols, int first, int last,
                  int64_t row0, int64_t col0, const qgemm_epilogue *e, float *y, int64_t ldy);
} qgemm_kernel;

#define QGEMM_MR_MAX 8
#define QGEMM_NV_MAX 4
#ifndef QGEMM_PACK_A_BYTES
#define QGEMM_PACK_A_BYTES (96 * 1024)
#endif

void qgemm_store_avx2(const int32_t *acc, int64_t ld_acc, int rows, int64_t cols, int first,
                      int last, int64_t row0, int64_t col0, const qgemm_epilogue *e, float *y,
                      int64_t ldy);
void qgemm_store_avx512(const int32_t *acc, int64_t ld_acc, int rows, int64_t cols, int first,
                        int last, int64_t row0, int64_t col0, const qgemm_epilogue *e, float *y,
                        int64_t ldy);

extern const qgemm_kernel qgemm_kernel_avx2;       /* qgemm_avx2.c: sign trick, vpmaddubsw */
extern const qgemm_kernel qgemm_kernel_avxvnni;    /* qgemm_avxvnni.c: 256-bit vpdpbusd */
extern const qgemm_kernel qgemm_kernel_avx512vnni; /* qgemm_avx512vnni.c: 512-bit vpdpbusd */

/* s8_matmul_fwd (ops.h) on kern, up to max_threads OpenMP threads. Allocates nothing (the
 * packed x block lives on the stack: QGEMM_PACK_A_BYTES per thread). */
void qgemm_matmul(const qgemm_kernel *kern, float *y, const int8_t *xq, const float *xscale,
                  const struct mmt_qmat *w, const float *bias, int64_t M, int max_threads);

void s8_matmul_fwd_avx2(float *y, const int8_t *xq, const float *xscale, const struct mmt_qmat *w,
                        const float *bias, int64_t M);
void s8_matmul_fwd_avx512(float *y, const int8_t *xq, const float *xscale,
                          const struct mmt_qmat *w, const float *bias, int64_t M);
void s8_quantize_rows_avx2(int8_t *q, float *scale, const float *x, int64_t M, int64_t K);
void s8_quantize_rows_avx512(int8_t *q, float *scale, const float *x, int64_t M, int64_t K);

/* dst[(r - r0) * ld + (k - k0)] = deq(W)[r, k] for r0 <= r < r1, k0 <= k < k1 (ops.h). */
typedef void (*qmat_dequant_fn)(float *dst, int64_t ld, const struct mmt_qmat *w, int64_t r0,
                                int64_t r1, int64_t k0, int64_t k1);
void qmat_dequant_avx2(float *dst, int64_t ld, const struct mmt_qmat *w, int64_t r0, int64_t r1,
                       int64_t k0, int64_t k1);
void qmat_dequant_avx512(float *dst, int64_t ld, const struct mmt_qmat *w, int64_t r0, int64_t r1,
                         int64_t k0, int64_t k1);

/* qmat_matmul_fwd / qmat_matmul_bwd_dx (ops.h) as panels of deq(W) (dequant) run through
 * sgemm_run on kern, cut along the GEMM's K exactly as sgemm_run cuts it, so the results
 * are bitwise kern's matmul_fwd / matmul_bwd dx on the whole deq(W). */
void qmat_fwd_run(const sgemm_kernel *kern, qmat_dequant_fn dequant, float *y, const float *x,
                  const struct mmt_qmat *w, const float *bias, int64_t M);
void qmat_bwd_dx_run(const sgemm_kernel *kern, qmat_dequant_fn dequant, float *dx,
                     const float *dy, const struct mmt_qmat *w, int64_t M);

void qmat_matmul_fwd_avx2(float *y, const float *x, const struct mmt_qmat *w, const float *bias,
                          int64_t M);
void qmat_matmul_bwd_dx_avx2(float *dx, const float *dy, const struct mmt_qmat *w, int64_t M);
void qmat_dequant_rows_avx2(float *dst, const struct mmt_qmat *w, int64_t r0, int64_t r1);
void qmat_matmul_fwd_avx512(float *y, const float *x, const struct mmt_qmat *w, const float *bias,
                            int64_t M);
void qmat_matmul_bwd_dx_avx512(float *dx, const float *dy, const struct mmt_qmat *w, int64_t M);
void qmat_dequant_rows_avx512(float *dst, const struct mmt_qmat *w, int64_t r0, int64_t r1);

void embedding_fwd_cpu(float *y, const int32_t *ids, const float *table, int64_t N, int64_t C);
void patchify_fwd_cpu(float *y, const float *x, int64_t B, int64_t Cin, int64_t Hh, int64_t Ww,
                      int64_t P);
struct mmt_adamw_scalars;
void adamw_step_avx2(float *p, const float *g, float *m, float *v, float *vmax, int64_t n,
                     const struct mmt_adamw_scalars *s);

void embedding_bwd_cpu(float *dtable, const float *dy, const int32_t *ids, int64_t N, int64_t C);
void patchify_bwd_cpu(float *dx, const float *dy, int64_t B, int64_t Cin, int64_t Hh, int64_t Ww,
                      int64_t P);

#endif
