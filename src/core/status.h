/*
 * status.h — error reporting inside the library.
 *
 * A failure is reported where it is found: mmt_fail() records a one-line message (naming the
 * file, field and value involved) in a thread-local buffer and returns the code, so the usual
 * pattern is `return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: ...", path, ...);`. Callers pass the
 * code up unchanged. mmt_error_prefix() lets an outer layer add context ("model.safetensors: ")
 * in front of a message set deeper down, without rewriting it.
 */
#ifndef MMT_CORE_STATUS_H
#define MMT_CORE_STATUS_H

#include "mmtune.h"

#if defined(__GNUC__)
#define MMT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MMT_PRINTF(a, b)
#endif

mmt_status mmt_fail(mmt_status code, const char *fmt, ...) MMT_PRINTF(2, 3);
/* Prepends formatted text to the current message; returns code for chaining. */
mmt_status mmt_error_prefix(mmt_status code, const char *fmt, ...) MMT_PRINTF(2, 3);
void mmt_clear_error(void);

/* Evaluates expr; on failure returns its status from the enclosing function. */
#define MMT_TRY(expr)                                                                      \
    do {                                                                                   \
        mmt_status mmt_try_status_ = (expr);                                               \
        if (mmt_try_status_ != MMT_OK) return mmt_try_status_;                             \
    } while (0)

#endif
