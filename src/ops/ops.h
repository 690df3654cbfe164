/*
 * ops.h — the kernel layer: one table of function pointers per backend.
 *
 * Ops are pure functions on raw buffers with explicit shapes; apart from buffer_alloc they
 * allocate nothing and never fail (shapes are validated by the caller). Every fast backend is tested against the
 * plain reference table (src/ops/ref/), which is the oracle. The table is the only seam
 * between CPU and GPU: a CUDA backend fills the same fields with device pointers; a NULL
 * entry means the backend lacks that op; mmt_ops_resolve() fills such entries from the CPU
 * table and logs each once, so callers hold resolved tables and never test for NULL.
 * Backward kernels are the *_bwd fields beside their forwards.
 *
 * Buffers: the buffer_* entries own the backend's memory. The CPU tables hand out 64-byte
 * aligned host memory through core/alloc (mmt_malloc), so the allocator's byte counter and
 * its fault injection see it; upload/download/copy are memcpy and sync does nothing. A CUDA
 * backend fills the same fields with device memory (cudaMalloc, cudaMemcpy in the three
 * directions, a fill kernel, cudaDeviceSynchronize). A backend whose kernels read device
 * memory must provide every buffer_* entry: taking the CPU's would hand its kernels host
 * pointers.
 *
 * Threads and stack: the CPU kernels split large calls over OpenMP threads (OMP_NUM_THREADS).
 * The AVX2/AVX-512 matmul and attention pack operands into buffers on the stack, about 370 KiB per
 * calling thread and per OpenMP worker (630 KiB for qmat_matmul_*, which adds a dequantized
 * panel), so threads that call ops need a normal-sized stack (the glibc default of 8 MiB is
 * plenty).
 *
 * Shape letters: B batch, T tokens, C channels, H heads, D head dim, M/K/N matmul dims.
 */
#ifndef MMT_OPS_H
#define MMT_OPS_H

#include <stddef.h>
#include <stdint.h>

/* The float32 scalars of one AdamW step (see adamw_step below), each rounded from the double
 * the caller computes in where torch rounds it (train/adamw.c). */
typedef struct mmt_adamw_scalars {
    float decay;                 /* 1 - lr * weight_decay */
    int apply_decay;             /* 0: skip the decay pass (torch skips it when wd == 0) */
    float neg_step;              /* -(lr / (1 - beta1^t)) */
    float lerp_weight;           /* 1 - beta1 */
    float beta2, one_minus_beta2;
    float bias_correction2_sqrt; /* sqrt(1 - beta2^t) */
    float eps;
} mmt_adamw_scalars;

/* ---- quantized weights (issue 13: int8 inference, NF4 / int8 bases for LoRA) ----------- */

typedef enum mmt_qmat_type { MMT_QMAT_S8 = 1, MMT_QMAT_NF4 = 2 } mmt_qmat_type;

/* A frozen weight matrix W (rows = N outputs, cols = K inputs, nn.Linear layout) kept
 * quantized. The descriptor only points at memory its owner keeps (quant/, the loader);
 * ops read it and never free it. deq(W) below is the float matrix it stands for. */
typedef struct mmt_qmat {
    mmt_qmat_type type;
    int64_t rows, cols; /* N, K */
    /* S8 (LLM.int8 layout): deq(W)[n,k] = (float)s8[n*K+k] * scale[n]   (scale = SCB/127),
     * one float multiply. s8 values must lie in [-127, 127] (bitsandbytes' range; -128 is
     * not allowed: the AVX2 kernel's sign trick relies on |s8| <= 127). */
    const int8_t *s8;       /* (N, K) row-major */
    const float *scale;     /* (N) */
    const void *s8_packed;  /* s8 in the integer kernels' layout (s8_pack), or NULL */
    /* NF4 (bitsandbytes): element i of the flattened (N*K) W is code[nibble_i] *
     * absmax[i / blocksize] (one float multiply), nibble_i in byte i/2, the even element in
     * the HIGH nibble. Blocks run over the flat array (they may straddle rows when
     * K % blocksize != 0). */
    const uint8_t *nf4;     /* ceil(N*K/2) bytes */
    const float *absmax;    /* ceil(N*K / blocksize) */
    const float *code;      /* 16 values */
    int64_t blocksize;      /* >= 1 */
} mmt_qmat;

typedef struct mmt_ops {
    const char *name; /* "ref", "avx2", "avx512", "cuda" */
    /* Every field after name is a function pointer (mmt_ops_resolve relies on it). */

    /* ---- buffers ---------------------------------------------------------------------
     * buffer_alloc: `bytes` bytes of backend memory, 64-byte aligned, contents undefined;
     * NULL (last error set to out-of-memory) on failure. bytes == 0 gives a valid pointer
     * that buffer_free accepts. buffer_free accepts NULL. */
    void *(*buffer_alloc)(size_t bytes);
    void (*buffer_free)(void *buffer);
    /* dst (backend) <- src (host); dst (host) <- src (backend); dst <- src, both backend
     * memory. The ranges must not overlap. */
    void (*buffer_upload)(void *dst, const void *src_host, size_t bytes);
    void (*buffer_download)(void *dst_host, const void *src, size_t bytes);
    void (*buffer_copy)(void *dst, const void *src, size_t bytes);
    /* x (n) = value. */
    void (*buffer_fill)(float *x, float value, int64_t n);
    /* Returns when every op issued before it has finished (its results are readable). */
    void (*sync)(void);

    /* y (M,N) = x (M,K) @ w (N,K)^T + bias (N); bias may be NULL. w is in the
     * nn.Linear layout [out, in]. y must not alias x or w. */
    void (*matmul_fwd)(float *y, const float *x, const float *w, const float *bias,
                       int64_t M, int64_t K, int64_t N);
    /* Prepacked weights (inference): with dst NULL, the floats this table's GEMM panels of
     * w (N, K) take (0: the table does not pack); else writes them to dst (64-byte aligned).
     * The panels belong to this table: another table must not be given them. */
    int64_t (*matmul_pack)(float *dst, const float *w, int64_t K, int64_t N);
    /* matmul_fwd reading w's panels from this table's matmul_pack instead of packing w on
     * every call (panels NULL: matmul_fwd); the same bits as matmul_fwd. w must stay valid
     * and unchanged: few-row products stream it. */
    void (*matmul_fwd_packed)(float *y, const float *x, const float *w, const float *panels,
                              const float *bias, int64_t M, int64_t K, int64_t N);

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
    /* y (n) = tanh(x) in float32 (tanhf); y may alias x. */
    void (*tanh_fwd)(float *y, const float *x, int64_t n);

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
    /* For y = tanh(x), given the forward's OUTPUT y: dx += dy * (1 - y*y). */
    void (*tanh_bwd)(float *dx, const float *dy, const float *y, int64_t n);

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

    /* ---- optimizer and normalisation ------------------------------------------------ */

    /* One AdamW step on one tensor: p, g, m, v and vmax (NULL without amsgrad) all (n).
     * torch.optim.AdamW's single-tensor path elementwise, with torch's fused multiply-adds:
     *   p = p * s->decay, as a pass of its own, when s->apply_decay;
     *   m = lerp(m, g, w) as one fma (w = s->lerp_weight; Lerp.h: |w| < 0.5 ? m + w (g - m)
     *       : g - (g - m)(1 - w));
     *   v = fma(s->one_minus_beta2 * g, g, v * s->beta2);
     *   vmax = max(vmax, v) with a NaN winning, and used as v below (amsgrad);
     *   p = p + (s->neg_step * m) / (sqrt(v) / s->bias_correction2_sqrt + s->eps).
     * No other product feeds an addition, and fma, sqrt and division are exactly rounded, so
     * every backend must give the reference's bits. */
    void (*adamw_step)(float *p, const float *g, float *m, float *v, float *vmax, int64_t n,
                       const mmt_adamw_scalars *s);

    /* The sum of x[i]^2 over x (n), in double and in index order, so the result does not
     * depend on the backend or the thread count (a float product is exact in double). */
    double (*sum_squares)(const float *x, int64_t n);

    /* x (n) = x * factor, in place. */
    void (*scale)(float *x, float factor, int64_t n);

    /* The index of the first NaN or infinity in x (n), or -1 when every element is finite. */
    int64_t (*find_nonfinite)(const float *x, int64_t n);

    /* y (B,P) = x / ||x|| per row, no epsilon (CLIPModel's embeds / embeds.norm()): the sum
     * of squares in double, n = (float)sqrt, y = x * (1.0f / n); a zero row gives zeros.
     * norm (B) receives n when not NULL (saved for backward). y may alias x. */
    void (*l2_normalize_fwd)(float *y, float *norm, const float *x, int64_t B, int64_t P);
    /* dx (B,P) += (dy - y (y . dy)) / norm per row, the dot in double; rows with norm 0 get
     * nothing. */
    void (*l2_normalize_bwd)(float *dx, const float *dy, const float *y, const float *norm,
                             int64_t B, int64_t P);

    /* ---- quantized weights (mmt_qmat above) -------------------------------------------
     * Shapes come from w: N = w->rows, K = w->cols. Nothing is allocated: the fast kernels
     * dequantize W a panel at a time into a buffer on the stack (256 KiB per thread, beside
     * the GEMM's own), never the whole matrix; the int8 GEMM packs x into 96 KiB of stack.
     *
     * qmat_matmul_fwd: y (M,N) = x (M,K) @ deq(W)^T + bias (N); bias may be NULL. Float
     *   sums: the fast tables give bitwise what their matmul_fwd gives on deq(W) (the same
     *   K blocks, the same microkernel); against the ref they differ by float summation
     *   order only (tests/test_ops_quant.c states the tolerance).
     * qmat_matmul_bwd_dx: dx (M,K) += dy (M,N) @ deq(W); likewise bitwise the fast table's
     *   matmul_bwd dx on deq(W).
     * qmat_dequant_rows: dst ((r1-r0), K) = rows r0 <= r < r1 of deq(W); exact (one float
     *   multiply per element), so identical on every table. */
    void (*qmat_matmul_fwd)(float *y, const float *x, const mmt_qmat *w, const float *bias,
                            int64_t M);
    void (*qmat_matmul_bwd_dx)(float *dx, const float *dy, const mmt_qmat *w, int64_t M);
    void (*qmat_dequant_rows)(float *dst, const mmt_qmat *w, int64_t r0, int64_t r1);

    /* Per-row (per-token) symmetric int8 quantization of activations x (M,K) into q (M,K)
     * and scale (M), the rule (identical bytes on every table):
     *   amax = max_k |x[m,k]|;
     *   amax == 0: scale = 0 and every q = 0;
     *   otherwise scale = amax / 127.0f and, with inv = min(127.0f / amax, FLT_MAX) (each a
     *   correctly rounded float division; the min guards a subnormal amax),
     *   q = clamp(nearbyint(x * inv), -127, 127) where x * inv is one rounded float
     *   multiply and nearbyint rounds half to even (the default rounding mode).
     * So x ~= q * scale. x must be finite (a NaN or infinity gives unspecified values in
     * [-127, 127]). */
    void (*s8_quantize_rows)(int8_t *q, float *scale, const float *x, int64_t M, int64_t K);

    /* The packed int8 weight layout, ONE for every CPU table (a weight packed once at load
     * works with whichever table runs); s8_packed_bytes(N, K) bytes, 64-byte aligned dst
     * recommended. With NP = ceil(N/16) panels of 16 rows of W and KG = ceil(K/4) groups
     * of 4 columns:
     *   byte  p*KG*64 + g*64 + j*4 + t  =  s8[(16p + j)*K + 4g + t]   (0 outside N x K)
     *   then int32 rowsum[NP*16] at byte NP*KG*64: rowsum[n] = sum_k s8[n*K + k] (0 for
     *   padding rows), the correction of the kernels that feed unsigned x + 128.
     * A 64-byte group is one zmm (16 rows x 4 k, vpdpbusd's operand) or two ymm. */
    size_t (*s8_packed_bytes)(int64_t N, int64_t K);
    void (*s8_pack)(void *dst, const int8_t *s8, int64_t N, int64_t K);

    /* y (M,N) from int8 activations xq (M,K) with scale xscale (M) (s8_quantize_rows) and an
     * S8 weight w: y[m,n] = fmaf((float)acc * xscale[m], w->scale[n], bias ? bias[n] : 0.0f)
     * with acc = sum_k xq[m,k] * s8[n,k] exact in int32 (|acc| <= 127^2 K, so K < 133000),
     * (float)acc rounded to nearest even, then one rounded multiply and one fused
     * multiply-add (with +0.0f when bias is NULL): identical floats on every table. The
     * fast tables read w->s8_packed (required); the ref reads w->s8. xq values in
     * [-127, 127]. */
    void (*s8_matmul_fwd)(float *y, const int8_t *xq, const float *xscale, const mmt_qmat *w,
                          const float *bias, int64_t M);
} mmt_ops;

/*
 * The table a caller should use for `backend`: a copy of it in *out where every NULL entry is
 * taken from mmt_ops_cpu(), with one warning per missing entry ("ops: <backend> lacks <op>;
 * using the CPU"). Resolve a backend once, when it is chosen, and keep the result. backend
 * NULL gives the CPU table.
 */
void mmt_ops_resolve(const mmt_ops *backend, mmt_ops *out);
/* The name of the first NULL entry of table, or NULL when it is complete. */
const char *mmt_ops_first_missing(const mmt_ops *table);

/* The plain C reference backend (the oracle). */
const mmt_ops *mmt_ops_ref(void);
/* The fastest CPU backend for this machine, chosen once by cpuid. The environment variable
 * MMT_KERNELS=ref|avx2|avx512 forces one (an unavailable choice falls back, logged). */
const mmt_ops *mmt_ops_cpu(void);
/* A specific CPU backend, or NULL where this CPU or build lacks it. */
const mmt_ops *mmt_ops_cpu_named(const char *name);

#endif
