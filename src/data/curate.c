/* curate.c — near-duplicate and mismatched pairs from embeddings (see curate.h). */
#include "data/curate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "ops/ops.h"
#include "ops/scan.h"

#define DEFAULT_BLOCK_ROWS 256

void mmt_curate_options_default(mmt_curate_options *o) {
    memset(o, 0, sizeof *o);
    o->dup_threshold = MMT_CURATE_DEFAULT_THRESHOLD;
    o->text_threshold = MMT_CURATE_DEFAULT_THRESHOLD;
    o->keep = MMT_CURATE_KEEP_FIRST;
    o->mismatch_mads = MMT_CURATE_DEFAULT_MADS;
}

void mmt_curate_result_free(mmt_curate_result *r) {
    if (!r) return;
    mmt_free(r->records);
    memset(r, 0, sizeof *r);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n), sorted in place. */
static double sorted_median(double *v, int64_t n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

mmt_status mmt_curate_median_mad(const float *values, int64_t n, double *median, double *mad) {
    *median = *mad = 0;
    if (n < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "curate: no values for a median");
    double *v = mmt_malloc((size_t)n * sizeof *v);
    if (!v) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < n; i++) v[i] = values[i];
    double m = sorted_median(v, n);
    for (int64_t i = 0; i < n; i++) v[i] = fabs((double)values[i] - m);
    *median = m;
    *mad = sorted_median(v, n);
    mmt_free(v);
    return MMT_OK;
}

/* Processing order for keep best: higher score first, ties by record. */
typedef struct scored {
    float score;
    int64_t index;
} scored;

static int cmp_best_first(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

static mmt_status check_arguments(const float *image, const float *text, int64_t n, int64_t D, const mmt_curate_options *o) {
    if (n < 1 || D < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "curate: no pairs (n %lld, D %lld)", (long long)n, (long long)D);
    if (!(o->dup_threshold >= -1 && o->dup_threshold <= 1) || !(o->text_threshold >= -1 && o->text_threshold <= 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "curate: the duplicate thresholds are cosines in [-1, 1] (got %g and %g)",
                        o->dup_threshold, o->text_threshold);
    if (o->fixed_mismatch && !(o->mismatch_threshold >= -1 && o->mismatch_threshold <= 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "curate: the mismatch threshold is a cosine in [-1, 1] (got %g)",
                        o->mismatch_threshold);
    if (!o->fixed_mismatch && !(o->mismatch_mads > 0 && isfinite(o->mismatch_mads)))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "curate: the mismatch rule needs a positive number of MADs (got %g)",
                        o->mismatch_mads);
    for (int64_t i = 0; i < n * D; i++)
        if (!isfinite(image[i]) || !isfinite(text[i]))
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "curate: pair %lld has a non-finite embedding", (long long)(i / D) + 1);
    return MMT_OK;
}

/* Scores, their median and MAD, the threshold and the mismatch flags. */
static mmt_status find_mismatched(const float *image, const float *text, int64_t n, int64_t D, const mmt_curate_options *o,
                                  mmt_curate_result *r) {
    const mmt_scan_ops *scan = mmt_scan_best();
    float *scores = mmt_malloc((size_t)n * sizeof *scores);
    if (!scores) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < n; i++) {
        scan->dot_f32(&scores[i], text, image + i * D, &i, 1, D); /* text row i . image row i */
        r->records[i].score = scores[i];
        r->records[i].duplicate_of = -1;
        r->records[i].nearest_image = -2.0f;
    }
    mmt_status s = mmt_curate_median_mad(scores, n, &r->median, &r->mad);
    r->min_score = r->max_score = scores[0];
    for (int64_t i = 1; i < n; i++) {
        if (scores[i] < r->min_score) r->min_score = scores[i];
        if (scores[i] > r->max_score) r->max_score = scores[i];
    }
    mmt_free(scores);
    MMT_TRY(s);
    r->mismatch_threshold = o->fixed_mismatch ? o->mismatch_threshold : r->median - o->mismatch_mads * 1.4826 * r->mad;
    for (int64_t i = 0; i < n; i++) {
        mmt_curate_record *rec = &r->records[i];
        rec->mismatched = (double)rec->score < r->mismatch_threshold;
        r->mismatched += rec->mismatched;
        if (rec->mismatched && o->drop_mismatched) {
            rec->removed = 1;
            r->removed_mismatched++;
        }
    }
    return MMT_OK;
}

/* The dedup state: the taking-part records in processing order, their embeddings copied in
 * that order (so a block of rows is contiguous for the gemm), and which were kept. */
typedef struct dedup {
    int64_t m, D, block;
    int64_t *order;     /* owned (m): processing position -> record */
    float *image, *text; /* owned (m, D) in processing order */
    unsigned char *kept; /* owned (m) */
    float *sims;        /* owned (block, m): image cosines of a block of rows */
    int64_t *cand;      /* owned (m): columns whose image cosine passed */
    float *cand_text;   /* owned (m): their text cosines */
    float *nearest;     /* owned (m): the highest image cosine with another row so far */
} dedup;

static void dedup_free(dedup *d) {
    mmt_free(d->order);
    mmt_free(d->image);
    mmt_free(d->text);
    mmt_free(d->kept);
    mmt_free(d->sims);
    mmt_free(d->cand);
    mmt_free(d->cand_text);
    mmt_free(d->nearest);
}

static mmt_status dedup_init(dedup *d, const float *image, const float *text, int64_t n, int64_t D,
                             const mmt_curate_options *o, const mmt_curate_result *r) {
    memset(d, 0, sizeof *d);
    d->D = D;
    scored *by = mmt_malloc((size_t)n * sizeof *by);
    d->order = mmt_malloc((size_t)n * sizeof *d->order);
    if (!by || !d->order) {
        mmt_free(by);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    for (int64_t i = 0; i < n; i++)
        if (!r->records[i].removed) by[d->m++] = (scored){r->records[i].score, i};
    if (o->keep == MMT_CURATE_KEEP_BEST) qsort(by, (size_t)d->m, sizeof *by, cmp_best_first);
    for (int64_t p = 0; p < d->m; p++) d->order[p] = by[p].index;
    mmt_free(by);
    int64_t m = d->m > 0 ? d->m : 1;
    d->block = o->block_rows > 0 ? o->block_rows : DEFAULT_BLOCK_ROWS;
    if (d->block > m) d->block = m;
    d->image = mmt_malloc((size_t)(m * D) * sizeof(float));
    d->text = mmt_malloc((size_t)(m * D) * sizeof(float));
    d->kept = mmt_calloc((size_t)m, 1);
    d->sims = mmt_malloc((size_t)(d->block * m) * sizeof(float));
    d->cand = mmt_malloc((size_t)m * sizeof *d->cand);
    d->cand_text = mmt_malloc((size_t)m * sizeof *d->cand_text);
    d->nearest = mmt_malloc((size_t)m * sizeof *d->nearest);
    if (!d->image || !d->text || !d->kept || !d->sims || !d->cand || !d->cand_text || !d->nearest) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t p = 0; p < d->m; p++) {
        memcpy(d->image + p * D, image + d->order[p] * D, (size_t)D * sizeof(float));
        memcpy(d->text + p * D, text + d->order[p] * D, (size_t)D * sizeof(float));
    }
    return MMT_OK;
}

/* Row p (processing position) against the kept rows before it; row holds its image cosines
 * with positions 0..p-1. Marks it kept, or records what it duplicates. */
static void dedup_row(dedup *d, int64_t p, const float *row, const mmt_curate_options *o, mmt_curate_result *r) {
    int64_t nc = 0;
    float dup = (float)o->dup_threshold, nearest = -2.0f;
    for (int64_t c = 0; c < p; c++) {
        if (row[c] > nearest) nearest = row[c];
        if (row[c] > d->nearest[c]) d->nearest[c] = row[c];
        if (d->kept[c] && row[c] >= dup) d->cand[nc++] = c;
    }
    d->nearest[p] = nearest;
    int64_t best = -1;
    if (nc > 0) {
        mmt_scan_best()->dot_f32(d->cand_text, d->text, d->text + p * d->D, d->cand, nc, d->D);
        for (int64_t k = 0; k < nc; k++) {
            if ((double)d->cand_text[k] < o->text_threshold) continue;
            if (best < 0 || row[d->cand[k]] > row[d->cand[best]]) best = k;
        }
    }
    if (best < 0) {
        d->kept[p] = 1;
        return;
    }
    mmt_curate_record *rec = &r->records[d->order[p]];
    rec->removed = 1;
    rec->duplicate_of = d->order[d->cand[best]];
    rec->image_similarity = row[d->cand[best]];
    rec->text_similarity = d->cand_text[best];
    r->duplicates++;
}

static mmt_status find_duplicates(const float *image, const float *text, int64_t n, int64_t D, const mmt_curate_options *o,
                                  mmt_curate_result *r) {
    dedup d;
    mmt_status s = dedup_init(&d, image, text, n, D, o, r);
    const mmt_ops *ops = mmt_ops_cpu();
    for (int64_t r0 = 0; s == MMT_OK && r0 < d.m; r0 += d.block) {
        int64_t r1 = r0 + d.block < d.m ? r0 + d.block : d.m;
        /* sims (r1 - r0, r1) = image[r0:r1] @ image[0:r1]^T: each row against every row up to
         * the block's end; the row's own and later columns are not looked at */
        ops->gemm(0, 1, r1 - r0, r1, D, 1.0f, d.image + r0 * D, D, d.image, D, 0.0f, d.sims, r1);
        for (int64_t p = r0; p < r1; p++) dedup_row(&d, p, d.sims + (p - r0) * r1, o, r);
        if (o->progress) o->progress(o->user, r1, d.m);
    }
    for (int64_t p = 0; s == MMT_OK && p < d.m; p++) r->records[d.order[p]].nearest_image = d.nearest[p];
    dedup_free(&d);
    return s;
}

mmt_status mmt_curate(const float *image, const float *text, int64_t n, int64_t D, const mmt_curate_options *o,
                      mmt_curate_result *out) {
    memset(out, 0, sizeof *out);
    MMT_TRY(check_arguments(image, text, n, D, o));
    mmt_curate_result r = {0};
    r.n = n;
    if (!(r.records = mmt_calloc((size_t)n, sizeof *r.records))) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = find_mismatched(image, text, n, D, o, &r);
    if (s == MMT_OK) s = find_duplicates(image, text, n, D, o, &r);
    if (s != MMT_OK) {
        mmt_curate_result_free(&r);
        return s;
    }
    r.kept = n - r.duplicates - r.removed_mismatched;
    *out = r;
    return MMT_OK;
}
