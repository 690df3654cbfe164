/* caption_task.c — GIT caption fine-tuning as a trainer task (see caption_task.h). */
#include "train/caption_task.h"

#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/safetensors.h"
#include "core/weights.h"
#include "data/wordpiece.h"
#include "nn/param.h"
#include "peft/adapter_folder.h"
#include "peft/prompt.h"
#include "train/image_source.h"
#include "train/param_io.h"

struct mmt_caption_task {
    mmt_git *model;                /* borrowed */
    const mmt_pairs *pairs;        /* borrowed */
    mmt_caption_task_options opt;
    mmt_git_run *run;              /* owned */
    mmt_adapter *adapter;          /* owned; NULL: full fine-tuning, prompt or prefix tuning */
    mmt_prompt *prompt;            /* owned; prompt or prefix tuning */
    mmt_peft_config prompt_peft;   /* owned when prompt: its adapter_config.json */
    mmt_peft_config peft;          /* owned copy when have_peft */
    int have_peft;
    int32_t *ids;                  /* owned: (n, Lmax) each caption's ids */
    int64_t *len;                  /* owned: (n) their lengths */
    int64_t Lmax, S, pad;
    mmt_image_source *images;      /* owned */
    const float *pixels;           /* the current batch's (B, 3, S, S) */
    int32_t *batch_ids, *batch_labels; /* owned: (B, L) */
    int64_t B, L, cap_B;
};

static mmt_status task_prefetch(void *ctx, int64_t position, const int64_t *indices, int64_t n) {
    return mmt_image_source_prefetch(((mmt_caption_task *)ctx)->images, position, indices, n);
}

static mmt_status task_load_batch(void *ctx, const int64_t *indices, int64_t n) {
    mmt_caption_task *t = ctx;
    if (n > t->cap_B) {
        int32_t *a = mmt_realloc(t->batch_ids, (size_t)(n * t->Lmax) * sizeof(int32_t));
        if (!a) return MMT_STATUS_OUT_OF_MEMORY;
        t->batch_ids = a;
        int32_t *b = mmt_realloc(t->batch_labels, (size_t)(n * t->Lmax) * sizeof(int32_t));
        if (!b) return MMT_STATUS_OUT_OF_MEMORY;
        t->batch_labels = b;
        t->cap_B = n;
    }
    int64_t L = 2;
    for (int64_t i = 0; i < n; i++)
        if (t->len[indices[i]] > L) L = t->len[indices[i]];
    for (int64_t i = 0; i < n; i++) { /* padded to the batch's longest; padding is not predicted */
        const int32_t *src = t->ids + indices[i] * t->Lmax;
        for (int64_t j = 0; j < L; j++) {
            int in = j < t->len[indices[i]];
            t->batch_ids[i * L + j] = in ? src[j] : (int32_t)t->pad;
            t->batch_labels[i * L + j] = in ? src[j] : -100;
        }
    }
    MMT_TRY(mmt_image_source_next(t->images, indices, n, &t->pixels));
    t->B = n;
    t->L = L;
    return MMT_OK;
}

static mmt_status task_forward_loss(void *ctx, uint64_t seed, double *loss) {
    mmt_caption_task *t = ctx;
    return mmt_git_run_forward_loss(t->run, t->pixels, t->batch_ids, t->batch_labels, t->B, t->L,
                                    t->opt.label_smoothing, seed, loss);
}

static mmt_status task_backward(void *ctx) { return mmt_git_run_backward(((mmt_caption_task *)ctx)->run); }

static const mmt_nn_param *task_params(void *ctx, int64_t *n) { return mmt_git_run_params(((mmt_caption_task *)ctx)->run, n); }

static mmt_status task_save(void *ctx, const char *dir) {
    mmt_caption_task *t = ctx;
    mmt_status s = MMT_OK;
    if (t->prompt) {
        char *cfg = mmt_path_join(dir, "adapter_config.json"), *w = mmt_path_join(dir, "adapter_model.safetensors");
        if (!cfg || !w) s = MMT_STATUS_OUT_OF_MEMORY;
        if (s == MMT_OK) s = mmt_peft_config_save(&t->prompt_peft, cfg);
        if (s == MMT_OK) s = mmt_prompt_save_tensors(t->prompt, w);
        mmt_free(cfg);
        mmt_free(w);
        return s;
    }
    if (t->adapter) {
        char *cfg = mmt_path_join(dir, "adapter_config.json"), *w = mmt_path_join(dir, "adapter_model.safetensors");
        if (!cfg || !w) s = MMT_STATUS_OUT_OF_MEMORY;
        if (s == MMT_OK) s = mmt_peft_config_save(&t->peft, cfg);
        if (s == MMT_OK) s = mmt_adapter_save_tensors(t->adapter, w);
        mmt_free(cfg);
        mmt_free(w);
        return s;
    }
    int64_t n;
    const mmt_nn_param *p = mmt_git_run_params(t->run, &n);
    mmt_st_write_tensor *wt = mmt_calloc((size_t)(n > 0 ? n : 1), sizeof *wt);
    char *path = mmt_path_join(dir, "model.safetensors");
    if (!wt || !path) s = MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < n; i++)
        wt[i] = (mmt_st_write_tensor){.name = p[i].name, .dtype = MMT_DTYPE_F32, .ndim = p[i].ndim, .shape = p[i].shape,
                                      .data = p[i].data};
    if (s == MMT_OK) s = mmt_safetensors_write(path, wt, n, NULL, 0);
    if (s == MMT_OK) s = mmt_snapshot_copy_files(mmt_git_dir(t->model), dir);
    mmt_free(wt);
    mmt_free(path);
    return s;
}

static mmt_status task_load(void *ctx, const char *dir) {
    mmt_caption_task *t = ctx;
    if (t->prompt) {
        char *w = mmt_path_join(dir, "adapter_model.safetensors");
        mmt_status s = w ? mmt_prompt_load_tensors(t->prompt, w) : MMT_STATUS_OUT_OF_MEMORY;
        mmt_free(w);
        return s;
    }
    if (t->adapter) {
        char *w = mmt_path_join(dir, "adapter_model.safetensors");
        mmt_status s = w ? mmt_adapter_load_tensors(t->adapter, w) : MMT_STATUS_OUT_OF_MEMORY;
        mmt_free(w);
        return s;
    }
    int64_t n;
    const mmt_nn_param *p = mmt_git_run_params(t->run, &n);
    return mmt_params_load_model_file(p, n, dir);
}

/* The ids of PEFT's prompt_tuning_init_text: tokenizer(text)["input_ids"], [CLS] and [SEP]
 * included (peft/tuners/prompt_tuning/model.py PromptEmbedding). */
static mmt_status init_text_ids(const mmt_wordpiece *tok, const char *text, int32_t **ids, int64_t *n) {
    int64_t total = 0;
    *ids = NULL;
    MMT_TRY(mmt_wordpiece_encode(tok, text, strlen(text), 1, NULL, 0, &total));
    if (total < 1 || !(*ids = mmt_malloc((size_t)total * sizeof(int32_t)))) return MMT_STATUS_OUT_OF_MEMORY;
    *n = total;
    return mmt_wordpiece_encode(tok, text, strlen(text), 1, *ids, total, &total);
}

/* Prompt tuning (PEFT's PROMPT_TUNING: rows in front of the text) or prefix tuning of the
 * decoder, and the adapter_config.json PEFT loads them with on GitForCausalLM. */
static mmt_status attach_prompt(mmt_caption_task *t, const mmt_wordpiece *tok, const mmt_caption_task_options *o) {
    const mmt_model_iface *iface = mmt_git_run_iface(t->run);
    mmt_prompt_settings ps = *o->prompt;
    ps.trainable = 1;
    ps.seed = o->seed;
    ps.text_init_std = 1.0; /* PEFT's RANDOM init: torch's nn.Embedding, N(0, 1) */
    const char *init_text = ps.text_tokens > 0 && o->prompt_init_text && o->prompt_init_text[0] ? o->prompt_init_text : NULL;
    int32_t *ids = NULL;
    mmt_status s = MMT_OK;
    if (init_text && (s = init_text_ids(tok, init_text, &ids, &ps.n_init_ids)) == MMT_OK) ps.init_ids = ids;
    if (s == MMT_OK) s = mmt_prompt_attach(iface, &ps, &t->prompt);
    if (s == MMT_OK) s = mmt_prompt_peft_config(&ps, &iface->dims, init_text, &t->prompt_peft);
    mmt_free(ids);
    if (s != MMT_OK) return s;
    /* PeftModelForCausalLM, as PEFT saves prompt learning on GitForCausalLM; PEFT's config
     * refuses a TEXT init without a tokenizer to name (the snapshot has it) */
    mmt_peft_config *pc = &t->prompt_peft;
    mmt_free(pc->task_type);
    mmt_free(pc->base_model_class);
    mmt_free(pc->parent_library);
    mmt_free(pc->base_model_name_or_path);
    pc->base_model_class = pc->parent_library = NULL;
    pc->task_type = mmt_strdup("CAUSAL_LM");
    pc->base_model_name_or_path = mmt_strdup(mmt_git_dir(t->model));
    if (!pc->task_type || !pc->base_model_name_or_path) return MMT_STATUS_OUT_OF_MEMORY;
    if (init_text) {
        mmt_free(pc->tokenizer_name_or_path);
        if (!(pc->tokenizer_name_or_path = mmt_strdup(mmt_git_dir(t->model)))) return MMT_STATUS_OUT_OF_MEMORY;
    }
    return MMT_OK;
}

mmt_status mmt_caption_task_create(mmt_git *model, const mmt_pairs *pairs, const mmt_caption_task_options *o,
                                   mmt_caption_task **out) {
    *out = NULL;
    const mmt_wordpiece *tok = mmt_git_tokenizer(model);
    if (!tok)
        return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: the captioner has no tokenizer.json, cannot tokenize captions",
                        mmt_git_dir(model));
    const mmt_git_config *c = mmt_git_config_of(model);
    /* prompt rows and prefixes take text positions before the caption's */
    int64_t virtual_tokens = o->prompt ? o->prompt->text_tokens + o->prompt->prefix_tokens : 0;
    int64_t room = c->max_positions - virtual_tokens;
    if (room < 3)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%lld virtual tokens leave %lld of the model's %lld positions to "
                        "captions, which need at least 3 ([CLS], a token, [SEP])", (long long)virtual_tokens,
                        (long long)(room > 0 ? room : 0), (long long)c->max_positions);
    int64_t Lmax = o->max_tokens > 0 ? o->max_tokens : room < 40 ? room : 40;
    if (Lmax < 3 || Lmax > room)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "caption length %lld is outside 3..%lld (the model's %lld positions "
                        "less %lld virtual tokens)", (long long)Lmax, (long long)room, (long long)c->max_positions,
                        (long long)virtual_tokens);
    mmt_caption_task *t = mmt_calloc(1, sizeof *t);
    if (!t) return MMT_STATUS_OUT_OF_MEMORY;
    t->model = model;
    t->pairs = pairs;
    t->opt = *o;
    t->Lmax = Lmax;
    t->S = c->vision.image_size;
    const mmt_wordpiece_info *ti = mmt_wordpiece_info_of(tok);
    t->pad = ti->pad >= 0 ? ti->pad : c->pad_token_id;
    mmt_status s = mmt_git_run_create(model, &t->run);
    if (s == MMT_OK && o->peft) {
        if ((s = mmt_peft_config_copy(&t->peft, o->peft)) == MMT_OK && (t->have_peft = 1))
            s = mmt_adapter_from_config(mmt_git_run_iface(t->run), o->peft, o->seed, 1, &t->adapter);
    } else if (s == MMT_OK && o->prompt) {
        s = attach_prompt(t, tok, o);
    } else if (s == MMT_OK) {
        s = mmt_git_run_make_full(t->run);
    }
    t->ids = s == MMT_OK ? mmt_malloc((size_t)(pairs->n > 0 ? pairs->n : 1) * (size_t)Lmax * sizeof(int32_t)) : NULL;
    t->len = t->ids ? mmt_malloc((size_t)(pairs->n > 0 ? pairs->n : 1) * sizeof(int64_t)) : NULL;
    if (s == MMT_OK && (!t->ids || !t->len)) s = MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < pairs->n; i++) {
        const char *text = pairs->items[i].text;
        int64_t total;
        s = mmt_wordpiece_encode(tok, text, strlen(text), 1, t->ids + i * Lmax, Lmax, &total);
        if (s != MMT_OK) s = mmt_error_prefix(s, "%s: pair %lld: ", pairs->source, (long long)i + 1);
        t->len[i] = total < Lmax ? total : Lmax;
    }
    mmt_image_source_options io = {mmt_git_processor(model), t->S, o->seed, o->cache_bytes, o->loader_workers,
                                   o->prefetch_batches, o->augment, o->dicom};
    if (s == MMT_OK) s = mmt_image_source_create(pairs, &io, &t->images);
    if (s != MMT_OK) {
        mmt_caption_task_free(t);
        return s;
    }
    *out = t;
    return MMT_OK;
}

void mmt_caption_task_free(mmt_caption_task *t) {
    if (!t) return;
    mmt_image_source_free(t->images);
    mmt_adapter_free(t->adapter);
    mmt_prompt_free(t->prompt);
    mmt_peft_config_free(&t->prompt_peft);
    if (t->have_peft) mmt_peft_config_free(&t->peft);
    mmt_git_run_free(t->run);
    mmt_free(t->ids);
    mmt_free(t->len);
    mmt_free(t->batch_ids);
    mmt_free(t->batch_labels);
    mmt_free(t);
}

void mmt_caption_task_bind(mmt_caption_task *t, mmt_train_task *out) {
    memset(out, 0, sizeof *out);
    out->ctx = t;
    out->n_examples = t->pairs->n;
    out->load_batch = task_load_batch;
    out->forward_loss = task_forward_loss;
    out->backward = task_backward;
    out->params = task_params;
    out->save = task_save;
    out->load = task_load;
    out->prefetch = task_prefetch;
    out->prefetch_ahead = mmt_image_source_ahead(t->images);
    out->ops = mmt_git_run_iface(t->run)->ops;
}

int64_t mmt_caption_task_trainable_numel(mmt_caption_task *t) {
    int64_t n, total = 0;
    const mmt_nn_param *p = mmt_git_run_params(t->run, &n);
    for (int64_t i = 0; i < n; i++) total += p[i].numel;
    return total;
}

mmt_git_run *mmt_caption_task_run(mmt_caption_task *t) { return t->run; }
mmt_adapter *mmt_caption_task_adapter(mmt_caption_task *t) { return t->adapter; }
