/*
 * quant_snapshot.h — `mmtune quantize`: a quantized copy of a Hugging Face snapshot in the
 * layout transformers + bitsandbytes save, so transformers loads it back with its
 * BitsAndBytesConfig and every mmtune command loads it quantized (models/qlinear.h).
 *
 * Usage: load the model (CLIP or GIT) to learn its linears, then
 *     mmt_quant_snapshot_write(weights, sets, n_sets, src_dir, out_dir, MMT_QUANT_NF4, &n);
 * Every linear weight the sets record (except those kept fp32: the model's last module, as
 * transformers keeps it) is written as NF4 (blocks of 64, double quantization: transformers'
 * bnb_4bit_use_double_quant) or LLM.int8 rows (weight, SCB, weight_format); every other
 * tensor is copied as stored. config.json gains "quantization_config"; the tokenizer and
 * preprocessor files are copied. A snapshot already quantized is refused.
 */
#ifndef MMT_MODELS_QUANT_SNAPSHOT_H
#define MMT_MODELS_QUANT_SNAPSHOT_H

#include "core/weights.h"
#include "models/qlinear.h"

mmt_status mmt_quant_snapshot_write(mmt_weights *weights, const mmt_qlinears *const *sets, int64_t n_sets,
                                    const char *src_dir, const char *out_dir, mmt_quant_type type,
                                    int64_t *n_quantized);

#endif
