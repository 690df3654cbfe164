/*
 * http.h — the HTTP layer of `mmtune serve`, on GNU libmicrohttpd.
 *
 * One polling thread (MHD's internal thread, epoll) accepts connections, reads request bodies
 * into memory (up to max_body_bytes; a larger Content-Length, or a body that grows past it,
 * is answered 413 before more is read) and hands each complete request to the handler. The
 * handler answers at once (mmt_http_reply_send on the polling thread) or later from any
 * thread: the connection is suspended meanwhile (MHD_suspend_connection), so a request that
 * waits for its batch holds no thread, and resumed when the reply is sent. A reply is sent
 * exactly once; the layer frees it after the response is queued or the client went away.
 *
 * Limits enforced here: body bytes, concurrent connections (more are refused at accept),
 * and an idle timeout per connection (a client that stops sending is dropped: slowloris).
 * Everything else (JSON shape, images per request, tokens, deadlines) is the handler's.
 *
 * Every request gets an id, answered in the X-Request-Id header of its response (errors
 * included): the client's own X-Request-Id when it sent a valid one (1-64 of A-Z a-z 0-9
 * _ - . :), else 16 hex digits unique within the process (a counter through a bijective mix,
 * from a random start), so logs and feedback (serve/feedback.h) can name one answer.
 *
 * Usage:
 *     mmt_http *h = NULL;
 *     mmt_http_options o = {.port = 8080, .handler = route, .user = srv};
 *     MMT_TRY(mmt_http_start(&o, &h));     // serving from here on
 *     ... mmt_http_quiesce(h);             // stop accepting (SIGTERM)
 *     mmt_http_stop(h);                    // after in-flight replies are sent
 */
#ifndef MMT_SERVE_HTTP_H
#define MMT_SERVE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "core/json.h"
#include "core/status.h"

typedef struct mmt_http mmt_http;
typedef struct mmt_http_reply mmt_http_reply;

typedef struct mmt_http_request {
    const char *method;       /* "GET", "POST", ... */
    const char *path;         /* URL path without the query */
    const char *content_type; /* the header, or "" */
    const char *body;         /* NUL-terminated copy of the body (may contain NULs: use body_len) */
    size_t body_len;
    const char *client;       /* the peer's address as text */
    const char *request_id;   /* this request's id (X-Request-Id of the answer) */
    void *connection_;        /* the layer's: for mmt_http_request_header */
} mmt_http_request;

/* A request header's value (name case-insensitive), or NULL; valid while the handler runs. */
const char *mmt_http_request_header(const mmt_http_request *req, const char *name);
/* 1 when id may be a request id: 1-64 of A-Z a-z 0-9 _ - . : */
int mmt_http_valid_request_id(const char *id);

/* Called on the polling thread once a request is complete. It must not block: it sends the
 * reply now or hands `reply` to something that sends it later. */
typedef void (*mmt_http_handler)(void *user, const mmt_http_request *req, mmt_http_reply *reply);

typedef struct mmt_http_options {
    const char *host;          /* bind address (NULL: 127.0.0.1; "0.0.0.0": every interface) */
    int port;                  /* 0: any free port (mmt_http_port tells which) */
    size_t max_body_bytes;     /* 0: 16 MiB */
    int max_connections;       /* 0: 256 */
    int idle_timeout_s;        /* 0: 30 */
    mmt_http_handler handler;
    void *user;
} mmt_http_options;

mmt_status mmt_http_start(const mmt_http_options *o, mmt_http **out);
int mmt_http_port(const mmt_http *h);
/* Client connections open now (accepted and not yet closed), from any thread. */
int64_t mmt_http_connections(mmt_http *h);
/* Stops accepting new connections; open ones finish. */
void mmt_http_quiesce(mmt_http *h);
/* Stops the polling thread and closes every connection. Replies still pending must not be
 * sent afterwards. NULL is fine. */
void mmt_http_stop(mmt_http *h);
/* Requests whose replies have not been sent yet. */
int64_t mmt_http_pending(const mmt_http *h);

#define MMT_HTTP_MAX_REPLY_HEADERS 4
/* Adds a response header (name and value of safe characters, up to 47 and 127 bytes) to a
 * reply not sent yet; more than MMT_HTTP_MAX_REPLY_HEADERS, or unsafe ones, are dropped. */
void mmt_http_reply_header(mmt_http_reply *reply, const char *name, const char *value);
/* Sends the reply (status code, content type, body copied) and resumes the connection if it
 * was suspended. Safe from any thread; the reply must not be used afterwards. */
void mmt_http_reply_send(mmt_http_reply *reply, int status, const char *content_type, const char *body, size_t len);
/* A JSON answer built in b (a 500 instead if b ran out of memory). */
void mmt_http_reply_json(mmt_http_reply *reply, int status, const mmt_strbuf *b);
/* A JSON error: {"error": {"message": MESSAGE, "type": TYPE, "code": STATUS}}. */
void mmt_http_reply_error(mmt_http_reply *reply, int status, const char *type, const char *message);
/* 405 Method Not Allowed: that error with an Allow header listing the methods ("GET, POST"). */
void mmt_http_reply_405(mmt_http_reply *reply, const char *allow, const char *message);

#endif
