/* replay.c — the replay part of each micro-batch (see replay.h). */
#include "train/replay.h"

#include <math.h>

static uint64_t mix(uint64_t a, uint64_t b) { /* the trainer's splitmix64 combination */
    uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int64_t mmt_replay_per_batch(double ratio, int64_t batch) { return (int64_t)llround(ratio * (double)batch); }

/* A permutation of [0, 4^h) keyed by key: four Feistel rounds on two h-bit halves. */
static uint64_t feistel(uint64_t x, int h, uint64_t key) {
    uint64_t mask = (1ull << h) - 1, left = x >> h, right = x & mask;
    for (uint64_t round = 0; round < 4; round++) {
        uint64_t next = left ^ (mix(key, (right << 2) | round) & mask);
        left = right;
        right = next;
    }
    return (left << h) | right;
}

int64_t mmt_replay_at(const mmt_replay *r, int64_t q) {
    int64_t e = q / r->n;
    uint64_t key = mix(mix(r->seed, 0x7265706c6179ull /* "replay" */), (uint64_t)e);
    int h = 1;
    while ((1ull << (2 * h)) < (uint64_t)r->n) h++;
    uint64_t x = (uint64_t)(q % r->n);
    do x = feistel(x, h, key); /* cycle walking: at most a few rounds, as 4^h < 4 n */
    while (x >= (uint64_t)r->n);
    return r->first + (int64_t)x;
}

void mmt_replay_fill(const mmt_replay *r, int64_t micro, int64_t *out) {
    for (int64_t j = 0; j < r->per_batch; j++) out[j] = mmt_replay_at(r, micro * r->per_batch + j);
}
