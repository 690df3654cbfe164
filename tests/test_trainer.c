/*
 * test_trainer.c — the training loop on a toy task with a closed-form gradient, so that the
 * loop's own arithmetic can be checked exactly:
 *   loss = mean over the batch of 0.5 ||w - x_i||^2, gradient = w - mean_i x_i.
 * Gradient accumulation averages micro-batch gradients, so batch 4 x 1, 2 x 2 and 1 x 4 make
 * the same optimizer steps (the same examples in the same order; the means agree to float
 * rounding: 1e-6); a NaN in the data stops the run with the step and tensor named; the
 * schedule and per-group learning rates reach the optimizer (a factor-0 group stays put).
 */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "core/alloc.h"
#include "toy_task.h"
#include "train/trainer.h"

#define DIM 5
#define N_EX 16

/* The toy task with a second tensor, "frozen_by_factor": loss + 0.5 ||w2||^2, its gradient w2;
 * save counts its calls and writes nothing. */
typedef struct toy {
    toy_task base;
    float w2[2], g2[2];
    int saves;
} toy;

static mmt_status toy_forward(void *ctx, uint64_t seed, double *loss) {
    toy *t = ctx;
    MMT_TRY(toy_task_forward(&t->base, seed, loss));
    *loss += 0.5 * ((double)t->w2[0] * t->w2[0] + (double)t->w2[1] * t->w2[1]);
    return MMT_OK;
}

static mmt_status toy_backward(void *ctx) {
    toy *t = ctx;
    MMT_TRY(toy_task_backward(&t->base));
    t->g2[0] += t->w2[0];
    t->g2[1] += t->w2[1];
    return MMT_OK;
}

static mmt_status toy_save(void *ctx, const char *dir) {
    (void)dir;
    ((toy *)ctx)->saves++;
    return MMT_OK;
}

static void toy_init(toy *t, mmt_train_task *task) {
    memset(t, 0, sizeof *t);
    toy_task_init(&t->base, task, N_EX, DIM);
    for (int d = 0; d < DIM; d++) t->base.w[d] = 0.5f;
    t->w2[0] = 1.0f, t->w2[1] = -2.0f;
    t->base.params[1] = (mmt_nn_param){"frozen_by_factor", t->w2, t->g2, 1, {2}, 2, 0};
    t->base.n_params = 2;
    task->forward_loss = toy_forward;
    task->backward = toy_backward;
    task->save = toy_save;
    task->load = toy_task_keep_nothing;
}

static char dir[128];

static void run_toy(int64_t batch, int64_t accum, float *w_out, float *w2_out) {
    toy t;
    mmt_train_task task;
    toy_init(&t, &task);
    mmt_train_settings s;
    mmt_train_settings_default(&s);
    char out[256];
    snprintf(out, sizeof out, "%s/run_%lld_%lld", dir, (long long)batch, (long long)accum);
    s.out = out;
    s.steps = 6;
    s.batch_size = batch;
    s.grad_accum = accum;
    s.lr = 0.1;
    s.quiet = 1;
    s.max_grad_norm = 0;
    s.weight_decay = 0;
    s.warmup_steps = 2;
    s.lr_scales = "frozen_by=0";
    mmt_train_result r;
    CHECK_MSG(mmt_train_run(&task, &s, &r) == MMT_OK, "%s", mmt_last_error());
    CHECK(r.steps_done == 6 && t.saves == 2); /* the final checkpoint and adapter/ */
    memcpy(w_out, t.base.w, DIM * sizeof *w_out);
    memcpy(w2_out, t.w2, sizeof t.w2);
}

static void test_accumulation_matches_larger_batches(void) {
    float w[3][DIM], w2[3][2];
    run_toy(4, 1, w[0], w2[0]);
    run_toy(2, 2, w[1], w2[1]);
    run_toy(1, 4, w[2], w2[2]);
    for (int k = 1; k < 3; k++)
        for (int d = 0; d < DIM; d++) CHECK_NEAR(w[k][d], w[0][d], 1e-6);
    for (int d = 0; d < DIM; d++) CHECK(fabsf(w[0][d] - 0.5f) > 1e-3); /* it did move */
    for (int k = 0; k < 3; k++) CHECK(w2[k][0] == 1.0f && w2[k][1] == -2.0f); /* factor 0 */
}

static void test_nan_stops_with_the_step(void) {
    toy t;
    mmt_train_task task;
    toy_init(&t, &task);
    t.base.x[3][2] = NAN;
    mmt_train_settings s;
    mmt_train_settings_default(&s);
    char out[256];
    snprintf(out, sizeof out, "%s/nan", dir);
    s.out = out;
    s.steps = 8;
    s.batch_size = 4;
    s.quiet = 1;
    mmt_train_result r;
    CHECK(mmt_train_run(&task, &s, &r) != MMT_OK);
    CHECK_MSG(strstr(mmt_last_error(), "step ") && strstr(mmt_last_error(), "training stopped"), "%s", mmt_last_error());
}

static void test_bad_settings(void) {
    toy t;
    mmt_train_task task;
    toy_init(&t, &task);
    mmt_train_settings s;
    mmt_train_settings_default(&s);
    char out[256];
    snprintf(out, sizeof out, "%s/bad", dir);
    s.out = out;
    s.quiet = 1;
    mmt_train_result r;
    s.batch_size = N_EX + 1;
    CHECK(mmt_train_run(&task, &s, &r) == MMT_STATUS_INVALID_ARGUMENT);
    s.batch_size = 4;
    s.lr_scales = "w=abc";
    CHECK(mmt_train_run(&task, &s, &r) == MMT_STATUS_INVALID_ARGUMENT);
    s.lr_scales = NULL;
    s.lr = -1;
    CHECK(mmt_train_run(&task, &s, &r) == MMT_STATUS_INVALID_ARGUMENT);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/mmt_trainer_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    RUN(test_accumulation_matches_larger_batches);
    RUN(test_nan_stops_with_the_step);
    RUN(test_bad_settings);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return check_summary();
}
