/* adapter_load.c — loading an adapter over HTTP on a thread of its own (see adapter_load.h). */
#include "serve/adapter_load.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "serve/request.h"

typedef struct load_task {
    mmt_adapter_load_ops ops;
    mmt_http_reply *reply;
    char name[64];
    char *dir;
    double t0;
} load_task;

static void *load_thread(void *arg) {
    load_task *t = arg;
    mmt_status st = t->ops.load(t->ops.user, t->name, t->dir);
    int status = st == MMT_OK ? 201 : st == MMT_STATUS_INVALID_ARGUMENT && strstr(mmt_last_error(), "already") ? 409
               : st == MMT_STATUS_OUT_OF_MEMORY ? 500 : 400;
    if (st == MMT_OK) {
        mmt_strbuf b = {0};
        mmt_strbuf_printf(&b, "{\"name\": ");
        mmt_strbuf_json_string(&b, t->name, strlen(t->name));
        mmt_strbuf_printf(&b, ", \"path\": ");
        mmt_strbuf_json_string(&b, t->dir, strlen(t->dir));
        mmt_strbuf_printf(&b, "%s, \"loaded\": true}\n", t->ops.extra_json ? t->ops.extra_json : "");
        mmt_http_reply_json(t->reply, status, &b);
        mmt_strbuf_free(&b);
        mmt_log_info("serve: %s '%s' loaded from %s", t->ops.what, t->name, t->dir);
    } else {
        mmt_http_reply_error(t->reply, status, status >= 500 ? "server_error" : "invalid_request_error", mmt_last_error());
    }
    if (t->ops.done) t->ops.done(t->ops.user, status, t->t0);
    atomic_fetch_sub(t->ops.in_flight, 1);
    mmt_free(t->dir);
    mmt_free(t);
    return NULL;
}

int mmt_adapter_load_async(const mmt_http_request *req, mmt_http_reply *reply, const mmt_adapter_load_ops *ops) {
    double t0 = mmt_now_seconds();
    mmt_json_doc *doc = NULL;
    const char *name = NULL, *dir = NULL, *why = NULL;
    if (mmt_json_parse(req->body, req->body_len, "request body", &doc) != MMT_OK) why = mmt_last_error();
    else if (mmt_json_get_string(mmt_json_root(doc), "name", NULL, &name, "request body", "") != MMT_OK ||
             mmt_json_get_string(mmt_json_root(doc), "path", NULL, &dir, "request body", "") != MMT_OK)
        why = mmt_last_error();
    else if (mmt_json_unknown_key(mmt_json_root(doc), (const char *const[]){"name", "path"}, 2) || !name || !dir ||
             !dir[0])
        why = "expected {\"name\": NAME, \"path\": ADAPTER_FOLDER} and no other field";
    else if (!mmt_serve_valid_name(name)) why = "the name must be 1-63 of A-Z a-z 0-9 _ - . (not 'base')";
    load_task *t = why ? NULL : mmt_calloc(1, sizeof *t);
    if (!why && (!t || !(t->dir = mmt_strdup(dir)))) why = "out of memory";
    if (!why) {
        t->ops = *ops, t->reply = reply, t->t0 = t0;
        snprintf(t->name, sizeof t->name, "%s", name);
        atomic_fetch_add(ops->in_flight, 1);
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, load_thread, t) != 0) {
            atomic_fetch_sub(ops->in_flight, 1);
            why = "cannot start a thread to load the adapter";
        }
        pthread_attr_destroy(&attr);
    }
    int status = 0;
    if (why) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", why);
        mmt_http_reply_error(reply, 400, "invalid_request_error", msg);
        if (t) mmt_free(t->dir);
        mmt_free(t);
        status = 400;
    }
    mmt_json_free(doc);
    return status;
}
