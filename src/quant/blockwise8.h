/*
 * blockwise8.h — bitsandbytes' blockwise 8-bit quantization (quantize_blockwise /
 * dequantize_blockwise) on the CPU, bit for bit: the format of bitsandbytes' 8-bit optimizer
 * states and of the nested (double-quantized) NF4 absmax.
 *
 * Usage:
 *     float code[256];
 *     mmt_dynamic_map(1, code);                               // quant/dynamic_map.h
 *     int64_t blocks = (n + 255) / 256;                       // ceil(n / blocksize)
 *     uint8_t *q = ...n bytes...; float *absmax = ...blocks floats...;
 *     mmt_quantize_blockwise8(q, absmax, x, n, 256, code);
 *     mmt_dequantize_blockwise8(y, q, absmax, n, 256, code);  // y ~ x
 *
 * What bitsandbytes 0.50.2 does on the CPU (csrc/cpu_ops.cpp quantize_cpu_impl and
 * avx2_quantize_8bit_block, reached from backends/cpu/ops.py "quantize_blockwise" for
 * float32 input), and what these functions therefore do:
 *   - absmax of a block = max |x| over it, NaN ignored (0 when the block is all zero/NaN);
 *   - an all-zero block stores absmax 0 and q 0 (no division);
 *   - otherwise v = x * (1 / absmax) (a multiply by the float reciprocal, not a divide),
 *     clamped to [-1, 1] (NaN becomes -1), is mapped to a 65536-entry grid
 *     g = (uint16)(((v + 1) * 0.5) * 65535 + 0.5), and q is the code entry nearest to the
 *     grid value -1 + 2g / 65535, not to v itself: the code index is the number of
 *     midpoints 0.5 * (code[k] + code[k+1]) strictly below that grid value (a grid value
 *     exactly on a midpoint goes to the lower entry). So 0 maps to the code entry nearest
 *     1.5e-5 (index 131 of the signed map), not to the exact 0 at index 127.
 * The code must be sorted ascending (create_dynamic_map's is). The code is not modified.
 */
#ifndef MMT_QUANT_BLOCKWISE8_H
#define MMT_QUANT_BLOCKWISE8_H

#include <stdint.h>

/* bitsandbytes quantize_blockwise(x, code, blocksize) on the CPU: absmax (ceil(n/blocksize))
 * fp32 per block, q (n) bytes = index of the nearest code value to x/absmax (bnb's exact
 * tie and search rule, described above). blocksize > 0; the last block may be ragged. */
void mmt_quantize_blockwise8(uint8_t *q, float *absmax, const float *x, int64_t n,
                             int64_t blocksize, const float code[256]);
/* dequantize_blockwise: x[i] = code[q[i]] * absmax[i / blocksize] (one float multiply, as
 * csrc/cpu_ops.cpp dequantizeBlockwise8bitCpu). */
/* The same rule through bitsandbytes' own table (build_quantize_lut): the code index of each of
 * the 65536 grid points, built once per code map; then a value costs one lookup instead of a
 * binary search. mmt_quantize_blockwise8_lut gives the bytes mmt_quantize_blockwise8 gives. */
#define MMT_BLOCKWISE8_GRID 65536
void mmt_blockwise8_lut(const float code[256], uint8_t lut[MMT_BLOCKWISE8_GRID]);
void mmt_quantize_blockwise8_lut(uint8_t *q, float *absmax, const float *x, int64_t n, int64_t blocksize,
                                 const uint8_t lut[MMT_BLOCKWISE8_GRID]);
void mmt_dequantize_blockwise8(float *x, const uint8_t *q, const float *absmax, int64_t n,
                               int64_t blocksize, const float code[256]);

#endif
