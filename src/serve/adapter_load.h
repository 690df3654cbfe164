/*
 * adapter_load.h — POST {"name": NAME, "path": FOLDER}: loading an adapter while serving, for
 * the CLIP server's /v1/adapters and the caption service's /v1/caption/adapters alike.
 *
 * The body is checked on the polling thread (a bad one is answered 400 at once); the folder is
 * read on a detached thread of its own, so the polling thread never waits on the disk. The
 * caller's load function registers the adapter; its result is answered 201 {"name", "path",
 * <extra>, "loaded": true}, 409 when the name is taken ("already" in the message), 500 out of
 * memory, 400 otherwise. `in_flight` counts the loads still running (a stop waits for zero).
 */
#ifndef MMT_SERVE_ADAPTER_LOAD_H
#define MMT_SERVE_ADAPTER_LOAD_H

#include <stdint.h>

#include "core/status.h"
#include "serve/http.h"

typedef mmt_status (*mmt_adapter_load_fn)(void *user, const char *name, const char *dir);
/* Called on the loading thread once the request is answered (status sent), e.g. for metrics. */
typedef void (*mmt_adapter_loaded_fn)(void *user, int status, double started_s);

typedef struct mmt_adapter_load_ops {
    mmt_adapter_load_fn load;
    mmt_adapter_loaded_fn done;  /* may be NULL */
    void *user;
    _Atomic int64_t *in_flight;
    const char *extra_json;      /* appended to a 201 answer's object, e.g. ", \"kind\": \"captioner\"" */
    const char *what;            /* for the log line: "adapter", "captioner adapter" */
} mmt_adapter_load_ops;

/* Answers req: 400 now (the status is returned), or later from the loading thread (0). */
int mmt_adapter_load_async(const mmt_http_request *req, mmt_http_reply *reply, const mmt_adapter_load_ops *ops);

#endif
