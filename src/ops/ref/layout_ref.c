/*
 * layout_ref.c — reference data-movement ops: embedding lookup and patch extraction, and
 * their backwards (scatter-adds).
 *
 * patchify is the im2col of a Conv2d with kernel = stride = P (the ViT patch embedding):
 * patch (gy, gx) of image b becomes row b*L + gy*GW + gx of y, its features ordered
 * (c, py, px) like a Conv2d weight [out, Cin, P, P], so y @ weight.view(out, -1)^T equals
 * the convolution output in (B, L, out) layout. As with Conv2d, rows or columns that do not
 * fill a whole patch (Hh or Ww not a multiple of P) are dropped.
 */
#include "ops/ref/ops_ref.h"

void embedding_fwd_ref(float *y,            // (N, C)
                       const int32_t *ids,  // (N)
                       const float *table,  // (V, C)
                       int64_t N, int64_t C) {
    for (int64_t i = 0; i < N; i++) {
        const float *row = table + (int64_t)ids[i] * C;
        for (int64_t c = 0; c < C; c++) y[i * C + c] = row[c];
    }
}

void patchify_fwd_ref(float *y,        // (B, L, Cin*P*P), L = (Hh/P)*(Ww/P)
                      const float *x,  // (B, Cin, Hh, Ww)
                      int64_t B, int64_t Cin, int64_t Hh, int64_t Ww, int64_t P) {
    const int64_t GH = Hh / P, GW = Ww / P, F = Cin * P * P;
    for (int64_t b = 0; b < B; b++)
        for (int64_t gy = 0; gy < GH; gy++)
            for (int64_t gx = 0; gx < GW; gx++) {
                float *patch = y + (b * GH * GW + gy * GW + gx) * F;
                for (int64_t c = 0; c < Cin; c++)
                    for (int64_t py = 0; py < P; py++)
                        for (int64_t px = 0; px < P; px++)
                            patch[(c * P + py) * P + px] =
                                x[((b * Cin + c) * Hh + gy * P + py) * Ww + gx * P + px];
            }
}

/* Backward of the lookup: each row of dy is added to the table row it was read from, in
 * order i = 0..N-1, so repeated ids sum (and the result does not depend on threads). */
void embedding_bwd_ref(float *dtable,       // (V, C)
                       const float *dy,     // (N, C)
                       const int32_t *ids,  // (N)
                       int64_t N, int64_t C) {
    for (int64_t i = 0; i < N; i++) {
        float *row = dtable + (int64_t)ids[i] * C;
        for (int64_t c = 0; c < C; c++) row[c] += dy[i * C + c];
    }
}

/* Backward of patchify: the same index map as the forward, read the other way. Patches do
 * not overlap, so each pixel receives at most one value; dropped edge pixels receive none. */
void patchify_bwd_ref(float *dx,        // (B, Cin, Hh, Ww)
                      const float *dy,  // (B, L, Cin*P*P), L = (Hh/P)*(Ww/P)
                      int64_t B, int64_t Cin, int64_t Hh, int64_t Ww, int64_t P) {
    const int64_t GH = Hh / P, GW = Ww / P, F = Cin * P * P;
    for (int64_t b = 0; b < B; b++)
        for (int64_t gy = 0; gy < GH; gy++)
            for (int64_t gx = 0; gx < GW; gx++) {
                const float *patch = dy + (b * GH * GW + gy * GW + gx) * F;
                for (int64_t c = 0; c < Cin; c++)
                    for (int64_t py = 0; py < P; py++)
                        for (int64_t px = 0; px < P; px++)
                            dx[((b * Cin + c) * Hh + gy * P + py) * Ww + gx * P + px] +=
                                patch[(c * P + py) * P + px];
            }
}
