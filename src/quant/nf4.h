/*
 * nf4.h — bitsandbytes' NF4 (4-bit NormalFloat, QLoRA arXiv:2305.14314) weight format,
 * bit for bit: quantize, dequantize, and the double quantization of the block scales
 * (compress_statistics=True, "bnb_4bit_use_double_quant").
 *
 * Usage (n = numel of the weight, e.g. out * in; blocks over the FLATTENED tensor):
 *     int64_t blocks = mmt_nf4_blocks(n, 64);
 *     uint8_t packed[mmt_nf4_packed_bytes(n)]; float absmax[blocks];
 *     mmt_nf4_quantize(packed, absmax, w, n, 64);
 *     mmt_nf4_dequantize(w2, packed, absmax, n, 64, mmt_nf4_code);
 *   double quantization of absmax (nested blocksize 256, the signed dynamic map):
 *     float offset, work[blocks]; uint8_t qabs[blocks]; float nested[mmt_nf4_blocks(blocks, 256)];
 *     mmt_nf4_compress_absmax(qabs, nested, &offset, absmax, work, blocks, 256);
 *     float code[256]; mmt_dynamic_map(1, code);
 *     mmt_nf4_expand_absmax(absmax2, qabs, nested, offset, blocks, 256, code);
 *
 * What bitsandbytes 0.50.2 does on the CPU (quantize: backends/default/ops.py
 * "quantize_4bit", which the CPU backend does not override; functional.quantize_4bit for
 * the double quantization; dequantize: csrc/cpu_ops.cpp dequantizeBlockwise4bitCpu and
 * backends/default/ops.py _dequantize_4bit_compute), and so these functions:
 *   - absmax of a block = max |x|; a full block scales by x * (1 / max(absmax, 1e-38f))
 *     (a reciprocal then a multiply) but the ragged LAST block by x / max(absmax, 1e-38f)
 *     (a true division), and its stored absmax is the clamped value: an all-zero ragged last
 *     block stores 1e-38f (a subnormal), an all-zero full block stores 0;
 *   - the scaled value, clamped to [-1, 1], gets the code index = number of midpoints
 *     (code[k] + code[k+1]) / 2 strictly below it (torch.bucketize, right=False): a value on
 *     a midpoint goes to the lower entry; NaN goes to 15;
 *   - two codes per byte, the EVEN element in the HIGH nibble; an odd element count is
 *     padded with a scaled 0.0, so the last byte's low nibble is 7 (the code of 0), not 0;
 *   - dequantize: x[i] = code[nibble_i] * absmax[i / blocksize], one float multiply;
 *   - double quantization: offset = absmax.mean() as torch computes it on the CPU (see
 *     mmt_nf4_absmax_offset), then absmax - offset (float) is quantized blockwise
 *     (quant/blockwise8.h) with blocksize 256 and the signed dynamic map; the scale used at
 *     run time is code[q] * nested_absmax[i / 256] + offset (a multiply, then an add).
 */
#ifndef MMT_QUANT_NF4_H
#define MMT_QUANT_NF4_H

#include <stdint.h>

/* get_4bit_type("nf4") as float32, index = the 4-bit value. */
extern const float mmt_nf4_code[16];

/* ceil(n / blocksize): the absmax count. */
int64_t mmt_nf4_blocks(int64_t n, int64_t blocksize);
/* (n + 1) / 2: packed bytes (bitsandbytes stores them as a U8 tensor [(n + 1) / 2, 1]). */
int64_t mmt_nf4_packed_bytes(int64_t n);

/* x (n) -> packed ((n + 1) / 2 bytes) and absmax (ceil(n / blocksize)); blocksize > 0. */
void mmt_nf4_quantize(uint8_t *packed, float *absmax, const float *x, int64_t n,
                      int64_t blocksize);
/* x[i] = code[nibble_i] * absmax[i / blocksize] for i < n; code is mmt_nf4_code or the
 * quant_map a file carries. */
void mmt_nf4_dequantize(float *x, const uint8_t *packed, const float *absmax, int64_t n,
                        int64_t blocksize, const float code[16]);

/* torch.mean of a float32 vector on an x86 CPU, bit for bit: torch's cascade sum
 * (aten/src/ATen/native/cpu/SumKernel.cpp, the AVX2 kernel of 8 float lanes, which torch
 * uses for sum on AVX-512 machines too) divided by n in float. torch splits sums of more
 * than 32768 elements across its threads, which can change the last bits there; below that
 * the result is exact. n > 0. */
float mmt_nf4_absmax_offset(const float *absmax, int64_t n);
/* Double quantization: offset = mmt_nf4_absmax_offset(absmax), work[i] = absmax[i] - offset,
 * then mmt_quantize_blockwise8(qabsmax, nested_absmax, work, blocks, nested_blocksize,
 * signed dynamic map). work is scratch of `blocks` floats. bitsandbytes always uses 256. */
void mmt_nf4_compress_absmax(uint8_t *qabsmax, float *nested_absmax, float *offset,
                             const float *absmax, float *work, int64_t blocks,
                             int64_t nested_blocksize);
/* absmax[i] = nested_code[qabsmax[i]] * nested_absmax[i / nested_blocksize] + offset. */
void mmt_nf4_expand_absmax(float *absmax, const uint8_t *qabsmax, const float *nested_absmax,
                           float offset, int64_t blocks, int64_t nested_blocksize,
                           const float nested_code[256]);

#endif
