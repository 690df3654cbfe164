/*
 * ops.h — the kernel layer: one table of function pointers per backend.
 *
 * Ops are pure functions on raw buffers with explicit shapes; they allocate nothing and
 * never fail (shapes are validated by the caller). Every fast backend is tested against the
 * plain reference table (src/ops/ref/), which is the oracle. The table is the only seam
 * between CPU and GPU: a CUDA backend fills the same fields with device pointers; a NULL
 * entry means the backend lacks that op and the caller falls back to the CPU visibly.
 * Backward kernels are the *_bwd fields beside their forwards.
 *
 * Threads and stack: the CPU kernels split large calls over OpenMP threads (OMP_NUM_THREADS).
 * The AVX2 matmul and attention pack operands into buffers on the stack, about 330 KiB per
 * calling thread and per OpenMP worker, so threads that call ops need a normal-sized stack
 * (the glibc default of 8 MiB is plenty).
 *
 * Shape letters: B batch, T tokens, C channels, H heads, D head dim, M/K/N matmul dims.
 */
#ifndef MMT_OPS_H
#define MMT_OPS_H

#include <stdint.h>

typedef struct mmt_ops {
    const char *name; /* "ref", "avx2", "avx512", "cuda" */

    /* y (M,N) = x (M,K) @ w (N,K)^T + bias (N); bias may be NULL. w is in the
     * nn.Linear layout [out, in]. y must not alias x or w. */
    void (*matmul_fwd)(float *y, const float *x, const float *w, const float *bias,
                       int64_t M, int64_t K, int64_t N);

    /* y (R,C) = (x - mean) * rstd * weight + bias per row; mean/rstd (R) are written when
     * not NULL (saved for backward). Variance is the biased one, as torch.layer_norm.
     * weight and bias may be NULL (no affine transform). */
    void (*layernorm_fwd)(float *y, float *mean, float *rstd, const float *x,
                          const float *weight, const float *bias, int64_t R, int64_t C,
                          float eps);

    /* y (R,C) = softmax over each row of x; y may alias x. */
    void (*softmax_fwd)(float *y, const float *x, int64_t R, int64_t C);

    /* Elementwise activations on n floats; y may alias x.
     * gelu: exact erf GELU, x * 0.5 * (1 + erf(x / sqrt 2)) (torch nn.GELU()).
     * quick_gelu: x * sigmoid(1.702 x) (transformers QuickGELUActivation). */
    void (*gelu_fwd)(float *y, const float *x, int64_t n);
    void (*quick_gelu_fwd)(float *y, const float *x, int64_t n);

    /* y (n) = a + b; y may alias a or b. */
    void (*add_fwd)(float *y, const float *a, const float *b, int64_t n);

    /* Multi-head scaled dot-product attention.
     * q, k, v, out: (B, T, H*D), heads contiguous inside a row as in view(B,T,H,D).
     * att: (B, H, T, T) scratch that receives the attention probabilities (kept for
     * backward). scores = (q . k) * D^-0.5; causal masks key > query. */
    void (*attention_fwd)(float *out, float *att, const float *q, const float *k,
                          const float *v, int64_t B, int64_t T, int64_t H, int64_t D,
                          int causal);

    /* y (N,C) = table[ids[i]] rows; ids are validated by the caller. */
    void (*embedding_fwd)(float *y, const int32_t *ids, const float *table, int64_t N,
                          int64_t C);

    /* Non-overlapping patch extraction for a Conv2d with kernel = stride = P:
     * x (B, Cin, Hh, Ww) -> y (B, (Hh/P)*(Ww/P), Cin*P*P), patches in row-major grid order
     * and each patch flattened as (Cin, P, P), matching a Conv2d weight [out, Cin, P, P].
     * Like Conv2d, rows and columns that do not fill a whole patch are dropped. */
    void (*patchify_fwd)(float *y, const float *x, int64_t B, int64_t Cin, int64_t Hh,
                         int64_t Ww, int64_t P);

    /* General row-major product: c (M,N) = alpha * op(a) @ op(b) + beta * c, where op(a) is
     * (M,K) and op(b) is (K,N); ta/tb != 0 means a/b are stored transposed ((K,M) / (N,K)).
     * lda/ldb/ldc are the row strides of a, b, c as stored. beta == 0 ignores c's old
     * contents (NaN included). c must not overlap a or b. For LoRA's low-rank products and
     * anything matmul_fwd's layout does not cover. */
    void (*gemm)(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

    /* ---- backward ------------------------------------------------------------------
     * Every backward ACCUMULATES (+=) into its gradient outputs; the caller zeroes them
     * first. A NULL gradient output is skipped and costs nothing (frozen weights, inputs
     * that need no gradient). Inputs are the forward's inputs and saved outputs. */

    /* For y = x @ w^T + bias: dx (M,K) += dy @ w; dw (N,K) += dy^T @ x;
     * dbias (N) += column sums of dy. */
    void (*matmul_bwd)(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                       const float *w, int64_t M, int64_t K, int64_t N);

    /* For layernorm_fwd with the mean/rstd it saved: dx (R,C), dweight (C), dbias (C).
     * weight may be NULL (no affine transform; dweight/dbias must then be NULL). */
    void (*layernorm_bwd)(float *dx, float *dweight, float *dbias, const float *dy,
                          const float *x, const float *mean, const float *rstd,
                          const float *weight, int64_t R, int64_t C);

    /* For y = softmax(x) per row: dx += y * (dy - sum_j dy_j y_j). dx may not alias dy. */
    void (*softmax_bwd)(float *dx, const float *dy, const float *y, int64_t R, int64_t C);

    /* dx += dy * f'(x) for the activations above (x is the forward's input). */
    void (*gelu_bwd)(float *dx, const float *dy, const float *x, int64_t n);
    void (*quick_gelu_bwd)(float *dx, const float *dy, const float *x, int64_t n);

    /* For attention_fwd: dq, dk, dv (B,T,H*D) += gradients given dout (B,T,H*D) and the
     * probabilities att (B,H,T,T) the forward saved. datt (B,H,T,T) is scratch (overwritten). */
    void (*attention_bwd)(float *dq, float *dk, float *dv, float *datt, const float *dout,
                          const float *q, const float *k, const float *v, const float *att,
                          int64_t B, int64_t T, int64_t H, int64_t D, int causal);

    /* dtable (V,C): row ids[i] += dy[i] for each of the N rows (repeated ids add up). */
    void (*embedding_bwd)(float *dtable, const float *dy, const int32_t *ids, int64_t N,
                          int64_t C);

    /* The transpose of patchify_fwd: dx (B,Cin,Hh,Ww) += scatter of dy (B, Np, Cin*P*P);
     * pixels outside whole patches get nothing. */
    void (*patchify_bwd)(float *dx, const float *dy, int64_t B, int64_t Cin, int64_t Hh,
                         int64_t Ww, int64_t P);

    /* ---- attention with more keys than queries (prefix tuning) ---------------------
     * As attention_fwd/_bwd, but q and out are (B, Tq, H*D), k and v (B, Tk, H*D), att and
     * datt (B, H, Tq, Tk). causal masks key j > i + causal_offset for query i (causal_offset
     * >= 0): with Tk - Tq learned prefix rows in front of the keys, causal_offset = Tk - Tq
     * lets every query see every prefix row and the sequence causally. Tq = Tk with offset
     * 0 is attention_fwd/_bwd exactly. */
    void (*attention_kv_fwd)(float *out, float *att, const float *q, const float *k,
                             const float *v, int64_t B, int64_t Tq, int64_t Tk, int64_t H,
                             int64_t D, int causal, int64_t causal_offset);
    void (*attention_kv_bwd)(float *dq, float *dk, float *dv, float *datt, const float *dout,
                             const float *q, const float *k, const float *v, const float *att,
                             int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t D, int causal,
                             int64_t causal_offset);
} mmt_ops;

/* The plain C reference backend (the oracle). */
const mmt_ops *mmt_ops_ref(void);
/* The fastest CPU backend for this machine, chosen once by cpuid. The environment variable
 * MMT_KERNELS=ref|avx2|avx512 forces one (an unavailable choice falls back, logged). */
const mmt_ops *mmt_ops_cpu(void);
/* A specific CPU backend, or NULL where this CPU or build lacks it. */
const mmt_ops *mmt_ops_cpu_named(const char *name);

#endif
