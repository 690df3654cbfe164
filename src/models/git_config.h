/*
 * git_config.h — GIT's configuration (transformers' GitConfig, configuration_git.py): a BERT-
 * style post-LN text decoder over a CLIP vision tower.
 *
 * Missing keys take GitConfig's defaults (git-base's sizes). What mmtune implements: one image
 * per caption (num_image_with_embedding null), absolute position embeddings, hidden_act
 * "gelu" (exact erf) in the decoder; anything else is an error naming the key.
 */
#ifndef MMT_MODELS_GIT_CONFIG_H
#define MMT_MODELS_GIT_CONFIG_H

#include <stdint.h>

#include "core/status.h"
#include "models/clip_config.h"

typedef struct mmt_git_config {
    int64_t vocab_size, hidden_size, num_layers, num_heads, intermediate_size, max_positions;
    double layer_norm_eps;
    int64_t bos_token_id, eos_token_id, pad_token_id;
    int tie_word_embeddings;      /* output.weight is word_embeddings.weight */
    mmt_clip_tower_config vision; /* vision_config: CLIP's vision tower */
} mmt_git_config;

struct mmt_json;

void mmt_git_config_default(mmt_git_config *cfg);
/* Reads and validates config.json; errors name the file and the field. */
mmt_status mmt_git_config_load(const char *path, mmt_git_config *cfg);
mmt_status mmt_git_config_parse(const struct mmt_json *root, const char *file, mmt_git_config *cfg);

/* 1 when a parsed config.json describes a GIT captioner (model_type "git"). */
int mmt_config_is_git(const struct mmt_json *root);

/* *is_git = 1 when dir/config.json is a GIT captioner's, 0 when it is not or cannot be read
 * or parsed (loading the model reports that). Fails only when memory runs out. */
mmt_status mmt_snapshot_is_git(const char *dir, int *is_git);

/* Image tokens per caption: 1 + (image_size / patch_size)^2. */
int64_t mmt_git_image_tokens_of(const mmt_git_config *cfg);

struct mmt_strbuf;
/* Appends cfg as the config.json GitForCausalLM.save_pretrained writes in transformers 5:
 * every key, sorted, with "architectures" and "dtype" (float32, in vision_config too), but no
 * transformers_version, since transformers did not write it; GitConfig's initializer_range
 * and its vision_config's as given. Dropout probabilities and use_cache are GitConfig's
 * defaults (mmtune applies no dropout). */
void mmt_git_config_to_json(const mmt_git_config *cfg, double initializer_range, double vision_initializer_range,
                            struct mmt_strbuf *out);

#endif
