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

/* Backward of the lookup. Repeated ids make rows collide, so threads split the columns, not
 * the rows: each thread adds its own column range of every dy row, rows in order, exactly
 * what the reference does, so the result is bitwise the reference's for any thread count.
 * Ranges are whole cache lines (16 floats) and one per thread, so a row costs each thread
 * one contiguous run. */
void embedding_bwd_cpu(float *dtable,       // (V, C)
                       const float *dy,     // (N, C)
                       const int32_t *ids,  // (N)
                       int64_t N, int64_t C) {
    const int64_t lines = (C + 15) / 16;
    int64_t parts = N * C >= CPU_PARALLEL_MIN_ELEMENTS ? cpu_max_threads() : 1;
    if (parts > lines) parts = lines;
    MMT_OMP("omp parallel for num_threads(parts) schedule(static) if(parts > 1)")
    for (int64_t part = 0; part < parts; part++) {
        const int64_t c0 = lines * part / parts * 16;
        const int64_t c1 = part + 1 == parts ? C : lines * (part + 1) / parts * 16;
        for (int64_t i = 0; i < N; i++) {
            float *row = dtable + (int64_t)ids[i] * C;
            const float *src = dy + i * C;
            for (int64_t c = c0; c < c1; c++) row[c] += src[c];
        }
    }
}

/* Backward of patchify: patches cover disjoint pixels, so threads split the patches and
 * add P-float runs of dy into the image rows, with no two threads on the same pixel. */
void patchify_bwd_cpu(float *dx,        // (B, Cin, Hh, Ww)
                      const float *dy,  // (B, L, Cin*P*P), L = (Hh/P)*(Ww/P)
                      int64_t B, int64_t Cin, int64_t Hh, int64_t Ww, int64_t P) {
    const int64_t GH = Hh / P, GW = Ww / P, F = Cin * P * P, patches = B * GH * GW;
    MMT_OMP("omp parallel for schedule(static) if(patches * F >= CPU_PARALLEL_MIN_ELEMENTS)")
    for (int64_t n = 0; n < patches; n++) {
        const int64_t b = n / (GH * GW), gy = n / GW % GH, gx = n % GW;
        const float *patch = dy + n * F;
        for (int64_t c = 0; c < Cin; c++)
            for (int64_t py = 0; py < P; py++) {
                float *dst = dx + ((b * Cin + c) * Hh + gy * P + py) * Ww + gx * P;
                const float *src = patch + (c * P + py) * P;
                for (int64_t px = 0; px < P; px++) dst[px] += src[px];
            }
    }
}
