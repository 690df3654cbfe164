/*
 * int8_rows.c — LLM.int8 row-wise weight quantization as bitsandbytes computes it (the
 * formulas and their sources are in int8_rows.h).
 */
#include "quant/int8_rows.h"

#include <math.h>

/* 7.874015718698502e-3 (~1/127) as torch multiplies by it: the Python float cast to float. */
static const float inv127 = (float)7.874015718698502e-3;

static float row_absmax(const float *w, int64_t cols) {
    float am = 0.0f;
    for (int64_t c = 0; c < cols; c++) {
        float a = fabsf(w[c]);
        if (isnan(a)) return a;
        if (a > am) am = a;
    }
    return am;
}

/* torch.round (half to even) then .to(int8); |v| <= 127 by construction except NaN, which
 * torch's float-to-int8 conversion on x86 makes 0. */
static int8_t round_to_int8(float v) {
    if (isnan(v) || isinf(v)) return 0;
    return (int8_t)nearbyintf(v);
}

void mmt_int8_rows_quantize(int8_t *q, float *scb, const float *w, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float *row = w + r * cols;
        float am = row_absmax(row, cols);
        scb[r] = am;
        float scale = (1.0f / am) * 127.0f;
        for (int64_t c = 0; c < cols; c++) q[r * cols + c] = round_to_int8(row[c] * scale);
    }
}

void mmt_int8_rows_dequantize(float *w, const int8_t *q, const float *scb, int64_t rows,
                              int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            w[r * cols + c] = ((float)q[r * cols + c] * scb[r]) * inv127;
}
