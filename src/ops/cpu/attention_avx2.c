/*
 * attention_avx2.c — AVX2 multi-head attention as two small GEMMs per (batch, head).
 *
 * For each of the B*H heads (the OpenMP loop; 384 heads for a ViT-B/32 batch of 32, so two
 * threads balance well): scores = q_h @ k_h^T goes straight into its (T, T) slice of att,
 * each row becomes probabilities in place (scale, causal length, softmax), and
 * out_h = p @ v_h is written into the head's columns of out. Heads are strided views of the
 * (B, T, H*D) tensors, so nothing is copied; the GEMMs run single-threaded inside the loop.
 * With the causal mask the masked half of q k^T is still computed and then zeroed: the text
 * tower has T = 77, where skipping it would save little.
 *
 * The kernels take Tq queries against Tk keys with a causal offset (query i sees keys up to
 * i + offset; prefix tuning); the square attention_fwd/bwd_avx2 are the case Tq = Tk,
 * offset 0.
 */
#include <math.h>
#include <stddef.h>

#include "ops/cpu/cpu_ops.h"

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
    MMT_OMP("omp parallel for schedule(dynamic, 4) if(heads > 1 && Tq * Tk * D * heads >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t bh = 0; bh < heads; bh++) {
        const int64_t b = bh / H, h = bh % H, qoff = b * Tq * C + h * D, koff = b * Tk * C + h * D;
        float *scores = att + bh * Tq * Tk;
        sgemm_view qh = {q + qoff, C, 1}; /* (Tq, D) */
        sgemm_view kt = {k + koff, 1, C}; /* (D, Tk): k_h transposed */
        sgemm_avx2(Tq, Tk, D, qh, kt, scores, Tk, NULL, 0, 1);
        for (int64_t i = 0; i < Tq; i++)
            softmax_row_avx2(scores + i * Tk, scores + i * Tk, visible_keys(i, Tk, causal, causal_offset), Tk,
                             scale);
        sgemm_view p = {scores, Tk, 1};   /* (Tq, Tk) */
        sgemm_view vh = {v + koff, C, 1}; /* (Tk, D) */
        sgemm_avx2(Tq, D, Tk, p, vh, out + qoff, C, NULL, 0, 1);
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
    MMT_OMP("omp parallel for schedule(dynamic, 4) if(heads > 1 && Tq * Tk * D * heads >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t bh = 0; bh < heads; bh++) {
        const int64_t b = bh / H, h = bh % H, qoff = b * Tq * C + h * D, koff = b * Tk * C + h * D;
        const float *p = att + bh * Tq * Tk;
        float *ds = datt + bh * Tq * Tk;
        sgemm_view dout_h = {dout + qoff, C, 1}; /* (Tq, D) */
        if (dv) {
            sgemm_view pt = {p, 1, Tk}; /* P^T: (Tk, Tq) */
            sgemm_avx2(Tk, D, Tq, pt, dout_h, dv + koff, C, NULL, 1, 1);
        }
        if (!dq && !dk) continue;
        sgemm_view vt = {v + koff, 1, C}; /* V^T: (D, Tk) */
        sgemm_avx2(Tq, Tk, D, dout_h, vt, ds, Tk, NULL, 0, 1);
        for (int64_t i = 0; i < Tq; i++)
            softmax_bwd_row_avx2(ds + i * Tk, ds + i * Tk, p + i * Tk, visible_keys(i, Tk, causal, causal_offset),
                                 Tk, scale, 0);
        if (dq) {
            sgemm_view s = {ds, Tk, 1};        /* (Tq, Tk) */
            sgemm_view kh = {k + koff, C, 1};  /* (Tk, D) */
            sgemm_avx2(Tq, D, Tk, s, kh, dq + qoff, C, NULL, 1, 1);
        }
        if (dk) {
            sgemm_view st = {ds, 1, Tk};       /* dS^T: (Tk, Tq) */
            sgemm_view qh = {q + qoff, C, 1};  /* (Tq, D) */
            sgemm_avx2(Tk, D, Tq, st, qh, dk + koff, C, NULL, 1, 1);
        }
    }
}

void attention_bwd_avx2(float *dq, float *dk, float *dv, float *datt, const float *dout,
                        const float *q, const float *k, const float *v, const float *att,
                        int64_t B, int64_t T, int64_t H, int64_t D, int causal) {
    attention_kv_bwd_avx2(dq, dk, dv, datt, dout, q, k, v, att, B, T, T, H, D, causal, 0);
}
