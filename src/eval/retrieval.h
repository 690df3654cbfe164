/*
 * retrieval.h — image↔text retrieval metrics over paired embeddings.
 *
 * Image i and text i are a pair. For image→text, the rank of image i is 1 + the number of
 * texts whose similarity to it is strictly greater than its own text's (ties count in its
 * favour, so identical captions of two images do not penalise either); text→image the same
 * way round. recall@K is the fraction of queries with rank <= K, the median rank is the
 * lower median. Similarities are dot products of the (normalised) embeddings, in double.
 */
#ifndef MMT_EVAL_RETRIEVAL_H
#define MMT_EVAL_RETRIEVAL_H

#include <stdint.h>

#include "core/status.h"

typedef struct mmt_retrieval_metrics {
    int64_t n;
    double i2t_r1, i2t_r5, i2t_r10, i2t_median_rank;
    double t2i_r1, t2i_r5, t2i_r10, t2i_median_rank;
} mmt_retrieval_metrics;

mmt_status mmt_retrieval_eval(const float *img, const float *txt, int64_t n, int64_t dim,
                              mmt_retrieval_metrics *out);

/* Class-level retrieval (the recall@K of metric learning on Stanford Online Products / CUB):
 * pair i belongs to groups[i] (its class), and every item of the query's group is a correct
 * answer. A query's rank is 1 + the number of items of other groups scoring strictly higher
 * than its best-scoring correct item (its own pair included), so recall@K is the fraction of
 * queries with a same-class item among the top K. groups == NULL is mmt_retrieval_eval. */
mmt_status mmt_retrieval_eval_grouped(const float *img, const float *txt, const int64_t *groups, int64_t n,
                                      int64_t dim, mmt_retrieval_metrics *out);

#endif
