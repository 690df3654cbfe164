/* status.c — the thread-local last-error message behind mmt_last_error(). */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MMT_ERROR_CAPACITY 1024

static _Thread_local char error_message[MMT_ERROR_CAPACITY];

/* Messages are one line: newlines inside (from a file name, say) become spaces. */
static void flatten_line(char *s) {
    for (; *s; s++)
        if (*s == '\n' || *s == '\r') *s = ' ';
}

mmt_status mmt_fail(mmt_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    flatten_line(error_message);
    return code;
}

mmt_status mmt_error_prefix(mmt_status code, const char *fmt, ...) {
    char prefix[MMT_ERROR_CAPACITY];
    char old[MMT_ERROR_CAPACITY];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, error_message, sizeof old);
    size_t n = strlen(prefix);
    memcpy(error_message, prefix, n + 1);
    size_t room = sizeof error_message - 1 - n;
    size_t m = strnlen(old, room);
    memcpy(error_message + n, old, m);
    error_message[n + m] = '\0';
    flatten_line(error_message);
    return code;
}

void mmt_clear_error(void) { error_message[0] = '\0'; }

const char *mmt_last_error(void) { return error_message; }

const char *mmt_status_name(mmt_status status) {
    switch (status) {
    case MMT_OK: return "ok";
    case MMT_STATUS_INVALID_ARGUMENT: return "invalid argument";
    case MMT_STATUS_IO: return "i/o error";
    case MMT_STATUS_BAD_FORMAT: return "bad format";
    case MMT_STATUS_NOT_FOUND: return "not found";
    case MMT_STATUS_OUT_OF_MEMORY: return "out of memory";
    case MMT_STATUS_UNSUPPORTED: return "unsupported";
    case MMT_STATUS_INTERNAL: return "internal error";
    }
    return "unknown status";
}
