/* arena.c — chunked bump allocator (see arena.h). */
#include "core/arena.h"

#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"

struct mmt_arena_chunk {
    mmt_arena_chunk *next;
    size_t size; /* usable bytes in data */
    size_t used;
    unsigned char *data; /* from the arena's allocator (host memory by default) */
};

void mmt_arena_init(mmt_arena *arena, size_t chunk_size) { mmt_arena_init_with(arena, chunk_size, NULL, NULL); }

void mmt_arena_init_with(mmt_arena *arena, size_t chunk_size, void *(*alloc)(size_t bytes), void (*release)(void *data)) {
    memset(arena, 0, sizeof *arena);
    arena->chunk_size = chunk_size ? chunk_size : (size_t)1 << 20;
    arena->alloc = alloc;
    arena->release = release;
}

/* A chunk of `size` usable bytes: its header on the host, its data from the allocator. */
static mmt_arena_chunk *chunk_new(const mmt_arena *arena, size_t size) {
    mmt_arena_chunk *c = mmt_malloc(sizeof *c);
    if (!c) return NULL;
    c->data = arena->alloc ? arena->alloc(size ? size : 1) : mmt_malloc(size ? size : 1);
    if (!c->data) {
        mmt_free(c);
        return NULL;
    }
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

static void chunk_free(const mmt_arena *arena, mmt_arena_chunk *c) {
    if (arena->release) arena->release(c->data);
    else mmt_free(c->data);
    mmt_free(c);
}

void *mmt_arena_alloc(mmt_arena *arena, size_t size, size_t align) {
    if (align == 0) align = 1;
    mmt_arena_chunk *c = arena->head;
    if (c) {
        size_t start = (c->used + align - 1) & ~(align - 1);
        if (start <= c->size && size <= c->size - start) {
            c->used = start + size;
            arena->used_bytes += size;
            if (arena->used_bytes > arena->peak_bytes) arena->peak_bytes = arena->used_bytes;
            return c->data + start;
        }
    }
    /* a spare chunk that fits (first fit) before a new one */
    for (mmt_arena_chunk **link = &arena->spare; *link; link = &(*link)->next) {
        mmt_arena_chunk *sp = *link;
        if (sp->size >= size) {
            *link = sp->next;
            sp->used = size;
            sp->next = arena->head;
            arena->head = sp;
            arena->used_bytes += size;
            if (arena->used_bytes > arena->peak_bytes) arena->peak_bytes = arena->used_bytes;
            return sp->data;
        }
    }
    size_t want = size > arena->chunk_size ? size : arena->chunk_size;
    if (want > SIZE_MAX - sizeof(mmt_arena_chunk) - 64) {
        mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "arena allocation of %zu bytes is too large", size);
        return NULL;
    }
    mmt_arena_chunk *fresh = chunk_new(arena, want);
    if (!fresh) return NULL;
    fresh->used = size;
    fresh->next = arena->head;
    arena->head = fresh;
    arena->used_bytes += size;
    if (arena->used_bytes > arena->peak_bytes) arena->peak_bytes = arena->used_bytes;
    return fresh->data;
}

void *mmt_arena_calloc(mmt_arena *arena, size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) {
        mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "arena allocation size overflow");
        return NULL;
    }
    void *p = mmt_arena_alloc(arena, count * size, 64);
    if (p) memset(p, 0, count * size);
    return p;
}

static void free_chain(const mmt_arena *arena, mmt_arena_chunk *c) {
    while (c) {
        mmt_arena_chunk *next = c->next;
        chunk_free(arena, c);
        c = next;
    }
}

void mmt_arena_reset(mmt_arena *arena) {
    /* spares join the chain so that the merge below accounts for them */
    while (arena->spare) {
        mmt_arena_chunk *sp = arena->spare;
        arena->spare = sp->next;
        sp->next = arena->head;
        arena->head = sp;
    }
    size_t total = 0, count = 0;
    for (mmt_arena_chunk *c = arena->head; c; c = c->next) {
        total += c->size;
        count++;
    }
    if (count > 1) {
        /* One chunk as large as this step's chunks together: the next step fits in it. If
         * that allocation fails, keep the largest old chunk instead (still correct). */
        mmt_arena_chunk *merged = chunk_new(arena, total);
        mmt_arena_chunk *keep = merged;
        if (!keep)
            for (mmt_arena_chunk *c = arena->head; c; c = c->next)
                if (!keep || c->size > keep->size) keep = c;
        mmt_arena_chunk *c = arena->head;
        while (c) {
            mmt_arena_chunk *next = c->next;
            if (c != keep) chunk_free(arena, c);
            c = next;
        }
        if (!merged) mmt_clear_error(); /* the failed malloc's message: nothing failed for the caller */
        keep->next = NULL;
        arena->head = keep;
    }
    if (arena->head) arena->head->used = 0;
    arena->used_bytes = 0;
}

mmt_arena_mark mmt_arena_get_mark(const mmt_arena *arena) {
    mmt_arena_mark m = {arena->head, arena->head ? arena->head->used : 0, arena->used_bytes};
    return m;
}

void mmt_arena_rewind(mmt_arena *arena, mmt_arena_mark mark) {
    while (arena->head && arena->head != mark.chunk) {
        mmt_arena_chunk *c = arena->head;
        arena->head = c->next;
        c->next = arena->spare;
        arena->spare = c;
    }
    if (arena->head) arena->head->used = mark.chunk_used;
    arena->used_bytes = mark.used_bytes;
}

void mmt_arena_free(mmt_arena *arena) {
    if (!arena) return;
    free_chain(arena, arena->head);
    free_chain(arena, arena->spare);
    arena->head = arena->spare = NULL;
    arena->used_bytes = 0;
}
