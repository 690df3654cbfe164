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

/* Ranks of each query q (n of them) against all keys. Without groups the correct key is key
 * q; with groups every key of q's group is, and the rank is that of the best of them. */
static mmt_status ranks_of(const float *queries, const float *keys, const int64_t *groups, int64_t n, int64_t d,
                           int64_t *ranks) {
    double *score = groups ? mmt_malloc((size_t)n * sizeof *score) : NULL;
    if (groups && !score) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t q = 0; q < n; q++) {
        const float *qv = queries + q * d;
        double own = dot(qv, keys + q * d, d);
        int64_t better = 0;
        if (!groups) {
            for (int64_t k = 0; k < n; k++)
                if (k != q && dot(qv, keys + k * d, d) > own) better++;
        } else {
            for (int64_t k = 0; k < n; k++) {
                score[k] = dot(qv, keys + k * d, d);
                if (groups[k] == groups[q] && score[k] > own) own = score[k];
            }
            for (int64_t k = 0; k < n; k++) better += groups[k] != groups[q] && score[k] > own;
        }
        ranks[q] = better + 1;
    }
    mmt_free(score);
    return MMT_OK;
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
    return mmt_retrieval_eval_grouped(img, txt, NULL, n, dim, out);
}

mmt_status mmt_retrieval_eval_grouped(const float *img, const float *txt, const int64_t *groups, int64_t n,
                                      int64_t dim, mmt_retrieval_metrics *out) {
    memset(out, 0, sizeof *out);
    if (n < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "retrieval evaluation needs at least one pair");
    int64_t *ranks = mmt_malloc((size_t)n * sizeof *ranks);
    if (!ranks) return MMT_STATUS_OUT_OF_MEMORY;
    out->n = n;
    mmt_status s = ranks_of(img, txt, groups, n, dim, ranks);
    if (s == MMT_OK) {
        summarize(ranks, n, &out->i2t_r1, &out->i2t_r5, &out->i2t_r10, &out->i2t_median_rank);
        s = ranks_of(txt, img, groups, n, dim, ranks);
    }
    if (s == MMT_OK) summarize(ranks, n, &out->t2i_r1, &out->t2i_r5, &out->t2i_r10, &out->t2i_median_rank);
    mmt_free(ranks);
    return s;
}
