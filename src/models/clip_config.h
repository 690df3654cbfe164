/*
 * clip_config.h — CLIP configuration as transformers' CLIPConfig reads it.
 *
 * Missing keys take the class defaults (configuration_clip.py); `text_config_dict` /
 * `vision_config_dict` override `text_config` / `vision_config` as in CLIPConfig.__init__.
 * A config.json of a lone tower (model_type "clip_text_model" / "clip_vision_model", as
 * CLIPTextModelWithProjection / CLIPVisionModelWithProjection save it) gives that tower only.
 * Facts: ../shared/reference/formats.md §1.1.
 */
#ifndef MMT_MODELS_CLIP_CONFIG_H
#define MMT_MODELS_CLIP_CONFIG_H

#include <stdint.h>

#include "core/status.h"

typedef enum mmt_activation { MMT_ACT_QUICK_GELU, MMT_ACT_GELU } mmt_activation;

typedef struct mmt_clip_tower_config {
    int64_t hidden_size, intermediate_size, num_layers, num_heads;
    mmt_activation act;
    double layer_norm_eps;
    /* text only */
    int64_t vocab_size, max_positions, eos_token_id, bos_token_id, pad_token_id;
    /* vision only */
    int64_t num_channels, image_size, patch_size;
} mmt_clip_tower_config;

typedef struct mmt_clip_config {
    int has_text, has_vision;
    mmt_clip_tower_config text, vision;
    int64_t projection_dim;
    double logit_scale_init;
} mmt_clip_config;

struct mmt_json;
struct mmt_tokenizer;

void mmt_clip_config_default(mmt_clip_config *cfg);
/* Reads config.json at path, then validates it (below); errors name the file and the field. */
mmt_status mmt_clip_config_load(const char *path, mmt_clip_config *cfg);
/* The same from a parsed JSON document; `what` names its source in errors. */
mmt_status mmt_clip_config_parse(const struct mmt_json *root, const char *what, mmt_clip_config *cfg);
/* The ranges a config must respect before anything is sized from it: sizes positive and
 * bounded (generously: ViT-bigG fits many times over), hidden_size divisible by the heads,
 * image_size by patch_size, layer_norm_eps a positive finite float32, eos/bos ids inside
 * [0, vocab_size), logit_scale_init_value finite. One line per error, naming `file`, the
 * field ("text_config.layer_norm_eps") and the value. Called by load and parse. */
mmt_status mmt_clip_config_validate(const mmt_clip_config *cfg, const char *file);
/* The text config against the tokenizer it is used with: every tokenizer id fits
 * vocab_size, and eos_token_id is the tokenizer's <|endoftext|> (or the legacy 2, with
 * <|endoftext|> the largest id, since pooling then takes argmax(ids)). */
mmt_status mmt_clip_config_check_tokenizer(const mmt_clip_config *cfg, const char *config_path,
                                           const struct mmt_tokenizer *tok, const char *vocab_path);
const char *mmt_activation_name(mmt_activation act);

/* A vision tower's config inside another model's config.json (GIT's vision_config, keys as
 * CLIPVisionConfig): keys present replace *t's values (the caller's defaults), then it is
 * validated as CLIP's own; errors name file and path ("vision_config.image_size"). obj NULL:
 * *t as it is. */
mmt_status mmt_clip_vision_config_parse(const struct mmt_json *obj, const char *file, const char *path,
                                        mmt_clip_tower_config *t);

struct mmt_strbuf;
/* Appends cfg as a config.json that transformers' CLIPConfig.save_pretrained would write for
 * a CLIPModel (every key it writes, sorted; both towers; no transformers_version, since
 * transformers did not write it), with the given initializer_factor / initializer_range. */
void mmt_clip_config_to_json(const mmt_clip_config *cfg, double initializer_factor,
                             double initializer_range, struct mmt_strbuf *out);

#endif
