/* retrieval.c — recall@K and median rank (see retrieval.h). */
#include "eval/retrieval.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

static double dot(const float *a, const float *b, int64_t d) {
    double s = 0;
    for (int64_t k = 0; k < d; k++) s += (double)a[k] * b[k];
    return s;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Ranks of each query q (n of them) against all keys, the correct key being key q. */
static void ranks_of(const float *queries, const float *keys, int64_t n, int64_t d, int64_t *ranks) {
    for (int64_t q = 0; q < n; q++) {
        double own = dot(queries + q * d, keys + q * d, d);
        int64_t better = 0;
        for (int64_t k = 0; k < n; k++)
            if (k != q && dot(queries + q * d, keys + k * d, d) > own) better++;
        ranks[q] = better + 1;
    }
}

static void summarize(int64_t *ranks, int64_t n, double *r1, double *r5, double *r10, double *median) {
    int64_t c1 = 0, c5 = 0, c10 = 0;
    for (int64_t i = 0; i < n; i++) {
        c1 += ranks[i] <= 1;
        c5 += ranks[i] <= 5;
        c10 += ranks[i] <= 10;
    }
    *r1 = (double)c1 / (double)n;
    *r5 = (double)c5 / (double)n;
    *r10 = (double)c10 / (double)n;
    qsort(ranks, (size_t)n, sizeof *ranks, cmp_i64);
    *median = (double)ranks[(n - 1) / 2];
}

mmt_status mmt_retrieval_eval(const float *img, const float *txt, int64_t n, int64_t dim,
                              mmt_retrieval_metrics *out) {
    memset(out, 0, sizeof *out);
    if (n < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "retrieval evaluation needs at least one pair");
    int64_t *ranks = mmt_malloc((size_t)n * sizeof *ranks);
    if (!ranks) return MMT_STATUS_OUT_OF_MEMORY;
    out->n = n;
    ranks_of(img, txt, n, dim, ranks);
    summarize(ranks, n, &out->i2t_r1, &out->i2t_r5, &out->i2t_r10, &out->i2t_median_rank);
    ranks_of(txt, img, n, dim, ranks);
    summarize(ranks, n, &out->t2i_r1, &out->t2i_r5, &out->t2i_r10, &out->t2i_median_rank);
    mmt_free(ranks);
    return MMT_OK;
}
