/*
 * merge.h — folding an adapter into its base checkpoint (`mmtune merge`).
 *
 * Every tensor of the base snapshot is read (any stored dtype), the tensors the adapter
 * changes are replaced by their merged values (adapter.h: mmt_adapter_merged_tensor), and all
 * are written as float32 to OUT/model.safetensors with the base's other files copied, so the
 * folder is a Hugging Face snapshot that transformers loads as a plain CLIPModel.
 */
#ifndef MMT_PEFT_MERGE_H
#define MMT_PEFT_MERGE_H

#include "models/clip.h"
#include "peft/adapter.h"

mmt_status mmt_clip_merge_write(mmt_clip *model, const mmt_adapter *adapter, const char *out_dir);

#endif
