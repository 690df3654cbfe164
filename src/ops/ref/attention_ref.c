/*
 * attention_ref.c — reference multi-head scaled dot-product attention, forward and backward.
 *
 * Follows transformers' CLIPAttention (eager path): scores = q k^T * D^-0.5, an optional
 * causal mask (the CLIP text tower), softmax over keys, then probabilities @ v. One query row
 * at a time: scores go straight into att, are turned into probabilities in place, and the
 * output row is their weighted sum of value rows. Masked probabilities are exactly 0.
 *
 * The general form (attention_kv_*) has Tk keys for Tq queries and a causal offset: query i
 * sees keys 0 .. i + offset. Prefix tuning prepends `offset` learned key/value rows, which
 * every query sees; the square form is the case Tq = Tk, offset 0, and runs the same loops.
 */
#include <math.h>
#include <stddef.h>

#include "ops/ref/ops_ref.h"

/* Keys query i may see: all Tk, or with the causal mask those up to i + offset. */
static int64_t visible_keys(int64_t i, int64_t Tk, int causal, int64_t offset) {
    if (!causal) return Tk;
    int64_t n = i + offset + 1;
    return n < 0 ? 0 : n > Tk ? Tk : n;
}

void attention_kv_fwd_ref(float *out,      // (B, Tq, H*D)
                          float *att,      // (B, H, Tq, Tk)
                          const float *q,  // (B, Tq, H*D)
                          const float *k,  // (B, Tk, H*D)
                          const float *v,  // (B, Tk, H*D)
                          int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t D, int causal,
                          int64_t offset) {
    const int64_t C = H * D, T = Tk;
    const float scale = 1.0f / sqrtf((float)D);
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++) {
            for (int64_t i = 0; i < Tq; i++) {
                const float *qi = q + (b * Tq + i) * C + h * D;
                float *row = att + ((b * H + h) * Tq + i) * T;
                int64_t keys = visible_keys(i, T, causal, offset);  // later keys are masked
                float max = -INFINITY;
                for (int64_t j = 0; j < keys; j++) {
                    const float *kj = k + (b * T + j) * C + h * D;
                    float dot = 0.0f;
                    for (int64_t d = 0; d < D; d++) dot += qi[d] * kj[d];
                    row[j] = dot * scale;
                    max = row[j] > max ? row[j] : max;
                }
                double sum = 0.0;
                for (int64_t j = 0; j < keys; j++) {
                    row[j] = expf(row[j] - max);
                    sum += row[j];
                }
                float inv = (float)(1.0 / sum);
                for (int64_t j = 0; j < keys; j++) row[j] *= inv;
                for (int64_t j = keys; j < T; j++) row[j] = 0.0f;

                float *oi = out + (b * Tq + i) * C + h * D;
                for (int64_t d = 0; d < D; d++) oi[d] = 0.0f;
                for (int64_t j = 0; j < keys; j++) {
                    const float *vj = v + (b * T + j) * C + h * D;
                    for (int64_t d = 0; d < D; d++) oi[d] += row[j] * vj[d];
                }
            }
        }
    }
}

void attention_fwd_ref(float *out, float *att, const float *q, const float *k, const float *v,
                       int64_t B, int64_t T, int64_t H, int64_t D, int causal) {
    attention_kv_fwd_ref(out, att, q, k, v, B, T, T, H, D, causal, 0);
}

/* Backward, one (batch, head, query row) at a time. With p the saved probabilities of query
 * row i, o_i = sum_j p_ij v_j and s_ij = (q_i . k_j) * scale:
 *     dv_j += p_ij do_i                       dp_ij = do_i . v_j
 *     ds_ij = p_ij (dp_ij - sum_l p_il dp_il)  (softmax backward)
 *     dq_i += scale sum_j ds_ij k_j           dk_j += scale ds_ij q_i
 * Masked keys have p_ij = 0 and so get nothing. datt row i holds dp_i and then scale * ds_i
 * (the gradient of the raw dot products q . k), left there as scratch. */
void attention_kv_bwd_ref(float *dq,          // (B, Tq, H*D) or NULL
                          float *dk,          // (B, Tk, H*D) or NULL
                          float *dv,          // (B, Tk, H*D) or NULL
                          float *datt,        // (B, H, Tq, Tk) scratch
                          const float *dout,  // (B, Tq, H*D)
                          const float *q,     // (B, Tq, H*D)
                          const float *k,     // (B, Tk, H*D)
                          const float *v,     // (B, Tk, H*D)
                          const float *att,   // (B, H, Tq, Tk)
                          int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t D, int causal,
                          int64_t offset) {
    const int64_t C = H * D, T = Tk;
    const float scale = 1.0f / sqrtf((float)D);
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++) {
            for (int64_t i = 0; i < Tq; i++) {
                const float *p = att + ((b * H + h) * Tq + i) * T;
                const float *doi = dout + (b * Tq + i) * C + h * D;
                float *ds = datt + ((b * H + h) * Tq + i) * T;
                int64_t keys = visible_keys(i, T, causal, offset);
                for (int64_t j = keys; j < T; j++) ds[j] = 0.0f;
                if (dv)
                    for (int64_t j = 0; j < keys; j++) {
                        float *dvj = dv + (b * T + j) * C + h * D;
                        for (int64_t d = 0; d < D; d++) dvj[d] += p[j] * doi[d];
                    }
                if (!dq && !dk) continue;
                double dot = 0.0;
                for (int64_t j = 0; j < keys; j++) {
                    const float *vj = v + (b * T + j) * C + h * D;
                    float dp = 0.0f;
                    for (int64_t d = 0; d < D; d++) dp += doi[d] * vj[d];
                    ds[j] = dp;
                    dot += (double)p[j] * dp;
                }
                for (int64_t j = 0; j < keys; j++)
                    ds[j] = (float)(p[j] * (ds[j] - dot)) * scale;
                const float *qi = q + (b * Tq + i) * C + h * D;
                float *dqi = dq ? dq + (b * Tq + i) * C + h * D : NULL;
                for (int64_t j = 0; j < keys; j++) {
                    const float *kj = k + (b * T + j) * C + h * D;
                    float *dkj = dk ? dk + (b * T + j) * C + h * D : NULL;
                    for (int64_t d = 0; d < D; d++) {
                        if (dqi) dqi[d] += ds[j] * kj[d];
                        if (dkj) dkj[d] += ds[j] * qi[d];
                    }
                }
            }
        }
    }
}

void attention_bwd_ref(float *dq, float *dk, float *dv, float *datt, const float *dout,
                       const float *q, const float *k, const float *v, const float *att,
                       int64_t B, int64_t T, int64_t H, int64_t D, int causal) {
    attention_kv_bwd_ref(dq, dk, dv, datt, dout, q, k, v, att, B, T, T, H, D, causal, 0);
}
