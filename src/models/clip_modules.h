/*
 * clip_modules.h — the named modules of a CLIP model, as torch's named_modules() lists them.
 *
 * PEFT chooses what to adapt by module name (target_modules, exclude_modules, modules_to_save,
 * layers_to_transform, rank_pattern), so mmtune needs the exact names, in the exact order,
 * that `CLIPModel.named_modules()` yields in transformers 5.x, with what kind of module each
 * is. The list is derived from the config alone (no weights needed):
 *
 *   ""                                        CLIPModel (root; CLIPTextModelWithProjection /
 *                                             CLIPVisionModelWithProjection for a lone tower)
 *   text_model                                CLIPTextModel
 *   text_model.embeddings.token_embedding     Embedding (vocab_size, C)
 *   text_model.encoder.layers.3.self_attn.q_proj   Linear (C, C), bias
 *   text_model.encoder.layers.3.mlp.fc1       Linear (C -> intermediate), bias
 *   text_model.final_layer_norm               LayerNorm
 *   vision_model.embeddings.patch_embedding   Conv2d (channels -> C, P x P, stride P), no bias
 *   vision_model.pre_layrnorm                 LayerNorm (sic, transformers' spelling)
 *   visual_projection, text_projection        Linear, no bias
 *
 * A lone tower (config.json with model_type clip_text_model / clip_vision_model) is listed
 * as CLIPTextModelWithProjection / CLIPVisionModelWithProjection name it: the same
 * "text_model." / "vision_model." prefix plus its projection — the only lone-tower layout
 * mmtune's loader reads (clip.c always loads the projection). A checkpoint saved from the
 * projection-less CLIPTextModel / CLIPVisionModel would lack the projection entry; the config
 * does not record the architecture, so that case is not distinguished.
 *
 * Checked against named_modules() of real transformers models:
 * tests/fixtures/peft/modules.json (tools/fixtures/make_peft_fixtures.py).
 *
 * Usage:
 *   mmt_module_info *mods; int64_t n;
 *   MMT_TRY(mmt_clip_modules(&cfg, &mods, &n));
 *   ... mods[i].name, mods[i].kind ...
 *   mmt_clip_modules_free(mods, n);
 */
#ifndef MMT_MODELS_CLIP_MODULES_H
#define MMT_MODELS_CLIP_MODULES_H

#include <stdint.h>

#include "core/status.h"
#include "models/clip_config.h"

typedef enum mmt_module_kind {
    MMT_MODULE_CONTAINER,  /* only holds other modules: CLIPModel, CLIPEncoderLayer, ModuleList... */
    MMT_MODULE_ACTIVATION, /* parameter-free activation (QuickGELUActivation, GELUActivation) */
    MMT_MODULE_LINEAR,
    MMT_MODULE_CONV2D,
    MMT_MODULE_LAYERNORM,
    MMT_MODULE_EMBEDDING
} mmt_module_kind;

typedef enum mmt_tower { MMT_TOWER_NONE, MMT_TOWER_TEXT, MMT_TOWER_VISION } mmt_tower;

typedef struct mmt_module_info {
    char *name;            /* owned; "" for the root module */
    const char *type_name; /* torch class name ("Linear", "CLIPMLP", ...); static storage */
    mmt_module_kind kind;
    mmt_tower tower;       /* text_model.* and text_projection are TEXT; the root is NONE */
    int64_t layer;         /* encoder layer index for layers.N and everything under it, else -1 */
    /* Linear: in_features / out_features. Conv2d: in = in_channels * k * k (the flattened
     * patch), out = out_channels. Embedding: in = num_embeddings, out = embedding_dim.
     * LayerNorm: in = out = normalized size. Containers and activations: 0. */
    int64_t in_features, out_features;
    int64_t in_channels, kernel_size; /* Conv2d only (square kernel, stride = kernel, no padding) */
    int has_bias;
} mmt_module_info;

/* The modules of the model cfg describes, in named_modules() order; *out is owned by the
 * caller (free with mmt_clip_modules_free). */
mmt_status mmt_clip_modules(const mmt_clip_config *cfg, mmt_module_info **out, int64_t *n);
void mmt_clip_modules_free(mmt_module_info *modules, int64_t n);

/* Index of the module called name, or -1. */
int64_t mmt_module_find(const mmt_module_info *modules, int64_t n, const char *name);
/* "Linear", "Conv2d", "LayerNorm", "Embedding", "activation", "container". */
const char *mmt_module_kind_name(mmt_module_kind kind);
/* "text", "vision", "none". */
const char *mmt_tower_name(mmt_tower tower);

#endif
