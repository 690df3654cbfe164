/*
 * nf4.c — bitsandbytes' NF4 format: the code table, quantization (backends/default/ops.py
 * "quantize_4bit", the path bitsandbytes 0.50.2 takes on the CPU), dequantization, and the
 * double quantization of the block scales (functional.quantize_4bit, compress_statistics).
 * nf4.h lists each rule; the comments here say where each comes from.
 */
#include "quant/nf4.h"

#include <math.h>

#include "quant/blockwise8.h"
#include "quant/dynamic_map.h"

/* functional.get_4bit_type("nf4"): the decimal values of bitsandbytes rounded to float32
 * (written in hex so no decimal-to-float rounding can differ). */
const float mmt_nf4_code[16] = {
    -0x1.000000p+0f, -0x1.647362p-1f, -0x1.0cd660p-1f, -0x1.946540p-2f,
    -0x1.23449ap-2f, -0x1.7a6a7ep-3f, -0x1.74f0e2p-4f, 0.0f,
    0x1.45f5fep-4f,  0x1.4995c6p-3f,  0x1.f809bap-3f,  0x1.5a0674p-2f,
    0x1.c34970p-2f,  0x1.200f56p-1f,  0x1.722766p-1f,  0x1.000000p+0f,
};

/* absmax.clamp(min=1e-38): the Python literal rounded to float32, a subnormal. */
static const float absmax_floor = 1e-38f;

int64_t mmt_nf4_blocks(int64_t n, int64_t blocksize) { return (n + blocksize - 1) / blocksize; }

int64_t mmt_nf4_packed_bytes(int64_t n) { return (n + 1) / 2; }

/* torch.bucketize(v, (code[:-1] + code[1:]) / 2, right=False): the count of midpoints below
 * v; torch's search treats NaN as above every boundary, hence !(v <= b). */
static int nf4_index(const float mid[15], float v) {
    int q = 0;
    for (int k = 0; k < 15; k++) q += !(v <= mid[k]);
    return q;
}

/* torch.clamp(v, -1, 1) keeps NaN. */
static float clamp_unit(float v) {
    if (v < -1.0f) return -1.0f;
    if (v > 1.0f) return 1.0f;
    return v;
}

/* A.abs().max() of a block; torch's max propagates NaN. */
static float block_absmax(const float *x, int64_t len) {
    float am = 0.0f;
    for (int64_t i = 0; i < len; i++) {
        float a = fabsf(x[i]);
        if (a > am || isnan(a)) am = a;
        if (isnan(am)) break;
    }
    return am;
}

static void put_nibble(uint8_t *packed, int64_t i, int q) {
    if (i % 2 == 0) packed[i / 2] = (uint8_t)(q << 4);
    else packed[i / 2] |= (uint8_t)q;
}

void mmt_nf4_quantize(uint8_t *packed, float *absmax, const float *x, int64_t n,
                      int64_t blocksize) {
    float mid[15];
    for (int k = 0; k < 15; k++) mid[k] = (mmt_nf4_code[k] + mmt_nf4_code[k + 1]) / 2.0f;
    int64_t full = n - n % blocksize;
    for (int64_t start = 0, b = 0; start < n; start += blocksize, b++) {
        int64_t len = n - start < blocksize ? n - start : blocksize;
        float am = block_absmax(x + start, len);
        float clamped = am > absmax_floor ? am : (isnan(am) ? am : absmax_floor);
        if (start < full) {
            /* Full blocks: A_com * (1.0 / absmax.clamp(min=1e-38)); the stored absmax is the
             * unclamped max. */
            absmax[b] = am;
            float inv = 1.0f / clamped;
            for (int64_t i = 0; i < len; i++)
                put_nibble(packed, start + i, nf4_index(mid, clamp_unit(x[start + i] * inv)));
        } else {
            /* The ragged tail: A_flat[full:] / am, with am already clamped and stored so. */
            absmax[b] = clamped;
            for (int64_t i = 0; i < len; i++)
                put_nibble(packed, start + i, nf4_index(mid, clamp_unit(x[start + i] / clamped)));
        }
    }
    /* Odd n: torch pads the scaled values with one 0.0, whose code is 7. */
    if (n % 2) put_nibble(packed, n, nf4_index(mid, 0.0f));
}

void mmt_nf4_dequantize(float *x, const uint8_t *packed, const float *absmax, int64_t n,
                        int64_t blocksize, const float code[16]) {
    for (int64_t i = 0; i < n; i++) {
        uint8_t byte = packed[i / 2];
        int q = i % 2 == 0 ? byte >> 4 : byte & 0x0F;
        x[i] = code[q] * absmax[i / blocksize];
    }
}

/* multi_row_sum of SumKernel.cpp with 4 rows of 8-lane vectors: row k of step i is the
 * vector at index i * 4 + k. The running sum is cascaded over 4 levels of level_step
 * (>= 16) additions each, so only sums of similar size meet. */
#define SUM_LANES 8
#define SUM_ROWS 4
#define SUM_LEVELS 4

static int64_t ceil_log2(int64_t x) {
    if (x <= 2) return 1;
    int64_t bits = 0;
    for (uint64_t v = (uint64_t)(x - 1); v; v >>= 1) bits++;
    return bits;
}

static void add_vector(float *acc, const float *v) {
    for (int l = 0; l < SUM_LANES; l++) acc[l] += v[l];
}

static void multi_row_sum(float out[SUM_ROWS][SUM_LANES], const float *x, int64_t size) {
    int64_t level_power = ceil_log2(size) / SUM_LEVELS;
    if (level_power < 4) level_power = 4;
    const int64_t level_step = (int64_t)1 << level_power, level_mask = level_step - 1;
    float acc[SUM_LEVELS][SUM_ROWS][SUM_LANES] = {{{0}}};
    int64_t i = 0;
    while (i + level_step <= size) {
        for (int64_t j = 0; j < level_step; j++, i++)
            for (int k = 0; k < SUM_ROWS; k++)
                add_vector(acc[0][k], x + (i * SUM_ROWS + k) * SUM_LANES);
        for (int j = 1; j < SUM_LEVELS; j++) {
            for (int k = 0; k < SUM_ROWS; k++) {
                add_vector(acc[j][k], acc[j - 1][k]);
                for (int l = 0; l < SUM_LANES; l++) acc[j - 1][k][l] = 0.0f;
            }
            if ((i & (level_mask << (j * level_power))) != 0) break;
        }
    }
    for (; i < size; i++)
        for (int k = 0; k < SUM_ROWS; k++) add_vector(acc[0][k], x + (i * SUM_ROWS + k) * SUM_LANES);
    for (int j = 1; j < SUM_LEVELS; j++)
        for (int k = 0; k < SUM_ROWS; k++) add_vector(acc[0][k], acc[j][k]);
    for (int k = 0; k < SUM_ROWS; k++)
        for (int l = 0; l < SUM_LANES; l++) out[k][l] = acc[0][k][l];
}

/* cascade_sum -> vectorized_inner_sum (n >= 8): row_sum over the n / 8 vectors, the scalar
 * tail summed first into final_acc, then the 8 lanes added to it in order. For n < 8 torch
 * takes the scalar row_sum, which is the same algorithm with 1-lane "vectors". */
static float torch_sum(const float *x, int64_t n) {
    if (n < SUM_LANES) {
        float rows[SUM_ROWS] = {0};
        int64_t size_ilp = n / SUM_ROWS; /* < 2: no cascade level completes */
        for (int64_t i = 0; i < size_ilp; i++)
            for (int k = 0; k < SUM_ROWS; k++) rows[k] += x[i * SUM_ROWS + k];
        for (int64_t i = size_ilp * SUM_ROWS; i < n; i++) rows[0] += x[i];
        for (int k = 1; k < SUM_ROWS; k++) rows[0] += rows[k];
        return rows[0];
    }
    int64_t vec_size = n / SUM_LANES, size_ilp = vec_size / SUM_ROWS;
    float partial[SUM_ROWS][SUM_LANES];
    multi_row_sum(partial, x, size_ilp);
    for (int64_t v = size_ilp * SUM_ROWS; v < vec_size; v++)
        add_vector(partial[0], x + v * SUM_LANES);
    for (int k = 1; k < SUM_ROWS; k++) add_vector(partial[0], partial[k]);
    float final_acc = 0.0f;
    for (int64_t i = vec_size * SUM_LANES; i < n; i++) final_acc += x[i];
    for (int l = 0; l < SUM_LANES; l++) final_acc += partial[0][l];
    return final_acc;
}

float mmt_nf4_absmax_offset(const float *absmax, int64_t n) {
    /* mean on the CPU = sum(...).div_(numel), in float. */
    return torch_sum(absmax, n) / (float)n;
}

void mmt_nf4_compress_absmax(uint8_t *qabsmax, float *nested_absmax, float *offset,
                             const float *absmax, float *work, int64_t blocks,
                             int64_t nested_blocksize) {
    float code[256];
    mmt_dynamic_map(1, code);
    float mean = mmt_nf4_absmax_offset(absmax, blocks);
    for (int64_t i = 0; i < blocks; i++) work[i] = absmax[i] - mean;
    mmt_quantize_blockwise8(qabsmax, nested_absmax, work, blocks, nested_blocksize, code);
    *offset = mean;
}

void mmt_nf4_expand_absmax(float *absmax, const uint8_t *qabsmax, const float *nested_absmax,
                           float offset, int64_t blocks, int64_t nested_blocksize,
                           const float nested_code[256]) {
    for (int64_t i = 0; i < blocks; i++)
        absmax[i] = nested_code[qabsmax[i]] * nested_absmax[i / nested_blocksize] + offset;
}
