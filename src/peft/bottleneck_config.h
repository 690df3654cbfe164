/*
 * bottleneck_config.h — mmtune's bottleneck adapters (Houlsby / Pfeiffer) for CLIP: which
 * encoder layers get them, where, how wide, and their adapter_config.json.
 *
 * PEFT has no bottleneck adapters, so the files are mmtune's own, in PEFT's layout (see
 * docs/peft_format.md): adapter_config.json with "peft_type": "MMTUNE_BOTTLENECK" and
 *     reduction_factor   int     D = max(1, C / reduction_factor) per tower (C its hidden size)
 *     placement          string  "attn" | "mlp" | "both" (after out_proj / after fc2)
 *     activation         string  "relu" | "gelu"
 *     towers             string  "both" | "text" | "vision"
 *     layers_to_transform  null (every layer) or a list of layer indices
 *     base_model_name_or_path  string or null
 * and adapter_model.safetensors with, per adapted layer and place,
 *     base_model.model.<tower>_model.encoder.layers.<i>.adapter_<attn|mlp>.down.weight (D, C)
 *     ....down.bias (D), ....up.weight (C, D), ....up.bias (C)
 * (PEFT's `base_model.model.` prefix, nn.Linear's weight/bias names). PEFT itself cannot load
 * them; mmtune's train, eval, resume and the serving commands can.
 */
#ifndef MMT_PEFT_BOTTLENECK_CONFIG_H
#define MMT_PEFT_BOTTLENECK_CONFIG_H

#include <stdint.h>

#include "nn/model.h"
#include "nn/bottleneck.h"
#include "peft/adapter.h"
#include "peft/peft_config.h"

#define MMT_BOTTLENECK_PEFT_TYPE "MMTUNE_BOTTLENECK"
#define MMT_BOTTLENECK_MAX_LAYERS 256

enum { MMT_BOTTLENECK_AT_ATTN = 1, MMT_BOTTLENECK_AT_MLP = 2 };

typedef struct mmt_bottleneck_config {
    int64_t reduction_factor;
    int placement;                  /* MMT_BOTTLENECK_AT_* bits */
    mmt_bottleneck_act act;
    mmt_peft_scope towers;
    int64_t layers[MMT_BOTTLENECK_MAX_LAYERS];
    int64_t n_layers;               /* 0: every layer */
    char base_model[1024];          /* "" when unknown */
    char source[1024];              /* the file it was loaded from ("" otherwise; not saved):
                                     * mmt_bottleneck_attach names it in its errors */
} mmt_bottleneck_config;

/* reduction 16, both places, ReLU, both towers, every layer. */
void mmt_bottleneck_config_default(mmt_bottleneck_config *cfg);

/* "attn"/"mlp"/"both" and "relu"/"gelu"; 0 when unknown. */
int mmt_bottleneck_placement_parse(const char *name, int *placement);
int mmt_bottleneck_act_parse(const char *name, mmt_bottleneck_act *act);

/* Whether an adapter_config.json declares MMT_BOTTLENECK_PEFT_TYPE (*is = 0 otherwise). */
mmt_status mmt_bottleneck_config_probe(const char *path, int *is);
mmt_status mmt_bottleneck_config_load(const char *path, mmt_bottleneck_config *cfg);
/* Atomic write, sorted keys and two-space indents like PEFT's files. */
mmt_status mmt_bottleneck_config_save(const mmt_bottleneck_config *cfg, const char *path);

/* Attaches fresh adapters (up = 0, down ~ U(-1/sqrt C, 1/sqrt C), biases 0; seeded) at every
 * place the config selects on the view; trainable registers their tensors. A layer index that
 * no selected tower has is an error. */
mmt_status mmt_bottleneck_attach(const mmt_model_iface *model, const mmt_bottleneck_config *cfg,
                                      uint64_t seed, int trainable, mmt_adapter **out);

#endif
