/*
 * attention_ref.c — reference multi-head scaled dot-product attention.
 *
 * Follows transformers' CLIPAttention (eager path): scores = q k^T * D^-0.5, an optional
 * causal mask (the CLIP text tower), softmax over keys, then probabilities @ v. One query row
 * at a time: scores go straight into att, are turned into probabilities in place, and the
 * output row is their weighted sum of value rows. Masked probabilities are exactly 0.
 */
#include <math.h>

#include "ops/ref/ops_ref.h"

void attention_fwd_ref(float *out,      // (B, T, H*D)
                       float *att,      // (B, H, T, T)
                       const float *q,  // (B, T, H*D)
                       const float *k,  // (B, T, H*D)
                       const float *v,  // (B, T, H*D)
                       int64_t B, int64_t T, int64_t H, int64_t D, int causal) {
    const int64_t C = H * D;
    const float scale = 1.0f / sqrtf((float)D);
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++) {
            for (int64_t i = 0; i < T; i++) {
                const float *qi = q + (b * T + i) * C + h * D;
                float *row = att + ((b * H + h) * T + i) * T;
                int64_t keys = causal ? i + 1 : T;  // keys after the query are masked
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

                float *oi = out + (b * T + i) * C + h * D;
                for (int64_t d = 0; d < D; d++) oi[d] = 0.0f;
                for (int64_t j = 0; j < keys; j++) {
                    const float *vj = v + (b * T + j) * C + h * D;
                    for (int64_t d = 0; d < D; d++) oi[d] += row[j] * vj[d];
                }
            }
        }
    }
}
