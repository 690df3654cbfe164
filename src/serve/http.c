/* http.c — the HTTP layer on libmicrohttpd (see http.h). */
#include "serve/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/json.h"
#include "core/log.h"
#include "core/rng.h"

#define DEFAULT_MAX_BODY ((size_t)16 << 20)

struct mmt_http {
    struct MHD_Daemon *daemon;
    mmt_http_options opt;
    int port;
    _Atomic int64_t pending;
    _Atomic int64_t connections; /* open client connections (MHD's connection notifications) */
    uint64_t id_base;          /* request ids: mix(id_base + n) for the n-th request */
    _Atomic uint64_t id_next;
    MHD_socket quiesced;       /* the listening socket after quiesce, closed by stop */
};

struct mmt_http_reply {
    pthread_mutex_t mu;
    mmt_http *h;
    struct MHD_Connection *conn;
    int sent, suspended, queued;
    int status;
    char content_type[64];
    char *body;
    size_t len;
    char request_id[65];
    int n_headers;
    char header_names[MMT_HTTP_MAX_REPLY_HEADERS][48], header_values[MMT_HTTP_MAX_REPLY_HEADERS][128];
};

/* One request's state, from its first header to the completed callback. */
typedef struct conn_state {
    char *body;
    size_t len, cap;
    int too_big;    /* the body went past max_body_bytes: answered 413, the rest discarded */
    size_t dropped; /* bytes of a chunked body discarded after it went past the limit */
    int bad_length; /* two Content-Length headers: answered 400 */
    int dispatched; /* the handler has the request */
    mmt_http_reply reply;
    char client[64];
} conn_state;

static void reply_clear(mmt_http_reply *r) {
    mmt_free(r->body);
    r->body = NULL;
}

/* Header names and values the layer passes on: no control characters, no ':' in names. */
static int header_text_ok(const char *s, size_t max, int name) {
    size_t n = strlen(s);
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f || (name && (s[i] == ':' || s[i] == ' '))) return 0;
    return 1;
}

int mmt_http_valid_request_id(const char *id) {
    size_t n = strlen(id);
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!(c == '_' || c == '-' || c == '.' || c == ':' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z')))
            return 0;
    }
    return 1;
}

const char *mmt_http_request_header(const mmt_http_request *req, const char *name) {
    if (!req->connection_) return NULL;
    return MHD_lookup_connection_value((struct MHD_Connection *)req->connection_, MHD_HEADER_KIND, name);
}

void mmt_http_reply_header(mmt_http_reply *r, const char *name, const char *value) {
    if (!header_text_ok(name, 47, 1) || !header_text_ok(value, 127, 0)) return;
    pthread_mutex_lock(&r->mu);
    if (!r->sent && r->n_headers < MMT_HTTP_MAX_REPLY_HEADERS) {
        snprintf(r->header_names[r->n_headers], sizeof r->header_names[0], "%s", name);
        snprintf(r->header_values[r->n_headers], sizeof r->header_values[0], "%s", value);
        r->n_headers++;
    }
    pthread_mutex_unlock(&r->mu);
}

void mmt_http_reply_send(mmt_http_reply *r, int status, const char *content_type, const char *body, size_t len) {
    pthread_mutex_lock(&r->mu);
    if (r->sent) { /* a second send is a bug in the caller; keep the first */
        pthread_mutex_unlock(&r->mu);
        mmt_log_warn("http: a reply was sent twice; the second is dropped");
        return;
    }
    r->status = status;
    snprintf(r->content_type, sizeof r->content_type, "%s", content_type ? content_type : "application/json");
    r->body = mmt_malloc(len ? len : 1);
    if (r->body) {
        if (len) memcpy(r->body, body, len);
        r->len = len;
    } else { /* no memory for the body: a bodiless 500 still tells the client */
        r->status = 500;
        r->len = 0;
    }
    r->sent = 1;
    atomic_fetch_sub(&r->h->pending, 1);
    if (r->suspended) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
    }
    pthread_mutex_unlock(&r->mu);
}

void mmt_http_reply_json(mmt_http_reply *reply, int status, const mmt_strbuf *b) {
    if (b->failed) mmt_http_reply_error(reply, 500, "server_error", "out of memory");
    else mmt_http_reply_send(reply, status, "application/json", b->data, b->len);
}

void mmt_http_reply_error(mmt_http_reply *reply, int status, const char *type, const char *message) {
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{\"error\": {\"message\": ");
    mmt_strbuf_json_string(&b, message, strlen(message));
    mmt_strbuf_printf(&b, ", \"type\": \"%s\", \"code\": %d}}\n", type, status);
    if (b.failed) mmt_http_reply_send(reply, status, "application/json", "", 0);
    else mmt_http_reply_send(reply, status, "application/json", b.data, b.len);
    mmt_strbuf_free(&b);
}

void mmt_http_reply_405(mmt_http_reply *reply, const char *allow, const char *message) {
    mmt_http_reply_header(reply, "Allow", allow);
    mmt_http_reply_error(reply, 405, "invalid_request_error", message);
}

/* Queues the sent reply as the connection's response. */
static enum MHD_Result queue_reply(struct MHD_Connection *c, mmt_http_reply *r) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    if (r->request_id[0]) MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    for (int i = 0; i < r->n_headers; i++) MHD_add_response_header(resp, r->header_names[i], r->header_values[i]);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    r->queued = 1;
    reply_clear(r);
    return ok;
}

static void client_text(struct MHD_Connection *c, char *out, size_t size) {
    snprintf(out, size, "?");
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)size);
    else if (sa->sa_family == AF_INET6) inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)size);
}

static enum MHD_Result count_length_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind, (void)value;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) ++*(int *)cls;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    mmt_http *h = cls;
    conn_state *st = *con_cls;
    if (!st) { /* headers are in: set up, and refuse an announced body that is too large */
        if (!(st = mmt_calloc(1, sizeof *st))) return MHD_NO;
        pthread_mutex_init(&st->reply.mu, NULL);
        st->reply.h = h;
        st->reply.conn = c;
        client_text(c, st->client, sizeof st->client);
        const char *rid = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
        if (rid && mmt_http_valid_request_id(rid)) snprintf(st->reply.request_id, sizeof st->reply.request_id, "%s", rid);
        else snprintf(st->reply.request_id, sizeof st->reply.request_id, "%016llx",
                      (unsigned long long)mmt_splitmix64_mix(h->id_base + atomic_fetch_add(&h->id_next, 1)));
        *con_cls = st;
        /* two Content-Length headers: RFC 9112 section 6.3 makes that an error (a proxy in
         * front might have framed the body by the other one); answered now, body unread */
        int n_lengths = 0;
        MHD_get_connection_values(c, MHD_HEADER_KIND, count_length_header, &n_lengths);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (n_lengths > 1) st->bad_length = 1;
        else if (!cl || strtoull(cl, NULL, 10) <= h->opt.max_body_bytes) return MHD_YES;
        else st->too_big = 1; /* answered now, without waiting for a body that will not be read */
    } else if (*upload_size) { /* a piece of the body */
        size_t n = *upload_size;
        *upload_size = 0;
        /* Past the limit without an announced length (chunked): libmicrohttpd can queue an
         * answer only before the body or after all of it, so the rest is read and dropped
         * and the 413 goes out at its end; a body that keeps coming past 4x the limit (and
         * 64 MiB) more has the connection closed instead. */
        if (st->too_big) return (st->dropped += n) > 4 * h->opt.max_body_bytes + ((size_t)64 << 20) ? MHD_NO : MHD_YES;
        if (st->len + n > h->opt.max_body_bytes) {
            st->too_big = 1;
            st->dropped = n;
            mmt_free(st->body);
            st->body = NULL;
            st->len = st->cap = 0;
            return MHD_YES;
        }
        if (st->len + n + 1 > st->cap) {
            size_t cap = st->cap ? st->cap : 4096;
            while (cap < st->len + n + 1) cap *= 2;
            char *b = mmt_realloc(st->body, cap);
            if (!b) return MHD_NO;
            st->body = b, st->cap = cap;
        }
        memcpy(st->body + st->len, upload, n);
        st->len += n;
        return MHD_YES;
    }
    mmt_http_reply *r = &st->reply;
    if (!st->dispatched) { /* the whole request is in */
        st->dispatched = 1;
        atomic_fetch_add(&h->pending, 1);
        if (st->bad_length) {
            mmt_http_reply_error(r, 400, "invalid_request_error", "more than one Content-Length header");
        } else if (st->too_big) {
            char msg[160];
            snprintf(msg, sizeof msg, "request body over the limit of %zu bytes (--max-body-bytes)", h->opt.max_body_bytes);
            mmt_http_reply_error(r, 413, "request_too_large", msg);
        } else {
            if (!st->body && !(st->body = mmt_calloc(1, 1))) return MHD_NO;
            st->body[st->len] = '\0';
            const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
            char path[2048];
            snprintf(path, sizeof path, "%s", url);
            char *q = strchr(path, '?');
            if (q) *q = '\0';
            mmt_http_request req = {.method = method, .path = path, .content_type = ct ? ct : "", .body = st->body,
                                    .body_len = st->len, .client = st->client, .request_id = r->request_id,
                                    .connection_ = c};
            h->opt.handler(h->opt.user, &req, r);
        }
    }
    pthread_mutex_lock(&r->mu);
    enum MHD_Result ok = MHD_YES;
    if (r->sent && !r->queued) ok = queue_reply(c, r);
    else if (!r->sent) {
        r->suspended = 1;
        MHD_suspend_connection(c);
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    (void)c, (void)socket_context;
    mmt_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) atomic_fetch_add(&h->connections, 1);
    else if (code == MHD_CONNECTION_NOTIFY_CLOSED) atomic_fetch_sub(&h->connections, 1);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode code) {
    (void)c, (void)code;
    mmt_http *h = cls;
    conn_state *st = *con_cls;
    if (!st) return;
    if (st->dispatched && !st->reply.sent) atomic_fetch_sub(&h->pending, 1); /* never answered (stop) */
    reply_clear(&st->reply);
    pthread_mutex_destroy(&st->reply.mu);
    mmt_free(st->body);
    mmt_free(st);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    mmt_log_debug("libmicrohttpd: %s", msg);
}

/* The start of this process's request ids: /dev/urandom, or the time and pid without it. */
static uint64_t random_seed(void) {
    uint64_t v = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&v, sizeof v, 1, f) != 1) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        v ^= (uint64_t)getpid() << 32;
    }
    if (f) fclose(f);
    return v;
}

mmt_status mmt_http_start(const mmt_http_options *o, mmt_http **out) {
    *out = NULL;
    if (!o->handler) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "http: no handler");
    if (o->port < 0 || o->port > 65535) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "http: port %d is out of range", o->port);
    mmt_http *h = mmt_calloc(1, sizeof *h);
    if (!h) return MMT_STATUS_OUT_OF_MEMORY;
    h->opt = *o;
    h->quiesced = MHD_INVALID_SOCKET;
    h->id_base = random_seed();
    if (!h->opt.max_body_bytes) h->opt.max_body_bytes = DEFAULT_MAX_BODY;
    if (!h->opt.max_connections) h->opt.max_connections = 256;
    if (!h->opt.idle_timeout_s) h->opt.idle_timeout_s = 30;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    const char *host = o->host ? o->host : "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        mmt_free(h);
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "http: '%s' is not an IPv4 address to listen on", host);
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)h->opt.max_connections,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)h->opt.idle_timeout_s,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                                 MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                                 MHD_OPTION_LISTENING_ADDRESS_REUSE, 1U, MHD_OPTION_END);
    if (!h->daemon) {
        mmt_free(h);
        return mmt_fail(MMT_STATUS_IO, "http: cannot listen on %s:%d (in use, or not allowed)", host, o->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : o->port;
    *out = h;
    return MMT_OK;
}

int mmt_http_port(const mmt_http *h) { return h->port; }

int64_t mmt_http_connections(mmt_http *h) { return atomic_load(&h->connections); }

int64_t mmt_http_pending(const mmt_http *h) { return atomic_load(&h->pending); }

/* The listening socket stops listening at once (shutdown: new connections are refused) but
 * is closed only after the polling thread has stopped: that thread may still be taking the
 * socket out of its epoll set, and closing it under it is a race on the descriptor. */
void mmt_http_quiesce(mmt_http *h) {
    if (!h || !h->daemon || h->quiesced != MHD_INVALID_SOCKET) return;
    h->quiesced = MHD_quiesce_daemon(h->daemon);
    if (h->quiesced != MHD_INVALID_SOCKET) shutdown(h->quiesced, SHUT_RDWR);
}

void mmt_http_stop(mmt_http *h) {
    if (!h) return;
    if (h->daemon) MHD_stop_daemon(h->daemon);
    if (h->quiesced != MHD_INVALID_SOCKET) close(h->quiesced);
    mmt_free(h);
}
