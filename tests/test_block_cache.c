/*
 * test_block_cache.c — decoding with a KV cache (nn/block.h mmt_kv_cache) gives what the
 * block gives on the whole sequence at once.
 *
 * A causal pre-LN block with random weights (C 16, 4 heads, MLP 40, GELU), with and without
 * 3 prefix rows, B 3 sequences of 9 positions: the whole sequence in one forward against the
 * same sequence fed as 4 positions and then one at a time through a cache. Outputs agree to
 * 2e-5 absolute (inputs and weights of size ~1: the two paths sum the same products with
 * different kernels and blockings, so they differ by float rounding only). Both op tables
 * (the reference and the CPU's fastest) are checked. Also: a full cache, a training forward
 * with a cache and an empty cache are refused with one-line errors.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/arena.h"
#include "nn/block.h"
#include "ops/ops.h"
#include "rng.h"

enum { C = 16, H = 4, I = 40, B = 3, T = 9, V = 3, L = 2 };

typedef struct block_data {
    float *w[12], *ln[4], *prefix;
    mmt_block_weights bw;
    mmt_block_config bc;
} block_data;

static void data_make(block_data *d) {
    int64_t sizes[12] = {C * C, C, C * C, C, C * C, C, C * C, C, I * C, I, C * I, C};
    for (int j = 0; j < 12; j++) d->w[j] = random_floats(sizes[j], 0.3f);
    for (int j = 0; j < 4; j++) d->ln[j] = random_floats(C, 0.2f);
    for (int64_t j = 0; j < C; j++) d->ln[0][j] += 1.0f, d->ln[2][j] += 1.0f;
    d->prefix = random_floats(V * L * 2 * C, 1.0f); /* PEFT's layout: this block is layer 1 of L */
    d->bw = (mmt_block_weights){d->w[0], d->w[1], d->w[2], d->w[3], d->w[4], d->w[5],  d->w[6],
                                d->w[7], d->w[8], d->w[9], d->w[10], d->w[11], d->ln[0], d->ln[1],
                                d->ln[2], d->ln[3], {0}, {0}};
    d->bc = (mmt_block_config){.hidden = C, .intermediate = I, .heads = H, .eps = 1e-5f, .act = MMT_BLOCK_GELU, .causal = 1};
}

static void data_free(block_data *d) {
    for (int j = 0; j < 12; j++) free(d->w[j]);
    for (int j = 0; j < 4; j++) free(d->ln[j]);
    free(d->prefix);
}

static void block_make(mmt_block *y, const block_data *d, int with_prefix) {
    nn_block_init(y, &d->bw, C, I);
    if (with_prefix) {
        y->n_prefix = V;
        y->prefix_stride = L * 2 * C;
        y->prefix = d->prefix + 2 * C; /* layer 1's key and value rows */
    }
}

/* Copies positions [t0, t0 + n) of every sequence of x (B, T, C) into out (B, n, C). */
static void take(float *out, const float *x, int64_t t0, int64_t n) {
    for (int64_t b = 0; b < B; b++) memcpy(out + b * n * C, x + (b * T + t0) * C, (size_t)(n * C) * sizeof(float));
}

static void check_cached_equals_whole(const mmt_ops *ops, int with_prefix) {
    block_data d;
    data_make(&d);
    float *x = random_floats(B * T * C, 1.0f);
    float whole[B * T * C], step_out[B * T * C], part_in[B * T * C], part_out[B * T * C];
    mmt_arena ar;
    mmt_arena_init(&ar, (size_t)1 << 16);
    mmt_block y;
    block_make(&y, &d, with_prefix);
    CHECK_OK(nn_block_forward(&y, &d.bc, ops, &ar, x, whole, B, T, 0, 0, 0));

    mmt_kv_cache cache;
    CHECK_OK(nn_kv_cache_init(&cache, &ar, B, T + V, C));
    block_make(&y, &d, with_prefix);
    y.cache = &cache;
    int64_t t0 = 0, chunk = 4;
    while (t0 < T) {
        take(part_in, x, t0, chunk);
        mmt_arena_mark mark = mmt_arena_get_mark(&ar);
        CHECK_OK(nn_block_forward(&y, &d.bc, ops, &ar, part_in, part_out, B, chunk, 0, 0, 0));
        mmt_arena_rewind(&ar, mark);
        for (int64_t b = 0; b < B; b++)
            memcpy(step_out + (b * T + t0) * C, part_out + b * chunk * C, (size_t)(chunk * C) * sizeof(float));
        t0 += chunk;
        chunk = 1;
    }
    CHECK(cache.len == T + (with_prefix ? V : 0));
    double worst = 0;
    for (int64_t i = 0; i < B * T * C; i++) worst = fmax(worst, fabs((double)whole[i] - step_out[i]));
    CHECK_MSG(worst <= 2e-5, "%s, prefix %d: cached decoding differs from the whole sequence by %.3g", ops->name,
              with_prefix, worst);

    /* the cache is full now (without a prefix it has V spare rows: fill them first) */
    if (!with_prefix)
        for (int r = 0; r < V; r++) CHECK_OK(nn_block_forward(&y, &d.bc, ops, &ar, part_in, part_out, B, 1, 0, 0, 0));
    CHECK_FAILS(nn_block_forward(&y, &d.bc, ops, &ar, part_in, part_out, B, 1, 0, 0, 0), MMT_STATUS_INVALID_ARGUMENT,
                "KV cache full");
    CHECK_FAILS(nn_block_forward(&y, &d.bc, ops, &ar, part_in, part_out, B, 1, 0, 0, 1), MMT_STATUS_INVALID_ARGUMENT,
                "does not train");
    mmt_arena_free(&ar);
    free(x);
    data_free(&d);
}

static void test_cached_equals_whole(void) {
    const mmt_ops *tables[2] = {mmt_ops_ref(), mmt_ops_cpu()};
    for (int k = 0; k < 2; k++)
        for (int p = 0; p < 2; p++) check_cached_equals_whole(tables[k], p);
}

static void test_bad_cache(void) {
    mmt_arena ar;
    mmt_arena_init(&ar, (size_t)1 << 12);
    mmt_kv_cache cache;
    CHECK_FAILS(nn_kv_cache_init(&cache, &ar, B, 0, C), MMT_STATUS_INVALID_ARGUMENT, "KV cache needs");
    CHECK_FAILS(nn_kv_cache_init(&cache, &ar, 0, 4, C), MMT_STATUS_INVALID_ARGUMENT, "KV cache needs");
    mmt_arena_free(&ar);
}

int main(void) {
    rng_state = 0x6b7663616368650aull; /* this file's stream of random inputs */
    RUN(test_cached_equals_whole);
    RUN(test_bad_cache);
    return check_summary();
}
