/* clip_modules.c — a CLIP config -> the named_modules() list of transformers' CLIP classes.
 *
 * The order follows the attribute order of transformers 5.x modeling_clip.py: CLIPModel holds
 * text_model, vision_model, visual_projection, text_projection; CLIPAttention declares k, v,
 * q, out_proj in that order; CLIPEncoderLayer holds self_attn, layer_norm1, mlp, layer_norm2.
 */
#include "models/clip_modules.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

typedef struct list_builder {
    mmt_module_info *items; /* owned until handed to the caller */
    int64_t n, cap;
    int failed;
} list_builder;

/* Appends one module; the name is printf-formatted. Failure is sticky and reported at the end. */
static mmt_module_info *push(list_builder *b, mmt_module_kind kind, const char *type_name,
                             mmt_tower tower, int64_t layer, const char *fmt, ...)
    MMT_PRINTF(6, 7);
static mmt_module_info *push(list_builder *b, mmt_module_kind kind, const char *type_name,
                             mmt_tower tower, int64_t layer, const char *fmt, ...) {
    static mmt_module_info dummy;
    if (b->failed) return &dummy;
    if (b->n == b->cap) {
        int64_t cap = b->cap ? b->cap * 2 : 64;
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
    m->name = mmt_strdup(name);
    if (!m->name) {
        b->failed = 1;
        return &dummy;
    }
    b->n++;
    m->kind = kind;
    m->type_name = type_name;
    m->tower = tower;
    m->layer = layer;
    return m;
}

static void push_linear(list_builder *b, mmt_tower tower, int64_t layer, int64_t in, int64_t out,
                        int bias, const char *name) {
    mmt_module_info *m = push(b, MMT_MODULE_LINEAR, "Linear", tower, layer, "%s", name);
    m->in_features = in;
    m->out_features = out;
    m->has_bias = bias;
}

static void push_layernorm(list_builder *b, mmt_tower tower, int64_t layer, int64_t dim,
                           const char *name) {
    mmt_module_info *m = push(b, MMT_MODULE_LAYERNORM, "LayerNorm", tower, layer, "%s", name);
    m->in_features = m->out_features = dim;
    m->has_bias = 1;
}

static void push_embedding(list_builder *b, mmt_tower tower, int64_t count, int64_t dim,
                           const char *name) {
    mmt_module_info *m = push(b, MMT_MODULE_EMBEDDING, "Embedding", tower, -1, "%s", name);
    m->in_features = count;
    m->out_features = dim;
}

/* prefix.encoder, prefix.encoder.layers and every CLIPEncoderLayer under it. */
static void push_encoder(list_builder *b, const char *prefix, mmt_tower tower,
                         const mmt_clip_tower_config *t) {
    char name[256];
    const int64_t C = t->hidden_size, I = t->intermediate_size;
    const char *act = t->act == MMT_ACT_GELU ? "GELUActivation" : "QuickGELUActivation";
    push(b, MMT_MODULE_CONTAINER, "CLIPEncoder", tower, -1, "%s.encoder", prefix);
    push(b, MMT_MODULE_CONTAINER, "ModuleList", tower, -1, "%s.encoder.layers", prefix);
    for (int64_t i = 0; i < t->num_layers; i++) {
        char base[160];
        snprintf(base, sizeof base, "%s.encoder.layers.%lld", prefix, (long long)i);
        push(b, MMT_MODULE_CONTAINER, "CLIPEncoderLayer", tower, i, "%s", base);
        push(b, MMT_MODULE_CONTAINER, "CLIPAttention", tower, i, "%s.self_attn", base);
        static const char *const projections[] = {"k_proj", "v_proj", "q_proj", "out_proj"};
        for (int p = 0; p < 4; p++) {
            snprintf(name, sizeof name, "%s.self_attn.%s", base, projections[p]);
            push_linear(b, tower, i, C, C, 1, name);
        }
        snprintf(name, sizeof name, "%s.layer_norm1", base);
        push_layernorm(b, tower, i, C, name);
        push(b, MMT_MODULE_CONTAINER, "CLIPMLP", tower, i, "%s.mlp", base);
        push(b, MMT_MODULE_ACTIVATION, act, tower, i, "%s.mlp.activation_fn", base);
        snprintf(name, sizeof name, "%s.mlp.fc1", base);
        push_linear(b, tower, i, C, I, 1, name);
        snprintf(name, sizeof name, "%s.mlp.fc2", base);
        push_linear(b, tower, i, I, C, 1, name);
        snprintf(name, sizeof name, "%s.layer_norm2", base);
        push_layernorm(b, tower, i, C, name);
    }
}

static void push_text(list_builder *b, const mmt_clip_tower_config *t) {
    const mmt_tower T = MMT_TOWER_TEXT;
    push(b, MMT_MODULE_CONTAINER, "CLIPTextModel", T, -1, "text_model");
    push(b, MMT_MODULE_CONTAINER, "CLIPTextEmbeddings", T, -1, "text_model.embeddings");
    push_embedding(b, T, t->vocab_size, t->hidden_size, "text_model.embeddings.token_embedding");
    push_embedding(b, T, t->max_positions, t->hidden_size, "text_model.embeddings.position_embedding");
    push_encoder(b, "text_model", T, t);
    push_layernorm(b, T, -1, t->hidden_size, "text_model.final_layer_norm");
}

static void push_vision(list_builder *b, const mmt_clip_tower_config *v) {
    const mmt_tower V = MMT_TOWER_VISION;
    const int64_t P = v->patch_size, grid = v->image_size / v->patch_size;
    push(b, MMT_MODULE_CONTAINER, "CLIPVisionModel", V, -1, "vision_model");
    push(b, MMT_MODULE_CONTAINER, "CLIPVisionEmbeddings", V, -1, "vision_model.embeddings");
    mmt_module_info *conv = push(b, MMT_MODULE_CONV2D, "Conv2d", V, -1,
                                 "vision_model.embeddings.patch_embedding");
    conv->in_channels = v->num_channels;
    conv->kernel_size = P;
    conv->in_features = v->num_channels * P * P;
    conv->out_features = v->hidden_size;
    push_embedding(b, V, grid * grid + 1, v->hidden_size, "vision_model.embeddings.position_embedding");
    push_layernorm(b, V, -1, v->hidden_size, "vision_model.pre_layrnorm");
    push_encoder(b, "vision_model", V, v);
    push_layernorm(b, V, -1, v->hidden_size, "vision_model.post_layernorm");
}

mmt_status mmt_clip_modules(const mmt_clip_config *cfg, mmt_module_info **out, int64_t *n) {
    *out = NULL;
    *n = 0;
    if (!cfg->has_text && !cfg->has_vision)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "CLIP config has neither a text nor a vision tower");
    list_builder b = {0};
    const char *root = "CLIPModel";
    if (!cfg->has_vision) root = "CLIPTextModelWithProjection";
    else if (!cfg->has_text) root = "CLIPVisionModelWithProjection";
    push(&b, MMT_MODULE_CONTAINER, root, MMT_TOWER_NONE, -1, "%s", "");
    if (cfg->has_text) push_text(&b, &cfg->text);
    if (cfg->has_vision) push_vision(&b, &cfg->vision);
    if (cfg->has_vision)
        push_linear(&b, MMT_TOWER_VISION, -1, cfg->vision.hidden_size, cfg->projection_dim, 0,
                    "visual_projection");
    if (cfg->has_text)
        push_linear(&b, MMT_TOWER_TEXT, -1, cfg->text.hidden_size, cfg->projection_dim, 0,
                    "text_projection");
    if (b.failed) {
        mmt_modules_free(b.items, b.n);
        return MMT_STATUS_OUT_OF_MEMORY; /* the allocator set the message */
    }
    *out = b.items;
    *n = b.n;
    return MMT_OK;
}

void mmt_clip_model_dims(const mmt_clip_config *cfg, mmt_model_dims *out) {
    *out = (mmt_model_dims){{cfg->has_text, cfg->text.num_layers, cfg->text.hidden_size, cfg->text.num_heads,
                             cfg->text.vocab_size, 0, 0},
                            {cfg->has_vision, cfg->vision.num_layers, cfg->vision.hidden_size, cfg->vision.num_heads, 0,
                             cfg->vision.patch_size, cfg->vision.num_channels}};
}
