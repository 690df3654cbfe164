/*
 * bench_serve.c — `mmtune bench serve`: a closed-loop HTTP load generator for POST
 * /v1/embeddings, issue 12's serving benchmark (scripts/bench_serve.sh runs it against mmtune
 * and a PyTorch server and writes bench/results/serve.md).
 *
 * Targets are named on the command line: mmtune servers started in this process
 * (mmt_server_start on a loopback port, with a --max-batch, --max-wait-ms and K adapters
 * loaded from --adapters-dir), or any server reachable at a URL (tools/bench/torch_server.py).
 * Every point runs C clients, one pthread each, that send one request at a time and send the
 * next as soon as the answer is in (a closed loop): a JSON body with ONE base64 image, the
 * "model" naming adapter a(i mod K) from a shared counter (round-robin over the adapters;
 * K = 0 names none). Connections are HTTP/1.1 keep-alive by default (each client opens one
 * per point and reuses it), or one connection per request (--connection close). A point
 * runs --warmup seconds, then --duration seconds in which it counts what completes, then
 * waits for the requests in flight (so the next point starts on an idle server). It
 * reports requests/s, p50/p99 latency, errors (non-200 answers, answers without an
 * embedding, failed connections) and, where the target has mmtune's /metrics, the batch
 * sizes run in the window. The targets take turns at every client count, in an order that
 * reverses every round, so slow drifts in the machine's load hit them alike.
 *
 * --write-adapters N writes LoRA adapters a0..a(N-1) to --adapters-dir and exits: r 8 on
 * q_proj and v_proj of both towers (PEFT's config and keys, so PEFT loads them too), A as
 * PEFT initialises it and B random and non-zero (uniform in +-0.01; PEFT's B = 0 would make
 * every adapter the base).
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/status.h"
#include "core/json.h"
#include "core/rng.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "peft/adapter.h"
#include "peft/adapter_folder.h"
#include "peft/peft_config.h"
#include "serve/server.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static const char *HELP =
    "usage: mmtune bench serve --target NAME:KEY=V[,KEY=V]... [--target ...] [--model DIR]\n"
    "                          [--adapters-dir DIR] [--clients LIST] [--duration S] [--warmup S]\n"
    "                          [--rounds R] [--image FILE] [--connection keep-alive|close]\n"
    "                          [--threads N] [--json]\n"
    "       mmtune bench serve --model DIR --adapters-dir DIR --write-adapters N\n"
    "\n"
    "Closed-loop clients (one thread each) send POST /v1/embeddings with one base64 image per\n"
    "request to each target in turn; prints requests/s, p50/p99 latency, errors and the batch\n"
    "sizes from /metrics. A target is an mmtune server started here on --model, or a URL:\n"
    "  NAME:max-batch=32,max-wait-ms=5,adapters=K    mmtune in this process, K adapters a0..\n"
    "                                                of --adapters-dir loaded (0: none);\n"
    "                                                quantize=int8|nf4 serves a quantized base\n"
    "  NAME:url=http://127.0.0.1:8123,adapters=K     a running server; requests name a0..a(K-1)\n"
    "  (engine=LABEL sets the label printed for a target; default mmtune or external)\n"
    "Requests name the K adapters round-robin (K = 0: the base model).\n"
    "  --model DIR           the CLIP snapshot of the in-process servers\n"
    "  --adapters-dir DIR    where adapters a0, a1, ... are (written by --write-adapters)\n"
    "  --write-adapters N    write LoRA adapters a0..a(N-1) (r 8, q_proj and v_proj of both\n"
    "                        towers, random non-zero B) to --adapters-dir for --model and exit\n"
    "  --clients LIST        concurrent clients, comma-separated (default 1,8,32,64)\n"
    "  --duration S          measured seconds per point (default 15)\n"
    "  --warmup S            seconds of load before each point's window (default 5)\n"
    "  --rounds R            rounds over every point (default 1)\n"
    "  --image FILE          the image every request sends (default\n"
    "                        tests/fixtures/clip/images/chelsea.jpg)\n"
    "  --connection C        keep-alive (default: one connection per client, reused) or close\n"
    "                        (a new connection per request)\n"
    "  --threads N           compute threads of the in-process servers (default: every core)\n"
    "  --json                one JSON object per point instead of a table\n";

#define MAX_TARGETS 16
#define MAX_CLIENT_COUNTS 16

typedef struct target {
    char name[64];
    char engine[32];
    char host[128];
    int port;
    int in_process;
    int64_t max_batch;
    double max_wait_ms;
    int64_t adapters;      /* requests name a0..a(adapters - 1) round-robin; 0: the base */
    mmt_quant_type quantize; /* in-process: the base's linears (serve --int8 / --quantize-base) */
    char **requests;       /* owned: one full HTTP request per adapter (max(adapters, 1)) */
    size_t *request_lens;
    char **adapter_names;  /* owned (in-process) */
    char **adapter_dirs;
    mmt_server *server;    /* owned (in-process) */
} target;

/* One completed request, as a client saw it. */
typedef struct sample {
    double done;    /* mmt_now_seconds() when the answer was in */
    double latency; /* seconds from the first byte sent */
    int ok;
} sample;

typedef struct point point;

typedef struct client {
    point *p;
    sample *samples; /* owned */
    int64_t n, cap;
    int dims;        /* numbers in the first embedding seen */
    int failed_alloc;
} client;

struct point {
    const target *t;
    int keep_alive;
    double t_end;          /* no request starts after this */
    atomic_llong next;     /* round-robin counter over the adapters */
};

/* ---- HTTP/1.1 ---------------------------------------------------------------------- */

static int dial(const char *host, int port) {
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    if (getaddrinfo(host, service, &hints, &res) != 0 || !res) return -1;
    int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd >= 0) {
        struct timeval tv = {.tv_sec = 600};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const char *data, size_t len) {
    for (size_t at = 0; at < len;) {
        ssize_t w = send(fd, data + at, len - at, MSG_NOSIGNAL);
        if (w <= 0) return 0;
        at += (size_t)w;
    }
    return 1;
}

/* A header's value in the header block [head, end), or NULL. */
static const char *header_value(const char *head, const char *end, const char *name) {
    size_t n = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line && line + 2 < end; line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (h + n < end && !strncasecmp(h, name, n) && h[n] == ':') {
            h += n + 1;
            while (*h == ' ') h++;
            return h;
        }
    }
    return NULL;
}

typedef struct answer {
    int status;      /* 0: the connection failed */
    int closes;      /* the server closes the connection after it */
    int dims;        /* numbers in the first "embedding" array; 0: none */
} answer;

/* Numbers in the array after the first "embedding" key of a JSON body, 0 when absent. */
static int embedding_dims(const char *body, size_t len) {
    const char *k = memmem(body, len, "\"embedding\"", 11);
    if (!k) return 0;
    const char *end = body + len;
    const char *open = memchr(k, '[', (size_t)(end - k));
    if (!open) return 0;
    int n = 1;
    for (const char *c = open + 1; c < end && *c != ']'; c++) {
        if (*c == ',') n++;
        if (c + 1 == end) return 0;
    }
    return open + 1 < end && open[1] == ']' ? 0 : n;
}

/* Reads one answer from fd into *buf (grown as needed). Content-Length bodies, or bodies up
 * to the connection's end; chunked bodies are read to their last chunk (not decoded: only
 * the embedding's length is looked at). */
static answer read_answer(int fd, char **buf, size_t *cap) {
    answer a = {0};
    size_t have = 0, head_len = 0, body_len = 0;
    int chunked = 0, until_close = 0;
    for (;;) {
        if (have + 65536 + 1 > *cap) {
            size_t want = (*cap ? *cap * 2 : 131072) + 65536;
            char *g = mmt_realloc(*buf, want);
            if (!g) return (answer){0};
            *buf = g;
            *cap = want;
        }
        ssize_t got = recv(fd, *buf + have, *cap - have - 1, 0);
        if (got < 0) return (answer){0};
        if (got == 0) {
            if (until_close && head_len) break;
            return (answer){0};
        }
        have += (size_t)got;
        (*buf)[have] = '\0';
        if (!head_len) {
            char *sep = strstr(*buf, "\r\n\r\n");
            if (!sep) continue;
            head_len = (size_t)(sep + 4 - *buf);
            if (sscanf(*buf, "HTTP/1.%*d %d", &a.status) != 1) return (answer){0};
            const char *cl = header_value(*buf, sep, "Content-Length");
            const char *te = header_value(*buf, sep, "Transfer-Encoding");
            const char *conn = header_value(*buf, sep, "Connection");
            a.closes = conn && !strncasecmp(conn, "close", 5);
            if (!strncmp(*buf, "HTTP/1.0", 8) && !(conn && !strncasecmp(conn, "keep-alive", 10))) a.closes = 1;
            if (te && !strncasecmp(te, "chunked", 7)) chunked = 1;
            else if (cl) body_len = (size_t)strtoull(cl, NULL, 10);
            else until_close = a.closes = 1;
        }
        if (chunked) {
            if (have >= head_len + 5 && !memcmp(*buf + have - 5, "0\r\n\r\n", 5)) break;
        } else if (!until_close && have >= head_len + body_len) {
            break;
        }
    }
    a.dims = embedding_dims(*buf + head_len, have - head_len);
    return a;
}

/* ---- clients ------------------------------------------------------------------------- */

static int record(client *c, double done, double latency, int ok) {
    if (c->n == c->cap) {
        if (mmt_grow((void **)&c->samples, &c->cap, c->n + 1, sizeof *c->samples) != MMT_OK) {
            c->failed_alloc = 1;
            return 0;
        }
    }
    c->samples[c->n++] = (sample){done, latency, ok};
    return 1;
}

/* The closed loop: one request at a time until t_end, each answer waited for. */
static void *client_main(void *arg) {
    client *c = arg;
    point *p = c->p;
    const target *t = p->t;
    int64_t n_req = t->adapters > 0 ? t->adapters : 1;
    char *buf = NULL;
    size_t cap = 0;
    int fd = -1;
    while (mmt_now_seconds() < p->t_end) {
        long long k = atomic_fetch_add(&p->next, 1) % n_req;
        double t0 = mmt_now_seconds();
        answer a = {0};
        /* a kept-alive connection the server has just closed fails at once: one retry */
        for (int attempt = 0; attempt < 2 && a.status == 0; attempt++) {
            int fresh = fd < 0;
            if (fd < 0) fd = dial(t->host, t->port);
            if (fd < 0) break;
            if (send_all(fd, t->requests[k], t->request_lens[k])) a = read_answer(fd, &buf, &cap);
            if (a.status == 0 || a.closes || !p->keep_alive) {
                close(fd);
                fd = -1;
            }
            if (fresh) break;
        }
        double t1 = mmt_now_seconds();
        int ok = a.status == 200 && a.dims > 0;
        if (ok && !c->dims) c->dims = a.dims;
        if (!record(c, t1, t1 - t0, ok)) break;
        if (a.status == 0) usleep(10000); /* a refused connection: not a busy loop */
    }
    if (fd >= 0) close(fd);
    mmt_free(buf);
    return NULL;
}

/* ---- /metrics ------------------------------------------------------------------------ */

#define N_ROW_BUCKETS 10
static const char *const ROW_LE[N_ROW_BUCKETS] = {"1", "2", "4", "8", "16", "32", "64", "128", "256", "+Inf"};

/* mmtune_batch_rows's cumulative buckets, sum and count; 0 when the target has none. */
static int scrape_batch_rows(const target *t, double cum[N_ROW_BUCKETS], double *sum, double *count) {
    int fd = dial(t->host, t->port);
    if (fd < 0) return 0;
    char req[256];
    int n = snprintf(req, sizeof req, "GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", t->host);
    char *buf = NULL;
    size_t cap = 0;
    answer a = send_all(fd, req, (size_t)n) ? read_answer(fd, &buf, &cap) : (answer){0};
    close(fd);
    int found = 0;
    if (a.status == 200 && buf) {
        for (int i = 0; i < N_ROW_BUCKETS; i++) {
            char key[64];
            snprintf(key, sizeof key, "mmtune_batch_rows_bucket{le=\"%s\"} ", ROW_LE[i]);
            const char *at = strstr(buf, key);
            cum[i] = at ? strtod(at + strlen(key), NULL) : 0;
            found += at != NULL;
        }
        const char *s = strstr(buf, "mmtune_batch_rows_sum ");
        const char *c = strstr(buf, "mmtune_batch_rows_count ");
        *sum = s ? strtod(s + 22, NULL) : 0;
        *count = c ? strtod(c + 24, NULL) : 0;
    }
    mmt_free(buf);
    return found == N_ROW_BUCKETS;
}

/* ---- one point ----------------------------------------------------------------------- */

typedef struct result {
    int64_t requests, errors;
    double req_per_s;        /* rate_between_completions */
    double req_per_s_window; /* completions in the window / its length */
    double p50_ms, p99_ms, mean_ms, max_ms;
    int dims;
    int has_batches;
    double batches, batch_rows_mean, hist[N_ROW_BUCKETS]; /* batches per bucket, not cumulative */
} result;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Requests/s from the completion times in the window (sorted): the requests completed after
 * the first burst of answers divided by the time from that burst's last answer to the last
 * answer in the window (a burst: answers each within BURST_S of the one before). A
 * batching server answers in bursts of a batch's rows every few seconds, so completions
 * counted in a fixed window swing by a whole batch (at 32 clients and a 15 s window, +-20%);
 * measured from burst to burst the rate is exact. For answers that come one at a time it is
 * the usual (n - 1) / span. fallback when there are too few. */
#define BURST_S 0.025
static double rate_between_completions(const double *done, int64_t n, double fallback) {
    int64_t first = 1;
    while (first < n && done[first] - done[first - 1] <= BURST_S) first++;
    double span = n > 0 ? done[n - 1] - done[first - 1] : 0;
    return first < n && span > 0 ? (double)(n - first) / span : fallback;
}

/* The nearest-rank percentile q of sorted xs. */
static double percentile(const double *xs, int64_t n, double q) {
    if (n == 0) return 0;
    int64_t k = (int64_t)(q * (double)n + 0.999999) - 1;
    return xs[k < 0 ? 0 : k >= n ? n - 1 : k];
}

static mmt_status run_point(const target *t, int64_t n_clients, double warmup, double duration, int keep_alive,
                            result *r) {
    memset(r, 0, sizeof *r);
    point p = {.t = t, .keep_alive = keep_alive};
    atomic_init(&p.next, 0);
    client *cs = mmt_calloc((size_t)n_clients, sizeof *cs);
    pthread_t *th = mmt_calloc((size_t)n_clients, sizeof *th);
    double *lat = NULL, *done_at = NULL;
    mmt_status s = MMT_OK;
    int64_t started = 0;
    if (!cs || !th) {
        s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "bench serve: out of memory");
        goto done;
    }
    double t_start = mmt_now_seconds();
    double t_window = t_start + warmup;
    p.t_end = t_window + duration;
    for (; started < n_clients; started++) {
        cs[started].p = &p;
        if (pthread_create(&th[started], NULL, client_main, &cs[started]) != 0) {
            s = mmt_fail(MMT_STATUS_IO, "bench serve: cannot start client thread %lld", (long long)started);
            p.t_end = 0; /* the started ones stop after their request */
            break;
        }
    }
    double cum0[N_ROW_BUCKETS] = {0}, cum1[N_ROW_BUCKETS] = {0}, sum0 = 0, sum1 = 0, cnt0 = 0, cnt1 = 0;
    int scraped0 = 0;
    if (s == MMT_OK) {
        double now = mmt_now_seconds();
        if (t_window > now) usleep((useconds_t)((t_window - now) * 1e6));
        scraped0 = scrape_batch_rows(t, cum0, &sum0, &cnt0);
        now = mmt_now_seconds();
        if (p.t_end > now) usleep((useconds_t)((p.t_end - now) * 1e6));
        if (scraped0 && scrape_batch_rows(t, cum1, &sum1, &cnt1)) {
            r->has_batches = 1;
            r->batches = cnt1 - cnt0;
            r->batch_rows_mean = r->batches > 0 ? (sum1 - sum0) / r->batches : 0;
            for (int i = 0; i < N_ROW_BUCKETS; i++)
                r->hist[i] = (cum1[i] - cum0[i]) - (i ? cum1[i - 1] - cum0[i - 1] : 0);
        }
    }
    for (int64_t i = 0; i < started; i++) pthread_join(th[i], NULL);
    if (s != MMT_OK) goto done;
    int64_t total = 0;
    for (int64_t i = 0; i < n_clients; i++) {
        total += cs[i].n;
        if (cs[i].failed_alloc) s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "bench serve: out of memory");
        if (!r->dims && cs[i].dims) r->dims = cs[i].dims;
    }
    if (s != MMT_OK) goto done;
    lat = mmt_malloc((size_t)(total ? total : 1) * sizeof *lat);
    done_at = mmt_malloc((size_t)(total ? total : 1) * sizeof *done_at);
    if (!lat || !done_at) {
        s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "bench serve: out of memory");
        goto done;
    }
    int64_t n = 0;
    double sum = 0;
    for (int64_t i = 0; i < n_clients; i++) {
        for (int64_t j = 0; j < cs[i].n; j++) {
            const sample *x = &cs[i].samples[j];
            if (x->done < t_window || x->done > p.t_end) continue;
            r->requests++;
            if (!x->ok) {
                r->errors++;
                continue;
            }
            done_at[n] = x->done;
            lat[n++] = x->latency;
            sum += x->latency;
        }
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    qsort(done_at, (size_t)n, sizeof *done_at, cmp_double);
    r->req_per_s_window = (double)n / duration;
    r->req_per_s = rate_between_completions(done_at, n, r->req_per_s_window);
    r->p50_ms = 1e3 * percentile(lat, n, 0.50);
    r->p99_ms = 1e3 * percentile(lat, n, 0.99);
    r->mean_ms = n ? 1e3 * sum / (double)n : 0;
    r->max_ms = n ? 1e3 * lat[n - 1] : 0;
done:
    for (int64_t i = 0; cs && i < n_clients; i++) mmt_free(cs[i].samples);
    mmt_free(cs);
    mmt_free(th);
    mmt_free(lat);
    mmt_free(done_at);
    return s;
}

/* ---- targets ------------------------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void base64_append(mmt_strbuf *b, const unsigned char *d, size_t n) {
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        char q[4] = {B64[v >> 18 & 63], B64[v >> 12 & 63], i + 1 < n ? B64[v >> 6 & 63] : '=', i + 2 < n ? B64[v & 63] : '='};
        mmt_strbuf_append(b, q, 4);
    }
}

/* The full HTTP requests of a target, one per adapter: the image as {"image": BASE64}. */
static mmt_status build_requests(target *t, const unsigned char *image, size_t image_len, int keep_alive) {
    int64_t n = t->adapters > 0 ? t->adapters : 1;
    t->requests = mmt_calloc((size_t)n, sizeof *t->requests);
    t->request_lens = mmt_calloc((size_t)n, sizeof *t->request_lens);
    if (!t->requests || !t->request_lens) return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "bench serve: out of memory");
    for (int64_t k = 0; k < n; k++) {
        mmt_strbuf body = {0}, req = {0};
        mmt_strbuf_printf(&body, "{\"input\": [{\"image\": \"");
        base64_append(&body, image, image_len);
        mmt_strbuf_printf(&body, "\"}]");
        if (t->adapters > 0) mmt_strbuf_printf(&body, ", \"model\": \"a%lld\"", (long long)k);
        mmt_strbuf_printf(&body, ", \"encoding_format\": \"float\"}");
        mmt_strbuf_printf(&req,
                          "POST /v1/embeddings HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\nConnection: %s\r\n\r\n",
                          t->host, t->port, body.len, keep_alive ? "keep-alive" : "close");
        mmt_strbuf_append(&req, body.data, body.len);
        int failed = body.failed || req.failed;
        mmt_strbuf_free(&body);
        if (failed) {
            mmt_strbuf_free(&req);
            return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "bench serve: out of memory");
        }
        t->requests[k] = req.data;
        t->request_lens[k] = req.len;
    }
    return MMT_OK;
}

static void target_free(target *t) {
    mmt_server_stop(t->server, 30);
    int64_t n = t->adapters > 0 ? t->adapters : 1;
    for (int64_t k = 0; t->requests && k < n; k++) mmt_free(t->requests[k]);
    for (int64_t k = 0; t->adapter_names && k < t->adapters; k++) {
        mmt_free(t->adapter_names[k]);
        mmt_free(t->adapter_dirs[k]);
    }
    mmt_free(t->requests);
    mmt_free(t->request_lens);
    mmt_free(t->adapter_names);
    mmt_free(t->adapter_dirs);
}

/* "NAME:KEY=V,KEY=V..." into t; a usage error's exit code, or 0. */
static int parse_target(const char *spec, target *t) {
    memset(t, 0, sizeof *t);
    t->max_batch = 32;
    t->max_wait_ms = 5;
    t->adapters = 1;
    const char *colon = strchr(spec, ':');
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof t->name)
        return cli_usage_error("bench serve: --target takes NAME:KEY=V,..., got '%s'", spec);
    memcpy(t->name, spec, (size_t)(colon - spec));
    char rest[512];
    if (strlen(colon + 1) >= sizeof rest) return cli_usage_error("bench serve: --target '%s' is too long", spec);
    strcpy(rest, colon + 1);
    int has_url = 0;
    char *save = NULL;
    for (char *kv = strtok_r(rest, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) return cli_usage_error("bench serve: --target %s: '%s' is not KEY=VALUE", t->name, kv);
        *eq = '\0';
        const char *k = kv, *v = eq + 1;
        char *end;
        if (!strcmp(k, "url")) {
            if (strncmp(v, "http://", 7) || sscanf(v + 7, "%127[^:/]:%d", t->host, &t->port) != 2 || t->port <= 0 ||
                t->port > 65535)
                return cli_usage_error("bench serve: --target %s: url needs http://HOST:PORT, got '%s'", t->name, v);
            has_url = 1;
        } else if (!strcmp(k, "engine")) {
            snprintf(t->engine, sizeof t->engine, "%s", v);
        } else if (!strcmp(k, "max-batch")) {
            t->max_batch = strtoll(v, &end, 10);
            if (*end || t->max_batch < 1 || t->max_batch > 4096)
                return cli_usage_error("bench serve: --target %s: max-batch needs 1..4096", t->name);
        } else if (!strcmp(k, "max-wait-ms")) {
            t->max_wait_ms = strtod(v, &end);
            if (*end || !(t->max_wait_ms >= 0 && t->max_wait_ms <= 10000))
                return cli_usage_error("bench serve: --target %s: max-wait-ms needs 0..10000", t->name);
        } else if (!strcmp(k, "quantize")) {
            if (strcmp(v, "none") && mmt_quant_type_parse(v, &t->quantize) != MMT_OK)
                return cli_usage_error("bench serve: --target %s: quantize takes none, int8 or nf4", t->name);
        } else if (!strcmp(k, "adapters")) {
            t->adapters = strtoll(v, &end, 10);
            if (*end || t->adapters < 0 || t->adapters > 100000)
                return cli_usage_error("bench serve: --target %s: adapters needs 0..100000", t->name);
        } else {
            return cli_usage_error("bench serve: --target %s: unknown key '%s'", t->name, k);
        }
    }
    t->in_process = !has_url;
    if (!t->engine[0]) snprintf(t->engine, sizeof t->engine, "%s", has_url ? "external" : "mmtune");
    if (t->in_process) snprintf(t->host, sizeof t->host, "127.0.0.1");
    return 0;
}

/* Starts an in-process target's server with its adapters and waits until it is ready. */
static mmt_status start_in_process(target *t, const char *model_dir, const char *adapters_dir) {
    if (t->adapters > 0 && !adapters_dir)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "bench serve: target %s has adapters but no --adapters-dir",
                             t->name);
    if (t->adapters > 0) {
        t->adapter_names = mmt_calloc((size_t)t->adapters, sizeof *t->adapter_names);
        t->adapter_dirs = mmt_calloc((size_t)t->adapters, sizeof *t->adapter_dirs);
        if (!t->adapter_names || !t->adapter_dirs) return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "bench serve: out of memory");
    }
    for (int64_t k = 0; k < t->adapters; k++) {
        char name[32];
        snprintf(name, sizeof name, "a%lld", (long long)k);
        t->adapter_names[k] = mmt_strdup(name);
        t->adapter_dirs[k] = mmt_path_join(adapters_dir, name);
        if (!t->adapter_names[k] || !t->adapter_dirs[k]) return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "bench serve: out of memory");
    }
    mmt_server_options o;
    mmt_server_options_default(&o);
    o.model_dir = model_dir;
    o.host = "127.0.0.1";
    o.port = 0;
    o.max_batch = t->max_batch;
    o.max_wait_ms = t->max_wait_ms;
    o.adapter_names = (const char *const *)t->adapter_names;
    o.adapter_dirs = (const char *const *)t->adapter_dirs;
    o.n_adapters = t->adapters;
    o.quantize = (int)t->quantize;
    o.deadline_s = 3600; /* measure latency under overload instead of shedding (PyTorch's server has no deadline) */
    o.idle_timeout_s = 600;
    if (o.max_adapters < t->adapters) o.max_adapters = (int)t->adapters;
    MMT_TRY(mmt_server_start(&o, &t->server));
    t->port = mmt_server_port(t->server);
    int ready = mmt_server_wait_ready(t->server, 600);
    if (ready < 0) return MMT_STATUS_IO; /* the load's reason is already set */
    if (ready == 0) return mmt_fail(MMT_STATUS_IO, "bench serve: target %s not ready after 600 s", t->name);
    return MMT_OK;
}

/* ---- adapters ------------------------------------------------------------------------ */

/* LoRA r 8 on q_proj and v_proj, A as PEFT initialises it, B uniform in +-0.01, saved in dir. */
static mmt_status write_adapter(const mmt_model_iface *view, const char *dir, uint64_t seed) {
    mmt_peft_config pc;
    const char *qv[] = {"q_proj", "v_proj"};
    mmt_adapter *ad = NULL;
    char *w = mmt_path_join(dir, "adapter_model.safetensors");
    mmt_status s = mmt_peft_config_default(&pc, MMT_PEFT_LORA);
    if (s != MMT_OK) {
        mmt_free(w);
        return s;
    }
    pc.r = 8;
    if (!w) s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "bench serve: out of memory");
    if (s == MMT_OK) s = mmt_peft_names_set_list(&pc.target_modules, qv, 2);
    if (s == MMT_OK) s = mmt_mkdirs(dir);
    if (s == MMT_OK) s = mmt_adapter_from_config(view, &pc, seed, 0, &ad);
    if (s == MMT_OK) {
        uint64_t state = seed * 0x9e3779b97f4a7c15ull;
        for (int64_t i = 0; i < ad->n; i++) {
            mmt_adapter_entry *e = &ad->entries[i];
            int64_t numel = e->linear->out * e->lora.r;
            for (int64_t j = 0; j < numel; j++)
                e->lora.b[j] = (float)((double)(mmt_splitmix64(&state) >> 11) / 9007199254740992.0 * 0.02 - 0.01);
        }
    }
    if (s == MMT_OK) s = mmt_peft_config_save(&pc, dir);
    if (s == MMT_OK) s = mmt_adapter_save_tensors(ad, w);
    mmt_adapter_free(ad);
    mmt_peft_config_free(&pc);
    mmt_free(w);
    return s;
}

static int write_adapters(const char *model_dir, const char *adapters_dir, int64_t n) {
    mmt_clip *base = NULL;
    mmt_clip_train *view = NULL;
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_status s = cli_clip_load(model_dir, &base);
    if (s == MMT_OK) s = mmt_clip_train_create(base, &o, &view);
    for (int64_t k = 0; k < n && s == MMT_OK; k++) {
        char name[32];
        snprintf(name, sizeof name, "a%lld", (long long)k);
        char *dir = mmt_path_join(adapters_dir, name);
        s = dir ? write_adapter(mmt_clip_train_iface(view), dir, (uint64_t)k + 1)
                : mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "bench serve: out of memory");
        mmt_free(dir);
    }
    mmt_clip_train_free(view);
    mmt_clip_free(base);
    if (s != MMT_OK) return cli_runtime_error();
    fprintf(stderr, "bench serve: wrote %lld LoRA adapters to %s\n", (long long)n, adapters_dir);
    return 0;
}

/* ---- output -------------------------------------------------------------------------- */

static void print_result(const target *t, int64_t clients, int64_t round, double warmup, double duration, int keep_alive,
                         const result *r, int json) {
    if (json) {
        printf("{\"target\": \"%s\", \"engine\": \"%s\", \"round\": %lld, \"clients\": %lld, \"in_process\": %s, ",
               t->name, t->engine, (long long)round, (long long)clients, t->in_process ? "true" : "false");
        if (t->in_process)
            printf("\"max_batch\": %lld, \"max_wait_ms\": %g, \"quantize\": \"%s\", ", (long long)t->max_batch, t->max_wait_ms,
                   t->quantize == MMT_QUANT_INT8 ? "int8" : t->quantize == MMT_QUANT_NF4 ? "nf4" : "none");
        printf("\"adapters\": %lld, \"connection\": \"%s\", \"warmup_s\": %g, \"duration_s\": %g, \"requests\": %lld, \"errors\": %lld, "
               "\"req_per_s\": %.4f, \"req_per_s_window\": %.4f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"mean_ms\": %.2f, \"max_ms\": %.2f, \"dims\": %d",
               (long long)t->adapters, keep_alive ? "keep-alive" : "close", warmup, duration, (long long)r->requests,
               (long long)r->errors, r->req_per_s, r->req_per_s_window, r->p50_ms, r->p99_ms, r->mean_ms, r->max_ms, r->dims);
        if (r->has_batches) {
            printf(", \"batches\": %.0f, \"batch_rows_mean\": %.3f, \"batch_rows_hist\": {", r->batches, r->batch_rows_mean);
            for (int i = 0; i < N_ROW_BUCKETS; i++) printf("%s\"%s\": %.0f", i ? ", " : "", ROW_LE[i], r->hist[i]);
            printf("}");
        }
        printf("}\n");
    } else {
        printf("%-14s %7lld %5lld %9.2f %9.1f %9.1f %6lld", t->name, (long long)clients, (long long)round, r->req_per_s,
               r->p50_ms, r->p99_ms, (long long)r->errors);
        if (r->has_batches) {
            printf("  %6.2f ", r->batch_rows_mean);
            for (int i = 0; i < N_ROW_BUCKETS; i++)
                if (r->hist[i] > 0) printf(" <=%s:%.0f", ROW_LE[i], r->hist[i]);
        }
        printf("\n");
    }
    fflush(stdout);
}

/* ---- the command --------------------------------------------------------------------- */

static int parse_positive(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !(x >= lo && x <= hi))
        return cli_usage_error("bench serve: %s needs a number from %g to %g, got '%s'", flag, lo, hi, v);
    *out = x;
    return 0;
}

int cmd_bench_serve(int argc, char **argv) {
    const char *model_dir = NULL, *adapters_dir = NULL, *image_path = "tests/fixtures/clip/images/chelsea.jpg";
    char clients_list[256] = "1,8,32,64";
    double duration = 15, warmup = 5, rounds = 1, write_n = 0, threads = 0;
    int json = 0, keep_alive = 1, rc = 0;
    target targets[MAX_TARGETS];
    int n_targets = 0;
    for (int i = 0; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(HELP, stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("bench serve: %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--adapters-dir")) adapters_dir = v;
        else if (!strcmp(a, "--image")) image_path = v;
        else if (!strcmp(a, "--clients")) {
            if (strlen(v) >= sizeof clients_list) return cli_usage_error("bench serve: --clients is too long");
            strcpy(clients_list, v);
        } else if (!strcmp(a, "--duration")) rc = parse_positive(a, v, 0.1, 86400, &duration);
        else if (!strcmp(a, "--warmup")) rc = parse_positive(a, v, 0, 86400, &warmup);
        else if (!strcmp(a, "--rounds")) rc = parse_positive(a, v, 1, 1000, &rounds);
        else if (!strcmp(a, "--threads")) rc = parse_positive(a, v, 1, 1024, &threads);
        else if (!strcmp(a, "--write-adapters")) rc = parse_positive(a, v, 1, 100000, &write_n);
        else if (!strcmp(a, "--connection")) {
            if (!strcmp(v, "keep-alive")) keep_alive = 1;
            else if (!strcmp(v, "close")) keep_alive = 0;
            else return cli_usage_error("bench serve: --connection is keep-alive or close, got '%s'", v);
        } else if (!strcmp(a, "--target")) {
            if (n_targets == MAX_TARGETS) return cli_usage_error("bench serve: at most %d targets", MAX_TARGETS);
            rc = parse_target(v, &targets[n_targets]);
            if (rc == 0) n_targets++;
        } else return cli_usage_error("bench serve: unknown option '%s'", a);
    }
    if (rc != 0) return rc;
    if (write_n > 0) {
        if (!model_dir || !adapters_dir)
            return cli_usage_error("bench serve: --write-adapters needs --model and --adapters-dir");
        return write_adapters(model_dir, adapters_dir, (int64_t)write_n);
    }
    if (n_targets == 0) return cli_usage_error("bench serve: name at least one --target (see --help)");
    int64_t clients[MAX_CLIENT_COUNTS];
    int n_counts = 0;
    char list[256];
    strcpy(list, clients_list);
    char *save = NULL;
    for (char *c = strtok_r(list, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
        char *end;
        long long x = strtoll(c, &end, 10);
        if (*end || x < 1 || x > 4096 || n_counts == MAX_CLIENT_COUNTS)
            return cli_usage_error("bench serve: --clients takes up to %d counts of 1..4096, got '%s'", MAX_CLIENT_COUNTS,
                                   clients_list);
        clients[n_counts++] = x;
    }
    for (int i = 0; i < n_targets; i++)
        if (targets[i].in_process && !model_dir)
            return cli_usage_error("bench serve: target %s runs in this process and needs --model", targets[i].name);
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads((int)threads);
#endif
    /* A client whose server went away gets an error return, not SIGPIPE (MSG_NOSIGNAL too). */
    signal(SIGPIPE, SIG_IGN);
    char *image = NULL;
    size_t image_len = 0;
    mmt_status s = mmt_file_read_all(image_path, 64u << 20, &image, &image_len);
    int started = 0;
    for (; s == MMT_OK && started < n_targets; started++) {
        target *t = &targets[started];
        if (t->in_process) {
            s = start_in_process(t, model_dir, adapters_dir);
            if (s != MMT_OK) {
                started++; /* its half-started server is stopped below */
                break;
            }
        }
        s = build_requests(t, (const unsigned char *)image, image_len, keep_alive);
    }
    if (s != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    if (!json)
        printf("%-14s %7s %5s %9s %9s %9s %6s  %6s  (%s, %g s warm-up + %g s per point)\n", "target", "clients", "round",
               "req/s", "p50 ms", "p99 ms", "errors", "rows", keep_alive ? "keep-alive" : "one connection per request",
               warmup, duration);
    for (int64_t round = 1; round <= (int64_t)rounds && rc == 0; round++) {
        for (int c = 0; c < n_counts && rc == 0; c++) {
            for (int j = 0; j < n_targets && rc == 0; j++) {
                /* the order reverses every round and client count, so no target always goes first */
                int i = ((round + c) % 2) ? n_targets - 1 - j : j;
                result r;
                if (run_point(&targets[i], clients[c], warmup, duration, keep_alive, &r) != MMT_OK) {
                    rc = cli_runtime_error();
                    break;
                }
                print_result(&targets[i], clients[c], round, warmup, duration, keep_alive, &r, json);
            }
        }
    }
done:
    for (int i = 0; i < started; i++) target_free(&targets[i]);
    mmt_free(image);
    return rc;
}
