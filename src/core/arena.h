/*
 * arena.h — bump allocator for things that share one lifetime.
 *
 * Blocks come in chunks from mmt_malloc, or from the allocator given to mmt_arena_init_with
 * (a backend's buffer operations); nothing is freed individually. mmt_arena_reset()
 * readies the arena for the next step: when the step needed more than one chunk it replaces
 * them by one chunk as large as all of them, so a steady-state step allocates nothing from
 * the heap. mmt_arena_mark()/mmt_arena_rewind() give back everything allocated after a mark
 * (scratch that lives for one block of a backward pass). mmt_arena_free() returns all.
 */
#ifndef MMT_CORE_ARENA_H
#define MMT_CORE_ARENA_H

#include <stddef.h>

typedef struct mmt_arena_chunk mmt_arena_chunk;
typedef struct mmt_arena {
    mmt_arena_chunk *head;   /* owned chain of chunks, newest first */
    mmt_arena_chunk *spare;  /* owned chunks given back by rewind, reused before malloc */
    size_t chunk_size;       /* default size of a new chunk */
    size_t used_bytes;       /* bytes handed out since the last reset */
    size_t peak_bytes;       /* high-water mark of used_bytes */
    void *(*alloc)(size_t bytes); /* where chunks' data come from; NULL: mmt_malloc */
    void (*release)(void *data);
} mmt_arena;

void mmt_arena_init(mmt_arena *arena, size_t chunk_size);
/* An arena whose chunks' data come from another allocator: a backend's buffer_alloc /
 * buffer_free (ops/ops.h), so that activations live where the backend computes. The chunk
 * bookkeeping stays in host memory; alloc must return 64-byte aligned memory. */
void mmt_arena_init_with(mmt_arena *arena, size_t chunk_size, void *(*alloc)(size_t bytes), void (*release)(void *data));
/* size bytes aligned to `align` (a power of two <= 64); NULL with an error set on failure. */
void *mmt_arena_alloc(mmt_arena *arena, size_t size, size_t align);
void *mmt_arena_calloc(mmt_arena *arena, size_t count, size_t size);
void mmt_arena_reset(mmt_arena *arena);

typedef struct mmt_arena_mark {
    mmt_arena_chunk *chunk;
    size_t chunk_used, used_bytes;
} mmt_arena_mark;
mmt_arena_mark mmt_arena_get_mark(const mmt_arena *arena);
/* Gives back what was allocated after the mark. Chunks added since are kept as spares for
 * the next allocations (a backward pass rewinds once per block and would otherwise return
 * and re-fault the same memory every block); reset and free release them. */
void mmt_arena_rewind(mmt_arena *arena, mmt_arena_mark mark);
void mmt_arena_free(mmt_arena *arena);

#endif
