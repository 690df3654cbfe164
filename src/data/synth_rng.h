/*
 * synth_rng.h — the synthetic generator's random numbers: splitmix64 (Steele, Lea, Flood,
 * "Fast splittable pseudorandom number generators", 2014; the constants of Vigna's public
 * domain splitmix64.c). Integer only, so the same seed gives the same stream everywhere.
 */
#ifndef MMT_DATA_SYNTH_RNG_H
#define MMT_DATA_SYNTH_RNG_H

#include <stdint.h>

#include "core/rng.h"

typedef struct synth_rng {
    uint64_t state;
} synth_rng;

static inline uint64_t synth_mix(uint64_t z) { return mmt_splitmix64_mix(z); }

static inline uint64_t synth_next(synth_rng *r) { return mmt_splitmix64(&r->state); }

/* Uniform in [0, n) for n >= 1 (multiply-high of the top 32 bits; n is always small here). */
static inline int64_t synth_below(synth_rng *r, int64_t n) {
    return (int64_t)(((synth_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* Uniform in [lo, hi]. */
static inline int64_t synth_range(synth_rng *r, int64_t lo, int64_t hi) { return lo + synth_below(r, hi - lo + 1); }

#endif
