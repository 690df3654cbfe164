/*
 * buffer_ref.c — the CPU's buffer operations: host memory from core/alloc, memcpy, a fill.
 *
 * Every CPU table points at these (there is nothing for SIMD to win in a memcpy the C
 * library already vectorises). Memory comes from mmt_malloc so that the allocator counts it
 * and tests can make it fail; it is 64-byte aligned, as the AVX2 kernels like. Upload,
 * download and copy are the same memcpy on a backend whose memory is the host's.
 */
#include <string.h>

#include "core/alloc.h"
#include "ops/ref/ops_ref.h"

void *buffer_alloc_ref(size_t bytes) { return mmt_malloc(bytes); }

void buffer_free_ref(void *buffer) { mmt_free(buffer); }

void buffer_copy_ref(void *dst, const void *src, size_t bytes) {
    if (bytes > 0) memcpy(dst, src, bytes);
}

void buffer_fill_ref(float *x, // (n)
                     float value, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = value;
}

void sync_ref(void) {}
