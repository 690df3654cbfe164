/*
 * sampler.h — drawing tokens from processed scores with mmtune's own seeded generator.
 *
 * transformers draws with torch.multinomial(softmax(scores)), whose stream we cannot
 * reproduce; this draws from the same distribution with splitmix64 (core/rng.h), one stream
 * per output row seeded from (seed, row), so a row's text depends only on the seed, its row
 * index and its scores: not on the machine, the thread count or which other rows are in the
 * batch. A token whose score is -inf has probability 0 and is never drawn.
 */
#ifndef MMT_GEN_SAMPLER_H
#define MMT_GEN_SAMPLER_H

#include <stdint.h>

#include "core/status.h"

/* The stream of output row `row` under `seed`. */
uint64_t gen_sampler_stream(uint64_t seed, int64_t row);

/* A uniform double in [0, 1) (53 bits) from the stream *state. */
double gen_sampler_uniform(uint64_t *state);

/* Draws one index of scores (n) with probability softmax(scores); probs (n) is scratch.
 * INVALID_ARGUMENT when that is not a distribution: every score -inf, or one +inf (torch's
 * softmax gives NaN and multinomial fails there too). A NaN score counts as -inf. */
mmt_status gen_sample(const float *scores, int64_t n, uint64_t *state, double *probs, int64_t *out);

/* Draws k distinct indices without replacement (torch.multinomial(p, k), replacement False),
 * in draw order. probs (n) is scratch. INVALID_ARGUMENT when fewer than k scores are finite. */
mmt_status gen_sample_distinct(const float *scores, int64_t n, int64_t k, uint64_t *state, double *probs,
                               int64_t *out);

#endif
