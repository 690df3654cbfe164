/* log.c — default stderr logger with a level threshold, replaceable by the caller. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>

static mmt_log_fn log_callback;
static void *log_user;
static mmt_log_level log_threshold = MMT_LOG_WARN;

void mmt_log_set_callback(mmt_log_fn fn, void *user) {
    log_callback = fn;
    log_user = user;
}

void mmt_log_set_level(mmt_log_level level) { log_threshold = level; }

void mmt_log(mmt_log_level level, const char *fmt, ...) {
    if (level < log_threshold) return;
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (log_callback) {
        log_callback(level, message, log_user);
        return;
    }
    static const char *names[] = {"debug", "info", "warning", "error", ""};
    fprintf(stderr, "mmtune: %s: %s\n", names[level], message);
}
