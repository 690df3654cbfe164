/*
 * blockwise8.c — bitsandbytes' blockwise 8-bit quantization, reproduced bit for bit.
 *
 * bitsandbytes 0.50.2 no longer searches the code for each value on the CPU: it builds a
 * 65536-entry table once per code (csrc/cpu_ops.cpp build_quantize_lut) over the grid
 * val(g) = -1 + 2g / 65535, entry g = the number of code midpoints strictly below val(g),
 * and quantizes a value by rounding it to that grid (norm_to_lut_index). Rounding to the
 * grid first is what makes the result differ from the true nearest code entry near 0, where
 * the dynamic code is much finer than the grid step 3.05e-5. Instead of the 64 KiB table
 * this file computes the same table entry on demand by a binary search over the 255
 * midpoints: for a sorted code, "number of midpoints < val" is exactly what the table's
 * forward scan stores.
 *
 * Every float operation is written in the order bitsandbytes evaluates it, each rounded to
 * float (the quant/ files are built with -ffp-contract=off so no multiply-add is fused).
 */
#include "quant/blockwise8.h"

#include <math.h>

/* build_quantize_lut's midpoints: 0.5f * (code[k] + code[k + 1]). */
static void code_midpoints(const float code[256], float mid[255]) {
    for (int k = 0; k < 255; k++) mid[k] = 0.5f * (code[k] + code[k + 1]);
}

/* The table entry for grid index g: how many midpoints are strictly below val(g). */
static uint8_t grid_code_index(const float mid[255], int g) {
    float val = -1.0f + (2.0f * (float)g) / 65535.0f;
    int lo = 0, hi = 255; /* answer in [lo, hi] */
    while (lo < hi) {
        int m = (lo + hi) / 2;
        if (mid[m] < val) lo = m + 1;
        else hi = m;
    }
    return (uint8_t)lo;
}

/* avx2_quantize_8bit_block's absmax: NaN lanes count as 0, and the scalar tail's
 * std::max(am, |x|) keeps am when |x| is NaN. */
static float block_absmax(const float *x, int64_t len) {
    float am = 0.0f;
    for (int64_t i = 0; i < len; i++) {
        float a = fabsf(x[i]);
        if (am < a) am = a;
    }
    return am;
}

/* norm_to_lut_index after the clamp: _mm256_max_ps(v, -1) yields -1 for NaN. */
static int grid_index(float v) {
    v = v > -1.0f ? v : -1.0f;
    v = v < 1.0f ? v : 1.0f;
    float t = (v + 1.0f) * 0.5f;
    t = t * 65535.0f;
    t = t + 0.5f;
    return (int)t; /* t in [0.5, 65535.5]: truncation as _mm256_cvttps_epi32 */
}

void mmt_blockwise8_lut(const float code[256], uint8_t lut[MMT_BLOCKWISE8_GRID]) {
    float mid[255];
    code_midpoints(code, mid);
    for (int g = 0; g < MMT_BLOCKWISE8_GRID; g++) lut[g] = grid_code_index(mid, g);
}

void mmt_quantize_blockwise8_lut(uint8_t *q, float *absmax, const float *x, int64_t n, int64_t blocksize,
                                 const uint8_t lut[MMT_BLOCKWISE8_GRID]) {
    for (int64_t start = 0, b = 0; start < n; start += blocksize, b++) {
        int64_t len = n - start < blocksize ? n - start : blocksize;
        float am = block_absmax(x + start, len);
        absmax[b] = am;
        if (am == 0.0f) {
            for (int64_t i = 0; i < len; i++) q[start + i] = 0;
            continue;
        }
        float inv = 1.0f / am;
        for (int64_t i = 0; i < len; i++) q[start + i] = lut[grid_index(x[start + i] * inv)];
    }
}

void mmt_quantize_blockwise8(uint8_t *q, float *absmax, const float *x, int64_t n,
                             int64_t blocksize, const float code[256]) {
    float mid[255];
    code_midpoints(code, mid);
    for (int64_t start = 0, b = 0; start < n; start += blocksize, b++) {
        int64_t len = n - start < blocksize ? n - start : blocksize;
        float am = block_absmax(x + start, len);
        absmax[b] = am;
        if (am == 0.0f) {
            for (int64_t i = 0; i < len; i++) q[start + i] = 0;
            continue;
        }
        float inv = 1.0f / am;
        for (int64_t i = 0; i < len; i++)
            q[start + i] = grid_code_index(mid, grid_index(x[start + i] * inv));
    }
}

void mmt_dequantize_blockwise8(float *x, const uint8_t *q, const float *absmax, int64_t n,
                               int64_t blocksize, const float code[256]) {
    for (int64_t start = 0, b = 0; start < n; start += blocksize, b++) {
        int64_t len = n - start < blocksize ? n - start : blocksize;
        float scale = absmax[b];
        for (int64_t i = 0; i < len; i++) x[start + i] = code[q[start + i]] * scale;
    }
}
