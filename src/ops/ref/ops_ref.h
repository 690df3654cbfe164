/*
 * ops_ref.h — the plain C reference kernels (the oracle), one per field of mmt_ops.
 *
 * These are straightforward loops with no intrinsics and no threads, written to be obviously
 * right rather than fast; every fast backend is tested against them (tests/test_ops.c) and
 * they back the "ref" table in ops.c (MMT_KERNELS=ref, and CPUs without AVX2). Semantics and
 * shapes are documented once, in ops.h.
 */
#ifndef MMT_OPS_REF_H
#define MMT_OPS_REF_H

#include <stddef.h>
#include <stdint.h>

/* buffer_ref.c: host memory through core/alloc; upload, download and copy are all
 * buffer_copy_ref (memcpy). */
void *buffer_alloc_ref(size_t bytes);
void buffer_free_ref(void *buffer);
void buffer_copy_ref(void *dst, const void *src, size_t bytes);
void buffer_fill_ref(float *x, float value, int64_t n);
void sync_ref(void);

int64_t matmul_pack_ref(float *dst, const float *w, int64_t K, int64_t N);
void matmul_fwd_packed_ref(float *y, const float *x, const float *w, const float *panels,
                           const float *bias, int64_t M, int64_t K, int64_t N);
void matmul_fwd_ref(float *y, const float *x, const float *w, const float *bias, int64_t M,
                    int64_t K, int64_t N);
void layernorm_fwd_ref(float *y, float *mean, float *rstd, const float *x, const float *weight,
                       const float *bias, int64_t R, int64_t C, float eps);
void softmax_fwd_ref(float *y, const float *x, int64_t R, int64_t C);
void gelu_fwd_ref(float *y, const float *x, int64_t n);
void quick_gelu_fwd_ref(float *y, const float *x, int64_t n);
void tanh_fwd_ref(float *y, const float *x, int64_t n);
void add_fwd_ref(float *y, const float *a, const float *b, int64_t n);
void attention_fwd_ref(float *out, float *att, const float *q, const float *k, const float *v,
                       int64_t B, int64_t T, int64_t H, int64_t D, int causal);
void embedding_fwd_ref(float *y, const int32_t *ids, const float *table, int64_t N, int64_t C);
void patchify_fwd_ref(float *y, const float *x, int64_t B, int64_t Cin, int64_t Hh, int64_t Ww,
                      int64_t P);

void gemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *a,
              int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* Backward kernels: they accumulate into their gradient outputs and skip NULL ones. */
void matmul_bwd_ref(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                    const float *w, int64_t M, int64_t K, int64_t N);
void layernorm_bwd_ref(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                       const float *mean, const float *rstd, const float *weight, int64_t R,
                       int64_t C);
void softmax_bwd_ref(float *dx, const float *dy, const float *y, int64_t R, int64_t C);
void gelu_bwd_ref(float *dx, const float *dy, const float *x, int64_t n);
void quick_gelu_bwd_ref(float *dx, const float *dy, const float *x, int64_t n);
void tanh_bwd_ref(float *dx, const float *dy, const float *y, int64_t n);
void attention_bwd_ref(float *dq, float *dk, float *dv, float *datt, const float *dout,
                       const float *q, const float *k, const float *v, const float *att,
                       int64_t B, int64_t T, int64_t H, int64_t D, int causal);
void embedding_bwd_ref(float *dtable, const float *dy, const int32_t *ids, int64_t N, int64_t C);
void patchify_bwd_ref(float *dx, const float *dy, int64_t B, int64_t Cin, int64_t Hh, int64_t Ww,
                      int64_t P);

/* Attention with Tq queries and Tk keys (prefix tuning); see ops.h attention_kv_fwd. */
void attention_kv_fwd_ref(float *out, float *att, const float *q, const float *k, const float *v,
                          int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t D, int causal,
                          int64_t causal_offset);
void attention_kv_bwd_ref(float *dq, float *dk, float *dv, float *datt, const float *dout,
                          const float *q, const float *k, const float *v, const float *att,
                          int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t D, int causal,
                          int64_t causal_offset);

/* train_ref.c */
struct mmt_adamw_scalars;
void adamw_step_ref(float *p, const float *g, float *m, float *v, float *vmax, int64_t n,
                    const struct mmt_adamw_scalars *s);
double sum_squares_ref(const float *x, int64_t n);
void scale_ref(float *x, float factor, int64_t n);
int64_t find_nonfinite_ref(const float *x, int64_t n);

/* normalize_ref.c */
void l2_normalize_fwd_ref(float *y, float *norm, const float *x, int64_t B, int64_t P);
void l2_normalize_bwd_ref(float *dx, const float *dy, const float *y, const float *norm,
                          int64_t B, int64_t P);

/* quant_ref.c: quantized weights (ops.h, mmt_qmat) */
struct mmt_qmat;
void qmat_matmul_fwd_ref(float *y, const float *x, const struct mmt_qmat *w, const float *bias,
                         int64_t M);
void qmat_matmul_bwd_dx_ref(float *dx, const float *dy, const struct mmt_qmat *w, int64_t M);
void qmat_dequant_rows_ref(float *dst, const struct mmt_qmat *w, int64_t r0, int64_t r1);
void s8_quantize_rows_ref(int8_t *q, float *scale, const float *x, int64_t M, int64_t K);
size_t s8_packed_bytes_ref(int64_t N, int64_t K);
void s8_pack_ref(void *dst, const int8_t *s8, int64_t N, int64_t K);
void s8_matmul_fwd_ref(float *y, const int8_t *xq, const float *xscale, const struct mmt_qmat *w,
                       const float *bias, int64_t M);

#endif
