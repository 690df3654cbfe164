/*
 * normalize_ref.c — L2 normalisation of rows and its backward: CLIPModel's
 * image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True) (modeling_clip.py), no epsilon.
 *
 * Sums run in double; the norm is rounded to float32 and its reciprocal taken in float32, so
 * the training graph (nn/loss.h) and inference (models/clip.c) share these exact bits.
 */
#include <math.h>

#include "ops/ref/ops_ref.h"

void l2_normalize_fwd_ref(float *y,       // (B, P), may alias x
                          float *norm,    // (B), or NULL
                          const float *x, // (B, P)
                          int64_t B, int64_t P) {
    for (int64_t b = 0; b < B; b++) {
        double ss = 0;
        for (int64_t j = 0; j < P; j++) ss += (double)x[b * P + j] * x[b * P + j];
        float n = (float)sqrt(ss);
        float inv = n > 0 ? 1.0f / n : 0.0f;
        if (norm) norm[b] = n;
        for (int64_t j = 0; j < P; j++) y[b * P + j] = x[b * P + j] * inv;
    }
}

void l2_normalize_bwd_ref(float *dx,         // (B, P), accumulated
                          const float *dy,   // (B, P)
                          const float *y,    // (B, P) the forward's output
                          const float *norm, // (B) the forward's norms
                          int64_t B, int64_t P) {
    for (int64_t b = 0; b < B; b++) {
        if (norm[b] == 0) continue;
        double dot = 0;
        for (int64_t j = 0; j < P; j++) dot += (double)y[b * P + j] * dy[b * P + j];
        float inv = 1.0f / norm[b];
        for (int64_t j = 0; j < P; j++)
            dx[b * P + j] += (dy[b * P + j] - y[b * P + j] * (float)dot) * inv;
    }
}
