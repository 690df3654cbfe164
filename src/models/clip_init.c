/*
 * clip_init.c — a randomly initialised CLIPModel written as a Hugging Face snapshot (see
 * clip_init.h). The tensor list is clip.c's loading walk (mmt_clip_create_generated); this
 * file only says how each tensor is drawn and writes the folder's files.
 */
#include "models/clip_init.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "data/tokenizer.h"
#include "models/clip_internal.h"

void mmt_clip_init_params_default(mmt_clip_init_params *p) {
    memset(p, 0, sizeof *p);
    mmt_clip_config *c = &p->config;
    mmt_clip_config_default(c);
    c->projection_dim = 128;
    c->text.hidden_size = c->vision.hidden_size = 128;
    c->text.intermediate_size = c->vision.intermediate_size = 512;
    c->text.num_layers = c->vision.num_layers = 4;
    c->text.num_heads = c->vision.num_heads = 4;
    c->text.max_positions = 32;
    c->vision.image_size = 64;
    c->vision.patch_size = 8;
    p->initializer_factor = 1.0;
    p->initializer_range = 0.02;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* CLIPPreTrainedModel._init_weights (transformers 5.x modeling_clip.py), factor f:
 *   text token/position embeddings      0.02 f
 *   vision class_embedding               C^-1/2 f
 *   vision patch/position embeddings     initializer_range f
 *   q/k/v_proj                           C^-1/2 (2 L)^-1/2 f
 *   out_proj                             C^-1/2 f
 *   fc1                                  (2 C)^-1/2 f
 *   fc2                                  C^-1/2 (2 L)^-1/2 f
 *   text/visual_projection               C_tower^-1/2 f
 * with C and L the width and depth of the tensor's own tower. PreTrainedModel's generic step
 * sets LayerNorm weights to 1 and every bias to 0; logit_scale is logit_scale_init_value. */
double mmt_clip_init_std(const mmt_clip_config *cfg, double f, double range, const char *name,
                         double *constant) {
    *constant = 0;
    if (!strcmp(name, "logit_scale")) {
        *constant = cfg->logit_scale_init;
        return -1;
    }
    int is_text = !strncmp(name, "text_", 5);
    const mmt_clip_tower_config *t = is_text ? &cfg->text : &cfg->vision;
    double C = (double)t->hidden_size, L = (double)t->num_layers;
    if (strstr(name, "norm")) { /* layer_norm1/2, final_layer_norm, pre_layrnorm, post_layernorm */
        *constant = ends_with(name, ".weight") ? 1.0 : 0.0;
        return -1;
    }
    if (ends_with(name, ".bias")) return -1;
    if (strstr(name, "token_embedding") || (is_text && strstr(name, "position_embedding"))) return 0.02 * f;
    if (ends_with(name, "class_embedding")) return f / sqrt(C);
    if (strstr(name, "patch_embedding") || strstr(name, "position_embedding")) return range * f;
    if (strstr(name, "q_proj") || strstr(name, "k_proj") || strstr(name, "v_proj") || strstr(name, "fc2"))
        return f / sqrt(C) / sqrt(2 * L);
    if (strstr(name, "out_proj")) return f / sqrt(C);
    if (strstr(name, "fc1")) return f / sqrt(2 * C);
    if (ends_with(name, "projection.weight")) return f / sqrt(C);
    return -2; /* a name this table does not know: the caller reports it */
}

/* ---- generator: splitmix64 + Box–Muller ------------------------------------------- */


/* One stream per tensor, keyed by seed and name (FNV-1a), so a tensor's values do not depend
 * on which tensors come before it. */
static uint64_t stream_for(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++) h = (h ^ *c) * 0x100000001b3ull;
    uint64_t s = seed ^ h;
    return mmt_splitmix64(&s);
}

static void fill_normal(float *w, int64_t n, double std, uint64_t state) {
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = ((double)(mmt_splitmix64(&state) >> 11) + 1.0) / 9007199254740992.0; /* (0, 1] */
        double u2 = (double)(mmt_splitmix64(&state) >> 11) / 9007199254740992.0;        /* [0, 1) */
        double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
        w[i] = (float)(std * r * cos(a));
        if (i + 1 < n) w[i + 1] = (float)(std * r * sin(a));
    }
}

/* ---- the snapshot ------------------------------------------------------------------ */

typedef struct init_tensor {
    char *name; /* owned */
    int ndim;
    int64_t shape[4];
    const float *data; /* in the generated model's arena */
} init_tensor;

typedef struct init_ctx {
    const mmt_clip_init_params *p;
    const mmt_clip_config *cfg;
    init_tensor *tensors; /* owned */
    int64_t n, cap;
} init_ctx;

static mmt_status init_fill(void *opaque, const char *name, int ndim, const int64_t *shape, float *w) {
    init_ctx *c = opaque;
    double constant;
    double std = mmt_clip_init_std(c->cfg, c->p->initializer_factor, c->p->initializer_range, name, &constant);
    if (std == -2) return mmt_fail(MMT_STATUS_INTERNAL, "init: no initialisation rule for tensor \"%s\"", name);
    int64_t n = mmt_shape_numel(shape, ndim);
    if (std < 0) for (int64_t i = 0; i < n; i++) w[i] = (float)constant;
    else fill_normal(w, n, std, stream_for(c->p->seed, name));
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 64;
        init_tensor *grown = mmt_realloc(c->tensors, (size_t)cap * sizeof *grown);
        if (!grown) return MMT_STATUS_OUT_OF_MEMORY;
        c->tensors = grown;
        c->cap = cap;
    }
    init_tensor *t = &c->tensors[c->n];
    if (!(t->name = mmt_strdup(name))) return MMT_STATUS_OUT_OF_MEMORY;
    t->ndim = ndim;
    for (int d = 0; d < ndim && d < 4; d++) t->shape[d] = shape[d];
    t->data = w;
    c->n++;
    return MMT_OK;
}

mmt_status mmt_clip_init_check(const mmt_clip_config *cfg) {
    const mmt_clip_tower_config *towers[2] = {&cfg->text, &cfg->vision};
    static const char *const names[2] = {"text", "vision"};
    for (int i = 0; i < 2; i++) {
        const mmt_clip_tower_config *t = towers[i];
        if (t->hidden_size <= 0 || t->intermediate_size <= 0 || t->num_layers <= 0 || t->num_heads <= 0)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "init: %s tower: width, MLP size, layers and heads must be positive", names[i]);
        if (t->hidden_size % t->num_heads)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "init: %s width %lld is not divisible by %lld heads", names[i],
                            (long long)t->hidden_size, (long long)t->num_heads);
    }
    if (cfg->projection_dim <= 0 || cfg->text.max_positions <= 2 || cfg->text.vocab_size <= 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "init: projection dim, context (> 2) and vocabulary must be positive");
    if (cfg->vision.patch_size <= 0 || cfg->vision.image_size <= 0 || cfg->vision.image_size % cfg->vision.patch_size)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "init: image size %lld is not a positive multiple of patch %lld",
                        (long long)cfg->vision.image_size, (long long)cfg->vision.patch_size);
    return MMT_OK;
}

/* The tokenizer's vocabulary size and special ids go into the text config. HF's CLIPTokenizer
 * pads with <|endoftext|>, so pad_token_id is the EOS id. */
static mmt_status read_tokenizer(const char *dir, mmt_clip_config *cfg) {
    mmt_status s = MMT_OK;
    mmt_tokenizer *tok = NULL;
    char *vocab = mmt_path_join(dir, "vocab.json"), *merges = mmt_path_join(dir, "merges.txt");
    if (!vocab || !merges) s = MMT_STATUS_OUT_OF_MEMORY;
    else if (!mmt_file_exists(vocab) || !mmt_file_exists(merges))
        s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: the tokenizer folder needs vocab.json and merges.txt", dir);
    else if ((s = mmt_tokenizer_load(vocab, merges, &tok)) == MMT_OK) {
        int64_t n = mmt_tokenizer_vocab_size(tok);
        int32_t bos = mmt_tokenizer_bos(tok), eos = mmt_tokenizer_eos(tok);
        if (bos < 0 || eos < 0) {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: no <|startoftext|> / <|endoftext|> token", vocab);
        } else {
            cfg->text.vocab_size = n > bos && n > eos ? n : (bos > eos ? bos : eos) + 1;
            cfg->text.bos_token_id = bos;
            cfg->text.eos_token_id = eos;
            cfg->text.pad_token_id = eos;
        }
    }
    mmt_tokenizer_free(tok);
    mmt_free(vocab);
    mmt_free(merges);
    return s;
}

static mmt_status write_text(const char *dir, const char *name, mmt_strbuf *b) {
    if (b->failed) return MMT_STATUS_OUT_OF_MEMORY;
    char *path = mmt_path_join(dir, name);
    if (!path) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = mmt_file_write_atomic(path, b->data, b->len);
    mmt_free(path);
    return s;
}

/* CLIPImageProcessor's defaults (openai/clip-vit-base-patch32) with resize and crop at S. */
static void preprocessor_json(int64_t S, mmt_strbuf *b) {
    mmt_strbuf_printf(b,
        "{\n  \"crop_size\": {\n    \"height\": %lld,\n    \"width\": %lld\n  },\n"
        "  \"do_center_crop\": true,\n  \"do_convert_rgb\": true,\n  \"do_normalize\": true,\n"
        "  \"do_rescale\": true,\n  \"do_resize\": true,\n"
        "  \"image_mean\": [\n    0.48145466,\n    0.4578275,\n    0.40821073\n  ],\n"
        "  \"image_processor_type\": \"CLIPImageProcessor\",\n"
        "  \"image_std\": [\n    0.26862954,\n    0.26130258,\n    0.27577711\n  ],\n"
        "  \"resample\": 3,\n  \"rescale_factor\": 0.00392156862745098,\n"
        "  \"size\": {\n    \"shortest_edge\": %lld\n  }\n}\n",
        (long long)S, (long long)S, (long long)S);
}

static mmt_status write_weights(const mmt_clip_init_params *p, const mmt_clip_config *cfg) {
    init_ctx c = {p, cfg, NULL, 0, 0};
    mmt_clip *model = NULL;
    mmt_st_write_tensor *list = NULL;
    char *path = NULL;
    static const int64_t scalar_shape[1] = {1};
    float logit_scale = (float)cfg->logit_scale_init;
    mmt_status s = mmt_clip_create_generated(cfg, init_fill, &c, &model);
    if (s != MMT_OK) goto done;
    list = mmt_calloc((size_t)c.n + 1, sizeof *list);
    path = mmt_path_join(p->out_dir, "model.safetensors");
    if (!list || !path) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    for (int64_t i = 0; i < c.n; i++)
        list[i] = (mmt_st_write_tensor){c.tensors[i].name, MMT_DTYPE_F32, c.tensors[i].ndim, c.tensors[i].shape,
                                        c.tensors[i].data};
    list[c.n] = (mmt_st_write_tensor){"logit_scale", MMT_DTYPE_F32, 0, scalar_shape, &logit_scale};
    s = mmt_safetensors_write(path, list, c.n + 1, NULL, 0);
done:
    for (int64_t i = 0; i < c.n; i++) mmt_free(c.tensors[i].name);
    mmt_free(c.tensors);
    mmt_free(list);
    mmt_free(path);
    mmt_clip_free(model);
    return s;
}

mmt_status mmt_clip_init_snapshot(const mmt_clip_init_params *p) {
    if (!p->out_dir || !p->out_dir[0]) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "init: no output folder");
    if (!p->tokenizer_dir) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "init: no tokenizer folder");
    mmt_clip_config cfg = p->config;
    cfg.has_text = cfg.has_vision = 1;
    cfg.vision.num_channels = 3;
    MMT_TRY(read_tokenizer(p->tokenizer_dir, &cfg));
    MMT_TRY(mmt_clip_init_check(&cfg));
    MMT_TRY(mmt_mkdirs(p->out_dir));
    static const char *const tokenizer_files[] = {"vocab.json", "merges.txt", "tokenizer_config.json",
                                                  "special_tokens_map.json"};
    MMT_TRY(mmt_copy_files(p->tokenizer_dir, p->out_dir, tokenizer_files, 4));
    MMT_TRY(write_weights(p, &cfg));
    mmt_strbuf config = {0}, processor = {0};
    mmt_clip_config_to_json(&cfg, p->initializer_factor, p->initializer_range, &config);
    preprocessor_json(cfg.vision.image_size, &processor);
    mmt_status s = write_text(p->out_dir, "config.json", &config);
    if (s == MMT_OK) s = write_text(p->out_dir, "preprocessor_config.json", &processor);
    mmt_strbuf_free(&config);
    mmt_strbuf_free(&processor);
    return s;
}
