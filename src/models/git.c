/*
 * git.c — loading a GIT snapshot and running it (see git.h).
 *
 * The vision tower is CLIP's (models/clip.c reads it from this checkpoint under the name
 * prefix "git.image_encoder.", and the CLIP view computes it); the decoder is nn/block.h's
 * post-LN block with the first Ni positions bidirectional.
 */
#include "models/git.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/arena.h"
#include "core/file.h"
#include "core/weights.h"
#include "data/wordpiece.h"
#include "models/clip_internal.h"
#include "models/clip_train.h"
#include "nn/block.h"
#include "nn/decoder.h"
#include "nn/linear.h"
#include "ops/ops.h"

#include "models/git_internal.h"

#define ALLOC_F(ar, n) ((float *)mmt_arena_alloc((ar), (size_t)(n) * sizeof(float), 64))

/* ---- loading ----------------------------------------------------------------------- */

static mmt_status get(mmt_git *m, const float **out, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
    MMT_PRINTF(6, 7);

static mmt_status get(mmt_git *m, const float **out, int ndim, int64_t d0, int64_t d1, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t shape[2] = {d0, d1};
    return mmt_weights_f32(m->weights, &m->store, name, ndim, shape, out);
}

static mmt_status load_decoder(mmt_git *m) {
    const mmt_git_config *c = &m->cfg;
    int64_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, Cv = c->vision.hidden_size;
    MMT_TRY(get(m, &m->word_emb, 2, V, C, "git.embeddings.word_embeddings.weight"));
    MMT_TRY(get(m, &m->pos_emb, 2, c->max_positions, C, "git.embeddings.position_embeddings.weight"));
    MMT_TRY(get(m, &m->emb_ln_w, 1, C, 0, "git.embeddings.LayerNorm.weight"));
    MMT_TRY(get(m, &m->emb_ln_b, 1, C, 0, "git.embeddings.LayerNorm.bias"));
    m->layers = mmt_arena_calloc(&m->store, (size_t)c->num_layers, sizeof *m->layers);
    if (!m->layers) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < c->num_layers; i++) {
        mmt_block_weights *w = &m->layers[i];
        long long n = (long long)i;
        const char *p = "git.encoder.layer";
        static const char *const names[6] = {"attention.self.query", "attention.self.key", "attention.self.value",
                                              "attention.output.dense", "intermediate.dense", "output.dense"};
        const float **lw[6] = {&w->q_w, &w->k_w, &w->v_w, &w->out_w, &w->fc1_w, &w->fc2_w};
        const float **lb[6] = {&w->q_b, &w->k_b, &w->v_b, &w->out_b, &w->fc1_b, &w->fc2_b};
        for (int j = 0; j < 6; j++) {
            char mod[160];
            int64_t out = j == 4 ? I : C, in = j == 5 ? I : C;
            snprintf(mod, sizeof mod, "%s.%lld.%s", p, n, names[j]);
            MMT_TRY(mmt_qlinear_load(&m->qlinears, m->weights, &m->store, m->ops, mod, out, in, i, c->num_layers,
                                     lw[j], &w->qw[j]));
            MMT_TRY(get(m, lb[j], 1, out, 0, "%s.bias", mod));
            if (j == 3) {
                MMT_TRY(get(m, &w->ln1_w, 1, C, 0, "%s.%lld.attention.output.LayerNorm.weight", p, n));
                MMT_TRY(get(m, &w->ln1_b, 1, C, 0, "%s.%lld.attention.output.LayerNorm.bias", p, n));
            }
        }
        MMT_TRY(get(m, &w->ln2_w, 1, C, 0, "%s.%lld.output.LayerNorm.weight", p, n));
        MMT_TRY(get(m, &w->ln2_b, 1, C, 0, "%s.%lld.output.LayerNorm.bias", p, n));
    }
    MMT_TRY(mmt_qlinear_load(&m->qlinears, m->weights, &m->store, m->ops, "git.visual_projection.visual_projection.0",
                             C, Cv, -1, 0, &m->proj_w, &m->proj_qw));
    MMT_TRY(get(m, &m->proj_b, 1, C, 0, "git.visual_projection.visual_projection.0.bias"));
    MMT_TRY(get(m, &m->proj_ln_w, 1, C, 0, "git.visual_projection.visual_projection.1.weight"));
    MMT_TRY(get(m, &m->proj_ln_b, 1, C, 0, "git.visual_projection.visual_projection.1.bias"));
    /* tied heads may be saved without output.weight (transformers drops tied copies) */
    if (c->tie_word_embeddings && !mmt_weights_find(m->weights, "output.weight", NULL)) m->out_w = m->word_emb;
    else MMT_TRY(get(m, &m->out_w, 2, V, C, "output.weight"));
    MMT_TRY(get(m, &m->out_b, 1, V, 0, "output.bias"));
    return MMT_OK;
}

mmt_status mmt_git_load(const char *dir, mmt_git **out) {
    *out = NULL;
    mmt_git *m = mmt_calloc(1, sizeof *m);
    if (!m) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_arena_init(&m->store, (size_t)1 << 20);
    m->ops = mmt_ops_cpu();
    char *config = NULL, *proc = NULL, *tj = NULL;
    mmt_status s = MMT_OK;
    if (!(m->dir = mmt_strdup(dir)) || !(config = mmt_path_join(dir, "config.json")) ||
        !(proc = mmt_path_join(dir, "preprocessor_config.json"))) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    if ((s = mmt_git_config_load(config, &m->cfg)) != MMT_OK) goto done;
    if ((s = mmt_weights_open(dir, &m->weights)) != MMT_OK) goto done;
    if ((s = mmt_clip_vision_tower_from(&m->cfg.vision, m->weights, "git.image_encoder.", dir, &m->vision)) != MMT_OK)
        goto done;
    if ((s = load_decoder(m)) != MMT_OK) goto done;
    mmt_image_processor_default(&m->processor);
    m->processor.crop_height = m->processor.crop_width = m->cfg.vision.image_size;
    m->processor.shortest_edge = m->cfg.vision.image_size;
    if (mmt_file_exists(proc) && (s = mmt_image_processor_load(proc, &m->processor)) != MMT_OK) goto done;
    if ((tj = mmt_path_join(dir, "tokenizer.json")) == NULL) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    if (mmt_file_exists(tj)) {
        if ((s = mmt_wordpiece_load_dir(dir, &m->tokenizer)) != MMT_OK) goto done;
        const mmt_wordpiece_info *ti = mmt_wordpiece_info_of(m->tokenizer);
        if (ti->vocab_size > m->cfg.vocab_size) {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: the tokenizer has %lld ids, the model's vocab_size is %lld", tj,
                         (long long)ti->vocab_size, (long long)m->cfg.vocab_size);
            goto done;
        }
    }
    if (m->processor.crop_height != m->cfg.vision.image_size || m->processor.crop_width != m->cfg.vision.image_size ||
        !m->processor.do_center_crop)
        s = mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: preprocessor crop %lldx%lld does not match the vision tower's "
                     "image_size %lld", proc, (long long)m->processor.crop_height, (long long)m->processor.crop_width,
                     (long long)m->cfg.vision.image_size);
done:
    mmt_free(config);
    mmt_free(proc);
    mmt_free(tj);
    if (s != MMT_OK) {
        mmt_git_free(m);
        return s;
    }
    *out = m;
    return MMT_OK;
}

void mmt_git_free(mmt_git *m) {
    if (!m) return;
    nn_pack_set_free(&m->packs);
    mmt_wordpiece_free(m->tokenizer);
    mmt_clip_free(m->vision);
    mmt_weights_free(m->weights);
    mmt_qlinears_free(&m->qlinears);
    mmt_arena_free(&m->store);
    mmt_free(m->dir);
    mmt_free(m);
}

/* One walk over the decoder's fp32 linears for mmt_pack_set (nn/linear.h). */
static void pack_walk(mmt_git *m) {
    for (int64_t i = 0; i < m->cfg.num_layers; i++)
        nn_block_weights_pack(&m->layers[i], &m->packs, m->cfg.hidden_size, m->cfg.intermediate_size);
}

/* See git.h. */
mmt_status mmt_git_prepack(mmt_git *m) {
    MMT_TRY(mmt_clip_prepack(m->vision));
    if (m->packs.items) return MMT_OK;
    m->packs = (mmt_pack_set){.ops = m->ops};
    pack_walk(m); /* count */
    MMT_TRY(nn_pack_set_alloc(&m->packs));
    if (m->packs.items) pack_walk(m); /* pack */
    return MMT_OK;
}

/* The decoder's linears and the vision tower's (the output head stays fp32, as transformers
 * keeps a model's output embeddings out of bitsandbytes). */
mmt_status mmt_git_quantize(mmt_git *m, const mmt_quant_options *o) {
    int64_t n = 0;
    MMT_TRY(mmt_clip_quantize(m->vision, o));
    MMT_TRY(mmt_qlinears_quantize_as(&m->qlinears, &m->store, m->ops, o, &n));
    mmt_log(MMT_LOG_INFO, "%s: %lld decoder linear weights quantized to %s", m->dir, (long long)n,
            o->type == MMT_QUANT_INT8 ? "int8" : "nf4");
    return MMT_OK;
}

const mmt_git_config *mmt_git_config_of(const mmt_git *m) { return &m->cfg; }
const mmt_image_processor *mmt_git_processor(const mmt_git *m) { return &m->processor; }
const mmt_dicom_options *mmt_git_dicom_options(const mmt_git *m) { return &m->dicom; }
void mmt_git_set_dicom_options(mmt_git *m, const mmt_dicom_options *o) {
    if (o) m->dicom = *o;
    else memset(&m->dicom, 0, sizeof m->dicom);
    if (m->vision) mmt_clip_set_dicom_options(m->vision, o);
}
const char *mmt_git_dir(const mmt_git *m) { return m->dir; }
int64_t mmt_git_param_count(const mmt_git *m) { return mmt_weights_param_count(m->weights); }
const mmt_wordpiece *mmt_git_tokenizer(const mmt_git *m) { return m->tokenizer; }
int64_t mmt_git_image_tokens(const mmt_git *m) { return mmt_git_image_tokens_of(&m->cfg); }

/* ---- run contexts ------------------------------------------------------------------- */

static void linear_init(mmt_linear *l, const float *w, const float *b, int64_t in, int64_t out) {
    memset(l, 0, sizeof *l);
    l->w = w;
    l->b = b;
    l->in = in;
    l->out = out;
}

mmt_status mmt_git_run_create(mmt_git *m, mmt_git_run **out) {
    *out = NULL;
    if (!m) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "GIT run context: no model");
    const mmt_git_config *c = &m->cfg;
    mmt_git_run *r = mmt_calloc(1, sizeof *r);
    if (!r) return MMT_STATUS_OUT_OF_MEMORY;
    r->m = m;
    r->ops = m->ops;
    git_run_train_init(r);
    mmt_arena_init_with(&r->step, (size_t)16 << 20, m->ops->buffer_alloc, m->ops->buffer_free);
    mmt_arena_init_with(&r->scratch, (size_t)16 << 20, m->ops->buffer_alloc, m->ops->buffer_free);
    r->bc = (mmt_block_config){.hidden = c->hidden_size, .intermediate = c->intermediate_size, .heads = c->num_heads,
                               .eps = (float)c->layer_norm_eps, .act = MMT_BLOCK_GELU, .causal = 1, .post_ln = 1,
                               .n_bidir = mmt_git_image_tokens_of(c)};
    linear_init(&r->proj, m->proj_w, m->proj_b, c->vision.hidden_size, c->hidden_size);
    r->proj.qw = m->proj_qw;
    linear_init(&r->out, m->out_w, m->out_b, c->hidden_size, c->vocab_size);
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_status s = mmt_clip_train_create(m->vision, &o, &r->vision);
    r->blocks = s == MMT_OK ? mmt_calloc((size_t)c->num_layers, sizeof *r->blocks) : NULL;
    if (s == MMT_OK && !r->blocks) s = MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = mmt_git_cache_create(r, &r->own);
    r->kv = r->own;
    if (s != MMT_OK) {
        mmt_git_run_free(r);
        return s;
    }
    for (int64_t i = 0; i < c->num_layers; i++) nn_block_init(&r->blocks[i], &m->layers[i], c->hidden_size, c->intermediate_size);
    *out = r;
    return MMT_OK;
}

void mmt_git_run_free(mmt_git_run *r) {
    if (!r) return;
    git_run_train_free(r);
    mmt_clip_train_free(r->vision);
    mmt_free(r->blocks);
    mmt_git_cache_free(r->own);
    mmt_arena_free(&r->step);
    mmt_arena_free(&r->scratch);
    mmt_free(r);
}

/* ---- forward -------------------------------------------------------------------------- */

mmt_status mmt_git_run_image_features(mmt_git_run *r, const float *pixels, int64_t B, float *feats) {
    const mmt_git_config *c = &r->m->cfg;
    int64_t Ni = mmt_git_image_tokens_of(c), Cv = c->vision.hidden_size, C = c->hidden_size;
    if (B <= 0) return MMT_OK;
    float *states = mmt_malloc((size_t)(B * Ni * Cv) * sizeof(float));
    if (!states) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = mmt_clip_train_vision_states(r->vision, pixels, B, states);
    if (s == MMT_OK) {
        mmt_arena_mark mark = mmt_arena_get_mark(&r->step);
        s = nn_linear_forward(&r->proj, r->ops, &r->step, feats, states, B * Ni, 0);
        mmt_arena_rewind(&r->step, mark);
    }
    if (s == MMT_OK)
        r->ops->layernorm_fwd(feats, NULL, NULL, feats, r->proj_ln_w, r->proj_ln_b, B * Ni, C,
                              (float)c->vision.layer_norm_eps);
    mmt_free(states);
    return s;
}

static mmt_status check_ids(const mmt_git_config *c, const int32_t *ids, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "token id %d is outside the vocabulary (%lld)", ids[i],
                            (long long)c->vocab_size);
    return MMT_OK;
}

void git_text_embed_pre(const mmt_git_run *r, float *pre, const int32_t *ids, int64_t B, int64_t L, int64_t P,
                        int64_t pos0) {
    const mmt_ops *ops = r->ops;
    int64_t C = r->m->cfg.hidden_size, Lt = P + L;
    for (int64_t b = 0; b < B; b++) {
        float *row = pre + b * Lt * C;
        if (P > 0) ops->buffer_copy(row, r->prompt, (size_t)(P * C) * sizeof(float));
        ops->embedding_fwd(row + P * C, ids + b * L, r->word_emb, L, C);
        ops->add_fwd(row, row, r->pos_emb + pos0 * C, Lt * C);
    }
}

/* x (B, P + L, C) = LayerNorm(git_text_embed_pre) with the text positions counted from first:
 * after a prefix (transformers' cache length) and, past the prompt rows, after them too. */
static void text_embed(mmt_git_run *r, float *x, const int32_t *ids, int64_t B, int64_t L, int64_t P, int64_t first) {
    const mmt_git *m = r->m;
    int64_t C = m->cfg.hidden_size;
    git_text_embed_pre(r, x, ids, B, L, P, r->blocks[0].n_prefix + first);
    r->ops->layernorm_fwd(x, NULL, NULL, x, r->emb_ln_w, r->emb_ln_b, B * (P + L), C, (float)m->cfg.layer_norm_eps);
}

/* The decoder on x (B, T, C) in place (inference; with the caches in use when cached). */
static mmt_status decoder_forward(mmt_git_run *r, float *x, int64_t B, int64_t T, int cached) {
    const mmt_git_config *c = &r->m->cfg;
    int64_t NC = B * T * c->hidden_size;
    mmt_arena_mark mark = mmt_arena_get_mark(&r->scratch);
    float *out = ALLOC_F(&r->scratch, NC);
    if (!out) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = MMT_OK;
    for (int64_t i = 0; i < c->num_layers && s == MMT_OK; i++) {
        mmt_block *y = &r->blocks[i];
        y->cache = cached ? &r->kv->layers[i] : NULL;
        mmt_arena_mark inner = mmt_arena_get_mark(&r->scratch);
        s = nn_block_forward(y, &r->bc, r->ops, &r->scratch, x, out, B, T, 0, i, 0);
        mmt_arena_rewind(&r->scratch, inner);
        y->cache = NULL;
        if (s == MMT_OK) r->ops->buffer_copy(x, out, (size_t)NC * sizeof(float));
    }
    mmt_arena_rewind(&r->scratch, mark);
    return s;
}

/* x (B, Ni + P + L, C) = [feats (B, Ni, C); text_embed([prompt; ids (B, L)])], P the run's
 * prompt rows (PEFT's prompt tuning: inputs_embeds = [prompt; word embeddings], so the
 * prompt takes text positions 0 .. P-1 and [CLS] position P). */
static mmt_status sequence(mmt_git_run *r, float *x, const float *feats, const int32_t *ids, int64_t B, int64_t L) {
    const mmt_git_config *c = &r->m->cfg;
    int64_t Ni = mmt_git_image_tokens_of(c), C = c->hidden_size, P = r->n_prompt, Lt = P + L, T = Ni + Lt;
    float *text = ALLOC_F(&r->step, B * Lt * C);
    if (!text) return MMT_STATUS_OUT_OF_MEMORY;
    text_embed(r, text, ids, B, L, P, 0);
    for (int64_t b = 0; b < B; b++) {
        r->ops->buffer_copy(x + b * T * C, feats + b * Ni * C, (size_t)(Ni * C) * sizeof(float));
        r->ops->buffer_copy(x + (b * T + Ni) * C, text + b * Lt * C, (size_t)(Lt * C) * sizeof(float));
    }
    return MMT_OK;
}

static mmt_status check_text(const mmt_git_run *r, const int32_t *ids, int64_t B, int64_t L) {
    const mmt_git_config *c = &r->m->cfg;
    int64_t room = c->max_positions - r->blocks[0].n_prefix - r->n_prompt;
    if (B < 1 || L < 1 || L > room)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "GIT: %lld rows of %lld tokens: need >= 1 row and 1..%lld tokens",
                        (long long)B, (long long)L, (long long)room);
    return check_ids(c, ids, B * L);
}

mmt_status mmt_git_run_logits(mmt_git_run *r, const float *pixels, const int32_t *ids, int64_t B, int64_t L,
                              float *logits) {
    const mmt_git_config *c = &r->m->cfg;
    MMT_TRY(check_text(r, ids, B, L));
    int64_t Ni = mmt_git_image_tokens_of(c), C = c->hidden_size, T = Ni + r->n_prompt + L;
    mmt_arena_reset(&r->step);
    float *feats = ALLOC_F(&r->step, B * Ni * C), *x = ALLOC_F(&r->step, B * T * C);
    if (!feats || !x) return MMT_STATUS_OUT_OF_MEMORY;
    MMT_TRY(mmt_git_run_image_features(r, pixels, B, feats));
    MMT_TRY(sequence(r, x, feats, ids, B, L));
    MMT_TRY(decoder_forward(r, x, B, T, 0));
    return nn_linear_forward(&r->out, r->ops, &r->step, logits, x, B * T, 0);
}

/* ---- decoding with the KV cache ----------------------------------------------------------- */

mmt_status mmt_git_cache_create(const mmt_git_run *r, mmt_git_cache **out) {
    *out = NULL;
    mmt_git_cache *k = mmt_calloc(1, sizeof *k);
    if (!k) return MMT_STATUS_OUT_OF_MEMORY;
    k->n_layers = r->m->cfg.num_layers;
    for (int i = 0; i < 3; i++) mmt_arena_init_with(&k->ar[i], (size_t)4 << 20, r->ops->buffer_alloc, r->ops->buffer_free);
    k->layers = mmt_calloc((size_t)k->n_layers, sizeof *k->layers);
    k->held = mmt_calloc((size_t)k->n_layers, sizeof *k->held);
    if (!k->layers || !k->held) {
        mmt_git_cache_free(k);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    *out = k;
    return MMT_OK;
}

void mmt_git_cache_free(mmt_git_cache *k) {
    if (!k) return;
    for (int i = 0; i < 3; i++) mmt_arena_free(&k->ar[i]);
    mmt_free(k->layers);
    mmt_free(k->held);
    mmt_free(k->lens);
    mmt_free(k->keys);
    mmt_free(k->spare);
    mmt_free(k);
}

void mmt_git_run_use_cache(mmt_git_run *r, mmt_git_cache *c) { r->kv = c ? c : r->own; }

/* Room for the lengths of n rows (they grow, never shrink). */
static mmt_status cache_rows(mmt_git_cache *k, int64_t n) {
    if (n <= k->rows_cap) return MMT_OK;
    size_t bytes = (size_t)(n > 2 * k->rows_cap ? n : 2 * k->rows_cap) * sizeof(int64_t);
    int64_t *lens = mmt_realloc(k->lens, bytes);
    if (lens) k->lens = lens;
    int64_t *keys = lens ? mmt_realloc(k->keys, bytes) : NULL;
    if (keys) k->keys = keys;
    int64_t *spare = keys ? mmt_realloc(k->spare, bytes) : NULL;
    if (!spare) return MMT_STATUS_OUT_OF_MEMORY;
    k->spare = spare;
    k->rows_cap = (int64_t)(bytes / sizeof(int64_t));
    return MMT_OK;
}

/* The checks of start and join: B rows of L tokens with room for cap text tokens each. */
static mmt_status check_decoding(const mmt_git_run *r, const int32_t *prompt, int64_t B, int64_t L, int64_t cap) {
    const mmt_git_config *c = &r->m->cfg;
    MMT_TRY(check_text(r, prompt, B, L));
    int64_t V = r->blocks[0].n_prefix, P = r->n_prompt;
    if (cap < L || cap + V + P > c->max_positions)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "GIT: room for %lld text tokens: need %lld..%lld", (long long)cap,
                        (long long)L, (long long)(c->max_positions - V - P));
    return MMT_OK;
}

/* Image features feats (B, Ni, C), the prompt rows and ids (B, L) through the decoder into
 * fresh caches of `positions` rows each from `ar` (the decoding's layers point at them);
 * logits (B, vocab) after each row's last position. */
static mmt_status prefill(mmt_git_run *r, mmt_arena *ar, const float *feats, int64_t B, const int32_t *ids, int64_t L,
                          int64_t positions, float *logits) {
    const mmt_git_config *c = &r->m->cfg;
    mmt_git_cache *k = r->kv;
    int64_t Ni = mmt_git_image_tokens_of(c), C = c->hidden_size, T = Ni + r->n_prompt + L;
    mmt_arena_reset(ar);
    for (int64_t i = 0; i < c->num_layers; i++) MMT_TRY(nn_kv_cache_init(&k->layers[i], ar, B, positions, C));
    mmt_arena_reset(&r->step);
    float *x = ALLOC_F(&r->step, B * T * C), *last = ALLOC_F(&r->step, B * C);
    if (!x || !last) return MMT_STATUS_OUT_OF_MEMORY;
    MMT_TRY(sequence(r, x, feats, ids, B, L));
    MMT_TRY(decoder_forward(r, x, B, T, 1));
    for (int64_t b = 0; b < B; b++)
        r->ops->buffer_copy(last + b * C, x + (b * T + T - 1) * C, (size_t)C * sizeof(float));
    return nn_linear_forward(&r->out, r->ops, &r->step, logits, last, B, 0);
}

/* Cache positions in front of the text: prefix rows, image tokens, prompt rows. */
static int64_t cached_before_text(const mmt_git_run *r) {
    return r->blocks[0].n_prefix + mmt_git_image_tokens_of(&r->m->cfg) + r->n_prompt;
}

mmt_status mmt_git_run_start(mmt_git_run *r, const float *feats, int64_t B, const int32_t *prompt, int64_t L,
                             int64_t cap, float *logits) {
    MMT_TRY(check_decoding(r, prompt, B, L, cap));
    mmt_git_cache *k = r->kv;
    int64_t pre = cached_before_text(r);
    k->B = 0;
    MMT_TRY(cache_rows(k, B));
    k->cur = 0;
    MMT_TRY(prefill(r, &k->ar[0], feats, B, prompt, L, pre + cap, logits));
    for (int64_t b = 0; b < B; b++) k->lens[b] = L, k->keys[b] = pre + L;
    k->B = B, k->cap = cap;
    return MMT_OK;
}

mmt_status mmt_git_run_join(mmt_git_run *r, const float *feats, int64_t B2, const int32_t *prompt, int64_t L,
                            int64_t cap, float *logits) {
    mmt_git_cache *k = r->kv;
    if (k->B < 1) return mmt_git_run_start(r, feats, B2, prompt, L, cap, logits);
    MMT_TRY(check_decoding(r, prompt, B2, L, cap));
    const mmt_git_config *c = &r->m->cfg;
    int64_t B = k->B, n = B + B2, C = c->hidden_size, pre = cached_before_text(r);
    int64_t cap_all = cap > k->cap ? cap : k->cap;
    int next = 1 - k->cur;
    MMT_TRY(cache_rows(k, n));
    memcpy(k->held, k->layers, (size_t)k->n_layers * sizeof *k->held);
    /* the new rows alone, then every row into a cache with room for the longest */
    mmt_status s = prefill(r, &k->ar[2], feats, B2, prompt, L, pre + cap, logits);
    if (s == MMT_OK) mmt_arena_reset(&k->ar[next]);
    for (int64_t i = 0; s == MMT_OK && i < k->n_layers; i++) {
        mmt_kv_cache was = k->held[i], add = k->layers[i], fresh;
        if ((s = nn_kv_cache_init(&fresh, &k->ar[next], n, pre + cap_all, C)) != MMT_OK) break;
        for (int64_t b = 0; b < B; b++) {
            size_t bytes = (size_t)(k->keys[b] * C) * sizeof(float);
            r->ops->buffer_copy(fresh.k + b * fresh.cap * C, was.k + b * was.cap * C, bytes);
            r->ops->buffer_copy(fresh.v + b * fresh.cap * C, was.v + b * was.cap * C, bytes);
        }
        for (int64_t j = 0; j < B2; j++) {
            size_t bytes = (size_t)((pre + L) * C) * sizeof(float);
            r->ops->buffer_copy(fresh.k + (B + j) * fresh.cap * C, add.k + j * add.cap * C, bytes);
            r->ops->buffer_copy(fresh.v + (B + j) * fresh.cap * C, add.v + j * add.cap * C, bytes);
        }
        fresh.len = was.len > add.len ? was.len : add.len;
        k->layers[i] = fresh;
    }
    if (s != MMT_OK) {
        k->B = 0;
        return s;
    }
    for (int64_t b = B; b < n; b++) k->lens[b] = L, k->keys[b] = pre + L;
    k->B = n, k->cap = cap_all, k->cur = next;
    return MMT_OK;
}

mmt_status mmt_git_run_step(mmt_git_run *r, const int32_t *tokens, float *logits) {
    const mmt_git_config *c = &r->m->cfg;
    mmt_git_cache *k = r->kv;
    if (k->B < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "GIT: a decoding step before start");
    for (int64_t b = 0; b < k->B; b++)
        if (k->lens[b] >= k->cap)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "GIT: the %lld text positions of this decoding are used up",
                            (long long)k->cap);
    MMT_TRY(check_ids(c, tokens, k->B));
    int64_t C = c->hidden_size, B = k->B, first = r->blocks[0].n_prefix + r->n_prompt;
    mmt_arena_reset(&r->step);
    float *x = ALLOC_F(&r->step, B * C);
    if (!x) return MMT_STATUS_OUT_OF_MEMORY;
    /* each row at its own text position (text_embed with a position per row) */
    for (int64_t b = 0; b < B; b++) git_text_embed_pre(r, x + b * C, tokens + b, 1, 1, 0, first + k->lens[b]);
    r->ops->layernorm_fwd(x, NULL, NULL, x, r->emb_ln_w, r->emb_ln_b, B, C, (float)c->layer_norm_eps);
    for (int64_t i = 0; i < k->n_layers; i++) k->layers[i].row_len = k->keys;
    mmt_status s = decoder_forward(r, x, B, 1, 1);
    for (int64_t i = 0; i < k->n_layers; i++) k->layers[i].row_len = NULL;
    MMT_TRY(s);
    for (int64_t b = 0; b < B; b++) k->lens[b]++, k->keys[b]++;
    return nn_linear_forward(&r->out, r->ops, &r->step, logits, x, B, 0);
}

mmt_status mmt_git_run_select(mmt_git_run *r, const int64_t *rows, int64_t n) {
    const mmt_git_config *c = &r->m->cfg;
    mmt_git_cache *k = r->kv;
    if (k->B < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "GIT: select before start");
    if (n < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "GIT: select needs at least one row");
    for (int64_t i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= k->B)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "GIT: select: row %lld of %lld", (long long)rows[i],
                            (long long)k->B);
    MMT_TRY(cache_rows(k, n));
    int next = 1 - k->cur;
    int64_t C = c->hidden_size;
    mmt_arena_reset(&k->ar[next]);
    for (int64_t i = 0; i < k->n_layers; i++) {
        mmt_kv_cache old = k->layers[i], fresh;
        mmt_status s = nn_kv_cache_init(&fresh, &k->ar[next], n, old.cap, C);
        if (s != MMT_OK) { /* some layers moved already: the decoding is lost */
            k->B = 0;
            return s;
        }
        for (int64_t j = 0; j < n; j++) {
            size_t bytes = (size_t)(k->keys[rows[j]] * C) * sizeof(float);
            r->ops->buffer_copy(fresh.k + j * fresh.cap * C, old.k + rows[j] * old.cap * C, bytes);
            r->ops->buffer_copy(fresh.v + j * fresh.cap * C, old.v + rows[j] * old.cap * C, bytes);
        }
        fresh.len = old.len;
        k->layers[i] = fresh;
    }
    for (int64_t j = 0; j < n; j++) k->spare[j] = k->lens[rows[j]];
    memcpy(k->lens, k->spare, (size_t)n * sizeof(int64_t));
    for (int64_t j = 0; j < n; j++) k->spare[j] = k->keys[rows[j]];
    memcpy(k->keys, k->spare, (size_t)n * sizeof(int64_t));
    k->cur = next;
    k->B = n;
    return MMT_OK;
}

int64_t mmt_git_run_length(const mmt_git_run *r) {
    int64_t most = 0;
    for (int64_t b = 0; b < r->kv->B; b++)
        if (r->kv->lens[b] > most) most = r->kv->lens[b];
    return most;
}

int64_t mmt_git_run_rows(const mmt_git_run *r) { return r->kv->B; }

void mmt_git_run_clear(mmt_git_run *r) { r->kv->B = 0; }

/* ---- as a decoder for gen/ --------------------------------------------------------------- */

static mmt_status dec_start(void *ctx, int64_t B, const int32_t *prompt, int64_t L, int64_t cap, float *logits) {
    mmt_git_run *r = ctx;
    if (B != r->dec_images)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "GIT: %lld rows started over %lld images", (long long)B,
                        (long long)r->dec_images);
    return mmt_git_run_start(r, r->dec_feats, B, prompt, L, cap, logits);
}
static mmt_status dec_step(void *ctx, const int32_t *tokens, float *logits) { return mmt_git_run_step(ctx, tokens, logits); }
static mmt_status dec_select(void *ctx, const int64_t *rows, int64_t n) { return mmt_git_run_select(ctx, rows, n); }

void mmt_git_run_decoder(mmt_git_run *r, const float *feats, int64_t n_images, mmt_decoder *out) {
    r->dec_feats = feats;
    r->dec_images = n_images;
    int64_t room = r->m->cfg.max_positions - r->blocks[0].n_prefix - r->n_prompt; /* text positions left */
    *out = (mmt_decoder){.ctx = r, .vocab_size = r->m->cfg.vocab_size, .max_tokens = room,
                         .start = dec_start, .step = dec_step, .select = dec_select};
}
