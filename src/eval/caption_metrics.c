/*
 * caption_metrics.c — CIDEr-D, BLEU-1..4 and ROUGE-L as pycocoevalcap 1.2 computes them
 * (see caption_metrics.h). Each scorer follows its Python file line by line, including the
 * order of floating-point operations, so that results agree to rounding:
 *   bleu/bleu_scorer.py   precook, cook_refs, cook_test, compute_score(option='closest')
 *   cider/cider_scorer.py compute_doc_freq, counts2vec, sim, compute_cider (n=4, sigma=6)
 *   rouge/rouge.py        my_lcs, calc_score (beta=1.2)
 * and numpy's pairwise summation for np.mean.
 *
 * Words are interned to ids and n-grams (n <= 4) to gram ids, so the scorers work on small
 * integer arrays. A caption keeps its distinct n-grams in the order Python's dict would list
 * them (by n, then by first occurrence), which is the order the sums run in.
 */
#include "eval/caption_metrics.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/hash.h"
#include "data/unicode.h"
#include "eval/ptb_tokenize.h"

#define MAX_ORDER 4          /* n-grams up to 4 (BLEU-4, CIDEr n=4) */
#define CIDER_SIGMA 6.0      /* cider_scorer.py: sigma=6.0 */
#define ROUGE_BETA 1.2       /* rouge.py: self.beta = 1.2 */
#define BLEU_SMALL 1e-9      /* bleu_scorer.py: small */
#define BLEU_TINY 1e-15      /* bleu_scorer.py: tiny */

/* ------------------------------------------------------------------------------------ */
/* Interning                                                                            */

typedef struct word_key {
    const char *s; /* points into a tokenized caption (not owned) */
    int64_t len;
} word_key;

typedef struct gram_key {
    int32_t w[MAX_ORDER]; /* word ids, -1 past the order */
    int32_t order;        /* 1..4 */
} gram_key;

/* Open addressing; slots hold index + 1 (0: empty). */
typedef struct intern_table {
    void *keys; /* word_key or gram_key array (owned) */
    int64_t n, cap;
    int64_t *slots; /* owned */
    int64_t n_slots;
} intern_table;

static uint64_t word_hash(const word_key *k) { return mmt_hash64(k->s, (size_t)k->len, 0x5eed); }
static uint64_t gram_hash(const gram_key *k) { return mmt_hash64(k, sizeof *k, 0x6a3); }

static int word_equal(const word_key *a, const word_key *b) {
    return a->len == b->len && memcmp(a->s, b->s, (size_t)a->len) == 0;
}

static int gram_equal(const gram_key *a, const gram_key *b) { return memcmp(a, b, sizeof *a) == 0; }

/* Looks key up (is_gram says which kind), adding it if new; *id gets its index. */
static mmt_status intern(intern_table *t, int is_gram, const void *key, int32_t *id) {
    size_t key_size = is_gram ? sizeof(gram_key) : sizeof(word_key);
    if (2 * (t->n + 1) > t->n_slots) { /* keep the load at most 1/2 */
        int64_t n_slots = t->n_slots ? 2 * t->n_slots : 1024;
        int64_t *slots = mmt_calloc((size_t)n_slots, sizeof *slots);
        if (!slots) return MMT_STATUS_OUT_OF_MEMORY;
        for (int64_t i = 0; i < t->n; i++) {
            const void *k = (const char *)t->keys + (size_t)i * key_size;
            uint64_t h = is_gram ? gram_hash(k) : word_hash(k);
            int64_t j = (int64_t)(h & (uint64_t)(n_slots - 1));
            while (slots[j]) j = (j + 1) & (n_slots - 1);
            slots[j] = i + 1;
        }
        mmt_free(t->slots);
        t->slots = slots;
        t->n_slots = n_slots;
    }
    uint64_t h = is_gram ? gram_hash(key) : word_hash(key);
    int64_t j = (int64_t)(h & (uint64_t)(t->n_slots - 1));
    while (t->slots[j]) {
        const void *k = (const char *)t->keys + (size_t)(t->slots[j] - 1) * key_size;
        if (is_gram ? gram_equal(k, key) : word_equal(k, key)) {
            *id = (int32_t)(t->slots[j] - 1);
            return MMT_OK;
        }
        j = (j + 1) & (t->n_slots - 1);
    }
    if (t->n >= INT32_MAX) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "caption metrics: too many distinct words");
    MMT_TRY(mmt_grow(&t->keys, &t->cap, t->n + 1, key_size));
    memcpy((char *)t->keys + (size_t)t->n * key_size, key, key_size);
    t->slots[j] = t->n + 1;
    *id = (int32_t)t->n++;
    return MMT_OK;
}

static void intern_free(intern_table *t) {
    mmt_free(t->keys);
    mmt_free(t->slots);
}

/* ------------------------------------------------------------------------------------ */
/* Captions as the scorers see them                                                     */

typedef struct caption {
    int64_t n_words;              /* len(s.split()): BLEU's length */
    int64_t gram_first, n_grams;  /* distinct n-grams: corpus.grams[gram_first ...] */
    int64_t rouge_first, n_rouge; /* s.split(" "): corpus.rouge[rouge_first ...] */
    double norm[MAX_ORDER];       /* CIDEr: norm of the tf-idf vector, per order */
    int64_t length;               /* CIDEr: counts2vec's `length` (bigram count, as written) */
} caption;

typedef struct caption_gram {
    int32_t gram;  /* gram id */
    int32_t order; /* 1..4 */
    int64_t count; /* term frequency in the caption */
    double weight; /* CIDEr: tf * (log N - log df) */
} caption_gram;

typedef struct corpus {
    int64_t n_images;
    const mmt_caption_item *items;
    int64_t *ref_first;        /* images' references: captions[ref_first[i] ...] (owned) */
    caption *captions;         /* all references, then all candidates (owned) */
    int64_t n_refs;            /* references in all; candidate i is captions[n_refs + i] */
    caption_gram *grams;       /* owned */
    int64_t n_grams, cap_grams;
    int32_t *rouge;            /* owned */
    int64_t n_rouge, cap_rouge;
    intern_table words, gram_table;
    /* Scratch indexed by gram id (owned), grown as grams are interned. */
    int64_t *slot;             /* position in the caption being built, or -1 */
    int64_t *df;               /* CIDEr document frequency */
    int64_t *last_image;       /* last image counted in df */
    double *value;             /* a reference's weight (CIDEr) or max count (BLEU) */
    int64_t cap_scratch;
    char **tokenized;          /* the tokenized captions, same order as captions (owned) */
} corpus;

static void corpus_free(corpus *c) {
    if (c->tokenized)
        for (int64_t i = 0; i < c->n_refs + c->n_images; i++) mmt_free(c->tokenized[i]);
    mmt_free(c->tokenized);
    mmt_free(c->ref_first);
    mmt_free(c->captions);
    mmt_free(c->grams);
    mmt_free(c->rouge);
    intern_free(&c->words);
    intern_free(&c->gram_table);
    mmt_free(c->slot);
    mmt_free(c->df);
    mmt_free(c->last_image);
    mmt_free(c->value);
}

/* Makes the per-gram scratch arrays cover every interned gram. */
static mmt_status grow_scratch(corpus *c) {
    int64_t need = c->gram_table.n;
    if (need <= c->cap_scratch) return MMT_OK;
    int64_t cap = c->cap_scratch ? c->cap_scratch : 1024;
    while (cap < need) cap *= 2;
    int64_t *slot = mmt_realloc(c->slot, (size_t)cap * sizeof *slot);
    if (slot) c->slot = slot;
    int64_t *df = slot ? mmt_realloc(c->df, (size_t)cap * sizeof *df) : NULL;
    if (df) c->df = df;
    int64_t *last = df ? mmt_realloc(c->last_image, (size_t)cap * sizeof *last) : NULL;
    if (last) c->last_image = last;
    double *value = last ? mmt_realloc(c->value, (size_t)cap * sizeof *value) : NULL;
    if (!value) return MMT_STATUS_OUT_OF_MEMORY;
    c->value = value;
    for (int64_t g = c->cap_scratch; g < cap; g++) {
        c->slot[g] = -1;
        c->df[g] = 0;
        c->last_image[g] = -1;
        c->value[g] = 0.0;
    }
    c->cap_scratch = cap;
    return MMT_OK;
}

/* Splits s as Python's str.split() (sep=None: runs of Unicode white space, no empty
 * pieces) or, with single_space, as str.split(" ") (every space separates, pieces may be
 * empty). Each piece is interned; ids go to *ids (grown as needed). */
static mmt_status split_words(corpus *c, const char *s, int single_space, int32_t **ids, int64_t *n_ids,
                              int64_t *cap_ids) {
    size_t len = strlen(s), i = 0, start = 0;
    int in_word = 0;
    *n_ids = 0;
    for (;;) {
        int at_end = i >= len, space = 0;
        size_t step = 1;
        if (!at_end) {
            if (single_space) {
                space = s[i] == ' ';
            } else {
                unsigned char b = (unsigned char)s[i];
                step = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
                uint32_t cp;
                size_t bad = 0;
                if (step > len - i || mmt_utf8_decode(s + i, step, &cp, &bad) != 1)
                    return mmt_fail(MMT_STATUS_BAD_FORMAT, "caption metrics: invalid UTF-8 in \"%.40s\"", s);
                space = (mmt_unicode_props(cp) & MMT_UNI_PY_SPACE) != 0;
            }
        }
        if (at_end || space) {
            if (single_space || in_word) {
                word_key k = {s + start, (int64_t)(i - start)};
                MMT_TRY(mmt_grow((void **)ids, cap_ids, *n_ids + 1, sizeof **ids));
                MMT_TRY(intern(&c->words, 0, &k, &(*ids)[*n_ids]));
                (*n_ids)++;
            }
            in_word = 0;
            if (at_end) break;
            start = i + step;
        } else if (!in_word) {
            in_word = 1;
            start = i;
        }
        i += step;
    }
    return MMT_OK;
}

/* precook(): the distinct 1..4-grams of the caption's words with their counts, in the
 * order a Python dict filled by `for k in 1..4: for i: counts[ngram] += 1` lists them. */
static mmt_status add_caption(corpus *c, const char *text, caption *cap, int32_t **ids, int64_t *cap_ids) {
    int64_t n = 0;
    memset(cap, 0, sizeof *cap);
    MMT_TRY(split_words(c, text, 0, ids, &n, cap_ids));
    cap->n_words = n;
    cap->gram_first = c->n_grams;
    for (int32_t k = 1; k <= MAX_ORDER; k++) {
        for (int64_t i = 0; i + k <= n; i++) {
            gram_key key;
            memset(&key, 0xFF, sizeof key);
            memcpy(key.w, *ids + i, (size_t)k * sizeof key.w[0]);
            key.order = k;
            int32_t g;
            MMT_TRY(intern(&c->gram_table, 1, &key, &g));
            MMT_TRY(grow_scratch(c));
            if (c->slot[g] >= 0) {
                c->grams[c->slot[g]].count++;
                continue;
            }
            MMT_TRY(mmt_grow((void **)&c->grams, &c->cap_grams, c->n_grams + 1, sizeof *c->grams));
            c->grams[c->n_grams] = (caption_gram){g, k, 1, 0.0};
            c->slot[g] = c->n_grams++;
        }
    }
    cap->n_grams = c->n_grams - cap->gram_first;
    for (int64_t j = cap->gram_first; j < c->n_grams; j++) c->slot[c->grams[j].gram] = -1;
    /* ROUGE-L tokens: candidate.split(" ") */
    int64_t m = 0;
    MMT_TRY(split_words(c, text, 1, ids, &m, cap_ids));
    MMT_TRY(mmt_grow((void **)&c->rouge, &c->cap_rouge, c->n_rouge + m, sizeof *c->rouge));
    memcpy(c->rouge + c->n_rouge, *ids, (size_t)m * sizeof *c->rouge);
    cap->rouge_first = c->n_rouge;
    cap->n_rouge = m;
    c->n_rouge += m;
    return MMT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* numpy                                                                                */

/* np.add.reduce over a contiguous float64 array: numpy's pairwise summation (blocks of 8
 * partial sums up to 128 elements, halves above), so np.mean agrees to the last bit. */
static double numpy_pairwise_sum(const double *a, int64_t n) {
    if (n < 8) {
        double s = -0.0;
        for (int64_t i = 0; i < n; i++) s += a[i];
        return s;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        int64_t i = 8;
        for (; i < n - n % 8; i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) s += a[i];
        return s;
    }
    int64_t half = n / 2;
    half -= half % 8;
    return numpy_pairwise_sum(a, half) + numpy_pairwise_sum(a + half, n - half);
}

static double numpy_mean(const double *a, int64_t n) { return numpy_pairwise_sum(a, n) / (double)n; }

/* ------------------------------------------------------------------------------------ */
/* BLEU (bleu_scorer.py)                                                                */

static void bleu_scores(corpus *c, mmt_caption_metrics *out, mmt_caption_metrics *per_image) {
    int64_t total_guess[MAX_ORDER] = {0}, total_correct[MAX_ORDER] = {0};
    int64_t total_test = 0, total_ref = 0;
    for (int64_t i = 0; i < c->n_images; i++) {
        const caption *hyp = &c->captions[c->n_refs + i];
        int64_t test_len = hyp->n_words, ref_len = -1;
        /* cook_refs: the largest count of each n-gram in any reference; "closest" length
         * (min over (|l - testlen|, l), so ties go to the shorter reference). */
        for (int64_t r = c->ref_first[i]; r < c->ref_first[i + 1]; r++) {
            const caption *ref = &c->captions[r];
            int64_t l = ref->n_words, d = l > test_len ? l - test_len : test_len - l;
            int64_t best = ref_len > test_len ? ref_len - test_len : test_len - ref_len;
            if (ref_len < 0 || d < best || (d == best && l < ref_len)) ref_len = l;
            for (int64_t j = 0; j < ref->n_grams; j++) {
                const caption_gram *g = &c->grams[ref->gram_first + j];
                if ((double)g->count > c->value[g->gram]) c->value[g->gram] = (double)g->count;
            }
        }
        int64_t correct[MAX_ORDER] = {0}, guess[MAX_ORDER];
        for (int k = 0; k < MAX_ORDER; k++) guess[k] = test_len - k > 0 ? test_len - k : 0;
        for (int64_t j = 0; j < hyp->n_grams; j++) {
            const caption_gram *g = &c->grams[hyp->gram_first + j];
            int64_t max_ref = (int64_t)c->value[g->gram];
            correct[g->order - 1] += g->count < max_ref ? g->count : max_ref;
        }
        for (int64_t r = c->ref_first[i]; r < c->ref_first[i + 1]; r++) {
            const caption *ref = &c->captions[r];
            for (int64_t j = 0; j < ref->n_grams; j++) c->value[c->grams[ref->gram_first + j].gram] = 0.0;
        }
        total_test += test_len;
        total_ref += ref_len;
        double bleu = 1.0;
        double ratio = ((double)test_len + BLEU_TINY) / ((double)ref_len + BLEU_SMALL);
        for (int k = 0; k < MAX_ORDER; k++) {
            total_guess[k] += guess[k];
            total_correct[k] += correct[k];
            bleu *= ((double)correct[k] + BLEU_TINY) / ((double)guess[k] + BLEU_SMALL);
            double score = pow(bleu, 1.0 / (k + 1));
            if (ratio < 1) score *= exp(1 - 1 / ratio);
            if (per_image) per_image[i].bleu[k] = score;
        }
    }
    double bleu = 1.0;
    double ratio = ((double)total_test + BLEU_TINY) / ((double)total_ref + BLEU_SMALL);
    for (int k = 0; k < MAX_ORDER; k++) {
        bleu *= ((double)total_correct[k] + BLEU_TINY) / ((double)total_guess[k] + BLEU_SMALL);
        out->bleu[k] = pow(bleu, 1.0 / (k + 1));
        if (ratio < 1) out->bleu[k] *= exp(1 - 1 / ratio);
    }
}

/* ------------------------------------------------------------------------------------ */
/* CIDEr-D (cider_scorer.py)                                                            */

/* counts2vec: tf-idf weights, the norm of each order and `length`, which counts bigram
 * occurrences (`if n == 1` tests the 0-based order index) as pycocoevalcap does. */
static void cider_vector(corpus *c, caption *cap, double log_n) {
    double sq[MAX_ORDER] = {0};
    cap->length = 0;
    for (int64_t j = 0; j < cap->n_grams; j++) {
        caption_gram *g = &c->grams[cap->gram_first + j];
        double df = log(fmax(1.0, (double)c->df[g->gram]));
        g->weight = (double)g->count * (log_n - df);
        sq[g->order - 1] += pow(g->weight, 2);
        if (g->order - 1 == 1) cap->length += g->count;
    }
    for (int k = 0; k < MAX_ORDER; k++) cap->norm[k] = sqrt(sq[k]);
}

/* sim(): clipped cosine similarity per order with the Gaussian length penalty. */
static void cider_sim(corpus *c, const caption *hyp, const caption *ref, double val[MAX_ORDER]) {
    for (int64_t j = 0; j < ref->n_grams; j++) {
        const caption_gram *g = &c->grams[ref->gram_first + j];
        c->value[g->gram] = g->weight;
    }
    double delta = (double)(hyp->length - ref->length);
    double penalty = pow(M_E, -pow(delta, 2) / (2 * pow(CIDER_SIGMA, 2)));
    for (int k = 0; k < MAX_ORDER; k++) {
        double v = 0.0;
        for (int64_t j = 0; j < hyp->n_grams; j++) {
            const caption_gram *g = &c->grams[hyp->gram_first + j];
            if (g->order != k + 1) continue;
            double r = c->value[g->gram];
            v += fmin(g->weight, r) * r;
        }
        if (hyp->norm[k] != 0 && ref->norm[k] != 0) v /= hyp->norm[k] * ref->norm[k];
        val[k] = v * penalty;
    }
    for (int64_t j = 0; j < ref->n_grams; j++) c->value[c->grams[ref->gram_first + j].gram] = 0.0;
}

static mmt_status cider_scores(corpus *c, mmt_caption_metrics *out, mmt_caption_metrics *per_image) {
    /* compute_doc_freq: in how many images' references each n-gram occurs. */
    for (int64_t i = 0; i < c->n_images; i++)
        for (int64_t r = c->ref_first[i]; r < c->ref_first[i + 1]; r++) {
            const caption *ref = &c->captions[r];
            for (int64_t j = 0; j < ref->n_grams; j++) {
                int32_t g = c->grams[ref->gram_first + j].gram;
                if (c->last_image[g] != i) {
                    c->last_image[g] = i;
                    c->df[g]++;
                }
            }
        }
    double log_n = log((double)c->n_images);
    for (int64_t k = 0; k < c->n_refs + c->n_images; k++) cider_vector(c, &c->captions[k], log_n);
    double *scores = mmt_malloc((size_t)c->n_images * sizeof *scores);
    if (!scores) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < c->n_images; i++) {
        const caption *hyp = &c->captions[c->n_refs + i];
        double score[MAX_ORDER] = {0}, val[MAX_ORDER];
        for (int64_t r = c->ref_first[i]; r < c->ref_first[i + 1]; r++) {
            cider_sim(c, hyp, &c->captions[r], val);
            for (int k = 0; k < MAX_ORDER; k++) score[k] += val[k];
        }
        double avg = numpy_mean(score, MAX_ORDER);
        avg /= (double)(c->ref_first[i + 1] - c->ref_first[i]);
        avg *= 10.0;
        scores[i] = avg;
        if (per_image) per_image[i].cider_d = avg;
    }
    out->cider_d = numpy_mean(scores, c->n_images);
    mmt_free(scores);
    return MMT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* ROUGE-L (rouge.py)                                                                   */

/* my_lcs: length of the longest common subsequence; row has room for nb + 1. */
static int64_t lcs_length(const int32_t *a, int64_t na, const int32_t *b, int64_t nb, int64_t *row) {
    for (int64_t j = 0; j <= nb; j++) row[j] = 0;
    for (int64_t i = 1; i <= na; i++) {
        int64_t diagonal = 0; /* lengths[i-1][j-1] */
        for (int64_t j = 1; j <= nb; j++) {
            int64_t up = row[j]; /* lengths[i-1][j] */
            row[j] = a[i - 1] == b[j - 1] ? diagonal + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diagonal = up;
        }
    }
    return row[nb];
}

static mmt_status rouge_scores(corpus *c, mmt_caption_metrics *out, mmt_caption_metrics *per_image) {
    int64_t longest = 0;
    for (int64_t i = 0; i < c->n_images; i++) {
        int64_t m = c->captions[c->n_refs + i].n_rouge;
        if (m > longest) longest = m;
    }
    double *scores = mmt_malloc((size_t)c->n_images * sizeof *scores);
    int64_t *row = mmt_malloc((size_t)(longest + 1) * sizeof *row);
    if (!scores || !row) {
        mmt_free(scores);
        mmt_free(row);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    double beta2 = pow(ROUGE_BETA, 2);
    for (int64_t i = 0; i < c->n_images; i++) {
        const caption *hyp = &c->captions[c->n_refs + i];
        const int32_t *tc = c->rouge + hyp->rouge_first;
        double prec_max = 0, rec_max = 0;
        for (int64_t r = c->ref_first[i]; r < c->ref_first[i + 1]; r++) {
            const caption *ref = &c->captions[r];
            int64_t lcs = lcs_length(c->rouge + ref->rouge_first, ref->n_rouge, tc, hyp->n_rouge, row);
            double prec = (double)lcs / (double)hyp->n_rouge, rec = (double)lcs / (double)ref->n_rouge;
            if (r == c->ref_first[i] || prec > prec_max) prec_max = prec;
            if (r == c->ref_first[i] || rec > rec_max) rec_max = rec;
        }
        double score = 0.0;
        if (prec_max != 0 && rec_max != 0)
            score = ((1 + beta2) * prec_max * rec_max) / (rec_max + beta2 * prec_max);
        scores[i] = score;
        if (per_image) per_image[i].rouge_l = score;
    }
    out->rouge_l = numpy_mean(scores, c->n_images);
    mmt_free(scores);
    mmt_free(row);
    return MMT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Entry points                                                                         */

static mmt_status check_items(const mmt_caption_item *items, int64_t n, const mmt_caption_metrics *out) {
    if (!out) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "caption metrics: no output given");
    if (!items) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "caption metrics: items is NULL");
    if (n < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "caption metrics: need at least one image, got %lld",
                               (long long)n);
    for (int64_t i = 0; i < n; i++) {
        if (!items[i].candidate)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "caption metrics: image %lld: candidate is NULL",
                            (long long)i);
        if (items[i].n_references < 1 || !items[i].references)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "caption metrics: image %lld: no references",
                            (long long)i);
        for (int64_t r = 0; r < items[i].n_references; r++)
            if (!items[i].references[r])
                return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                                "caption metrics: image %lld: reference %lld is NULL", (long long)i, (long long)r);
    }
    return MMT_OK;
}

/* Fills c->tokenized: references in order, then candidates, each either run through the
 * PTB tokenizer step (references and candidates as two batches, as COCOEvalCap does) or
 * copied as given. */
static mmt_status tokenize_all(corpus *c, int tokenize) {
    int64_t total = c->n_refs + c->n_images;
    const char **lines = mmt_malloc((size_t)total * sizeof *lines);
    c->tokenized = mmt_calloc((size_t)total, sizeof *c->tokenized);
    if (!lines || !c->tokenized) {
        mmt_free(lines);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    int64_t k = 0;
    for (int64_t i = 0; i < c->n_images; i++)
        for (int64_t r = 0; r < c->items[i].n_references; r++) lines[k++] = c->items[i].references[r];
    for (int64_t i = 0; i < c->n_images; i++) lines[k++] = c->items[i].candidate;
    mmt_status s = MMT_OK;
    if (tokenize) {
        s = mmt_ptb_coco_tokenize_lines(lines, c->n_refs, c->tokenized);
        if (s == MMT_OK) s = mmt_ptb_coco_tokenize_lines(lines + c->n_refs, c->n_images, c->tokenized + c->n_refs);
    } else {
        for (int64_t j = 0; s == MMT_OK && j < total; j++) {
            c->tokenized[j] = mmt_strdup(lines[j]);
            if (!c->tokenized[j]) s = MMT_STATUS_OUT_OF_MEMORY;
        }
    }
    mmt_free(lines);
    return s;
}

static mmt_status caption_scores(const mmt_caption_item *items, int64_t n, int tokenize, mmt_caption_metrics *out,
                                 mmt_caption_metrics *per_image) {
    MMT_TRY(check_items(items, n, out));
    memset(out, 0, sizeof *out);
    if (per_image) memset(per_image, 0, (size_t)n * sizeof *per_image);
    corpus c;
    memset(&c, 0, sizeof c);
    c.n_images = n;
    c.items = items;
    int32_t *ids = NULL;
    int64_t cap_ids = 0;
    mmt_status s = MMT_OK;
    c.ref_first = mmt_malloc((size_t)(n + 1) * sizeof *c.ref_first);
    if (!c.ref_first) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        c.ref_first[i] = c.n_refs;
        c.n_refs += items[i].n_references;
    }
    c.ref_first[n] = c.n_refs;
    s = tokenize_all(&c, tokenize);
    if (s != MMT_OK) goto done;
    c.captions = mmt_calloc((size_t)(c.n_refs + n), sizeof *c.captions);
    if (!c.captions) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    for (int64_t k = 0; s == MMT_OK && k < c.n_refs + n; k++)
        s = add_caption(&c, c.tokenized[k], &c.captions[k], &ids, &cap_ids);
    if (s != MMT_OK) goto done;
    bleu_scores(&c, out, per_image);
    s = cider_scores(&c, out, per_image);
    if (s == MMT_OK) s = rouge_scores(&c, out, per_image);
done:
    mmt_free(ids);
    corpus_free(&c);
    if (s != MMT_OK) {
        memset(out, 0, sizeof *out);
        if (per_image) memset(per_image, 0, (size_t)n * sizeof *per_image);
    }
    return s;
}

mmt_status mmt_caption_scores(const mmt_caption_item *items, int64_t n, mmt_caption_metrics *out,
                              mmt_caption_metrics *per_image) {
    return caption_scores(items, n, 1, out, per_image);
}

mmt_status mmt_caption_scores_tokenized(const mmt_caption_item *items, int64_t n, mmt_caption_metrics *out,
                                        mmt_caption_metrics *per_image) {
    return caption_scores(items, n, 0, out, per_image);
}
