/* sampler.c — seeded draws from softmax(scores) (see sampler.h). */
#include "gen/sampler.h"

#include <math.h>

#include "core/rng.h"

uint64_t gen_sampler_stream(uint64_t seed, int64_t row) {
    return mmt_splitmix64_mix(seed ^ mmt_splitmix64_mix((uint64_t)row + UINT64_C(0x632be59bd9b4e019)));
}

double gen_sampler_uniform(uint64_t *state) {
    return (double)(mmt_splitmix64(state) >> 11) * 0x1.0p-53;
}

/* probs (n) = exp(scores - max), 0 where a score is -inf (or NaN), all 0 when the max is not
 * finite (torch's softmax gives NaN there and multinomial refuses it); the count of non-zero
 * ones in *n_live and their sum in *total. */
static void weights(const float *scores, int64_t n, double *probs, int64_t *n_live, double *total) {
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (scores[i] > max) max = scores[i];
    *n_live = 0, *total = 0;
    for (int64_t i = 0; i < n; i++) {
        double w = isfinite(max) ? exp((double)scores[i] - (double)max) : 0;
        probs[i] = w > 0 ? w : 0;
        *n_live += probs[i] > 0;
        *total += probs[i];
    }
}

/* The first index whose cumulative weight passes u * total; never one of weight 0. */
static int64_t pick(const double *probs, int64_t n, double total, double u) {
    double target = u * total, cumulative = 0;
    int64_t last = -1;
    for (int64_t i = 0; i < n; i++) {
        if (probs[i] <= 0) continue;
        cumulative += probs[i];
        last = i;
        if (cumulative > target) return i;
    }
    return last; /* rounding left the target at the very end */
}

mmt_status gen_sample(const float *scores, int64_t n, uint64_t *state, double *probs, int64_t *out) {
    int64_t live;
    double total;
    weights(scores, n, probs, &live, &total);
    if (live < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "sampling: no token has a finite probability (every score is -inf, or one is +inf)");
    *out = pick(probs, n, total, gen_sampler_uniform(state));
    return MMT_OK;
}

mmt_status gen_sample_distinct(const float *scores, int64_t n, int64_t k, uint64_t *state, double *probs,
                               int64_t *out) {
    int64_t live;
    double total;
    weights(scores, n, probs, &live, &total);
    if (live < k)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "beam sampling: %lld candidates to draw but only %lld tokens possible",
                        (long long)k, (long long)live);
    for (int64_t j = 0; j < k; j++) {
        out[j] = pick(probs, n, total, gen_sampler_uniform(state));
        probs[out[j]] = 0;
        total = 0; /* summed again rather than subtracted, so no rounding drift builds up */
        for (int64_t i = 0; i < n; i++) total += probs[i];
    }
    return MMT_OK;
}
