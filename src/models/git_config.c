/* git_config.c — GitConfig as transformers reads it (see git_config.h). */
#include "models/git_config.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"

void mmt_git_config_default(mmt_git_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->vocab_size = 30522;
    cfg->hidden_size = 768;
    cfg->num_layers = 6;
    cfg->num_heads = 12;
    cfg->intermediate_size = 3072;
    cfg->max_positions = 1024;
    cfg->layer_norm_eps = 1e-12;
    cfg->bos_token_id = 101;
    cfg->eos_token_id = 102;
    cfg->pad_token_id = 0;
    mmt_clip_config c;
    mmt_clip_config_default(&c);
    cfg->vision = c.vision; /* GitVisionConfig's defaults are CLIP ViT-B/16's */
    cfg->vision.patch_size = 16;
}

int mmt_config_is_git(const mmt_json *root) {
    const mmt_json *t = root ? mmt_json_get(root, "model_type") : NULL;
    return t && t->type == MMT_JSON_STRING && strcmp(t->string, "git") == 0;
}

int64_t mmt_git_image_tokens_of(const mmt_git_config *cfg) {
    int64_t g = cfg->vision.image_size / cfg->vision.patch_size;
    return 1 + g * g;
}

static mmt_status check_range(const char *file, const char *key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: %lld is outside %lld..%lld", file, key, (long long)v,
                        (long long)lo, (long long)hi);
    return MMT_OK;
}

static mmt_status validate(const mmt_git_config *c, const char *file) {
    MMT_TRY(check_range(file, "hidden_size", c->hidden_size, 1, (int64_t)1 << 16));
    MMT_TRY(check_range(file, "intermediate_size", c->intermediate_size, 1, (int64_t)1 << 18));
    MMT_TRY(check_range(file, "num_hidden_layers", c->num_layers, 1, 1024));
    MMT_TRY(check_range(file, "num_attention_heads", c->num_heads, 1, c->hidden_size));
    if (c->hidden_size % c->num_heads != 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: hidden_size: %lld is not divisible by num_attention_heads %lld", file,
                        (long long)c->hidden_size, (long long)c->num_heads);
    MMT_TRY(check_range(file, "vocab_size", c->vocab_size, 1, (int64_t)1 << 24));
    MMT_TRY(check_range(file, "max_position_embeddings", c->max_positions, 1, (int64_t)1 << 16));
    MMT_TRY(check_range(file, "bos_token_id", c->bos_token_id, 0, c->vocab_size - 1));
    MMT_TRY(check_range(file, "eos_token_id", c->eos_token_id, 0, c->vocab_size - 1));
    MMT_TRY(check_range(file, "pad_token_id", c->pad_token_id, 0, c->vocab_size - 1));
    float eps = (float)c->layer_norm_eps;
    if (!(c->layer_norm_eps > 0) || !isfinite(c->layer_norm_eps) || !(eps > 0))
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: layer_norm_eps: must be positive and finite as a float32, got %g",
                        file, c->layer_norm_eps);
    int64_t n = c->num_layers * (4 * c->hidden_size * c->hidden_size + 2 * c->hidden_size * c->intermediate_size) +
                2 * c->vocab_size * c->hidden_size;
    if (n > ((int64_t)1 << 35))
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: the decoder would hold %lld parameters, more than mmtune accepts",
                        file, (long long)n);
    return MMT_OK;
}

mmt_status mmt_git_config_parse(const mmt_json *root, const char *file, mmt_git_config *cfg) {
    mmt_git_config_default(cfg);
    if (!root || root->type != MMT_JSON_OBJECT) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected a JSON object", file);
    if (!mmt_config_is_git(root))
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: model_type is not \"git\": not a GIT captioner config", file);
    MMT_TRY(mmt_json_get_int(root, "vocab_size", cfg->vocab_size, &cfg->vocab_size, file, ""));
    MMT_TRY(mmt_json_get_int(root, "hidden_size", cfg->hidden_size, &cfg->hidden_size, file, ""));
    MMT_TRY(mmt_json_get_int(root, "num_hidden_layers", cfg->num_layers, &cfg->num_layers, file, ""));
    MMT_TRY(mmt_json_get_int(root, "num_attention_heads", cfg->num_heads, &cfg->num_heads, file, ""));
    MMT_TRY(mmt_json_get_int(root, "intermediate_size", cfg->intermediate_size, &cfg->intermediate_size, file, ""));
    MMT_TRY(mmt_json_get_int(root, "max_position_embeddings", cfg->max_positions, &cfg->max_positions, file, ""));
    MMT_TRY(mmt_json_get_double(root, "layer_norm_eps", cfg->layer_norm_eps, &cfg->layer_norm_eps, file, ""));
    MMT_TRY(mmt_json_get_int(root, "bos_token_id", cfg->bos_token_id, &cfg->bos_token_id, file, ""));
    MMT_TRY(mmt_json_get_int(root, "eos_token_id", cfg->eos_token_id, &cfg->eos_token_id, file, ""));
    MMT_TRY(mmt_json_get_int(root, "pad_token_id", cfg->pad_token_id, &cfg->pad_token_id, file, ""));
    MMT_TRY(mmt_json_get_bool(root, "tie_word_embeddings", 0, &cfg->tie_word_embeddings, file, ""));
    const char *act = "gelu", *pos = "absolute";
    MMT_TRY(mmt_json_get_string(root, "hidden_act", act, &act, file, ""));
    if (strcmp(act, "gelu") != 0)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: hidden_act: only \"gelu\" is implemented for GIT's decoder", file);
    MMT_TRY(mmt_json_get_string(root, "position_embedding_type", pos, &pos, file, ""));
    if (strcmp(pos, "absolute") != 0)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: position_embedding_type: only \"absolute\" is implemented", file);
    const mmt_json *multi = mmt_json_get(root, "num_image_with_embedding");
    if (multi && multi->type != MMT_JSON_NULL)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: num_image_with_embedding: several images per caption (video GIT) "
                        "are not implemented", file);
    const mmt_json *v = mmt_json_get(root, "vision_config");
    MMT_TRY(mmt_clip_vision_config_parse(v, file, "vision_config", &cfg->vision));
    return validate(cfg, file);
}

mmt_status mmt_git_config_load(const char *path, mmt_git_config *cfg) {
    mmt_json_doc *doc;
    MMT_TRY(mmt_json_parse_file(path, &doc));
    mmt_status s = mmt_git_config_parse(mmt_json_root(doc), path, cfg);
    mmt_json_free(doc);
    return s;
}

mmt_status mmt_snapshot_is_git(const char *dir, int *is_git) {
    *is_git = 0;
    char *path = mmt_path_join(dir, "config.json");
    if (!path) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_json_doc *doc = NULL;
    mmt_status s = mmt_file_exists(path) ? mmt_json_parse_file(path, &doc) : MMT_OK;
    if (s == MMT_OK && doc) *is_git = mmt_config_is_git(mmt_json_root(doc));
    mmt_json_free(doc);
    mmt_free(path);
    if (s == MMT_STATUS_OUT_OF_MEMORY) return s;
    if (s != MMT_OK) mmt_clear_error(); /* a bad config.json is the loader's to report */
    return MMT_OK;
}

/* ---- writing config.json ----------------------------------------------------------------- */

#include <stdio.h>  /* snprintf */
#include <stdlib.h> /* strtod */

/* A double as Python's json writes a float: the shortest repr that reads back, with ".0"
 * on integral values. */
static void append_json_double(mmt_strbuf *b, double v) {
    char text[40];
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, v);
        if (strtod(text, NULL) == v) break;
    }
    mmt_strbuf_printf(b, "%s%s", text, strpbrk(text, ".eEn") ? "" : ".0");
}

void mmt_git_config_to_json(const mmt_git_config *cfg, double initializer_range, double vision_initializer_range,
                            mmt_strbuf *b) {
    const mmt_clip_tower_config *v = &cfg->vision;
    mmt_strbuf_printf(b,
                      "{\n  \"architectures\": [\n    \"GitForCausalLM\"\n  ],\n"
                      "  \"attention_probs_dropout_prob\": 0.1,\n  \"bos_token_id\": %lld,\n"
                      "  \"dtype\": \"float32\",\n  \"eos_token_id\": %lld,\n  \"hidden_act\": \"gelu\",\n"
                      "  \"hidden_dropout_prob\": 0.1,\n  \"hidden_size\": %lld,\n  \"initializer_range\": ",
                      (long long)cfg->bos_token_id, (long long)cfg->eos_token_id, (long long)cfg->hidden_size);
    append_json_double(b, initializer_range);
    mmt_strbuf_printf(b, ",\n  \"intermediate_size\": %lld,\n  \"layer_norm_eps\": ",
                      (long long)cfg->intermediate_size);
    append_json_double(b, cfg->layer_norm_eps);
    mmt_strbuf_printf(b,
                      ",\n  \"max_position_embeddings\": %lld,\n  \"model_type\": \"git\",\n"
                      "  \"num_attention_heads\": %lld,\n  \"num_hidden_layers\": %lld,\n"
                      "  \"num_image_with_embedding\": null,\n  \"pad_token_id\": %lld,\n"
                      "  \"tie_word_embeddings\": %s,\n  \"use_cache\": true,\n  \"vision_config\": {\n"
                      "    \"attention_dropout\": 0.0,\n    \"dtype\": \"float32\",\n    \"hidden_act\": \"%s\",\n"
                      "    \"hidden_size\": %lld,\n    \"image_size\": %lld,\n    \"initializer_range\": ",
                      (long long)cfg->max_positions, (long long)cfg->num_heads, (long long)cfg->num_layers,
                      (long long)cfg->pad_token_id, cfg->tie_word_embeddings ? "true" : "false",
                      mmt_activation_name(v->act), (long long)v->hidden_size, (long long)v->image_size);
    append_json_double(b, vision_initializer_range);
    mmt_strbuf_printf(b, ",\n    \"intermediate_size\": %lld,\n    \"layer_norm_eps\": ",
                      (long long)v->intermediate_size);
    append_json_double(b, v->layer_norm_eps);
    mmt_strbuf_printf(b,
                      ",\n    \"model_type\": \"git_vision_model\",\n    \"num_attention_heads\": %lld,\n"
                      "    \"num_channels\": %lld,\n    \"num_hidden_layers\": %lld,\n    \"patch_size\": %lld\n"
                      "  },\n  \"vocab_size\": %lld\n}\n",
                      (long long)v->num_heads, (long long)v->num_channels, (long long)v->num_layers,
                      (long long)v->patch_size, (long long)cfg->vocab_size);
}
