/*
 * curate.h — data curation on embeddings: near-duplicate pairs and mismatched pairs of an
 * image–text set (what `mmtune curate` decides; docs/curation.md).
 *
 * The input is each pair's normalised image and text embedding (any CLIP, with or without an
 * adapter). Two decisions are made, both exact (no approximate search) and deterministic:
 *
 * Mismatch. A pair's score is the cosine of its image and its text. A pair is mismatched
 * when its score is below the threshold: the given one, or by default the robust rule
 *     median - 4 x 1.4826 x MAD
 * of the set's scores (MAD the median absolute deviation; 1.4826 x MAD estimates the standard
 * deviation of normal scores, so this is a robust z-score below -4, which a clean pair
 * reaches about 3 times in 100,000, while a wrong caption scores far lower). With
 * drop_mismatched the mismatched pairs are removed first and take no part in deduplication.
 *
 * Near-duplicates. The pairs are visited in a processing order — file order (keep first),
 * or best score first, ties in file order (keep best) — and a pair is removed as a
 * near-duplicate when, among the pairs visited before it and kept, there is one whose image
 * cosine with it is >= dup_threshold AND whose text cosine with it is >= text_threshold; the
 * record of the one with the highest image cosine (ties: visited first) is kept as its
 * "duplicate_of". So the kept pairs hold no near-duplicate pair, each removed pair names a
 * kept one it duplicates, keep first keeps the earliest of a group of copies and keep best
 * the copy whose image and text agree best. Both thresholds must hold: one photo under
 * several different captions (COCO's five) stays, and so do two photos of one scene with
 * different captions.
 *
 * Cost: the image cosines of every pair against every earlier one, as blocks of block_rows
 * rows through the op table's gemm (ops.h, mmt_ops_cpu): n^2 D / 2 multiply-adds, n x
 * block_rows floats of scratch (a few seconds and 50 MB for 50,000 pairs of ViT-B/32's 512).
 * Text cosines are computed only for the pairs whose image cosine passed.
 *
 * Usage:
 *     mmt_curate_options o;
 *     mmt_curate_options_default(&o);
 *     o.keep = MMT_CURATE_KEEP_BEST;
 *     mmt_curate_result r;
 *     MMT_TRY(mmt_curate(image, text, n, D, &o, &r));   // r.records[i].removed, ...
 *     mmt_curate_result_free(&r);
 */
#ifndef MMT_DATA_CURATE_H
#define MMT_DATA_CURATE_H

#include <stdint.h>

#include "core/status.h"

typedef enum mmt_curate_keep {
    MMT_CURATE_KEEP_FIRST = 0, /* of a group of duplicates, the first in file order */
    MMT_CURATE_KEEP_BEST = 1   /* the one with the highest image-text cosine */
} mmt_curate_keep;

#define MMT_CURATE_DEFAULT_THRESHOLD 0.95
#define MMT_CURATE_DEFAULT_MADS 4.0

typedef struct mmt_curate_options {
    double dup_threshold;      /* image cosine for a near-duplicate (0.95) */
    double text_threshold;     /* text cosine for a near-duplicate (0.95) */
    mmt_curate_keep keep;      /* first (default) or best */
    int fixed_mismatch;        /* 1: mismatch_threshold as given; 0: the robust rule */
    double mismatch_threshold; /* used when fixed_mismatch */
    double mismatch_mads;      /* the rule's multiple of 1.4826 x MAD (4) */
    int drop_mismatched;       /* remove mismatched pairs too (they are only flagged otherwise) */
    int64_t block_rows;        /* rows of a similarity block (0: 256) */
    /* progress of the duplicate search (may be NULL): rows done of total, after each block */
    void (*progress)(void *user, int64_t done, int64_t total);
    void *user;
} mmt_curate_options;

void mmt_curate_options_default(mmt_curate_options *o);

typedef struct mmt_curate_record {
    float score;              /* the image-text cosine */
    int mismatched;           /* score < the mismatch threshold */
    int removed;              /* a near-duplicate, or mismatched under drop_mismatched */
    int64_t duplicate_of;     /* the kept record it duplicates (0-based), or -1 */
    float image_similarity;   /* with duplicate_of (0 when -1) */
    float text_similarity;
    /* the highest image cosine with any other pair that took part in deduplication (-2
     * when none did, or this one did not): their distribution guides the thresholds */
    float nearest_image;
} mmt_curate_record;

typedef struct mmt_curate_result {
    mmt_curate_record *records; /* owned, n */
    int64_t n;
    int64_t kept;               /* records not removed */
    int64_t duplicates;         /* removed as near-duplicates */
    int64_t mismatched;         /* flagged (removed too under drop_mismatched) */
    int64_t removed_mismatched; /* mismatched and removed */
    double median, mad;         /* of the scores */
    double min_score, max_score;
    double mismatch_threshold;  /* the one applied */
} mmt_curate_result;

/* image, text: (n, D) normalised embeddings of pair i's image and text (row i). Fails only
 * on bad arguments (n < 1, D < 1, a threshold outside [-1, 1], a non-finite embedding) and
 * out of memory. */
mmt_status mmt_curate(const float *image, const float *text, int64_t n, int64_t D, const mmt_curate_options *o,
                      mmt_curate_result *out);
void mmt_curate_result_free(mmt_curate_result *r);

/* The median of the n values (copied, sorted) and the median absolute deviation from it;
 * the mean of the two middle values for even n. */
mmt_status mmt_curate_median_mad(const float *values, int64_t n, double *median, double *mad);

#endif
