/*
 * merge.h — folding an adapter into its base checkpoint (`mmtune merge`).
 *
 * Every tensor of the base snapshot is read (any stored dtype), the tensors the adapter
 * changes are replaced by their merged values (adapter.h: mmt_adapter_merged_tensor), and all
 * are written as float32 to OUT/model.safetensors with the base's other files copied, so the
 * folder is a Hugging Face snapshot that transformers loads as the plain model (CLIPModel).
 */
#ifndef MMT_PEFT_MERGE_H
#define MMT_PEFT_MERGE_H

#include "core/weights.h"
#include "peft/adapter.h"

/* base: the checkpoint the adapter was made for (a model's mmt_weights, e.g. mmt_clip_weights). */
mmt_status mmt_adapter_merge_write(const mmt_weights *base, const mmt_adapter *adapter, const char *out_dir);

#endif
