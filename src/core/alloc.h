/*
 * alloc.h — the one allocator hook all library heap use goes through.
 *
 * It counts live and peak bytes (they feed the memory metrics) and, for tests, can be told to
 * fail the Nth allocation from now so that error paths run. Every function returns NULL on
 * failure and sets the last error to an out-of-memory message; sizes that overflow fail too.
 * Memory is 64-byte aligned so SIMD kernels may use aligned loads.
 */
#ifndef MMT_CORE_ALLOC_H
#define MMT_CORE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

void *mmt_malloc(size_t size);
void *mmt_calloc(size_t count, size_t size);
void *mmt_realloc(void *ptr, size_t size);
void mmt_free(void *ptr);
char *mmt_strdup(const char *s);
char *mmt_strndup(const char *s, size_t n);

/* Makes the array *buf (capacity *cap elements of `size` bytes) hold at least `need`
 * elements, doubling from 64; the contents are kept. MMT_STATUS_OUT_OF_MEMORY leaves it as
 * it was. */
mmt_status mmt_grow(void **buf, int64_t *cap, int64_t need, size_t size);

/* Test hook: the n-th allocation from now (1 = the next one) fails; 0 turns it off. */
void mmt_alloc_fail_after(long n);

#endif
