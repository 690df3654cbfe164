/*
 * cpu_ops.h — internal interface of the fast CPU backends (src/ops/cpu/).
 *
 * The AVX2 files (*_avx2.c, built with -mavx2 -mfma) define the *_avx2 kernels that ops.c
 * puts in the "avx2" table; layout_cpu.c holds the ISA-independent data-movement kernels any
 * CPU table can share. sgemm_avx2 is the general strided GEMM under matmul_fwd_avx2,
 * attention_fwd_avx2, gemm_avx2 and the matmul and attention backwards.
 * Only call *_avx2 functions after mmt_cpu_detect() reported AVX2 (ops.c does this).
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

/* c (M, N), row stride ldc  =  [c +] a (M, K) @ b (K, N) [+ bias (N)].
 * accumulate = 0 overwrites c (adding bias when not NULL); 1 adds the product to c (bias
 * must then be NULL). max_threads bounds the OpenMP team (1 inside an outer parallel loop).
 * Packing buffers live on the calling thread's stack (about SGEMM_STACK_BYTES), so the call
 * allocates nothing and cannot fail. c must not overlap a or b. */
void sgemm_avx2(int64_t M, int64_t N, int64_t K, sgemm_view a, sgemm_view b, float *c,
                int64_t ldc, const float *bias, int accumulate, int max_threads);

/* Row softmax of x * scale over the first n of C entries; entries n..C-1 become 0 (the
 * causal mask). y may alias x. Shared by softmax_fwd_avx2 and attention_fwd_avx2. */
void softmax_row_avx2(float *y, const float *x, int64_t n, int64_t C, float scale);

/* Softmax backward of one row over its first n of C entries:
 * dx = [dx +] scale * y * (dy - dy . y); with accumulate = 0, entries n..C-1 become 0.
 * dx may alias dy. Shared by softmax_bwd_avx2 and attention_bwd_avx2. */
void softmax_bwd_row_avx2(float *dx, const float *dy, const float *y, int64_t n, int64_t C,
                          float scale, int accumulate);

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
