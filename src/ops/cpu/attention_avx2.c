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
 */
#include <math.h>
#include <stddef.h>

#include "ops/cpu/cpu_ops.h"

void attention_fwd_avx2(float *out,      // (B, T, H*D)
                        float *att,      // (B, H, T, T)
                        const float *q,  // (B, T, H*D)
                        const float *k,  // (B, T, H*D)
                        const float *v,  // (B, T, H*D)
                        int64_t B, int64_t T, int64_t H, int64_t D, int causal) {
    const int64_t C = H * D, heads = B * H;
    const float scale = 1.0f / sqrtf((float)D);
    MMT_OMP("omp parallel for schedule(dynamic, 4) if(heads > 1 && T * T * D * heads >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t bh = 0; bh < heads; bh++) {
        const int64_t b = bh / H, h = bh % H, offset = b * T * C + h * D;
        float *scores = att + bh * T * T;
        sgemm_view qh = {q + offset, C, 1}; /* (T, D) */
        sgemm_view kt = {k + offset, 1, C}; /* (D, T): k_h transposed */
        sgemm_avx2(T, T, D, qh, kt, scores, T, NULL, 0, 1);
        for (int64_t i = 0; i < T; i++)
            softmax_row_avx2(scores + i * T, scores + i * T, causal ? i + 1 : T, T, scale);
        sgemm_view p = {scores, T, 1};      /* (T, T) */
        sgemm_view vh = {v + offset, C, 1}; /* (T, D) */
        sgemm_avx2(T, D, T, p, vh, out + offset, C, NULL, 0, 1);
    }
}

/* Backward, again per (batch, head) with small single-threaded GEMMs on strided views (the
 * formulas are in attention_ref.c). With P the head's saved (T, T) probabilities and dO its
 * output gradient (T, D):
 *     dV += P^T @ dO,   dP = dO @ V^T (into datt),   dS = scale * P * (dP - rowdot(P, dP)),
 *     dQ += dS @ K,     dK += dS^T @ Q.
 * dS overwrites dP in place, row by row. Each head owns its own columns of dq/dk/dv and its
 * own slice of datt, so the threads share nothing and the result does not depend on them.
 * Causal rows stop at the diagonal: the masked dS entries are set to zero (P is zero there). */
void attention_bwd_avx2(float *dq,          // (B, T, H*D) or NULL
                        float *dk,          // (B, T, H*D) or NULL
                        float *dv,          // (B, T, H*D) or NULL
                        float *datt,        // (B, H, T, T) scratch
                        const float *dout,  // (B, T, H*D)
                        const float *q,     // (B, T, H*D)
                        const float *k,     // (B, T, H*D)
                        const float *v,     // (B, T, H*D)
                        const float *att,   // (B, H, T, T)
                        int64_t B, int64_t T, int64_t H, int64_t D, int causal) {
    const int64_t C = H * D, heads = B * H;
    const float scale = 1.0f / sqrtf((float)D);
    MMT_OMP("omp parallel for schedule(dynamic, 4) if(heads > 1 && T * T * D * heads >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t bh = 0; bh < heads; bh++) {
        const int64_t b = bh / H, h = bh % H, offset = b * T * C + h * D;
        const float *p = att + bh * T * T;
        float *ds = datt + bh * T * T;
        sgemm_view dout_h = {dout + offset, C, 1}; /* (T, D) */
        if (dv) {
            sgemm_view pt = {p, 1, T}; /* P^T: (T, T) */
            sgemm_avx2(T, D, T, pt, dout_h, dv + offset, C, NULL, 1, 1);
        }
        if (!dq && !dk) continue;
        sgemm_view vt = {v + offset, 1, C}; /* V^T: (D, T) */
        sgemm_avx2(T, T, D, dout_h, vt, ds, T, NULL, 0, 1);
        for (int64_t i = 0; i < T; i++)
            softmax_bwd_row_avx2(ds + i * T, ds + i * T, p + i * T, causal ? i + 1 : T, T, scale,
                                 0);
        if (dq) {
            sgemm_view s = {ds, T, 1};           /* (T, T) */
            sgemm_view kh = {k + offset, C, 1};  /* (T, D) */
            sgemm_avx2(T, D, T, s, kh, dq + offset, C, NULL, 1, 1);
        }
        if (dk) {
            sgemm_view st = {ds, 1, T};          /* dS^T: (T, T) */
            sgemm_view qh = {q + offset, C, 1};  /* (T, D) */
            sgemm_avx2(T, D, T, st, qh, dk + offset, C, NULL, 1, 1);
        }
    }
}
