/* clip_config.c — config.json -> mmt_clip_config with transformers' defaults and checks. */
#include "models/clip_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

void mmt_clip_config_default(mmt_clip_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->has_text = cfg->has_vision = 1;
    cfg->projection_dim = 512;
    cfg->logit_scale_init = 2.6592;
    mmt_clip_tower_config *t = &cfg->text;
    t->vocab_size = 49408;
    t->hidden_size = 512;
    t->intermediate_size = 2048;
    t->num_layers = 12;
    t->num_heads = 8;
    t->max_positions = 77;
    t->act = MMT_ACT_QUICK_GELU;
    t->layer_norm_eps = 1e-5;
    t->pad_token_id = 1;
    t->bos_token_id = 49406;
    t->eos_token_id = 49407;
    mmt_clip_tower_config *v = &cfg->vision;
    v->hidden_size = 768;
    v->intermediate_size = 3072;
    v->num_layers = 12;
    v->num_heads = 12;
    v->num_channels = 3;
    v->image_size = 224;
    v->patch_size = 32;
    v->act = MMT_ACT_QUICK_GELU;
    v->layer_norm_eps = 1e-5;
}

const char *mmt_activation_name(mmt_activation act) {
    return act == MMT_ACT_GELU ? "gelu" : "quick_gelu";
}

typedef struct field_ctx {
    const char *file;
    const char *path; /* "text_config", "vision_config" or "" */
} field_ctx;

static mmt_status read_int(const mmt_json *obj, const char *key, int64_t *v, field_ctx c) {
    return mmt_json_get_int(obj, key, *v, v, c.file, c.path);
}

static mmt_status read_positive(const mmt_json *obj, const char *key, int64_t *v, field_ctx c) {
    MMT_TRY(read_int(obj, key, v, c));
    if (*v <= 0 || *v > (int64_t)1 << 24)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s%s%s: %lld is out of range", c.file, c.path,
                        c.path[0] ? "." : "", key, (long long)*v);
    return MMT_OK;
}

static mmt_status read_tower(const mmt_json *obj, mmt_clip_tower_config *t, int is_text,
                             field_ctx c) {
    if (!obj) return MMT_OK;
    if (obj->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: expected an object, got %s", c.file,
                        c.path, mmt_json_type_name(obj->type));
    MMT_TRY(read_positive(obj, "hidden_size", &t->hidden_size, c));
    MMT_TRY(read_positive(obj, "intermediate_size", &t->intermediate_size, c));
    MMT_TRY(read_positive(obj, "num_hidden_layers", &t->num_layers, c));
    MMT_TRY(read_positive(obj, "num_attention_heads", &t->num_heads, c));
    MMT_TRY(mmt_json_get_double(obj, "layer_norm_eps", t->layer_norm_eps, &t->layer_norm_eps,
                                c.file, c.path));
    const char *act = mmt_activation_name(t->act);
    MMT_TRY(mmt_json_get_string(obj, "hidden_act", act, &act, c.file, c.path));
    if (strcmp(act, "quick_gelu") == 0) t->act = MMT_ACT_QUICK_GELU;
    else if (strcmp(act, "gelu") == 0) t->act = MMT_ACT_GELU;
    else
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: %s.hidden_act: \"%s\" is not supported (quick_gelu, gelu)",
                        c.file, c.path, act);
    if (is_text) {
        MMT_TRY(read_positive(obj, "vocab_size", &t->vocab_size, c));
        MMT_TRY(read_positive(obj, "max_position_embeddings", &t->max_positions, c));
        MMT_TRY(read_int(obj, "eos_token_id", &t->eos_token_id, c));
        MMT_TRY(read_int(obj, "bos_token_id", &t->bos_token_id, c));
        MMT_TRY(read_int(obj, "pad_token_id", &t->pad_token_id, c));
    } else {
        MMT_TRY(read_positive(obj, "num_channels", &t->num_channels, c));
        MMT_TRY(read_positive(obj, "image_size", &t->image_size, c));
        MMT_TRY(read_positive(obj, "patch_size", &t->patch_size, c));
    }
    if (t->hidden_size % t->num_heads != 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: hidden_size %lld is not divisible by num_attention_heads %lld",
                        c.file, c.path, (long long)t->hidden_size, (long long)t->num_heads);
    if (!is_text && t->image_size % t->patch_size != 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: image_size %lld is not a multiple of patch_size %lld",
                        c.file, c.path, (long long)t->image_size, (long long)t->patch_size);
    return MMT_OK;
}

static mmt_status load_impl(const char *path, const mmt_json *root, mmt_clip_config *cfg) {
    if (root->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected a JSON object", path);
    const char *model_type = "clip";
    MMT_TRY(mmt_json_get_string(root, "model_type", "clip", &model_type, path, ""));
    int64_t projection = cfg->projection_dim;
    if (strcmp(model_type, "clip_text_model") == 0 || strcmp(model_type, "clip_vision_model") == 0) {
        int is_text = model_type[5] == 't';
        cfg->has_text = is_text;
        cfg->has_vision = !is_text;
        field_ctx c = {path, ""};
        MMT_TRY(read_tower(root, is_text ? &cfg->text : &cfg->vision, is_text, c));
        MMT_TRY(read_positive(root, "projection_dim", &projection, c));
        cfg->projection_dim = projection;
        return MMT_OK;
    }
    if (strcmp(model_type, "clip") != 0)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: model_type \"%s\" is not a CLIP model", path, model_type);
    field_ctx top = {path, ""};
    MMT_TRY(read_positive(root, "projection_dim", &projection, top));
    cfg->projection_dim = projection;
    MMT_TRY(mmt_json_get_double(root, "logit_scale_init_value", cfg->logit_scale_init,
                                &cfg->logit_scale_init, path, ""));
    field_ctx tc = {path, "text_config"}, vc = {path, "vision_config"};
    MMT_TRY(read_tower(mmt_json_get(root, "text_config"), &cfg->text, 1, tc));
    MMT_TRY(read_tower(mmt_json_get(root, "vision_config"), &cfg->vision, 0, vc));
    field_ctx tdc = {path, "text_config_dict"}, vdc = {path, "vision_config_dict"};
    MMT_TRY(read_tower(mmt_json_get(root, "text_config_dict"), &cfg->text, 1, tdc));
    MMT_TRY(read_tower(mmt_json_get(root, "vision_config_dict"), &cfg->vision, 0, vdc));
    return MMT_OK;
}

mmt_status mmt_clip_config_load(const char *path, mmt_clip_config *cfg) {
    mmt_clip_config_default(cfg);
    mmt_json_doc *doc;
    MMT_TRY(mmt_json_parse_file(path, &doc));
    mmt_status s = load_impl(path, mmt_json_root(doc), cfg);
    mmt_json_free(doc);
    return s;
}

/* Shortest "%.*g" that reads back as the same double, like Python's repr (1e-05, 2.6592). */
static void append_double(mmt_strbuf *b, double v) {
    char text[40];
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, v);
        if (strtod(text, NULL) == v) break;
    }
    /* JSON keeps integral floats as floats: 1.0, not 1 */
    mmt_strbuf_printf(b, "%s%s", text, strpbrk(text, ".eEn") ? "" : ".0");
}

static void append_tower(mmt_strbuf *b, const mmt_clip_tower_config *t, int is_text,
                         int64_t projection_dim, double factor, double range) {
    mmt_strbuf_printf(b, "{\n    \"attention_dropout\": 0.0,\n");
    if (is_text) mmt_strbuf_printf(b, "    \"bos_token_id\": %lld,\n    \"eos_token_id\": %lld,\n",
                                   (long long)t->bos_token_id, (long long)t->eos_token_id);
    mmt_strbuf_printf(b, "    \"hidden_act\": \"%s\",\n    \"hidden_size\": %lld,\n", mmt_activation_name(t->act),
                      (long long)t->hidden_size);
    if (!is_text) mmt_strbuf_printf(b, "    \"image_size\": %lld,\n", (long long)t->image_size);
    mmt_strbuf_printf(b, "    \"initializer_factor\": ");
    append_double(b, factor);
    mmt_strbuf_printf(b, ",\n    \"initializer_range\": ");
    append_double(b, range);
    mmt_strbuf_printf(b, ",\n    \"intermediate_size\": %lld,\n    \"layer_norm_eps\": ", (long long)t->intermediate_size);
    append_double(b, t->layer_norm_eps);
    mmt_strbuf_printf(b, ",\n");
    if (is_text) mmt_strbuf_printf(b, "    \"max_position_embeddings\": %lld,\n", (long long)t->max_positions);
    mmt_strbuf_printf(b, "    \"model_type\": \"%s\",\n    \"num_attention_heads\": %lld,\n",
                      is_text ? "clip_text_model" : "clip_vision_model", (long long)t->num_heads);
    if (!is_text) mmt_strbuf_printf(b, "    \"num_channels\": %lld,\n", (long long)t->num_channels);
    mmt_strbuf_printf(b, "    \"num_hidden_layers\": %lld,\n", (long long)t->num_layers);
    if (is_text) mmt_strbuf_printf(b, "    \"pad_token_id\": %lld,\n", (long long)t->pad_token_id);
    else mmt_strbuf_printf(b, "    \"patch_size\": %lld,\n", (long long)t->patch_size);
    mmt_strbuf_printf(b, "    \"projection_dim\": %lld", (long long)projection_dim);
    if (is_text) mmt_strbuf_printf(b, ",\n    \"vocab_size\": %lld", (long long)t->vocab_size);
    mmt_strbuf_printf(b, "\n  }");
}

void mmt_clip_config_to_json(const mmt_clip_config *cfg, double initializer_factor,
                             double initializer_range, mmt_strbuf *b) {
    mmt_strbuf_printf(b, "{\n  \"architectures\": [\n    \"CLIPModel\"\n  ],\n  \"dtype\": \"float32\",\n"
                         "  \"initializer_factor\": ");
    append_double(b, initializer_factor);
    mmt_strbuf_printf(b, ",\n  \"logit_scale_init_value\": ");
    append_double(b, cfg->logit_scale_init);
    mmt_strbuf_printf(b, ",\n  \"model_type\": \"clip\",\n  \"projection_dim\": %lld,\n  \"text_config\": ",
                      (long long)cfg->projection_dim);
    append_tower(b, &cfg->text, 1, cfg->projection_dim, initializer_factor, initializer_range);
    mmt_strbuf_printf(b, ",\n  \"vision_config\": ");
    append_tower(b, &cfg->vision, 0, cfg->projection_dim, initializer_factor, initializer_range);
    mmt_strbuf_printf(b, "\n}\n");
}
