/*
 * dynamic_map.c — bitsandbytes' dynamic 8-bit code, computed the way bitsandbytes computes
 * it, so that every float comes out with the same bits.
 *
 * bitsandbytes/functional.py create_dynamic_map(signed, max_exponent_bits=7, total_bits=8)
 * builds, for each exponent i = 0..6, `fraction_items` evenly spaced boundaries
 *     boundaries = torch.linspace(0.1, 1, fraction_items, dtype=torch.float32)
 *     means = (boundaries[:-1] + boundaries[1:]) / 2.0           # float32
 *     data += (10 ** (i - 6) * means).tolist()                    # float32 tensor * scalar
 * (and the negatives when signed), then appends 0 and 1.0 and sorts. Every step is float32
 * tensor arithmetic, so each is mirrored here in float: torch's CPU linspace
 * (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp) takes step = (end - start) / (steps - 1)
 * in float and fills the first half as start + step * i and the second half as
 * end - step * (steps - 1 - i), each a fused multiply-add; a Python scalar times a float32 tensor is computed as
 * (float)scalar * x in float (the scalar is cast to the tensor's op math type first).
 * With 7 sign-less bits and max_exponent_bits 7 there are no "additional items", and the
 * item count is exactly 256, so no zero padding is appended.
 */
#include "quant/dynamic_map.h"

#include <math.h>
#include <stdlib.h>

/* torch.linspace(start, end, steps, dtype=float32) element k on the CPU. torch's x86 build
 * evaluates start + step * k as one fused multiply-add (its kernels are compiled for AVX2 +
 * FMA), so fmaf gives the same single rounding; a separate multiply and add differ in the
 * last bit for a few elements of every length >= 9 (checked against torch for lengths up
 * to 12345). */
static float linspace_at(float start, float end, int steps, int k) {
    float step = (end - start) / (float)(steps - 1);
    int halfway = steps / 2;
    if (k < halfway) return fmaf(step, (float)k, start);
    return fmaf(-step, (float)(steps - k - 1), end);
}

static int compare_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void mmt_dynamic_map(int is_signed, float code[256]) {
    const int max_exponent_bits = 7, non_sign_bits = 7;
    int n = 0;
    for (int i = 0; i < max_exponent_bits; i++) {
        int fraction_items = is_signed ? (1 << (i + non_sign_bits - max_exponent_bits)) + 1
                                       : (1 << (i + non_sign_bits - max_exponent_bits + 1)) + 1;
        /* 10 ** (i - 6): Python evaluates it in double (pow), torch casts it to float. */
        float scale = (float)pow(10.0, (double)(i - (max_exponent_bits - 1)));
        for (int k = 0; k + 1 < fraction_items; k++) {
            float lo = linspace_at(0.1f, 1.0f, fraction_items, k);
            float hi = linspace_at(0.1f, 1.0f, fraction_items, k + 1);
            float mean = (lo + hi) / 2.0f;
            code[n++] = scale * mean;
            if (is_signed) code[n++] = -scale * mean;
        }
    }
    code[n++] = 0.0f;
    code[n++] = 1.0f;
    /* n == 256 here for both signs (see the file comment). */
    qsort(code, (size_t)n, sizeof(float), compare_float);
}
