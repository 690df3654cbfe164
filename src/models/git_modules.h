/*
 * git_modules.h — GitForCausalLM's named_modules() for a GIT config, as PEFT sees them
 * (nn/module.h): the decoder's modules are the text tower, the image encoder's the vision
 * tower; `output` is marked as the output head (PEFT's all-linear leaves it out). Dropout
 * modules are listed as parameter-free (kind ACTIVATION, type "Dropout").
 */
#ifndef MMT_MODELS_GIT_MODULES_H
#define MMT_MODELS_GIT_MODULES_H

#include <stdint.h>

#include "core/status.h"
#include "models/git_config.h"
#include "nn/module.h"

mmt_status mmt_git_modules(const mmt_git_config *cfg, mmt_module_info **out, int64_t *n);
void mmt_git_model_dims(const mmt_git_config *cfg, mmt_model_dims *out);

#endif
