/*
 * feedback.h — POST /v1/feedback of `mmtune serve`: what clients report about an answer
 * (a click, a label, a rating), appended as one JSON line per event to the --feedback file
 * for offline comparison of the arms of A/B routes (serve/ab_route.h).
 *
 * The body:
 *     {"request_id": ID?, "user": KEY?, "route": NAME?, "arm": ADAPTER?,
 *      "event": "click" | "label" | ..., "value": NUMBER | STRING | BOOL | null?,
 *      "metadata": {...}?}
 * ("client_key" is accepted for "user"; an unknown field is refused, so a misspelt one is
 * not lost silently). The server resolves the route and arm (server.c) and writes:
 *     {"time":"2025-05-01T12:00:00.123Z","request_id":"...","user":"...","route":"exp",
 *      "arm":"shoes-v2","event":"click","value":1}
 *
 * The file is opened for appending (created 0644 when missing); each line goes out in one
 * write() under a mutex, so lines never interleave, and a failed write is cut back so the
 * file stays whole lines. Durability (--feedback-fsync): "second" (the default) has a
 * thread fdatasync the file once a second when lines were added (at most a second of
 * events lost on a power cut, none on a crash of the process), "always" syncs before the
 * answer, "never" leaves it to the kernel. Closing syncs.
 */
#ifndef MMT_SERVE_FEEDBACK_H
#define MMT_SERVE_FEEDBACK_H

#include <stddef.h>

#include "core/json.h"
#include "core/status.h"

#define MMT_FEEDBACK_MAX_BODY (64 * 1024)
#define MMT_FEEDBACK_MAX_VALUE 4096 /* bytes of a string value */

typedef enum mmt_feedback_fsync {
    MMT_FEEDBACK_FSYNC_SECOND = 0,
    MMT_FEEDBACK_FSYNC_ALWAYS = 1,
    MMT_FEEDBACK_FSYNC_NEVER = 2,
} mmt_feedback_fsync;

/* "always" | "second" | "never" -> the policy; -1 for anything else. */
int mmt_feedback_fsync_parse(const char *s);

typedef struct mmt_feedback_log mmt_feedback_log;

mmt_status mmt_feedback_open(const char *path, mmt_feedback_fsync policy, mmt_feedback_log **out);
/* Appends line (len bytes, ending in '\n') whole or not at all. */
mmt_status mmt_feedback_append(mmt_feedback_log *f, const char *line, size_t len);
/* Syncs, stops the sync thread, closes. NULL is fine. */
void mmt_feedback_close(mmt_feedback_log *f);

/* One parsed event. Strings are "" when absent. */
typedef struct mmt_feedback_event {
    char request_id[65];
    char user[1025]; /* the client key (up to MMT_ROUTE_MAX_KEY = 1024 bytes) */
    char route[64], arm[64], event[64];
    mmt_strbuf value;    /* the value as compact JSON ("" when absent) */
    mmt_strbuf metadata; /* the metadata object as compact JSON ("" when absent) */
} mmt_feedback_event;

/* Parses a body into *ev (zeroed first); header_key (the X-Client-Key header, or NULL) is
 * the client key when the body gives none. Returns 0, or the HTTP status of the error (400,
 * 413 over MMT_FEEDBACK_MAX_BODY, 500 out of memory) with a one-line message in err. */
int mmt_feedback_parse(const char *body, size_t len, const char *header_key, mmt_feedback_event *ev, char *err,
                       size_t err_size);
void mmt_feedback_event_free(mmt_feedback_event *ev);

/* The file's line for ev served by (route, arm), stamped with the current UTC time. */
void mmt_feedback_line(const mmt_feedback_event *ev, const char *route, const char *arm, mmt_strbuf *out);

#endif
