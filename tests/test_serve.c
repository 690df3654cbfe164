/*
 * test_serve.c — `mmtune serve`'s server (serve/server.h) on a loopback port, called over
 * real sockets by a small HTTP/1.1 client (http_client.h), on the tiny CLIP fixture and LoRA
 * adapters made for it:
 *   - /v1/embeddings (texts, base64 images, data URIs, the base64 output format) and
 *     /v1/classify equal the library's own results for the same inputs (mmt_clip_run, the
 *     path of `mmtune embed`/`classify`), to 1e-6, with and without adapters;
 *   - concurrent clients with different adapters are batched together (the batch-size
 *     histogram shows batches of several rows) and each gets its own adapter's result; the
 *     same with the base in int8 (serve --int8), against the library's int8 model; a batch
 *     runs without waiting out --max-wait-ms once every open connection has its request
 *     queued, and waits while another connection is open;
 *   - adapters load (POST), list (GET) and unload (DELETE) while other threads send traffic,
 *     with no failed or wrong request; an unloaded name is 404 afterwards; a run context
 *     forgets an adapter (mmt_clip_run_forget), and hundreds of load-use-unload cycles
 *     leave resident memory flat;
 *   - bad requests (malformed JSON, wrong types, too large bodies, too many inputs, broken
 *     base64, corrupt images, texts over the context, unknown fields, adapter names that
 *     shadow the base, templates without {}, unknown adapters, paths and methods)
 *     each get their 4xx JSON error; thousands of them mixed with good requests leave the
 *     server answering correctly with its resident memory grown by under 5%;
 *   - HTTP details: 405 with Allow, HEAD, two Content-Length headers refused, a chunked body
 *     past the limit answered 413, an image over the pixel limit refused from its header;
 *   - a client that sends half a request and goes quiet is dropped after the idle timeout
 *     while others are served (slowloris);
 *   - multipart/form-data uploads (curl -F) give byte for byte the answers of the same
 *     requests in JSON; malformed multipart bodies get 400;
 *   - /v1/search over an index made by `mmtune index` equals mmt_index_search with the
 *     library's query embedding (ids, order, scores), with filters and thumbnails; its
 *     errors; the web page (GET /?q=...) in headless Chromium shows the hits as thumbnails
 *     (the DOM is checked; the screenshot stays in the build folder as serve_page.png);
 *   - /health (503 with the reason when the model cannot load), /metrics, GET /, and a stop
 *     with requests in flight answers them all.
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "adapter_fixture.h"
#include "check.h"
#include "http_client.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/json.h"
#include "eval/report.h"
#include "api/clip_run_internal.h"
#include "mmtune.h"
#include "serve/index.h"
#include "serve/multipart.h"
#include "serve/server.h"

#define MODEL MMT_FIXTURE_DIR "/clip/tiny-a"

/* AddressSanitizer keeps freed memory in quarantine, so resident memory says nothing there;
 * LeakSanitizer checks for leaks instead. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif
#define IMAGES MMT_FIXTURE_DIR "/clip/images"

static char root[] = "/tmp/mmt_serve_XXXXXX";
static char lora_dir[2][300];

/* The "embedding" arrays of a /v1/embeddings answer into out (n, dim); the count found. */
static int64_t parse_embeddings(const char *body, int64_t dim, float *out, int64_t max_n) {
    mmt_json_doc *doc = NULL;
    if (!body || mmt_json_parse(body, strlen(body), "answer", &doc) != MMT_OK) return -1;
    const mmt_json *data = mmt_json_get(mmt_json_root(doc), "data");
    int64_t n = 0;
    for (size_t i = 0; data && i < data->len && n < max_n; i++, n++) {
        const mmt_json *e = mmt_json_get(&data->items[i], "embedding");
        if (e && e->type == MMT_JSON_STRING) { /* base64 of float32 */
            uint8_t *bytes = NULL;
            size_t nb = 0;
            const char *s = e->string;
            /* decode with the server's own decoder would prove little: do it by hand */
            static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            bytes = calloc(e->len, 1);
            uint32_t acc = 0;
            int bits = 0;
            for (size_t k = 0; k < e->len && s[k] != '='; k++) {
                acc = acc << 6 | (uint32_t)(strchr(A, s[k]) - A);
                if ((bits += 6) >= 8) bytes[nb++] = (uint8_t)(acc >> (bits -= 8));
            }
            if (nb == (size_t)dim * 4) memcpy(out + n * dim, bytes, nb);
            else n = -100;
            free(bytes);
        } else if (e && e->type == MMT_JSON_ARRAY && (int64_t)e->len == dim) {
            for (int64_t c = 0; c < dim; c++) out[n * dim + c] = (float)e->items[c].number;
        } else {
            n = -100;
        }
    }
    mmt_json_free(doc);
    return n;
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* ---- fixtures ---------------------------------------------------------------------------- */

static mmt_clip *model;
static mmt_clip_adapter *adapters[2];
static int64_t dim;
static const char *texts[] = {"a photo of a cat", "a red circle", "an astronaut & a flag", "coffee"};
static const char *images[] = {"chelsea.jpg", "astronaut.png", "camera_gray.png", "rocket_rgba.png"};

static void make_adapters(void) {
    for (int a = 0; a < 2; a++) {
        adapter_fixture_serve_lora(model, root, a, lora_dir[a], sizeof lora_dir[a]);
        CHECK_OK(mmt_clip_adapter_open(model, lora_dir[a], &adapters[a]));
    }
}

/* What the library gives: text i (image i when image) with adapter a (-1: the base). */
static void expected(int image, int i, int a, float *out) {
    mmt_clip_run *run = NULL;
    CHECK_OK(mmt_clip_run_create(model, &run));
    mmt_clip_adapter *ad = a >= 0 ? adapters[a] : NULL;
    char path[400];
    snprintf(path, sizeof path, "%s/%s", IMAGES, images[i]);
    const char *p = path;
    if (image) CHECK_OK(mmt_clip_run_embed_image_files(run, &p, &ad, 1, out));
    else CHECK_OK(mmt_clip_run_embed_texts(run, &texts[i], &ad, 1, out));
    mmt_clip_run_free(run);
}

/* The tiny model with adapters a0 and a1, its base's linears kept as `quantize` says. */
static mmt_server *start_quantized(int64_t max_batch, double wait_ms, int idle_s, mmt_quant_type quantize) {
    mmt_server_options o;
    mmt_server_options_default(&o);
    o.model_dir = MODEL;
    o.port = 0;
    o.max_batch = max_batch;
    o.max_wait_ms = wait_ms;
    o.idle_timeout_s = idle_s;
    o.max_body_bytes = 1 << 20;
    o.max_inputs = 16;
    const char *names[] = {"a0", "a1"}, *dirs[] = {lora_dir[0], lora_dir[1]};
    o.adapter_names = names;
    o.adapter_dirs = dirs;
    o.n_adapters = 2;
    o.quantize = (int)quantize;
    return http_server_start(&o);
}

static mmt_server *start(int64_t max_batch, double wait_ms, int idle_s) {
    return start_quantized(max_batch, wait_ms, idle_s, MMT_QUANT_NONE);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_embeddings_equal_library(void) {
    mmt_server *s = start(32, 2, 30);
    if (!s) return;
    float got[4 * 512], want[512];
    CHECK(dim <= 512);
    for (int a = -1; a < 2; a++) {
        char body[4096];
        snprintf(body, sizeof body, "{\"input\": [\"%s\", {\"text\": \"%s\"}, \"%s\"], \"model\": %s}", texts[0], texts[1], texts[3],
                 a < 0 ? "null" : a ? "\"a1\"" : "\"a0\"");
        response r = call("POST", "/v1/embeddings", body);
        CHECK_MSG(r.status == 200, "status %d: %s", r.status, r.body);
        CHECK(parse_embeddings(r.body, dim, got, 4) == 3);
        int idx[3] = {0, 1, 3};
        for (int k = 0; k < 3; k++) {
            expected(0, idx[k], a, want);
            CHECK_MSG(max_diff(got + k * dim, want, dim) <= 1e-6, "text %d adapter %d: %g", idx[k], a,
                      max_diff(got + k * dim, want, dim));
        }
        CHECK(r.body && strstr(r.body, "\"prompt_tokens\": ") && strstr(r.body, "\"object\": \"embedding\""));
        response_free(&r);
        /* images: a plain base64 string is a text, so images go as objects; both forms */
        char *b0 = fixture_image_base64(images[0]), *b1 = fixture_image_base64(images[1]);
        size_t blen = strlen(b0) + strlen(b1) + 512;
        char *ib = malloc(blen);
        snprintf(ib, blen, "{\"input\": [{\"image\": \"%s\"}, {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,%s\"}}], "
                           "\"model\": %s, \"encoding_format\": \"base64\"}", b0, b1, a < 0 ? "\"base\"" : a ? "\"a1\"" : "\"a0\"");
        r = call("POST", "/v1/embeddings", ib);
        CHECK_MSG(r.status == 200, "status %d: %s", r.status, r.body);
        CHECK(parse_embeddings(r.body, dim, got, 4) == 2);
        for (int k = 0; k < 2; k++) {
            expected(1, k, a, want);
            CHECK_MSG(max_diff(got + k * dim, want, dim) <= 1e-6, "image %d adapter %d: %g", k, a, max_diff(got + k * dim, want, dim));
        }
        response_free(&r);
        free(ib);
        mmt_free(b0);
        mmt_free(b1);
    }
    /* classify: the probabilities of `mmtune classify` (softmax of exp(logit_scale) x cosine) */
    char *b0 = fixture_image_base64(images[0]);
    char *cb = malloc(strlen(b0) + 256);
    sprintf(cb, "{\"images\": [\"%s\"], \"labels\": [\"cat\", \"dog\", \"red circle\"], \"model\": \"a0\"}", b0);
    response r = call("POST", "/v1/classify", cb);
    CHECK_MSG(r.status == 200, "status %d: %s", r.status, r.body);
    float img[512], lab[3 * 512];
    expected(1, 0, 0, img);
    const char *labels[] = {"a photo of a cat.", "a photo of a dog.", "a photo of a red circle."};
    mmt_clip_run *run = NULL;
    CHECK_OK(mmt_clip_run_create(model, &run));
    mmt_clip_adapter *ad3[3] = {adapters[0], adapters[0], adapters[0]};
    CHECK_OK(mmt_clip_run_embed_texts(run, labels, ad3, 3, lab));
    mmt_clip_run_free(run);
    double logit[3], max = -INFINITY, sum = 0;
    for (int c = 0; c < 3; c++) {
        logit[c] = 0;
        for (int64_t d = 0; d < dim; d++) logit[c] += (double)img[d] * lab[c * dim + d];
        logit[c] *= mmt_clip_logit_scale(model);
        max = fmax(max, logit[c]);
    }
    for (int c = 0; c < 3; c++) sum += exp(logit[c] - max);
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse(r.body ? r.body : "", r.len, "classify", &doc));
    const mmt_json *data = doc ? mmt_json_get(mmt_json_root(doc), "data") : NULL;
    const mmt_json *scores = data && data->len ? mmt_json_get(&data->items[0], "scores") : NULL;
    CHECK(scores && scores->len == 3);
    static const char *names[] = {"cat", "dog", "red circle"};
    for (size_t k = 0; scores && k < scores->len; k++) {
        const char *label = mmt_json_get(&scores->items[k], "label")->string;
        double p = mmt_json_get(&scores->items[k], "probability")->number;
        for (int c = 0; c < 3; c++)
            if (!strcmp(label, names[c]))
                CHECK_MSG(fabs(p - exp(logit[c] - max) / sum) < 1e-5, "%s: %g vs %g", label, p, exp(logit[c] - max) / sum);
    }
    mmt_json_free(doc);
    response_free(&r);
    free(cb);
    mmt_free(b0);
    /* the page and the health check */
    r = call("GET", "/", NULL);
    CHECK(r.status == 200 && r.body && strstr(r.body, "<title>mmtune</title>"));
    response_free(&r);
    r = call("GET", "/health", NULL);
    CHECK(r.status == 200 && r.body && strstr(r.body, "\"ok\""));
    response_free(&r);
    mmt_server_stop(s, 10);
}

/* ---- concurrency: batching and adapters coming and going ------------------------------ */

typedef struct client {
    int id, n, wrong, failed;
    const char *model; /* NULL: pick by id */
    atomic_int *stop;
    float (*want)[4][512]; /* [adapter + 1][text]; NULL: want_text */
} client;

static float want_text[3][4][512]; /* [adapter + 1][text] */

static void *client_thread(void *arg) {
    client *c = arg;
    float got[512];
    for (int k = 0; k < c->n && !(c->stop && atomic_load(c->stop)); k++) {
        int a = (c->id + k) % 3 - 1, t = (c->id * 7 + k) % 4;
        const char *name = c->model ? c->model : a < 0 ? "base" : a ? "a1" : "a0";
        if (c->model) a = !strcmp(c->model, "a0") ? 0 : !strcmp(c->model, "base") ? -1 : 1; /* "extra" is a1's folder */
        char body[512];
        snprintf(body, sizeof body, "{\"input\": \"%s\", \"model\": \"%s\"}", texts[t], name);
        response r = call("POST", "/v1/embeddings", body);
        if (r.status != 200 || parse_embeddings(r.body, dim, got, 1) != 1) c->failed++;
        else if (max_diff(got, (c->want ? c->want : want_text)[a + 1][t], dim) > 1e-6) c->wrong++;
        response_free(&r);
    }
    return NULL;
}

static double metric(const char *text, const char *name) {
    const char *p = text ? strstr(text, name) : NULL;
    return p ? atof(p + strlen(name)) : -1;
}

static void expected_texts(void) {
    for (int a = -1; a < 2; a++)
        for (int t = 0; t < 4; t++) expected(0, t, a, want_text[a + 1][t]);
}

static void test_batching_and_adapters_under_load(void) {
    mmt_server *s = start(16, 30, 30);
    if (!s) return;
    enum { N = 8 };
    pthread_t th[N];
    client cl[N];
    for (int i = 0; i < N; i++) {
        cl[i] = (client){.id = i, .n = 12};
        pthread_create(&th[i], NULL, client_thread, &cl[i]);
    }
    /* meanwhile: load a third adapter under a new name, use it, unload it */
    char body[600];
    snprintf(body, sizeof body, "{\"name\": \"extra\", \"path\": \"%s\"}", lora_dir[1]);
    response r = call("POST", "/v1/adapters", body);
    CHECK_MSG(r.status == 201, "load: %d %s", r.status, r.body);
    response_free(&r);
    r = call("GET", "/v1/adapters", NULL);
    CHECK(r.status == 200 && r.body && strstr(r.body, "\"extra\"") && strstr(r.body, "\"a0\""));
    response_free(&r);
    client extra = {.id = 99, .n = 6, .model = "extra"};
    client_thread(&extra); /* "extra" is lora1's folder: a1's results */
    CHECK_MSG(extra.failed == 0 && extra.wrong == 0, "extra adapter: %d failed, %d wrong", extra.failed, extra.wrong);
    (void)0;
    r = call("POST", "/v1/adapters", body);
    CHECK_MSG(r.status == 409, "a second load of one name: %d", r.status);
    response_free(&r);
    r = call("DELETE", "/v1/adapters/extra", NULL);
    CHECK(r.status == 200);
    response_free(&r);
    r = call("POST", "/v1/embeddings", "{\"input\": \"x\", \"model\": \"extra\"}");
    CHECK(r.status == 404 && r.body && strstr(r.body, "no adapter named 'extra'"));
    response_free(&r);
    r = call("DELETE", "/v1/adapters/extra", NULL);
    CHECK(r.status == 404);
    response_free(&r);
    r = call("POST", "/v1/adapters", "{\"name\": \"bad\", \"path\": \"/nonexistent/adapter\"}");
    CHECK_MSG(r.status == 400 && r.body && strstr(r.body, "nonexistent"), "%d %s", r.status, r.body);
    response_free(&r);
    int failed = 0, wrong = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        failed += cl[i].failed, wrong += cl[i].wrong;
    }
    CHECK_MSG(failed == 0 && wrong == 0, "%d failed, %d wrong of %d", failed, wrong, N * 12);
    r = call("GET", "/metrics", NULL);
    CHECK(r.status == 200 && r.body);
    double batches = metric(r.body, "mmtune_batch_rows_count "), rows = metric(r.body, "mmtune_batch_rows_sum ");
    CHECK_MSG(batches > 0 && rows / batches > 1.5, "mean batch %g rows over %g batches: not batched", rows / batches, batches);
    CHECK(strstr(r.body, "mmtune_requests_total{endpoint=\"/v1/embeddings\",adapter=\"a1\",code=\"200\"}"));
    CHECK(strstr(r.body, "mmtune_adapters_loaded 2") && strstr(r.body, "mmtune_ready 1"));
    response_free(&r);
    mmt_server_stop(s, 10);
}

/* serve --int8: the base's linears in int8, each adapter's LoRA in fp32 beside them. Clients
 * with the base and both adapters, batched together, get what the library gives with the
 * model loaded quantized and the same adapters opened on it (to 1e-6, as fp32 batches), and
 * that is not the fp32 answer (the option reached the model). */
static void test_int8_base_with_adapters(void) {
    static float want8[3][4][512];
    mmt_quant_options q;
    mmt_quant_options_default(&q, MMT_QUANT_INT8);
    mmt_clip *m8 = NULL;
    CHECK_OK(mmt_clip_load_quantized(MODEL, &q, &m8));
    if (!m8) return;
    mmt_clip_adapter *ad8[2] = {NULL, NULL};
    for (int a = 0; a < 2; a++) CHECK_OK(mmt_clip_adapter_open(m8, lora_dir[a], &ad8[a]));
    mmt_clip_run *run = NULL;
    CHECK_OK(mmt_clip_run_create(m8, &run));
    double moved = 0;
    for (int a = -1; a < 2 && run; a++)
        for (int t = 0; t < 4; t++) {
            mmt_clip_adapter *ad = a >= 0 ? ad8[a] : NULL;
            CHECK_OK(mmt_clip_run_embed_texts(run, &texts[t], &ad, 1, want8[a + 1][t]));
            moved = fmax(moved, max_diff(want8[a + 1][t], want_text[a + 1][t], dim));
        }
    mmt_clip_run_free(run);
    CHECK_MSG(moved > 1e-4, "int8 embeddings within %g of fp32: not quantized?", moved);
    mmt_server *s = start_quantized(16, 30, 30, MMT_QUANT_INT8);
    if (s) {
        enum { N = 6 };
        pthread_t th[N];
        client cl[N];
        for (int i = 0; i < N; i++) {
            cl[i] = (client){.id = i, .n = 6, .want = want8};
            pthread_create(&th[i], NULL, client_thread, &cl[i]);
        }
        int failed = 0, wrong = 0;
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            failed += cl[i].failed, wrong += cl[i].wrong;
        }
        CHECK_MSG(failed == 0 && wrong == 0, "int8: %d failed, %d wrong of %d", failed, wrong, N * 6);
        response r = call("GET", "/metrics", NULL);
        double batches = metric(r.body, "mmtune_batch_rows_count "), rows = metric(r.body, "mmtune_batch_rows_sum ");
        CHECK_MSG(batches > 0 && rows / batches > 1.5, "int8: mean batch %g rows over %g batches: not batched", rows / batches,
                  batches);
        response_free(&r);
        mmt_server_stop(s, 10);
    }
    for (int a = 0; a < 2; a++) mmt_clip_adapter_close(ad8[a]);
    mmt_clip_free(m8);
}

/* Until /metrics shows n open connections, the metrics call's own among them (the polling
 * thread accepts and closes them on its own time); 0 after 5 s. */
static int wait_connections(int n) {
    char want[64];
    snprintf(want, sizeof want, "mmtune_http_connections %d\n", n);
    for (int i = 0; i < 250; i++) {
        response r = call("GET", "/metrics", NULL);
        int seen = r.body && strstr(r.body, want);
        response_free(&r);
        if (seen) return 1;
        usleep(20000);
    }
    return 0;
}

/* A batch need not wait out --max-wait-ms when every open connection already has its request
 * queued: a lone client is answered at once; with a second connection open and silent, the
 * same request waits for the other one's possible request, the full second. */
static void test_batch_runs_when_every_connection_waits(void) {
    mmt_server *s = start(32, 1000, 30);
    if (!s) return;
    const char *body = "{\"input\": \"a red circle\"}";
    response r = call("POST", "/v1/embeddings", body); /* warm: the first batch pays the start-up */
    response_free(&r);
    CHECK_MSG(wait_connections(1), "the warm-up connection stayed open");
    double t0 = mmt_now_seconds();
    r = call("POST", "/v1/embeddings", body);
    double alone = mmt_now_seconds() - t0;
    CHECK(r.status == 200);
    response_free(&r);
    CHECK_MSG(alone < 0.5, "a lone request took %.3f s: it waited for the batch to fill", alone);
    int idle = dial();
    CHECK(idle >= 0);
    CHECK_MSG(wait_connections(2), "the metrics never showed the silent connection");
    t0 = mmt_now_seconds();
    r = call("POST", "/v1/embeddings", body);
    double with_idle = mmt_now_seconds() - t0;
    CHECK(r.status == 200);
    response_free(&r);
    CHECK_MSG(with_idle >= 0.9, "with a second connection open the request took %.3f s, under --max-wait-ms", with_idle);
    if (idle >= 0) close(idle);
    mmt_server_stop(s, 10);
}

/* ---- bad input ------------------------------------------------------------------------- */

static int64_t rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long long a = 0, b = 0;
    if (f) {
        if (fscanf(f, "%lld %lld", &a, &b) != 2) b = 0;
        fclose(f);
    }
    return b * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_bad_requests(void) {
    mmt_server *s = start(8, 1, 30);
    if (!s) return;
    char big[2 << 20];
    memset(big, 'a', sizeof big);
    memcpy(big, "{\"input\": \"", 11);
    memcpy(big + sizeof big - 2, "\"}", 2);
    char *corrupt = NULL;
    {
        mmt_strbuf b = {0};
        mmt_report_base64(&b, (const uint8_t *)"\x89PNG\r\n\x1a\nnot really", 18);
        size_t n = b.len + 64;
        corrupt = malloc(n);
        snprintf(corrupt, n, "{\"input\": [{\"image\": \"%s\"}]}", b.data);
        mmt_strbuf_free(&b);
    }
    char long_text[4096];
    strcpy(long_text, "{\"input\": \"");
    for (int i = 0; i < 200; i++) strcat(long_text, "cat ");
    strcat(long_text, "\"}");
    struct {
        const char *method, *path, *body;
        int status;
        const char *needle;
    } cases[] = {
        {"POST", "/v1/embeddings", "{\"input\": ", 400, "request body"},
        {"POST", "/v1/embeddings", "[1, 2]", 400, "JSON object"},
        {"POST", "/v1/embeddings", "{\"input\": 3}", 400, "input 0"},
        {"POST", "/v1/embeddings", "{\"input\": []}", 400, "non-empty"},
        {"POST", "/v1/embeddings", "{\"input\": [\"\"]}", 400, "empty text"},
        {"POST", "/v1/embeddings", "{\"input\": \"x\", \"model\": 7}", 400, "\\\"model\\\" must be a string"},
        {"POST", "/v1/embeddings", "{\"input\": \"x\", \"model\": \"nobody\"}", 404, "no adapter named 'nobody'"},
        {"POST", "/v1/embeddings", "{\"input\": \"x\", \"encoding_format\": \"hex\"}", 400, "encoding_format"},
        {"POST", "/v1/embeddings", "{\"input\": [{\"image\": \"@@@@\"}]}", 400, "base64"},
        {"POST", "/v1/embeddings", corrupt, 400, "input 0"},
        {"POST", "/v1/embeddings", long_text, 400, "input 0: the text is 402 tokens long, more than the model's 77\""},
        {"POST", "/v1/embeddings", "{\"input\": \"x\", \"dimensions\": 5}", 400, "unknown field \\\"dimensions\\\""},
        {"POST", "/v1/embeddings", "{\"input\": [{\"text\": \"a\", \"image\": \"AAAA\"}]}", 400, "input 0: give one of"},
        {"POST", "/v1/embeddings", "{\"input\": [{\"txt\": \"a\"}]}", 400, "unknown field \\\"txt\\\""},
        {"POST", "/v1/embeddings", "{\"input\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"https://x/y.jpg\"}}]}",
         400, "only data: URIs"},
        {"POST", "/v1/classify", "{\"images\": [\"iVBO\"], \"labels\": [\"a\"], \"template\": \"no placeholder\"}", 400,
         "{} where the label goes"},
        {"POST", "/v1/classify", "{\"images\": [\"iVBO\"], \"labels\": [\"a\"], \"top\": 1}", 400, "unknown field"},
        {"POST", "/v1/adapters", "{\"name\": \"tiny-a\", \"path\": \"x\"}", 409, "already the base model's name"},
        {"POST", "/v1/adapters", "{\"name\": \"n1\", \"path\": \"x\", \"force\": true}", 400, "no other field"},
        {"POST", "/v1/embeddings", "{\"input\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]}",
         413, "over the limit of 16"},
        {"POST", "/v1/classify", "{\"images\": [\"iVBO\"], \"labels\": []}", 400, "labels"},
        {"POST", "/v1/classify", "{\"images\": \"x\", \"labels\": [\"a\"]}", 400, "images"},
        {"GET", "/v1/embeddings", NULL, 405, "POST"},
        {"GET", "/nowhere", NULL, 404, "no endpoint"},
        {"POST", "/v1/adapters", "{\"name\": \"base\", \"path\": \"x\"}", 400, "name"},
        {"PUT", "/v1/adapters", "{}", 405, "DELETE"},
    };
    int n_cases = (int)(sizeof cases / sizeof *cases);
    for (int i = 0; i < n_cases; i++) {
        response r = call(cases[i].method, cases[i].path, cases[i].body);
        CHECK_MSG(r.status == cases[i].status && r.body && strstr(r.body, cases[i].needle) && strstr(r.body, "\"error\""),
                  "case %d (%s %s): %d %s", i, cases[i].method, cases[i].path, r.status, r.body ? r.body : "(none)");
        CHECK_MSG(r.body && strchr(r.body, '\n') == r.body + r.len - 1, "case %d: not one line", i);
        response_free(&r);
    }
    response r = call_raw("POST", "/v1/embeddings", big, sizeof big, NULL);
    CHECK_MSG(r.status == 413 && r.body && strstr(r.body, "over the limit"), "big body: %d", r.status);
    response_free(&r);
    /* an announced Content-Length over the limit is refused without the body */
    r = call_raw("POST", "/v1/embeddings", NULL, 0, "Content-Type: application/json\r\nContent-Length: 99999999\r\n");
    CHECK(r.status == 413 || r.status == 0);
    response_free(&r);
    /* thousands of bad requests among good ones: all answered right, memory flat */
    float good[512];
    for (int round = 0; round < 2; round++) {
        int64_t before = rss_kb();
        int bad_answers = 0, good_wrong = 0;
        int n = round ? 10000 : 1000; /* the first round warms the allocator up */
        for (int k = 0; k < n; k++) {
            int c = k % n_cases;
            if (k % 5 == 4) {
                response g = call("POST", "/v1/embeddings", "{\"input\": \"a photo of a cat\"}");
                if (g.status != 200 || parse_embeddings(g.body, dim, good, 1) != 1 ||
                    max_diff(good, want_text[0][0], dim) > 1e-6)
                    good_wrong++;
                response_free(&g);
            } else {
                response b = call(cases[c].method, cases[c].path, cases[c].body);
                bad_answers += b.status != cases[c].status;
                response_free(&b);
            }
        }
        CHECK_MSG(bad_answers == 0 && good_wrong == 0, "round %d: %d bad answers, %d good requests wrong", round,
                  bad_answers, good_wrong);
        int64_t after = rss_kb();
        if (round && !UNDER_ASAN) CHECK_MSG(after <= before * 1.05, "resident memory grew from %lld to %lld KiB", (long long)before, (long long)after);
    }
    free(corrupt);
    mmt_server_stop(s, 10);
}

/* HTTP details a client or a proxy relies on: 405 names the allowed methods, HEAD is GET
 * without the body, two Content-Length headers are refused, a chunked body past the limit
 * gets its 413 (read to its end, then answered), an image over the pixel limit is refused
 * from its header with 413 whatever its size. */
static void test_http_details(void) {
    mmt_server *s = start(8, 1, 30); /* --max-body-bytes 1 MiB */
    if (!s) return;
    char allow[64];
    response r = call("GET", "/v1/embeddings", NULL);
    CHECK_MSG(r.status == 405 && response_header(&r, "Allow", allow, sizeof allow) && !strcmp(allow, "POST"), "%d %s",
              r.status, r.head ? r.head : "");
    response_free(&r);
    r = call("PUT", "/v1/adapters", "{}");
    CHECK(r.status == 405 && response_header(&r, "Allow", allow, sizeof allow) && !strcmp(allow, "GET, POST, DELETE"));
    response_free(&r);
    r = call("HEAD", "/", NULL);
    CHECK_MSG(r.status == 200 && r.len == 0, "HEAD /: %d, %zu bytes of body", r.status, r.len);
    response_free(&r);
    const char *body = "{\"input\": \"a\"}";
    r = call_raw("POST", "/v1/embeddings", body, strlen(body), "Content-Length: 2\r\n");
    CHECK_MSG(r.status == 400 && r.body && strstr(r.body, "more than one Content-Length"), "%d %s", r.status, r.body);
    response_free(&r);
    /* chunked, 1.25 MiB against the 1 MiB limit */
    int fd = dial();
    CHECK(fd >= 0);
    if (fd >= 0) {
        const char *head = "POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                           "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        int ok = send(fd, head, strlen(head), MSG_NOSIGNAL) == (ssize_t)strlen(head);
        static char chunk[8 + 65536 + 2];
        memcpy(chunk, "10000\r\n", 7);
        memset(chunk + 7, 'a', 65536);
        memcpy(chunk + 7 + 65536, "\r\n", 2);
        for (int i = 0; ok && i < 20; i++) ok = send(fd, chunk, 7 + 65536 + 2, MSG_NOSIGNAL) == 7 + 65536 + 2;
        ok = ok && send(fd, "0\r\n\r\n", 5, MSG_NOSIGNAL) == 5;
        CHECK_MSG(ok, "the chunked body was not taken");
        mmt_strbuf in = {0};
        char buf[4096];
        for (ssize_t got; (got = recv(fd, buf, sizeof buf, 0)) > 0;) mmt_strbuf_append(&in, buf, (size_t)got);
        close(fd);
        CHECK_MSG(in.data && !strncmp(in.data, "HTTP/1.1 413", 12) && strstr(in.data, "over the limit of 1048576 bytes"),
                  "chunked: %s", in.data ? in.data : "(no answer)");
        mmt_strbuf_free(&in);
    }
    /* a JPEG whose header says 60000 x 60000: 413 from the header, like any image over the limit */
    size_t n = 0;
    char *jpeg = check_read_file(MMT_FIXTURE_DIR "/images/huge.jpg", &n);
    mmt_strbuf b = {0};
    if (jpeg) {
        mmt_strbuf_printf(&b, "{\"input\": [{\"image\": \"");
        mmt_report_base64(&b, (const uint8_t *)jpeg, n);
        mmt_strbuf_printf(&b, "\"}]}");
        r = call("POST", "/v1/embeddings", b.data);
        CHECK_MSG(r.status == 413 && r.body && strstr(r.body, "60000 x 60000 pixels, over the limit") &&
                      strstr(r.body, "--max-image-pixels"), "%d %s", r.status, r.body);
        response_free(&r);
    }
    mmt_strbuf_free(&b);
    free(jpeg);
    mmt_server_stop(s, 10);
}

static void test_slow_client_and_stop(void) {
    mmt_server *s = start(8, 1, 1); /* idle timeout 1 s */
    if (!s) return;
    int slow = dial();
    CHECK(slow >= 0);
    const char *half = "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inp";
    CHECK(send(slow, half, strlen(half), MSG_NOSIGNAL) > 0);
    response r = call("POST", "/v1/embeddings", "{\"input\": \"a red circle\"}");
    CHECK(r.status == 200); /* served while the slow one hangs */
    response_free(&r);
    char buf[256];
    double t0 = (double)time(NULL);
    ssize_t got = recv(slow, buf, sizeof buf, 0); /* the server closes it: 0, or an error */
    CHECK_MSG(got <= 0 || strncmp(buf, "HTTP/1.1 2", 10) != 0, "the half request got an answer");
    CHECK_MSG((double)time(NULL) - t0 < 20, "the idle connection was not dropped");
    close(slow);
    /* stop with requests in flight: every one is answered */
    enum { N = 6 };
    pthread_t th[N];
    client cl[N];
    for (int i = 0; i < N; i++) {
        cl[i] = (client){.id = i, .n = 3};
        pthread_create(&th[i], NULL, client_thread, &cl[i]);
    }
    usleep(20000);
    mmt_server_stop(s, 20);
    int failed = 0, wrong = 0, done = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        failed += cl[i].failed, wrong += cl[i].wrong, done += cl[i].n;
    }
    /* requests sent before the stop are answered; later ones find the port closed */
    CHECK_MSG(wrong == 0, "%d wrong answers around the stop", wrong);
    (void)failed, (void)done;
}

static void test_adapter_churn(void) {
    /* the run context keeps a link per adapter it has met, until told to forget it */
    mmt_clip_run *run = NULL;
    CHECK_OK(mmt_clip_run_create(model, &run));
    mmt_clip_adapter *ad = NULL;
    CHECK_OK(mmt_clip_adapter_open(model, lora_dir[0], &ad));
    mmt_clip_adapter *rows[2] = {ad, NULL};
    float out[2 * 512];
    const char *two[2] = {texts[0], texts[1]};
    CHECK_OK(mmt_clip_run_embed_texts(run, two, rows, 2, out));
    CHECK(mmt_clip_run_links(run) == 1);
    mmt_clip_run_forget(run, ad);
    CHECK(mmt_clip_run_links(run) == 0);
    mmt_clip_adapter_close(ad);
    CHECK_OK(mmt_clip_run_embed_texts(run, two, NULL, 2, out));
    mmt_clip_run_free(run);
    /* the server: load, use, unload, many times over */
    mmt_server *s = start(8, 1, 30);
    if (!s) return;
    int64_t rss[2] = {0, 0};
    int bad = 0;
    for (int cycle = 0; cycle < 300; cycle++) {
        char body[600], path[64];
        snprintf(body, sizeof body, "{\"name\": \"c%d\", \"path\": \"%s\"}", cycle, lora_dir[cycle % 2]);
        response r = call("POST", "/v1/adapters", body);
        bad += r.status != 201;
        response_free(&r);
        snprintf(body, sizeof body, "{\"input\": \"%s\", \"model\": \"c%d\"}", texts[cycle % 4], cycle);
        r = call("POST", "/v1/embeddings", body);
        float got[512];
        bad += r.status != 200 || parse_embeddings(r.body, dim, got, 1) != 1 ||
               max_diff(got, want_text[cycle % 2 + 1][cycle % 4], dim) > 1e-6;
        response_free(&r);
        snprintf(path, sizeof path, "/v1/adapters/c%d", cycle);
        r = call("DELETE", path, NULL);
        bad += r.status != 200;
        response_free(&r);
        if (cycle == 99) rss[0] = rss_kb();
    }
    rss[1] = rss_kb();
    CHECK_MSG(bad == 0, "%d failures over 300 load-use-unload cycles", bad);
    if (!UNDER_ASAN) CHECK_MSG(rss[1] <= rss[0] * 1.05, "resident memory grew from %lld to %lld KiB over 200 cycles",
                               (long long)rss[0], (long long)rss[1]);
    mmt_server_stop(s, 10);
}

/* A multipart/form-data body: parts "name=value" or "name=@file" (an image of IMAGES). */
static response call_multipart(const char *path, const char *const *fields, int n) {
    mmt_strbuf b = {0};
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(fields[i], '=');
        mmt_strbuf_printf(&b, "--bNd\r\nContent-Disposition: form-data; name=\"%.*s\"", (int)(eq - fields[i]), fields[i]);
        if (eq[1] == '@') {
            char file[400];
            snprintf(file, sizeof file, "%s/%s", IMAGES, eq + 2);
            size_t len = 0;
            char *data = check_read_file(file, &len);
            mmt_strbuf_printf(&b, "; filename=\"%s\"\r\nContent-Type: application/octet-stream\r\n\r\n", eq + 2);
            mmt_strbuf_append(&b, data ? data : "", len);
            free(data);
        } else {
            mmt_strbuf_printf(&b, "\r\n\r\n%s", eq + 1);
        }
        mmt_strbuf_printf(&b, "\r\n");
    }
    mmt_strbuf_printf(&b, "--bNd--\r\n");
    response r = call_raw("POST", path, b.data, b.len, "Content-Type: multipart/form-data; boundary=bNd\r\n");
    mmt_strbuf_free(&b);
    return r;
}

/* The caption word lists as curl -F gives them: comma-separated or repeated parts. */
static void test_multipart_word_lists(void) {
    const char *body = "--bNd\r\nContent-Disposition: form-data; name=\"allowed_words\"\r\n\r\nno, acute,findings\r\n"
                       "--bNd\r\nContent-Disposition: form-data; name=\"allowed_words\"\r\n\r\npleural effusion\r\n"
                       "--bNd\r\nContent-Disposition: form-data; name=\"max_new_tokens\"\r\n\r\n30\r\n--bNd--\r\n";
    mmt_strbuf j = {0};
    CHECK_OK(mmt_multipart_to_json("multipart/form-data; boundary=bNd", body, strlen(body), "/v1/caption", &j));
    CHECK_MSG(j.data && strstr(j.data, "\"allowed_words\": [\"no\", \"acute\", \"findings\", \"pleural effusion\"]") &&
                  strstr(j.data, "\"max_new_tokens\": 30"),
              "multipart word lists: %s", j.data ? j.data : "");
    mmt_strbuf_free(&j);
}

static void test_multipart(void) {
    test_multipart_word_lists();
    mmt_server *s = start(8, 1, 30);
    if (!s) return;
    char *b0 = fixture_image_base64(images[0]);
    size_t n = strlen(b0) + 400;
    char *json = malloc(n);
    snprintf(json, n, "{\"images\": [{\"image\": \"%s\"}], \"labels\": [\"cat\", \"dog\", \"red circle\"], \"model\": \"a0\"}", b0);
    response want = call("POST", "/v1/classify", json), got;
    const char *cf[] = {"image=@chelsea.jpg", "labels=cat, dog", "labels=red circle", "model=a0"};
    got = call_multipart("/v1/classify", cf, 4);
    CHECK_MSG(want.status == 200 && got.status == 200 && want.body && got.body && !strcmp(want.body, got.body),
              "multipart classify: %d %s", got.status, got.body);
    response_free(&want), response_free(&got);
    snprintf(json, n, "{\"input\": [{\"image\": \"%s\"}, \"a red circle\"], \"encoding_format\": \"base64\"}", b0);
    want = call("POST", "/v1/embeddings", json);
    const char *ef[] = {"image=@chelsea.jpg", "input=a red circle", "encoding_format=base64"};
    got = call_multipart("/v1/embeddings", ef, 3);
    CHECK_MSG(want.status == 200 && got.status == 200 && want.body && got.body && !strcmp(want.body, got.body),
              "multipart embeddings: %d %s", got.status, got.body);
    response_free(&want), response_free(&got);
    free(json);
    mmt_free(b0);
    struct {
        const char *ctype, *body, *needle;
    } bad[] = {{"multipart/form-data", "--x\r\n", "no boundary"},
               {"multipart/form-data; boundary=x", "nothing here", "never occurs"},
               {"multipart/form-data; boundary=x", "--x\r\nContent-Type: text/plain\r\n\r\nv\r\n--x--\r\n", "no name"},
               {"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv", "cut short"},
               {"multipart/form-data; boundary=x",
                "--x\r\nContent-Disposition: form-data; name=\"input\"\r\n\r\n\xff\xfe\r\n--x--\r\n", "UTF-8"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char head[200];
        snprintf(head, sizeof head, "Content-Type: %s\r\n", bad[i].ctype);
        response r = call_raw("POST", "/v1/embeddings", bad[i].body, strlen(bad[i].body), head);
        CHECK_MSG(r.status == 400 && r.body && strstr(r.body, bad[i].needle), "bad multipart %zu: %d %s", i, r.status, r.body);
        response_free(&r);
    }
    mmt_server_stop(s, 10);
}

/* ---- search and the web page -------------------------------------------------------- */

static char index_dir[320];

static void make_index(void) {
    char cat[320], cmd[1200];
    snprintf(cat, sizeof cat, "%s/catalog.jsonl", root);
    snprintf(index_dir, sizeof index_dir, "%s/shop", root);
    FILE *f = fopen(cat, "w");
    static const char *titles[] = {"grey cat", "astronaut", "camera man", "coffee cup", "rocket"};
    static const char *files[] = {"chelsea.jpg", "astronaut.png", "camera_gray.png", "coffee_portrait.jpg", "rocket_rgba.png"};
    for (int i = 0; f && i < 5; i++)
        fprintf(f, "{\"id\": \"item%d\", \"title\": \"%s\", \"image\": \"%s/%s\", \"price\": %d, \"colour\": \"%s\"}\n", i,
                titles[i], IMAGES, files[i], 10 * (i + 1), i % 2 ? "red" : "blue");
    if (f) fclose(f);
    snprintf(cmd, sizeof cmd, "%s index --model %s --catalog %s --out %s >%s/index.log 2>&1", MMT_BINARY, MODEL, cat, index_dir, root);
    CHECK_MSG(system(cmd) == 0, "mmtune index failed: see %s/index.log", root);
}

static void test_search(void) {
    make_index();
    mmt_server_options o;
    mmt_server_options_default(&o);
    o.model_dir = MODEL;
    o.index_dir = index_dir;
    o.port = 0;
    mmt_server *s = http_server_start(&o);
    if (!s) return;
    /* the library's answer: the query embedded by the base, searched in the index */
    mmt_index *ix = NULL;
    CHECK_OK(mmt_index_open(index_dir, &ix));
    float q[512];
    const char *query = texts[0];
    expected(0, 0, -1, q);
    const char *filters[2] = {NULL, "price >= 30"};
    for (int with_filter = 0; with_filter < 2 && ix; with_filter++) {
        mmt_search_options so;
        mmt_search_options_default(&so);
        so.top_k = 3;
        mmt_search_filter flt;
        if (with_filter) {
            CHECK_OK(mmt_search_filter_parse(filters[1], &flt));
            so.filters = &flt, so.n_filters = 1;
        }
        mmt_search_result want = {0};
        CHECK_OK(mmt_index_search(ix, q, &so, &want));
        char body[400];
        snprintf(body, sizeof body, "{\"query\": {\"text\": \"%s\"}, \"top_k\": 3%s}", query,
                 with_filter ? ", \"filters\": [\"price >= 30\"], \"int8\": true" : "");
        response r = call("POST", "/v1/search", body);
        CHECK_MSG(r.status == 200, "%d %s", r.status, r.body);
        mmt_json_doc *doc = NULL;
        CHECK_OK(mmt_json_parse(r.body ? r.body : "", r.len, "search", &doc));
        const mmt_json *data = doc ? mmt_json_get(mmt_json_root(doc), "data") : NULL;
        CHECK(data && (int64_t)data->len == want.n && want.n == 3);
        for (int64_t i = 0; data && i < want.n && i < (int64_t)data->len; i++) {
            const mmt_json *h = &data->items[i];
            CHECK_MSG(!strcmp(mmt_json_get(h, "id")->string, want.hits[i].id), "hit %lld: %s vs %s", (long long)i,
                      mmt_json_get(h, "id")->string, want.hits[i].id);
            CHECK(fabs(mmt_json_get(h, "score")->number - want.hits[i].score) < 1e-6);
            if (with_filter) CHECK(mmt_json_get(mmt_json_get(h, "metadata"), "price")->number >= 30);
        }
        mmt_json_free(doc);
        response_free(&r);
        mmt_search_result_free(&want);
        if (with_filter) mmt_search_filter_free(&flt);
    }
    mmt_index_close(ix);
    response r = call("POST", "/v1/search", "{\"query\": \"rocket\", \"top_k\": 2, \"thumbnails\": true}");
    CHECK(r.status == 200 && r.body && strstr(r.body, "\"thumbnail\":\"data:image/png;base64,iVBOR"));
    response_free(&r);
    /* an image query in every input form of /v1/embeddings, naming the base: the same hits */
    {
        char *b64 = fixture_image_base64("chelsea.jpg");
        const char *forms[] = {"{\"query\": {\"image\": \"%s\"}, \"top_k\": 3}",
                               "{\"query\": {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/jpeg;base64,%s\"}},"
                               " \"top_k\": 3, \"model\": \"base\"}",
                               "{\"query\": {\"image\": \"%s\"}, \"top_k\": 3, \"model\": \"tiny-a\"}"};
        char *first = NULL;
        for (int f = 0; f < 3 && b64; f++) {
            size_t n = strlen(b64) + 300;
            char *body = malloc(n);
            snprintf(body, n, forms[f], b64);
            r = call("POST", "/v1/search", body);
            CHECK_MSG(r.status == 200, "form %d: %d %s", f, r.status, r.body ? r.body : "");
            if (f == 0) first = r.body ? strdup(r.body) : NULL;
            else CHECK_MSG(first && r.body && !strcmp(first, r.body), "form %d: %s", f, r.body ? r.body : "");
            response_free(&r);
            free(body);
        }
        free(first);
        mmt_free(b64);
    }
    struct {
        const char *body;
        int status;
        const char *needle;
    } bad[] = {{"{\"top_k\": 3}", 400, "query"},
               {"{\"query\": \"x\", \"top_k\": 0}", 400, "top_k"},
               {"{\"query\": \"x\", \"filters\": [\"price <\"]}", 400, "filters 0"},
               {"{\"query\": \"x\", \"filters\": \"price < 3\"}", 400, "filters"},
               {"{\"query\": \"x\", \"model\": \"a0\"}", 400, "index was built with"},
               {"{\"query\": \"x\", \"topk\": 1}", 400, "unknown field \\\"topk\\\""},
               {"{\"query\": {\"image\": \"!!\"}}", 400, "query"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = call("POST", "/v1/search", bad[i].body);
        CHECK_MSG(r.status == bad[i].status && r.body && strstr(r.body, bad[i].needle), "case %zu: %d %s", i, r.status, r.body);
        response_free(&r);
    }
    /* the page: /?q= runs the search and shows the hits with their thumbnails */
    if (system("command -v chromium >/dev/null 2>&1") == 0) {
        char cmd[1600], dom[400], shot[400];
        snprintf(dom, sizeof dom, "%s/page.html", root);
        snprintf(shot, sizeof shot, "%s/serve_page.png", MMT_BUILD_DIR);
        snprintf(cmd, sizeof cmd,
                 "cd %s && HOME=%s timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run "
                 "--user-data-dir=%s/profile --virtual-time-budget=10000 --dump-dom 'http://127.0.0.1:%d/?q=rocket' >%s 2>/dev/null && "
                 "HOME=%s timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir=%s/profile "
                 "--virtual-time-budget=10000 --window-size=1000,900 --screenshot=%s 'http://127.0.0.1:%d/?q=rocket' >/dev/null 2>&1",
                 root, root, root, http_port, dom, root, root, shot, http_port);
        /* Chromium's virtual time does not wait for the network: on a loaded machine the DOM
         * can be dumped before the hits arrive, so up to three tries while it shows none */
        char *html = NULL;
        int items = 0;
        for (int attempt = 0; attempt < 3 && items == 0; attempt++) {
            if (attempt) fprintf(stderr, "     the page had no hits yet (try %d)\n", attempt);
            CHECK_MSG(system(cmd) == 0, "chromium failed");
            free(html);
            html = check_read_file(dom, NULL);
            for (const char *p = html; p && (p = strstr(p, "class=\"item\"><img")); p++) items++; /* not the script's */
        }
        CHECK_MSG(items == 5 && strstr(html, "src=\"data:image/png;base64,") && strstr(html, ">rocket<"),
                  "the page shows %d hits", items);
        free(html);
    } else {
        fprintf(stderr, "     chromium is not installed: the page is not driven\n");
    }
    mmt_server_stop(s, 10);
    /* without --index */
    s = start(8, 1, 30);
    if (!s) return;
    r = call("POST", "/v1/search", "{\"query\": \"x\"}");
    CHECK(r.status == 404 && r.body && strstr(r.body, "--index"));
    response_free(&r);
    mmt_server_stop(s, 10);
}

static void test_health_when_the_model_cannot_load(void) {
    mmt_server_options o;
    mmt_server_options_default(&o);
    o.model_dir = "/nonexistent/model";
    o.port = 0;
    mmt_server *s = NULL;
    CHECK_OK(mmt_server_start(&o, &s));
    if (!s) return;
    CHECK(mmt_server_wait_ready(s, 30) == -1);
    http_port = mmt_server_port(s);
    response r = call("GET", "/health", NULL);
    CHECK_MSG(r.status == 503 && r.body && strstr(r.body, "\"error\"") && strstr(r.body, "nonexistent"), "%d %s", r.status,
              r.body);
    response_free(&r);
    r = call("POST", "/v1/embeddings", "{\"input\": \"x\"}");
    CHECK(r.status == 503);
    response_free(&r);
    mmt_server_stop(s, 1);
}

/* An index built with an adapter whose folder has moved since: a start-up --adapter with the
 * same fingerprint serves it (its answers equal the library's with that adapter); without
 * one the load fails naming the adapter it needs. */
static void test_index_adapter_moved(void) {
    char cat[320], moved[320], ix_dir[320], cmd[2400];
    snprintf(cat, sizeof cat, "%s/catalog.jsonl", root); /* written by make_index (test_search) */
    snprintf(moved, sizeof moved, "%s/adapter_was_here", root);
    snprintf(ix_dir, sizeof ix_dir, "%s/shop_adapter", root);
    snprintf(cmd, sizeof cmd, "cp -r %s %s && %s index --model %s --adapter %s --catalog %s --out %s >%s/index2.log 2>&1 && rm -rf %s",
             lora_dir[1], moved, MMT_BINARY, MODEL, moved, cat, ix_dir, root, moved);
    CHECK_MSG(system(cmd) == 0, "index with an adapter: see %s/index2.log", root);
    mmt_server_options o;
    mmt_server_options_default(&o);
    o.model_dir = MODEL;
    o.index_dir = ix_dir;
    o.port = 0;
    mmt_server *s = NULL;
    CHECK_OK(mmt_server_start(&o, &s));
    if (!s) return;
    CHECK(mmt_server_wait_ready(s, 60) == -1);
    CHECK_MSG(strstr(mmt_last_error(), "adapter_was_here") && strstr(mmt_last_error(), "not there any more"), "%s",
              mmt_last_error());
    mmt_server_stop(s, 1);
    const char *names[] = {"a0", "a1"}, *dirs[] = {lora_dir[0], lora_dir[1]};
    o.adapter_names = names, o.adapter_dirs = dirs, o.n_adapters = 2;
    s = http_server_start(&o);
    if (!s) return;
    mmt_index *ix = NULL;
    CHECK_OK(mmt_index_open(ix_dir, &ix));
    float q[512];
    expected(0, 0, 1, q); /* texts[0], the query below, with a1 (lora_dir[1], the index's adapter) */
    mmt_search_options so;
    mmt_search_options_default(&so);
    so.top_k = 2;
    mmt_search_result want = {0};
    if (ix) CHECK_OK(mmt_index_search(ix, q, &so, &want));
    response r = call("POST", "/v1/search", "{\"query\": \"a photo of a cat\", \"top_k\": 2}");
    CHECK_MSG(r.status == 200 && want.n == 2 && r.body && strstr(r.body, want.hits[0].id), "%d %s", r.status, r.body);
    if (r.body && want.n == 2) {
        char expect[120];
        snprintf(expect, sizeof expect, "\"score\":%.9g", want.hits[0].score);
        CHECK_MSG(strstr(r.body, expect), "want %s in %s", expect, r.body);
    }
    response_free(&r);
    mmt_search_result_free(&want);
    mmt_index_close(ix);
    mmt_server_stop(s, 10);
}

/* serve --window: an uploaded DICOM file is rendered with the window, as `embed --window`
 * renders the file (the library with the same options); without it, with the file's own. */
static void test_dicom_window(void) {
    const char *file = "../../dicom/CT_small.dcm"; /* relative to the clip images */
    char path[400];
    snprintf(path, sizeof path, "%s/dicom/CT_small.dcm", MMT_FIXTURE_DIR);
    float want[2][512], got[512];
    mmt_dicom_options windows[2] = {{0, 0, 0}, {1, 40, 400}};
    for (int w = 0; w < 2; w++) {
        mmt_clip_set_dicom_options(model, &windows[w]);
        const char *paths[1] = {path};
        CHECK_OK(mmt_clip_embed_image_files(model, paths, 1, want[w]));
    }
    mmt_clip_set_dicom_options(model, NULL);
    CHECK(max_diff(want[0], want[1], dim) > 1e-3); /* the window matters for this file */
    char *b = fixture_image_base64(file);
    char *body = malloc(strlen(b) + 64);
    sprintf(body, "{\"input\": [{\"image\": \"%s\"}]}", b);
    for (int w = 0; w < 2; w++) {
        mmt_server_options o;
        mmt_server_options_default(&o);
        o.model_dir = MODEL;
        o.port = 0;
        o.dicom = windows[w];
        mmt_server *s = http_server_start(&o);
        if (!s) break;
        response r = call("POST", "/v1/embeddings", body);
        CHECK_MSG(r.status == 200, "status %d: %s", r.status, r.body);
        CHECK(parse_embeddings(r.body, dim, got, 1) == 1);
        CHECK_MSG(max_diff(got, want[w], dim) <= 1e-6, "window %d: %g from the library's", w, max_diff(got, want[w], dim));
        response_free(&r);
        mmt_server_stop(s, 10);
    }
    free(body);
    mmt_free(b);
}

int main(void) {
    if (!mkdtemp(root)) return 1;
    CHECK_OK(mmt_clip_load(MODEL, &model));
    if (!model) return check_summary();
    dim = mmt_clip_embed_dim(model);
    make_adapters();
    expected_texts();
#define TIMED(fn)                                                                                  \
    do {                                                                                           \
        double t0_ = mmt_now_seconds();                                                            \
        RUN(fn);                                                                                   \
        fprintf(stderr, "     %s took %.1f s\n", #fn, mmt_now_seconds() - t0_);                   \
    } while (0)
    TIMED(test_embeddings_equal_library);
    TIMED(test_batching_and_adapters_under_load);
    TIMED(test_int8_base_with_adapters);
    TIMED(test_batch_runs_when_every_connection_waits);
    TIMED(test_bad_requests);
    TIMED(test_http_details);
    TIMED(test_adapter_churn);
    TIMED(test_multipart);
    TIMED(test_dicom_window);
    TIMED(test_slow_client_and_stop);
    TIMED(test_search);
    TIMED(test_index_adapter_moved);
    TIMED(test_health_when_the_model_cannot_load);
    for (int a = 0; a < 2; a++) mmt_clip_adapter_close(adapters[a]);
    mmt_clip_free(model);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return check_summary();
}
