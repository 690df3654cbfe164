/* batcher.c — dynamic batching on one worker thread (see batcher.h). */
#include "serve/batcher.h"

#include <math.h>
#include <pthread.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"

struct mmt_batcher {
    mmt_batcher_options opt;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    mmt_batch_job *head, *tail;
    int64_t rows, jobs; /* queued */
    int stopping;
    mmt_batch_job **batch; /* the worker's: jobs of the batch being formed */
    int64_t batch_cap;
};

/* pthread_cond_timedwait until the monotonic-clock time `until` (mmt_now_seconds). */
static void wait_until(mmt_batcher *b, double until) {
    double left = until - mmt_now_seconds();
    if (left <= 0) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double whole = floor(left);
    ts.tv_sec += (time_t)whole;
    ts.tv_nsec += (long)((left - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&b->cv, &b->mu, &ts);
}

static mmt_batch_job *pop(mmt_batcher *b) {
    mmt_batch_job *j = b->head;
    b->head = j->next;
    if (!b->head) b->tail = NULL;
    b->rows -= j->rows;
    b->jobs--;
    j->next = NULL;
    return j;
}

static void *worker(void *arg) {
    mmt_batcher *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->head && !b->stopping) pthread_cond_wait(&b->cv, &b->mu);
        if (!b->head) break; /* stopping and drained */
        double now = mmt_now_seconds(), due = b->head->enqueued_s + b->opt.max_wait_s;
        int all_in = b->opt.clients && b->jobs >= b->opt.clients(b->opt.user);
        if (b->rows < b->opt.max_batch && now < due && !b->stopping && !all_in) {
            wait_until(b, due);
            continue;
        }
        /* form the batch: whole jobs, oldest first, while they fit; expired ones aside */
        int64_t n = 0, rows = 0, n_expired = 0;
        mmt_batch_job *expired = NULL;
        while (b->head && (n == 0 || rows + b->head->rows <= b->opt.max_batch) && n < b->batch_cap) {
            mmt_batch_job *j = pop(b);
            if (b->opt.expire && j->deadline_s > 0 && now > j->deadline_s) {
                j->next = expired, expired = j, n_expired++;
                continue;
            }
            b->batch[n++] = j;
            rows += j->rows;
        }
        pthread_mutex_unlock(&b->mu);
        while (expired) {
            mmt_batch_job *j = expired;
            expired = j->next;
            j->next = NULL;
            b->opt.expire(b->opt.user, j);
        }
        if (n) b->opt.run(b->opt.user, b->batch, n, rows);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

mmt_status mmt_batcher_start(const mmt_batcher_options *o, mmt_batcher **out) {
    *out = NULL;
    if (!o->run || o->max_batch < 1 || !(o->max_wait_s >= 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "batcher: needs a runner, max_batch >= 1 and max_wait >= 0");
    mmt_batcher *b = mmt_calloc(1, sizeof *b);
    if (!b) return MMT_STATUS_OUT_OF_MEMORY;
    b->opt = *o;
    b->batch_cap = o->max_batch;
    if (!(b->batch = mmt_calloc((size_t)b->batch_cap, sizeof *b->batch))) {
        mmt_free(b);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&b->mu, NULL);
    if (pthread_create(&b->thread, NULL, worker, b) != 0) {
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        mmt_free(b->batch);
        mmt_free(b);
        return mmt_fail(MMT_STATUS_INTERNAL, "batcher: cannot start its thread");
    }
    *out = b;
    return MMT_OK;
}

int mmt_batcher_submit(mmt_batcher *b, mmt_batch_job *job) {
    job->next = NULL;
    job->enqueued_s = mmt_now_seconds();
    if (job->rows < 1) job->rows = 1;
    pthread_mutex_lock(&b->mu);
    if (b->stopping) {
        pthread_mutex_unlock(&b->mu);
        return 0;
    }
    if (b->tail) b->tail->next = job;
    else b->head = job;
    b->tail = job;
    b->rows += job->rows;
    b->jobs++;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return 1;
}

int64_t mmt_batcher_depth(mmt_batcher *b) {
    pthread_mutex_lock(&b->mu);
    int64_t r = b->rows;
    pthread_mutex_unlock(&b->mu);
    return r;
}

void mmt_batcher_stop(mmt_batcher *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stopping = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    mmt_free(b->batch);
    mmt_free(b);
}
