/* clip_task.c — CLIP contrastive fine-tuning as a trainer task (see clip_task.h). */
#include "train/clip_task.h"
#include "train/image_source.h"
#include "train/param_io.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "data/preprocess.h"
#include "models/clip_internal.h" /* mmt_clip_pool_position */
#include "models/clip_modules.h"
#include "core/weights.h"
#include "peft/bottleneck_config.h"
#include "peft/target.h"
#include "train/hard_batches.h"

struct mmt_clip_task {
    mmt_clip *model;                /* borrowed */
    const mmt_pairs *pairs;         /* borrowed */
    mmt_clip_task_options opt;
    mmt_clip_train *view;           /* owned */
    mmt_adapter *adapter;           /* owned; NULL for full fine-tuning */
    mmt_prompt *prompt;             /* owned; NULL without prompt / prefix tuning */
    mmt_peft_config prompt_peft;    /* owned when prompt: its adapter_config.json */
    mmt_peft_config peft;           /* owned copy (adapter methods) when have_peft */
    int have_peft;
    mmt_bottleneck_config bottleneck; /* bottleneck adapters' settings when have_bottleneck */
    int have_bottleneck;
    int32_t *ids;                   /* owned: (n, L) token ids of every text */
    int64_t L, S;
    const float *pixels;            /* (B, 3, S, S) current batch, in the image source's buffer */
    mmt_image_source *images;       /* owned */
    int32_t *batch_ids;             /* owned: (B, L) */
    int64_t B, cap_B;
};

/* PEFT's IA3Config has no layers_to_transform (it would drop the key and adapt every layer),
 * so an IA3 run restricted to some layers saves what it adapted by full module name:
 * target_modules becomes the list of adapted modules, and feedforward_modules the list of
 * those among them that scale their input (IA3Config requires a subset of target_modules).
 * A full name selects exactly that module, in PEFT and in mmtune alike. */
static mmt_status ia3_pin_layers(mmt_peft_config *cfg, const mmt_adapter *ad) {
    if (cfg->peft_type != MMT_PEFT_IA3 || cfg->layers_to_transform_kind == 0) return MMT_OK;
    const char **all = mmt_calloc((size_t)ad->n + 1, sizeof *all);
    const char **ff = mmt_calloc((size_t)ad->n + 1, sizeof *ff);
    int64_t n_ff = 0;
    mmt_status s = all && ff ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < ad->n; i++) {
        all[i] = ad->entries[i].module;
        if (ad->entries[i].feedforward) ff[n_ff++] = ad->entries[i].module;
    }
    if (s == MMT_OK) s = mmt_peft_names_set_list(&cfg->target_modules, all, ad->n);
    if (s == MMT_OK) s = mmt_peft_names_set_list(&cfg->feedforward_modules, ff, n_ff);
    if (s == MMT_OK) {
        mmt_free(cfg->layers_to_transform);
        cfg->layers_to_transform = NULL;
        cfg->n_layers_to_transform = 0;
        cfg->layers_to_transform_kind = 0;
        mmt_peft_names_clear(&cfg->layers_pattern);
    }
    mmt_free(all);
    mmt_free(ff);
    return s;
}

#define PROMPT_SUBDIR MMT_ADAPTER_PROMPT_SUBDIR

/* Where the task's prompt part lives under a checkpoint or adapter folder (mmt_malloc'd). */
static char *task_prompt_dir(const mmt_clip_task *t, const char *dir) {
    return t->adapter ? mmt_path_join(dir, PROMPT_SUBDIR) : mmt_strdup(dir);
}

static mmt_status task_save_prompt(mmt_clip_task *t, const char *dir) {
    char *pdir = task_prompt_dir(t, dir);
    char *cfg = pdir ? mmt_path_join(pdir, "adapter_config.json") : NULL;
    char *w = pdir ? mmt_path_join(pdir, "adapter_model.safetensors") : NULL;
    mmt_status s = cfg && w ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK && t->adapter) s = mmt_mkdirs(pdir);
    if (s == MMT_OK) s = mmt_peft_config_save(&t->prompt_peft, cfg);
    if (s == MMT_OK) s = mmt_prompt_save_tensors(t->prompt, w);
    mmt_free(pdir);
    mmt_free(cfg);
    mmt_free(w);
    return s;
}

static mmt_status task_load_prompt(mmt_clip_task *t, const char *dir) {
    char *pdir = task_prompt_dir(t, dir);
    char *w = pdir ? mmt_path_join(pdir, "adapter_model.safetensors") : NULL;
    mmt_status s = w ? mmt_prompt_load_tensors(t->prompt, w) : MMT_STATUS_OUT_OF_MEMORY;
    mmt_free(pdir);
    mmt_free(w);
    return s;
}

/* The token ids of an init text without BOS, EOS and padding. */
static mmt_status prompt_init_ids(mmt_clip *model, const char *text, int32_t **ids, int64_t *n) {
    const mmt_clip_config *c = mmt_clip_config_of(model);
    int64_t L = c->text.max_positions;
    *ids = mmt_malloc((size_t)L * sizeof(int32_t));
    *n = 0;
    if (!*ids) return MMT_STATUS_OUT_OF_MEMORY;
    MMT_TRY(mmt_clip_tokenize(model, &text, 1, 1, *ids));
    int64_t eos = mmt_clip_pool_position(*ids, L, c->text.eos_token_id);
    *n = eos > 1 ? eos - 1 : 0;
    memmove(*ids, *ids + 1, (size_t)*n * sizeof(int32_t));
    if (*n == 0) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the prompt init text \"%s\" has no tokens", text);
    return MMT_OK;
}

static mmt_status task_attach_prompt(mmt_clip_task *t, const mmt_clip_task_options *o) {
    mmt_prompt_settings ps = *o->prompt;
    int32_t *ids = NULL;
    mmt_status s = MMT_OK;
    if (o->prompt_init_text && o->prompt_init_text[0] && ps.text_tokens > 0) {
        s = prompt_init_ids(t->model, o->prompt_init_text, &ids, &ps.n_init_ids);
        ps.init_ids = ids;
    }
    ps.seed = o->seed;
    ps.trainable = 1;
    if (s == MMT_OK) s = mmt_prompt_attach(mmt_clip_train_iface(t->view), &ps, &t->prompt);
    if (s == MMT_OK)
        s = mmt_prompt_peft_config(&ps, &mmt_clip_train_iface(t->view)->dims, ps.text_tokens > 0 ? o->prompt_init_text : NULL,
                                   &t->prompt_peft);
    if (s == MMT_OK && !(t->prompt_peft.base_model_name_or_path = mmt_strdup(mmt_clip_weights(t->model)->dir)))
        s = MMT_STATUS_OUT_OF_MEMORY;
    mmt_free(ids);
    return s;
}

/* ---- the task ---------------------------------------------------------------------------- */

static mmt_status task_prefetch(void *ctx, int64_t position, const int64_t *indices, int64_t n) {
    return mmt_image_source_prefetch(((mmt_clip_task *)ctx)->images, position, indices, n);
}

static mmt_status task_load_batch(void *ctx, const int64_t *indices, int64_t n) {
    mmt_clip_task *t = ctx;
    if (n > t->cap_B) {
        int32_t *ids = mmt_realloc(t->batch_ids, (size_t)(n * t->L) * sizeof(int32_t));
        if (!ids) return MMT_STATUS_OUT_OF_MEMORY;
        t->batch_ids = ids;
        t->cap_B = n;
    }
    for (int64_t i = 0; i < n; i++)
        memcpy(t->batch_ids + i * t->L, t->ids + indices[i] * t->L, (size_t)t->L * sizeof(int32_t));
    MMT_TRY(mmt_image_source_next(t->images, indices, n, &t->pixels));
    t->B = n;
    return MMT_OK;
}

static mmt_status task_forward_loss(void *ctx, uint64_t seed, double *loss) {
    mmt_clip_task *t = ctx;
    return mmt_clip_train_forward_loss(t->view, t->pixels, t->batch_ids, t->B, t->L, seed, loss);
}

static mmt_status task_backward(void *ctx) { return mmt_clip_train_backward(((mmt_clip_task *)ctx)->view); }

static int64_t task_early_params(void *ctx, uint8_t *early) {
    return mmt_clip_train_early_params(((mmt_clip_task *)ctx)->view, early);
}

static mmt_status task_backward_split(void *ctx, void (*ready)(void *user), void *user) {
    return mmt_clip_train_backward_split(((mmt_clip_task *)ctx)->view, ready, user);
}

static const mmt_nn_param *task_params(void *ctx, int64_t *n) {
    return mmt_clip_train_params(((mmt_clip_task *)ctx)->view, n);
}

static void task_after_step(void *ctx) { mmt_clip_train_after_step(((mmt_clip_task *)ctx)->view); }

/* Pairs embedded per forward when mining hard examples: bounds the activation arena. */
#define EMBED_CHUNK 32

/* Every pair's normalised image and text embedding through the view as it is now, into
 * image and text (n, P). */
static mmt_status embed_all(mmt_clip_task *t, float *image, float *text) {
    int64_t n = t->pairs->n, P = mmt_clip_config_of(t->model)->projection_dim;
    size_t per = (size_t)(3 * t->S * t->S);
    float *pixels = mmt_malloc(EMBED_CHUNK * per * sizeof(float));
    if (!pixels) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = MMT_OK;
    for (int64_t at = 0; at < n && s == MMT_OK; at += EMBED_CHUNK) {
        int64_t b = n - at < EMBED_CHUNK ? n - at : EMBED_CHUNK;
        for (int64_t i = 0; i < b && s == MMT_OK; i++) s = mmt_image_source_plain(t->images, at + i, pixels + (size_t)i * per);
        if (s == MMT_OK) s = mmt_clip_train_encode_pixels(t->view, pixels, b, image + at * P);
        if (s == MMT_OK) s = mmt_clip_train_encode_ids(t->view, t->ids + at * t->L, b, t->L, text + at * P);
    }
    mmt_free(pixels);
    return s;
}

/* The trainer's epoch_order hook (trainer.h): embed, then group (train/hard_batches.h). */
static mmt_status task_epoch_order(void *ctx, int64_t epoch, const int64_t *seeded, int64_t n, const int64_t *sizes,
                                   int64_t g, int64_t *out) {
    mmt_clip_task *t = ctx;
    int64_t P = mmt_clip_config_of(t->model)->projection_dim;
    double t0 = mmt_now_seconds();
    float *image = mmt_malloc((size_t)(n * P) * sizeof(float)), *text = mmt_malloc((size_t)(n * P) * sizeof(float));
    mmt_status s = image && text ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = embed_all(t, image, text);
    double t1 = mmt_now_seconds();
    mmt_hard_batch_stats stats;
    if (s == MMT_OK) s = mmt_hard_batches(image, text, n, P, seeded, sizes, g, t->opt.hard_ratio, out, &stats);
    if (s == MMT_OK)
        mmt_log_info("epoch %lld: hard batches (ratio %g): mean in-batch similarity %.4f, plain order %.4f; embedding %lld "
                     "pairs took %.1fs, grouping %.1fs", (long long)epoch + 1, t->opt.hard_ratio, stats.hard_similarity,
                     stats.plain_similarity, (long long)n, t1 - t0, mmt_now_seconds() - t1);
    mmt_free(image);
    mmt_free(text);
    return s;
}

static mmt_status task_save(void *ctx, const char *dir) {
    mmt_clip_task *t = ctx;
    mmt_status s = MMT_OK;
    if (t->prompt) MMT_TRY(task_save_prompt(t, dir));
    if (t->prompt && !t->adapter) return MMT_OK;
    if (t->adapter) {
        char *cfg = mmt_path_join(dir, "adapter_config.json"), *w = mmt_path_join(dir, "adapter_model.safetensors");
        if (!cfg || !w) s = MMT_STATUS_OUT_OF_MEMORY;
        if (s == MMT_OK)
            s = t->have_bottleneck ? mmt_bottleneck_config_save(&t->bottleneck, cfg) : mmt_peft_config_save(&t->peft, cfg);
        if (s == MMT_OK) s = mmt_adapter_save_tensors(t->adapter, w);
        mmt_free(cfg);
        mmt_free(w);
        return s;
    }
    /* full fine-tuning: every tensor under its HF name, plus logit_scale if it did not train */
    int64_t n;
    const mmt_nn_param *p = mmt_clip_train_params(t->view, &n);
    mmt_st_write_tensor *wt = mmt_calloc((size_t)n + 1, sizeof *wt);
    char *path = mmt_path_join(dir, "model.safetensors");
    float scale = mmt_clip_train_logit_scale(t->view);
    int64_t k = 0, has_scale = 0;
    if (!wt || !path) s = MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < n; i++) {
        wt[k].name = p[i].name;
        wt[k].dtype = MMT_DTYPE_F32;
        wt[k].ndim = p[i].ndim;
        wt[k].shape = p[i].shape;
        wt[k].data = p[i].data;
        has_scale |= strcmp(p[i].name, "logit_scale") == 0;
        k++;
    }
    if (s == MMT_OK && !has_scale) {
        wt[k].name = "logit_scale";
        wt[k].dtype = MMT_DTYPE_F32;
        wt[k].ndim = 0;
        wt[k].shape = NULL;
        wt[k].data = &scale;
        k++;
    }
    if (s == MMT_OK) s = mmt_safetensors_write(path, wt, k, NULL, 0);
    if (s == MMT_OK) s = mmt_snapshot_copy_files(mmt_clip_weights(t->model)->dir, dir);
    mmt_free(wt);
    mmt_free(path);
    return s;
}

static mmt_status task_load(void *ctx, const char *dir) {
    mmt_clip_task *t = ctx;
    if (t->prompt) MMT_TRY(task_load_prompt(t, dir));
    if (t->prompt && !t->adapter) return MMT_OK;
    if (t->adapter) {
        char *w = mmt_path_join(dir, "adapter_model.safetensors");
        mmt_status s = w ? mmt_adapter_load_tensors(t->adapter, w) : MMT_STATUS_OUT_OF_MEMORY;
        mmt_free(w);
        return s;
    }
    int64_t n;
    const mmt_nn_param *p = mmt_clip_train_params(t->view, &n);
    return mmt_params_load_model_file(p, n, dir);
}

mmt_status mmt_clip_task_create(mmt_clip *model, const mmt_pairs *pairs,
                                const mmt_clip_task_options *o, mmt_clip_task **out) {
    *out = NULL;
    mmt_clip_task *t = mmt_calloc(1, sizeof *t);
    if (!t) return MMT_STATUS_OUT_OF_MEMORY;
    t->model = model;
    t->pairs = pairs;
    t->opt = *o;
    const mmt_clip_config *c = mmt_clip_config_of(model);
    t->L = c->text.max_positions;
    t->S = c->vision.image_size;
    mmt_status s = MMT_OK;
    if (!mmt_clip_tokenizer(model)) {
        s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: the model folder has no tokenizer (vocab.json + merges.txt, or tokenizer.json)",
                     mmt_clip_weights(model)->dir);
        goto fail;
    }
    if ((s = mmt_augment_check(&o->augment)) != MMT_OK) goto fail;
    if (!(o->hard_ratio >= 0 && o->hard_ratio <= 1)) {
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--hard-ratio must be in (0, 1], got %g", o->hard_ratio);
        goto fail;
    }
    if ((s = mmt_clip_train_create(model, &o->train, &t->view)) != MMT_OK) goto fail;
    if (o->bottleneck) {
        t->bottleneck = *o->bottleneck;
        t->have_bottleneck = 1;
        if ((s = mmt_bottleneck_attach(mmt_clip_train_iface(t->view), o->bottleneck, o->seed, 1, &t->adapter)) != MMT_OK) goto fail;
    } else if (o->peft) {
        if ((s = mmt_peft_config_copy(&t->peft, o->peft)) != MMT_OK) goto fail;
        t->have_peft = 1;
        if ((s = mmt_adapter_from_config(mmt_clip_train_iface(t->view), o->peft, o->seed, 1, &t->adapter)) != MMT_OK) goto fail;
        if ((s = ia3_pin_layers(&t->peft, t->adapter)) != MMT_OK) goto fail;
    } else if (!o->prompt && (s = mmt_clip_train_make_full(t->view)) != MMT_OK) {
        goto fail;
    }
    if (o->prompt && (s = task_attach_prompt(t, o)) != MMT_OK) goto fail;
    t->ids = mmt_malloc((size_t)(pairs->n * t->L) * sizeof(int32_t));
    if (!t->ids) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto fail;
    }
    for (int64_t i = 0; i < pairs->n; i++) {
        const char *text = pairs->items[i].text;
        if ((s = mmt_clip_tokenize(model, &text, 1, 1, t->ids + i * t->L)) != MMT_OK) {
            s = mmt_error_prefix(s, "%s: pair %lld: ", pairs->source, (long long)i + 1);
            goto fail;
        }
    }
    mmt_image_source_options io = {mmt_clip_processor(model), t->S, o->seed, o->cache_bytes, o->loader_workers,
                                   o->prefetch_batches, o->augment, o->dicom};
    if ((s = mmt_image_source_create(pairs, &io, &t->images)) != MMT_OK) goto fail;
    *out = t;
    return MMT_OK;
fail:
    mmt_clip_task_free(t);
    return s;
}

void mmt_clip_task_free(mmt_clip_task *t) {
    if (!t) return;
    mmt_adapter_free(t->adapter);
    mmt_prompt_free(t->prompt);
    mmt_peft_config_free(&t->prompt_peft);
    mmt_clip_train_free(t->view);
    if (t->have_peft) mmt_peft_config_free(&t->peft);
    mmt_image_source_free(t->images); /* first: its workers read the pairs */
    mmt_free(t->ids);
    mmt_free(t->batch_ids);
    mmt_free(t);
}

void mmt_clip_task_bind(mmt_clip_task *t, mmt_train_task *out) {
    memset(out, 0, sizeof *out);
    out->ctx = t;
    out->n_examples = t->pairs->n;
    out->load_batch = task_load_batch;
    out->forward_loss = task_forward_loss;
    out->backward = task_backward;
    out->early_params = task_early_params;
    out->backward_split = task_backward_split;
    out->params = task_params;
    out->after_step = task_after_step;
    out->save = task_save;
    out->load = task_load;
    out->prefetch = task_prefetch;
    out->prefetch_ahead = mmt_image_source_ahead(t->images);
    out->ops = mmt_clip_train_iface(t->view)->ops;
    if (t->opt.hard_ratio > 0) out->epoch_order = task_epoch_order;
}

int64_t mmt_clip_task_trainable_numel(const mmt_clip_task *t) {
    int64_t n, total = 0;
    const mmt_nn_param *p = mmt_clip_train_params(t->view, &n);
    for (int64_t i = 0; i < n; i++) total += p[i].numel;
    return total;
}

mmt_clip_train *mmt_clip_task_view(mmt_clip_task *t) { return t->view; }
mmt_adapter *mmt_clip_task_adapter(mmt_clip_task *t) { return t->adapter; }
mmt_prompt *mmt_clip_task_prompt(mmt_clip_task *t) { return t->prompt; }
