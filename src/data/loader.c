/*
 * loader.c — background batch loading into a bounded ring (see loader.h).
 *
 * One mutex guards everything shared. Submitted batches form a FIFO of requests; a request
 * gets a ring buffer (a slot) in FIFO order as soon as one is free, and then its examples are
 * handed out one at a time to whichever worker asks, so two workers share a batch rather than
 * each taking a batch (the next batch is needed first). Workers write straight into the slot;
 * the consumer waits until every example of the head request is done.
 */
#include "data/loader.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "mmtune.h"

#define LOADER_MAX_WORKERS 64
#define LOADER_MESSAGE 1024

typedef struct request {
    struct request *next;
    int64_t position, n;
    int64_t *indices;        /* owned, n */
    int64_t slot;            /* -1 until a buffer is assigned */
    int64_t next_example;    /* first not yet handed to a worker */
    int64_t done;            /* examples finished (well or not) */
    int64_t err_example;     /* lowest failing example; n when none */
    mmt_status err_status;
    char err_message[LOADER_MESSAGE];
} request;

struct mmt_loader {
    mmt_loader_options opt;
    mmt_loader_fn fn;
    void *ctx;
    float *buffers;          /* owned: (n_slots, max_batch, example_floats) */
    int *slot_busy;          /* owned, n_slots */
    int64_t n_slots, held;   /* held: the slot next() handed out last, or -1 */
    request *head, *tail;    /* owned FIFO */
    int64_t pending;
    pthread_t threads[LOADER_MAX_WORKERS];
    int64_t n_threads;
    pthread_mutex_t lock;
    pthread_cond_t work;     /* a slot freed, a request arrived, or stop */
    pthread_cond_t done;     /* a request completed */
    int stop;
};

void mmt_loader_options_default(mmt_loader_options *o) {
    memset(o, 0, sizeof *o);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o->workers = cores >= 2 ? 2 : 1;
    o->depth = 2;
}

static float *slot_buffer(const mmt_loader *ld, int64_t slot) {
    return ld->buffers + (size_t)slot * (size_t)ld->opt.max_batch * (size_t)ld->opt.example_floats;
}

/* Gives free slots to waiting requests in FIFO order, then returns the first request with an
 * example left to hand out (or NULL). Called with the lock held. */
static request *find_work(mmt_loader *ld) {
    for (request *r = ld->head; r; r = r->next) {
        if (r->slot < 0) {
            int64_t s = 0;
            while (s < ld->n_slots && ld->slot_busy[s]) s++;
            if (s == ld->n_slots) return NULL; /* later requests wait behind this one */
            ld->slot_busy[s] = 1;
            r->slot = s;
        }
        if (r->next_example < r->n) return r;
    }
    return NULL;
}

static void *worker_main(void *arg) {
    mmt_loader *ld = arg;
    pthread_mutex_lock(&ld->lock);
    while (!ld->stop) {
        request *r = find_work(ld);
        if (!r) {
            pthread_cond_wait(&ld->work, &ld->lock);
            continue;
        }
        int64_t i = r->next_example++;
        float *out = slot_buffer(ld, r->slot) + (size_t)i * (size_t)ld->opt.example_floats;
        int64_t index = r->indices[i], position = r->position + i;
        pthread_mutex_unlock(&ld->lock);
        mmt_status s = ld->fn(ld->ctx, index, position, out);
        char message[LOADER_MESSAGE];
        if (s != MMT_OK) snprintf(message, sizeof message, "%s", mmt_last_error());
        pthread_mutex_lock(&ld->lock);
        if (s != MMT_OK && i < r->err_example) {
            r->err_example = i;
            r->err_status = s;
            memcpy(r->err_message, message, sizeof message);
        }
        if (++r->done == r->n) pthread_cond_broadcast(&ld->done);
    }
    pthread_mutex_unlock(&ld->lock);
    return NULL;
}

mmt_status mmt_loader_create(const mmt_loader_options *o, mmt_loader_fn fn, void *ctx,
                             mmt_loader **out) {
    *out = NULL;
    if (o->workers < 0 || o->workers > LOADER_MAX_WORKERS || o->depth < 1 || o->depth > 1024 ||
        o->example_floats < 1 || o->max_batch < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "loader: workers %lld (0..%d), prefetch depth %lld (1..1024), example size %lld, batch %lld",
                        (long long)o->workers, LOADER_MAX_WORKERS, (long long)o->depth,
                        (long long)o->example_floats, (long long)o->max_batch);
    mmt_loader *ld = mmt_calloc(1, sizeof *ld);
    if (!ld) return MMT_STATUS_OUT_OF_MEMORY;
    ld->opt = *o;
    ld->fn = fn;
    ld->ctx = ctx;
    ld->held = -1;
    /* synchronous: one buffer; threaded: depth in flight plus the one handed out */
    ld->n_slots = o->workers == 0 ? 1 : o->depth + 1;
    ld->buffers = mmt_calloc((size_t)ld->n_slots * (size_t)o->max_batch, (size_t)o->example_floats * sizeof(float));
    ld->slot_busy = mmt_calloc((size_t)ld->n_slots, sizeof *ld->slot_busy);
    if (!ld->buffers || !ld->slot_busy) {
        mmt_free(ld->buffers);
        mmt_free(ld->slot_busy);
        mmt_free(ld);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    pthread_mutex_init(&ld->lock, NULL);
    pthread_cond_init(&ld->work, NULL);
    pthread_cond_init(&ld->done, NULL);
    for (int64_t i = 0; i < o->workers; i++) {
        if (pthread_create(&ld->threads[i], NULL, worker_main, ld) != 0) break;
        ld->n_threads++;
    }
    if (ld->n_threads < o->workers) {
        int64_t got = ld->n_threads;
        mmt_loader_free(ld);
        return mmt_fail(MMT_STATUS_INTERNAL, "loader: could start only %lld of %lld worker threads", (long long)got,
                        (long long)o->workers);
    }
    *out = ld;
    return MMT_OK;
}

static void request_free(request *r) {
    if (!r) return;
    mmt_free(r->indices);
    mmt_free(r);
}

void mmt_loader_free(mmt_loader *ld) {
    if (!ld) return;
    pthread_mutex_lock(&ld->lock);
    ld->stop = 1;
    pthread_cond_broadcast(&ld->work);
    pthread_mutex_unlock(&ld->lock);
    for (int64_t i = 0; i < ld->n_threads; i++) pthread_join(ld->threads[i], NULL);
    while (ld->head) {
        request *r = ld->head;
        ld->head = r->next;
        request_free(r);
    }
    pthread_cond_destroy(&ld->work);
    pthread_cond_destroy(&ld->done);
    pthread_mutex_destroy(&ld->lock);
    mmt_free(ld->buffers);
    mmt_free(ld->slot_busy);
    mmt_free(ld);
}

mmt_status mmt_loader_submit(mmt_loader *ld, int64_t position, const int64_t *indices, int64_t n) {
    if (n < 1 || n > ld->opt.max_batch)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "loader: batch of %lld examples (1..%lld)", (long long)n,
                        (long long)ld->opt.max_batch);
    request *r = mmt_calloc(1, sizeof *r);
    int64_t *idx = mmt_malloc((size_t)n * sizeof *idx);
    if (!r || !idx) {
        mmt_free(r);
        mmt_free(idx);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    memcpy(idx, indices, (size_t)n * sizeof *idx);
    r->indices = idx;
    r->position = position;
    r->n = n;
    r->slot = -1;
    r->err_example = n;
    pthread_mutex_lock(&ld->lock);
    if (ld->tail) ld->tail->next = r;
    else ld->head = r;
    ld->tail = r;
    ld->pending++;
    pthread_cond_broadcast(&ld->work);
    pthread_mutex_unlock(&ld->lock);
    return MMT_OK;
}

int64_t mmt_loader_pending(mmt_loader *ld) {
    pthread_mutex_lock(&ld->lock);
    int64_t n = ld->pending;
    pthread_mutex_unlock(&ld->lock);
    return n;
}

/* Synchronous mode: the batch on the calling thread, stopping at the first failure. */
static mmt_status fill_here(mmt_loader *ld, request *r) {
    float *buf = slot_buffer(ld, 0);
    for (int64_t i = 0; i < r->n; i++)
        MMT_TRY(ld->fn(ld->ctx, r->indices[i], r->position + i, buf + (size_t)i * (size_t)ld->opt.example_floats));
    return MMT_OK;
}

mmt_status mmt_loader_next(mmt_loader *ld, const int64_t *indices, int64_t n, const float **pixels) {
    *pixels = NULL;
    pthread_mutex_lock(&ld->lock);
    if (ld->held >= 0) {
        ld->slot_busy[ld->held] = 0;
        ld->held = -1;
        pthread_cond_broadcast(&ld->work);
    }
    request *r = ld->head;
    if (!r || r->n != n || memcmp(r->indices, indices, (size_t)n * sizeof *indices) != 0) {
        pthread_mutex_unlock(&ld->lock);
        return mmt_fail(MMT_STATUS_INTERNAL, "loader: the batch asked for is not the next one submitted");
    }
    mmt_status s = MMT_OK;
    if (ld->n_threads == 0) {
        ld->head = r->next;
        if (!ld->head) ld->tail = NULL;
        ld->pending--;
        pthread_mutex_unlock(&ld->lock);
        s = fill_here(ld, r);
        if (s == MMT_OK) *pixels = slot_buffer(ld, 0);
        request_free(r);
        return s;
    }
    /* Slots go to requests in FIFO order and all are free or ahead of r once the held one is
     * released, so r (the head) gets one and the workers finish it: this wait ends. */
    while (r->slot < 0 || r->done < r->n) pthread_cond_wait(&ld->done, &ld->lock);
    ld->head = r->next;
    if (!ld->head) ld->tail = NULL;
    ld->pending--;
    ld->held = r->slot;
    pthread_mutex_unlock(&ld->lock);
    if (r->err_example < r->n) s = mmt_fail(r->err_status, "%s", r->err_message);
    else *pixels = slot_buffer(ld, r->slot);
    request_free(r);
    return s;
}
