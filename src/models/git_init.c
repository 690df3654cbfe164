/*
 * git_init.c — a randomly initialised GitForCausalLM written as a Hugging Face snapshot (see
 * git_init.h). The tensor list is GitForCausalLM's state_dict, in its order; git.c's loader
 * reads the same names, and tests/test_git_init.c checks both against transformers.
 */
#include "models/git_init.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "core/weights.h"
#include "data/wordpiece.h"

#define VISION_PREFIX "git.image_encoder.vision_model."

void mmt_git_init_params_default(mmt_git_init_params *p) {
    memset(p, 0, sizeof *p);
    mmt_git_config *c = &p->config;
    mmt_git_config_default(c);
    c->hidden_size = 128;
    c->intermediate_size = 512;
    c->num_layers = 4;
    c->num_heads = 4;
    c->max_positions = 32;
    c->tie_word_embeddings = 0;
    c->vision.hidden_size = 128;
    c->vision.intermediate_size = 512;
    c->vision.num_layers = 4;
    c->vision.num_heads = 4;
    c->vision.image_size = 32;
    c->vision.patch_size = 4;
    c->vision.num_channels = 3;
    c->vision.act = MMT_ACT_QUICK_GELU;
    p->initializer_range = 0.02;
    p->vision_initializer_range = 0.02;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* GitPreTrainedModel._init_weights over PreTrainedModel._init_weights (transformers 5.x):
 *   LayerNorm (embeddings.LayerNorm, attention.output.LayerNorm, output.LayerNorm,
 *   visual_projection.1, pre_layrnorm, layer_norm1/2, post_layernorm)   weight 1, bias 0
 *   every other bias                                                    0
 *   everything else (Linear, Conv2d, Embedding, class_embedding)        normal(0, r)
 * where r is vision_config.initializer_range inside the image encoder (GitVisionModel runs its
 * own _init_weights with its own config) and GitConfig.initializer_range elsewhere. */
double mmt_git_init_std(double range, double vision_range, const char *name, double *constant) {
    *constant = 0;
    int vision = !strncmp(name, VISION_PREFIX, strlen(VISION_PREFIX));
    int known = vision || !strncmp(name, "git.embeddings.", 15) || !strncmp(name, "git.encoder.layer.", 18) ||
                !strncmp(name, "git.visual_projection.visual_projection.", 40) || !strcmp(name, "output.weight") ||
                !strcmp(name, "output.bias");
    if (!known) return -2;
    if (strstr(name, "LayerNorm") || strstr(name, "layer_norm") || strstr(name, "layrnorm") ||
        strstr(name, "layernorm") || !strncmp(name, "git.visual_projection.visual_projection.1.", 42)) {
        *constant = ends_with(name, ".weight") ? 1.0 : 0.0;
        return -1;
    }
    if (ends_with(name, ".bias")) return -1;
    return vision ? vision_range : range;
}

/* ---- generator: splitmix64 + Box–Muller, the scheme of clip_init.c -------------------- */

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

/* ---- the tensors --------------------------------------------------------------------- */

typedef struct init_tensor {
    char *name; /* owned */
    int ndim;
    int64_t shape[4];
    float *data; /* owned */
} init_tensor;

typedef struct init_list {
    const mmt_git_init_params *p;
    const mmt_git_config *cfg;
    init_tensor *t; /* owned */
    int64_t n, cap;
} init_list;

static void init_list_free(init_list *l) {
    for (int64_t i = 0; i < l->n; i++) {
        mmt_free(l->t[i].name);
        mmt_free(l->t[i].data);
    }
    mmt_free(l->t);
}

/* Adds tensor printf(fmt, ...) of the given shape (trailing zero dimensions dropped), drawn by
 * its rule. */
static mmt_status add(init_list *l, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
    MMT_PRINTF(6, 7);

static mmt_status add(init_list *l, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    MMT_TRY(mmt_grow((void **)&l->t, &l->cap, l->n + 1, sizeof *l->t));
    init_tensor *t = &l->t[l->n];
    memset(t, 0, sizeof *t);
    int64_t dims[4] = {d0, d1, d2, d3}, numel = 1;
    for (int d = 0; d < 4 && dims[d] > 0; d++) {
        t->shape[d] = dims[d];
        numel *= dims[d];
        t->ndim = d + 1;
    }
    if (!(t->name = mmt_strdup(name))) return MMT_STATUS_OUT_OF_MEMORY;
    l->n++; /* owned by the list from here on, filled or not */
    if (!(t->data = mmt_malloc((size_t)numel * sizeof *t->data))) return MMT_STATUS_OUT_OF_MEMORY;
    double constant;
    double std = mmt_git_init_std(l->p->initializer_range, l->p->vision_initializer_range, name, &constant);
    if (std == -2) return mmt_fail(MMT_STATUS_INTERNAL, "init: no initialisation rule for tensor \"%s\"", name);
    if (std < 0) for (int64_t i = 0; i < numel; i++) t->data[i] = (float)constant;
    else fill_normal(t->data, numel, std, stream_for(l->p->seed, name));
    if (!strcmp(name, "git.embeddings.word_embeddings.weight")) /* nn.Embedding(padding_idx=pad) */
        memset(t->data + l->cfg->pad_token_id * t->shape[1], 0, (size_t)t->shape[1] * sizeof *t->data);
    return MMT_OK;
}

static mmt_status add_vision(init_list *l) {
    const mmt_clip_tower_config *v = &l->cfg->vision;
    int64_t C = v->hidden_size, I = v->intermediate_size, P = v->patch_size;
    int64_t grid = v->image_size / v->patch_size;
    const char *vp = VISION_PREFIX;
    MMT_TRY(add(l, C, 0, 0, 0, "%sembeddings.class_embedding", vp));
    MMT_TRY(add(l, C, v->num_channels, P, P, "%sembeddings.patch_embedding.weight", vp));
    MMT_TRY(add(l, grid * grid + 1, C, 0, 0, "%sembeddings.position_embedding.weight", vp));
    MMT_TRY(add(l, C, 0, 0, 0, "%spre_layrnorm.weight", vp));
    MMT_TRY(add(l, C, 0, 0, 0, "%spre_layrnorm.bias", vp));
    static const char *const attn[4] = {"k_proj", "v_proj", "q_proj", "out_proj"}; /* state_dict order */
    for (int64_t i = 0; i < v->num_layers; i++) {
        long long n = (long long)i;
        for (int k = 0; k < 4; k++) {
            MMT_TRY(add(l, C, C, 0, 0, "%sencoder.layers.%lld.self_attn.%s.weight", vp, n, attn[k]));
            MMT_TRY(add(l, C, 0, 0, 0, "%sencoder.layers.%lld.self_attn.%s.bias", vp, n, attn[k]));
        }
        MMT_TRY(add(l, C, 0, 0, 0, "%sencoder.layers.%lld.layer_norm1.weight", vp, n));
        MMT_TRY(add(l, C, 0, 0, 0, "%sencoder.layers.%lld.layer_norm1.bias", vp, n));
        MMT_TRY(add(l, I, C, 0, 0, "%sencoder.layers.%lld.mlp.fc1.weight", vp, n));
        MMT_TRY(add(l, I, 0, 0, 0, "%sencoder.layers.%lld.mlp.fc1.bias", vp, n));
        MMT_TRY(add(l, C, I, 0, 0, "%sencoder.layers.%lld.mlp.fc2.weight", vp, n));
        MMT_TRY(add(l, C, 0, 0, 0, "%sencoder.layers.%lld.mlp.fc2.bias", vp, n));
        MMT_TRY(add(l, C, 0, 0, 0, "%sencoder.layers.%lld.layer_norm2.weight", vp, n));
        MMT_TRY(add(l, C, 0, 0, 0, "%sencoder.layers.%lld.layer_norm2.bias", vp, n));
    }
    MMT_TRY(add(l, C, 0, 0, 0, "%spost_layernorm.weight", vp));
    return add(l, C, 0, 0, 0, "%spost_layernorm.bias", vp);
}

static mmt_status add_decoder_layer(init_list *l, int64_t i) {
    int64_t C = l->cfg->hidden_size, I = l->cfg->intermediate_size;
    long long n = (long long)i;
    const char *p = "git.encoder.layer";
    static const char *const qkv[3] = {"query", "key", "value"};
    for (int k = 0; k < 3; k++) {
        MMT_TRY(add(l, C, C, 0, 0, "%s.%lld.attention.self.%s.weight", p, n, qkv[k]));
        MMT_TRY(add(l, C, 0, 0, 0, "%s.%lld.attention.self.%s.bias", p, n, qkv[k]));
    }
    MMT_TRY(add(l, C, C, 0, 0, "%s.%lld.attention.output.dense.weight", p, n));
    MMT_TRY(add(l, C, 0, 0, 0, "%s.%lld.attention.output.dense.bias", p, n));
    MMT_TRY(add(l, C, 0, 0, 0, "%s.%lld.attention.output.LayerNorm.weight", p, n));
    MMT_TRY(add(l, C, 0, 0, 0, "%s.%lld.attention.output.LayerNorm.bias", p, n));
    MMT_TRY(add(l, I, C, 0, 0, "%s.%lld.intermediate.dense.weight", p, n));
    MMT_TRY(add(l, I, 0, 0, 0, "%s.%lld.intermediate.dense.bias", p, n));
    MMT_TRY(add(l, C, I, 0, 0, "%s.%lld.output.dense.weight", p, n));
    MMT_TRY(add(l, C, 0, 0, 0, "%s.%lld.output.dense.bias", p, n));
    MMT_TRY(add(l, C, 0, 0, 0, "%s.%lld.output.LayerNorm.weight", p, n));
    return add(l, C, 0, 0, 0, "%s.%lld.output.LayerNorm.bias", p, n);
}

/* Every GitForCausalLM state_dict tensor, in its order. */
static mmt_status add_all(init_list *l) {
    const mmt_git_config *c = l->cfg;
    int64_t C = c->hidden_size, V = c->vocab_size;
    MMT_TRY(add(l, V, C, 0, 0, "git.embeddings.word_embeddings.weight"));
    MMT_TRY(add(l, c->max_positions, C, 0, 0, "git.embeddings.position_embeddings.weight"));
    MMT_TRY(add(l, C, 0, 0, 0, "git.embeddings.LayerNorm.weight"));
    MMT_TRY(add(l, C, 0, 0, 0, "git.embeddings.LayerNorm.bias"));
    MMT_TRY(add_vision(l));
    for (int64_t i = 0; i < c->num_layers; i++) MMT_TRY(add_decoder_layer(l, i));
    MMT_TRY(add(l, C, c->vision.hidden_size, 0, 0, "git.visual_projection.visual_projection.0.weight"));
    MMT_TRY(add(l, C, 0, 0, 0, "git.visual_projection.visual_projection.0.bias"));
    MMT_TRY(add(l, C, 0, 0, 0, "git.visual_projection.visual_projection.1.weight"));
    MMT_TRY(add(l, C, 0, 0, 0, "git.visual_projection.visual_projection.1.bias"));
    MMT_TRY(add(l, V, C, 0, 0, "output.weight"));
    return add(l, V, 0, 0, 0, "output.bias");
}

static mmt_status write_weights(const mmt_git_init_params *p, const mmt_git_config *cfg) {
    init_list l = {p, cfg, NULL, 0, 0};
    mmt_st_write_tensor *list = NULL;
    char *path = NULL;
    mmt_status s = add_all(&l);
    if (s != MMT_OK) goto done;
    list = mmt_calloc((size_t)l.n, sizeof *list);
    path = mmt_path_join(p->out_dir, "model.safetensors");
    if (!list || !path) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    for (int64_t i = 0; i < l.n; i++)
        list[i] = (mmt_st_write_tensor){l.t[i].name, MMT_DTYPE_F32, l.t[i].ndim, l.t[i].shape, l.t[i].data};
    s = mmt_safetensors_write(path, list, l.n, NULL, 0);
done:
    init_list_free(&l);
    mmt_free(list);
    mmt_free(path);
    return s;
}

/* ---- the snapshot ---------------------------------------------------------------------- */

static mmt_status check_tower(const char *what, int64_t width, int64_t mlp, int64_t layers, int64_t heads) {
    if (width <= 0 || mlp <= 0 || layers <= 0 || heads <= 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "init: %s: width, MLP size, layers and heads must be positive",
                        what);
    if (width % heads)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "init: %s width %lld is not divisible by %lld heads", what,
                        (long long)width, (long long)heads);
    return MMT_OK;
}

mmt_status mmt_git_init_check(const mmt_git_config *cfg) {
    const mmt_clip_tower_config *v = &cfg->vision;
    MMT_TRY(check_tower("vision tower", v->hidden_size, v->intermediate_size, v->num_layers, v->num_heads));
    MMT_TRY(check_tower("decoder", cfg->hidden_size, cfg->intermediate_size, cfg->num_layers, cfg->num_heads));
    if (v->patch_size <= 0 || v->image_size <= 0 || v->image_size % v->patch_size)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "init: image size %lld is not a positive multiple of patch %lld",
                        (long long)v->image_size, (long long)v->patch_size);
    if (v->num_channels != 3)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "init: %lld image channels; GIT's processor gives 3",
                        (long long)v->num_channels);
    if (cfg->max_positions < 2 || cfg->vocab_size <= 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "init: the decoder needs a context of at least 2 and a vocabulary");
    if (!(cfg->layer_norm_eps > 0) || !(v->layer_norm_eps > 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "init: layer_norm_eps must be positive");
    return MMT_OK;
}

/* The tokenizer's size and its [CLS] / [SEP] / [PAD] ids go into the config. */
static mmt_status read_tokenizer(const char *dir, mmt_git_config *cfg) {
    char *path = mmt_path_join(dir, "tokenizer.json");
    if (!path) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = MMT_OK;
    mmt_wordpiece *wp = NULL;
    if (!mmt_file_exists(path))
        s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: the tokenizer folder needs tokenizer.json (a WordPiece tokenizer, "
                     "as `mmtune wordpiece` writes)", dir);
    else if ((s = mmt_wordpiece_load_dir(dir, &wp)) == MMT_OK) {
        const mmt_wordpiece_info *ti = mmt_wordpiece_info_of(wp);
        if (ti->cls < 0 || ti->sep < 0 || ti->pad < 0) {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: the tokenizer needs a [CLS] ... [SEP] frame and a [PAD] token",
                         path);
        } else {
            cfg->vocab_size = ti->vocab_size;
            cfg->bos_token_id = ti->cls;
            cfg->eos_token_id = ti->sep;
            cfg->pad_token_id = ti->pad;
        }
    }
    mmt_wordpiece_free(wp);
    mmt_free(path);
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

/* CLIPImageProcessor's defaults with resize and crop at S: the file transformers 5 writes for
 * CLIPImageProcessor(size={"shortest_edge": S}, crop_size={"height": S, "width": S}), as
 * clip_init.c writes it for CLIP (GIT's checkpoints use CLIP's processor). */
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

/* The rendered config.json through the loader's own checks (git_config.c), so that a
 * snapshot mmtune would refuse to load is never written. */
static mmt_status check_as_loaded(const mmt_strbuf *config) {
    if (config->failed) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_json_doc *doc = NULL;
    mmt_git_config back;
    mmt_status s = mmt_json_parse(config->data, config->len, "init: config.json", &doc);
    if (s == MMT_OK) s = mmt_git_config_parse(mmt_json_root(doc), "init: config.json", &back);
    mmt_json_free(doc);
    return s;
}

mmt_status mmt_git_init_snapshot(const mmt_git_init_params *p) {
    if (!p->out_dir || !p->out_dir[0]) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "init: no output folder");
    if (!p->tokenizer_dir) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "init: no tokenizer folder");
    if (!(p->initializer_range > 0) || !(p->vision_initializer_range > 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "init: initializer_range must be positive");
    mmt_git_config cfg = p->config;
    cfg.tie_word_embeddings = 0;
    MMT_TRY(read_tokenizer(p->tokenizer_dir, &cfg));
    MMT_TRY(mmt_git_init_check(&cfg));
    mmt_strbuf config = {0}, processor = {0};
    mmt_git_config_to_json(&cfg, p->initializer_range, p->vision_initializer_range, &config);
    preprocessor_json(cfg.vision.image_size, &processor);
    static const char *const tokenizer_files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
    mmt_status s = check_as_loaded(&config);
    if (s == MMT_OK) s = mmt_mkdirs(p->out_dir);
    if (s == MMT_OK) s = mmt_copy_files(p->tokenizer_dir, p->out_dir, tokenizer_files, 3);
    if (s == MMT_OK) s = write_weights(p, &cfg);
    if (s == MMT_OK) s = write_text(p->out_dir, "config.json", &config);
    if (s == MMT_OK) s = write_text(p->out_dir, "preprocessor_config.json", &processor);
    mmt_strbuf_free(&config);
    mmt_strbuf_free(&processor);
    return s;
}
