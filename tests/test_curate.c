/*
 * test_curate.c — data curation: mmt_curate (data/curate.h) on embeddings made here, and
 * `mmtune curate` on a synthetic set with planted duplicates and swapped captions.
 *
 * References (no numeric tolerances: every check is a decision, a count or a field):
 *   - unit: random unit vectors (D 48, cosines of distinct vectors near 0) with planted exact
 *     and near copies (noise of 0.02 per coordinate: cosine about 0.99) — every copy found,
 *     pointing at its original, nothing else removed; a copy of an image under another text,
 *     or a text under another image, stays; keep first and keep best pick the group member
 *     the rule names; the similarity blocks' size changes nothing; the mismatch threshold is
 *     median - 4 x 1.4826 x MAD recomputed here in double; drop_mismatched takes them out
 *     of deduplication.
 *   - CLI: `mmtune synth` scenes on the embedded default model (models/mmtune-clip-tiny).
 *     30 of 150 pairs are planted copies: the image re-encoded as PNG, upscaled by 8 pixels
 *     (bicubic, PNG), or re-encoded as JPEG q95 with its caption edited (capital letter, full
 *     stop). With --dup-threshold/--text-threshold 0.98 every copy is removed as a duplicate
 *     of its original and no other pair is: on this set the copies score >= 0.992 in both
 *     cosines and distinct pairs <= 0.964 in one of them (this 128-dimension model packs
 *     embeddings closer than a ViT-B/32, hence not the default 0.95; docs/curation.md);
 *     keep best keeps the higher-scoring member of each pair; three swaps of captions
 *     between scenes with no colour in common are all flagged by the default robust rule;
 *     the report and pairs.jsonl hold what they say; refusals are one-line errors and leave
 *     the output folder as it was.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "core/json.h"
#include "data/curate.h"
#include "data/datasets.h"
#include "data/image.h"
#include "data/image_write.h"
#include "rng.h"

#define MODEL MMT_SOURCE_DIR "/models/mmtune-clip-tiny"
#define THRESHOLDS "--dup-threshold 0.98 --text-threshold 0.98"

static char tmp[256];

static const char *tp(const char *name) {
    static char bufs[4][512];
    static int at;
    char *b = bufs[at++ % 4];
    snprintf(b, 512, "%s/%s", tmp, name);
    return b;
}

/* ---- unit: mmt_curate on vectors made here ---------------------------------------------- */

#define UD 48

static void random_unit(float *v, int64_t D) {
    double norm = 0;
    for (int64_t j = 0; j < D; j++) {
        v[j] = rng_uniform();
        norm += (double)v[j] * v[j];
    }
    for (int64_t j = 0; j < D; j++) v[j] = (float)(v[j] / sqrt(norm));
}

/* v = normalise(src + noise * uniform) */
static void near_copy(float *v, const float *src, int64_t D, float noise) {
    double norm = 0;
    for (int64_t j = 0; j < D; j++) {
        v[j] = src[j] + noise * rng_uniform();
        norm += (double)v[j] * v[j];
    }
    for (int64_t j = 0; j < D; j++) v[j] = (float)(v[j] / sqrt(norm));
}

/* v = normalise(a + w b) */
static void mix_into(float *v, const float *a, const float *b, float w, int64_t D) {
    double norm = 0;
    for (int64_t j = 0; j < D; j++) {
        v[j] = a[j] + w * b[j];
        norm += (double)v[j] * v[j];
    }
    for (int64_t j = 0; j < D; j++) v[j] = (float)(v[j] / sqrt(norm));
}

static void test_dedup_finds_planted_copies(void) {
    enum { N0 = 300, COPIES = 45, N = N0 + COPIES + 4 };
    static float img[N * UD], txt[N * UD];
    int64_t original[N];
    rng_state = 0xC0FFEE;
    for (int64_t i = 0; i < N0; i++) {
        random_unit(img + i * UD, UD);
        /* the caption's embedding near its image's, as a trained model's: scores about 0.7 */
        float t[UD];
        random_unit(t, UD);
        mix_into(txt + i * UD, img + i * UD, t, 1.0f, UD);
        original[i] = -1;
    }
    for (int64_t k = 0; k < COPIES; k++) { /* copies of originals 0, 6, 12, ... placed after them all */
        int64_t i = N0 + k, src = 6 * k;
        int kind = (int)(k % 3);
        if (kind == 0) { /* exact */
            memcpy(img + i * UD, img + src * UD, UD * sizeof(float));
            memcpy(txt + i * UD, txt + src * UD, UD * sizeof(float));
        } else { /* near: a resized image; (kind 2) an edited caption too */
            near_copy(img + i * UD, img + src * UD, UD, 0.02f);
            if (kind == 2) near_copy(txt + i * UD, txt + src * UD, UD, 0.02f);
            else memcpy(txt + i * UD, txt + src * UD, UD * sizeof(float));
        }
        original[i] = src;
    }
    /* distractors: the image of pair 1 with a new caption, and pair 2's caption on a new
     * image; pair 3's image near-copied under a new caption; a new pair */
    int64_t d = N0 + COPIES;
    memcpy(img + d * UD, img + 1 * UD, UD * sizeof(float));
    random_unit(txt + d * UD, UD);
    random_unit(img + (d + 1) * UD, UD);
    memcpy(txt + (d + 1) * UD, txt + 2 * UD, UD * sizeof(float));
    near_copy(img + (d + 2) * UD, img + 3 * UD, UD, 0.02f);
    random_unit(txt + (d + 2) * UD, UD);
    random_unit(img + (d + 3) * UD, UD);
    random_unit(txt + (d + 3) * UD, UD);
    for (int64_t i = d; i < N; i++) original[i] = -1;

    mmt_curate_options o;
    mmt_curate_options_default(&o);
    o.fixed_mismatch = 1;
    o.mismatch_threshold = -1; /* nothing is mismatched here */
    mmt_curate_result r;
    CHECK_OK(mmt_curate(img, txt, N, UD, &o, &r));
    CHECK(r.n == N && r.duplicates == COPIES && r.kept == N - COPIES && r.mismatched == 0);
    for (int64_t i = 0; i < N && r.records; i++) {
        const mmt_curate_record *c = &r.records[i];
        CHECK_MSG(c->removed == (original[i] >= 0) && c->duplicate_of == original[i], "pair %lld: removed %d dup of %lld, "
                  "planted from %lld", (long long)i, c->removed, (long long)c->duplicate_of, (long long)original[i]);
        if (original[i] >= 0) CHECK(c->image_similarity >= 0.95f && c->text_similarity >= 0.95f);
        CHECK(c->nearest_image >= -1.0f && c->nearest_image <= 1.0001f);
    }
    /* the same decisions whatever the block size */
    for (int64_t block = 1; block <= 1000; block = block * 7 + 2) {
        mmt_curate_result b;
        o.block_rows = block;
        CHECK_OK(mmt_curate(img, txt, N, UD, &o, &b));
        CHECK_MSG(b.records && r.records && memcmp(b.records, r.records, N * sizeof *b.records) == 0, "block %lld",
                  (long long)block);
        mmt_curate_result_free(&b);
    }
    mmt_curate_result_free(&r);
}

/* A group of three copies (records 2, 5 and 9 of 12) whose captions agree with the image
 * to different degrees: keep first keeps 2, keep best keeps 9 (the highest score). */
static void test_keep_first_and_best(void) {
    enum { N = 12 };
    float img[N * UD], txt[N * UD], noise[UD];
    rng_state = 7;
    for (int64_t i = 0; i < N; i++) {
        random_unit(img + i * UD, UD);
        random_unit(noise, UD);
        mix_into(txt + i * UD, img + i * UD, noise, 1.0f, UD);
    }
    random_unit(noise, UD);
    static const int64_t group[3] = {2, 5, 9};
    static const float weight[3] = {0.25f, 0.3f, 0.2f}; /* less noise: a higher score */
    for (int k = 0; k < 3; k++) {
        memcpy(img + group[k] * UD, img + 2 * UD, UD * sizeof(float));
        mix_into(txt + group[k] * UD, img + 2 * UD, noise, weight[k], UD);
    }
    mmt_curate_options o;
    mmt_curate_options_default(&o);
    o.fixed_mismatch = 1;
    o.mismatch_threshold = -1;
    mmt_curate_result first, best;
    CHECK_OK(mmt_curate(img, txt, N, UD, &o, &first));
    o.keep = MMT_CURATE_KEEP_BEST;
    CHECK_OK(mmt_curate(img, txt, N, UD, &o, &best));
    if (!first.records || !best.records) return;
    CHECK(best.records[9].score > best.records[2].score && best.records[2].score > best.records[5].score);
    CHECK(first.duplicates == 2 && best.duplicates == 2);
    CHECK(!first.records[2].removed && first.records[5].duplicate_of == 2 && first.records[9].duplicate_of == 2);
    CHECK(!best.records[9].removed && best.records[2].duplicate_of == 9 && best.records[5].duplicate_of == 9);
    for (int64_t i = 0; i < N; i++)
        if (i != 2 && i != 5 && i != 9) CHECK(!first.records[i].removed && !best.records[i].removed);
    mmt_curate_result_free(&first);
    mmt_curate_result_free(&best);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Swapped captions fall far below the robust threshold; drop_mismatched removes them before
 * deduplication, so a mismatched copy of a kept pair is removed as mismatched, not as its
 * duplicate. */
static void test_mismatch_rule(void) {
    enum { N = 101 };
    static float img[N * UD], txt[N * UD];
    float noise[UD];
    rng_state = 99;
    for (int64_t i = 0; i < N; i++) {
        random_unit(img + i * UD, UD);
        random_unit(noise, UD);
        mix_into(txt + i * UD, img + i * UD, noise, 0.6f + 0.4f * rng_unit(), UD);
    }
    float t[UD]; /* swap the captions of pairs 10 and 20, and of 30 and 40 */
    for (int k = 0; k < 2; k++) {
        int64_t a = 10 + 20 * k, b = a + 10;
        memcpy(t, txt + a * UD, sizeof t);
        memcpy(txt + a * UD, txt + b * UD, sizeof t);
        memcpy(txt + b * UD, t, sizeof t);
    }
    memcpy(img + 100 * UD, img + 30 * UD, UD * sizeof(float)); /* 100 copies 30, swapped caption and all */
    memcpy(txt + 100 * UD, txt + 30 * UD, UD * sizeof(float));
    mmt_curate_options o;
    mmt_curate_options_default(&o);
    mmt_curate_result r;
    CHECK_OK(mmt_curate(img, txt, N, UD, &o, &r));
    if (!r.records) return;
    double scores[N], dev[N];
    for (int64_t i = 0; i < N; i++) {
        double s = 0;
        for (int64_t j = 0; j < UD; j++) s += (double)img[i * UD + j] * txt[i * UD + j];
        scores[i] = s;
        CHECK_NEAR(r.records[i].score, s, 1e-5);
    }
    double med = median_of(scores, N);
    for (int64_t i = 0; i < N; i++) dev[i] = fabs((double)r.records[i].score - med);
    double mad = median_of(dev, N);
    CHECK_NEAR(r.median, med, 1e-5);
    CHECK_NEAR(r.mad, mad, 1e-5);
    CHECK_NEAR(r.mismatch_threshold, med - 4 * 1.4826 * mad, 1e-5);
    for (int64_t i = 0; i < N; i++) {
        int swapped = i == 10 || i == 20 || i == 30 || i == 40 || i == 100;
        CHECK_MSG(r.records[i].mismatched == swapped, "pair %lld score %g", (long long)i, r.records[i].score);
        CHECK(!r.records[i].removed == (i != 100)); /* flagged only; 100 duplicates 30 */
    }
    CHECK(r.mismatched == 5 && r.removed_mismatched == 0 && r.records[100].duplicate_of == 30);
    mmt_curate_result_free(&r);

    o.drop_mismatched = 1;
    CHECK_OK(mmt_curate(img, txt, N, UD, &o, &r));
    if (!r.records) return;
    CHECK(r.mismatched == 5 && r.removed_mismatched == 5 && r.duplicates == 0 && r.kept == N - 5);
    CHECK(r.records[100].removed && r.records[100].duplicate_of == -1);
    mmt_curate_result_free(&r);

    o.drop_mismatched = 0;
    o.fixed_mismatch = 1;
    o.mismatch_threshold = 0.999; /* everything below it */
    CHECK_OK(mmt_curate(img, txt, N, UD, &o, &r));
    CHECK(r.mismatched == N && r.mismatch_threshold == 0.999);
    mmt_curate_result_free(&r);
}

static void test_median_mad_and_bad_arguments(void) {
    const float odd[5] = {4, 1, 100, 3, 2}, even[4] = {1, 2, 4, 10};
    double m, mad;
    CHECK_OK(mmt_curate_median_mad(odd, 5, &m, &mad));
    CHECK(m == 3 && mad == 1);
    CHECK_OK(mmt_curate_median_mad(even, 4, &m, &mad));
    CHECK(m == 3 && mad == 1.5); /* deviations 2 1 1 7 */
    float v[2 * 4] = {1, 0, 0, 0, 0, 1, 0, 0};
    mmt_curate_options o;
    mmt_curate_options_default(&o);
    mmt_curate_result r;
    CHECK_FAILS(mmt_curate(v, v, 0, 4, &o, &r), MMT_STATUS_INVALID_ARGUMENT, "no pairs");
    o.dup_threshold = 1.5;
    CHECK_FAILS(mmt_curate(v, v, 2, 4, &o, &r), MMT_STATUS_INVALID_ARGUMENT, "[-1, 1]");
    mmt_curate_options_default(&o);
    o.mismatch_mads = 0;
    CHECK_FAILS(mmt_curate(v, v, 2, 4, &o, &r), MMT_STATUS_INVALID_ARGUMENT, "MADs");
    mmt_curate_options_default(&o);
    v[5] = NAN;
    CHECK_FAILS(mmt_curate(v, v, 2, 4, &o, &r), MMT_STATUS_INVALID_ARGUMENT, "pair 2 has a non-finite");
    CHECK(r.records == NULL);
}

/* ---- CLI: mmtune curate on a synthetic set ---------------------------------------------- */

#define N_SYNTH 120 /* the train split of --count 150 */
#define N_PLANT 30

static mmt_pairs *synth;               /* the clean training pairs */
static int64_t dirty_original[N_SYNTH + N_PLANT]; /* record -> the record it copies, or -1 */
static int64_t n_dirty;

/* One JSONL line for a pair with this image path and text (and label). */
static void write_pair(FILE *f, const char *image, const char *text, const char *label) {
    mmt_strbuf b = {0};
    mmt_strbuf_append(&b, "{\"image_path\": ", 15);
    mmt_strbuf_json_string(&b, image, strlen(image));
    mmt_strbuf_append(&b, ", \"text\": ", 10);
    mmt_strbuf_json_string(&b, text, strlen(text));
    if (label) {
        mmt_strbuf_append(&b, ", \"label\": ", 11);
        mmt_strbuf_json_string(&b, label, strlen(label));
    }
    fprintf(f, "%s}\n", b.data);
    mmt_strbuf_free(&b);
}

/* The planted copy k of pair src into tmp/dups: its path (static) and caption (into text). */
static const char *plant_copy(int64_t k, const mmt_pair *src, char *text, size_t cap) {
    static char path[512];
    mmt_image img = {0}, small = {0};
    CHECK_OK(mmt_image_decode_file(src->image_path, &img));
    snprintf(text, cap, "%s", src->text);
    switch (k % 3) {
    case 0: /* the same pixels re-encoded */
        snprintf(path, sizeof path, "%s/dups/%lld.png", tmp, (long long)k);
        CHECK_OK(mmt_image_write_png(path, &img));
        break;
    case 1: /* the same image at a slightly higher resolution (bicubic, as Pillow), PNG */
        snprintf(path, sizeof path, "%s/dups/%lld.png", tmp, (long long)k);
        CHECK_OK(mmt_image_resize_bicubic(&img, img.width + 8, img.height + 8, &small));
        CHECK_OK(mmt_image_write_png(path, &small));
        break;
    default: { /* JPEG, and the caption lightly edited */
        snprintf(path, sizeof path, "%s/dups/%lld.jpg", tmp, (long long)k);
        CHECK_OK(mmt_image_write_jpeg(path, &img, 95));
        size_t n = strlen(text);
        text[0] = (char)toupper((unsigned char)text[0]);
        if (n > 0 && text[n - 1] != '.' && n + 1 < cap) strcat(text, ".");
    }
    }
    mmt_image_free(&img);
    mmt_image_free(&small);
    return path;
}

/* tmp/dirty.jsonl: the clean pairs with N_PLANT copies, each inserted a few records after
 * its original (originals chosen by a seeded draw, without repeats). */
static void make_dirty(void) {
    int64_t chosen[N_SYNTH] = {0}, after[N_SYNTH], k = 0;
    for (int64_t i = 0; i < N_SYNTH; i++) after[i] = -1;
    rng_state = 2024;
    while (k < N_PLANT) {
        int64_t i = (int64_t)(rng_next() % N_SYNTH);
        if (chosen[i]) continue;
        chosen[i] = 1;
        after[k++] = i;
    }
    mkdir(tp("dups"), 0755);
    FILE *f = fopen(tp("dirty.jsonl"), "wb");
    int64_t record_of[N_SYNTH];
    n_dirty = 0;
    char text[1024];
    for (int64_t i = 0; i < N_SYNTH + 5; i++) {
        if (i < N_SYNTH) {
            write_pair(f, synth->items[i].image_path, synth->items[i].text, synth->items[i].label);
            record_of[i] = n_dirty;
            dirty_original[n_dirty++] = -1;
        }
        for (int64_t c = 0; c < N_PLANT; c++) { /* the copies of the pair 5 records back */
            int64_t src = after[c];
            if (src != i - 5) continue;
            const char *path = plant_copy(c, &synth->items[src], text, sizeof text);
            write_pair(f, path, text, synth->items[src].label);
            dirty_original[n_dirty++] = record_of[src];
        }
    }
    fclose(f);
    CHECK(n_dirty == N_SYNTH + N_PLANT);
}

/* report.json of folder out, parsed (NULL after a failed check). */
static mmt_json_doc *read_report(const char *out) {
    char path[600];
    snprintf(path, sizeof path, "%s/report.json", out);
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse_file(path, &doc));
    return doc;
}

static int64_t get_int(const mmt_json *o, const char *key) {
    const mmt_json *v = mmt_json_get(o, key);
    return v && v->type == MMT_JSON_NUMBER ? (int64_t)v->number : -1;
}

static void test_cli_finds_every_planted_copy(void) {
    CHECK(run("curate --model %s --data %s --out %s " THRESHOLDS, MODEL, tp("dirty.jsonl"), tp("first")) == 0);
    CHECK(out_text && strstr(out_text, "\"duplicates_removed\": 30"));
    mmt_json_doc *doc = read_report(tp("first"));
    if (!doc) return;
    const mmt_json *root = mmt_json_root(doc), *dups = mmt_json_get(root, "duplicates");
    CHECK(get_int(root, "records") == n_dirty && get_int(root, "kept") == N_SYNTH && get_int(root, "removed") == N_PLANT);
    CHECK(get_int(root, "duplicates_removed") == N_PLANT);
    CHECK(dups && dups->type == MMT_JSON_ARRAY && dups->len == N_PLANT);
    int64_t found = 0;
    for (size_t k = 0; dups && k < dups->len; k++) {
        const mmt_json *d = &dups->items[k];
        int64_t rec = get_int(d, "record") - 1, of = get_int(d, "duplicate_of") - 1;
        const mmt_json *is = mmt_json_get(d, "image_similarity"), *ts = mmt_json_get(d, "text_similarity");
        CHECK_MSG(rec >= 0 && rec < n_dirty && dirty_original[rec] == of, "record %lld marked a copy of %lld",
                  (long long)rec + 1, (long long)of + 1);
        CHECK(is && ts && is->number >= 0.98 && ts->number >= 0.98);
        CHECK(mmt_json_get(d, "kept_text") && mmt_json_get(d, "image_path") && mmt_json_get(d, "kept_image_path"));
        found += rec >= 0 && rec < n_dirty && dirty_original[rec] == of;
    }
    CHECK(found == N_PLANT);
    const mmt_json *set = mmt_json_get(root, "settings");
    CHECK(set && mmt_json_get(set, "dup_threshold")->number == 0.98 && !strcmp(mmt_json_get(set, "keep")->string, "first"));
    CHECK(mmt_json_get(root, "nearest_image") && mmt_json_get(mmt_json_get(root, "scores"), "median"));
    mmt_json_free(doc);

    /* pairs.jsonl: the clean set again, record for record, loadable from its new folder */
    mmt_pairs *kept = NULL;
    char path[600];
    snprintf(path, sizeof path, "%s/pairs.jsonl", tp("first"));
    CHECK_OK(mmt_pairs_load(path, NULL, &kept)); /* check_files: every image path resolves */
    CHECK(kept && kept->n == N_SYNTH);
    for (int64_t i = 0; kept && i < kept->n && i < N_SYNTH; i++) {
        CHECK(!strcmp(kept->items[i].text, synth->items[i].text));
        CHECK((kept->items[i].label == NULL) == (synth->items[i].label == NULL));
        char a[4096], b[4096];
        CHECK(realpath(kept->items[i].image_path, a) && realpath(synth->items[i].image_path, b) && !strcmp(a, b));
    }
    mmt_pairs_free(kept);
    char *md = read_rel("%s/report.md", tp("first"), NULL);
    CHECK(md && strstr(md, "# Curation report") && strstr(md, "Near-duplicates removed (30)") && strstr(md, "| read | 150 |"));
    free(md);
}

static void test_cli_keep_best(void) {
    CHECK(run("curate --model %s --data %s --out %s --keep best " THRESHOLDS, MODEL, tp("dirty.jsonl"), tp("best")) == 0);
    mmt_json_doc *doc = read_report(tp("best"));
    if (!doc) return;
    const mmt_json *root = mmt_json_root(doc), *dups = mmt_json_get(root, "duplicates");
    CHECK(get_int(root, "kept") == N_SYNTH && dups && dups->len == N_PLANT);
    int64_t copies_kept = 0;
    for (size_t k = 0; dups && k < dups->len; k++) {
        const mmt_json *d = &dups->items[k];
        int64_t rec = get_int(d, "record") - 1, of = get_int(d, "duplicate_of") - 1;
        /* the pair {original, copy}: whichever was removed points at the other, which scores
         * at least as high */
        CHECK(rec >= 0 && of >= 0 && (dirty_original[rec] == of || dirty_original[of] == rec));
        CHECK(mmt_json_get(d, "kept_score")->number >= mmt_json_get(d, "score")->number);
        copies_kept += rec >= 0 && dirty_original[rec] < 0;
    }
    CHECK(copies_kept > 0); /* some copies score higher than their originals and stay */
    CHECK(!strcmp(mmt_json_get(mmt_json_get(root, "settings"), "keep")->string, "best"));
    mmt_json_free(doc);
}

/* The caption colours of a synth text (bit per colour word). */
static unsigned colours_of(const char *text) {
    static const char *const COLOURS[] = {"red", "green", "blue", "yellow", "orange", "purple", "white", "black"};
    unsigned m = 0;
    for (int c = 0; c < 8; c++)
        for (const char *p = text; (p = strstr(p, COLOURS[c])); p++)
            if ((p == text || !isalpha((unsigned char)p[-1])) && !isalpha((unsigned char)p[strlen(COLOURS[c])])) m |= 1u << c;
    return m;
}

static void test_cli_flags_swapped_captions(void) {
    /* three swaps between scenes that share no colour word */
    int64_t swap_with[N_SYNTH];
    for (int64_t i = 0; i < N_SYNTH; i++) swap_with[i] = -1;
    int swaps = 0;
    for (int64_t i = 0; i < N_SYNTH && swaps < 3; i += 17) {
        unsigned ci = colours_of(synth->items[i].text);
        for (int64_t j = i + 1; ci && j < N_SYNTH && swap_with[i] < 0; j++) {
            unsigned cj = colours_of(synth->items[j].text);
            if (cj && !(ci & cj) && swap_with[j] < 0) {
                swap_with[i] = j;
                swap_with[j] = i;
                swaps++;
            }
        }
    }
    CHECK(swaps == 3);
    FILE *f = fopen(tp("swapped.jsonl"), "wb");
    for (int64_t i = 0; i < N_SYNTH; i++)
        write_pair(f, synth->items[i].image_path, synth->items[swap_with[i] >= 0 ? swap_with[i] : i].text, NULL);
    fclose(f);
    CHECK(run("curate --model %s --data %s --out %s " THRESHOLDS, MODEL, tp("swapped.jsonl"), tp("swapped")) == 0);
    mmt_json_doc *doc = read_report(tp("swapped"));
    if (!doc) return;
    const mmt_json *root = mmt_json_root(doc), *mis = mmt_json_get(root, "mismatched");
    double threshold = mmt_json_get(mmt_json_get(root, "settings"), "mismatch_threshold")->number;
    int64_t flagged_swaps = 0, others = 0;
    for (size_t k = 0; mis && k < mis->len; k++) {
        int64_t rec = get_int(&mis->items[k], "record") - 1;
        CHECK(mmt_json_get(&mis->items[k], "score")->number < threshold);
        CHECK(!mmt_json_get(&mis->items[k], "removed")->boolean);
        if (rec >= 0 && rec < N_SYNTH && swap_with[rec] >= 0) flagged_swaps++;
        else others++;
    }
    CHECK_MSG(flagged_swaps == 6, "%lld of the 6 swapped captions flagged", (long long)flagged_swaps);
    CHECK_MSG(others <= 2, "%lld clean pairs flagged", (long long)others); /* a robust z below -4 */
    CHECK(get_int(root, "kept") == N_SYNTH && get_int(root, "mismatched_flagged") == 6 + others);
    mmt_json_free(doc);

    /* --drop-mismatched takes them out of pairs.jsonl */
    CHECK(run("curate --model %s --data %s --out %s --drop-mismatched " THRESHOLDS, MODEL, tp("swapped.jsonl"),
              tp("dropped")) == 0);
    char *pairs = read_rel("%s/pairs.jsonl", tp("dropped"), NULL);
    CHECK(count_lines(pairs) == N_SYNTH - 6 - others);
    for (int64_t i = 0; pairs && i < N_SYNTH; i++)
        if (swap_with[i] >= 0) CHECK(!strstr(pairs, synth->items[i].image_path + strlen(tmp) + 1));
    free(pairs);
}

static void test_cli_refusals(void) {
    static const char *const USAGE[] = {"--keep middle", "--dup-threshold 1.5", "--text-threshold x", "--batch-size 0",
                                        "--bogus", "--mismatch-threshold -2", "--batch-size"};
    for (size_t k = 0; k < sizeof USAGE / sizeof *USAGE; k++) {
        CHECK_MSG(run("curate --model %s --data %s --out %s %s", MODEL, tp("dirty.jsonl"), tp("refused"), USAGE[k]) == 2,
                  "%s", USAGE[k]);
        CHECK(count_lines(err_text) == 1 && !exists("%s", tp("refused")));
    }
    CHECK(run("curate --data %s --out %s", tp("dirty.jsonl"), tp("refused")) == 2 && strstr(err_text, "--model is required"));
    CHECK(run("curate --model %s --out %s", MODEL, tp("refused")) == 2 && strstr(err_text, "--data is required"));
    /* a non-empty --out is refused without --overwrite, and replaced whole with it */
    CHECK(run("curate --model %s --data %s --out %s " THRESHOLDS, MODEL, tp("dirty.jsonl"), tp("first")) == 1);
    CHECK(count_lines(err_text) == 1 && strstr(err_text, "--overwrite"));
    CHECK(sh("echo stale > %s/stale.txt", tp("first")) == 0);
    CHECK(run("curate --model %s --data %s --out %s --overwrite " THRESHOLDS, MODEL, tp("dirty.jsonl"), tp("first")) == 0);
    CHECK(!exists("%s/stale.txt", tp("first")) && exists("%s/pairs.jsonl", tp("first")));
    /* a missing image: one line naming it, the folder as it was */
    FILE *f = fopen(tp("missing.jsonl"), "wb");
    write_pair(f, synth->items[0].image_path, "a red circle", NULL);
    write_pair(f, "nowhere/ghost.png", "a blue square", NULL);
    fclose(f);
    CHECK(run("curate --model %s --data %s --out %s", MODEL, tp("missing.jsonl"), tp("refused")) == 1);
    CHECK(count_lines(err_text) == 1 && strstr(err_text, "ghost.png") && strstr(err_text, "missing.jsonl:2"));
    CHECK(!exists("%s", tp("refused")));
    /* a corrupt image: named; an existing output survives a failed --overwrite */
    CHECK(sh("printf 'not a png' > %s", tp("corrupt.png")) == 0);
    f = fopen(tp("corrupt.jsonl"), "wb");
    write_pair(f, synth->items[0].image_path, "a red circle", NULL);
    write_pair(f, "corrupt.png", "a blue square", NULL);
    fclose(f);
    char *before = read_rel("%s/pairs.jsonl", tp("first"), NULL);
    CHECK(run("curate --model %s --data %s --out %s --overwrite", MODEL, tp("corrupt.jsonl"), tp("first")) == 1);
    CHECK(count_lines(err_text) == 1 && strstr(err_text, "corrupt.png"));
    char *after = read_rel("%s/pairs.jsonl", tp("first"), NULL);
    CHECK(before && after && !strcmp(before, after));
    free(before);
    free(after);
    CHECK(run("curate --help") == 0 && strstr(out_text, "--keep"));
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mmt_curate_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    cli_run_setup(tmp);
    RUN(test_dedup_finds_planted_copies);
    RUN(test_keep_first_and_best);
    RUN(test_mismatch_rule);
    RUN(test_median_mad_and_bad_arguments);
    if (run("synth --out %s --count 150 --seed 3", tp("synth")) != 0) {
        fprintf(stderr, "synth failed: %s\n", err_text ? err_text : "");
        return 1;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/train.jsonl", tp("synth"));
    CHECK_OK(mmt_pairs_load(path, NULL, &synth));
    if (synth && synth->n == N_SYNTH) {
        make_dirty();
        RUN(test_cli_finds_every_planted_copy);
        RUN(test_cli_keep_best);
        RUN(test_cli_flags_swapped_captions);
        RUN(test_cli_refusals);
    } else {
        fprintf(stderr, "synth: %lld training pairs, expected %d\n", synth ? (long long)synth->n : -1LL, N_SYNTH);
        check_failed_++;
    }
    mmt_pairs_free(synth);
    cli_run_cleanup();
    if (!check_failed_) sh("rm -rf %s", tmp);
    return check_summary();
}
