/*
 * hard_batches.h — micro-batches with hard negatives (`train --sampling hard`; docs/curation.md).
 *
 * A contrastive batch teaches most when its pairs are easy to confuse: the loss of a pair
 * against its batch-mates is large only when some of them are near it. Given every training
 * example's embeddings under the current model, an epoch's seeded order and the sizes of the
 * micro-batches it is cut into, each micro-batch is built as
 *     the seed: the first example of the seeded order not used yet;
 *     its h nearest examples not used yet, h + 1 = max(1, round(ratio x size)), capped at
 *     the size and at what is left;
 *     the rest: the next examples of the seeded order not used yet.
 * Nearness is the mean of the image-image and the text-text cosine of two examples, so a
 * neighbour is hard for both directions of the loss (its image near the seed's image, its
 * caption near the seed's caption). Ties go to the lower example index, so the result is a
 * pure function of the embeddings, the order, the sizes and the ratio. Every example is used
 * exactly once: out is a permutation of seeded.
 *
 * The nearest examples of each seed come from one gemm of the seed against all n (ops.h,
 * mmt_ops_cpu) and a top-k (ops/scan.h): (n / batch) x 2nD multiply-adds per epoch, a few
 * seconds for 50,000 examples of width 512 next to embedding them.
 *
 * The statistic stats reports is the mean cosine (the same nearness) over the pairs of
 * examples sharing a micro-batch, averaged over micro-batches of at least two: for the hard
 * batches built, and for the plain ones (the seeded order cut by the same sizes).
 */
#ifndef MMT_TRAIN_HARD_BATCHES_H
#define MMT_TRAIN_HARD_BATCHES_H

#include <stdint.h>

#include "core/status.h"

typedef struct mmt_hard_batch_stats {
    double hard_similarity;  /* mean in-batch nearness of the batches built */
    double plain_similarity; /* the same for the seeded order cut by the same sizes */
} mmt_hard_batch_stats;

/* image, text: (n, D) normalised embeddings; seeded: a permutation of 0..n-1; sizes[0..g),
 * each >= 1, summing to n; ratio in (0, 1]. out (n): the examples, micro-batch after
 * micro-batch. stats may be NULL. */
mmt_status mmt_hard_batches(const float *image, const float *text, int64_t n, int64_t D, const int64_t *seeded,
                            const int64_t *sizes, int64_t g, double ratio, int64_t *out, mmt_hard_batch_stats *stats);

#endif
