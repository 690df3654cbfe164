/*
 * test_arena.c — the bump allocator: alignment, growth, mark/rewind, and the reset rule that
 * makes a steady-state step allocate nothing (several chunks are merged into one on reset).
 */
#include <stdint.h>

#include "check.h"
#include "core/alloc.h"
#include "core/arena.h"

static void test_alignment_and_growth(void) {
    mmt_arena a;
    mmt_arena_init(&a, 1024);
    for (int i = 0; i < 100; i++) {
        void *p = mmt_arena_alloc(&a, (size_t)(i * 37 + 1), 64);
        CHECK(p != NULL && ((uintptr_t)p & 63) == 0);
        memset(p, 0xab, (size_t)(i * 37 + 1));
    }
    CHECK(a.used_bytes > 100 * 1024 / 2);
    CHECK(a.peak_bytes >= a.used_bytes);
    mmt_arena_free(&a);
    CHECK(a.head == NULL);
}

static void test_reset_merges_chunks(void) {
    mmt_arena a;
    mmt_arena_init(&a, 1000);
    for (int i = 0; i < 10; i++) CHECK(mmt_arena_alloc(&a, 900, 64) != NULL);
    mmt_arena_reset(&a);
    CHECK(a.head != NULL && a.used_bytes == 0);
    /* the same step again fits in the one merged chunk: no allocation may happen */
    mmt_alloc_fail_after(1);
    for (int i = 0; i < 10; i++) CHECK(mmt_arena_alloc(&a, 900, 64) != NULL);
    mmt_alloc_fail_after(0);
    mmt_arena_free(&a);
}

static void test_mark_rewind(void) {
    mmt_arena a;
    mmt_arena_init(&a, 4096);
    char *keep = mmt_arena_alloc(&a, 100, 1);
    memset(keep, 7, 100);
    mmt_arena_mark m = mmt_arena_get_mark(&a);
    size_t used = a.used_bytes;
    for (int i = 0; i < 20; i++) CHECK(mmt_arena_alloc(&a, 3000, 64) != NULL); /* new chunks */
    mmt_arena_rewind(&a, m);
    CHECK(a.used_bytes == used);
    CHECK(keep[99] == 7);
    char *again = mmt_arena_alloc(&a, 50, 1);
    CHECK(again == keep + 100);
    /* the chunks given back are reused: the same allocations again need no malloc */
    mmt_alloc_fail_after(1);
    for (int i = 0; i < 20; i++) CHECK(mmt_arena_alloc(&a, 3000, 64) != NULL);
    mmt_alloc_fail_after(0);
    /* a mark on an empty arena rewinds to empty */
    mmt_arena b;
    mmt_arena_init(&b, 64);
    mmt_arena_mark e = mmt_arena_get_mark(&b);
    CHECK(mmt_arena_alloc(&b, 1000, 8) != NULL);
    mmt_arena_rewind(&b, e);
    CHECK(b.head == NULL && b.used_bytes == 0);
    mmt_arena_free(&a);
    mmt_arena_free(&b);
}

/* An arena over another allocator (a backend's buffer_alloc / buffer_free): every chunk's
 * data comes from it and goes back to it, through growth, rewind, reset's merge and free. */
static int64_t backend_live, backend_calls;
static void *backend_alloc(size_t bytes) {
    backend_live++;
    backend_calls++;
    return mmt_malloc(bytes);
}
static void backend_free(void *p) {
    if (p) backend_live--;
    mmt_free(p);
}

static void test_backend_allocator(void) {
    mmt_arena a;
    mmt_arena_init_with(&a, 256, backend_alloc, backend_free);
    mmt_arena_mark m = mmt_arena_get_mark(&a);
    for (int i = 0; i < 10; i++) {
        unsigned char *p = mmt_arena_alloc(&a, 200, 64);
        CHECK(p && ((uintptr_t)p % 64) == 0);
        if (p) memset(p, i, 200);
    }
    CHECK(backend_calls >= 5 && backend_live == backend_calls);
    mmt_arena_rewind(&a, m);
    CHECK(mmt_arena_alloc(&a, 200, 64) != NULL);
    mmt_arena_reset(&a); /* merges into one chunk from the backend */
    CHECK(backend_live == 1);
    CHECK(mmt_arena_alloc(&a, 1000, 64) != NULL);
    mmt_arena_free(&a);
    CHECK(backend_live == 0);
}

int main(void) {
    RUN(test_alignment_and_growth);
    RUN(test_reset_merges_chunks);
    RUN(test_mark_rewind);
    RUN(test_backend_allocator);
    return check_summary();
}
