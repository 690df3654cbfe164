/*
 * caption_service.c — the captioner of `mmtune serve` (caption_service.h): the adapter
 * registry, the request queue and the continuous-batching worker.
 *
 * Threads: the polling thread parses requests and queues them (handle); loader threads read
 * adapter folders; one worker owns every run context, the KV caches and the rows. The
 * registry, the queue and the counters are under `mu`; everything marked "the worker's" is
 * touched by the worker alone.
 */
#include "serve/caption_service.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "data/image.h"
#include "data/preprocess.h"
#include "data/wordpiece.h"
#include "gen/generate.h"
#include "gen/row.h"
#include "gen/words.h"
#include "models/git.h"
#include "nn/decoder.h"
#include "peft/adapter.h"
#include "peft/adapter_folder.h"
#include "peft/prompt.h"
#include "serve/adapter_load.h"
#include "serve/caption_request.h"

typedef struct cap_request cap_request;

/* One image's caption being decoded: a row of its adapter's running batch. */
typedef struct cap_row {
    cap_request *req;
    int64_t index;   /* the image's place in its request */
    mmt_gen_row g;
    int32_t next;    /* the token the next step feeds */
} cap_row;

/* An adapter (or the base) and its share of the worker's decoding. */
typedef struct cap_adapter {
    char name[64];
    char *dir;          /* owned; NULL: the base */
    mmt_git_run *run;   /* owned: runs with the adapter attached; used by the worker alone */
    mmt_adapter *ad;    /* owned */
    mmt_prompt *pr;     /* owned */
    int refs;           /* requests holding it, plus one while registered (mu) */
    /* the worker's: the rows decoding on run, in the run's row order */
    cap_row **rows;     /* owned (cap_rows) */
    int64_t n_rows, cap_rows;
    int32_t *next;      /* owned (cap_rows) */
    int64_t *keep;      /* owned (cap_rows) */
    float *logits;      /* owned (cap_rows, V) */
    int grouped;        /* in the worker's list of adapters with rows (which holds a reference) */
} cap_adapter;

struct cap_request {
    cap_request *next;  /* the queue (mu) */
    mmt_caption_service *cs;
    mmt_http_reply *reply;
    double t0, deadline;
    cap_adapter *adapter; /* a reference */
    mmt_caption_request req;
    int32_t *prompt;    /* owned: [CLS] + the prompt's tokens (L) */
    int32_t *word_ids;  /* owned: allowed_words / bad_words as token sequences (gen/words.h) */
    int64_t *word_len;
    mmt_gen_words *allowed; /* owned: the allowed words' trie */
    int64_t L;
    cap_row *rows;      /* owned (req.n_images) */
    int64_t rows_left;  /* rows still decoding */
    int64_t tokens;     /* generated, EOS included */
    char **captions;    /* owned (req.n_images) */
    int status;         /* 0 while fine, else the HTTP status of its error */
    char error[400];
    int cs_counted;     /* counted in stats.in_flight */
};

struct mmt_caption_service {
    mmt_caption_service_options o;
    mmt_metrics *metrics;      /* borrowed */
    mmt_git *m;                /* owned */
    const mmt_wordpiece *tok;  /* the model's */
    int64_t V, S, Ni, C;
    char *base_name;           /* owned: the captioner folder's last component */
    cap_adapter *base;         /* a reference */
    mmt_git_cache *beam_cache; /* owned: the KV cache of the beam search running */
    mmt_gen_picker *picker;    /* owned: the worker's */
    pthread_t worker;
    int worker_started;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    cap_request *head;         /* queued (mu) */
    int stopping;              /* (mu) */
    _Atomic int ready;
    _Atomic int64_t loads_in_flight;
    cap_adapter **adapters;    /* the registry (mu) */
    int64_t n_adapters, cap_adapters;
    mmt_caption_stats stats;   /* (mu) */
    /* the worker's */
    cap_adapter **groups;      /* adapters with rows decoding (cap_groups) */
    int64_t n_groups, cap_groups;
    int64_t running;           /* rows decoding */
};

void mmt_caption_service_options_default(mmt_caption_service_options *o) {
    memset(o, 0, sizeof *o);
    o->max_batch = 32;
    o->max_new_tokens = 128;
    o->max_images = 16;
    o->max_image_pixels = INT64_C(16) << 20;
    o->deadline_s = 30;
    o->max_adapters = 1024;
}


/* ---- adapters -------------------------------------------------------------------------- */

static void adapter_free(cap_adapter *a) {
    if (!a) return;
    mmt_prompt_free(a->pr);
    mmt_adapter_free(a->ad);
    mmt_git_run_free(a->run);
    mmt_free(a->rows);
    mmt_free(a->next);
    mmt_free(a->keep);
    mmt_free(a->logits);
    mmt_free(a->dir);
    mmt_free(a);
}

static void adapter_release(mmt_caption_service *cs, cap_adapter *a) {
    if (!a) return;
    pthread_mutex_lock(&cs->mu);
    int last = --a->refs == 0;
    pthread_mutex_unlock(&cs->mu);
    if (last) adapter_free(a);
}

/* A run context with the folder dir attached (dir NULL: the base), one reference. */
static mmt_status adapter_open(mmt_caption_service *cs, const char *name, const char *dir, cap_adapter **out) {
    *out = NULL;
    cap_adapter *a = mmt_calloc(1, sizeof *a);
    if (!a || (dir && !(a->dir = mmt_strdup(dir)))) {
        mmt_free(a);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    snprintf(a->name, sizeof a->name, "%s", name);
    mmt_status s = mmt_git_run_create(cs->m, &a->run);
    if (s == MMT_OK && dir) s = mmt_adapter_folders_load(mmt_git_run_iface(a->run), dir, 0, &a->ad, &a->pr);
    if (s != MMT_OK) {
        adapter_free(a);
        return s;
    }
    a->refs = 1;
    *out = a;
    return MMT_OK;
}

mmt_status mmt_caption_service_adapter_load(mmt_caption_service *cs, const char *name, const char *dir) {
    if (!mmt_serve_valid_name(name))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adapter name '%s': use 1-63 of A-Z a-z 0-9 _ - . (not 'base')", name);
    if (!strcmp(name, cs->base_name))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adapter name '%s' is already the captioner's name (its folder)", name);
    cap_adapter *a = NULL;
    MMT_TRY(adapter_open(cs, name, dir, &a));
    mmt_status st = MMT_OK;
    pthread_mutex_lock(&cs->mu);
    for (int64_t i = 0; i < cs->n_adapters; i++)
        if (!strcmp(cs->adapters[i]->name, name))
            st = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "captioner adapter '%s' is already loaded", name);
    if (st == MMT_OK && cs->n_adapters >= cs->o.max_adapters)
        st = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "already %d captioner adapters loaded (--max-adapters)", cs->o.max_adapters);
    if (st == MMT_OK && cs->n_adapters == cs->cap_adapters) {
        int64_t cap = cs->cap_adapters ? 2 * cs->cap_adapters : 16;
        cap_adapter **g = mmt_realloc(cs->adapters, (size_t)cap * sizeof *g);
        if (g) cs->adapters = g, cs->cap_adapters = cap;
        else st = MMT_STATUS_OUT_OF_MEMORY;
    }
    if (st == MMT_OK) cs->adapters[cs->n_adapters++] = a;
    pthread_mutex_unlock(&cs->mu);
    if (st != MMT_OK) adapter_release(cs, a);
    return st;
}

int mmt_caption_service_adapter_unload(mmt_caption_service *cs, const char *name) {
    cap_adapter *a = NULL;
    pthread_mutex_lock(&cs->mu);
    for (int64_t i = 0; i < cs->n_adapters; i++)
        if (!strcmp(cs->adapters[i]->name, name)) {
            a = cs->adapters[i];
            memmove(cs->adapters + i, cs->adapters + i + 1, (size_t)(cs->n_adapters - i - 1) * sizeof *cs->adapters);
            cs->n_adapters--;
            break;
        }
    pthread_mutex_unlock(&cs->mu);
    adapter_release(cs, a);
    return a != NULL;
}

int64_t mmt_caption_service_adapter_count(mmt_caption_service *cs) {
    pthread_mutex_lock(&cs->mu);
    int64_t n = cs->n_adapters;
    pthread_mutex_unlock(&cs->mu);
    return n;
}

void mmt_caption_service_adapters_json(mmt_caption_service *cs, mmt_strbuf *b) {
    pthread_mutex_lock(&cs->mu);
    for (int64_t i = 0; i < cs->n_adapters; i++) {
        mmt_strbuf_printf(b, "%s{\"name\": ", i ? ", " : "");
        mmt_strbuf_json_string(b, cs->adapters[i]->name, strlen(cs->adapters[i]->name));
        mmt_strbuf_printf(b, ", \"path\": ");
        mmt_strbuf_json_string(b, cs->adapters[i]->dir, strlen(cs->adapters[i]->dir));
        mmt_strbuf_printf(b, ", \"kind\": \"captioner\"}");
    }
    pthread_mutex_unlock(&cs->mu);
}

/* The adapter a request names, with a reference taken (the base for none, "base" or the
 * captioner folder's name); NULL when no adapter has that name. */
static cap_adapter *adapter_acquire(mmt_caption_service *cs, const char *name) {
    cap_adapter *a = NULL;
    pthread_mutex_lock(&cs->mu);
    if (!name || !name[0] || !strcmp(name, "base") || !strcmp(name, cs->base_name)) a = cs->base;
    for (int64_t i = 0; !a && i < cs->n_adapters; i++)
        if (!strcmp(cs->adapters[i]->name, name)) a = cs->adapters[i];
    if (a) a->refs++;
    pthread_mutex_unlock(&cs->mu);
    return a;
}

/* ---- requests ------------------------------------------------------------------------- */

static void request_free(cap_request *q) {
    for (int64_t i = 0; q->rows && i < q->req.n_images; i++) mmt_gen_row_free(&q->rows[i].g);
    for (int64_t i = 0; q->captions && i < q->req.n_images; i++) mmt_free(q->captions[i]);
    mmt_free(q->captions);
    mmt_free(q->rows);
    mmt_free(q->prompt);
    mmt_free(q->word_ids);
    mmt_free(q->word_len);
    mmt_gen_words_free(q->allowed);
    mmt_caption_request_free(&q->req);
    mmt_free(q);
}

static void request_fail(cap_request *q, int status, const char *message) {
    if (q->status) return;
    q->status = status;
    snprintf(q->error, sizeof q->error, "%s", message);
}

/* Answers the request (its error, or its captions), counts it, and frees it. */
static void request_finish(cap_request *q) {
    mmt_caption_service *cs = q->cs;
    const char *name = q->adapter ? q->adapter->name : "base";
    mmt_strbuf b = {0};
    if (!q->status) {
        mmt_strbuf_printf(&b, "{\"object\": \"list\", \"data\": [");
        for (int64_t i = 0; i < q->req.n_images; i++) {
            mmt_strbuf_printf(&b, "%s{\"index\": %lld, \"caption\": ", i ? ", " : "", (long long)i);
            mmt_strbuf_json_string(&b, q->captions[i], strlen(q->captions[i]));
            mmt_strbuf_append(&b, "}", 1);
        }
        mmt_strbuf_printf(&b, "], \"model\": ");
        mmt_strbuf_json_string(&b, name, strlen(name));
        mmt_strbuf_printf(&b, ", \"usage\": {\"generated_tokens\": %lld}}\n", (long long)q->tokens);
        mmt_http_reply_json(q->reply, 200, &b);
    } else {
        mmt_http_reply_error(q->reply, q->status, q->status >= 500 ? "server_error" : "invalid_request_error", q->error);
    }
    mmt_strbuf_free(&b);
    int status = q->status ? q->status : 200;
    mmt_metrics_request(cs->metrics, "/v1/caption", name, status, mmt_now_seconds() - q->t0);
    if (q->tokens) mmt_metrics_tokens(cs->metrics, q->tokens);
    pthread_mutex_lock(&cs->mu);
    cs->stats.requests++;
    cs->stats.tokens += q->tokens;
    cs->stats.in_flight -= q->cs_counted;
    pthread_mutex_unlock(&cs->mu);
    adapter_release(cs, q->adapter);
    request_free(q);
}

/* The caption of a finished row: decode([CLS] + prompt + generated, skip_special_tokens), as
 * `mmtune caption` prints it. */
static void caption_text(mmt_caption_service *cs, cap_request *q, int64_t index, const int32_t *ids, int64_t n) {
    size_t cap = (size_t)(n + 1) * 64 + 64, len = 0;
    char *text = mmt_malloc(cap);
    if (!text) {
        request_fail(q, 500, "out of memory");
        return;
    }
    if (mmt_wordpiece_decode(cs->tok, ids, n, 1, text, cap, &len) != MMT_OK) {
        request_fail(q, 500, mmt_last_error());
        mmt_free(text);
        return;
    }
    q->captions[index] = text;
}

/* A row is done (or its request failed): its caption, and the request's answer after its
 * last row. */
static void row_done(mmt_caption_service *cs, cap_row *r) {
    cap_request *q = r->req;
    q->tokens += r->g.t;
    if (!q->status) caption_text(cs, q, r->index, r->g.seq, r->g.L + r->g.t);
    if (--q->rows_left == 0) request_finish(q);
}

/* ---- the continuous batch (the worker's) ---------------------------------------------- */

/* Room for n rows in the adapter's decoding. */
static mmt_status group_reserve(mmt_caption_service *cs, cap_adapter *a, int64_t n) {
    if (n <= a->cap_rows) return MMT_OK;
    int64_t cap = n > 2 * a->cap_rows ? n : 2 * a->cap_rows;
    cap_row **rows = mmt_realloc(a->rows, (size_t)cap * sizeof *rows);
    if (rows) a->rows = rows;
    int32_t *next = rows ? mmt_realloc(a->next, (size_t)cap * sizeof *next) : NULL;
    if (next) a->next = next;
    int64_t *keep = next ? mmt_realloc(a->keep, (size_t)cap * sizeof *keep) : NULL;
    if (keep) a->keep = keep;
    float *logits = keep ? mmt_realloc(a->logits, (size_t)(cap * cs->V) * sizeof *logits) : NULL;
    if (!logits) return MMT_STATUS_OUT_OF_MEMORY;
    a->logits = logits;
    a->cap_rows = cap;
    if (!a->grouped) {
        if (cs->n_groups == cs->cap_groups) {
            int64_t gc = cs->cap_groups ? 2 * cs->cap_groups : 8;
            cap_adapter **g = mmt_realloc(cs->groups, (size_t)gc * sizeof *g);
            if (!g) return MMT_STATUS_OUT_OF_MEMORY;
            cs->groups = g, cs->cap_groups = gc;
        }
    }
    return MMT_OK;
}

/* The adapter's decoding failed (and is lost): every row's request fails with it. */
static void group_fail(mmt_caption_service *cs, cap_adapter *a, const char *message) {
    mmt_log_warn("serve: captioning with '%s' failed: %s", a->name, message);
    int64_t n = a->n_rows;
    a->n_rows = 0;
    cs->running -= n;
    mmt_git_run_clear(a->run);
    for (int64_t i = 0; i < n; i++) {
        request_fail(a->rows[i]->req, 500, message);
        row_done(cs, a->rows[i]);
    }
}

/* Rows [from, n_rows) of the adapter pick their next tokens from its logits; rows that are
 * done leave the decoding (select), their requests answered after their last row. */
static void group_pick(mmt_caption_service *cs, cap_adapter *a, int64_t from) {
    int64_t n = a->n_rows, kept = 0;
    for (int64_t i = 0; i < n; i++) {
        cap_row *r = a->rows[i];
        if (i >= from && mmt_gen_row_pick(&r->g, cs->picker, a->logits + i * cs->V, &r->next) != MMT_OK) {
            request_fail(r->req, 400, mmt_last_error());
            r->g.done = 1;
        }
        if (r->g.done || r->req->status) {
            row_done(cs, r);
            continue;
        }
        a->keep[kept] = i;
        a->rows[kept++] = r;
    }
    a->n_rows = kept;
    cs->running -= n - kept;
    if (kept == n) return;
    if (kept == 0) mmt_git_run_clear(a->run);
    else if (mmt_git_run_select(a->run, a->keep, kept) != MMT_OK) group_fail(cs, a, mmt_last_error());
}

/* One decoding step for every row of every adapter. */
static void step_all(mmt_caption_service *cs) {
    int64_t rows = 0, steps = 0;
    for (int64_t k = 0; k < cs->n_groups; k++) {
        cap_adapter *a = cs->groups[k];
        if (a->n_rows == 0) continue;
        for (int64_t i = 0; i < a->n_rows; i++) a->next[i] = a->rows[i]->next;
        rows += a->n_rows;
        steps++;
        if (mmt_git_run_step(a->run, a->next, a->logits) != MMT_OK) group_fail(cs, a, mmt_last_error());
        else group_pick(cs, a, 0);
    }
    int64_t kept = 0; /* adapters left without rows leave the list */
    for (int64_t k = 0; k < cs->n_groups; k++) {
        if (cs->groups[k]->n_rows > 0) {
            cs->groups[kept++] = cs->groups[k];
        } else {
            cs->groups[k]->grouped = 0;
            adapter_release(cs, cs->groups[k]);
        }
    }
    cs->n_groups = kept;
    pthread_mutex_lock(&cs->mu);
    cs->stats.steps += steps;
    if (rows > cs->stats.most_rows) cs->stats.most_rows = rows;
    cs->stats.running = cs->running;
    pthread_mutex_unlock(&cs->mu);
}

/* ---- admitting a request (the worker's) ------------------------------------------------- */

/* pixels (n, 3, S, S) of the request's images; 0 with the request failed otherwise. */
static int prepare_images(mmt_caption_service *cs, cap_request *q, float *pixels) {
    for (int64_t i = 0; i < q->req.n_images; i++) {
        mmt_image img = {0};
        char what[64], msg[400];
        snprintf(what, sizeof what, "image %lld", (long long)i);
        mmt_status st = mmt_image_decode_memory_limit(q->req.images[i].bytes, q->req.images[i].n_bytes, what,
                                                      mmt_git_dicom_options(cs->m), cs->o.max_image_pixels, &img);
        if (st == MMT_STATUS_INVALID_ARGUMENT) { /* over the pixel limit, seen in the header */
            snprintf(msg, sizeof msg, "%s (--max-image-pixels)", mmt_last_error());
            request_fail(q, 413, msg);
        } else if (st == MMT_OK && mmt_image_preprocess(&img, mmt_git_processor(cs->m), pixels + i * 3 * cs->S * cs->S) != MMT_OK) {
            snprintf(msg, sizeof msg, "image %lld: %s", (long long)i, mmt_last_error());
            request_fail(q, 400, msg);
        } else if (st != MMT_OK) {
            request_fail(q, st == MMT_STATUS_OUT_OF_MEMORY ? 500 : 400, mmt_last_error());
        }
        mmt_image_free(&img);
        if (q->status) return 0;
    }
    return 1;
}

static int worker_loop_once(mmt_caption_service *cs, int outer);

/* Beam search runs through mmt_generate on the request's own KV cache (beam_cache), and
 * each of its steps first runs one loop of the worker, so the continuous batch (and requests
 * that join it) go on while the beams decode. */
typedef struct beam_decoder {
    mmt_caption_service *cs;
    mmt_git_run *run;
    mmt_decoder inner;
} beam_decoder;

static mmt_status beam_start(void *ctx, int64_t B, const int32_t *prompt, int64_t L, int64_t cap, float *logits) {
    beam_decoder *d = ctx;
    mmt_git_run_use_cache(d->run, d->cs->beam_cache);
    mmt_status s = d->inner.start(d->inner.ctx, B, prompt, L, cap, logits);
    mmt_git_run_use_cache(d->run, NULL);
    return s;
}

static mmt_status beam_step(void *ctx, const int32_t *tokens, float *logits) {
    beam_decoder *d = ctx;
    worker_loop_once(d->cs, 0);
    mmt_git_run_use_cache(d->run, d->cs->beam_cache);
    mmt_status s = d->inner.step(d->inner.ctx, tokens, logits);
    mmt_git_run_use_cache(d->run, NULL);
    return s;
}

static mmt_status beam_select(void *ctx, const int64_t *rows, int64_t n) {
    beam_decoder *d = ctx;
    mmt_git_run_use_cache(d->run, d->cs->beam_cache);
    mmt_status s = d->inner.select(d->inner.ctx, rows, n);
    mmt_git_run_use_cache(d->run, NULL);
    return s;
}

static void run_beams(mmt_caption_service *cs, cap_request *q, const float *feats) {
    int64_t n = q->req.n_images;
    beam_decoder d = {.cs = cs, .run = q->adapter->run};
    mmt_git_run_decoder(d.run, feats, n, &d.inner);
    mmt_decoder dec = d.inner;
    dec.ctx = &d, dec.start = beam_start, dec.step = beam_step, dec.select = beam_select;
    int32_t *prompt = NULL;
    mmt_gen_output out = {0};
    mmt_status st = MMT_OK;
    if (q->L > 1) { /* the prompt for every image; without one generate() starts at BOS, as the CLI */
        if (!(prompt = mmt_malloc((size_t)(n * q->L) * sizeof *prompt))) st = MMT_STATUS_OUT_OF_MEMORY;
        for (int64_t i = 0; prompt && i < n; i++) memcpy(prompt + i * q->L, q->prompt, (size_t)q->L * sizeof *prompt);
    }
    pthread_mutex_lock(&cs->mu);
    cs->stats.beam_requests++;
    pthread_mutex_unlock(&cs->mu);
    if (st == MMT_OK) st = mmt_generate(&dec, prompt, n, prompt ? q->L : 0, &q->req.gen, &out);
    int32_t *ids = st == MMT_OK ? mmt_malloc((size_t)(q->L + out.width) * sizeof *ids) : NULL;
    if (st == MMT_OK && !ids) st = MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; st == MMT_OK && i < n && !q->status; i++) {
        memcpy(ids, q->prompt, (size_t)q->L * sizeof *ids);
        memcpy(ids + q->L, out.tokens + i * out.width, (size_t)out.lengths[i] * sizeof *ids);
        q->tokens += out.lengths[i];
        caption_text(cs, q, i, ids, q->L + out.lengths[i]);
    }
    if (st != MMT_OK) request_fail(q, st == MMT_STATUS_INVALID_ARGUMENT ? 400 : 500, mmt_last_error());
    mmt_free(ids);
    mmt_free(prompt);
    mmt_gen_output_free(&out);
    request_finish(q);
}

/* Starts a request taken from the queue: its images into image features, then its rows into
 * its adapter's decoding (or its beam search, to the end). Every failure answers it. */
static void admit(mmt_caption_service *cs, cap_request *q) {
    cap_adapter *a = q->adapter;
    mmt_gen_settings *gen = &q->req.gen;
    const mmt_git_config *cfg = mmt_git_config_of(cs->m);
    int64_t n = q->req.n_images;
    char msg[400];
    float *pixels = mmt_malloc((size_t)(n * 3 * cs->S * cs->S) * sizeof(float));
    float *feats = mmt_malloc((size_t)(n * cs->Ni * cs->C) * sizeof(float));
    q->captions = mmt_calloc((size_t)n, sizeof *q->captions);
    if (!pixels || !feats || !q->captions) request_fail(q, 500, "out of memory");
    gen->bos_token_id = (int32_t)cfg->bos_token_id;
    gen->eos_token_id = (int32_t)cfg->eos_token_id;
    gen->pad_token_id = (int32_t)cfg->pad_token_id;
    if (!q->status && mmt_gen_settings_check(gen, cs->V) != MMT_OK) request_fail(q, 400, mmt_last_error());
    if (!q->status) { /* the text positions the adapter leaves (prefix and prompt rows take some) */
        mmt_decoder probe;
        mmt_git_run_decoder(a->run, feats, n, &probe);
        if (q->L + gen->max_new_tokens - 1 > probe.max_tokens) {
            snprintf(msg, sizeof msg, "a prompt of %lld tokens and max_new_tokens %lld need %lld text positions; the "
                     "captioner has %lld", (long long)q->L, (long long)gen->max_new_tokens,
                     (long long)(q->L + gen->max_new_tokens - 1), (long long)probe.max_tokens);
            request_fail(q, 400, msg);
        }
    }
    if (!q->status && prepare_images(cs, q, pixels) && mmt_git_run_image_features(a->run, pixels, n, feats) != MMT_OK)
        request_fail(q, 500, mmt_last_error());
    if (q->status) {
        request_finish(q);
    } else if (gen->num_beams > 1) {
        run_beams(cs, q, feats);
    } else {
        int64_t was = a->n_rows;
        int32_t *ids = mmt_malloc((size_t)(n * q->L) * sizeof *ids);
        q->rows = mmt_calloc((size_t)n, sizeof *q->rows);
        mmt_status st = ids && q->rows ? group_reserve(cs, a, was + n) : MMT_STATUS_OUT_OF_MEMORY;
        for (int64_t i = 0; st == MMT_OK && i < n; i++) {
            memcpy(ids + i * q->L, q->prompt, (size_t)q->L * sizeof *ids);
            q->rows[i].req = q, q->rows[i].index = i;
            st = mmt_gen_row_init(&q->rows[i].g, gen, q->prompt, q->L, i);
        }
        if (st == MMT_OK) st = mmt_git_run_join(a->run, feats, n, ids, q->L, q->L + gen->max_new_tokens - 1,
                                                a->logits + was * cs->V);
        mmt_free(ids);
        if (st != MMT_OK) {
            char why[400];
            snprintf(why, sizeof why, "%s", mmt_last_error());
            request_fail(q, 500, why);
            if (was > 0) group_fail(cs, a, why); /* a failed join loses the decoding */
            request_finish(q);
        } else {
            for (int64_t i = 0; i < n; i++) a->rows[was + i] = &q->rows[i];
            a->n_rows = was + n;
            q->rows_left = n;
            cs->running += n;
            pthread_mutex_lock(&cs->mu);
            if (!a->grouped) { /* the list holds a reference: the last request may let go first */
                cs->groups[cs->n_groups++] = a;
                a->grouped = 1;
                a->refs++;
            }
            cs->stats.joins++;
            cs->stats.joins_running += was > 0;
            pthread_mutex_unlock(&cs->mu);
            group_pick(cs, a, was);
        }
    }
    mmt_free(pixels);
    mmt_free(feats);
}

/* ---- the worker ------------------------------------------------------------------------ */

/* One loop: take what fits from the queue (oldest first), start it, and step every row.
 * outer: the worker's own loop, which waits for work and returns 0 once stopping with
 * nothing left; inside a beam search (outer 0) it never waits and leaves beam requests
 * queued for later. */
static int worker_loop_once(mmt_caption_service *cs, int outer) {
    cap_request *take = NULL, **take_end = &take, *expired = NULL;
    pthread_mutex_lock(&cs->mu);
    while (outer && !cs->stopping && !cs->head && cs->running == 0) pthread_cond_wait(&cs->wake, &cs->mu);
    if (outer && cs->stopping && !cs->head && cs->running == 0) {
        pthread_mutex_unlock(&cs->mu);
        return 0;
    }
    double now = mmt_now_seconds();
    int64_t rows = cs->running;
    for (cap_request **p = &cs->head; *p;) {
        cap_request *q = *p;
        int beams = q->req.gen.num_beams > 1;
        if (q->deadline > 0 && now > q->deadline) {
            *p = q->next;
            q->next = expired, expired = q;
            continue;
        }
        if (beams && !outer) { /* after the beam search running */
            p = &q->next;
            continue;
        }
        if (rows > 0 && rows + q->req.n_images > cs->o.max_batch) break; /* oldest first: wait for room */
        *p = q->next;
        q->next = NULL;
        *take_end = q, take_end = &q->next;
        rows += q->req.n_images;
        if (beams) break; /* it runs to its end in this loop */
    }
    cs->stats.queued = 0;
    for (cap_request *q = cs->head; q; q = q->next) cs->stats.queued++;
    pthread_mutex_unlock(&cs->mu);
    while (expired) {
        cap_request *q = expired;
        expired = q->next;
        request_fail(q, 503, "the request waited past its deadline (--deadline-ms); the captioner is overloaded");
        request_finish(q);
    }
    while (take) {
        cap_request *q = take;
        take = q->next;
        admit(cs, q);
    }
    step_all(cs);
    return 1;
}

static void *worker_main(void *arg) {
    mmt_caption_service *cs = arg;
    while (worker_loop_once(cs, 1)) {
    }
    return NULL;
}

/* ---- HTTP ------------------------------------------------------------------------------- */

static void handle_caption(mmt_caption_service *cs, const mmt_http_request *req, mmt_http_reply *reply) {
    double t0 = mmt_now_seconds();
    char err[400];
    cap_request *q = mmt_calloc(1, sizeof *q);
    int status = q ? mmt_serve_parse_caption(req->body, req->body_len, cs->o.max_images, cs->o.max_new_tokens, &q->req, err,
                                             sizeof err)
                   : 500;
    if (!q) snprintf(err, sizeof err, "out of memory");
    if (!status && !(q->adapter = adapter_acquire(cs, q->req.model))) {
        status = 404;
        snprintf(err, sizeof err, "no captioner adapter named '%.100s' is loaded (GET /v1/caption/adapters lists them)",
                 q->req.model);
    }
    if (!status) { /* [CLS] + the prompt's tokens: the tokenizer is read-only, any thread may use it */
        const char *text = q->req.prompt ? q->req.prompt : "";
        int64_t total = 0;
        mmt_status st = mmt_wordpiece_encode(cs->tok, text, strlen(text), 0, NULL, 0, &total);
        if (st == MMT_OK && !(q->prompt = mmt_malloc((size_t)(total + 1) * sizeof *q->prompt))) st = MMT_STATUS_OUT_OF_MEMORY;
        if (st == MMT_OK) {
            q->prompt[0] = (int32_t)mmt_git_config_of(cs->m)->bos_token_id;
            st = mmt_wordpiece_encode(cs->tok, text, strlen(text), 0, q->prompt + 1, total, &total);
            q->L = total + 1;
        }
        if (st != MMT_OK) {
            status = st == MMT_STATUS_OUT_OF_MEMORY ? 500 : 400;
            snprintf(err, sizeof err, "prompt: %s", mmt_last_error());
        }
    }
    if (!status && q->req.n_words) { /* allowed_words / bad_words as token sequences */
        int64_t n = 0;
        mmt_status st = mmt_wordpiece_word_sequences(cs->tok, (const char *const *)q->req.words, q->req.n_words,
                                                     &q->word_ids, &q->word_len, &n);
        mmt_gen_sequences seqs = {q->word_ids, q->word_len, n};
        if (st == MMT_OK && q->req.words_allowed) st = mmt_wordpiece_check_writable(cs->tok, q->word_ids, q->word_len, n);
        if (st == MMT_OK && q->req.words_allowed) st = mmt_gen_words_create(&seqs, cs->V, &q->allowed);
        if (st == MMT_OK && q->req.words_allowed) q->req.gen.allowed_words = q->allowed;
        else if (st == MMT_OK) q->req.gen.bad_words = seqs;
        if (st != MMT_OK) {
            status = st == MMT_STATUS_OUT_OF_MEMORY ? 500 : 400;
            snprintf(err, sizeof err, "%s: %s", q->req.words_allowed ? "allowed_words" : "bad_words", mmt_last_error());
        }
    }
    if (!status) {
        q->cs = cs, q->reply = reply, q->t0 = t0;
        q->deadline = cs->o.deadline_s > 0 ? mmt_now_seconds() + cs->o.deadline_s : 0; /* time in the queue */
        pthread_mutex_lock(&cs->mu);
        if (cs->stopping) {
            status = 503;
            snprintf(err, sizeof err, "the server is shutting down");
        } else {
            cap_request **p = &cs->head;
            while (*p) p = &(*p)->next;
            *p = q;
            cs->stats.queued++;
            cs->stats.in_flight++;
            q->cs_counted = 1;
            pthread_cond_signal(&cs->wake);
        }
        pthread_mutex_unlock(&cs->mu);
        if (!status) return;
    }
    mmt_http_reply_error(reply, status, status >= 500 ? "server_error" : "invalid_request_error", err);
    const char *name = q && q->adapter ? q->adapter->name : "base";
    mmt_metrics_request(cs->metrics, "/v1/caption", name, status, mmt_now_seconds() - t0);
    if (q) {
        adapter_release(cs, q->adapter);
        request_free(q);
    }
}

static mmt_status load_adapter(void *user, const char *name, const char *dir) {
    return mmt_caption_service_adapter_load(user, name, dir);
}

static void handle_adapters(mmt_caption_service *cs, const mmt_http_request *req, mmt_http_reply *reply) {
    const char *path = req->path + strlen("/v1/caption/adapters");
    if (!strcmp(req->method, "GET") && !path[0]) {
        mmt_strbuf b = {0};
        mmt_strbuf_printf(&b, "{\"object\": \"list\", \"data\": [");
        mmt_caption_service_adapters_json(cs, &b);
        mmt_strbuf_printf(&b, "]}\n");
        mmt_http_reply_json(reply, 200, &b);
        mmt_strbuf_free(&b);
        return;
    }
    if (!strcmp(req->method, "DELETE") && path[0] == '/' && path[1]) {
        char msg[200];
        if (mmt_caption_service_adapter_unload(cs, path + 1)) {
            mmt_strbuf b = {0};
            mmt_strbuf_printf(&b, "{\"name\": ");
            mmt_strbuf_json_string(&b, path + 1, strlen(path + 1));
            mmt_strbuf_printf(&b, ", \"kind\": \"captioner\", \"deleted\": true}\n");
            mmt_http_reply_json(reply, 200, &b);
            mmt_strbuf_free(&b);
            mmt_log_info("serve: captioner adapter '%s' unloaded", path + 1);
        } else {
            snprintf(msg, sizeof msg, "no captioner adapter named '%.100s' is loaded", path + 1);
            mmt_http_reply_error(reply, 404, "invalid_request_error", msg);
        }
        return;
    }
    if (!strcmp(req->method, "POST") && !path[0]) { /* serve/adapter_load.h */
        mmt_adapter_load_ops ops = {.load = load_adapter, .user = cs, .in_flight = &cs->loads_in_flight,
                                    .extra_json = ", \"kind\": \"captioner\"", .what = "captioner adapter"};
        mmt_adapter_load_async(req, reply, &ops);
        return;
    }
    mmt_http_reply_405(reply, "GET, POST, DELETE", "use GET or POST /v1/caption/adapters, DELETE /v1/caption/adapters/NAME");
}

void mmt_caption_service_stats(mmt_caption_service *cs, mmt_caption_stats *out) {
    pthread_mutex_lock(&cs->mu);
    *out = cs->stats;
    pthread_mutex_unlock(&cs->mu);
}

static void handle_status(mmt_caption_service *cs, mmt_http_reply *reply) {
    mmt_caption_stats st;
    mmt_caption_service_stats(cs, &st);
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{\"ready\": %s, \"running_rows\": %lld, \"queued_requests\": %lld, \"steps\": %lld, "
                      "\"joins\": %lld, \"joins_running\": %lld, \"most_rows_per_step\": %lld, \"beam_requests\": %lld, "
                      "\"requests\": %lld, \"requests_in_flight\": %lld, \"generated_tokens\": %lld, \"max_batch\": %lld, "
                      "\"adapters\": %lld}\n",
                      atomic_load(&cs->ready) ? "true" : "false", (long long)st.running, (long long)st.queued,
                      (long long)st.steps, (long long)st.joins, (long long)st.joins_running, (long long)st.most_rows,
                      (long long)st.beam_requests, (long long)st.requests, (long long)st.in_flight, (long long)st.tokens,
                      (long long)cs->o.max_batch, (long long)mmt_caption_service_adapter_count(cs));
    mmt_http_reply_json(reply, 200, &b);
    mmt_strbuf_free(&b);
}

void mmt_caption_service_handle(mmt_caption_service *cs, const mmt_http_request *req, mmt_http_reply *reply) {
    int get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD"), post = !strcmp(req->method, "POST");
    if (!atomic_load(&cs->ready)) {
        mmt_http_reply_error(reply, 503, "server_error", "the captioner is still loading");
    } else if (!strcmp(req->path, "/v1/caption")) {
        if (post) handle_caption(cs, req, reply);
        else mmt_http_reply_405(reply, "POST", "use POST /v1/caption");
    } else if (!strcmp(req->path, "/v1/caption/status")) {
        if (get) handle_status(cs, reply);
        else mmt_http_reply_405(reply, "GET", "use GET /v1/caption/status");
    } else if (!strncmp(req->path, "/v1/caption/adapters", 20) && (!req->path[20] || req->path[20] == '/')) {
        handle_adapters(cs, req, reply);
    } else {
        char msg[300];
        snprintf(msg, sizeof msg, "no endpoint %.200s (see docs/serving.md, Captioning)", req->path);
        mmt_http_reply_error(reply, 404, "invalid_request_error", msg);
    }
}

/* ---- start and stop ----------------------------------------------------------------------- */

int mmt_caption_service_ready(const mmt_caption_service *cs) { return cs && atomic_load(&cs->ready); }

mmt_status mmt_caption_service_start(const char *git_dir, const mmt_caption_service_options *o, mmt_metrics *metrics,
                                     mmt_caption_service **out) {
    *out = NULL;
    if (!git_dir) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "captioner: no model folder");
    if (o->max_batch < 1 || o->max_new_tokens < 1 || o->max_images < 1 || o->max_image_pixels < 1 || o->max_adapters < 0 ||
        !(o->deadline_s >= 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "captioner: max batch, new tokens, images and pixels must be >= 1");
    mmt_caption_service *cs = mmt_calloc(1, sizeof *cs);
    if (!cs) return MMT_STATUS_OUT_OF_MEMORY;
    cs->o = *o;
    cs->o.adapter_names = cs->o.adapter_dirs = NULL, cs->o.n_adapters = 0; /* borrowed for start only */
    cs->metrics = metrics;
    pthread_mutex_init(&cs->mu, NULL);
    pthread_cond_init(&cs->wake, NULL);
    const char *slash = strrchr(git_dir, '/');
    mmt_status st = (cs->base_name = mmt_strdup(slash && slash[1] ? slash + 1 : git_dir)) ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (st == MMT_OK) st = mmt_git_load(git_dir, &cs->m);
    if (st == MMT_OK) mmt_git_set_dicom_options(cs->m, &o->dicom);
    if (st == MMT_OK && o->quantize) {
        mmt_quant_options q;
        mmt_quant_options_default(&q, (mmt_quant_type)o->quantize);
        st = mmt_git_quantize(cs->m, &q);
    }
    if (st == MMT_OK && !o->no_prepack) st = mmt_git_prepack(cs->m); /* inference only: pack once */
    if (st == MMT_OK && !(cs->tok = mmt_git_tokenizer(cs->m)))
        st = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: the captioner has no tokenizer.json", git_dir);
    if (st == MMT_OK) {
        const mmt_git_config *c = mmt_git_config_of(cs->m);
        cs->V = c->vocab_size, cs->S = c->vision.image_size, cs->C = c->hidden_size;
        cs->Ni = mmt_git_image_tokens(cs->m);
        st = adapter_open(cs, "base", NULL, &cs->base);
    }
    if (st == MMT_OK) st = mmt_git_cache_create(cs->base->run, &cs->beam_cache);
    if (st == MMT_OK) st = mmt_gen_picker_create(cs->V, &cs->picker);
    for (int64_t i = 0; st == MMT_OK && i < o->n_adapters; i++) {
        st = mmt_caption_service_adapter_load(cs, o->adapter_names[i], o->adapter_dirs[i]);
        if (st != MMT_OK) st = mmt_error_prefix(st, "captioner adapter %s: ", o->adapter_names[i]);
    }
    if (st == MMT_OK) {
        if (pthread_create(&cs->worker, NULL, worker_main, cs) != 0) st = mmt_fail(MMT_STATUS_INTERNAL, "captioner: cannot start its worker");
        else cs->worker_started = 1;
    }
    if (st != MMT_OK) {
        mmt_caption_service_stop(cs);
        return st;
    }
    atomic_store(&cs->ready, 1);
    mmt_log_info("serve: captioner ready (%s, %lld adapters)", git_dir, (long long)cs->n_adapters);
    *out = cs;
    return MMT_OK;
}

void mmt_caption_service_stop(mmt_caption_service *cs) {
    if (!cs) return;
    pthread_mutex_lock(&cs->mu);
    cs->stopping = 1;
    pthread_cond_broadcast(&cs->wake);
    pthread_mutex_unlock(&cs->mu);
    if (cs->worker_started) pthread_join(cs->worker, NULL); /* it answers everything queued first */
    while (atomic_load(&cs->loads_in_flight) > 0) usleep(2000);
    for (int64_t i = 0; i < cs->n_adapters; i++) adapter_release(cs, cs->adapters[i]);
    adapter_release(cs, cs->base);
    mmt_free(cs->adapters);
    mmt_free(cs->groups);
    mmt_gen_picker_free(cs->picker);
    mmt_git_cache_free(cs->beam_cache);
    mmt_git_free(cs->m);
    mmt_free(cs->base_name);
    pthread_cond_destroy(&cs->wake);
    pthread_mutex_destroy(&cs->mu);
    mmt_free(cs);
}
