/*
 * clip.c — loading a Hugging Face CLIP snapshot and running both towers (see clip.h).
 *
 * Weights stay in the mapped safetensors files when they are aligned F32 (zero-copy);
 * anything else is converted once into the model's arena. Each forward call allocates its
 * activations from an arena of its own, so calls on one model may run from several threads.
 */
#include "models/clip.h"
#include "models/clip_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "core/file.h"
#include "core/rng.h"
#include "data/image.h"
#include "data/preprocess.h"
#include "data/tokenizer.h"
#include "ops/ops.h"

/* ---- loading ----------------------------------------------------------------------- */

typedef struct loader {
    mmt_clip *m;
    char name[256];
    clip_tensor_fill fill; /* non-NULL: generate each tensor instead of reading it */
    void *fill_ctx;
} loader;

/* Allocates the tensor in the model arena and lets the caller's fill write it. */
static mmt_status make_generated(loader *l, const int64_t *shape, int ndim, const float **out) {
    int64_t n = mmt_shape_numel(shape, ndim);
    float *w = mmt_arena_alloc(&l->m->store, (size_t)n * sizeof(float), 64);
    if (!w) return MMT_STATUS_OUT_OF_MEMORY;
    MMT_TRY(l->fill(l->fill_ctx, l->name, ndim, shape, w));
    *out = w;
    return MMT_OK;
}

static mmt_status get(loader *l, const float **out, int ndim, int64_t d0, int64_t d1,
                      int64_t d2, int64_t d3, const char *fmt, ...) MMT_PRINTF(8, 9);

static mmt_status get(loader *l, const float **out, int ndim, int64_t d0, int64_t d1,
                      int64_t d2, int64_t d3, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->name, sizeof l->name, fmt, ap);
    va_end(ap);
    int64_t shape[4] = {d0, d1, d2, d3};
    if (l->fill) return make_generated(l, shape, ndim, out);
    return mmt_weights_f32(l->m->weights, &l->m->store, l->name, ndim, shape, out);
}

static mmt_status load_layers(loader *l, clip_tower *t, const char *prefix) {
    const mmt_clip_tower_config *c = t->cfg;
    int64_t C = c->hidden_size, I = c->intermediate_size;
    t->layers = mmt_arena_calloc(&l->m->store, (size_t)c->num_layers, sizeof(clip_layer));
    if (!t->layers) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < c->num_layers; i++) {
        clip_layer *y = &t->layers[i];
        const char *p = prefix;
        long long n = (long long)i;
        MMT_TRY(get(l, &y->ln1_w, 1, C, 0, 0, 0, "%s.encoder.layers.%lld.layer_norm1.weight", p, n));
        MMT_TRY(get(l, &y->ln1_b, 1, C, 0, 0, 0, "%s.encoder.layers.%lld.layer_norm1.bias", p, n));
        MMT_TRY(get(l, &y->q_w, 2, C, C, 0, 0, "%s.encoder.layers.%lld.self_attn.q_proj.weight", p, n));
        MMT_TRY(get(l, &y->q_b, 1, C, 0, 0, 0, "%s.encoder.layers.%lld.self_attn.q_proj.bias", p, n));
        MMT_TRY(get(l, &y->k_w, 2, C, C, 0, 0, "%s.encoder.layers.%lld.self_attn.k_proj.weight", p, n));
        MMT_TRY(get(l, &y->k_b, 1, C, 0, 0, 0, "%s.encoder.layers.%lld.self_attn.k_proj.bias", p, n));
        MMT_TRY(get(l, &y->v_w, 2, C, C, 0, 0, "%s.encoder.layers.%lld.self_attn.v_proj.weight", p, n));
        MMT_TRY(get(l, &y->v_b, 1, C, 0, 0, 0, "%s.encoder.layers.%lld.self_attn.v_proj.bias", p, n));
        MMT_TRY(get(l, &y->out_w, 2, C, C, 0, 0, "%s.encoder.layers.%lld.self_attn.out_proj.weight", p, n));
        MMT_TRY(get(l, &y->out_b, 1, C, 0, 0, 0, "%s.encoder.layers.%lld.self_attn.out_proj.bias", p, n));
        MMT_TRY(get(l, &y->ln2_w, 1, C, 0, 0, 0, "%s.encoder.layers.%lld.layer_norm2.weight", p, n));
        MMT_TRY(get(l, &y->ln2_b, 1, C, 0, 0, 0, "%s.encoder.layers.%lld.layer_norm2.bias", p, n));
        MMT_TRY(get(l, &y->fc1_w, 2, I, C, 0, 0, "%s.encoder.layers.%lld.mlp.fc1.weight", p, n));
        MMT_TRY(get(l, &y->fc1_b, 1, I, 0, 0, 0, "%s.encoder.layers.%lld.mlp.fc1.bias", p, n));
        MMT_TRY(get(l, &y->fc2_w, 2, C, I, 0, 0, "%s.encoder.layers.%lld.mlp.fc2.weight", p, n));
        MMT_TRY(get(l, &y->fc2_b, 1, C, 0, 0, 0, "%s.encoder.layers.%lld.mlp.fc2.bias", p, n));
    }
    return MMT_OK;
}

static mmt_status load_text(loader *l) {
    clip_tower *t = &l->m->text;
    const mmt_clip_tower_config *c = &l->m->cfg.text;
    t->cfg = c;
    int64_t C = c->hidden_size;
    MMT_TRY(get(l, &t->token_embedding, 2, c->vocab_size, C, 0, 0, "text_model.embeddings.token_embedding.weight"));
    MMT_TRY(get(l, &t->position_embedding, 2, c->max_positions, C, 0, 0, "text_model.embeddings.position_embedding.weight"));
    MMT_TRY(load_layers(l, t, "text_model"));
    MMT_TRY(get(l, &t->final_ln_w, 1, C, 0, 0, 0, "text_model.final_layer_norm.weight"));
    MMT_TRY(get(l, &t->final_ln_b, 1, C, 0, 0, 0, "text_model.final_layer_norm.bias"));
    MMT_TRY(get(l, &t->projection, 2, l->m->cfg.projection_dim, C, 0, 0, "text_projection.weight"));
    return MMT_OK;
}

static mmt_status load_vision(loader *l) {
    clip_tower *t = &l->m->vision;
    const mmt_clip_tower_config *c = &l->m->cfg.vision;
    t->cfg = c;
    int64_t C = c->hidden_size, P = c->patch_size, G = c->image_size / c->patch_size;
    MMT_TRY(get(l, &t->class_embedding, 1, C, 0, 0, 0, "vision_model.embeddings.class_embedding"));
    MMT_TRY(get(l, &t->patch_weight, 4, C, c->num_channels, P, P, "vision_model.embeddings.patch_embedding.weight"));
    MMT_TRY(get(l, &t->position_embedding, 2, G * G + 1, C, 0, 0, "vision_model.embeddings.position_embedding.weight"));
    MMT_TRY(get(l, &t->pre_ln_w, 1, C, 0, 0, 0, "vision_model.pre_layrnorm.weight"));
    MMT_TRY(get(l, &t->pre_ln_b, 1, C, 0, 0, 0, "vision_model.pre_layrnorm.bias"));
    MMT_TRY(load_layers(l, t, "vision_model"));
    MMT_TRY(get(l, &t->post_ln_w, 1, C, 0, 0, 0, "vision_model.post_layernorm.weight"));
    MMT_TRY(get(l, &t->post_ln_b, 1, C, 0, 0, 0, "vision_model.post_layernorm.bias"));
    MMT_TRY(get(l, &t->projection, 2, l->m->cfg.projection_dim, C, 0, 0, "visual_projection.weight"));
    return MMT_OK;
}

/* Optional files: the tokenizer (vocab.json + merges.txt) and preprocessor_config.json. */
static mmt_status load_extras(mmt_clip *m, const char *config) {
    mmt_status s = MMT_OK;
    char *vocab = mmt_path_join(m->dir, "vocab.json");
    char *merges = mmt_path_join(m->dir, "merges.txt");
    char *proc = mmt_path_join(m->dir, "preprocessor_config.json");
    if (!vocab || !merges || !proc) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    if (m->cfg.has_text && mmt_file_exists(vocab) && mmt_file_exists(merges)) {
        if ((s = mmt_tokenizer_load(vocab, merges, &m->tokenizer)) != MMT_OK) goto done;
        if ((s = mmt_clip_config_check_tokenizer(&m->cfg, config, m->tokenizer, vocab)) != MMT_OK) goto done;
    }
    mmt_image_processor_default(&m->processor);
    m->processor.crop_height = m->processor.crop_width = m->cfg.vision.image_size;
    m->processor.shortest_edge = m->cfg.vision.image_size;
    if (m->cfg.has_vision && mmt_file_exists(proc))
        if ((s = mmt_image_processor_load(proc, &m->processor)) != MMT_OK) goto done;
    if (m->cfg.has_vision && (m->processor.crop_height != m->cfg.vision.image_size ||
                              m->processor.crop_width != m->cfg.vision.image_size || !m->processor.do_center_crop))
        s = mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: preprocessor crop %lldx%lld does not match the model's image_size %lld",
                     proc, (long long)m->processor.crop_height, (long long)m->processor.crop_width,
                     (long long)m->cfg.vision.image_size);
done:
    mmt_free(vocab);
    mmt_free(merges);
    mmt_free(proc);
    return s;
}

mmt_status mmt_clip_load(const char *dir, mmt_clip **out) {
    *out = NULL;
    mmt_clip *m = mmt_calloc(1, sizeof *m);
    if (!m) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_arena_init(&m->store, (size_t)1 << 20);
    mmt_status s = MMT_OK;
    char *config = NULL;
    m->ops = mmt_ops_cpu();
    m->dir = mmt_strdup(dir);
    config = m->dir ? mmt_path_join(dir, "config.json") : NULL;
    if (!config) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    if ((s = mmt_clip_config_load(config, &m->cfg)) != MMT_OK) goto done;
    if ((s = mmt_weights_open(dir, &m->weights)) != MMT_OK) goto done;
    loader l = {m, {0}, NULL, NULL};
    if (m->cfg.has_text && (s = load_text(&l)) != MMT_OK) goto done;
    if (m->cfg.has_vision && (s = load_vision(&l)) != MMT_OK) goto done;
    m->logit_scale = (float)m->cfg.logit_scale_init;
    const float *scale;
    if (mmt_weights_find(m->weights, "logit_scale", NULL)) {
        if ((s = get(&l, &scale, 0, 0, 0, 0, 0, "logit_scale")) != MMT_OK) goto done;
        m->logit_scale = *scale;
    }
    s = load_extras(m, config);
done:
    mmt_free(config);
    if (s != MMT_OK) {
        mmt_clip_free(m);
        return s;
    }
    *out = m;
    return MMT_OK;
}

/* See clip_internal.h. The walk in load_text / load_vision is the one list of CLIP tensor
 * names and shapes: loading, random benchmark models and `mmtune init` all go through it. */
mmt_status mmt_clip_create_generated(const mmt_clip_config *cfg, clip_tensor_fill fill, void *ctx,
                                     mmt_clip **out) {
    *out = NULL;
    mmt_clip *m = mmt_calloc(1, sizeof *m);
    if (!m) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_arena_init(&m->store, (size_t)1 << 24);
    m->ops = mmt_ops_cpu();
    m->cfg = *cfg;
    m->dir = mmt_strdup("(generated weights)");
    m->logit_scale = (float)cfg->logit_scale_init;
    mmt_image_processor_default(&m->processor);
    loader l = {m, {0}, fill, ctx};
    mmt_status s = m->dir ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK && cfg->has_text) s = load_text(&l);
    if (s == MMT_OK && cfg->has_vision) s = load_vision(&l);
    if (s != MMT_OK) {
        mmt_clip_free(m);
        return s;
    }
    *out = m;
    return MMT_OK;
}

/* Uniform(-a, a) with a = 0.02 * sqrt(3) (std 0.02, like HF's initializer_range); norms get
 * weight 1 and bias 0. A splitmix64 stream keeps it reproducible across platforms. */
static float random_uniform(uint64_t *state) {
    uint64_t z = mmt_splitmix64(state);
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static mmt_status fill_random(void *ctx, const char *name, int ndim, const int64_t *shape,
                              float *w) {
    uint64_t *state = ctx;
    int64_t n = mmt_shape_numel(shape, ndim);
    size_t len = strlen(name);
    int is_norm = strstr(name, "norm") || strstr(name, "layrnorm");
    int is_weight = len > 7 && strcmp(name + len - 7, ".weight") == 0;
    for (int64_t i = 0; i < n; i++)
        w[i] = is_norm ? (is_weight ? 1.0f : 0.0f) : 0.034641f * random_uniform(state);
    return MMT_OK;
}

mmt_status mmt_clip_create_random(const mmt_clip_config *cfg, uint64_t seed, mmt_clip **out) {
    uint64_t state = seed | 1;
    MMT_TRY(mmt_clip_create_generated(cfg, fill_random, &state, out));
    mmt_free((*out)->dir);
    (*out)->dir = mmt_strdup("(random weights)");
    if (!(*out)->dir) {
        mmt_clip_free(*out);
        *out = NULL;
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    return MMT_OK;
}

void mmt_clip_free(mmt_clip *m) {
    if (!m) return;
    mmt_tokenizer_free(m->tokenizer);
    mmt_weights_free(m->weights);
    mmt_arena_free(&m->store);
    mmt_free(m->dir);
    mmt_free(m);
}

const mmt_clip_config *mmt_clip_config_of(const mmt_clip *m) { return &m->cfg; }
const mmt_weights *mmt_clip_weights(const mmt_clip *m) { return m->weights; }
mmt_tokenizer *mmt_clip_tokenizer(mmt_clip *m) { return m->tokenizer; }
const mmt_image_processor *mmt_clip_processor(const mmt_clip *m) { return &m->processor; }
int64_t mmt_clip_embed_dim(const mmt_clip *m) { return m->cfg.projection_dim; }
float mmt_clip_logit_scale(const mmt_clip *m) { return expf(m->logit_scale); }

/* ---- forward ----------------------------------------------------------------------- */

/* Runs every encoder layer on x (B, T, C), leaving the result in x: the blocks of nn/block.h
 * in inference mode, their intermediates given back to the arena after each layer. */
static mmt_status encoder_forward(const mmt_ops *ops, mmt_arena *arena, const clip_tower *t,
                                  float *x, int64_t B, int64_t T, int causal) {
    const mmt_clip_tower_config *c = t->cfg;
    int64_t NC = B * T * c->hidden_size;
    mmt_block_config bc;
    clip_block_config(c, causal, &bc);
    float *out = mmt_arena_alloc(arena, (size_t)NC * sizeof(float), 64); // (B, T, C)
    if (!out) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < c->num_layers; i++) {
        mmt_block_weights w;
        mmt_block y;
        clip_block_weights(&t->layers[i], &w);
        nn_block_init(&y, &w, c->hidden_size, c->intermediate_size);
        mmt_arena_mark mark = mmt_arena_get_mark(arena);
        mmt_status s = nn_block_forward(&y, &bc, ops, arena, x, out, B, T, 0, i, 0);
        mmt_arena_rewind(arena, mark);
        MMT_TRY(s);
        memcpy(x, out, (size_t)NC * sizeof(float));
    }
    return MMT_OK;
}

/* pooled (B, C) -> out (B, P): final/post layernorm, projection, L2 normalisation. */
static mmt_status project(const mmt_ops *ops, mmt_arena *arena, const clip_tower *t,
                          const float *ln_w, const float *ln_b, const float *pooled, int64_t B,
                          int64_t P, float *out) {
    int64_t C = t->cfg->hidden_size;
    float *h = mmt_arena_alloc(arena, (size_t)(B * C) * 4, 64); // (B, C)
    if (!h) return MMT_STATUS_OUT_OF_MEMORY;
    ops->layernorm_fwd(h, NULL, NULL, pooled, ln_w, ln_b, B, C, (float)t->cfg->layer_norm_eps);
    ops->matmul_fwd(out, h, t->projection, NULL, B, C, P);
    ops->l2_normalize_fwd(out, NULL, out, B, P);
    return MMT_OK;
}

static mmt_status encode_pixels_impl(mmt_clip *m, mmt_arena *arena, const float *pixels,
                                     int64_t B, float *out) {
    const clip_tower *t = &m->vision;
    const mmt_clip_tower_config *c = t->cfg;
    const mmt_ops *ops = m->ops;
    int64_t C = c->hidden_size, P = c->patch_size, S = c->image_size, Ch = c->num_channels;
    int64_t G = S / P, Np = G * G, T = Np + 1, K = Ch * P * P;
    float *patches = mmt_arena_alloc(arena, (size_t)(B * Np * K) * 4, 64); // (B, Np, K)
    float *emb = mmt_arena_alloc(arena, (size_t)(B * Np * C) * 4, 64);     // (B, Np, C)
    float *x = mmt_arena_alloc(arena, (size_t)(B * T * C) * 4, 64);        // (B, T, C)
    float *pooled = mmt_arena_alloc(arena, (size_t)(B * C) * 4, 64);       // (B, C)
    if (!patches || !emb || !x || !pooled) return MMT_STATUS_OUT_OF_MEMORY;
    ops->patchify_fwd(patches, pixels, B, Ch, S, S, P);
    ops->matmul_fwd(emb, patches, t->patch_weight, NULL, B * Np, K, C);
    for (int64_t b = 0; b < B; b++) {
        float *row = x + b * T * C;
        for (int64_t j = 0; j < C; j++) row[j] = t->class_embedding[j] + t->position_embedding[j];
        for (int64_t n = 0; n < Np; n++)
            for (int64_t j = 0; j < C; j++)
                row[(n + 1) * C + j] = emb[(b * Np + n) * C + j] + t->position_embedding[(n + 1) * C + j];
    }
    ops->layernorm_fwd(x, NULL, NULL, x, t->pre_ln_w, t->pre_ln_b, B * T, C, (float)c->layer_norm_eps);
    MMT_TRY(encoder_forward(ops, arena, t, x, B, T, 0));
    for (int64_t b = 0; b < B; b++) memcpy(pooled + b * C, x + b * T * C, (size_t)C * 4);
    return project(ops, arena, t, t->post_ln_w, t->post_ln_b, pooled, B, m->cfg.projection_dim, out);
}

mmt_status mmt_clip_encode_pixels(mmt_clip *m, const float *pixels, int64_t B, float *out) {
    if (!m->cfg.has_vision)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this checkpoint has no vision tower", m->dir);
    if (B <= 0) return MMT_OK;
    mmt_arena arena;
    mmt_arena_init(&arena, (size_t)1 << 20);
    mmt_status s = encode_pixels_impl(m, &arena, pixels, B, out);
    mmt_arena_free(&arena);
    return s;
}

/* See clip_internal.h. */
int64_t mmt_clip_pool_position(const int32_t *ids, int64_t L, int64_t eos_token_id) {
    int64_t best = 0;
    for (int64_t i = 0; i < L; i++) {
        if (eos_token_id == 2) {
            if (ids[i] > ids[best]) best = i;
        } else if (ids[i] == eos_token_id) {
            return i;
        }
    }
    return best;
}

static mmt_status encode_ids_impl(mmt_clip *m, mmt_arena *arena, const int32_t *ids, int64_t B,
                                  int64_t L, float *out) {
    const clip_tower *t = &m->text;
    const mmt_clip_tower_config *c = t->cfg;
    const mmt_ops *ops = m->ops;
    int64_t C = c->hidden_size;
    int64_t *pool = mmt_arena_alloc(arena, (size_t)B * sizeof(int64_t), 8);
    if (!pool) return MMT_STATUS_OUT_OF_MEMORY;
    /* The causal mask makes position p depend only on positions <= p, so running the
     * batch only up to the furthest pooled position gives the same pooled outputs. */
    int64_t T = 1;
    for (int64_t b = 0; b < B; b++) {
        pool[b] = mmt_clip_pool_position(ids + b * L, L, c->eos_token_id);
        if (pool[b] + 1 > T) T = pool[b] + 1;
    }
    int32_t *trimmed = mmt_arena_alloc(arena, (size_t)(B * T) * 4, 64); // (B, T)
    float *x = mmt_arena_alloc(arena, (size_t)(B * T * C) * 4, 64);     // (B, T, C)
    float *pooled = mmt_arena_alloc(arena, (size_t)(B * C) * 4, 64);    // (B, C)
    if (!trimmed || !x || !pooled) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t b = 0; b < B; b++)
        memcpy(trimmed + b * T, ids + b * L, (size_t)T * 4);
    ops->embedding_fwd(x, trimmed, t->token_embedding, B * T, C);
    for (int64_t b = 0; b < B; b++)
        ops->add_fwd(x + b * T * C, x + b * T * C, t->position_embedding, T * C);
    MMT_TRY(encoder_forward(ops, arena, t, x, B, T, 1));
    for (int64_t b = 0; b < B; b++) memcpy(pooled + b * C, x + (b * T + pool[b]) * C, (size_t)C * 4);
    return project(ops, arena, t, t->final_ln_w, t->final_ln_b, pooled, B, m->cfg.projection_dim, out);
}

mmt_status mmt_clip_encode_ids(mmt_clip *m, const int32_t *ids, int64_t B, int64_t L, float *out) {
    if (!m->cfg.has_text)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this checkpoint has no text tower", m->dir);
    if (L <= 0 || L > m->cfg.text.max_positions)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "token sequence length %lld is outside 1..%lld",
                        (long long)L, (long long)m->cfg.text.max_positions);
    for (int64_t i = 0; i < B * L; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.text.vocab_size)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "token id %d at row %lld is outside the vocabulary (%lld)",
                            ids[i], (long long)(i / L), (long long)m->cfg.text.vocab_size);
    if (B <= 0) return MMT_OK;
    mmt_arena arena;
    mmt_arena_init(&arena, (size_t)1 << 20);
    mmt_status s = encode_ids_impl(m, &arena, ids, B, L, out);
    mmt_arena_free(&arena);
    return s;
}

/* ---- convenience: strings and image files ------------------------------------------ */

mmt_status mmt_clip_tokenize(mmt_clip *m, const char *const *texts, int64_t B, int truncate,
                             int32_t *ids) {
    if (!m->cfg.has_text)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this checkpoint has no text tower", m->dir);
    if (!m->tokenizer)
        return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: no vocab.json + merges.txt, cannot tokenize text", m->dir);
    int64_t L = m->cfg.text.max_positions;
    int32_t pad = mmt_tokenizer_eos(m->tokenizer);
    for (int64_t b = 0; b < B; b++) {
        int32_t *row = ids + b * L;
        int64_t total = 0;
        size_t len = strlen(texts[b]);
        mmt_status s = mmt_tokenizer_encode(m->tokenizer, texts[b], len, row, L, &total);
        if (s != MMT_OK) return mmt_error_prefix(s, "text %lld: ", (long long)b + 1);
        if (total <= 2)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "text %lld is empty", (long long)b + 1);
        if (total > L && !truncate)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                            "text %lld is %lld tokens long, more than the model's %lld (use truncation to cut it)",
                            (long long)b + 1, (long long)total, (long long)L);
        for (int64_t i = total < L ? total : L; i < L; i++) row[i] = pad;
    }
    return MMT_OK;
}

#define EMBED_CHUNK 32

mmt_status mmt_clip_embed_texts_ex(mmt_clip *m, const char *const *texts, int64_t n,
                                   int truncate, float *out) {
    int64_t L = m->cfg.text.max_positions, P = m->cfg.projection_dim;
    int32_t *ids = mmt_malloc((size_t)(EMBED_CHUNK * L) * sizeof(int32_t));
    if (!ids) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = MMT_OK;
    for (int64_t at = 0; at < n && s == MMT_OK; at += EMBED_CHUNK) {
        int64_t b = n - at < EMBED_CHUNK ? n - at : EMBED_CHUNK;
        s = mmt_clip_tokenize(m, texts + at, b, truncate, ids);
        if (s != MMT_OK && at > 0) /* name the text by its index in the whole call */
            s = mmt_error_prefix(s, "(batch from text %lld) ", (long long)at + 1);
        if (s == MMT_OK) s = mmt_clip_encode_ids(m, ids, b, L, out + at * P);
    }
    mmt_free(ids);
    return s;
}

mmt_status mmt_clip_embed_texts(mmt_clip *m, const char *const *texts, int64_t n, float *out) {
    return mmt_clip_embed_texts_ex(m, texts, n, 0, out);
}

mmt_status mmt_clip_image_file_pixels(const mmt_clip *m, const char *path, float *out) {
    mmt_image img = {0};
    mmt_status s = mmt_image_decode_file(path, &img);
    if (s == MMT_OK) s = mmt_image_preprocess(&img, &m->processor, out);
    mmt_image_free(&img);
    return s;
}

mmt_status mmt_clip_embed_image_files(mmt_clip *m, const char *const *paths, int64_t n, float *out) {
    if (!m->cfg.has_vision)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this checkpoint has no vision tower", m->dir);
    int64_t S = m->cfg.vision.image_size, Ch = m->cfg.vision.num_channels, P = m->cfg.projection_dim;
    if (Ch != 3) return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: vision num_channels %lld, images need 3", m->dir, (long long)Ch);
    size_t per = (size_t)(3 * S * S);
    float *pixels = mmt_malloc(EMBED_CHUNK * per * sizeof(float));
    if (!pixels) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = MMT_OK;
    for (int64_t at = 0; at < n && s == MMT_OK; at += EMBED_CHUNK) {
        int64_t b = n - at < EMBED_CHUNK ? n - at : EMBED_CHUNK;
        for (int64_t i = 0; i < b && s == MMT_OK; i++) {
            s = mmt_clip_image_file_pixels(m, paths[at + i], pixels + (size_t)i * per);
        }
        if (s == MMT_OK) s = mmt_clip_encode_pixels(m, pixels, b, out + at * P);
    }
    mmt_free(pixels);
    return s;
}
