/*
 * check.h — the one tiny test harness every test executable uses.
 *
 * A test file defines `static void test_x(void)` functions and a main that runs them with
 * RUN(test_x) and ends with `return check_summary();`, which prints the plain closing line
 * "N passed, N failed" and returns non-zero when anything failed. CHECK* macros record a
 * failure with file:line and carry on, so one run reports every broken expectation.
 * check_skip() exits 77, which ctest reports as skipped (GPU tests without a GPU).
 */
#ifndef MMT_TESTS_CHECK_H
#define MMT_TESTS_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmtune.h"

static int check_passed_, check_failed_, check_current_failed_;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);       \
            check_current_failed_ = 1;                                                     \
        }                                                                                  \
    } while (0)

#define CHECK_MSG(cond, ...)                                                               \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            check_current_failed_ = 1;                                                     \
        }                                                                                  \
    } while (0)

/* |a - b| <= tol */
#define CHECK_NEAR(a, b, tol)                                                              \
    do {                                                                                   \
        double ca_ = (double)(a), cb_ = (double)(b), ct_ = (double)(tol);                  \
        if (!(fabs(ca_ - cb_) <= ct_)) {                                                   \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g, tol %.3g\n",  \
                    __FILE__, __LINE__, #a, ca_, #b, cb_, ct_);                            \
            check_current_failed_ = 1;                                                     \
        }                                                                                  \
    } while (0)

#define CHECK_OK(expr)                                                                     \
    do {                                                                                   \
        mmt_status cs_ = (expr);                                                           \
        if (cs_ != MMT_OK) {                                                               \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #expr,       \
                    mmt_status_name(cs_), mmt_last_error());                               \
            check_current_failed_ = 1;                                                     \
        }                                                                                  \
    } while (0)

/* expr must fail with the given status and a message containing `needle`. */
#define CHECK_FAILS(expr, status, needle)                                                  \
    do {                                                                                   \
        mmt_status cs_ = (expr);                                                           \
        if (cs_ != (status) || !strstr(mmt_last_error(), (needle))) {                      \
            fprintf(stderr, "%s:%d: %s: expected %s containing \"%s\", got %s: \"%s\"\n", \
                    __FILE__, __LINE__, #expr, mmt_status_name(status), (needle),          \
                    mmt_status_name(cs_), mmt_last_error());                               \
            check_current_failed_ = 1;                                                     \
        }                                                                                  \
    } while (0)

#define RUN(fn)                                                                            \
    do {                                                                                   \
        check_current_failed_ = 0;                                                         \
        fn();                                                                              \
        if (check_current_failed_) {                                                       \
            check_failed_++;                                                               \
            fprintf(stderr, "FAIL %s\n", #fn);                                             \
        } else {                                                                           \
            check_passed_++;                                                               \
            printf("ok   %s\n", #fn);                                                      \
        }                                                                                  \
    } while (0)

static inline int check_summary(void) {
    printf("%d passed, %d failed\n", check_passed_, check_failed_);
    return check_failed_ ? 1 : 0;
}

static inline void check_skip(const char *why) {
    printf("skipped: %s\n", why);
    exit(77);
}

/* Path of a fixture file: MMT_FIXTURE_DIR "/" name (static buffer, one at a time). */
static inline const char *fixture(const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", MMT_FIXTURE_DIR, name);
    return path;
}

/* Reads a whole file into a malloc'd buffer (NULL on failure); *len gets the size. */
static inline void *check_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len) *len = (size_t)n;
    }
    return buf;
}

/* 1 when both files exist and hold the same bytes. With dir_b NULL, a and b are the two
 * paths; otherwise the file named b inside folder a is compared with b inside dir_b. */
static inline int check_same_file(const char *a, const char *dir_b, const char *b) {
    char pa[1024], pb[1024];
    if (dir_b) {
        snprintf(pa, sizeof pa, "%s/%s", a, b);
        snprintf(pb, sizeof pb, "%s/%s", dir_b, b);
    } else {
        snprintf(pa, sizeof pa, "%s", a);
        snprintf(pb, sizeof pb, "%s", b);
    }
    size_t na = 0, nb = 0;
    char *da = check_read_file(pa, &na), *db = check_read_file(pb, &nb);
    int same = da && db && na == nb && memcmp(da, db, na) == 0;
    free(da);
    free(db);
    return same;
}

#endif
