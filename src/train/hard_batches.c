/* hard_batches.c — micro-batches of near neighbours (see hard_batches.h). */
#include "train/hard_batches.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "ops/ops.h"
#include "ops/scan.h"

typedef struct hard_state {
    const float *image, *text;
    int64_t n, D;
    const int64_t *seeded;
    int64_t cursor;         /* in seeded: everything before it is used */
    int64_t left;           /* examples not used yet */
    unsigned char *used;    /* owned (n) */
    float *near;            /* owned (n): nearness of the seed to every example */
    int64_t *best;          /* owned (max size) */
} hard_state;

static int64_t next_in_order(hard_state *h) {
    while (h->used[h->seeded[h->cursor]]) h->cursor++;
    int64_t e = h->seeded[h->cursor++];
    h->used[e] = 1;
    h->left--;
    return e;
}

/* near (n) = (image[e] . image[j] + text[e] . text[j]) / 2 for every j. */
static void nearness(const float *image, const float *text, int64_t n, int64_t D, int64_t e, float *near) {
    const mmt_ops *ops = mmt_ops_cpu();
    ops->gemm(0, 1, 1, n, D, 0.5f, image + e * D, D, image, D, 0.0f, near, n);
    ops->gemm(0, 1, 1, n, D, 0.5f, text + e * D, D, text, D, 1.0f, near, n);
}

/* One micro-batch of `size` into out. */
static void build_batch(hard_state *h, int64_t size, double ratio, int64_t *out) {
    int64_t seed = next_in_order(h), t = 0;
    out[t++] = seed;
    int64_t hard = (int64_t)llround(ratio * (double)size);
    int64_t k = (hard > 1 ? hard : 1) - 1;
    if (k > size - 1) k = size - 1;
    if (k > h->left) k = h->left;
    if (k > 0) {
        nearness(h->image, h->text, h->n, h->D, seed, h->near);
        for (int64_t j = 0; j < h->n; j++)
            if (h->used[j]) h->near[j] = -INFINITY;
        mmt_scan_best()->top_k(h->best, h->near, h->n, k);
        for (int64_t i = 0; i < k; i++) {
            h->used[h->best[i]] = 1;
            h->left--;
            out[t++] = h->best[i];
        }
    }
    while (t < size) out[t++] = next_in_order(h);
}

/* Mean nearness over the pairs of each batch of `list` cut by sizes, averaged over batches
 * of two or more. rows (max size, D) x 2 and sims (max size ^ 2) are scratch. */
static double in_batch_nearness(const float *image, const float *text, int64_t D, const int64_t *list,
                                const int64_t *sizes, int64_t g, float *rows_i, float *rows_t, float *sims) {
    const mmt_ops *ops = mmt_ops_cpu();
    double total = 0;
    int64_t batches = 0, at = 0;
    for (int64_t b = 0; b < g; at += sizes[b], b++) {
        int64_t m = sizes[b];
        if (m < 2) continue;
        for (int64_t i = 0; i < m; i++) {
            memcpy(rows_i + i * D, image + list[at + i] * D, (size_t)D * sizeof(float));
            memcpy(rows_t + i * D, text + list[at + i] * D, (size_t)D * sizeof(float));
        }
        ops->gemm(0, 1, m, m, D, 0.5f, rows_i, D, rows_i, D, 0.0f, sims, m); /* (m, m) */
        ops->gemm(0, 1, m, m, D, 0.5f, rows_t, D, rows_t, D, 1.0f, sims, m);
        double sum = 0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < m; j++)
                if (i != j) sum += sims[i * m + j];
        total += sum / (double)(m * (m - 1));
        batches++;
    }
    return batches ? total / (double)batches : 0.0;
}

static mmt_status batch_stats(const float *image, const float *text, int64_t D, const int64_t *seeded, const int64_t *out,
                              const int64_t *sizes, int64_t g, int64_t max_size, mmt_hard_batch_stats *stats) {
    float *rows_i = mmt_malloc((size_t)(max_size * D) * sizeof(float));
    float *rows_t = mmt_malloc((size_t)(max_size * D) * sizeof(float));
    float *sims = mmt_malloc((size_t)(max_size * max_size) * sizeof(float));
    mmt_status s = rows_i && rows_t && sims ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) {
        stats->hard_similarity = in_batch_nearness(image, text, D, out, sizes, g, rows_i, rows_t, sims);
        stats->plain_similarity = in_batch_nearness(image, text, D, seeded, sizes, g, rows_i, rows_t, sims);
    }
    mmt_free(rows_i);
    mmt_free(rows_t);
    mmt_free(sims);
    return s;
}

mmt_status mmt_hard_batches(const float *image, const float *text, int64_t n, int64_t D, const int64_t *seeded,
                            const int64_t *sizes, int64_t g, double ratio, int64_t *out, mmt_hard_batch_stats *stats) {
    if (n < 1 || D < 1 || g < 1 || !(ratio > 0 && ratio <= 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "hard batches: bad arguments (n %lld, D %lld, %lld batches, ratio %g)",
                        (long long)n, (long long)D, (long long)g, ratio);
    int64_t total = 0, max_size = 0;
    for (int64_t b = 0; b < g; b++) {
        if (sizes[b] < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "hard batches: batch %lld is empty", (long long)b);
        total += sizes[b];
        if (sizes[b] > max_size) max_size = sizes[b];
    }
    if (total != n)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "hard batches: the batch sizes add up to %lld, not %lld examples",
                        (long long)total, (long long)n);
    for (int64_t i = 0; i < n * D; i++) /* a NaN would rank below the used examples' -inf */
        if (!isfinite(image[i]) || !isfinite(text[i]))
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "hard batches: example %lld has a non-finite embedding",
                            (long long)(i / D));
    hard_state h = {image, text, n, D, seeded, 0, n, NULL, NULL, NULL};
    h.used = mmt_calloc((size_t)n, 1);
    h.near = mmt_malloc((size_t)n * sizeof(float));
    h.best = mmt_malloc((size_t)max_size * sizeof(int64_t));
    mmt_status s = h.used && h.near && h.best ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < n; i++)
        if (seeded[i] < 0 || seeded[i] >= n || h.used[seeded[i]]++)
            s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "hard batches: the order is not a permutation of 0..%lld", (long long)n - 1);
    if (s == MMT_OK) memset(h.used, 0, (size_t)n);
    for (int64_t b = 0, at = 0; s == MMT_OK && b < g; at += sizes[b], b++) build_batch(&h, sizes[b], ratio, out + at);
    if (s == MMT_OK && stats) s = batch_stats(image, text, D, seeded, out, sizes, g, max_size, stats);
    mmt_free(h.used);
    mmt_free(h.near);
    mmt_free(h.best);
    return s;
}
