/*
 * bnb_io.h — the safetensors layout in which transformers + bitsandbytes save quantized
 * nn.Linear weights (save_pretrained of a model loaded with BitsAndBytesConfig), read and
 * written, so a Hugging Face 4-bit or 8-bit snapshot loads as is and what mmtune writes loads
 * back in transformers.
 *
 * Tensors of one linear whose weight is "<base>.weight" (bitsandbytes 0.50,
 * nn/modules.py Linear4bit._save_to_state_dict / QuantState.as_dict(packed=True), and
 * Linear8bitLt._save_to_state_dict):
 *   NF4:  <base>.weight                   U8  [(n+1)/2, 1]  packed codes, n = out * in
 *         <base>.weight.absmax            F32 [blocks]      (U8 [blocks] with double quant)
 *         <base>.weight.quant_map         F32 [16]
 *         <base>.weight.nested_absmax     F32 [ceil(blocks / nested_blocksize)]  double quant
 *         <base>.weight.nested_quant_map  F32 [256]                             double quant
 *         <base>.weight.quant_state.bitsandbytes__nf4  U8 [len]: the UTF-8 bytes of
 *             {"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [out, in],
 *              "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.22}
 *             (the last three only with double quant)
 *   INT8: <base>.weight I8 [out, in], <base>.SCB F32 [out], <base>.weight_format U8 [] = 0
 *         (0 = "row", the only layout bitsandbytes still reads; the tensor may be absent)
 *
 * Reading (used by the model loaders):
 *     mmt_bnb_linear lin;
 *     MMT_TRY(mmt_bnb_linear_load(weights, arena, "vision_model.encoder.layers.0.mlp.fc1.weight",
 *                                 512, 128, &lin));
 *     switch (lin.kind) {
 *     case MMT_BNB_PLAIN: ... mmt_weights_f32(weights, arena, name, 2, shape, &w) as before
 *     case MMT_BNB_NF4:   ... lin.packed, lin.absmax, lin.code, lin.blocksize (an mmt_qmat NF4)
 *     case MMT_BNB_INT8:  ... lin.s8, lin.scb                                 (an mmt_qmat S8)
 *     }
 * Every tensor of a quantized linear is checked against the declared (out, in) before a
 * pointer is handed out: dtypes, shapes, byte counts, absmax counts (ceil(n / blocksize)),
 * the quant_state JSON (well formed, known keys' types, shape == (out, in), quant type nf4).
 * A failure is one mmt_fail line naming the file and the tensor; nothing is read out of range.
 * fp4 snapshots are refused (MMT_STATUS_UNSUPPORTED, "quant type fp4 is not supported").
 *
 * Writing (for `mmtune quantize`):
 *     mmt_bnb_tensors t;
 *     MMT_TRY(mmt_bnb_nf4_tensors(arena, "text_model.encoder.layers.0.mlp.fc1.weight", w, 512,
 *                                 128, 64, 1, &t));
 *     ... append t.tensors[0 .. t.n) to the list given to mmt_safetensors_write(), and the
 *     text of mmt_bnb_quantization_config() as "quantization_config" in config.json.
 * The bytes written equal what transformers + bitsandbytes 0.50.2 save from the same float32
 * weights (tests/test_quant.c compares them with a real snapshot).
 */
#ifndef MMT_QUANT_BNB_IO_H
#define MMT_QUANT_BNB_IO_H

#include <stdint.h>

#include "core/arena.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "core/weights.h"

typedef enum mmt_bnb_kind {
    MMT_BNB_PLAIN = 0, /* a float tensor: read it with mmt_weights_f32 */
    MMT_BNB_NF4 = 1,
    MMT_BNB_INT8 = 2
} mmt_bnb_kind;

/* One linear's weight as stored. Pointers point into the weights' mapping (zero-copy) or,
 * where a conversion was needed (double-quant absmax, unaligned floats), into the caller's
 * arena; either way they live as long as both. */
typedef struct mmt_bnb_linear {
    mmt_bnb_kind kind;
    int64_t rows, cols;     /* out, in: as declared by the caller */
    /* NF4: element i of the flat (rows * cols) weight = code[nibble i] * absmax[i / blocksize],
     * nibble i in byte i / 2, the even element in the HIGH nibble. */
    const uint8_t *packed;  /* (rows * cols + 1) / 2 bytes */
    const float *absmax;    /* blocks floats; double quant already resolved */
    int64_t blocks, blocksize;
    const float *code;      /* 16 values: mmt_nf4_code (what bitsandbytes dequantizes with) */
    int double_quant;       /* 1 when the file held nested absmax */
    /* INT8: w[r, c] = ((float)s8[r * cols + c] * scb[r]) * 0.007874016f (quant/int8_rows.h) */
    const int8_t *s8;       /* rows * cols */
    const float *scb;       /* rows: bitsandbytes' SCB (row absmax) */
} mmt_bnb_linear;

/* Reports how tensor `weight_name` ("<base>.weight") is stored and, when quantized, hands out
 * its parts after checking them against (rows, cols). NOT_FOUND when the weight is missing;
 * BAD_FORMAT for any inconsistency; UNSUPPORTED for fp4 or other quant types, non-U8 4-bit
 * storage, and 8-bit weight formats other than row. A plain tensor is reported as
 * MMT_BNB_PLAIN without further checks (mmt_weights_f32 checks its shape). */
mmt_status mmt_bnb_linear_load(mmt_weights *w, mmt_arena *arena, const char *weight_name,
                               int64_t rows, int64_t cols, mmt_bnb_linear *out);

/* Dequantizes a quantized linear into w (rows * cols floats), exactly as bitsandbytes does
 * (the flat-block definition for NF4). INVALID_ARGUMENT for MMT_BNB_PLAIN. */
mmt_status mmt_bnb_linear_dequantize(const mmt_bnb_linear *lin, float *w);

#define MMT_BNB_MAX_TENSORS 6

/* The tensors of one quantized linear, ready for mmt_safetensors_write. Names, shapes and
 * data live in the arena given to the function that filled it. */
typedef struct mmt_bnb_tensors {
    int64_t n;
    mmt_st_write_tensor tensors[MMT_BNB_MAX_TENSORS];
} mmt_bnb_tensors;

/* NF4 tensors of the float32 weight w (rows, cols) named weight_name ("<base>.weight"):
 * blocksize as bitsandbytes accepts (64 is transformers' default), double_quant = 1 for
 * bnb_4bit_use_double_quant (nested blocksize 256, the signed dynamic map). */
mmt_status mmt_bnb_nf4_tensors(mmt_arena *arena, const char *weight_name, const float *w,
                               int64_t rows, int64_t cols, int64_t blocksize, int double_quant,
                               mmt_bnb_tensors *out);
/* LLM.int8 tensors (weight, SCB, weight_format) of the float32 weight w (rows, cols). As
 * bitsandbytes' Int8Params does, the weight is rounded to float16 before
 * mmt_int8_rows_quantize, so SCB is a float16 value. */
mmt_status mmt_bnb_int8_tensors(mmt_arena *arena, const char *weight_name, const float *w,
                                int64_t rows, int64_t cols, mmt_bnb_tensors *out);

/* Appends to b the "quantization_config" object transformers 5 writes into config.json for
 * such a snapshot (kind MMT_BNB_NF4 or MMT_BNB_INT8), so BitsAndBytesConfig loads it back. */
void mmt_bnb_quantization_config(mmt_strbuf *b, mmt_bnb_kind kind, int double_quant);

#endif
