/*
 * caption_service.h — captioning for `mmtune serve --captioner GIT_DIR`: POST /v1/caption
 * with continuous batching over one GIT captioner and any number of its adapters
 * (docs/serving.md, Captioning).
 *
 * The service owns the GIT model, a registry of adapters by name (refcounted: a request
 * holds its adapter until it is answered, so one unloaded meanwhile finishes on what it
 * started with) and one worker thread that loops:
 *   1. take the requests queued since the last step while the rows decoding stay within
 *      max_batch (oldest first; a request past its deadline gets 503 instead);
 *   2. for each: decode and preprocess its images, compute their image features, and join
 *      its rows (one per image) into the running decoding of its adapter (models/git.h
 *      mmt_git_run_join), whose first logits give each row its first token;
 *   3. one decoding step for every running row (one mmt_git_run_step per adapter), each row
 *      picking its token by its own request's settings (gen/row.h: greedy or sampling,
 *      generate()'s processors), rows at EOS or max_new_tokens leaving the batch (select),
 *      and each request answered when its last row is done.
 * So a request arriving while a step runs joins at the next step, and leaves as soon as it
 * is done. Rows of different adapters cannot share a step: an adapter is attached to a GIT
 * run context (its LoRA / IA3 tensors in the run's linears, a prompt or prefix in its
 * attention), so each adapter has its run and its running rows, and a step runs them
 * adapter by adapter. Beam search (num_beams > 1) runs through mmt_generate on a KV cache
 * of its own (mmt_git_cache), one request at a time, and every step of its beams also
 * advances the continuous batch one step, so beams do not hold up the others.
 *
 * Each caption is what `mmtune caption` prints for the same image, adapter, prompt and
 * settings (sampling: image i of a request draws from stream (seed, i), as the CLI's i-th
 * image of one batch).
 *
 * Usage (serve/server.c):
 *     mmt_caption_service_options o;  mmt_caption_service_options_default(&o);
 *     MMT_TRY(mmt_caption_service_start("models/mmtune-git-tiny", &o, metrics, &cs));
 *     mmt_caption_service_handle(cs, req, reply);   // on the polling thread: /v1/caption...
 *     mmt_caption_service_stop(cs);                 // answers what is in flight, frees
 */
#ifndef MMT_SERVE_CAPTION_SERVICE_H
#define MMT_SERVE_CAPTION_SERVICE_H

#include <stdint.h>

#include "core/json.h"
#include "core/status.h"
#include "data/image.h"
#include "serve/http.h"
#include "serve/metrics.h"

typedef struct mmt_caption_service_options {
    int64_t max_batch;         /* rows (images) decoding together (default 32) */
    int64_t max_new_tokens;    /* the most a request may ask for (default 128; requests default to 30) */
    int64_t max_images;        /* images per request (default 16) */
    int64_t max_image_pixels;  /* width x height of a decoded image (default 16 Mpx) */
    double deadline_s;         /* a request not started by then gets 503 (default 30; 0: none) */
    int max_adapters;          /* default 1024 */
    const char *const *adapter_names; /* start-up adapters (n_adapters): names and folders */
    const char *const *adapter_dirs;
    int64_t n_adapters;
    int quantize;              /* mmtune.h mmt_quant_type for the captioner's linears (0: fp32) */
    int no_prepack;            /* 1: do not prepack the fp32 linears at start (less memory) */
    mmt_dicom_options dicom;   /* uploaded DICOM images' window (zeroed: each file's own) */
} mmt_caption_service_options;

void mmt_caption_service_options_default(mmt_caption_service_options *o);

typedef struct mmt_caption_service mmt_caption_service;

/* Loads the captioner (and the start-up adapters) and starts the worker; ready on success.
 * metrics is borrowed (requests, latencies, generated tokens go there). */
mmt_status mmt_caption_service_start(const char *git_dir, const mmt_caption_service_options *o, mmt_metrics *metrics,
                                     mmt_caption_service **out);
int mmt_caption_service_ready(const mmt_caption_service *cs);

/* Answers a request whose path starts with /v1/caption (never blocks; called on the polling
 * thread):
 *   POST   /v1/caption                    caption images (caption_request.h has the body)
 *   GET    /v1/caption/adapters           the captioner's adapters, "kind": "captioner"
 *   POST   /v1/caption/adapters           {"name", "path"}: load one while serving (201)
 *   DELETE /v1/caption/adapters/NAME      unload it
 *   GET    /v1/caption/status             the continuous batch's counters (below)
 * Errors are 4xx / 5xx JSON one-liners, as the other endpoints'. */
void mmt_caption_service_handle(mmt_caption_service *cs, const mmt_http_request *req, mmt_http_reply *reply);

/* The adapter registry, for callers that route other paths to it. Names are the "model" of
 * /v1/caption, apart from the CLIP adapters of /v1/adapters. load reads the folder (call it
 * off the polling thread); INVALID_ARGUMENT names a taken name or a bad one. */
mmt_status mmt_caption_service_adapter_load(mmt_caption_service *cs, const char *name, const char *dir);
int mmt_caption_service_adapter_unload(mmt_caption_service *cs, const char *name); /* 0: none */
int64_t mmt_caption_service_adapter_count(mmt_caption_service *cs);
/* Appends {"name", "path", "kind": "captioner"} per adapter, comma-separated, to b. */
void mmt_caption_service_adapters_json(mmt_caption_service *cs, mmt_strbuf *b);

typedef struct mmt_caption_stats {
    int64_t requests;       /* caption requests answered */
    int64_t steps;          /* decoding steps run (one per adapter with rows, per loop) */
    int64_t joins;          /* requests whose rows joined a decoding */
    int64_t joins_running;  /* ... that joined while other rows of it were mid-decoding */
    int64_t most_rows;      /* the most rows one step has run */
    int64_t running;        /* rows decoding now */
    int64_t queued;         /* requests waiting to join */
    int64_t in_flight;      /* requests accepted and not answered yet */
    int64_t beam_requests;  /* requests decoded by beam search */
    int64_t tokens;         /* tokens generated */
} mmt_caption_stats;

void mmt_caption_service_stats(mmt_caption_service *cs, mmt_caption_stats *out);

/* Stops taking requests, finishes and answers every one queued or decoding, then stops the
 * worker and frees everything. NULL is fine. */
void mmt_caption_service_stop(mmt_caption_service *cs);

#endif
