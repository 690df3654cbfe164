/*
 * rng.h — splitmix64 (Steele, Lea and Flood 2014; Vigna's public-domain splitmix64.c), the one
 * generator behind mmtune's seeded streams (weight initialisation, synthetic data, held-out
 * splits). Integer only: the same seed gives the same numbers on every machine.
 */
#ifndef MMT_CORE_RNG_H
#define MMT_CORE_RNG_H

#include <stdint.h>

/* The finaliser: a bijective mix of 64 bits. */
static inline uint64_t mmt_splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* The next number of the stream whose state is *state. */
static inline uint64_t mmt_splitmix64(uint64_t *state) {
    *state += UINT64_C(0x9e3779b97f4a7c15);
    return mmt_splitmix64_mix(*state);
}

#endif
