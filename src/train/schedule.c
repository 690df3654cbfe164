/*
 * schedule.c — learning-rate multipliers matching transformers' lr_lambda functions.
 *
 * Reference: transformers/optimization.py (_get_constant_schedule_with_warmup_lr_lambda,
 * _get_linear_schedule_with_warmup_lr_lambda, _get_cosine_schedule_with_warmup_lr_lambda).
 * The expressions keep Python's order of operations and its int-then-float conversions, and
 * Python's max(0.0, x) (which keeps 0.0 unless x is greater), so results are bit-identical
 * (with -march=native, where GCC contracts a*b+c by default,
 * factor * (1 - min_lr_rate) + min_lr_rate becomes an fma and may differ by one double ulp).
 */
#include "train/schedule.h"

#include <math.h>
#include <string.h>

/* math.pi */
static const double schedule_pi = 3.141592653589793;

mmt_schedule mmt_schedule_make(mmt_schedule_kind kind, int64_t warmup_steps,
                               int64_t total_steps) {
    mmt_schedule s;
    s.kind = kind;
    s.warmup_steps = warmup_steps;
    s.total_steps = total_steps;
    s.num_cycles = 0.5;
    s.min_lr_rate = 0.0;
    return s;
}

mmt_status mmt_schedule_check(const mmt_schedule *s) {
    if (!s) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "schedule: NULL");
    if (s->kind != MMT_SCHEDULE_CONSTANT && s->kind != MMT_SCHEDULE_LINEAR &&
        s->kind != MMT_SCHEDULE_COSINE)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "schedule: unknown kind %d", (int)s->kind);
    if (s->warmup_steps < 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "schedule: warmup_steps %lld is negative",
                        (long long)s->warmup_steps);
    if (s->total_steps < 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "schedule: total_steps %lld is negative",
                        (long long)s->total_steps);
    if (!isfinite(s->num_cycles))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "schedule: num_cycles %g is not finite",
                        s->num_cycles);
    if (!(s->min_lr_rate >= 0.0 && s->min_lr_rate <= 1.0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "schedule: min_lr_rate %g is outside [0, 1]", s->min_lr_rate);
    return MMT_OK;
}

/* Python's max(0.0, x): x only when it is greater (a NaN or -0.0 gives 0.0). */
static double max_zero(double x) { return x > 0.0 ? x : 0.0; }

/* float(n) / float(max(1, d)) as the lambdas write it. */
static double ratio_at_least_one(int64_t n, int64_t d) {
    return (double)n / (double)(d > 1 ? d : 1);
}

double mmt_schedule_multiplier(const mmt_schedule *s, int64_t step) {
    int64_t warmup = s->warmup_steps;
    if (step < warmup) return ratio_at_least_one(step, warmup);
    switch (s->kind) {
    case MMT_SCHEDULE_CONSTANT:
        return 1.0;
    case MMT_SCHEDULE_LINEAR:
        return max_zero(ratio_at_least_one(s->total_steps - step, s->total_steps - warmup));
    case MMT_SCHEDULE_COSINE: {
        double progress = ratio_at_least_one(step - warmup, s->total_steps - warmup);
        double factor = 0.5 * (1.0 + cos(schedule_pi * s->num_cycles * 2.0 * progress));
        factor = factor * (1.0 - s->min_lr_rate) + s->min_lr_rate;
        return max_zero(factor);
    }
    }
    return 1.0;
}

static const struct {
    const char *name;
    mmt_schedule_kind kind;
} schedule_names[] = {
    {"constant", MMT_SCHEDULE_CONSTANT},
    {"constant_with_warmup", MMT_SCHEDULE_CONSTANT},
    {"linear", MMT_SCHEDULE_LINEAR},
    {"cosine", MMT_SCHEDULE_COSINE},
    {"cosine_with_min_lr", MMT_SCHEDULE_COSINE},
};

mmt_status mmt_schedule_kind_parse(const char *name, mmt_schedule_kind *out) {
    for (size_t i = 0; name && i < sizeof schedule_names / sizeof schedule_names[0]; i++) {
        if (strcmp(name, schedule_names[i].name) == 0) {
            *out = schedule_names[i].kind;
            return MMT_OK;
        }
    }
    return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                    "unknown lr schedule \"%s\" (expected constant, constant_with_warmup, "
                    "linear, cosine or cosine_with_min_lr)",
                    name ? name : "(null)");
}

const char *mmt_schedule_kind_name(mmt_schedule_kind kind) {
    switch (kind) {
    case MMT_SCHEDULE_CONSTANT: return "constant";
    case MMT_SCHEDULE_LINEAR: return "linear";
    case MMT_SCHEDULE_COSINE: return "cosine";
    }
    return "unknown";
}
