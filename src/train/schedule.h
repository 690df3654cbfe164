/*
 * schedule.h — learning-rate schedules: a multiplier of the base learning rate per step.
 *
 * Each kind reproduces the lr_lambda of a transformers factory (transformers/optimization.py)
 * operation for operation, in double, so the values equal transformers' bit for bit on the
 * same libm:
 *
 *     constant  get_constant_schedule_with_warmup: step / max(1, warmup), then 1
 *     linear    get_linear_schedule_with_warmup: warmup, then down to 0 at total_steps
 *     cosine    get_cosine_schedule_with_warmup (min_lr_rate 0) and
 *               get_cosine_with_min_lr_schedule_with_warmup (min_lr_rate > 0): warmup, then
 *               a cosine over num_cycles periods from 1 down to min_lr_rate
 *
 * The step is the number of optimizer steps already taken (torch's LambdaLR.last_epoch when
 * scheduler.step() follows optimizer.step()), so the first update uses step 0:
 *
 *     mmt_adamw_step(opt, mmt_schedule_multiplier(&sched, opt->step));
 *
 * Like transformers, steps past total_steps are not clamped: linear stays at 0 and cosine
 * follows the cosine on (back up, with num_cycles 0.5).
 */
#ifndef MMT_TRAIN_SCHEDULE_H
#define MMT_TRAIN_SCHEDULE_H

#include <stdint.h>

#include "core/status.h"

typedef enum mmt_schedule_kind {
    MMT_SCHEDULE_CONSTANT = 0,
    MMT_SCHEDULE_LINEAR = 1,
    MMT_SCHEDULE_COSINE = 2
} mmt_schedule_kind;

typedef struct mmt_schedule {
    mmt_schedule_kind kind;
    int64_t warmup_steps;   /* >= 0; the multiplier rises linearly from 0 over these steps */
    int64_t total_steps;    /* >= 0; linear and cosine reach their end here (unused: constant) */
    double num_cycles;      /* cosine: cosine periods over the decay; transformers' 0.5 */
    double min_lr_rate;     /* cosine: floor as a fraction of the peak, in [0, 1]; 0 = none */
} mmt_schedule;

/* A schedule of the kind with transformers' defaults (num_cycles 0.5, min_lr_rate 0). */
mmt_schedule mmt_schedule_make(mmt_schedule_kind kind, int64_t warmup_steps,
                               int64_t total_steps);

/* INVALID_ARGUMENT, naming the field, for a negative step count, an unknown kind, a
 * num_cycles that is not finite or a min_lr_rate outside [0, 1]. */
mmt_status mmt_schedule_check(const mmt_schedule *schedule);

/* The multiplier at a step (>= 0) of a schedule that passed mmt_schedule_check. */
double mmt_schedule_multiplier(const mmt_schedule *schedule, int64_t step);

/*
 * Reads a kind by its transformers SchedulerType name: "constant" or
 * "constant_with_warmup", "linear", "cosine", "cosine_with_min_lr" (then set min_lr_rate).
 * mmtune's constant kind always honours warmup_steps, so "constant" here means transformers'
 * "constant_with_warmup"; give warmup 0 for transformers' plain "constant".
 * INVALID_ARGUMENT naming the value for anything else.
 */
mmt_status mmt_schedule_kind_parse(const char *name, mmt_schedule_kind *out);
const char *mmt_schedule_kind_name(mmt_schedule_kind kind);

#endif
