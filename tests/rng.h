/*
 * rng.h — the tests' one random stream: splitmix64 (Steele, Lea, Flood 2014), the same
 * generator every test file used to carry its own copy of.
 *
 * A test seeds the stream once at the top of main (`rng_state = 0x...;`), and again wherever a
 * check needs the same draws twice (two runs that must agree bitwise); the seeds are the ones
 * each file's random inputs and tolerances were observed with. Header-only, like check.h.
 */
#ifndef MMT_TESTS_RNG_H
#define MMT_TESTS_RNG_H

#include <stdint.h>
#include <stdlib.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static inline uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1), 24 random bits. */
static inline float rng_uniform(void) {
    return (float)((double)(rng_next() >> 40) / (double)(1ull << 23) - 1.0);
}

/* Uniform in [0, 1), 24 random bits. */
static inline float rng_unit(void) {
    return (float)((double)(rng_next() >> 40) / (double)(1ull << 24));
}

/* n floats uniform in [-scale, scale), malloc'd (at least one element, so n = 0 is valid). */
static inline float *random_floats(int64_t n, float scale) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = rng_uniform() * scale;
    return p;
}

#endif
