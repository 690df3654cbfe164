/* feedback.c — the feedback file and the parsing of POST /v1/feedback (see feedback.h). */
#include "serve/feedback.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "serve/http.h"
#include "serve/request.h"

struct mmt_feedback_log {
    int fd;
    char *path;
    mmt_feedback_fsync policy;
    pthread_mutex_t mu;    /* the writes, dirty, stop */
    pthread_cond_t wake;
    int dirty, stop;
    pthread_t syncer;
    int syncer_started;
};

int mmt_feedback_fsync_parse(const char *s) {
    if (!strcmp(s, "second")) return MMT_FEEDBACK_FSYNC_SECOND;
    if (!strcmp(s, "always")) return MMT_FEEDBACK_FSYNC_ALWAYS;
    if (!strcmp(s, "never")) return MMT_FEEDBACK_FSYNC_NEVER;
    return -1;
}

/* "second": sync once a second when something was written (redis' appendfsync everysec). */
static void *sync_thread(void *arg) {
    mmt_feedback_log *f = arg;
    pthread_mutex_lock(&f->mu);
    while (!f->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&f->wake, &f->mu, &until);
        if (f->dirty) {
            f->dirty = 0;
            if (fdatasync(f->fd) != 0) mmt_log_warn("feedback: %s: fdatasync: %s", f->path, strerror(errno));
        }
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return 0;
        p += w, n -= (size_t)w;
    }
    return 1;
}

mmt_status mmt_feedback_open(const char *path, mmt_feedback_fsync policy, mmt_feedback_log **out) {
    *out = NULL;
    mmt_feedback_log *f = mmt_calloc(1, sizeof *f);
    if (!f || !(f->path = mmt_strdup(path))) {
        mmt_free(f);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    f->policy = policy;
    f->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        mmt_status st = mmt_fail(MMT_STATUS_IO, "feedback file %s: %s", path, strerror(errno));
        mmt_free(f->path);
        mmt_free(f);
        return st;
    }
    /* a line cut short by a crash is ended, so the next event starts on a line of its own */
    struct stat sb;
    char last = '\n';
    if (fstat(f->fd, &sb) == 0 && sb.st_size > 0) {
        int rfd = open(path, O_RDONLY | O_CLOEXEC);
        if (rfd >= 0 && pread(rfd, &last, 1, sb.st_size - 1) != 1) last = '\n';
        if (rfd >= 0) close(rfd);
    }
    if (last != '\n' && !write_all(f->fd, "\n", 1)) mmt_log_warn("feedback: %s: cannot end its last line", path);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->wake, NULL);
    if (policy == MMT_FEEDBACK_FSYNC_SECOND) {
        if (pthread_create(&f->syncer, NULL, sync_thread, f) != 0) {
            mmt_feedback_close(f);
            return mmt_fail(MMT_STATUS_INTERNAL, "feedback file %s: cannot start its sync thread", path);
        }
        f->syncer_started = 1;
    }
    *out = f;
    return MMT_OK;
}

mmt_status mmt_feedback_append(mmt_feedback_log *f, const char *line, size_t len) {
    mmt_status st = MMT_OK;
    pthread_mutex_lock(&f->mu);
    struct stat sb;
    off_t before = fstat(f->fd, &sb) == 0 ? sb.st_size : -1;
    if (!write_all(f->fd, line, len)) {
        st = mmt_fail(MMT_STATUS_IO, "feedback file %s: %s", f->path, strerror(errno ? errno : EIO));
        if (before >= 0 && ftruncate(f->fd, before) != 0) mmt_log_warn("feedback: %s: a partial line is left", f->path);
    } else if (f->policy == MMT_FEEDBACK_FSYNC_ALWAYS && fdatasync(f->fd) != 0) {
        st = mmt_fail(MMT_STATUS_IO, "feedback file %s: fdatasync: %s", f->path, strerror(errno));
    } else {
        f->dirty = 1;
    }
    pthread_mutex_unlock(&f->mu);
    return st;
}

void mmt_feedback_close(mmt_feedback_log *f) {
    if (!f) return;
    if (f->syncer_started) {
        pthread_mutex_lock(&f->mu);
        f->stop = 1;
        pthread_cond_signal(&f->wake);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->syncer, NULL);
    }
    if (f->policy != MMT_FEEDBACK_FSYNC_NEVER && fdatasync(f->fd) != 0)
        mmt_log_warn("feedback: %s: fdatasync: %s", f->path, strerror(errno));
    close(f->fd);
    pthread_cond_destroy(&f->wake);
    pthread_mutex_destroy(&f->mu);
    mmt_free(f->path);
    mmt_free(f);
}

/* ---- the request body ---- */

void mmt_feedback_event_free(mmt_feedback_event *ev) {
    mmt_strbuf_free(&ev->value);
    mmt_strbuf_free(&ev->metadata);
}

static int fail(mmt_feedback_event *ev, int status, char *err, size_t err_size, const char *msg) {
    snprintf(err, err_size, "%s", msg);
    for (char *c = err; *c; c++) /* one line, whatever the client sent */
        if ((unsigned char)*c < 0x20) *c = '?';
    mmt_feedback_event_free(ev);
    return status;
}

/* A string field into out (out_size bytes with the NUL): 1 when absent or fine, 0 with msg. */
static int get_string(const mmt_json *root, const char *key, char *out, size_t out_size, char *msg, size_t msg_size) {
    const mmt_json *v = mmt_json_get(root, key);
    if (!v || v->type == MMT_JSON_NULL) return 1;
    if (v->type != MMT_JSON_STRING || strlen(v->string) != v->len || v->len == 0 || v->len >= out_size) {
        snprintf(msg, msg_size, "\"%s\" must be a string of 1 to %zu bytes", key, out_size - 1);
        return 0;
    }
    memcpy(out, v->string, v->len + 1);
    return 1;
}

static int is_name(const char *s) { return !strcmp(s, "base") || mmt_serve_valid_name(s); }

int mmt_feedback_parse(const char *body, size_t len, const char *header_key, mmt_feedback_event *ev, char *err,
                       size_t err_size) {
    memset(ev, 0, sizeof *ev);
    char msg[400];
    if (len > MMT_FEEDBACK_MAX_BODY) {
        snprintf(msg, sizeof msg, "a feedback body of %zu bytes, over the limit of %d", len, MMT_FEEDBACK_MAX_BODY);
        return fail(ev, 413, err, err_size, msg);
    }
    mmt_json_doc *doc = NULL;
    if (mmt_json_parse(body, len, "request body", &doc) != MMT_OK) return fail(ev, 400, err, err_size, mmt_last_error());
    const mmt_json *root = mmt_json_root(doc);
    static const char *known[] = {"request_id", "user", "client_key", "route", "arm", "event", "value", "metadata"};
    int status = 0;
    if (root->type != MMT_JSON_OBJECT) snprintf(msg, sizeof msg, "the body must be a JSON object"), status = 400;
    for (size_t k = 0; !status && k < root->len; k++) {
        int ok = 0;
        for (size_t i = 0; i < sizeof known / sizeof *known; i++) ok |= !strcmp(root->keys[k], known[i]);
        if (!ok)
            snprintf(msg, sizeof msg, "unknown field \"%.60s\" (expected request_id, user, route, arm, event, value, metadata)",
                     root->keys[k]), status = 400;
    }
    const mmt_json *user = status ? NULL : mmt_json_get(root, "user");
    if (!status && (!get_string(root, "request_id", ev->request_id, sizeof ev->request_id, msg, sizeof msg) ||
                    !get_string(root, user ? "user" : "client_key", ev->user, sizeof ev->user, msg, sizeof msg) ||
                    !get_string(root, "route", ev->route, sizeof ev->route, msg, sizeof msg) ||
                    !get_string(root, "arm", ev->arm, sizeof ev->arm, msg, sizeof msg) ||
                    !get_string(root, "event", ev->event, sizeof ev->event, msg, sizeof msg)))
        status = 400;
    if (!status && !ev->user[0] && header_key && header_key[0]) {
        if (strlen(header_key) < sizeof ev->user) snprintf(ev->user, sizeof ev->user, "%s", header_key);
        else snprintf(msg, sizeof msg, "X-Client-Key is over %zu bytes", sizeof ev->user - 1), status = 400;
    }
    if (!status && ev->request_id[0] && !mmt_http_valid_request_id(ev->request_id))
        snprintf(msg, sizeof msg, "\"request_id\" must be 1-64 of A-Z a-z 0-9 _ - . :"), status = 400;
    else if (!status && !ev->event[0])
        snprintf(msg, sizeof msg, "\"event\" is required: a name such as \"click\" or \"label\""), status = 400;
    else if (!status && !is_name(ev->event))
        snprintf(msg, sizeof msg, "\"event\" must be 1-63 of A-Z a-z 0-9 _ - ."), status = 400;
    else if (!status && ((ev->route[0] && !mmt_serve_valid_name(ev->route)) || (ev->arm[0] && !is_name(ev->arm))))
        snprintf(msg, sizeof msg, "\"route\" and \"arm\" are names: 1-63 of A-Z a-z 0-9 _ - ."), status = 400;
    else if (!status && !ev->request_id[0] && !ev->user[0] && !(ev->route[0] && ev->arm[0]))
        snprintf(msg, sizeof msg, "give \"request_id\" (the X-Request-Id of the answer), the client key (\"user\"), or "
                                  "\"route\" and \"arm\""),
            status = 400;
    const mmt_json *value = status ? NULL : mmt_json_get(root, "value");
    const mmt_json *meta = status ? NULL : mmt_json_get(root, "metadata");
    if (value && (value->type == MMT_JSON_ARRAY || value->type == MMT_JSON_OBJECT))
        snprintf(msg, sizeof msg, "\"value\" must be a number, a string (a label), true/false or null"), status = 400;
    else if (value && value->type == MMT_JSON_STRING && value->len > MMT_FEEDBACK_MAX_VALUE)
        snprintf(msg, sizeof msg, "\"value\" is a string over %d bytes", MMT_FEEDBACK_MAX_VALUE), status = 400;
    else if (meta && meta->type != MMT_JSON_OBJECT && meta->type != MMT_JSON_NULL)
        snprintf(msg, sizeof msg, "\"metadata\" must be an object"), status = 400;
    if (!status && value) mmt_json_write(&ev->value, value);
    if (!status && meta && meta->type == MMT_JSON_OBJECT) mmt_json_write(&ev->metadata, meta);
    if (!status && (ev->value.failed || ev->metadata.failed)) snprintf(msg, sizeof msg, "out of memory"), status = 500;
    mmt_json_free(doc);
    return status ? fail(ev, status, err, err_size, msg) : 0;
}

void mmt_feedback_line(const mmt_feedback_event *ev, const char *route, const char *arm, mmt_strbuf *out) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    mmt_strbuf_printf(out, "{\"time\":\"%s.%03ldZ\"", when, ts.tv_nsec / 1000000);
    if (ev->request_id[0]) {
        mmt_strbuf_printf(out, ",\"request_id\":");
        mmt_strbuf_json_string(out, ev->request_id, strlen(ev->request_id));
    }
    if (ev->user[0]) {
        mmt_strbuf_printf(out, ",\"user\":");
        mmt_strbuf_json_string(out, ev->user, strlen(ev->user));
    }
    mmt_strbuf_printf(out, ",\"route\":\"%s\",\"arm\":\"%s\",\"event\":\"%s\"", route, arm, ev->event);
    if (ev->value.len) mmt_strbuf_printf(out, ",\"value\":%s", ev->value.data);
    if (ev->metadata.len) mmt_strbuf_printf(out, ",\"metadata\":%s", ev->metadata.data);
    mmt_strbuf_printf(out, "}\n");
}
