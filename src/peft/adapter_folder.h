/*
 * adapter_folder.h — adapter folders read onto a model view (nn/model.h), whatever the family.
 *
 * A folder holds a PEFT adapter (adapter_config.json + adapter_model.safetensors: LoRA,
 * rsLoRA, DoRA, IA3, with modules_to_save), or mmtune's bottleneck adapter (its own config,
 * peft/bottleneck_config.h), or prompt / prefix tuning (PEFT's PROMPT_TUNING /
 * PREFIX_TUNING), or one of the first two with the prompt part in a "prompt/" subfolder.
 * Targets are resolved by PEFT's rules (peft/target.h) on the model's module list. Every
 * error names the folder once, on one line.
 */
#ifndef MMT_PEFT_ADAPTER_FOLDER_H
#define MMT_PEFT_ADAPTER_FOLDER_H

#include <stdint.h>

#include "nn/model.h"
#include "peft/adapter.h"
#include "peft/peft_config.h"
#include "peft/prompt.h"

#define MMT_ADAPTER_PROMPT_SUBDIR "prompt"

/* Resolves a LoRA / IA3 config's targets on the model and attaches an adapter (trainable or
 * not); modules_to_save entries become trainable copies. Training, evaluation and merging
 * all start here. */
mmt_status mmt_adapter_from_config(const mmt_model_iface *model, const mmt_peft_config *cfg, uint64_t seed,
                                   int trainable, mmt_adapter **out);
/* Loads a LoRA / IA3 / bottleneck adapter folder onto the model; trainable registers its
 * tensors (continued training, tests). */
mmt_status mmt_adapter_folder_load(const mmt_model_iface *model, const char *dir, int trainable, mmt_adapter **out);
/* Loads what a folder holds: an adapter (*ad) and prompt / prefix tuning (*prompt): the
 * folder's own when its peft_type is PROMPT_TUNING or PREFIX_TUNING, or its "prompt/"
 * subfolder beside another adapter. Either comes back NULL when absent. */
mmt_status mmt_adapter_folders_load(const mmt_model_iface *model, const char *dir, int trainable, mmt_adapter **ad,
                                    mmt_prompt **prompt);
/* The folder of the prompt part of a saved adapter, or NULL (mmt_malloc'd). */
char *mmt_adapter_prompt_dir(const char *dir);

#endif
