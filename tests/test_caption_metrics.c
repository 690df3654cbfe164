/*
 * test_caption_metrics.c — CIDEr-D, BLEU-1..4, ROUGE-L and the PTB tokenizer step against
 * pycocoevalcap 1.2 and the Stanford PTBTokenizer jar it runs.
 *
 * References (tools/fixtures/make_caption_metric_fixtures.py):
 *   tests/fixtures/caption_metrics/corpora.json   corpora scored by pycocoevalcap (the main
 *       one: 320 images x 5 references), with its tokenized captions and its corpus and
 *       per-image scores. Tolerance: 1e-6 absolute on every score (the C code follows the
 *       Python arithmetic, so the differences measured are at the 1e-15 level).
 *   tests/fixtures/caption_metrics/tokenizer.json the raw output of the Java tokenizer
 *       (`-preserveLines -lowerCase`) for ~900 strings given as one file, pycocoevalcap's
 *       filtered captions for the same batch, and strings tokenized alone (end of input).
 *       Tolerance: none, the lines must be identical byte for byte.
 * Also: bad input, allocation-failure injection, and hand-checked edge cases. Setting
 * MMT_PTB_SWEEP=<file made with --sweep> adds a large tokenizer check (too big to commit).
 */
#include <stdint.h>

#include "check.h"
#include "core/alloc.h"
#include "core/json.h"
#include "eval/caption_metrics.h"
#include "eval/ptb_tokenize.h"

#define SCORE_TOLERANCE 1e-6

static double max_score_diff; /* largest |C - pycocoevalcap| seen, reported at the end */

static const mmt_json *member(const mmt_json *obj, const char *key, mmt_json_type type) {
    const mmt_json *v = mmt_json_get(obj, key);
    CHECK_MSG(v && v->type == type, "fixture member \"%s\" missing or of the wrong type", key);
    return v && v->type == type ? v : NULL;
}

/* ---- tokenizer ---- */

/* Compares lines[i] with the strings of expected; returns the number identical. */
static int64_t count_equal_lines(const char *what, const mmt_json *inputs, char **lines, const mmt_json *expected,
                                 int quiet) {
    int64_t same = 0, shown = 0;
    for (size_t i = 0; i < expected->len; i++) {
        const mmt_json *e = &expected->items[i];
        if (lines[i] && strlen(lines[i]) == e->len && memcmp(lines[i], e->string, e->len) == 0) {
            same++;
        } else if (!quiet && shown++ < 10) {
            fprintf(stderr, "%s %zu: input \"%s\"\n  java \"%s\"\n  c    \"%s\"\n", what, i,
                    inputs->items[i].string, e->string, lines[i] ? lines[i] : "(null)");
        }
    }
    return same;
}

static const char **string_array(const mmt_json *a) {
    const char **s = malloc((a->len + 1) * sizeof *s);
    for (size_t i = 0; s && i < a->len; i++) s[i] = a->items[i].string;
    return s;
}

static void free_lines(char **lines, size_t n) {
    for (size_t i = 0; lines && i < n; i++) mmt_free(lines[i]);
    free(lines);
}

/* Tokenizes the fixture's batch as one input (raw and pycocoevalcap-filtered) and its
 * "alone" strings one by one; every line must be identical. */
static void check_tokenizer_file(const char *path, int quiet) {
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse_file(path, &doc));
    if (!doc) return;
    const mmt_json *root = mmt_json_root(doc);
    const mmt_json *batch = member(root, "batch", MMT_JSON_ARRAY), *java = member(root, "java", MMT_JSON_ARRAY),
                   *coco = member(root, "coco", MMT_JSON_ARRAY), *alone = member(root, "alone", MMT_JSON_ARRAY),
                   *java_alone = member(root, "java_alone", MMT_JSON_ARRAY);
    if (batch && java && coco && alone && java_alone) {
        CHECK(java->len == batch->len && coco->len == batch->len && java_alone->len == alone->len);
        const char **in = string_array(batch);
        char **raw = calloc(batch->len + 1, sizeof *raw), **filtered = calloc(batch->len + 1, sizeof *filtered);
        CHECK_OK(mmt_ptb_tokenize_lines(in, (int64_t)batch->len, raw));
        CHECK_OK(mmt_ptb_coco_tokenize_lines(in, (int64_t)batch->len, filtered));
        int64_t same_raw = count_equal_lines("raw line", batch, raw, java, quiet);
        int64_t same_coco = count_equal_lines("coco line", batch, filtered, coco, quiet);
        CHECK_MSG(same_raw == (int64_t)batch->len, "%lld of %zu raw lines differ from Java",
                  (long long)((int64_t)batch->len - same_raw), batch->len);
        CHECK_MSG(same_coco == (int64_t)batch->len, "%lld of %zu filtered lines differ from pycocoevalcap",
                  (long long)((int64_t)batch->len - same_coco), batch->len);
        printf("     %s: %lld/%zu raw lines, %lld/%zu pycocoevalcap lines identical\n", path, (long long)same_raw,
               batch->len, (long long)same_coco, batch->len);
        char **single = calloc(alone->len + 1, sizeof *single);
        for (size_t i = 0; i < alone->len; i++) CHECK_OK(mmt_ptb_tokenize(alone->items[i].string, &single[i]));
        int64_t same_alone = count_equal_lines("alone", alone, single, java_alone, quiet);
        CHECK_MSG(same_alone == (int64_t)alone->len, "%lld of %zu strings alone differ from Java",
                  (long long)((int64_t)alone->len - same_alone), alone->len);
        free_lines(single, alone->len);
        free_lines(raw, batch->len);
        free_lines(filtered, batch->len);
        free(in);
    }
    mmt_json_free(doc);
}

static void test_tokenizer_matches_java(void) {
    check_tokenizer_file(fixture("caption_metrics/tokenizer.json"), 0);
}

static void test_tokenizer_sweep(void) {
    const char *path = getenv("MMT_PTB_SWEEP");
    if (!path || !*path) {
        printf("     (set MMT_PTB_SWEEP=<file from make_caption_metric_fixtures.py --sweep> for the sweep)\n");
        return;
    }
    check_tokenizer_file(path, 0);
}

static void test_tokenizer_basics(void) {
    char *out = NULL;
    CHECK_OK(mmt_ptb_tokenize("A man's dog (big) isn't [here].", &out));
    CHECK(out && strcmp(out, "a man 's dog -lrb- big -rrb- is n't -lsb- here -rsb- .") == 0);
    mmt_free(out);
    CHECK_OK(mmt_ptb_coco_filter("a man 's dog -lrb- big -rrb- is n't , . ...", &out));
    CHECK(out && strcmp(out, "a man 's dog -lrb- big -rrb- is n't") == 0);
    mmt_free(out);
    CHECK_OK(mmt_ptb_tokenize("", &out));
    CHECK(out && strcmp(out, "") == 0);
    mmt_free(out);
    /* Inside a caption a newline is a space (pycocoevalcap replaces it). */
    const char *lines[] = {"two\nwords", "etc.", "Next"};
    char *got[3] = {0};
    CHECK_OK(mmt_ptb_tokenize_lines(lines, 3, got));
    CHECK(got[0] && strcmp(got[0], "two words") == 0);
    CHECK(got[1] && strcmp(got[1], "etc. .") == 0); /* an abbreviation before a capital */
    for (int i = 0; i < 3; i++) mmt_free(got[i]);
}

static void test_tokenizer_errors(void) {
    char *out = (char *)1;
    CHECK_FAILS(mmt_ptb_tokenize(NULL, &out), MMT_STATUS_INVALID_ARGUMENT, "NULL");
    CHECK(out == NULL);
    CHECK_FAILS(mmt_ptb_tokenize("x", NULL), MMT_STATUS_INVALID_ARGUMENT, "output");
    CHECK_FAILS(mmt_ptb_tokenize("bad \xff byte", &out), MMT_STATUS_BAD_FORMAT, "invalid UTF-8");
    CHECK(out == NULL);
    const char *lines[] = {"fine", NULL};
    char *got[2] = {0};
    CHECK_FAILS(mmt_ptb_tokenize_lines(lines, 2, got), MMT_STATUS_INVALID_ARGUMENT, "line 1");
    CHECK_FAILS(mmt_ptb_tokenize_lines(NULL, 2, got), MMT_STATUS_INVALID_ARGUMENT, "no lines");
    CHECK_FAILS(mmt_ptb_coco_filter(NULL, &out), MMT_STATUS_INVALID_ARGUMENT, "NULL");
}

/* ---- scores ---- */

typedef struct fixture_corpus {
    mmt_caption_item *items;
    const char ***refs; /* per image, the reference strings (malloc) */
    mmt_caption_item *tokenized_items;
    const char ***tokenized_refs;
    int64_t n;
} fixture_corpus;

static void corpus_free(fixture_corpus *c) {
    for (int64_t i = 0; i < c->n; i++) {
        free(c->refs[i]);
        free(c->tokenized_refs[i]);
    }
    free(c->refs);
    free(c->tokenized_refs);
    free(c->items);
    free(c->tokenized_items);
}

static int corpus_load(const mmt_json *entry, fixture_corpus *c) {
    memset(c, 0, sizeof *c);
    const mmt_json *items = member(entry, "items", MMT_JSON_ARRAY);
    const mmt_json *tok = member(entry, "tokenized", MMT_JSON_OBJECT);
    const mmt_json *tok_refs = tok ? member(tok, "references", MMT_JSON_ARRAY) : NULL;
    const mmt_json *tok_cands = tok ? member(tok, "candidates", MMT_JSON_ARRAY) : NULL;
    if (!items || !tok_refs || !tok_cands) return 0;
    c->n = (int64_t)items->len;
    c->items = calloc(items->len, sizeof *c->items);
    c->tokenized_items = calloc(items->len, sizeof *c->tokenized_items);
    c->refs = calloc(items->len, sizeof *c->refs);
    c->tokenized_refs = calloc(items->len, sizeof *c->tokenized_refs);
    for (size_t i = 0; i < items->len; i++) {
        const mmt_json *refs = member(&items->items[i], "references", MMT_JSON_ARRAY);
        const mmt_json *cand = member(&items->items[i], "candidate", MMT_JSON_STRING);
        if (!refs || !cand) return 0;
        c->refs[i] = string_array(refs);
        c->tokenized_refs[i] = string_array(&tok_refs->items[i]);
        c->items[i] = (mmt_caption_item){cand->string, c->refs[i], (int64_t)refs->len};
        c->tokenized_items[i] = (mmt_caption_item){tok_cands->items[i].string, c->tokenized_refs[i],
                                                   (int64_t)tok_refs->items[i].len};
    }
    return 1;
}

static void check_close(const char *corpus, const char *what, int64_t image, double got, const mmt_json *want) {
    double diff = fabs(got - want->number);
    if (diff > max_score_diff) max_score_diff = diff;
    CHECK_MSG(diff <= SCORE_TOLERANCE, "%s: %s (image %lld): got %.17g, pycocoevalcap %.17g", corpus, what,
              (long long)image, got, want->number);
}

static void check_scores(const char *name, const mmt_json *expected, const mmt_caption_metrics *corpus,
                         const mmt_caption_metrics *per_image, int64_t n) {
    const mmt_json *c = member(expected, "corpus", MMT_JSON_OBJECT);
    const mmt_json *p = member(expected, "per_image", MMT_JSON_OBJECT);
    if (!c || !p) return;
    static const char *bleu_names[] = {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"};
    check_close(name, "CIDEr-D", -1, corpus->cider_d, member(c, "cider_d", MMT_JSON_NUMBER));
    check_close(name, "ROUGE-L", -1, corpus->rouge_l, member(c, "rouge_l", MMT_JSON_NUMBER));
    const mmt_json *bleu = member(c, "bleu", MMT_JSON_ARRAY);
    for (int k = 0; k < 4; k++) check_close(name, bleu_names[k], -1, corpus->bleu[k], &bleu->items[k]);
    const mmt_json *cider = member(p, "cider_d", MMT_JSON_ARRAY), *rouge = member(p, "rouge_l", MMT_JSON_ARRAY);
    const mmt_json *bleus = member(p, "bleu", MMT_JSON_ARRAY);
    for (int64_t i = 0; i < n; i++) {
        check_close(name, "CIDEr-D", i, per_image[i].cider_d, &cider->items[i]);
        check_close(name, "ROUGE-L", i, per_image[i].rouge_l, &rouge->items[i]);
        for (int k = 0; k < 4; k++)
            check_close(name, bleu_names[k], i, per_image[i].bleu[k], &bleus->items[k].items[i]);
    }
}

/* Every corpus of corpora.json, from raw captions (PTB step in C) and from pycocoevalcap's
 * own tokenized captions (scorers alone). */
static void test_scores_match_pycocoevalcap(void) {
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse_file(fixture("caption_metrics/corpora.json"), &doc));
    if (!doc) return;
    const mmt_json *corpora = member(mmt_json_root(doc), "corpora", MMT_JSON_ARRAY);
    for (size_t k = 0; corpora && k < corpora->len; k++) {
        const mmt_json *entry = &corpora->items[k];
        const mmt_json *name = member(entry, "name", MMT_JSON_STRING);
        const mmt_json *expected = member(entry, "expected", MMT_JSON_OBJECT);
        fixture_corpus c;
        if (!name || !expected || !corpus_load(entry, &c)) {
            corpus_free(&c);
            continue;
        }
        mmt_caption_metrics total, total_tok;
        mmt_caption_metrics *per = calloc((size_t)c.n, sizeof *per), *per_tok = calloc((size_t)c.n, sizeof *per_tok);
        CHECK_OK(mmt_caption_scores(c.items, c.n, &total, per));
        check_scores(name->string, expected, &total, per, c.n);
        CHECK_OK(mmt_caption_scores_tokenized(c.tokenized_items, c.n, &total_tok, per_tok));
        check_scores(name->string, expected, &total_tok, per_tok, c.n);
        /* Without per-image output the corpus scores are the same, bit for bit. */
        mmt_caption_metrics again;
        CHECK_OK(mmt_caption_scores(c.items, c.n, &again, NULL));
        CHECK(memcmp(&again, &total, sizeof again) == 0);
        if (strcmp(name->string, "main") == 0)
            printf("     main (%lld images): CIDEr-D %.6f BLEU-1..4 %.6f %.6f %.6f %.6f ROUGE-L %.6f\n",
                   (long long)c.n, total.cider_d, total.bleu[0], total.bleu[1], total.bleu[2], total.bleu[3],
                   total.rouge_l);
        free(per);
        free(per_tok);
        corpus_free(&c);
    }
    printf("     largest |C - pycocoevalcap| over all scores: %.3g (tolerance %.0e)\n", max_score_diff,
           SCORE_TOLERANCE);
    mmt_json_free(doc);
}

/* Hand-checked cases: an exact copy scores ROUGE-L 1, an empty candidate 0 everywhere. */
static void test_edge_cases(void) {
    const char *refs[] = {"A dog runs on the beach.", "a dog running on a beach"};
    const char *refs2[] = {"two cats sleep on a sofa", "cats on a couch"};
    mmt_caption_item items[] = {{"a dog runs on the beach", refs, 2}, {"", refs2, 2}};
    mmt_caption_metrics total, per[2];
    CHECK_OK(mmt_caption_scores(items, 2, &total, per));
    CHECK_NEAR(per[0].rouge_l, 1.0, 1e-12);
    CHECK(per[0].bleu[3] > 0.99);
    CHECK(per[1].cider_d == 0 && per[1].rouge_l == 0 && per[1].bleu[0] == 0 && per[1].bleu[3] == 0);
    /* One image: the idf weights are log(1) - log(df) = 0, so CIDEr-D is 0. */
    CHECK_OK(mmt_caption_scores(items, 1, &total, NULL));
    CHECK(total.cider_d == 0);
    CHECK_NEAR(total.rouge_l, 1.0, 1e-12);
}

static void test_bad_input(void) {
    const char *refs[] = {"a cat"};
    const char *null_ref[] = {"a cat", NULL};
    mmt_caption_item good = {"a cat", refs, 1};
    mmt_caption_metrics m;
    CHECK_FAILS(mmt_caption_scores(NULL, 1, &m, NULL), MMT_STATUS_INVALID_ARGUMENT, "items is NULL");
    CHECK_FAILS(mmt_caption_scores(&good, 0, &m, NULL), MMT_STATUS_INVALID_ARGUMENT, "at least one image");
    CHECK_FAILS(mmt_caption_scores(&good, -3, &m, NULL), MMT_STATUS_INVALID_ARGUMENT, "at least one image");
    CHECK_FAILS(mmt_caption_scores(&good, 1, NULL, NULL), MMT_STATUS_INVALID_ARGUMENT, "no output");
    mmt_caption_item no_refs[] = {good, {"a dog", refs, 0}};
    CHECK_FAILS(mmt_caption_scores(no_refs, 2, &m, NULL), MMT_STATUS_INVALID_ARGUMENT, "image 1: no references");
    mmt_caption_item null_refs = {"a dog", NULL, 2};
    CHECK_FAILS(mmt_caption_scores(&null_refs, 1, &m, NULL), MMT_STATUS_INVALID_ARGUMENT, "no references");
    mmt_caption_item null_cand = {NULL, refs, 1};
    CHECK_FAILS(mmt_caption_scores(&null_cand, 1, &m, NULL), MMT_STATUS_INVALID_ARGUMENT, "candidate is NULL");
    mmt_caption_item one_null = {"a dog", null_ref, 2};
    CHECK_FAILS(mmt_caption_scores(&one_null, 1, &m, NULL), MMT_STATUS_INVALID_ARGUMENT, "reference 1 is NULL");
    mmt_caption_item bad_utf8 = {"a \xc3\x28 dog", refs, 1};
    CHECK_FAILS(mmt_caption_scores(&bad_utf8, 1, &m, NULL), MMT_STATUS_BAD_FORMAT, "invalid UTF-8");
    CHECK_FAILS(mmt_caption_scores_tokenized(&bad_utf8, 1, &m, NULL), MMT_STATUS_BAD_FORMAT, "invalid UTF-8");
    CHECK(m.cider_d == 0 && m.bleu[0] == 0);
}

/* Every allocation in turn fails once: the call reports out-of-memory, leaks nothing
 * (ASan checks), and later succeeds with the same scores. */
static void test_allocation_failures(void) {
    const char *refs[] = {"A dog's ball (red) on 3.5 beaches.", "dogs play", "the dog isn't here"};
    const char *refs2[] = {"two cats", "a cat on a mat"};
    mmt_caption_item items[] = {{"a dog plays with a red ball", refs, 3}, {"a cat", refs2, 2}};
    mmt_caption_metrics want, got, per[2];
    CHECK_OK(mmt_caption_scores(items, 2, &want, per));
    int failures = 0;
    for (long k = 1; k < 400; k++) {
        mmt_alloc_fail_after(k);
        mmt_status s = mmt_caption_scores(items, 2, &got, per);
        mmt_alloc_fail_after(0);
        if (s == MMT_OK) {
            CHECK(memcmp(&got, &want, sizeof got) == 0);
            break;
        }
        CHECK(s == MMT_STATUS_OUT_OF_MEMORY);
        failures++;
    }
    CHECK(failures > 10);
}

int main(void) {
    RUN(test_tokenizer_basics);
    RUN(test_tokenizer_errors);
    RUN(test_tokenizer_matches_java);
    RUN(test_tokenizer_sweep);
    RUN(test_scores_match_pycocoevalcap);
    RUN(test_edge_cases);
    RUN(test_bad_input);
    RUN(test_allocation_failures);
    return check_summary();
}
