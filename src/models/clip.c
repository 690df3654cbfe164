/*
 * clip.c — loading a Hugging Face CLIP snapshot and running both towers (see clip.h).
 *
 * Weights stay in the mapped safetensors files when they are aligned F32 (zero-copy);
 * anything else is converted once into the model's arena. The forward is clip_train.c's (one
 * per family): each inference call here runs it in a view of its own, activations included,
 * so calls on one model may run from several threads.
 */
#include "models/clip.h"
#include "models/clip_internal.h"
#include "models/clip_train.h"
#include "models/qlinear.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "core/file.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/image.h"
#include "data/preprocess.h"
#include "data/tokenizer.h"
#include "ops/ops.h"

/* ---- loading ----------------------------------------------------------------------- */

typedef struct loader {
    mmt_clip *m;
    const char *prefix; /* before every tensor name ("" for CLIP; GIT's image encoder has one) */
    char name[256];
    clip_tensor_fill fill; /* non-NULL: generate each tensor instead of reading it */
    void *fill_ctx;
    const mmt_quant_options *quant; /* non-NULL: each linear quantized as soon as it is read */
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
    size_t n = (size_t)snprintf(l->name, sizeof l->name, "%s", l->prefix);
    if (n < sizeof l->name) vsnprintf(l->name + n, sizeof l->name - n, fmt, ap);
    va_end(ap);
    int64_t shape[4] = {d0, d1, d2, d3};
    if (l->fill) return make_generated(l, shape, ndim, out);
    return mmt_weights_f32(l->m->weights, &l->m->store, l->name, ndim, shape, out);
}

/* A linear's weight (out, in): generated, fp32 from the file, or a bitsandbytes 4-/8-bit
 * tensor kept quantized; recorded in the model's list of linears either way (qlinear.h). */
static mmt_status get_linear(loader *l, const float **w, const mmt_qmat **qw, int64_t out, int64_t in,
                             int64_t layer, int64_t n_layers, const char *module) {
    char full[256];
    if ((size_t)snprintf(full, sizeof full, "%s%s", l->prefix, module) >= sizeof full)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "tensor name too long: %s%s", l->prefix, module);
    *qw = NULL;
    mmt_qlinears *set = &l->m->qlinears;
    if (l->fill) {
        MMT_TRY(get(l, w, 2, out, in, 0, 0, "%s.weight", module));
        MMT_TRY(mmt_qlinears_add(set, full, out, in, layer, n_layers, w, qw));
    } else {
        MMT_TRY(mmt_qlinear_load(set, l->m->weights, &l->m->store, l->m->ops, full, out, in, layer, n_layers, w, qw));
    }
    /* CLIPModel's last module stays fp32, as transformers keeps it (qlinear.h) */
    if (strcmp(module, "text_projection") == 0) mmt_qlinears_keep_fp32(set, full);
    return mmt_qlinears_quantize_slot(set, set->n - 1, &l->m->store, l->m->ops, l->quant);
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
        /* In the file's order (a generated model draws its numbers in this order). */
        const float **lw[6] = {&y->q_w, &y->k_w, &y->v_w, &y->out_w, &y->fc1_w, &y->fc2_w};
        const float **lb[6] = {&y->q_b, &y->k_b, &y->v_b, &y->out_b, &y->fc1_b, &y->fc2_b};
        static const char *const names[6] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                              "self_attn.out_proj", "mlp.fc1", "mlp.fc2"};
        for (int j = 0; j < 6; j++) {
            char mod[160];
            int64_t out = j == 4 ? I : C, in = j == 5 ? I : C;
            snprintf(mod, sizeof mod, "%s.encoder.layers.%lld.%s", p, n, names[j]);
            if (j == 4) {
                MMT_TRY(get(l, &y->ln2_w, 1, C, 0, 0, 0, "%s.encoder.layers.%lld.layer_norm2.weight", p, n));
                MMT_TRY(get(l, &y->ln2_b, 1, C, 0, 0, 0, "%s.encoder.layers.%lld.layer_norm2.bias", p, n));
            }
            MMT_TRY(get_linear(l, lw[j], &y->qw[j], out, in, i, c->num_layers, mod));
            MMT_TRY(get(l, lb[j], 1, out, 0, 0, 0, "%s.bias", mod));
        }
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
    MMT_TRY(get_linear(l, &t->projection, &t->projection_qw, l->m->cfg.projection_dim, C, -1, 0, "text_projection"));
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
    if (l->m->cfg.projection_dim == 0) return MMT_OK; /* a tower inside another model (GIT) */
    MMT_TRY(get_linear(l, &t->projection, &t->projection_qw, l->m->cfg.projection_dim, C, -1, 0, "visual_projection"));
    return MMT_OK;
}

/* With the vision tower's first block in int8, the patch embedding (a Conv2d, which neither
 * transformers nor a file converts) gets an int8 copy too, for inference only: at batch 1 its
 * float32 GEMM was a tenth of an int8 image embedding (docs/quantization.md has the effect on
 * accuracy). */
static mmt_status patch_int8(mmt_clip *m) {
    clip_tower *t = &m->vision;
    if (!m->cfg.has_vision || !t->layers || t->patch_qw || !t->patch_weight) return MMT_OK;
    const mmt_qmat *first = t->layers[0].qw[0];
    if (!first || first->type != MMT_QMAT_S8 || !first->s8_packed) return MMT_OK;
    int64_t P = t->cfg->patch_size;
    return mmt_qmat_s8_from(t->patch_weight, t->cfg->hidden_size, t->cfg->num_channels * P * P, &m->store, m->ops,
                            &t->patch_qw);
}

/* Optional files: the tokenizer (vocab.json + merges.txt, else the tokenizer.json that
 * transformers 5 writes instead) and preprocessor_config.json. */
static mmt_status load_extras(mmt_clip *m, const char *config) {
    mmt_status s = MMT_OK;
    char *vocab = mmt_path_join(m->dir, "vocab.json");
    char *merges = mmt_path_join(m->dir, "merges.txt");
    char *tj = mmt_path_join(m->dir, "tokenizer.json");
    char *proc = mmt_path_join(m->dir, "preprocessor_config.json");
    if (!vocab || !merges || !tj || !proc) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    if (m->cfg.has_text && mmt_file_exists(vocab) && mmt_file_exists(merges)) {
        if ((s = mmt_tokenizer_load(vocab, merges, &m->tokenizer)) != MMT_OK) goto done;
        if ((s = mmt_clip_config_check_tokenizer(&m->cfg, config, m->tokenizer, vocab)) != MMT_OK) goto done;
    } else if (m->cfg.has_text && mmt_file_exists(tj)) {
        if ((s = mmt_tokenizer_load_json(tj, &m->tokenizer)) != MMT_OK) goto done;
        if ((s = mmt_clip_config_check_tokenizer(&m->cfg, config, m->tokenizer, tj)) != MMT_OK) goto done;
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
    mmt_free(tj);
    mmt_free(proc);
    return s;
}

mmt_status mmt_clip_load(const char *dir, mmt_clip **out) { return mmt_clip_load_quantized(dir, NULL, out); }

mmt_status mmt_clip_load_quantized(const char *dir, const mmt_quant_options *q, mmt_clip **out) {
    *out = NULL;
    mmt_clip *m = mmt_calloc(1, sizeof *m);
    if (!m) return MMT_STATUS_OUT_OF_MEMORY;
    pthread_mutex_init(&m->spare_mu, NULL);
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
    loader l = {m, "", {0}, NULL, NULL, q};
    if (m->cfg.has_text && (s = load_text(&l)) != MMT_OK) goto done;
    if (m->cfg.has_vision && (s = load_vision(&l)) != MMT_OK) goto done;
    if ((s = patch_int8(m)) != MMT_OK) goto done;
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
static mmt_status create_generated(const mmt_clip_config *cfg, clip_tensor_fill fill, void *ctx,
                                   const mmt_quant_options *q, mmt_clip **out);

mmt_status mmt_clip_create_generated(const mmt_clip_config *cfg, clip_tensor_fill fill, void *ctx,
                                     mmt_clip **out) {
    return create_generated(cfg, fill, ctx, NULL, out);
}

static mmt_status create_generated(const mmt_clip_config *cfg, clip_tensor_fill fill, void *ctx,
                                   const mmt_quant_options *q, mmt_clip **out) {
    *out = NULL;
    mmt_clip *m = mmt_calloc(1, sizeof *m);
    if (!m) return MMT_STATUS_OUT_OF_MEMORY;
    pthread_mutex_init(&m->spare_mu, NULL);
    mmt_arena_init(&m->store, (size_t)1 << 24);
    m->ops = mmt_ops_cpu();
    m->cfg = *cfg;
    m->dir = mmt_strdup("(generated weights)");
    m->logit_scale = (float)cfg->logit_scale_init;
    mmt_image_processor_default(&m->processor);
    loader l = {m, "", {0}, fill, ctx, q};
    mmt_status s = m->dir ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK && cfg->has_text) s = load_text(&l);
    if (s == MMT_OK && cfg->has_vision) s = load_vision(&l);
    if (s == MMT_OK) s = patch_int8(m);
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
    return mmt_clip_create_random_quantized(cfg, seed, NULL, out);
}

mmt_status mmt_clip_create_random_quantized(const mmt_clip_config *cfg, uint64_t seed, const mmt_quant_options *q,
                                            mmt_clip **out) {
    uint64_t state = seed | 1;
    MMT_TRY(create_generated(cfg, fill_random, &state, q, out));
    mmt_free((*out)->dir);
    (*out)->dir = mmt_strdup("(random weights)");
    if (!(*out)->dir) {
        mmt_clip_free(*out);
        *out = NULL;
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    return MMT_OK;
}

/* See clip_internal.h. */
mmt_status mmt_clip_vision_tower_from(const mmt_clip_tower_config *vcfg, mmt_weights *weights, const char *prefix,
                                      const char *dir, mmt_clip **out) {
    *out = NULL;
    mmt_clip *m = mmt_calloc(1, sizeof *m);
    if (!m) return MMT_STATUS_OUT_OF_MEMORY;
    pthread_mutex_init(&m->spare_mu, NULL);
    mmt_arena_init(&m->store, (size_t)1 << 20);
    m->ops = mmt_ops_cpu();
    mmt_clip_config_default(&m->cfg);
    m->cfg.has_text = 0;
    m->cfg.vision = *vcfg;
    m->cfg.projection_dim = 0;
    m->weights = weights;
    m->borrowed_weights = 1;
    mmt_image_processor_default(&m->processor);
    m->processor.crop_height = m->processor.crop_width = vcfg->image_size;
    m->processor.shortest_edge = vcfg->image_size;
    loader l = {m, prefix, {0}, NULL, NULL, NULL};
    mmt_status s = (m->dir = mmt_strdup(dir)) ? load_vision(&l) : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = patch_int8(m);
    if (s != MMT_OK) {
        mmt_clip_free(m);
        return s;
    }
    *out = m;
    return MMT_OK;
}

mmt_status mmt_clip_quantize(mmt_clip *m, const mmt_quant_options *o) {
    int64_t n = 0;
    mmt_clip_train_free(m->spare_view); /* it holds the weights as they were */
    m->spare_view = NULL;
    MMT_TRY(mmt_qlinears_quantize_as(&m->qlinears, &m->store, m->ops, o, &n));
    MMT_TRY(patch_int8(m));
    mmt_log(MMT_LOG_INFO, "%s: %lld linear weights quantized to %s", m->dir, (long long)n,
            o->type == MMT_QUANT_INT8 ? "int8" : "nf4");
    return MMT_OK;
}

void mmt_clip_free(mmt_clip *m) {
    if (!m) return;
    nn_pack_set_free(&m->packs);
    mmt_tokenizer_free(m->tokenizer);
    mmt_clip_train_free(m->spare_view);
    pthread_mutex_destroy(&m->spare_mu);
    if (!m->borrowed_weights) mmt_weights_free(m->weights);
    mmt_qlinears_free(&m->qlinears);
    mmt_arena_free(&m->store);
    mmt_free(m->dir);
    mmt_free(m);
}

/* One walk over the encoders' fp32 linears for mmt_pack_set (nn/linear.h): tower, layer,
 * q k v out fc1 fc2. */
static void pack_walk(mmt_clip *m) {
    clip_tower *towers[2] = {&m->text, &m->vision};
    for (int t = 0; t < 2; t++) {
        const clip_tower *tw = towers[t];
        if (!tw->layers || !tw->cfg) continue;
        for (int64_t i = 0; i < tw->cfg->num_layers; i++) {
            mmt_block_weights w;
            clip_block_weights(&tw->layers[i], &w);
            nn_block_weights_pack(&w, &m->packs, tw->cfg->hidden_size, tw->cfg->intermediate_size);
            memcpy(tw->layers[i].packed, w.packed, sizeof w.packed);
        }
    }
}

/* See clip.h. */
mmt_status mmt_clip_prepack(mmt_clip *m) {
    if (m->packs.items) return MMT_OK;
    pthread_mutex_lock(&m->spare_mu); /* a kept inference view has the unpacked layers */
    mmt_clip_train_free(m->spare_view);
    m->spare_view = NULL;
    pthread_mutex_unlock(&m->spare_mu);
    m->packs = (mmt_pack_set){.ops = m->ops};
    pack_walk(m); /* count */
    MMT_TRY(nn_pack_set_alloc(&m->packs));
    if (m->packs.items) pack_walk(m); /* pack */
    return MMT_OK;
}

const mmt_clip_config *mmt_clip_config_of(const mmt_clip *m) { return &m->cfg; }
const mmt_weights *mmt_clip_weights(const mmt_clip *m) { return m->weights; }
mmt_tokenizer *mmt_clip_tokenizer(mmt_clip *m) { return m->tokenizer; }
const mmt_image_processor *mmt_clip_processor(const mmt_clip *m) { return &m->processor; }
int64_t mmt_clip_embed_dim(const mmt_clip *m) { return m->cfg.projection_dim; }
float mmt_clip_logit_scale(const mmt_clip *m) { return expf(m->logit_scale); }

/* ---- forward ----------------------------------------------------------------------- */

/* CLIP has one forward (clip_train.c); inference runs it in a view of its own with nothing
 * attached, made per call so that calls on one model may run from several threads. */
/* The inference calls below run in a view of their own. One finished view is kept for the
 * next call (its activation arena then needs no new pages: fresh mappings cost the page
 * faults and zeroing of every activation byte, about a tenth of a small model's forward);
 * calls that find it taken make another, so threads never wait on each other. */
static mmt_status inference_view(mmt_clip *m, mmt_clip_train **out) {
    pthread_mutex_lock(&m->spare_mu);
    *out = m->spare_view;
    m->spare_view = NULL;
    pthread_mutex_unlock(&m->spare_mu);
    if (*out) return MMT_OK;
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    MMT_TRY(mmt_clip_train_create(m, &o, out));
    mmt_clip_train_set_eval(*out, 1);
    return MMT_OK;
}

static void inference_view_done(mmt_clip *m, mmt_clip_train *v) {
    pthread_mutex_lock(&m->spare_mu);
    if (!m->spare_view) m->spare_view = v, v = NULL;
    pthread_mutex_unlock(&m->spare_mu);
    mmt_clip_train_free(v);
}

mmt_status mmt_clip_encode_pixels(mmt_clip *m, const float *pixels, int64_t B, float *out) {
    if (!m->cfg.has_vision)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this checkpoint has no vision tower", m->dir);
    if (B <= 0) return MMT_OK;
    mmt_clip_train *v;
    MMT_TRY(inference_view(m, &v));
    mmt_status s = mmt_clip_train_encode_pixels(v, pixels, B, out);
    inference_view_done(m, v);
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

mmt_status mmt_clip_encode_ids(mmt_clip *m, const int32_t *ids, int64_t B, int64_t L, float *out) {
    if (!m->cfg.has_text)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this checkpoint has no text tower", m->dir);
    mmt_clip_train *v;
    MMT_TRY(inference_view(m, &v));
    mmt_status s = mmt_clip_train_encode_ids(v, ids, B, L, out);
    inference_view_done(m, v);
    return s;
}

/* ---- convenience: strings and image files ------------------------------------------ */

#define TOKENIZE_EXACT 4096

mmt_status mmt_clip_tokenize(mmt_clip *m, const char *const *texts, int64_t B, int truncate,
                             int32_t *ids) {
    if (!m->cfg.has_text)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this checkpoint has no text tower", m->dir);
    if (!m->tokenizer)
        return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: no tokenizer (vocab.json + merges.txt, or tokenizer.json), cannot tokenize text", m->dir);
    int64_t L = m->cfg.text.max_positions;
    int32_t pad = mmt_tokenizer_eos(m->tokenizer);
    const int64_t exact = L > TOKENIZE_EXACT ? L : TOKENIZE_EXACT;
    for (int64_t b = 0; b < B; b++) {
        int32_t *row = ids + b * L;
        int64_t total = 0;
        size_t len = strlen(texts[b]);
        /* without truncation a long text is refused: its length is counted exactly up to
         * TOKENIZE_EXACT tokens, and a longer one is not tokenized to its end */
        mmt_status s = truncate ? mmt_tokenizer_encode(m->tokenizer, texts[b], len, row, L, &total)
                                : mmt_tokenizer_encode_limit(m->tokenizer, texts[b], len, row, L, exact, &total);
        if (s != MMT_OK) return mmt_error_prefix(s, "text %lld: ", (long long)b + 1);
        if (total <= 2)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "text %lld is empty", (long long)b + 1);
        if (total > exact + 2 && !truncate)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                            "text %lld is more than %lld tokens long, more than the model's %lld (use truncation to cut it)",
                            (long long)b + 1, (long long)exact, (long long)L);
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
    mmt_status s = mmt_image_decode_file_ex(path, &m->dicom, &img);
    if (s == MMT_OK) s = mmt_image_preprocess(&img, &m->processor, out);
    mmt_image_free(&img);
    return s;
}

void mmt_clip_set_dicom_options(mmt_clip *m, const mmt_dicom_options *o) {
    if (o) m->dicom = *o;
    else memset(&m->dicom, 0, sizeof m->dicom);
}

const mmt_dicom_options *mmt_clip_dicom_options(const mmt_clip *m) { return &m->dicom; }

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
