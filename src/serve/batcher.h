/*
 * batcher.h — dynamic batching: requests queue, one worker thread runs them in batches.
 *
 * A batch runs when the queued rows reach max_batch, or when the oldest queued request has
 * waited max_wait_s, whichever comes first (max_wait_s 0: as soon as the worker is free, so a
 * batch is whatever queued while the previous one ran), or, with a `clients` callback, as
 * soon as every client that could still add a request has one queued (an HTTP server: each
 * open connection has its one request in flight waiting here), since waiting longer could
 * bring nothing. Requests are taken whole, oldest first, while they fit in max_batch rows
 * (a request larger than max_batch runs alone). A request whose deadline has passed before
 * its batch forms is handed to `expire` instead. The callbacks run on the worker thread,
 * one batch at a time, so the runner may keep single-threaded state (a run context, a
 * tokenizer).
 *
 * Usage:
 *     typedef struct my_req { mmt_batch_job job; ... } my_req;   // job first or anywhere
 *     mmt_batcher_options o = {.max_batch = 32, .max_wait_s = 0.005, .run = run, .user = u};
 *     MMT_TRY(mmt_batcher_start(&o, &b));
 *     r->job.rows = 3; mmt_batcher_submit(b, &r->job);          // from any thread
 *     mmt_batcher_stop(b);                                       // runs what is queued, joins
 */
#ifndef MMT_SERVE_BATCHER_H
#define MMT_SERVE_BATCHER_H

#include <stdint.h>

#include "core/status.h"

typedef struct mmt_batch_job {
    struct mmt_batch_job *next; /* the batcher's */
    int64_t rows;               /* rows this request adds to a batch (>= 1) */
    double enqueued_s;          /* set by submit (mmt_now_seconds) */
    double deadline_s;          /* absolute mmt_now_seconds() time; 0: none */
} mmt_batch_job;

/* Runs n jobs (total rows) as one batch; every job must be answered by the callee. */
typedef void (*mmt_batch_run_fn)(void *user, mmt_batch_job **jobs, int64_t n, int64_t rows);
/* A job that waited past its deadline; the callee answers it (e.g. 503). */
typedef void (*mmt_batch_expire_fn)(void *user, mmt_batch_job *job);

typedef struct mmt_batcher_options {
    int64_t max_batch;  /* rows per batch (>= 1) */
    double max_wait_s;  /* how long the oldest request may wait for others (>= 0) */
    mmt_batch_run_fn run;
    mmt_batch_expire_fn expire; /* NULL: expired jobs run anyway */
    /* How many clients could queue a job now (open connections); NULL: not known. Called by
     * the worker each time it decides whether to wait, with the batcher's lock held: it must
     * not block. */
    int64_t (*clients)(void *user);
    void *user;
} mmt_batcher_options;

typedef struct mmt_batcher mmt_batcher;

mmt_status mmt_batcher_start(const mmt_batcher_options *o, mmt_batcher **out);
/* Queues a job; never blocks on the worker. Refused (returns 0) once stopping. */
int mmt_batcher_submit(mmt_batcher *b, mmt_batch_job *job);
/* Rows queued and not yet taken into a batch. */
int64_t mmt_batcher_depth(mmt_batcher *b);
/* Runs what is queued, then stops the worker and frees the batcher. NULL is fine. */
void mmt_batcher_stop(mmt_batcher *b);

#endif
