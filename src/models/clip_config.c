/* clip_config.c — config.json -> mmt_clip_config with transformers' defaults, then one
 * validation pass (mmt_clip_config_validate) over everything read, and the cross-check of
 * the config's token ids against the tokenizer files. */
#include "models/clip_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "data/tokenizer.h"

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

/* At most 48 bytes of a string from the file, control characters shown as '?', so that a
 * hostile value cannot break the one-line error message. */
static const char *shown(const char *s, char out[52]) {
    size_t i = 0;
    for (; s[i] && i < 48; i++) out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    memcpy(out + i, s[i] ? "..." : "", s[i] ? 4 : 1);
    return out;
}

static mmt_status read_tower(const mmt_json *obj, mmt_clip_tower_config *t, int is_text,
                             field_ctx c) {
    if (!obj) return MMT_OK;
    if (obj->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: expected an object, got %s", c.file,
                        c.path, mmt_json_type_name(obj->type));
    MMT_TRY(read_int(obj, "hidden_size", &t->hidden_size, c));
    MMT_TRY(read_int(obj, "intermediate_size", &t->intermediate_size, c));
    MMT_TRY(read_int(obj, "num_hidden_layers", &t->num_layers, c));
    MMT_TRY(read_int(obj, "num_attention_heads", &t->num_heads, c));
    MMT_TRY(mmt_json_get_double(obj, "layer_norm_eps", t->layer_norm_eps, &t->layer_norm_eps,
                                c.file, c.path));
    /* The activation is checked here, where its name is at hand; every other range is
     * checked once the whole file is read (mmt_clip_config_validate). */
    const char *act = mmt_activation_name(t->act);
    MMT_TRY(mmt_json_get_string(obj, "hidden_act", act, &act, c.file, c.path));
    if (strcmp(act, "quick_gelu") == 0) t->act = MMT_ACT_QUICK_GELU;
    else if (strcmp(act, "gelu") == 0) t->act = MMT_ACT_GELU;
    else {
        char buf[52];
        return mmt_fail(MMT_STATUS_UNSUPPORTED,
                        "%s: %s%shidden_act: \"%s\" is not supported (mmtune implements quick_gelu, gelu)",
                        c.file, c.path, c.path[0] ? "." : "", shown(act, buf));
    }
    if (is_text) {
        MMT_TRY(read_int(obj, "vocab_size", &t->vocab_size, c));
        MMT_TRY(read_int(obj, "max_position_embeddings", &t->max_positions, c));
        MMT_TRY(read_int(obj, "eos_token_id", &t->eos_token_id, c));
        MMT_TRY(read_int(obj, "bos_token_id", &t->bos_token_id, c));
        MMT_TRY(read_int(obj, "pad_token_id", &t->pad_token_id, c));
    } else {
        MMT_TRY(read_int(obj, "num_channels", &t->num_channels, c));
        MMT_TRY(read_int(obj, "image_size", &t->image_size, c));
        MMT_TRY(read_int(obj, "patch_size", &t->patch_size, c));
    }
    return MMT_OK;
}

static mmt_status parse_impl(const mmt_json *root, const char *path, mmt_clip_config *cfg) {
    if (root->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected a JSON object", path);
    const char *model_type = "clip";
    MMT_TRY(mmt_json_get_string(root, "model_type", "clip", &model_type, path, ""));
    field_ctx top = {path, ""};
    if (strcmp(model_type, "clip_text_model") == 0 || strcmp(model_type, "clip_vision_model") == 0) {
        int is_text = model_type[5] == 't';
        cfg->has_text = is_text;
        cfg->has_vision = !is_text;
        MMT_TRY(read_tower(root, is_text ? &cfg->text : &cfg->vision, is_text, top));
        return read_int(root, "projection_dim", &cfg->projection_dim, top);
    }
    if (strcmp(model_type, "clip") != 0) {
        char buf[52];
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: model_type \"%s\" is not a CLIP model", path,
                        shown(model_type, buf));
    }
    MMT_TRY(read_int(root, "projection_dim", &cfg->projection_dim, top));
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

mmt_status mmt_clip_config_parse(const mmt_json *root, const char *what, mmt_clip_config *cfg) {
    mmt_clip_config_default(cfg);
    MMT_TRY(parse_impl(root, what, cfg));
    return mmt_clip_config_validate(cfg, what);
}

mmt_status mmt_clip_config_load(const char *path, mmt_clip_config *cfg) {
    mmt_clip_config_default(cfg);
    mmt_json_doc *doc;
    MMT_TRY(mmt_json_parse_file(path, &doc));
    mmt_status s = mmt_clip_config_parse(mmt_json_root(doc), path, cfg);
    mmt_json_free(doc);
    return s;
}

/* ---- validation ---------------------------------------------------------------------- */

/* Upper bounds: several times the largest public CLIPs (ViT-bigG-14: width 1664, MLP 8192,
 * 48 layers; EVA-CLIP-18B: width 5120), low enough that no product of them overflows int64
 * and that a config alone cannot ask for terabytes (random init, activations, the training
 * view all size buffers from these numbers before any weight file is looked at). */
#define MAX_WIDTH ((int64_t)1 << 16)        /* hidden_size, projection_dim */
#define MAX_MLP ((int64_t)1 << 18)          /* intermediate_size */
#define MAX_LAYERS ((int64_t)1024)
#define MAX_VOCAB ((int64_t)1 << 24)        /* the tokenizer's own id limit */
#define MAX_POSITIONS ((int64_t)1 << 16)
#define MAX_CHANNELS ((int64_t)64)
#define MAX_IMAGE ((int64_t)1 << 14)
#define MAX_TOWER_PARAMS ((int64_t)1 << 35) /* 32 Gi floats, 128 GiB: ~14x ViT-bigG's towers */
/* exp(logit_scale) must be a finite float: ln(FLT_MAX) is 88.72. */
#define MAX_LOGIT_SCALE 88.0

/* "text_config" / "vision_config" for a CLIPModel config; "" for a lone tower, whose keys
 * sit at the top level. */
static const char *tower_prefix(const mmt_clip_config *cfg, int is_text) {
    if (!(cfg->has_text && cfg->has_vision)) return "";
    return is_text ? "text_config" : "vision_config";
}

static mmt_status check_range(const char *file, const char *prefix, const char *key, int64_t v,
                              int64_t lo, int64_t hi) {
    if (v >= lo && v <= hi) return MMT_OK;
    return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s%s%s: %lld is out of range [%lld, %lld]", file,
                    prefix, prefix[0] ? "." : "", key, (long long)v, (long long)lo, (long long)hi);
}

/* A token id the model looks up: inside the embedding table. */
static mmt_status check_token_id(const char *file, const char *prefix, const char *key,
                                 int64_t id, int64_t vocab_size) {
    if (id >= 0 && id < vocab_size) return MMT_OK;
    return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s%s%s: %lld is outside the vocabulary [0, %lld)",
                    file, prefix, prefix[0] ? "." : "", key, (long long)id, (long long)vocab_size);
}

/* layer_norm_eps is used as a float32 inside sqrt(var + eps): it must stay positive and
 * finite after the conversion (1e-50 would become 0 and -1 gives NaN everywhere). */
static mmt_status check_epsilon(const char *file, const char *prefix, double eps) {
    float f = (float)eps;
    if (isfinite(eps) && eps > 0 && isfinite(f) && f > 0) return MMT_OK;
    if (isfinite(eps) && eps > 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s%slayer_norm_eps: must be a positive float32 "
                        "(about 1e-45 to 3e38), got %g", file, prefix, prefix[0] ? "." : "", eps);
    return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s%slayer_norm_eps: must be > 0 and finite, got %g",
                    file, prefix, prefix[0] ? "." : "", eps);
}

/* Weights of one tower as clip.c's load_text / load_vision list them (biases included). */
static int64_t tower_params(const mmt_clip_tower_config *t, int is_text, int64_t projection) {
    int64_t C = t->hidden_size, I = t->intermediate_size;
    int64_t layer = 4 * (C * C + C) + 2 * C * I + I + C + 4 * C;
    int64_t n = t->num_layers * layer + 2 * C + projection * C;
    if (is_text) return n + (t->vocab_size + t->max_positions) * C;
    int64_t G = t->image_size / t->patch_size;
    return n + C * t->num_channels * t->patch_size * t->patch_size + (G * G + 1) * C + 3 * C;
}

static mmt_status validate_tower(const mmt_clip_config *cfg, int is_text, const char *file) {
    const mmt_clip_tower_config *t = is_text ? &cfg->text : &cfg->vision;
    const char *p = tower_prefix(cfg, is_text), *dot = p[0] ? "." : "";
    MMT_TRY(check_range(file, p, "hidden_size", t->hidden_size, 1, MAX_WIDTH));
    MMT_TRY(check_range(file, p, "intermediate_size", t->intermediate_size, 1, MAX_MLP));
    MMT_TRY(check_range(file, p, "num_hidden_layers", t->num_layers, 1, MAX_LAYERS));
    MMT_TRY(check_range(file, p, "num_attention_heads", t->num_heads, 1, MAX_WIDTH));
    if (t->hidden_size % t->num_heads != 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s%shidden_size: %lld is not divisible by num_attention_heads %lld",
                        file, p, dot, (long long)t->hidden_size, (long long)t->num_heads);
    MMT_TRY(check_epsilon(file, p, t->layer_norm_eps));
    if (is_text) {
        MMT_TRY(check_range(file, p, "vocab_size", t->vocab_size, 1, MAX_VOCAB));
        MMT_TRY(check_range(file, p, "max_position_embeddings", t->max_positions, 1, MAX_POSITIONS));
        /* eos selects the pooled position and bos starts the ids mmtune builds itself;
         * pad_token_id is not read by mmtune or by CLIPModel (padding is <|endoftext|>). */
        MMT_TRY(check_token_id(file, p, "eos_token_id", t->eos_token_id, t->vocab_size));
        MMT_TRY(check_token_id(file, p, "bos_token_id", t->bos_token_id, t->vocab_size));
    } else {
        MMT_TRY(check_range(file, p, "num_channels", t->num_channels, 1, MAX_CHANNELS));
        MMT_TRY(check_range(file, p, "image_size", t->image_size, 1, MAX_IMAGE));
        MMT_TRY(check_range(file, p, "patch_size", t->patch_size, 1, t->image_size));
        if (t->image_size % t->patch_size != 0)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s%simage_size: %lld is not a multiple of patch_size %lld",
                            file, p, dot, (long long)t->image_size, (long long)t->patch_size);
    }
    int64_t n = tower_params(t, is_text, cfg->projection_dim);
    if (n > MAX_TOWER_PARAMS)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: the %s tower would hold %lld parameters, more than "
                        "the %lld mmtune accepts (hidden_size %lld, intermediate_size %lld, num_hidden_layers %lld)",
                        file, p[0] ? p : "config", is_text ? "text" : "vision", (long long)n,
                        (long long)MAX_TOWER_PARAMS, (long long)t->hidden_size,
                        (long long)t->intermediate_size, (long long)t->num_layers);
    return MMT_OK;
}

mmt_status mmt_clip_config_validate(const mmt_clip_config *cfg, const char *file) {
    if (!cfg->has_text && !cfg->has_vision)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: the config has neither a text nor a vision tower", file);
    MMT_TRY(check_range(file, "", "projection_dim", cfg->projection_dim, 1, MAX_WIDTH));
    if (!isfinite(cfg->logit_scale_init) || cfg->logit_scale_init > MAX_LOGIT_SCALE)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: logit_scale_init_value: must be finite and at most %g "
                        "(its exp must fit a float32), got %g", file, MAX_LOGIT_SCALE, cfg->logit_scale_init);
    if (cfg->has_text) MMT_TRY(validate_tower(cfg, 1, file));
    if (cfg->has_vision) MMT_TRY(validate_tower(cfg, 0, file));
    return MMT_OK;
}

/* The config's token ids must mean in the model what they mean to the tokenizer that makes
 * the ids: mmtune ends every text with the tokenizer's <|endoftext|>, and the text tower
 * pools where it finds config eos_token_id (modeling_clip.py), or at the largest id for the
 * legacy eos_token_id == 2. Anything else pools a different token, in transformers as well
 * (silently: at position 0 when the id never occurs). */
mmt_status mmt_clip_config_check_tokenizer(const mmt_clip_config *cfg, const char *config_path,
                                           const mmt_tokenizer *tok, const char *vocab_path) {
    if (!cfg->has_text) return MMT_OK;
    const mmt_clip_tower_config *t = &cfg->text;
    const char *p = tower_prefix(cfg, 1), *dot = p[0] ? "." : "";
    int64_t n = mmt_tokenizer_vocab_size(tok);
    int32_t eos = mmt_tokenizer_eos(tok);
    if (n > t->vocab_size)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s%svocab_size: %lld is smaller than the ids of %s (up to %lld)",
                        config_path, p, dot, (long long)t->vocab_size, vocab_path, (long long)(n - 1));
    if (t->eos_token_id == 2) {
        if (eos != n - 1)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s%seos_token_id: 2 (legacy: pool at the largest id) needs "
                            "<|endoftext|> to be the largest id of %s, but it is %d of %lld",
                            config_path, p, dot, vocab_path, (int)eos, (long long)(n - 1));
        return MMT_OK;
    }
    const char *token = t->eos_token_id < INT32_MAX ? mmt_tokenizer_id_to_token(tok, (int32_t)t->eos_token_id) : NULL;
    if (!token)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s%seos_token_id: %lld is not an id in %s",
                        config_path, p, dot, (long long)t->eos_token_id, vocab_path);
    if (t->eos_token_id != eos)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s%seos_token_id: %lld is \"%.40s\" in %s, not <|endoftext|> (%d), "
                        "so texts would be pooled at the wrong token",
                        config_path, p, dot, (long long)t->eos_token_id, token, vocab_path, (int)eos);
    return MMT_OK;
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

mmt_status mmt_clip_vision_config_parse(const mmt_json *obj, const char *file, const char *path,
                                        mmt_clip_tower_config *t) {
    mmt_clip_config c;
    mmt_clip_config_default(&c);
    c.vision = *t;
    field_ctx fc = {file, path};
    MMT_TRY(read_tower(obj, &c.vision, 0, fc));
    c.projection_dim = 0; /* both towers "present": errors say vision_config.<key> */
    MMT_TRY(validate_tower(&c, 0, file));
    *t = c.vision;
    return MMT_OK;
}
