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

void *mmt_malloc(size_t size);
void *mmt_calloc(size_t count, size_t size);
void *mmt_realloc(void *ptr, size_t size);
void mmt_free(void *ptr);
char *mmt_strdup(const char *s);
char *mmt_strndup(const char *s, size_t n);

/* Test hook: the n-th allocation from now (1 = the next one) fails; 0 turns it off. */
void mmt_alloc_fail_after(long n);

#endif
