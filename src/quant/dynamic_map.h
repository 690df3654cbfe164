/*
 * dynamic_map.h — the 8-bit "dynamic" code of bitsandbytes (Dettmers, 8-Bit Approximations
 * for Parallelism in Deep Learning, arXiv:1511.04561), the value table that blockwise 8-bit
 * quantization (quant/blockwise8.h) and bitsandbytes' 8-bit optimizers index into.
 *
 * Usage:
 *     float code[256];
 *     mmt_dynamic_map(1, code);   // signed: the code of Adam's first moment
 *     mmt_dynamic_map(0, code);   // unsigned: the code of Adam's second moment
 *
 * The table is bit-identical to bitsandbytes.functional.create_dynamic_map(signed,
 * max_exponent_bits=7, total_bits=8) in bitsandbytes 0.50.2 (checked by tests/test_quant.c
 * against tests/fixtures/quant/dynamic_map_*.bin, made by bitsandbytes itself).
 */
#ifndef MMT_QUANT_DYNAMIC_MAP_H
#define MMT_QUANT_DYNAMIC_MAP_H

/* bitsandbytes functional.create_dynamic_map(signed=is_signed, max_exponent_bits=7,
 * total_bits=8): 256 sorted float32 values. Signed: code[0] = -0.99297 ... code[255] = 1;
 * unsigned: code[0] = 0 ... code[255] = 1. */
void mmt_dynamic_map(int is_signed, float code[256]);

#endif
