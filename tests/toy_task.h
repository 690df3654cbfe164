/*
 * toy_task.h — the toy training task of the trainer's tests (test_trainer.c, test_replay.c,
 * test_ewc.c, test_hard_batches.c): one trained vector w of dim values and n examples x_i,
 *   loss = mean over the micro-batch of 0.5 ||w - x_i||^2,   gradient = w - mean_i x_i,
 * so that what the trainer does with the task can be checked in closed form.
 *
 * toy_task_init zeroes the task, sets x_i[d] = sin(1 + 7 i + 3 d) and w = 0 (a test changes
 * either afterwards), registers w as the one tensor "w" and fills an mmt_train_task with the
 * hooks below; save and load keep w in <dir>/w.bin, so that a resumed run continues from the
 * checkpoint's weights (toy_task_keep_nothing stands in for either where a test never resumes).
 * Values of x and w beyond n and dim stay 0.
 *
 * A test that records more (the micro-batches it saw, a second tensor) puts a toy_task first
 * in its own struct, so that the task's ctx points at both, and wraps the hooks it needs:
 *
 *     typedef struct toy { toy_task base; int64_t n_seen; } toy;
 *     static mmt_status toy_forward(void *ctx, uint64_t seed, double *loss) {
 *         ((toy *)ctx)->n_seen++;
 *         return toy_task_forward(ctx, seed, loss);
 *     }
 *     memset(&t, 0, sizeof t);
 *     toy_task_init(&t.base, &task, N_EX, DIM);
 *     task.forward_loss = toy_forward;
 *
 * Header-only, like check.h.
 */
#ifndef MMT_TESTS_TOY_TASK_H
#define MMT_TESTS_TOY_TASK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/status.h"
#include "nn/param.h"
#include "train/trainer.h"

#define TOY_MAX_EXAMPLES 32
#define TOY_MAX_DIM 8
#define TOY_MAX_BATCH 64

typedef struct toy_task {
    int64_t n, dim;
    float x[TOY_MAX_EXAMPLES][TOY_MAX_DIM];  // (n, dim)
    float w[TOY_MAX_DIM], g[TOY_MAX_DIM];    // (dim) the trained vector and its gradient
    int64_t batch[TOY_MAX_BATCH], nb;        /* the loaded micro-batch */
    mmt_nn_param params[2];                  /* w; a test may register a second tensor */
    int64_t n_params;
} toy_task;

static inline mmt_status toy_task_load_batch(void *ctx, const int64_t *idx, int64_t n) {
    toy_task *t = ctx;
    memcpy(t->batch, idx, (size_t)n * sizeof *idx);
    t->nb = n;
    return MMT_OK;
}

static inline mmt_status toy_task_forward(void *ctx, uint64_t seed, double *loss) {
    (void)seed;
    toy_task *t = ctx;
    double l = 0;
    for (int64_t i = 0; i < t->nb; i++)
        for (int64_t d = 0; d < t->dim; d++) l += 0.5 * pow(t->w[d] - t->x[t->batch[i]][d], 2);
    *loss = l / (double)t->nb;
    return MMT_OK;
}

static inline mmt_status toy_task_backward(void *ctx) {
    toy_task *t = ctx;
    for (int64_t d = 0; d < t->dim; d++) {
        double m = 0;
        for (int64_t i = 0; i < t->nb; i++) m += t->x[t->batch[i]][d];
        t->g[d] += (float)(t->w[d] - m / (double)t->nb);
    }
    return MMT_OK;
}

static inline const mmt_nn_param *toy_task_params(void *ctx, int64_t *n) {
    toy_task *t = ctx;
    *n = t->n_params;
    return t->params;
}

static inline mmt_status toy_task_save(void *ctx, const char *dir) {
    toy_task *t = ctx;
    char path[512];
    snprintf(path, sizeof path, "%s/w.bin", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return mmt_fail(MMT_STATUS_IO, "%s: cannot write", path);
    fwrite(t->w, sizeof(float), (size_t)t->dim, f);
    fclose(f);
    return MMT_OK;
}

static inline mmt_status toy_task_load(void *ctx, const char *dir) {
    toy_task *t = ctx;
    char path[512];
    snprintf(path, sizeof path, "%s/w.bin", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return mmt_fail(MMT_STATUS_IO, "%s: cannot read", path);
    size_t got = fread(t->w, sizeof(float), (size_t)t->dim, f);
    fclose(f);
    return got == (size_t)t->dim ? MMT_OK : mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: short", path);
}

/* A save or load that keeps nothing, for tests that never resume from what they save. */
static inline mmt_status toy_task_keep_nothing(void *ctx, const char *dir) {
    (void)ctx;
    (void)dir;
    return MMT_OK;
}

/* n examples of dim values (at most TOY_MAX_EXAMPLES and TOY_MAX_DIM). */
static inline void toy_task_init(toy_task *t, mmt_train_task *task, int64_t n, int64_t dim) {
    memset(t, 0, sizeof *t);
    t->n = n;
    t->dim = dim;
    for (int64_t i = 0; i < n; i++)
        for (int64_t d = 0; d < dim; d++) t->x[i][d] = (float)sin(1.0 + (double)i * 7.0 + (double)d * 3.0);
    t->params[0] = (mmt_nn_param){"w", t->w, t->g, 1, {dim}, dim, 0};
    t->n_params = 1;
    memset(task, 0, sizeof *task);
    task->ctx = t;
    task->n_examples = n;
    task->load_batch = toy_task_load_batch;
    task->forward_loss = toy_task_forward;
    task->backward = toy_task_backward;
    task->params = toy_task_params;
    task->save = toy_task_save;
    task->load = toy_task_load;
}

#endif
