/*
 * alloc.c — counting, aligned allocator with fault injection.
 *
 * Each block carries a 64-byte header holding its size, so mmt_free can update the counters
 * and the payload stays 64-byte aligned.
 */
#include "core/alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

#define HEADER 64

static atomic_size_t current_bytes;
static atomic_size_t peak_bytes;
static atomic_long fail_countdown;

static int should_fail(void) {
    long n = atomic_load(&fail_countdown);
    while (n > 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &n, n - 1)) return n == 1;
    }
    return 0;
}

static void count_add(size_t size) {
    size_t now = atomic_fetch_add(&current_bytes, size) + size;
    size_t peak = atomic_load(&peak_bytes);
    while (now > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, now)) {
    }
}

void *mmt_malloc(size_t size) {
    if (size > SIZE_MAX - HEADER || should_fail()) {
        mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "out of memory allocating %zu bytes", size);
        return NULL;
    }
    void *block = NULL;
    if (posix_memalign(&block, HEADER, size + HEADER) != 0) {
        mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "out of memory allocating %zu bytes", size);
        return NULL;
    }
    *(size_t *)block = size;
    count_add(size);
    return (char *)block + HEADER;
}

void *mmt_calloc(size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) {
        mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "allocation size overflow (%zu x %zu)", count, size);
        return NULL;
    }
    void *p = mmt_malloc(count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

void *mmt_realloc(void *ptr, size_t size) {
    if (!ptr) return mmt_malloc(size);
    size_t old = *(size_t *)((char *)ptr - HEADER);
    void *fresh = mmt_malloc(size);
    if (!fresh) return NULL;
    memcpy(fresh, ptr, old < size ? old : size);
    mmt_free(ptr);
    return fresh;
}

void mmt_free(void *ptr) {
    if (!ptr) return;
    void *block = (char *)ptr - HEADER;
    atomic_fetch_sub(&current_bytes, *(size_t *)block);
    free(block);
}

char *mmt_strndup(const char *s, size_t n) {
    char *d = mmt_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *mmt_strdup(const char *s) { return mmt_strndup(s, strlen(s)); }

void mmt_alloc_fail_after(long n) { atomic_store(&fail_countdown, n); }

size_t mmt_alloc_current_bytes(void) { return atomic_load(&current_bytes); }
size_t mmt_alloc_peak_bytes(void) { return atomic_load(&peak_bytes); }

mmt_status mmt_grow(void **buf, int64_t *cap, int64_t need, size_t size) {
    if (need <= *cap) return MMT_OK;
    int64_t n = *cap > 0 ? *cap : 64;
    while (n < need) n *= 2;
    void *p = mmt_realloc(*buf, (size_t)n * size);
    if (!p) return MMT_STATUS_OUT_OF_MEMORY;
    *buf = p;
    *cap = n;
    return MMT_OK;
}
