/*
 * layout_cpu.c — fast data-movement ops shared by the CPU tables: embedding lookup and
 * patch extraction (semantics in ops.h and src/ops/ref/layout_ref.c).
 *
 * No SIMD needed here: both are copies, so the win over the reference is copying whole
 * contiguous runs with memcpy (a table row; P floats of one image row) and splitting large
 * jobs over OpenMP threads.
 */
#include <string.h>

#include "ops/cpu/cpu_ops.h"

void embedding_fwd_cpu(float *y,            // (N, C)
                       const int32_t *ids,  // (N)
                       const float *table,  // (V, C)
                       int64_t N, int64_t C) {
    MMT_OMP("omp parallel for schedule(static) if(N * C >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t i = 0; i < N; i++)
        memcpy(y + i * C, table + (int64_t)ids[i] * C, (size_t)C * sizeof(float));
}

void patchify_fwd_cpu(float *y,        // (B, L, Cin*P*P), L = (Hh/P)*(Ww/P)
                      const float *x,  // (B, Cin, Hh, Ww)
                      int64_t B, int64_t Cin, int64_t Hh, int64_t Ww, int64_t P) {
    const int64_t GH = Hh / P, GW = Ww / P, F = Cin * P * P, patches = B * GH * GW;
    MMT_OMP("omp parallel for schedule(static) if(patches * F >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t n = 0; n < patches; n++) {
        const int64_t b = n / (GH * GW), gy = n / GW % GH, gx = n % GW;
        float *patch = y + n * F;
        for (int64_t c = 0; c < Cin; c++)
            for (int64_t py = 0; py < P; py++)
                memcpy(patch + (c * P + py) * P,
                       x + ((b * Cin + c) * Hh + gy * P + py) * Ww + gx * P,
                       (size_t)P * sizeof(float));
    }
}
