/*
 * server.h — `mmtune serve`: a CLIP behind HTTP, with many adapters over one base and
 * dynamic batching (docs/serving.md has the endpoints and their JSON).
 *
 * mmt_server_start listens at once and loads the model on a thread of its own: /health
 * answers 503 {"status": "loading"} until the model and the start-up adapters are in, then
 * 200. Requests for the model queue on one batcher (serve/batcher.h); a batch mixes rows of
 * any adapters (the run context's mixed batches, mmtune.h), texts and images, from
 * /v1/embeddings and /v1/classify alike. Adapters load and unload while serving; a request
 * holds a reference to its adapter, so one that is unloaded finishes on what it started
 * with. A request that fails (bad JSON, a text over the context, a corrupt image) fails
 * alone with a 4xx JSON error; the others of its batch are answered normally.
 *
 * A/B routes: a request whose "model" names a route (options.routes) is served by one of
 * the route's adapters, drawn by weight (sticky per client key: the "user" field or the
 * X-Client-Key header; else from the seeded stream). The answer names the arm (fields
 * "route", "adapter", "request_id"; headers X-Route, X-Route-Arm); every answer carries
 * X-Request-Id. POST /v1/feedback appends clients' events about answers to the feedback
 * file, with the arm that served them (serve/feedback.h); /metrics counts both per arm.
 * An adapter that is an arm of a route cannot be unloaded, nor a name of a route loaded.
 *
 * Usage:
 *     mmt_server_options o;
 *     mmt_server_options_default(&o);
 *     o.model_dir = "models/mmtune-clip-tiny"; o.port = 8080;
 *     MMT_TRY(mmt_server_start(&o, &srv));
 *     ... (SIGTERM) mmt_server_stop(srv);   // stops accepting, answers what is in flight
 */
#ifndef MMT_SERVE_SERVER_H
#define MMT_SERVE_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "data/image.h"

typedef struct mmt_server_options {
    const char *model_dir;
    const char *index_dir;            /* a catalogue index (mmtune index) for /v1/search, or NULL */
    const char *const *adapter_names; /* start-up adapters: names and folders (n_adapters) */
    const char *const *adapter_dirs;
    int64_t n_adapters;
    const char *host;          /* default 127.0.0.1 */
    int port;                  /* 0: any free port */
    int64_t max_batch;         /* rows per batch (default 32; 1: no batching) */
    double max_wait_ms;        /* how long the oldest request waits for a batch (default 5) */
    size_t max_body_bytes;     /* default 16 MiB */
    int64_t max_inputs;        /* inputs (texts, images, labels) per request (default 256) */
    int64_t max_image_pixels;  /* width x height of a decoded image (default 16 Mpx) */
    int max_connections;       /* default 256 */
    int idle_timeout_s;        /* a connection idle this long is closed (default 30) */
    double deadline_s;         /* a request not started by then gets 503 (default 30) */
    int max_adapters;          /* default 1024 */
    /* captioning (serve/caption_service.h): a GIT snapshot for POST /v1/caption, or NULL;
     * its start-up adapters (n_caption_adapters names and folders); the most new tokens a
     * request may ask for (default 128) */
    const char *captioner_dir;
    const char *const *caption_adapter_names;
    const char *const *caption_adapter_dirs;
    int64_t n_caption_adapters;
    int64_t max_new_tokens;
    int quantize;              /* mmtune.h mmt_quant_type for both models' linears (0: fp32) */
    int no_prepack;            /* 1: do not prepack the fp32 linears at start (less memory) */
    mmt_dicom_options dicom;   /* uploaded DICOM images' window (zeroed: each file's own) */
    /* A/B routes (serve/ab_route.h): n_routes specs "NAME=ADAPTER:WEIGHT,..." whose arms are
     * start-up adapters (adapter_names) or "base"; a request's "model" may name a route. The
     * seed of the draws of requests without a client key. The feedback file of POST
     * /v1/feedback (NULL: that endpoint answers 404) and its sync policy (serve/feedback.h). */
    const char *const *routes;
    int64_t n_routes;
    uint64_t route_seed;
    const char *feedback_path;
    int feedback_fsync;        /* mmt_feedback_fsync (default 0: once a second) */
} mmt_server_options;

void mmt_server_options_default(mmt_server_options *o);

typedef struct mmt_server mmt_server;

mmt_status mmt_server_start(const mmt_server_options *o, mmt_server **out);
int mmt_server_port(const mmt_server *s);
/* Waits until the model is loaded: 1 ready, 0 still loading after timeout_s, -1 the load
 * failed (the reason in mmt_last_error()). */
int mmt_server_wait_ready(mmt_server *s, double timeout_s);
/* Stops accepting, answers every request in flight (waiting at most drain_s), stops. NULL
 * is fine. */
void mmt_server_stop(mmt_server *s, double drain_s);

#endif
