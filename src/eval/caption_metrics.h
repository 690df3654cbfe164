/*
 * caption_metrics.h — CIDEr-D, BLEU-1..4 and ROUGE-L of generated captions, computed as
 * pycocoevalcap 1.2 (the COCO caption evaluation code) computes them.
 *
 * Usage:
 *     const char *refs0[] = {"A dog runs on the beach.", "a brown dog running"};
 *     mmt_caption_item items[] = {{"a dog running on a beach", refs0, 2}, ...};
 *     mmt_caption_metrics corpus, per_image[N];
 *     mmt_status s = mmt_caption_scores(items, N, &corpus, per_image); // per_image may be NULL
 *
 * What is reproduced (the reference is COCOEvalCap.evaluate() minus METEOR and SPICE):
 *   - Tokenization: the references of all images, in order, form one batch and the
 *     candidates another, each tokenized as pycocoevalcap's PTBTokenizer does it (Stanford
 *     PTBTokenizer -preserveLines -lowerCase, then its punctuation list removed); see
 *     ptb_tokenize.h for the emulation and its limits. mmt_caption_scores_tokenized skips
 *     this step for captions that are already tokenized (space-separated tokens).
 *   - BLEU-1..4 (bleu/bleu_scorer.py, option "closest"): corpus BLEU from the summed
 *     clipped n-gram counts and lengths, the brevity penalty from the reference length
 *     closest to each candidate (ties: the shorter); the small/tiny smoothing constants
 *     1e-9 and 1e-15. corpus.bleu is what COCOEvalCap reports; per_image[i].bleu is the
 *     scorer's per-image list (sentence BLEU with the same smoothing).
 *   - CIDEr-D (cider/cider_scorer.py, n = 4, sigma = 6): tf-idf n-gram vectors with document
 *     frequencies taken from the references of this corpus and log(number of images) as
 *     the log reference count; the candidate's weights clipped by the reference's; the
 *     Gaussian length penalty; the mean over n = 1..4 divided by the number of references,
 *     times 10. As in pycocoevalcap the "length" in the penalty is the number of bigrams, not
 *     of words. corpus.cider_d is the mean of the per-image scores.
 *   - ROUGE-L (rouge/rouge.py, beta = 1.2): LCS-based F-measure against the reference with
 *     the best precision and the one with the best recall (taken separately); mean over
 *     images. Tokens are split on single spaces, as rouge.py does.
 * Edge cases behave as in pycocoevalcap: an empty candidate scores 0 everywhere (BLEU's
 * brevity penalty is then exp(1 - 1e6)); an order with no n-gram to count contributes
 * (0 + 1e-15) / (0 + 1e-9) = 1e-6 to the product, so a matching one-word candidate gets
 * per-image BLEU-2..4 of about 1e-3, 1e-4 and 3e-5 (before the brevity penalty), not 0.
 * A corpus of one image has CIDEr-D 0 (its idf weights are log 1 - log 1 = 0).
 * One difference: if no reference of the corpus has a single token left after
 * tokenization, pycocoevalcap's CIDEr raises (max() of an empty sequence); here it is 0.
 *
 * Errors: NULL arguments, n < 1, an image without references, a NULL caption or invalid
 * UTF-8 give MMT_STATUS_INVALID_ARGUMENT / MMT_STATUS_BAD_FORMAT with a one-line message
 * naming the image. Nothing is printed; the outputs are zeroed on failure.
 * Cost: O(total caption length) plus an LCS per (candidate, reference) pair; one call per
 * corpus (CIDEr-D's document frequencies depend on the whole corpus).
 */
#ifndef MMT_EVAL_CAPTION_METRICS_H
#define MMT_EVAL_CAPTION_METRICS_H

#include <stdint.h>

#include "core/status.h"

/* One image: a generated caption and its ground-truth captions (UTF-8). */
typedef struct mmt_caption_item {
    const char *candidate;
    const char *const *references; /* n_references of them, at least one */
    int64_t n_references;
} mmt_caption_item;

typedef struct mmt_caption_metrics {
    double cider_d;
    double bleu[4]; /* BLEU-1, BLEU-2, BLEU-3, BLEU-4 */
    double rouge_l;
} mmt_caption_metrics;

/* Scores the corpus items[0..n). *corpus gets the corpus-level scores; per_image (NULL or
 * room for n) gets each image's scores. */
mmt_status mmt_caption_scores(const mmt_caption_item *items, int64_t n, mmt_caption_metrics *corpus,
                              mmt_caption_metrics *per_image);

/* The same without the PTB tokenization step: captions are taken as already tokenized
 * (what pycocoevalcap's PTBTokenizer.tokenize returns: tokens joined by spaces). */
mmt_status mmt_caption_scores_tokenized(const mmt_caption_item *items, int64_t n, mmt_caption_metrics *corpus,
                                        mmt_caption_metrics *per_image);

#endif
