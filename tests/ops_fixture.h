/*
 * ops_fixture.h — what the kernel tests (test_ops.c, test_ops_bwd.c, test_ops_attention_kv.c)
 * share: random inputs from the stream of rng.h, and output buffers between guard words.
 *
 * A guarded buffer has GUARD sentinel floats (GUARD_VALUE) on each side of its n elements;
 * guarded_ok says whether a kernel left them alone, so one writing past its tensor fails the
 * test instead of corrupting the heap quietly. Free it with guarded_free, never free.
 *
 * Fast tables: every fast CPU table ("avx2", "avx512") is compared with the reference in
 * turn. main runs the fast-vs-reference tests once per fast_table_use(i) that returns 1;
 * fast_ops() is the table of the current pass. A table this CPU lacks is skipped with a
 * note on stdout, so an AVX2-only machine runs the avx2 pass alone.
 */
#ifndef MMT_TESTS_OPS_FIXTURE_H
#define MMT_TESTS_OPS_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
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

#define FAST_TABLES 2
static const char *const fast_table_names[FAST_TABLES] = {"avx2", "avx512"};
static const mmt_ops *fast_table_current;

/* The fast table of the current pass (the automatic choice before the first pass). */
static inline const mmt_ops *fast_ops(void) {
    return fast_table_current ? fast_table_current : mmt_ops_cpu();
}

/* Makes fast table i (0 <= i < FAST_TABLES) current; 0, with a note, where this CPU lacks it. */
static inline int fast_table_use(int i) {
    fast_table_current = mmt_ops_cpu_named(fast_table_names[i]);
    if (fast_table_current)
        printf("fast table: %s\n", fast_table_names[i]);
    else
        printf("note: no %s table on this CPU; its comparisons are skipped\n", fast_table_names[i]);
    fflush(stdout);
    return fast_table_current != NULL;
}

#endif
