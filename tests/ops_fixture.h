/*
 * ops_fixture.h — what the kernel tests (test_ops.c, test_ops_bwd.c, test_ops_attention_kv.c)
 * share: random inputs from the stream of rng.h, and output buffers between guard words.
 *
 * A guarded buffer has GUARD sentinel floats (GUARD_VALUE) on each side of its n elements;
 * guarded_ok says whether a kernel left them alone, so one writing past its tensor fails the
 * test instead of corrupting the heap quietly. Free it with guarded_free, never free.
 */
#ifndef MMT_TESTS_OPS_FIXTURE_H
#define MMT_TESTS_OPS_FIXTURE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#define GUARD 16
#define GUARD_VALUE 12345.678f

static inline float *guarded_alloc(int64_t n) {
    float *p = malloc((size_t)(n + 2 * GUARD) * sizeof(float));
    for (int64_t i = 0; i < n + 2 * GUARD; i++) p[i] = GUARD_VALUE;
    return p + GUARD;
}

/* A guarded buffer holding a copy of `init` (n floats). */
static inline float *guarded_copy(const float *init, int64_t n) {
    float *p = guarded_alloc(n);
    if (n > 0) memcpy(p, init, (size_t)n * sizeof(float));
    return p;
}

static inline int guarded_ok(const float *p, int64_t n) {
    for (int64_t i = 1; i <= GUARD; i++)
        if (p[-i] != GUARD_VALUE || p[n + i - 1] != GUARD_VALUE) return 0;
    return 1;
}

static inline void guarded_free(float *p) {
    if (p) free(p - GUARD);
}

#endif
