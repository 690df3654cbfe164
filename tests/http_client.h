/*
 * http_client.h — a small HTTP/1.1 client for the tests that start `mmtune serve`'s server
 * on a loopback port (test_serve.c, test_serve_ab.c, test_serve_caption.c). Header-only,
 * like check.h.
 *
 * http_server_start() starts a server, waits until it is ready and sets http_port to its
 * port (or set http_port yourself); call() sends one request on its own connection
 * (Connection: close) and reads the whole answer: status, headers and body. A JSON body gets
 * Content-Type: application/json unless extra_headers name another. A client waits
 * http_timeout_s (60 unless the test says otherwise) for an answer before it gives up.
 * fixture_image_base64() gives a fixture image as a JSON body carries it.
 *
 *     mmt_server *srv = http_server_start(&options);
 *     response r = call("POST", "/v1/embeddings", "{\"input\": \"a cat\"}");
 *     char id[80];
 *     if (r.status == 200 && response_header(&r, "X-Request-Id", id, sizeof id)) ...
 *     response_free(&r);
 */
#ifndef MMT_TESTS_HTTP_CLIENT_H
#define MMT_TESTS_HTTP_CLIENT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check.h"
#include "core/json.h"
#include "eval/report.h"
#include "serve/server.h"

static int http_port;
static int http_timeout_s = 60;

typedef struct response {
    int status; /* 0 when the connection failed */
    char *body; /* owned, NUL-terminated */
    size_t len;
    char *head; /* owned: the status line and headers, NUL-terminated */
} response;

/* A connected socket to 127.0.0.1:http_port (http_timeout_s receive timeout), or -1. */
static inline int dial(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {.tv_sec = http_timeout_s};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One request on its own connection; extra_headers are "Name: value\r\n" lines (or NULL). */
static inline response call_raw(const char *method, const char *path, const char *body, size_t len, const char *extra_headers) {
    response r = {0};
    int fd = dial();
    if (fd < 0) return r;
    char head[2048];
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s", method, path,
                     extra_headers ? extra_headers : "");
    if (body && !(extra_headers && strstr(extra_headers, "Content-Type")))
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Type: application/json\r\n");
    if (body) n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", len);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    int ok = send(fd, head, (size_t)n, body && len ? MSG_NOSIGNAL | MSG_MORE : MSG_NOSIGNAL) == n;
    for (size_t at = 0; ok && body && at < len;) {
        ssize_t w = send(fd, body + at, len - at, MSG_NOSIGNAL);
        if (w <= 0) ok = 0;
        else at += (size_t)w;
    }
    mmt_strbuf in = {0};
    char buf[65536];
    for (ssize_t got; (got = recv(fd, buf, sizeof buf, 0)) > 0;) mmt_strbuf_append(&in, buf, (size_t)got);
    close(fd);
    const char *sep = in.data ? strstr(in.data, "\r\n\r\n") : NULL;
    if (sep && sscanf(in.data, "HTTP/1.%*d %d", &r.status) == 1) {
        r.len = in.len - (size_t)(sep + 4 - in.data);
        r.body = malloc(r.len + 1);
        memcpy(r.body, sep + 4, r.len);
        r.body[r.len] = '\0';
        size_t hl = (size_t)(sep - in.data);
        r.head = malloc(hl + 3);
        memcpy(r.head, in.data, hl);
        memcpy(r.head + hl, "\r\n", 3);
    }
    mmt_strbuf_free(&in);
    return r;
}

static inline response call(const char *method, const char *path, const char *body) {
    return call_raw(method, path, body, body ? strlen(body) : 0, NULL);
}

static inline void response_free(response *r) {
    free(r->body);
    free(r->head);
    r->body = r->head = NULL;
}

/* A response header's value (name case-insensitive) into out; NULL when absent. */
static inline const char *response_header(const response *r, const char *name, char *out, size_t size) {
    size_t n = strlen(name);
    for (const char *line = r->head ? strstr(r->head, "\r\n") : NULL; line && line[2]; line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (!strncasecmp(h, name, n) && h[n] == ':') {
            const char *v = h + n + 1, *end = strstr(v, "\r\n");
            while (*v == ' ') v++;
            snprintf(out, size, "%.*s", (int)(end - v), v);
            return out;
        }
    }
    return NULL;
}

/* Starts the server of o (o->port 0: a free port), waits up to 60 s until it is ready and
 * points the client at it; NULL when it does not start (checked here). */
static inline mmt_server *http_server_start(const mmt_server_options *o) {
    mmt_server *s = NULL;
    CHECK_OK(mmt_server_start(o, &s));
    if (!s) return NULL;
    CHECK(mmt_server_wait_ready(s, 60) == 1);
    http_port = mmt_server_port(s);
    return s;
}

/* The base64 of tests/fixtures/clip/images/<name> (owned: mmt_free). */
static inline char *fixture_image_base64(const char *name) {
    char path[400];
    snprintf(path, sizeof path, "%s/clip/images/%s", MMT_FIXTURE_DIR, name);
    size_t len = 0;
    char *data = check_read_file(path, &len);
    mmt_strbuf b = {0};
    mmt_report_base64(&b, (const uint8_t *)data, len);
    free(data);
    return b.data;
}

#endif
