/*
 * loader.h — a background batch loader: worker threads fill a bounded ring of batch buffers
 * with the examples of batches announced ahead of time, so training does not wait on decoding.
 *
 * The loader knows nothing about images: the caller gives a function that writes one example
 * (its index in the data set and its position in the example stream) into a float buffer.
 * Batches come back in exactly the order they were submitted and each example is produced by
 * the same function call as a synchronous loop would make, so the output is bitwise the same
 * whatever the number of workers. With workers == 0 nothing runs in the background: next()
 * produces the batch on the calling thread (the synchronous reference).
 *
 * Bounds: at most `depth` batches are being filled or wait filled; the batch handed out by
 * next() stays valid until the following next() (one more buffer). Submitting is never
 * blocking: requests beyond the ring wait as index lists until a buffer frees up.
 * Errors: when an example fails, next() for its batch returns the failure with the message
 * the function set (the lowest failing example of the batch, as a synchronous loop would
 * report), and later batches are not waited for. free() stops and joins the workers.
 *
 * Usage:
 *     mmt_loader_options lo = {.workers = 2, .depth = 2, .example_floats = 3 * 224 * 224, .max_batch = 32};
 *     MMT_TRY(mmt_loader_create(&lo, load_one, ctx, &ld));
 *     mmt_loader_submit(ld, position, indices, n);         // one or more batches ahead
 *     const float *x;
 *     MMT_TRY(mmt_loader_next(ld, indices, n, &x));        // x: (n, example_floats)
 *     mmt_loader_free(ld);
 */
#ifndef MMT_DATA_LOADER_H
#define MMT_DATA_LOADER_H

#include <stdint.h>

#include "core/status.h"

/* Writes example `index` (at stream position `position`) into out (example_floats floats).
 * Called from worker threads, concurrently: it must be thread-safe. */
typedef mmt_status (*mmt_loader_fn)(void *ctx, int64_t index, int64_t position, float *out);

typedef struct mmt_loader_options {
    int64_t workers;        /* background threads; 0: synchronous */
    int64_t depth;          /* batches prepared ahead (>= 1) */
    int64_t example_floats; /* floats per example */
    int64_t max_batch;      /* examples per batch at most */
} mmt_loader_options;

/* workers = min(2, online cores), depth = 2. */
void mmt_loader_options_default(mmt_loader_options *o);

typedef struct mmt_loader mmt_loader;

mmt_status mmt_loader_create(const mmt_loader_options *o, mmt_loader_fn fn, void *ctx,
                             mmt_loader **out);
/* Stops the workers (after the example each is on) and frees everything; accepts NULL. */
void mmt_loader_free(mmt_loader *ld);

/* Announces a batch: examples indices[0..n) at stream positions position .. position+n-1. */
mmt_status mmt_loader_submit(mmt_loader *ld, int64_t position, const int64_t *indices, int64_t n);
/* The oldest submitted batch, once complete: *pixels is (n, example_floats), valid until the
 * next call. indices/n must be those submitted (checked). */
mmt_status mmt_loader_next(mmt_loader *ld, const int64_t *indices, int64_t n, const float **pixels);
/* Number of submitted batches not yet taken by next(). */
int64_t mmt_loader_pending(mmt_loader *ld);

#endif
