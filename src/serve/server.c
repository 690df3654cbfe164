/* server.c — routes, the adapter registry and the batch runner of `mmtune serve` (server.h). */
#include "serve/server.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "core/log.h"
#include "data/image.h"
#include "data/image_write.h"
#include "data/preprocess.h"
#include "eval/report.h"
#include "mmtune.h"
#include "models/clip.h"
#include "models/clip_config.h"
#include "serve/ab_route.h"
#include "serve/adapter_load.h"
#include "serve/batcher.h"
#include "serve/caption_service.h"
#include "serve/feedback.h"
#include "serve/http.h"
#include "serve/index.h"
#include "serve/metrics.h"
#include "serve/multipart.h"
#include "serve/request.h"
#include "serve/web_page.h"
#include "train/fingerprint.h"

enum { LOADING = 0, READY = 1, FAILED = -1 };

typedef struct adapter_ref {
    char name[64];
    char *dir;
    mmt_clip_adapter *a;
    int refs;    /* requests holding it, plus one while it is in the registry */
    struct adapter_ref *next_dead;
} adapter_ref;

struct mmt_server {
    mmt_server_options o;
    char *model_dir;
    mmt_http *http;
    mmt_metrics *metrics;
    mmt_batcher *batcher;
    pthread_t loader;
    int loader_started;
    _Atomic int state;
    char load_error[512];
    mmt_clip *model;
    mmt_clip_run *run;       /* the batch worker's */
    int64_t dim, image_size;
    float logit_scale;
    pthread_mutex_t mu;      /* the registry */
    adapter_ref **adapters;
    int64_t n_adapters, cap_adapters;
    _Atomic int64_t loads_in_flight;
    mmt_index *index;            /* --index: the catalogue (NULL: none) */
    adapter_ref *index_adapter;  /* the adapter the index was built with (NULL: the base) */
    adapter_ref *dead;           /* released adapters the worker's run must forget before closing */
    mmt_caption_service *captioner; /* --captioner: /v1/caption (NULL: none; set before READY) */
    mmt_route *routes;           /* --route: A/B routes (n_routes; fixed after start) */
    int64_t n_routes;
    mmt_route_recent recent;     /* request id -> (route, arm) of the last routed requests */
    mmt_feedback_log *feedback;  /* --feedback: POST /v1/feedback's file (NULL: none) */
};

#define MAX_ROUTES 64

/* ---- small helpers ------------------------------------------------------------------- */

void mmt_server_options_default(mmt_server_options *o) {
    memset(o, 0, sizeof *o);
    o->max_batch = 32;
    o->max_wait_ms = 5;
    o->max_body_bytes = (size_t)16 << 20;
    o->max_inputs = 256;
    o->max_image_pixels = INT64_C(16) << 20;
    o->max_connections = 256;
    o->idle_timeout_s = 30;
    o->deadline_s = 30;
    o->max_adapters = 1024;
    o->max_new_tokens = 128;
}


/* ---- adapter registry ---------------------------------------------------------------- */

/* Drops a reference. The last one hands the adapter to the batch worker (close_dead), whose
 * run context must forget it before it is closed: the run is the worker's alone. */
static void adapter_release(mmt_server *s, adapter_ref *a) {
    if (!a) return;
    pthread_mutex_lock(&s->mu);
    if (--a->refs == 0) {
        a->next_dead = s->dead;
        s->dead = a;
    }
    pthread_mutex_unlock(&s->mu);
}

/* On the batch worker (or once it has stopped): closes the adapters nobody holds any more. */
static void close_dead(mmt_server *s) {
    pthread_mutex_lock(&s->mu);
    adapter_ref *a = s->dead;
    s->dead = NULL;
    pthread_mutex_unlock(&s->mu);
    while (a) {
        adapter_ref *next = a->next_dead;
        mmt_clip_run_forget(s->run, a->a);
        mmt_clip_adapter_close(a->a);
        mmt_free(a->dir);
        mmt_free(a);
        a = next;
    }
}

/* The adapter a request names, with a reference taken; *a NULL for the base. 0 when the name
 * is unknown. */
/* Whether name names the base: "base", the model folder's path or its last component. */
static int is_base_name(const mmt_server *s, const char *name) {
    if (!strcmp(name, "base") || !strcmp(name, s->model_dir)) return 1;
    size_t n = strlen(s->model_dir);
    while (n > 1 && s->model_dir[n - 1] == '/') n--; /* "runs/clip/" is "clip" */
    size_t at = n;
    while (at > 0 && s->model_dir[at - 1] != '/') at--;
    return n > at && strlen(name) == n - at && !strncmp(name, s->model_dir + at, n - at);
}

static int adapter_acquire(mmt_server *s, const char *name, adapter_ref **a) {
    *a = NULL;
    if (!name || !name[0] || is_base_name(s, name)) return 1;
    pthread_mutex_lock(&s->mu);
    for (int64_t i = 0; i < s->n_adapters; i++)
        if (!strcmp(s->adapters[i]->name, name)) {
            *a = s->adapters[i];
            (*a)->refs++;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    return *a != NULL;
}

/* The index of the route called name, or -1. */
static int route_find(const mmt_server *s, const char *name) {
    for (int64_t i = 0; name && i < s->n_routes; i++)
        if (!strcmp(s->routes[i].name, name)) return (int)i;
    return -1;
}

/* The first route with an arm served by adapter name, or -1. */
static int route_using(const mmt_server *s, const char *name) {
    for (int64_t i = 0; i < s->n_routes; i++)
        if (mmt_route_find_arm(&s->routes[i], name) >= 0) return (int)i;
    return -1;
}

/* Opens dir and registers it as name; a one-line error otherwise. */
static mmt_status adapter_add(mmt_server *s, const char *name, const char *dir) {
    if (!mmt_serve_valid_name(name))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adapter name '%s': use 1-63 of A-Z a-z 0-9 _ - . (not 'base')", name);
    if (route_find(s, name) >= 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "'%s' is already the name of a route (--route)", name);
    if (is_base_name(s, name))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adapter name '%s' is already the base model's name (its folder)", name);
    adapter_ref *a = mmt_calloc(1, sizeof *a);
    if (!a || !(a->dir = mmt_strdup(dir))) {
        mmt_free(a);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    snprintf(a->name, sizeof a->name, "%s", name);
    mmt_status st = mmt_clip_adapter_open(s->model, dir, &a->a);
    if (st != MMT_OK) {
        mmt_free(a->dir);
        mmt_free(a);
        return st;
    }
    a->refs = 1;
    pthread_mutex_lock(&s->mu);
    for (int64_t i = 0; i < s->n_adapters; i++)
        if (!strcmp(s->adapters[i]->name, name)) st = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adapter '%s' is already loaded", name);
    if (st == MMT_OK && s->n_adapters >= s->o.max_adapters)
        st = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "already %d adapters loaded (--max-adapters)", s->o.max_adapters);
    if (st == MMT_OK && s->n_adapters == s->cap_adapters) {
        int64_t cap = s->cap_adapters ? 2 * s->cap_adapters : 16;
        adapter_ref **g = mmt_realloc(s->adapters, (size_t)cap * sizeof *g);
        if (g) s->adapters = g, s->cap_adapters = cap;
        else st = MMT_STATUS_OUT_OF_MEMORY;
    }
    if (st == MMT_OK) s->adapters[s->n_adapters++] = a;
    pthread_mutex_unlock(&s->mu);
    if (st != MMT_OK) adapter_release(s, a);
    return st;
}

/* Drops name from the registry (requests holding it finish first); 0 if there is none, -1
 * (and nothing done) if it is an arm of a route. */
static int adapter_remove(mmt_server *s, const char *name) {
    adapter_ref *a = NULL;
    if (route_using(s, name) >= 0) return -1;
    pthread_mutex_lock(&s->mu);
    for (int64_t i = 0; i < s->n_adapters; i++)
        if (!strcmp(s->adapters[i]->name, name)) {
            a = s->adapters[i];
            memmove(s->adapters + i, s->adapters + i + 1, (size_t)(s->n_adapters - i - 1) * sizeof *s->adapters);
            s->n_adapters--;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    adapter_release(s, a);
    return a != NULL;
}

static int64_t adapter_count(mmt_server *s) {
    pthread_mutex_lock(&s->mu);
    int64_t n = s->n_adapters;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- CLIP requests and their batches ------------------------------------------------- */

typedef struct clip_job {
    mmt_batch_job job;
    mmt_server *srv;
    mmt_http_reply *reply;
    const char *endpoint;
    double t0;
    adapter_ref *adapter;
    char adapter_name[64];
    mmt_clip_request req; /* rows: req.inputs (classify: the images, then the label prompts) */
    int classify;
    int search;           /* /v1/search: the one input is the query */
    mmt_search_options search_opt;
    mmt_search_filter *filters; /* owned (search_opt.n_filters) */
    int thumbnails;       /* search: each hit with a PNG thumbnail of its image */
    float *out;           /* (rows, dim) */
    int64_t tokens;
    int status;           /* 0 while fine, else the HTTP status of its error */
    char error[400];
    int route, arm;       /* the A/B route that chose its adapter, and the arm (route -1: none) */
    char request_id[65];
} clip_job;

static void clip_job_free(clip_job *j) {
    for (int64_t i = 0; i < j->search_opt.n_filters; i++) mmt_search_filter_free(&j->filters[i]);
    mmt_free(j->filters);
    mmt_clip_request_free(&j->req);
    mmt_free(j->out);
    mmt_free(j);
}

/* Answers the job (its error, or its result) and frees it. */
static void clip_job_finish(clip_job *j, int status, const mmt_strbuf *body) {
    mmt_server *s = j->srv;
    const mmt_route *route = j->route >= 0 ? &s->routes[j->route] : NULL;
    if (route) {
        mmt_http_reply_header(j->reply, "X-Route", route->name);
        mmt_http_reply_header(j->reply, "X-Route-Arm", route->arms[j->arm].adapter);
    }
    if (j->status) mmt_http_reply_error(j->reply, j->status, j->status >= 500 ? "server_error" : "invalid_request_error",
                                        j->error);
    else mmt_http_reply_json(j->reply, status, body);
    double seconds = mmt_now_seconds() - j->t0;
    mmt_metrics_request(s->metrics, j->endpoint, j->adapter_name, j->status ? j->status : status, seconds);
    if (route) mmt_metrics_route_request(s->metrics, route->name, route->arms[j->arm].adapter, j->status ? j->status : status, seconds);
    adapter_release(s, j->adapter);
    clip_job_free(j);
}

static void job_fail(clip_job *j, int status, const char *fmt, const char *detail) {
    if (j->status) return;
    j->status = status;
    snprintf(j->error, sizeof j->error, fmt, detail);
}

/* One image row of a batch: decoded and preprocessed into its pixel slot, on its own. */
typedef struct image_row {
    const mmt_serve_input *in;
    int64_t index; /* the row's position in its request */
    float *dst;
    char what[32]; /* the row's name in errors (row_name) */
    int status;    /* 0, or the HTTP status of its failure */
    char msg[400];
} image_row;

/* How an error names row r of a job: "input 3" (embeddings), "images 1" / "labels 0"
 * (classify: the images, then a prompt per label), "query" (search). */
static void row_name(const clip_job *j, int64_t r, char *out, size_t size) {
    int64_t first_label = j->req.n_inputs - j->req.n_labels;
    if (j->search) snprintf(out, size, "query");
    else if (j->classify && r >= first_label) snprintf(out, size, "labels %lld", (long long)(r - first_label));
    else snprintf(out, size, "%s %lld", j->classify ? "images" : "input", (long long)r);
}

static void image_row_prepare(mmt_server *s, image_row *t) {
    mmt_image img = {0};
    const char *what = t->what;
    mmt_status st = mmt_image_decode_memory_limit(t->in->bytes, t->in->n_bytes, what, mmt_clip_dicom_options(s->model),
                                                  s->o.max_image_pixels, &img);
    if (st == MMT_STATUS_INVALID_ARGUMENT) { /* over the pixel limit, seen in the header */
        t->status = 413;
        snprintf(t->msg, sizeof t->msg, "%s (--max-image-pixels)", mmt_last_error());
    } else if (st == MMT_OK && mmt_image_preprocess(&img, mmt_clip_processor(s->model), t->dst) != MMT_OK) {
        t->status = 400;
        snprintf(t->msg, sizeof t->msg, "%s: %s", what, mmt_last_error());
    } else if (st != MMT_OK) {
        t->status = 400;
        snprintf(t->msg, sizeof t->msg, "%s", mmt_last_error());
    }
    mmt_image_free(&img);
}

/* Tokenizes (checks) texts and decodes + preprocesses images of the batch's jobs; a bad row
 * fails its job with the first bad row's error, in row order (rows after it are still
 * decoded, and ignored). pixels gets every image row of the batch in order, (rows, 3, S, S);
 * a row that fails leaves its slot unwritten (its job is not computed). The images are
 * decoded in parallel, each row on its own with the error of the thread that decoded it:
 * done serially, this step between two batches cost about 1.3 ms per 226 x 150 JPEG, a tenth
 * of an int8 ViT-B/32 batch's time, with the other core idle. */
static void prepare_rows(mmt_server *s, clip_job **jobs, int64_t n, float *pixels) {
    const mmt_clip_config *cfg = mmt_clip_config_of(s->model);
    int64_t L = cfg->text.max_positions, n_images = 0;
    for (int64_t b = 0; b < n; b++)
        for (int64_t r = 0; r < jobs[b]->req.n_inputs; r++) n_images += jobs[b]->req.inputs[r].image != 0;
    int32_t *ids = mmt_malloc((size_t)L * sizeof *ids);
    image_row *rows = mmt_calloc((size_t)(n_images ? n_images : 1), sizeof *rows);
    int64_t k = 0;
    for (int64_t b = 0; b < n && rows; b++)
        for (int64_t r = 0; r < jobs[b]->req.n_inputs; r++)
            if (jobs[b]->req.inputs[r].image) {
                rows[k] = (image_row){.in = &jobs[b]->req.inputs[r], .index = r,
                                      .dst = pixels + k * 3 * s->image_size * s->image_size};
                row_name(jobs[b], r, rows[k].what, sizeof rows[k].what);
                k++;
            }
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (n_images > 1)
#endif
    for (int64_t i = 0; i < (rows ? n_images : 0); i++)
        image_row_prepare(s, &rows[i]);
    k = 0;
    for (int64_t b = 0; b < n; b++) {
        clip_job *j = jobs[b];
        for (int64_t r = 0; r < j->req.n_inputs; r++) {
            mmt_serve_input *row = &j->req.inputs[r];
            char msg[400];
            if (row->image) {
                image_row *t = rows ? &rows[k++] : NULL;
                if (!t) job_fail(j, 503, "%s", "out of memory");
                else if (t->status) job_fail(j, t->status, "%s", t->msg);
                continue;
            }
            const char *txt = row->text;
            if (!ids) {
                job_fail(j, 503, "%s", "out of memory");
            } else if (mmt_clip_tokenize(s->model, &txt, 1, 0, ids) != MMT_OK) {
                /* "text 1 is 402 tokens long, ... (use truncation to cut it)": the row's own
                 * name instead of "text 1", and no advice HTTP has no option for */
                const char *e = mmt_last_error();
                char name[32];
                row_name(j, r, name, sizeof name);
                const char *advice = strstr(e, " (use truncation");
                int n = advice ? (int)(advice - e) : (int)strlen(e);
                if (!strncmp(e, "text 1: ", 8)) snprintf(msg, sizeof msg, "%s: %.*s", name, n - 8, e + 8);
                else if (!strncmp(e, "text 1 ", 7)) snprintf(msg, sizeof msg, "%s: the text %.*s", name, n - 7, e + 7);
                else snprintf(msg, sizeof msg, "%s: %.*s", name, n, e);
                job_fail(j, 400, "%s", msg);
            } else { /* tokens up to and with the EOS (the pad is the EOS) */
                int64_t used = 1;
                while (used < L && ids[used] != ids[L - 1]) used++;
                j->tokens += used < L ? used + 1 : L;
            }
        }
    }
    mmt_free(rows);
    mmt_free(ids);
}

/* A routed job's answer names its route, the arm's adapter and the request id. */
static void route_fields(mmt_server *s, const clip_job *j, mmt_strbuf *b) {
    if (j->route < 0) return;
    const mmt_route *r = &s->routes[j->route];
    mmt_strbuf_printf(b, ", \"route\": \"%s\", \"adapter\": \"%s\", \"request_id\": ", r->name, r->arms[j->arm].adapter);
    mmt_strbuf_json_string(b, j->request_id, strlen(j->request_id));
}

/* The JSON answer of an embeddings job. */
static void embeddings_body(mmt_server *s, const clip_job *j, mmt_strbuf *b) {
    mmt_strbuf_printf(b, "{\"object\": \"list\", \"data\": [");
    for (int64_t r = 0; r < j->req.n_inputs; r++) {
        const float *e = j->out + r * s->dim;
        mmt_strbuf_printf(b, "%s{\"object\": \"embedding\", \"index\": %lld, \"embedding\": ", r ? ", " : "", (long long)r);
        if (j->req.base64_out) {
            mmt_strbuf_append(b, "\"", 1);
            mmt_report_base64(b, (const uint8_t *)e, (size_t)s->dim * sizeof(float)); /* little-endian float32 */
            mmt_strbuf_append(b, "\"", 1);
        } else {
            mmt_strbuf_append(b, "[", 1);
            for (int64_t c = 0; c < s->dim; c++) mmt_strbuf_printf(b, c ? ", %.9g" : "%.9g", (double)e[c]);
            mmt_strbuf_append(b, "]", 1);
        }
        mmt_strbuf_append(b, "}", 1);
    }
    mmt_strbuf_printf(b, "], \"model\": ");
    const char *name = j->adapter ? j->adapter->name : "base";
    mmt_strbuf_json_string(b, name, strlen(name));
    route_fields(s, j, b);
    mmt_strbuf_printf(b, ", \"usage\": {\"prompt_tokens\": %lld, \"total_tokens\": %lld}}\n", (long long)j->tokens,
                      (long long)j->tokens);
}

/* The JSON answer of a classify job: per image, labels by probability. */
static void classify_body(mmt_server *s, const clip_job *j, mmt_strbuf *b) {
    int64_t n_images = j->req.n_inputs - j->req.n_labels;
    const float *lab = j->out + n_images * s->dim;
    double *p = mmt_malloc((size_t)j->req.n_labels * sizeof *p);
    int64_t *order = mmt_malloc((size_t)j->req.n_labels * sizeof *order);
    if (!p || !order) {
        b->failed = 1;
        mmt_free(p);
        mmt_free(order);
        return;
    }
    mmt_strbuf_printf(b, "{\"object\": \"list\", \"data\": [");
    for (int64_t i = 0; i < n_images; i++) {
        const float *e = j->out + i * s->dim;
        double max = -INFINITY, sum = 0;
        for (int64_t c = 0; c < j->req.n_labels; c++) {
            double dot = 0;
            for (int64_t d = 0; d < s->dim; d++) dot += (double)e[d] * lab[c * s->dim + d];
            p[c] = s->logit_scale * dot;
            if (p[c] > max) max = p[c];
        }
        for (int64_t c = 0; c < j->req.n_labels; c++) sum += (p[c] = exp(p[c] - max));
        for (int64_t c = 0; c < j->req.n_labels; c++) {
            p[c] /= sum;
            order[c] = c;
        }
        for (int64_t a = 1; a < j->req.n_labels; a++) /* by probability, ties in label order */
            for (int64_t c = a; c > 0 && p[order[c]] > p[order[c - 1]]; c--) {
                int64_t t = order[c];
                order[c] = order[c - 1], order[c - 1] = t;
            }
        mmt_strbuf_printf(b, "%s{\"index\": %lld, \"label\": ", i ? ", " : "", (long long)i);
        mmt_strbuf_json_string(b, j->req.labels[order[0]], strlen(j->req.labels[order[0]]));
        mmt_strbuf_printf(b, ", \"scores\": [");
        for (int64_t c = 0; c < j->req.n_labels; c++) {
            mmt_strbuf_printf(b, "%s{\"label\": ", c ? ", " : "");
            mmt_strbuf_json_string(b, j->req.labels[order[c]], strlen(j->req.labels[order[c]]));
            mmt_strbuf_printf(b, ", \"probability\": %.6g}", p[order[c]]);
        }
        mmt_strbuf_printf(b, "]}");
    }
    mmt_strbuf_printf(b, "], \"model\": ");
    const char *name = j->adapter ? j->adapter->name : "base";
    mmt_strbuf_json_string(b, name, strlen(name));
    route_fields(s, j, b);
    mmt_strbuf_printf(b, "}\n");
    mmt_free(p);
    mmt_free(order);
}

#define THUMB_SIDE 128

/* A PNG thumbnail (THUMB_SIDE on the long side) of an image file as a data URI; NULL when
 * the file cannot be read (the hit is still listed). */
static char *thumbnail_uri(const char *path) {
    mmt_image img = {0}, small = {0};
    uint8_t *png = NULL;
    size_t len = 0;
    char *uri = NULL;
    if (mmt_image_decode_file(path, &img) == MMT_OK) {
        int64_t w = img.width, h = img.height, tw = w >= h ? THUMB_SIDE : (w * THUMB_SIDE + h / 2) / h;
        int64_t th = w >= h ? (h * THUMB_SIDE + w / 2) / w : THUMB_SIDE;
        if (mmt_image_resize(&img, tw > 0 ? tw : 1, th > 0 ? th : 1, MMT_RESAMPLE_BICUBIC, &small) == MMT_OK &&
            mmt_image_encode_png(&small, &png, &len) == MMT_OK) {
            mmt_strbuf b = {0};
            mmt_strbuf_printf(&b, "data:image/png;base64,");
            mmt_report_base64(&b, png, len);
            if (!b.failed) uri = b.data;
            else mmt_strbuf_free(&b);
        }
    }
    mmt_free(png);
    mmt_image_free(&img);
    mmt_image_free(&small);
    return uri;
}

/* Runs a search job's scan over the index with its query embedding and writes the answer. */
static void search_body(mmt_server *s, clip_job *j, mmt_strbuf *b) {
    mmt_search_result res = {0};
    if (mmt_index_search(s->index, j->out, &j->search_opt, &res) != MMT_OK) {
        job_fail(j, 500, "%s", mmt_last_error());
        return;
    }
    mmt_strbuf_printf(b, "{\"object\": \"list\", \"data\": [");
    for (int64_t i = 0; i < res.n; i++) {
        if (i) mmt_strbuf_append(b, ", ", 2);
        mmt_strbuf hit = {0};
        mmt_search_hit_json(&hit, &res.hits[i], i + 1);
        char *thumb = j->thumbnails && res.hits[i].image_path ? thumbnail_uri(res.hits[i].image_path) : NULL;
        if (thumb && hit.len && hit.data[hit.len - 1] == '}') { /* the thumbnail as one more key */
            mmt_strbuf_append(b, hit.data, hit.len - 1);
            mmt_strbuf_printf(b, ",\"thumbnail\":\"%s\"}", thumb);
        } else if (hit.data) {
            mmt_strbuf_append(b, hit.data, hit.len);
        }
        if (hit.failed) b->failed = 1;
        mmt_free(thumb);
        mmt_strbuf_free(&hit);
    }
    mmt_strbuf_printf(b, "], \"scanned\": %lld, \"count\": %lld}\n", (long long)res.scanned,
                      (long long)mmt_index_info_of(s->index)->count);
    mmt_search_result_free(&res);
}

/* The batch worker: every text row of the batch in one call, every image row in another,
 * each row with its own adapter. */
static void run_batch(void *user, mmt_batch_job **bj, int64_t n, int64_t rows) {
    mmt_server *s = user;
    double t0 = mmt_now_seconds();
    close_dead(s);
    clip_job **jobs = (clip_job **)bj; /* job is the first member */
    int64_t S = s->image_size, n_images = 0, n_texts = 0;
    for (int64_t b = 0; b < n; b++)
        for (int64_t r = 0; r < jobs[b]->req.n_inputs; r++) jobs[b]->req.inputs[r].image ? n_images++ : n_texts++;
    float *pixels = mmt_malloc((size_t)(n_images ? n_images : 1) * 3 * (size_t)(S * S) * sizeof(float));
    const char **texts = mmt_malloc((size_t)(n_texts ? n_texts : 1) * sizeof *texts);
    mmt_clip_adapter **img_ad = mmt_malloc((size_t)(n_images ? n_images : 1) * sizeof *img_ad);
    mmt_clip_adapter **txt_ad = mmt_malloc((size_t)(n_texts ? n_texts : 1) * sizeof *txt_ad);
    float *img_out = mmt_malloc((size_t)(n_images ? n_images : 1) * (size_t)s->dim * sizeof(float));
    float *txt_out = mmt_malloc((size_t)(n_texts ? n_texts : 1) * (size_t)s->dim * sizeof(float));
    int oom = !pixels || !texts || !img_ad || !txt_ad || !img_out || !txt_out;
    for (int64_t b = 0; b < n && !oom; b++)
        if (!(jobs[b]->out = mmt_malloc((size_t)jobs[b]->req.n_inputs * (size_t)s->dim * sizeof(float)))) oom = 1;
    if (oom) {
        for (int64_t b = 0; b < n; b++) job_fail(jobs[b], 503, "%s", "out of memory for the batch");
    } else {
        prepare_rows(s, jobs, n, pixels);
    }
    /* the rows of the jobs still fine, images moved down over the slots of failed jobs */
    int64_t ki = 0, kt = 0, pi = 0;
    float *packed = pixels;
    for (int64_t b = 0; b < n && !oom; b++) {
        clip_job *j = jobs[b];
        mmt_clip_adapter *a = j->adapter ? j->adapter->a : NULL;
        for (int64_t r = 0; r < j->req.n_inputs; r++) {
            if (j->req.inputs[r].image) {
                if (!j->status) {
                    if (ki != pi) memmove(packed + ki * 3 * S * S, pixels + pi * 3 * S * S, (size_t)(3 * S * S) * sizeof(float));
                    img_ad[ki++] = a;
                }
                pi++;
            } else if (!j->status) {
                texts[kt] = j->req.inputs[r].text;
                txt_ad[kt++] = a;
            }
        }
    }
    mmt_status st = MMT_OK;
    if (!oom && ki) st = mmt_clip_run_embed_pixels(s->run, packed, img_ad, ki, img_out);
    if (!oom && st == MMT_OK && kt) st = mmt_clip_run_embed_texts(s->run, texts, txt_ad, kt, txt_out);
    if (st != MMT_OK)
        for (int64_t b = 0; b < n; b++) job_fail(jobs[b], 500, "%s", mmt_last_error());
    mmt_metrics_batch(s->metrics, rows, mmt_now_seconds() - t0);
    ki = kt = 0;
    for (int64_t b = 0; b < n; b++) {
        clip_job *j = jobs[b];
        mmt_strbuf body = {0};
        if (!j->status) {
            for (int64_t r = 0; r < j->req.n_inputs; r++) {
                const float *src = j->req.inputs[r].image ? img_out + ki++ * s->dim : txt_out + kt++ * s->dim;
                memcpy(j->out + r * s->dim, src, (size_t)s->dim * sizeof(float));
            }
            /* an adapter that overflows (a huge lora_alpha) fails its own requests only, with
             * an error rather than "nan" in the JSON; the batch's other rows are unaffected */
            int64_t bad = mmt_f32_first_nonfinite(j->out, j->req.n_inputs * s->dim);
            if (bad >= 0) {
                char name[32], msg[200];
                row_name(j, bad / s->dim, name, sizeof name);
                snprintf(msg, sizeof msg, "%s: the embedding is not finite (NaN or infinity): the adapter '%s' or the model "
                         "overflows", name, j->adapter_name);
                job_fail(j, 500, "%s", msg);
            }
        }
        if (!j->status) {
            if (j->search) search_body(s, j, &body);
            else if (j->classify) classify_body(s, j, &body);
            else embeddings_body(s, j, &body);
        }
        clip_job_finish(j, 200, &body);
        mmt_strbuf_free(&body);
    }
    mmt_free(pixels);
    mmt_free(texts);
    mmt_free(img_ad);
    mmt_free(txt_ad);
    mmt_free(img_out);
    mmt_free(txt_out);
}

static void expire_job(void *user, mmt_batch_job *bj) {
    (void)user;
    clip_job *j = (clip_job *)bj;
    job_fail(j, 503, "%s", "the request waited past its deadline (--deadline-ms); the server is overloaded");
    mmt_strbuf none = {0};
    clip_job_finish(j, 503, &none);
}

/* A request naming a route: draws its arm (sticky by the "user" field or X-Client-Key, else
 * from the route's seeded stream), whose adapter then serves it; remembers the request id's
 * arm for feedback. 0, or 400 for a client key that is too long. */
static int route_pick(mmt_server *s, const mmt_http_request *req, clip_job *j, int route, char *err, size_t err_size) {
    mmt_route *r = &s->routes[route];
    const char *key = j->req.user ? j->req.user : mmt_http_request_header(req, "X-Client-Key");
    size_t key_len = key ? strlen(key) : 0;
    if (key_len > MMT_ROUTE_MAX_KEY) {
        snprintf(err, err_size, "X-Client-Key is over %d bytes", MMT_ROUTE_MAX_KEY);
        return 400;
    }
    j->route = route;
    j->arm = mmt_route_pick(r, key, key_len);
    snprintf(j->adapter_name, sizeof j->adapter_name, "%s", r->arms[j->arm].adapter);
    snprintf(j->request_id, sizeof j->request_id, "%s", req->request_id ? req->request_id : "");
    mmt_route_recent_put(&s->recent, j->request_id, route, j->arm);
    return 0;
}

/* Parses /v1/embeddings or /v1/classify into a job and queues it, or answers the error. */
static void handle_clip(mmt_server *s, const mmt_http_request *req, mmt_http_reply *reply, int classify) {
    const char *endpoint = classify ? "/v1/classify" : "/v1/embeddings";
    double t0 = mmt_now_seconds();
    char err[400];
    clip_job *j = mmt_calloc(1, sizeof *j);
    int status = j ? mmt_serve_parse_clip(req->body, req->body_len, classify, s->o.max_inputs, &j->req, err, sizeof err) : 500;
    if (!j) snprintf(err, sizeof err, "out of memory");
    if (j) j->route = -1;
    if (!status) {
        j->srv = s, j->reply = reply, j->endpoint = endpoint, j->t0 = t0, j->classify = classify;
        const char *model = j->req.model;
        int route = route_find(s, model);
        if (route >= 0) status = route_pick(s, req, j, route, err, sizeof err), model = j->adapter_name;
        else snprintf(j->adapter_name, sizeof j->adapter_name, "%s", model && mmt_serve_valid_name(model) ? model : "base");
        if (!status && !adapter_acquire(s, model, &j->adapter)) {
            status = 404;
            snprintf(err, sizeof err, "no adapter named '%.100s' is loaded (GET /v1/adapters lists them)", model);
        }
    }
    if (status) {
        mmt_http_reply_error(reply, status, status >= 500 ? "server_error" : "invalid_request_error", err);
        mmt_metrics_request(s->metrics, endpoint, j && status != 404 ? j->adapter_name : "base", status, mmt_now_seconds() - t0);
        if (j) clip_job_free(j);
        return;
    }
    j->job.rows = j->req.n_inputs;
    j->job.deadline_s = s->o.deadline_s > 0 ? mmt_now_seconds() + s->o.deadline_s : 0; /* time in the queue */
    if (!mmt_batcher_submit(s->batcher, &j->job)) {
        job_fail(j, 503, "%s", "the server is shutting down");
        mmt_strbuf none = {0};
        clip_job_finish(j, 503, &none);
    }
}

/* POST /v1/search: {"query": TEXT | {"text": T} | {"image": B64}, "top_k": K, "filters":
 * ["FIELD OP VALUE", ...], "int8": false, "thumbnails": false}. The query is embedded by the
 * model (and adapter) the index was built with, in the batch like any input. */
static void handle_search(mmt_server *s, const mmt_http_request *req, mmt_http_reply *reply) {
    double t0 = mmt_now_seconds();
    char err[400] = "";
    int status = 0;
    mmt_json_doc *doc = NULL;
    clip_job *j = mmt_calloc(1, sizeof *j);
    if (!j) status = 500, snprintf(err, sizeof err, "out of memory");
    else if (!s->index) status = 404, snprintf(err, sizeof err, "no catalogue index is loaded (serve --index DIR)");
    else if (mmt_json_parse(req->body, req->body_len, "request body", &doc) != MMT_OK)
        status = 400, snprintf(err, sizeof err, "%s", mmt_last_error());
    const mmt_json *root = doc ? mmt_json_root(doc) : NULL;
    const mmt_json *q = root ? mmt_json_get(root, "query") : NULL, *k = root ? mmt_json_get(root, "top_k") : NULL;
    const mmt_json *f = root ? mmt_json_get(root, "filters") : NULL, *i8 = root ? mmt_json_get(root, "int8") : NULL;
    const mmt_json *th = root ? mmt_json_get(root, "thumbnails") : NULL;
    static const char *const known[] = {"query", "top_k", "filters", "int8", "thumbnails", "model"};
    const char *unknown = root ? mmt_json_unknown_key(root, known, sizeof known / sizeof *known) : NULL;
    if (!status && root->type != MMT_JSON_OBJECT) status = 400, snprintf(err, sizeof err, "the body must be a JSON object");
    else if (!status && unknown)
        status = 400, snprintf(err, sizeof err, "unknown field \"%.60s\" (expected query, top_k, filters, int8, thumbnails)",
                               unknown);
    else if (!status && !q)
        status = 400, snprintf(err, sizeof err, "\"query\" is required: a text, {\"text\": T} or {\"image\": BASE64}");
    else if (!status && k && !(k->type == MMT_JSON_NUMBER && k->is_integer && k->integer >= 1 && k->integer <= 1000))
        status = 400, snprintf(err, sizeof err, "\"top_k\" must be an integer from 1 to 1000");
    else if (!status && f && f->type != MMT_JSON_ARRAY)
        status = 400, snprintf(err, sizeof err, "\"filters\" must be a list of \"FIELD OP VALUE\" strings");
    else if (!status && ((i8 && i8->type != MMT_JSON_BOOL) || (th && th->type != MMT_JSON_BOOL)))
        status = 400, snprintf(err, sizeof err, "\"int8\" and \"thumbnails\" must be true or false");
    if (!status) {
        mmt_search_options_default(&j->search_opt);
        if (k) j->search_opt.top_k = k->integer;
        j->search_opt.int8 = i8 && i8->boolean;
        j->thumbnails = th && th->boolean;
        if (j->thumbnails && j->search_opt.top_k > 100)
            status = 400, snprintf(err, sizeof err, "thumbnails go with top_k up to 100");
    }
    int64_t n_f = f ? (int64_t)f->len : 0;
    if (!status && n_f > 64) status = 400, snprintf(err, sizeof err, "at most 64 filters");
    if (!status && n_f && !(j->filters = mmt_calloc((size_t)n_f, sizeof *j->filters)))
        status = 500, snprintf(err, sizeof err, "out of memory");
    for (int64_t i = 0; !status && i < n_f; i++) {
        const mmt_json *e = &f->items[i];
        if (e->type != MMT_JSON_STRING) status = 400, snprintf(err, sizeof err, "filters %lld: expected a string", (long long)i);
        else if (mmt_search_filter_parse(e->string, &j->filters[i]) != MMT_OK)
            status = 400, snprintf(err, sizeof err, "filters %lld: %s", (long long)i, mmt_last_error());
        else j->search_opt.n_filters++;
    }
    if (j) j->search_opt.filters = j->filters;
    if (!status) { /* the query as the one input, through the embeddings parser */
        mmt_strbuf one = {0};
        mmt_strbuf_printf(&one, "{\"input\": [");
        mmt_json_write(&one, q); /* a text or any input form of /v1/embeddings */
        mmt_strbuf_printf(&one, "]}");
        status = one.failed ? 500 : mmt_serve_parse_clip(one.data, one.len, 0, 1, &j->req, err, sizeof err);
        if (one.failed) snprintf(err, sizeof err, "out of memory");
        if (status == 400 && !strncmp(err, "input 0: ", 9)) memmove(err, err + 9, strlen(err + 9) + 1);
        if (status == 400) {
            char tmp[400];
            snprintf(tmp, sizeof tmp, "query: %.380s", err);
            snprintf(err, sizeof err, "%s", tmp);
        }
        mmt_strbuf_free(&one);
    }
    const mmt_json *m = root ? mmt_json_get(root, "model") : NULL;
    if (!status && m && m->type != MMT_JSON_NULL && /* the space is the index's: its own adapter only */
        (s->index_adapter || m->type != MMT_JSON_STRING || !is_base_name(s, m->string)))
        status = 400, snprintf(err, sizeof err, "\"model\" does not apply to /v1/search: queries are embedded by the "
                                               "model and adapter the index was built with");
    mmt_json_free(doc);
    if (status) {
        mmt_http_reply_error(reply, status, status >= 500 ? "server_error" : "invalid_request_error", err);
        mmt_metrics_request(s->metrics, "/v1/search", "base", status, mmt_now_seconds() - t0);
        if (j) clip_job_free(j);
        return;
    }
    j->srv = s, j->reply = reply, j->endpoint = "/v1/search", j->t0 = t0, j->search = 1;
    if (s->index_adapter) {
        pthread_mutex_lock(&s->mu);
        s->index_adapter->refs++;
        pthread_mutex_unlock(&s->mu);
        j->adapter = s->index_adapter;
    }
    snprintf(j->adapter_name, sizeof j->adapter_name, "%s", j->adapter ? "index" : "base");
    j->job.rows = 1;
    j->job.deadline_s = s->o.deadline_s > 0 ? mmt_now_seconds() + s->o.deadline_s : 0; /* time in the queue */
    if (!mmt_batcher_submit(s->batcher, &j->job)) {
        job_fail(j, 503, "%s", "the server is shutting down");
        mmt_strbuf none = {0};
        clip_job_finish(j, 503, &none);
    }
}

/* ---- adapters over HTTP ----------------------------------------------------------------- */

/* POST /v1/adapters through serve/adapter_load.h: the registry's add, and the metrics. */
static mmt_status load_adapter(void *user, const char *name, const char *dir) { return adapter_add(user, name, dir); }

static void adapter_loaded(void *user, int status, double started_s) {
    mmt_server *s = user;
    mmt_metrics_request(s->metrics, "/v1/adapters", "base", status, mmt_now_seconds() - started_s);
}

static void handle_adapters(mmt_server *s, const mmt_http_request *req, mmt_http_reply *reply) {
    double t0 = mmt_now_seconds();
    if (!strcmp(req->method, "GET") && !strcmp(req->path, "/v1/adapters")) {
        mmt_strbuf b = {0};
        mmt_strbuf_printf(&b, "{\"object\": \"list\", \"data\": [");
        pthread_mutex_lock(&s->mu);
        for (int64_t i = 0; i < s->n_adapters; i++) {
            mmt_strbuf_printf(&b, "%s{\"name\": ", i ? ", " : "");
            mmt_strbuf_json_string(&b, s->adapters[i]->name, strlen(s->adapters[i]->name));
            mmt_strbuf_printf(&b, ", \"path\": ");
            mmt_strbuf_json_string(&b, s->adapters[i]->dir, strlen(s->adapters[i]->dir));
            mmt_strbuf_printf(&b, "}");
        }
        pthread_mutex_unlock(&s->mu);
        mmt_strbuf_printf(&b, "]}\n");
        mmt_http_reply_json(reply, 200, &b);
        mmt_strbuf_free(&b);
        mmt_metrics_request(s->metrics, "/v1/adapters", "base", 200, mmt_now_seconds() - t0);
        return;
    }
    if (!strcmp(req->method, "DELETE") && !strncmp(req->path, "/v1/adapters/", 13)) {
        const char *name = req->path + 13;
        int found = adapter_remove(s, name);
        if (found < 0) {
            char msg[300];
            snprintf(msg, sizeof msg, "adapter '%.100s' is an arm of route '%s' (--route): it stays loaded while the route serves",
                     name, s->routes[route_using(s, name)].name);
            mmt_http_reply_error(reply, 409, "invalid_request_error", msg);
            mmt_metrics_request(s->metrics, "/v1/adapters", "base", 409, mmt_now_seconds() - t0);
            return;
        }
        if (found) {
            mmt_strbuf b = {0};
            mmt_strbuf_printf(&b, "{\"name\": ");
            mmt_strbuf_json_string(&b, name, strlen(name));
            mmt_strbuf_printf(&b, ", \"deleted\": true}\n");
            mmt_http_reply_json(reply, 200, &b);
            mmt_strbuf_free(&b);
            mmt_log_info("serve: adapter '%s' unloaded", name);
        } else {
            char msg[200];
            snprintf(msg, sizeof msg, "no adapter named '%.100s' is loaded", name);
            mmt_http_reply_error(reply, 404, "invalid_request_error", msg);
        }
        mmt_metrics_request(s->metrics, "/v1/adapters", "base", found ? 200 : 404, mmt_now_seconds() - t0);
        return;
    }
    if (!strcmp(req->method, "POST") && !strcmp(req->path, "/v1/adapters")) {
        mmt_adapter_load_ops ops = {.load = load_adapter, .done = adapter_loaded, .user = s,
                                    .in_flight = &s->loads_in_flight, .what = "adapter"};
        int status = mmt_adapter_load_async(req, reply, &ops);
        if (status) mmt_metrics_request(s->metrics, "/v1/adapters", "base", status, mmt_now_seconds() - t0);
        return;
    }
    mmt_http_reply_405(reply, "GET, POST, DELETE", "use GET or POST /v1/adapters, DELETE /v1/adapters/NAME");
}

/* ---- A/B routes and feedback -------------------------------------------------------------- */

/* GET /v1/routes: every route with its arms and weights. */
static void handle_routes(mmt_server *s, mmt_http_reply *reply) {
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{\"object\": \"list\", \"data\": [");
    for (int64_t i = 0; i < s->n_routes; i++) {
        const mmt_route *r = &s->routes[i];
        mmt_strbuf_printf(&b, "%s{\"name\": \"%s\", \"total_weight\": %lld, \"arms\": [", i ? ", " : "", r->name,
                          (long long)r->total);
        for (int a = 0; a < r->n_arms; a++)
            mmt_strbuf_printf(&b, "%s{\"adapter\": \"%s\", \"weight\": %lld}", a ? ", " : "", r->arms[a].adapter,
                              (long long)r->arms[a].weight);
        mmt_strbuf_printf(&b, "]}");
    }
    mmt_strbuf_printf(&b, "], \"seed\": %llu}\n", (unsigned long long)s->o.route_seed);
    mmt_http_reply_json(reply, 200, &b);
    mmt_strbuf_free(&b);
}

/* Which (route, arm) an event is about: the request id's own when it is among the recent
 * routed requests, else the "route" field with the "arm" field or the client key's sticky
 * arm. 0, or the HTTP status of the error with its message. */
static int feedback_resolve(mmt_server *s, const mmt_feedback_event *ev, int *route, int *arm, char *err, size_t err_size) {
    int r = -1, a = -1;
    if (ev->request_id[0] && mmt_route_recent_get(&s->recent, ev->request_id, &r, &a)) {
        if (ev->route[0] && strcmp(ev->route, s->routes[r].name)) {
            snprintf(err, err_size, "request '%s' was routed by '%s', not '%s'", ev->request_id, s->routes[r].name, ev->route);
            return 400;
        }
        if (ev->arm[0] && strcmp(ev->arm, s->routes[r].arms[a].adapter)) {
            snprintf(err, err_size, "request '%s' was served by arm '%s', not '%s'", ev->request_id, s->routes[r].arms[a].adapter,
                     ev->arm);
            return 400;
        }
        *route = r, *arm = a;
        return 0;
    }
    if (!ev->route[0]) {
        snprintf(err, err_size, "\"route\" is required%s", ev->request_id[0] ? ": the request id is not among the recent routed "
                                                                              "requests" : "");
        return 400;
    }
    if ((r = route_find(s, ev->route)) < 0) {
        snprintf(err, err_size, "no route named '%s' (GET /v1/routes lists them)", ev->route);
        return 404;
    }
    if (ev->arm[0] && (a = mmt_route_find_arm(&s->routes[r], ev->arm)) < 0) {
        snprintf(err, err_size, "'%s' is not an arm of route '%s'", ev->arm, ev->route);
        return 400;
    }
    if (a < 0 && ev->user[0]) a = mmt_route_pick_key(&s->routes[r], ev->user, strlen(ev->user));
    if (a < 0) {
        snprintf(err, err_size, "request '%s' is not among the last %d routed requests: give \"arm\" (or the client key)",
                 ev->request_id, MMT_ROUTE_RECENT);
        return 400;
    }
    *route = r, *arm = a;
    return 0;
}

/* POST /v1/feedback: one event about an answer, appended to the --feedback file with its
 * route and arm, and counted in /metrics. */
static void handle_feedback(mmt_server *s, const mmt_http_request *req, mmt_http_reply *reply) {
    double t0 = mmt_now_seconds();
    char err[400];
    mmt_feedback_event *ev = mmt_calloc(1, sizeof *ev);
    int route = -1, arm = -1, status = 0;
    if (!s->feedback) status = 404, snprintf(err, sizeof err, "feedback is not recorded: start the server with --feedback FILE");
    else if (!ev) status = 500, snprintf(err, sizeof err, "out of memory");
    else status = mmt_feedback_parse(req->body, req->body_len, mmt_http_request_header(req, "X-Client-Key"), ev, err, sizeof err);
    if (!status) status = feedback_resolve(s, ev, &route, &arm, err, sizeof err);
    mmt_strbuf line = {0};
    if (!status) {
        const mmt_route *r = &s->routes[route];
        mmt_feedback_line(ev, r->name, r->arms[arm].adapter, &line);
        if (line.failed) status = 500, snprintf(err, sizeof err, "out of memory");
        else if (mmt_feedback_append(s->feedback, line.data, line.len) != MMT_OK)
            status = 500, snprintf(err, sizeof err, "%s", mmt_last_error());
    }
    if (status) {
        mmt_http_reply_error(reply, status, status >= 500 ? "server_error" : "invalid_request_error", err);
    } else {
        const mmt_route *r = &s->routes[route];
        mmt_metrics_feedback(s->metrics, r->name, r->arms[arm].adapter, ev->event);
        mmt_strbuf b = {0};
        mmt_strbuf_printf(&b, "{\"recorded\": true, \"route\": \"%s\", \"arm\": \"%s\", \"event\": \"%s\", \"request_id\": ",
                          r->name, r->arms[arm].adapter, ev->event);
        if (ev->request_id[0]) mmt_strbuf_json_string(&b, ev->request_id, strlen(ev->request_id));
        else mmt_strbuf_printf(&b, "null");
        mmt_strbuf_printf(&b, "}\n");
        mmt_http_reply_json(reply, 200, &b);
        mmt_strbuf_free(&b);
    }
    mmt_metrics_request(s->metrics, "/v1/feedback", "base", status ? status : 200, mmt_now_seconds() - t0);
    mmt_strbuf_free(&line);
    if (ev) mmt_feedback_event_free(ev);
    mmt_free(ev);
}

/* ---- routing ----------------------------------------------------------------------------- */

static void route_json(mmt_server *s, const mmt_http_request *req, mmt_http_reply *reply);

/* multipart/form-data uploads become the JSON body they stand for (serve/multipart.h). */
static void route(void *user, const mmt_http_request *req, mmt_http_reply *reply) {
    mmt_server *s = user;
    if (strncasecmp(req->content_type, "multipart/form-data", 19) || strcmp(req->method, "POST")) {
        route_json(s, req, reply);
        return;
    }
    mmt_strbuf json = {0};
    mmt_status st = mmt_multipart_to_json(req->content_type, req->body, req->body_len, req->path, &json);
    if (st != MMT_OK) {
        mmt_http_reply_error(reply, st == MMT_STATUS_OUT_OF_MEMORY ? 500 : 400,
                             st == MMT_STATUS_OUT_OF_MEMORY ? "server_error" : "invalid_request_error", mmt_last_error());
    } else {
        mmt_http_request as_json = *req;
        as_json.body = json.data, as_json.body_len = json.len, as_json.content_type = "application/json";
        route_json(s, &as_json, reply); /* every handler parses the body before returning */
    }
    mmt_strbuf_free(&json);
}

static void route_json(mmt_server *s, const mmt_http_request *req, mmt_http_reply *reply) {
    int state = atomic_load(&s->state);
    /* HEAD is GET without the body (libmicrohttpd leaves the body out) */
    int get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD"), post = !strcmp(req->method, "POST");
    if (!strcmp(req->path, "/health")) {
        if (state == READY) mmt_http_reply_send(reply, 200, "application/json", "{\"status\": \"ok\"}\n", 17);
        else if (state == LOADING) mmt_http_reply_send(reply, 503, "application/json", "{\"status\": \"loading\"}\n", 22);
        else {
            mmt_strbuf b = {0};
            mmt_strbuf_printf(&b, "{\"status\": \"error\", \"message\": ");
            mmt_strbuf_json_string(&b, s->load_error, strlen(s->load_error));
            mmt_strbuf_printf(&b, "}\n");
            mmt_http_reply_json(reply, 503, &b);
            mmt_strbuf_free(&b);
        }
        return;
    }
    if (!strcmp(req->path, "/metrics") && get) {
        mmt_metrics_gauges g = {.queue_rows = s->batcher ? mmt_batcher_depth(s->batcher) : 0,
                                .in_flight = mmt_http_pending(s->http) - 1, /* not this one */
                                .connections = mmt_http_connections(s->http),
                                .adapters = adapter_count(s), .ready = state == READY};
        mmt_strbuf b = {0};
        mmt_metrics_render(s->metrics, &g, &b);
        if (b.failed) mmt_http_reply_error(reply, 500, "server_error", "out of memory");
        else mmt_http_reply_send(reply, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
        mmt_strbuf_free(&b);
        return;
    }
    if (!strcmp(req->path, "/") && get) {
        mmt_http_reply_send(reply, 200, "text/html; charset=utf-8", mmt_web_page, strlen(mmt_web_page));
        return;
    }
    /* ---- captioning: /v1/caption... goes to serve/caption_service.c ---- */
    if (!strncmp(req->path, "/v1/caption", 11) && (!req->path[11] || req->path[11] == '/')) {
        if (!s->o.captioner_dir) mmt_http_reply_error(reply, 404, "invalid_request_error", "no captioner loaded (--captioner)");
        else if (state != READY)
            mmt_http_reply_error(reply, 503, "server_error", state == LOADING ? "the model is still loading" : s->load_error);
        else mmt_caption_service_handle(s->captioner, req, reply);
        return;
    }
    /* ---- end captioning ---- */
    /* A/B routes and feedback need no model: they answer while it loads */
    if (!strcmp(req->path, "/v1/routes")) {
        if (get) handle_routes(s, reply);
        else mmt_http_reply_405(reply, "GET", "use GET /v1/routes");
        return;
    }
    if (!strcmp(req->path, "/v1/feedback")) {
        if (post) handle_feedback(s, req, reply);
        else mmt_http_reply_405(reply, "POST", "use POST /v1/feedback");
        return;
    }
    int known = !strcmp(req->path, "/v1/embeddings") || !strcmp(req->path, "/v1/classify") ||
                !strcmp(req->path, "/v1/search") || !strncmp(req->path, "/v1/adapters", 12);
    if (!known) {
        char msg[300];
        snprintf(msg, sizeof msg, "no endpoint %.200s (see GET / and docs/serving.md)", req->path);
        mmt_http_reply_error(reply, 404, "invalid_request_error", msg);
        return;
    }
    if (state != READY) {
        mmt_http_reply_error(reply, 503, "server_error", state == LOADING ? "the model is still loading" : s->load_error);
        return;
    }
    if (!strncmp(req->path, "/v1/adapters", 12)) {
        handle_adapters(s, req, reply);
        return;
    }
    if (!post) {
        mmt_http_reply_405(reply, "POST", "use POST");
        return;
    }
    if (!strcmp(req->path, "/v1/search")) handle_search(s, req, reply);
    else handle_clip(s, req, reply, !strcmp(req->path, "/v1/classify"));
}

/* ---- start and stop --------------------------------------------------------------------- */

/* The batcher's clients: each open connection has at most one request in flight (HTTP/1.1,
 * one at a time per connection), so when all of them wait in the queue no other request can
 * join the batch and it need not wait out --max-wait-ms. (The http layer outlives the
 * batcher: mmt_server_stop stops the batcher first.) */
static int64_t open_connections(void *user) {
    mmt_server *s = user;
    return s->http ? mmt_http_connections(s->http) : INT64_MAX;
}

static void *load_model(void *arg) {
    mmt_server *s = arg;
    mmt_quant_options q; /* applied while the weights are read */
    mmt_quant_options_default(&q, (mmt_quant_type)s->o.quantize);
    mmt_status st = mmt_clip_load_quantized(s->model_dir, s->o.quantize ? &q : NULL, &s->model);
    if (st == MMT_OK) mmt_clip_set_dicom_options(s->model, &s->o.dicom);
    if (st == MMT_OK && !s->o.no_prepack) st = mmt_clip_prepack(s->model); /* inference only: pack once */
    if (st == MMT_OK && !mmt_clip_tokenizer(s->model))
        st = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: the model has no tokenizer files; texts cannot be embedded", s->model_dir);
    if (st == MMT_OK) st = mmt_clip_run_create(s->model, &s->run);
    for (int64_t i = 0; st == MMT_OK && i < s->o.n_adapters; i++) {
        st = adapter_add(s, s->o.adapter_names[i], s->o.adapter_dirs[i]);
        if (st != MMT_OK) st = mmt_error_prefix(st, "adapter %s: ", s->o.adapter_names[i]);
    }
    if (st == MMT_OK && s->o.index_dir) { /* the catalogue, checked against this model */
        st = mmt_index_open(s->o.index_dir, &s->index);
        const mmt_index_info *info = st == MMT_OK ? mmt_index_info_of(s->index) : NULL;
        const char *ad = info && info->adapter_dir[0] ? info->adapter_dir : NULL;
        /* the index's adapter: a start-up --adapter with its fingerprint (wherever it lies
         * now), else the folder index.json recorded */
        int moved = 1;
        for (int64_t i = 0; st == MMT_OK && ad && moved && i < s->o.n_adapters; i++) {
            char hex[17];
            int64_t files = 0;
            if (mmt_fingerprint_model(s->o.adapter_dirs[i], hex, &files) == MMT_OK && !strcmp(hex, info->adapter_fingerprint))
                ad = s->o.adapter_dirs[i], moved = 0;
        }
        if (st == MMT_OK && ad && moved && !mmt_file_exists(ad))
            st = mmt_fail(MMT_STATUS_NOT_FOUND, "it was built with the adapter %s (fingerprint %s), which is not there any "
                          "more: give that adapter with --adapter NAME=DIR (it is found by fingerprint)", ad,
                          info->adapter_fingerprint);
        if (st == MMT_OK) st = mmt_index_check_model(s->index, s->model_dir, ad);
        if (st == MMT_OK && ad) {
            if (!(s->index_adapter = mmt_calloc(1, sizeof *s->index_adapter)) || !(s->index_adapter->dir = mmt_strdup(ad)))
                st = MMT_STATUS_OUT_OF_MEMORY;
            else st = mmt_clip_adapter_open(s->model, ad, &s->index_adapter->a);
            if (st == MMT_OK) s->index_adapter->refs = 1, snprintf(s->index_adapter->name, sizeof s->index_adapter->name, "index");
        }
        if (st != MMT_OK) st = mmt_error_prefix(st, "index %s: ", s->o.index_dir);
    }
    if (st == MMT_OK) {
        const mmt_clip_config *c = mmt_clip_config_of(s->model);
        s->dim = c->projection_dim;
        s->image_size = c->vision.image_size;
        s->logit_scale = mmt_clip_logit_scale(s->model);
        mmt_batcher_options bo = {.max_batch = s->o.max_batch, .max_wait_s = s->o.max_wait_ms / 1000.0, .run = run_batch,
                                  .expire = expire_job, .clients = open_connections, .user = s};
        st = mmt_batcher_start(&bo, &s->batcher);
    }
    /* ---- captioning: the GIT captioner and its worker ---- */
    if (st == MMT_OK && s->o.captioner_dir) {
        mmt_caption_service_options co;
        mmt_caption_service_options_default(&co);
        co.max_batch = s->o.max_batch, co.max_image_pixels = s->o.max_image_pixels, co.deadline_s = s->o.deadline_s;
        co.max_adapters = s->o.max_adapters, co.max_new_tokens = s->o.max_new_tokens;
        co.max_images = s->o.max_inputs < 256 ? s->o.max_inputs : 256;
        co.adapter_names = s->o.caption_adapter_names, co.adapter_dirs = s->o.caption_adapter_dirs;
        co.n_adapters = s->o.n_caption_adapters;
        co.quantize = s->o.quantize;
        co.no_prepack = s->o.no_prepack;
        co.dicom = s->o.dicom;
        st = mmt_caption_service_start(s->o.captioner_dir, &co, s->metrics, &s->captioner);
        if (st != MMT_OK) st = mmt_error_prefix(st, "captioner %s: ", s->o.captioner_dir);
    }
    /* ---- end captioning ---- */
    if (st != MMT_OK) {
        /* not logged here: /health answers it, and mmt_server_wait_ready returns it (the
         * CLI prints it once, as its error) */
        snprintf(s->load_error, sizeof s->load_error, "%s", mmt_last_error());
        atomic_store(&s->state, FAILED);
    } else {
        mmt_log_info("serve: ready (%s, %lld adapters)", s->model_dir, (long long)s->n_adapters);
        atomic_store(&s->state, READY);
    }
    return NULL;
}

/* Parses and checks the --route specs: names unique and apart from the adapters' and the
 * model folder's, every arm a start-up adapter or the base; declares the arms' metrics. */
static mmt_status routes_setup(mmt_server *s) {
    const mmt_server_options *o = &s->o;
    if (o->n_routes < 0 || o->n_routes > MAX_ROUTES)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "serve: at most %d routes (--route)", MAX_ROUTES);
    if (o->n_routes == 0) return MMT_OK;
    mmt_status st = mmt_route_recent_init(&s->recent);
    if (st == MMT_OK && !(s->routes = mmt_calloc((size_t)o->n_routes, sizeof *s->routes))) st = MMT_STATUS_OUT_OF_MEMORY;
    const char *folder = strrchr(s->model_dir, '/');
    folder = folder ? folder + 1 : s->model_dir;
    for (int64_t i = 0; st == MMT_OK && i < o->n_routes; i++) {
        mmt_route *r = &s->routes[i];
        if ((st = mmt_route_parse(o->routes[i], r)) != MMT_OK) break;
        mmt_route_seed(r, o->route_seed);
        if (route_find(s, r->name) >= 0) { /* the routes before this one are s->n_routes */
            st = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "route '%s' is given twice (--route)", r->name);
            break;
        }
        if (!strcmp(r->name, folder)) {
            st = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "route '%s': the name is the model folder's, which names the base", r->name);
            break;
        }
        for (int64_t k = 0; st == MMT_OK && k < o->n_adapters; k++)
            if (!strcmp(o->adapter_names[k], r->name))
                st = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "route '%s': the name is also an adapter's (--adapter %s=...)", r->name,
                              r->name);
        for (int a = 0; st == MMT_OK && a < r->n_arms; a++) {
            const char *name = r->arms[a].adapter;
            int known = !strcmp(name, "base");
            for (int64_t k = 0; !known && k < o->n_adapters; k++) known = !strcmp(o->adapter_names[k], name);
            if (!known)
                st = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "route '%s': no adapter named '%s' (load it with --adapter %s=DIR, or "
                              "use base)", r->name, name, name);
        }
        for (int a = 0; st == MMT_OK && a < r->n_arms; a++)
            st = mmt_metrics_route_arm(s->metrics, r->name, r->arms[a].adapter, r->arms[a].weight);
        if (st == MMT_OK) s->n_routes++;
    }
    return st;
}

mmt_status mmt_server_start(const mmt_server_options *o, mmt_server **out) {
    *out = NULL;
    if (!o->model_dir) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "serve: no model folder");
    if (o->max_batch < 1 || !(o->max_wait_ms >= 0) || o->max_inputs < 1 || o->max_image_pixels < 1 || o->max_adapters < 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "serve: max batch, inputs and pixels must be >= 1, max wait >= 0");
    mmt_server *s = mmt_calloc(1, sizeof *s);
    if (!s || !(s->model_dir = mmt_strdup(o->model_dir))) {
        mmt_free(s);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    s->o = *o;
    pthread_mutex_init(&s->mu, NULL);
    mmt_status st = mmt_metrics_create(&s->metrics);
    if (st == MMT_OK) st = routes_setup(s);
    if (st == MMT_OK && o->feedback_path) {
        int policy = o->feedback_fsync;
        if (policy < MMT_FEEDBACK_FSYNC_SECOND || policy > MMT_FEEDBACK_FSYNC_NEVER)
            st = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "serve: feedback sync policy %d is not one of 0-2", policy);
        else st = mmt_feedback_open(o->feedback_path, (mmt_feedback_fsync)policy, &s->feedback);
    }
    mmt_http_options ho = {.host = o->host, .port = o->port, .max_body_bytes = o->max_body_bytes,
                           .max_connections = o->max_connections, .idle_timeout_s = o->idle_timeout_s, .handler = route,
                           .user = s};
    if (st == MMT_OK) st = mmt_http_start(&ho, &s->http);
    if (st == MMT_OK) {
        if (pthread_create(&s->loader, NULL, load_model, s) != 0) st = mmt_fail(MMT_STATUS_INTERNAL, "serve: cannot start the loader");
        else s->loader_started = 1;
    }
    if (st != MMT_OK) {
        mmt_server_stop(s, 0);
        return st;
    }
    *out = s;
    return MMT_OK;
}

int mmt_server_port(const mmt_server *s) { return mmt_http_port(s->http); }

int mmt_server_wait_ready(mmt_server *s, double timeout_s) {
    double until = mmt_now_seconds() + timeout_s;
    for (;;) {
        int st = atomic_load(&s->state);
        if (st == READY) return 1;
        if (st == FAILED) {
            mmt_fail(MMT_STATUS_IO, "%s", s->load_error);
            return -1;
        }
        if (mmt_now_seconds() >= until) return 0;
        usleep(2000);
    }
}

void mmt_server_stop(mmt_server *s, double drain_s) {
    if (!s) return;
    if (s->http) mmt_http_quiesce(s->http);
    if (s->loader_started) pthread_join(s->loader, NULL);
    double until = mmt_now_seconds() + drain_s;
    while (s->http && (mmt_http_pending(s->http) > 0 || atomic_load(&s->loads_in_flight) > 0) && mmt_now_seconds() < until)
        usleep(2000);
    mmt_batcher_stop(s->batcher); /* answers whatever is still queued */
    mmt_caption_service_stop(s->captioner); /* captioning: finishes and answers its requests */
    while (atomic_load(&s->loads_in_flight) > 0) usleep(2000);
    /* replies are all sent: give the polling thread a moment to write them out */
    for (int i = 0; s->http && i < 50 && mmt_http_pending(s->http) > 0; i++) usleep(2000);
    mmt_http_stop(s->http);
    for (int64_t i = 0; i < s->n_adapters; i++) adapter_release(s, s->adapters[i]);
    mmt_free(s->adapters);
    if (s->index_adapter && s->index_adapter->a) adapter_release(s, s->index_adapter);
    else if (s->index_adapter) mmt_free(s->index_adapter->dir), mmt_free(s->index_adapter);
    close_dead(s); /* the worker has stopped: the run is ours */
    mmt_index_close(s->index);
    mmt_clip_run_free(s->run);
    mmt_clip_free(s->model);
    mmt_metrics_free(s->metrics);
    mmt_feedback_close(s->feedback);
    mmt_route_recent_free(&s->recent);
    mmt_free(s->routes);
    pthread_mutex_destroy(&s->mu);
    mmt_free(s->model_dir);
    mmt_free(s);
}
