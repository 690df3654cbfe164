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
 *   mmt_modules_free(mods, n);
 */
#ifndef MMT_MODELS_CLIP_MODULES_H
#define MMT_MODELS_CLIP_MODULES_H

#include <stdint.h>

#include "core/status.h"
#include "models/clip_config.h"
#include "nn/module.h"

/* The modules of the model cfg describes, in named_modules() order; *out is owned by the
 * caller (free with mmt_modules_free). */
mmt_status mmt_clip_modules(const mmt_clip_config *cfg, mmt_module_info **out, int64_t *n);

/* The dimensions PEFT's prompt learning reads (nn/module.h). */
void mmt_clip_model_dims(const mmt_clip_config *cfg, mmt_model_dims *out);

#endif
