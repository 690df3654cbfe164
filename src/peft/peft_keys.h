/*
 * peft_keys.h — the tensor names and shapes in a PEFT adapter_model.safetensors.
 *
 * PEFT saves the adapter's state dict with the adapter name removed (utils/save_and_load.py
 * get_peft_model_state_dict, tuners_utils.py _remove_adapter_name_from_state_dict_key):
 *
 *   base_model.model.<module>.lora_A.weight          Linear [r, in]      Conv2d [r, C, k, k]
 *   base_model.model.<module>.lora_B.weight          Linear [out, r]     Conv2d [out, r, 1, 1]
 *   base_model.model.<module>.lora_embedding_A       Embedding [r, num_embeddings]
 *   base_model.model.<module>.lora_embedding_B       Embedding [dim, r]
 *   base_model.model.<module>.lora_magnitude_vector  DoRA: Linear/Embedding [out], Conv2d [1, out, 1, 1]
 *   base_model.model.<module>.ia3_l                  Linear [out, 1] or, feedforward, [1, in];
 *                                                    Conv2d [1, out, 1, 1] or [1, C, 1, 1]
 *   base_model.model.<module>.base_layer.bias        bias of a target (bias "all" / "lora_only")
 *   base_model.model.<module>.bias                   any other bias (bias "all")
 *   base_model.model.<saved>.<rel>.weight / .bias    modules_to_save: every parameter of the
 *                                                    saved module (vision embeddings: also
 *                                                    class_embedding [C])
 *   prompt_embeddings                                prompt tuning [V * S, token_dim];
 *                                                    prefix tuning [V, num_layers * 2 * token_dim]
 *                                                    (the projection MLP is baked in, not saved)
 *
 * bias "all" with modules_to_save also saves the wrapper's copies of each bias: for a saved
 * leaf module "<saved>.original_module.bias" and "<saved>.modules_to_save.bias", for one
 * inside a saved container "<saved>.original_module.<rel>.bias" and
 * "<saved>.modules_to_save.default.<rel>.bias" (PEFT strips the adapter name only at the end).
 *
 * Checked against the files PEFT wrote: tests/fixtures/peft/cases.json ("tensors").
 */
#ifndef MMT_PEFT_PEFT_KEYS_H
#define MMT_PEFT_PEFT_KEYS_H

#include <stdint.h>

#include "core/status.h"
#include "nn/module.h"
#include "peft/peft_config.h"
#include "peft/target.h"

#define MMT_PEFT_KEY_PREFIX "base_model.model."
#define MMT_PEFT_PROMPT_KEY "prompt_embeddings"

typedef enum mmt_peft_tensor_kind {
    MMT_PEFT_TENSOR_LORA_A,
    MMT_PEFT_TENSOR_LORA_B,
    MMT_PEFT_TENSOR_LORA_EMBEDDING_A,
    MMT_PEFT_TENSOR_LORA_EMBEDDING_B,
    MMT_PEFT_TENSOR_LORA_MAGNITUDE,
    MMT_PEFT_TENSOR_IA3,
    MMT_PEFT_TENSOR_BASE_BIAS,   /* <module>.base_layer.bias: a target's own bias */
    MMT_PEFT_TENSOR_BIAS,        /* <module>.bias of a module that is not a target */
    MMT_PEFT_TENSOR_SAVED,       /* a parameter of a modules_to_save module, or a bias copy */
    MMT_PEFT_TENSOR_PROMPT       /* prompt_embeddings */
} mmt_peft_tensor_kind;

typedef struct mmt_peft_tensor {
    char *key;                 /* owned; the full safetensors name */
    mmt_peft_tensor_kind kind;
    int64_t module;            /* index into the module list, -1 for prompt_embeddings */
    int64_t shape[4];
    int ndim;
} mmt_peft_tensor;

/* Every tensor PEFT's save_pretrained writes for this config and selection, in module order.
 * Prompt / prefix tuning need num_virtual_tokens, token_dim, num_layers (prefix) filled:
 * see mmt_peft_config_fill_from_model. */
mmt_status mmt_peft_tensors(const mmt_peft_config *cfg, const mmt_module_info *modules,
                            int64_t n_modules, const mmt_peft_targets *targets,
                            mmt_peft_tensor **out, int64_t *n);
void mmt_peft_tensors_free(mmt_peft_tensor *tensors, int64_t n);

/* "base_model.model.<module><suffix>" for the adapter tensors of one module, e.g.
 * mmt_peft_key(name, MMT_PEFT_TENSOR_LORA_A); NULL on allocation failure. SAVED and PROMPT
 * have no single form and give NULL. */
char *mmt_peft_key(const char *module, mmt_peft_tensor_kind kind);

/* Splits a saved adapter key into its module name (*module, mmt_malloc'd) and kind. Keys
 * that end in ".weight" or ".bias" without an adapter suffix come back as SAVED or BIAS
 * (a plain ".bias" is BIAS). MMT_STATUS_NOT_FOUND (no message) for a key that is not of
 * this form. */
mmt_status mmt_peft_key_parse(const char *key, char **module, mmt_peft_tensor_kind *kind);

#endif
