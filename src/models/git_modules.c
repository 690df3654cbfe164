/* git_modules.c — the named_modules() list of transformers' GitForCausalLM (see git_modules.h).
 * Order as modeling_git.py declares the attributes (checked against named_modules() of a
 * saved model): git.embeddings, git.image_encoder (CLIP's vision tower), git.encoder,
 * git.visual_projection, output. */
#include "models/git_modules.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "models/clip_modules.h"

typedef struct builder {
    mmt_module_info *items;
    int64_t n, cap;
    int failed;
} builder;

static mmt_module_info *add(builder *b, mmt_module_kind kind, const char *type, mmt_tower tower, int64_t layer,
                            int64_t in, int64_t out, int bias, const char *fmt, ...) MMT_PRINTF(9, 10);

static mmt_module_info *add(builder *b, mmt_module_kind kind, const char *type, mmt_tower tower, int64_t layer,
                            int64_t in, int64_t out, int bias, const char *fmt, ...) {
    static mmt_module_info dummy;
    if (b->failed) return &dummy;
    if (b->n == b->cap) {
        int64_t cap = b->cap ? 2 * b->cap : 128;
        mmt_module_info *items = mmt_realloc(b->items, (size_t)cap * sizeof *items);
        if (!items) {
            b->failed = 1;
            return &dummy;
        }
        b->items = items;
        b->cap = cap;
    }
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    mmt_module_info *m = &b->items[b->n];
    memset(m, 0, sizeof *m);
    if (!(m->name = mmt_strdup(name))) {
        b->failed = 1;
        return &dummy;
    }
    b->n++;
    m->kind = kind;
    m->type_name = type;
    m->tower = tower;
    m->layer = layer;
    m->in_features = in;
    m->out_features = out;
    m->has_bias = bias;
    return m;
}

#define CONTAINER(b, type, tower, layer, ...) add(b, MMT_MODULE_CONTAINER, type, tower, layer, 0, 0, 0, __VA_ARGS__)
#define DROPOUT(b, tower, layer, ...) add(b, MMT_MODULE_ACTIVATION, "Dropout", tower, layer, 0, 0, 0, __VA_ARGS__)

/* The image encoder: CLIP's vision tower list (models/clip_modules.c) under git.image_encoder. */
static void add_vision(builder *b, const mmt_git_config *cfg) {
    mmt_clip_config c;
    mmt_clip_config_default(&c);
    c.has_text = 0;
    c.vision = cfg->vision;
    c.projection_dim = 1;
    mmt_module_info *v = NULL;
    int64_t n = 0;
    if (mmt_clip_modules(&c, &v, &n) != MMT_OK) {
        b->failed = 1;
        return;
    }
    CONTAINER(b, "GitVisionModel", MMT_TOWER_VISION, -1, "git.image_encoder");
    for (int64_t i = 0; i < n; i++) {
        if (!v[i].name[0] || strcmp(v[i].name, "visual_projection") == 0) continue; /* CLIP's root and head */
        mmt_module_info *m = add(b, v[i].kind, v[i].type_name, MMT_TOWER_VISION, v[i].layer, v[i].in_features,
                                 v[i].out_features, v[i].has_bias, "git.image_encoder.%s", v[i].name);
        m->in_channels = v[i].in_channels;
        m->kernel_size = v[i].kernel_size;
    }
    mmt_modules_free(v, n);
}

mmt_status mmt_git_modules(const mmt_git_config *cfg, mmt_module_info **out, int64_t *n) {
    *out = NULL;
    *n = 0;
    builder b = {0};
    const mmt_tower T = MMT_TOWER_TEXT;
    int64_t C = cfg->hidden_size, I = cfg->intermediate_size;
    CONTAINER(&b, "GitForCausalLM", MMT_TOWER_NONE, -1, "%s", "");
    CONTAINER(&b, "GitModel", MMT_TOWER_NONE, -1, "git");
    CONTAINER(&b, "GitEmbeddings", T, -1, "git.embeddings");
    add(&b, MMT_MODULE_EMBEDDING, "Embedding", T, -1, cfg->vocab_size, C, 0, "git.embeddings.word_embeddings");
    add(&b, MMT_MODULE_EMBEDDING, "Embedding", T, -1, cfg->max_positions, C, 0, "git.embeddings.position_embeddings");
    add(&b, MMT_MODULE_LAYERNORM, "LayerNorm", T, -1, C, C, 1, "git.embeddings.LayerNorm");
    DROPOUT(&b, T, -1, "git.embeddings.dropout");
    add_vision(&b, cfg);
    CONTAINER(&b, "GitEncoder", T, -1, "git.encoder");
    CONTAINER(&b, "ModuleList", T, -1, "git.encoder.layer");
    for (int64_t i = 0; i < cfg->num_layers; i++) {
        long long l = (long long)i;
        CONTAINER(&b, "GitLayer", T, i, "git.encoder.layer.%lld", l);
        CONTAINER(&b, "GitAttention", T, i, "git.encoder.layer.%lld.attention", l);
        CONTAINER(&b, "GitSelfAttention", T, i, "git.encoder.layer.%lld.attention.self", l);
        add(&b, MMT_MODULE_LINEAR, "Linear", T, i, C, C, 1, "git.encoder.layer.%lld.attention.self.query", l);
        add(&b, MMT_MODULE_LINEAR, "Linear", T, i, C, C, 1, "git.encoder.layer.%lld.attention.self.key", l);
        add(&b, MMT_MODULE_LINEAR, "Linear", T, i, C, C, 1, "git.encoder.layer.%lld.attention.self.value", l);
        DROPOUT(&b, T, i, "git.encoder.layer.%lld.attention.self.dropout", l);
        CONTAINER(&b, "GitSelfOutput", T, i, "git.encoder.layer.%lld.attention.output", l);
        add(&b, MMT_MODULE_LINEAR, "Linear", T, i, C, C, 1, "git.encoder.layer.%lld.attention.output.dense", l);
        add(&b, MMT_MODULE_LAYERNORM, "LayerNorm", T, i, C, C, 1, "git.encoder.layer.%lld.attention.output.LayerNorm", l);
        DROPOUT(&b, T, i, "git.encoder.layer.%lld.attention.output.dropout", l);
        CONTAINER(&b, "GitIntermediate", T, i, "git.encoder.layer.%lld.intermediate", l);
        add(&b, MMT_MODULE_LINEAR, "Linear", T, i, C, I, 1, "git.encoder.layer.%lld.intermediate.dense", l);
        add(&b, MMT_MODULE_ACTIVATION, "GELUActivation", T, i, 0, 0, 0,
            "git.encoder.layer.%lld.intermediate.intermediate_act_fn", l);
        CONTAINER(&b, "GitOutput", T, i, "git.encoder.layer.%lld.output", l);
        add(&b, MMT_MODULE_LINEAR, "Linear", T, i, I, C, 1, "git.encoder.layer.%lld.output.dense", l);
        add(&b, MMT_MODULE_LAYERNORM, "LayerNorm", T, i, C, C, 1, "git.encoder.layer.%lld.output.LayerNorm", l);
        DROPOUT(&b, T, i, "git.encoder.layer.%lld.output.dropout", l);
    }
    CONTAINER(&b, "GitProjection", MMT_TOWER_VISION, -1, "git.visual_projection");
    CONTAINER(&b, "Sequential", MMT_TOWER_VISION, -1, "git.visual_projection.visual_projection");
    add(&b, MMT_MODULE_LINEAR, "Linear", MMT_TOWER_VISION, -1, cfg->vision.hidden_size, C, 1,
        "git.visual_projection.visual_projection.0");
    add(&b, MMT_MODULE_LAYERNORM, "LayerNorm", MMT_TOWER_VISION, -1, C, C, 1, "git.visual_projection.visual_projection.1");
    mmt_module_info *head = add(&b, MMT_MODULE_LINEAR, "Linear", T, -1, C, cfg->vocab_size, 1, "output");
    head->output_head = 1;
    if (b.failed) {
        mmt_modules_free(b.items, b.n);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    *out = b.items;
    *n = b.n;
    return MMT_OK;
}

void mmt_git_model_dims(const mmt_git_config *cfg, mmt_model_dims *out) {
    *out = (mmt_model_dims){{1, cfg->num_layers, cfg->hidden_size, cfg->num_heads, cfg->vocab_size, 0, 0},
                            {1, cfg->vision.num_layers, cfg->vision.hidden_size, cfg->vision.num_heads, 0,
                             cfg->vision.patch_size, cfg->vision.num_channels}};
}
