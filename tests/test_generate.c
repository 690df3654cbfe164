/*
 * test_generate.c — text generation (gen/) against transformers 5's generate() and logits
 * processors (tools/fixtures/make_generation_fixtures.py), on three tiny GIT captioners
 * (git/tiny-a, git/tiny-b, generation/tiny-c; two images each):
 *   - every case of cases.json — greedy; beam search with num_beams 2/3/4 x length_penalty
 *     -1/0/1/2 x early_stopping True/False/"never"; no_repeat_ngram_size 2/3; repetition
 *     penalty 1.3/0.8; bad words (one token, several, [eos]); min_new_tokens; a 4-token
 *     prompt; num_return_sequences; the allowed-words constraint — gives transformers' tokens
 *     exactly, up to and including EOS, and the same length per row; beam scores
 *     (sequences_scores) within 2e-4 + 1e-6 |score| (float32 sums of log-probs whose logits
 *     differ by up to 2e-5 from transformers');
 *   - each processor on fixed scores (processors.safetensors) equals transformers' within 1e-6
 *     absolute (log_softmax: 4e-6, its exp and sums differ from torch's vectorised ones), with
 *     -inf exactly where transformers has it — except top-p on the row whose scores tie at the
 *     cut (row 3): which of equal scores survive follows torch.sort's unspecified order of
 *     ties, so there the count of survivors and their values are compared;
 *   - the allowed-words trie follows its rule, and every constrained output obeys it;
 *   - sampling: the same seed gives the same tokens, top-k / top-p draws (20000) never pick a
 *     masked token, a temperature of 1e-4 or top_k 1 gives the greedy text;
 *   - bad settings and inputs fail with one-line INVALID_ARGUMENT messages naming the field;
 *     every allocation failure on the way is reported as such, nothing leaks (ASan).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/alloc.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "gen/generate.h"
#include "gen/processors.h"
#include "gen/sampler.h"
#include "gen/words.h"
#include "models/git.h"
#include "nn/decoder.h"

/* ---- the three models, each with its run and the features of its two images ---------- */

typedef struct model {
    const char *name; /* folder under tests/fixtures, as cases.json names it */
    mmt_git *git;
    mmt_git_run *run;
    float *feats; /* (2, Ni, C) */
    mmt_decoder dec;
} model;

static model models[3] = {{.name = "git/tiny-a"}, {.name = "git/tiny-b"}, {.name = "generation/tiny-c"}};

static int model_open(model *m) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", MMT_FIXTURE_DIR, m->name);
    if (mmt_git_load(path, &m->git) != MMT_OK || mmt_git_run_create(m->git, &m->run) != MMT_OK) return 0;
    snprintf(path, sizeof path, "%s/%s/expected.safetensors", MMT_FIXTURE_DIR, m->name);
    mmt_safetensors *st = NULL;
    if (mmt_safetensors_open(path, &st) != MMT_OK) return 0;
    const mmt_st_tensor *px = mmt_safetensors_find(st, "pixel_values");
    float *pixels = px ? malloc((size_t)px->numel * sizeof(float)) : NULL;
    int64_t n = 2 * mmt_git_image_tokens(m->git) * mmt_git_config_of(m->git)->hidden_size;
    m->feats = malloc((size_t)n * sizeof(float));
    int ok = pixels && px->shape[0] == 2 && mmt_st_tensor_to_f32(px, pixels) == MMT_OK &&
             mmt_git_run_image_features(m->run, pixels, 2, m->feats) == MMT_OK;
    free(pixels);
    mmt_safetensors_close(st);
    mmt_git_run_decoder(m->run, m->feats, 2, &m->dec);
    return ok;
}

static void model_close(model *m) {
    mmt_git_run_free(m->run);
    mmt_git_free(m->git);
    free(m->feats);
}

static model *model_named(const char *name) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(models[i].name, name)) return &models[i];
    return NULL;
}

static mmt_gen_settings model_settings(const model *m) {
    mmt_gen_settings s = mmt_gen_settings_default();
    const mmt_git_config *cfg = mmt_git_config_of(m->git);
    s.bos_token_id = (int32_t)cfg->bos_token_id;
    s.eos_token_id = (int32_t)cfg->eos_token_id;
    s.pad_token_id = (int32_t)cfg->pad_token_id;
    return s;
}

/* ---- cases.json ---------------------------------------------------------------------- */

/* A list of lists of ids, flattened (ids and lengths malloc'd). */
typedef struct id_lists {
    int32_t *ids;
    int64_t *lengths;
    int64_t n;
} id_lists;

static id_lists read_lists(const mmt_json *a) {
    id_lists l = {0};
    int64_t total = 0;
    for (size_t i = 0; a && i < a->len; i++) total += (int64_t)a->items[i].len;
    l.ids = malloc((size_t)(total + 1) * sizeof(int32_t));
    l.lengths = malloc((a ? a->len : 0) * sizeof(int64_t) + 1);
    for (size_t i = 0, off = 0; a && i < a->len; i++) {
        l.lengths[i] = (int64_t)a->items[i].len;
        for (size_t j = 0; j < a->items[i].len; j++) l.ids[off++] = (int32_t)a->items[i].items[j].integer;
    }
    l.n = a ? (int64_t)a->len : 0;
    return l;
}

static void free_lists(id_lists *l) {
    free(l->ids), free(l->lengths);
}

static mmt_gen_sequences as_sequences(const id_lists *l) {
    return (mmt_gen_sequences){l->ids, l->lengths, l->n};
}

static mmt_gen_early_stopping early_stopping_of(const mmt_json *v) {
    if (v->type == MMT_JSON_STRING) return MMT_GEN_EARLY_STOPPING_NEVER; /* "never" */
    return v->boolean ? MMT_GEN_EARLY_STOPPING_TRUE : MMT_GEN_EARLY_STOPPING_HEURISTIC;
}

static int64_t json_int(const mmt_json *o, const char *key) {
    return mmt_json_get(o, key)->integer;
}

/* Runs one case and compares it with transformers; returns 1 when it matches. */
static int run_case(const mmt_json *c, const mmt_gen_words *lexicon) {
    const char *name = mmt_json_get(c, "name")->string;
    model *m = model_named(mmt_json_get(c, "model")->string);
    const mmt_json *set = mmt_json_get(c, "settings"), *want = mmt_json_get(c, "tokens");
    const mmt_json *scores = mmt_json_get(c, "scores");
    id_lists prompt = read_lists(mmt_json_get(c, "prompt")), bad = read_lists(mmt_json_get(set, "bad_words"));
    mmt_gen_settings s = model_settings(m);
    s.max_new_tokens = json_int(set, "max_new_tokens");
    s.num_beams = json_int(set, "num_beams");
    s.num_return_sequences = json_int(set, "num_return_sequences");
    s.length_penalty = mmt_json_get(set, "length_penalty")->number;
    s.early_stopping = early_stopping_of(mmt_json_get(set, "early_stopping"));
    s.no_repeat_ngram_size = json_int(set, "no_repeat_ngram_size");
    s.repetition_penalty = mmt_json_get(set, "repetition_penalty")->number;
    s.min_new_tokens = json_int(set, "min_new_tokens");
    s.bad_words = as_sequences(&bad);
    if (mmt_json_get(set, "allowed_words")->boolean) s.allowed_words = lexicon;
    mmt_gen_output out;
    int ok = 1;
    mmt_status st = mmt_generate(&m->dec, prompt.ids, prompt.n, prompt.lengths[0], &s, &out);
    CHECK_MSG(st == MMT_OK, "%s: %s", name, mmt_last_error());
    if (st == MMT_OK) {
        CHECK_MSG(out.n_rows == (int64_t)want->len, "%s: %lld rows, transformers %zu", name, (long long)out.n_rows, want->len);
        for (int64_t r = 0; r < out.n_rows && r < (int64_t)want->len; r++) {
            const mmt_json *row = &want->items[r];
            int same = out.lengths[r] == (int64_t)row->len;
            for (int64_t j = 0; same && j < out.lengths[r]; j++) same = out.tokens[r * out.width + j] == row->items[j].integer;
            for (int64_t j = out.lengths[r]; j < out.width; j++) same = same && out.tokens[r * out.width + j] == s.pad_token_id;
            CHECK_MSG(same, "%s row %lld: %lld tokens differ from transformers' %zu", name, (long long)r,
                      (long long)out.lengths[r], row->len);
            ok = ok && same;
            if (scores->type == MMT_JSON_ARRAY) {
                double want_score = scores->items[r].number, d = fabs((double)out.scores[r] - want_score);
                double tol = 2e-4 + 1e-6 * fabs(want_score);
                CHECK_MSG(d <= tol, "%s row %lld: score %.7g, transformers %.7g", name, (long long)r, out.scores[r],
                          want_score);
                ok = ok && d <= tol;
            }
        }
        mmt_gen_output_free(&out);
    }
    free_lists(&prompt), free_lists(&bad);
    return ok && st == MMT_OK;
}

static mmt_json_doc *cases_doc;
static mmt_gen_words *lexicon;

static void test_cases_match_transformers(void) {
    const mmt_json *cases = mmt_json_get(mmt_json_root(cases_doc), "cases");
    CHECK(cases && cases->len >= 100);
    int64_t passed = 0, beams = 0;
    for (size_t i = 0; cases && i < cases->len; i++) {
        passed += run_case(&cases->items[i], lexicon);
        beams += json_int(mmt_json_get(&cases->items[i], "settings"), "num_beams") > 1;
    }
    printf("     %lld of %zu cases (%lld beam searches) equal transformers' generate()\n", (long long)passed,
           cases ? cases->len : 0, (long long)beams);
}

/* ---- processors on fixed scores ------------------------------------------------------ */

typedef struct fixed_scores {
    mmt_safetensors *st;
    float *scores, *ids_f;
    int64_t R, V, T;
} fixed_scores;

static float *tensor_f32(const mmt_safetensors *st, const char *name, int64_t *numel) {
    const mmt_st_tensor *t = mmt_safetensors_find(st, name);
    if (!t) return NULL;
    float *out = malloc((size_t)t->numel * sizeof(float));
    if (mmt_st_tensor_to_f32(t, out) != MMT_OK) {
        free(out);
        return NULL;
    }
    if (numel) *numel = t->numel;
    return out;
}

static int float_order(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Row r of got and want hold the same values once sorted (-inf included). */
static int same_values(const float *got, const float *want, int64_t V) {
    float *a = malloc((size_t)V * sizeof(float)), *b = malloc((size_t)V * sizeof(float));
    memcpy(a, got, (size_t)V * sizeof(float)), memcpy(b, want, (size_t)V * sizeof(float));
    qsort(a, (size_t)V, sizeof(float), float_order), qsort(b, (size_t)V, sizeof(float), float_order);
    int same = !memcmp(a, b, (size_t)V * sizeof(float));
    free(a), free(b);
    return same;
}

/* got against the tensor `name`: -inf exactly where it has -inf, else within tol; row
 * tie_row (-1: none) only as a sorted list of values. */
static void compare_scores(const fixed_scores *f, const float *got, const char *name, double tol, int64_t tie_row) {
    float *want = tensor_f32(f->st, name, NULL);
    CHECK_MSG(want != NULL, "%s missing from processors.safetensors", name);
    if (!want) return;
    double worst = 0;
    int64_t inf_mismatch = 0, n_inf = 0;
    for (int64_t i = 0; i < f->R * f->V; i++) {
        if (i / f->V == tie_row) {
            if (i % f->V == 0) inf_mismatch += !same_values(got + i, want + i, f->V);
            n_inf += isinf(want[i]) != 0;
        } else if (isinf(want[i]) || isinf(got[i])) {
            inf_mismatch += !(isinf(want[i]) && isinf(got[i]) && (want[i] < 0) == (got[i] < 0));
            n_inf += isinf(want[i]) != 0;
        } else {
            worst = fmax(worst, fabs((double)got[i] - want[i]));
        }
    }
    CHECK_MSG(inf_mismatch == 0 && worst <= tol, "%s: %lld -inf misplaced, values within %.3g (tolerance %.3g)", name,
              (long long)inf_mismatch, worst, tol);
    printf("     %-18s within %.2g, %3lld -inf as transformers\n", name, worst, (long long)n_inf);
    free(want);
}

typedef enum proc_kind { PROC_REPETITION, PROC_NGRAM, PROC_BAD, PROC_TEMPERATURE, PROC_TOP_K, PROC_TOP_P, PROC_LOG_SOFTMAX } proc_kind;

static void check_processor(const fixed_scores *f, proc_kind kind, double a, int64_t keep, const char *name) {
    static const int32_t bad_ids[] = {7, 1, 4, 4, 5, 6, 2, 9, 9};
    static const int64_t bad_len[] = {1, 2, 3, 1, 2};
    mmt_gen_sequences bad = {bad_ids, bad_len, 5};
    float *x = malloc((size_t)(f->R * f->V) * sizeof(float));
    memcpy(x, f->scores, (size_t)(f->R * f->V) * sizeof(float));
    gen_scratch scratch;
    CHECK_OK(gen_scratch_init(&scratch, f->V));
    for (int64_t r = 0; r < f->R; r++) {
        float *row = x + r * f->V;
        int32_t ids[16];
        for (int64_t j = 0; j < f->T; j++) ids[j] = (int32_t)f->ids_f[r * f->T + j];
        switch (kind) {
        case PROC_REPETITION: gen_repetition_penalty(row, f->V, ids, f->T, (float)a, scratch.mask); break;
        case PROC_NGRAM: gen_no_repeat_ngram(row, f->V, ids, f->T, (int64_t)a); break;
        case PROC_BAD: gen_bad_words(row, ids, f->T, &bad, 2); break;
        case PROC_TEMPERATURE: gen_temperature(row, f->V, (float)a); break;
        case PROC_TOP_K: gen_top_k(row, f->V, (int64_t)a, keep, scratch.heap); break;
        case PROC_TOP_P: gen_top_p(row, f->V, a, keep, scratch.sorted); break;
        case PROC_LOG_SOFTMAX: gen_log_softmax(row, f->V); break;
        }
    }
    for (int64_t v = 0; v < f->V; v++) CHECK(scratch.mask[v] == 0); /* scratch left clean */
    compare_scores(f, x, name, kind == PROC_LOG_SOFTMAX ? 4e-6 : 1e-6, kind == PROC_TOP_P ? 3 : -1);
    gen_scratch_free(&scratch);
    free(x);
}

static void test_processors_match_transformers(void) {
    fixed_scores f = {0};
    int64_t n = 0, nid = 0;
    CHECK_OK(mmt_safetensors_open(fixture("generation/processors.safetensors"), &f.st));
    if (!f.st) return;
    f.scores = tensor_f32(f.st, "scores", &n);
    f.ids_f = tensor_f32(f.st, "input_ids", &nid);
    const mmt_st_tensor *t = mmt_safetensors_find(f.st, "scores");
    CHECK(f.scores && f.ids_f && t);
    if (f.scores && f.ids_f && t) {
        f.R = t->shape[0], f.V = t->shape[1], f.T = nid / f.R;
        check_processor(&f, PROC_REPETITION, 1.3, 0, "repetition_1.3");
        check_processor(&f, PROC_REPETITION, 0.8, 0, "repetition_0.8");
        check_processor(&f, PROC_NGRAM, 1, 0, "ngram_1");
        check_processor(&f, PROC_NGRAM, 2, 0, "ngram_2");
        check_processor(&f, PROC_NGRAM, 3, 0, "ngram_3");
        check_processor(&f, PROC_BAD, 0, 0, "bad_words");
        check_processor(&f, PROC_TEMPERATURE, 0.7, 0, "temperature_0.7");
        check_processor(&f, PROC_TEMPERATURE, 1.5, 0, "temperature_1.5");
        check_processor(&f, PROC_TOP_K, 1, 1, "top_k_1");
        check_processor(&f, PROC_TOP_K, 5, 1, "top_k_5");
        check_processor(&f, PROC_TOP_K, 60, 1, "top_k_60");
        check_processor(&f, PROC_TOP_K, 3, 5, "top_k_3_keep_5");
        check_processor(&f, PROC_TOP_P, 0.8, 1, "top_p_0.8");
        check_processor(&f, PROC_TOP_P, 0.3, 2, "top_p_0.3_keep_2");
        check_processor(&f, PROC_TOP_P, 0.95, 1, "top_p_0.95");
        check_processor(&f, PROC_LOG_SOFTMAX, 0, 0, "log_softmax");
    }
    free(f.scores), free(f.ids_f);
    mmt_safetensors_close(f.st);
}

/* ---- the allowed-words trie ----------------------------------------------------------- */

/* Whether tokens (n; EOS, if any, last) obey the rule of gen/words.h. */
static int obeys_lexicon(const mmt_gen_words *w, const int32_t *tokens, int64_t n, int32_t eos) {
    uint8_t *allowed = malloc((size_t)w->vocab_size);
    int ok = 1;
    for (int64_t i = 0; ok && i < n; i++) {
        mmt_gen_words_allowed(w, mmt_gen_words_walk(w, tokens, i), eos, allowed);
        ok = allowed[tokens[i]];
    }
    free(allowed);
    return ok;
}

static void test_words_rule(void) {
    /* words: [10] "a", [10 40] "a ##x", [11 41 42] "b ##y ##z", [12] "c" */
    static const int32_t ids[] = {10, 10, 40, 11, 41, 42, 12, 12};
    static const int64_t lengths[] = {1, 2, 3, 1, 1};
    mmt_gen_sequences seqs = {ids, lengths, 5}; /* "c" twice: repeats are fine */
    mmt_gen_words *w = NULL;
    CHECK_OK(mmt_gen_words_create(&seqs, 50, &w));
    if (!w) return;
    uint8_t allowed[50];
    const int32_t eos = 2;
    mmt_gen_words_allowed(w, 0, eos, allowed); /* start: a word's first token, no EOS */
    for (int v = 0; v < 50; v++) CHECK(allowed[v] == (v == 10 || v == 11 || v == 12));
    int32_t a[] = {10};
    mmt_gen_words_allowed(w, mmt_gen_words_walk(w, a, 1), eos, allowed); /* "a": whole, may go on */
    for (int v = 0; v < 50; v++) CHECK(allowed[v] == (v == 40 || v == 10 || v == 11 || v == 12 || v == eos));
    int32_t b[] = {11, 41};
    mmt_gen_words_allowed(w, mmt_gen_words_walk(w, b, 2), eos, allowed); /* inside "b ##y ##z" */
    for (int v = 0; v < 50; v++) CHECK(allowed[v] == (v == 42));
    int32_t text[] = {11, 41, 42, 10, 40, 12, 12};
    CHECK(mmt_gen_words_walk(w, text, 7) > 0);
    CHECK(obeys_lexicon(w, text, 7, eos));
    int32_t off[] = {10, 41};
    CHECK(mmt_gen_words_walk(w, off, 2) == MMT_GEN_WORDS_OFF_LEXICON);
    mmt_gen_words_allowed(w, MMT_GEN_WORDS_OFF_LEXICON, eos, allowed); /* off the lexicon: EOS only */
    for (int v = 0; v < 50; v++) CHECK(allowed[v] == (v == eos));
    mmt_gen_words_free(w);
    /* bad lexicons */
    int64_t empty_len[] = {1, 0};
    mmt_gen_sequences empty = {ids, empty_len, 2};
    CHECK_FAILS(mmt_gen_words_create(&empty, 50, &w), MMT_STATUS_INVALID_ARGUMENT, "word 1 has no tokens");
    CHECK_FAILS(mmt_gen_words_create(&seqs, 30, &w), MMT_STATUS_INVALID_ARGUMENT, "outside the vocabulary");
    mmt_gen_sequences none = {ids, lengths, 0};
    CHECK_FAILS(mmt_gen_words_create(&none, 50, &w), MMT_STATUS_INVALID_ARGUMENT, "empty");
    CHECK(w == NULL);
}

/* Every constrained case's text obeys the lexicon (transformers agreeing is checked above). */
static void test_constrained_outputs_obey(void) {
    const mmt_json *cases = mmt_json_get(mmt_json_root(cases_doc), "cases");
    int64_t n = 0;
    for (size_t i = 0; cases && i < cases->len; i++) {
        const mmt_json *c = &cases->items[i];
        if (!mmt_json_get(mmt_json_get(c, "settings"), "allowed_words")->boolean) continue;
        const mmt_json *rows = mmt_json_get(c, "tokens");
        for (size_t r = 0; r < rows->len; r++, n++) {
            int32_t t[64];
            for (size_t j = 0; j < rows->items[r].len; j++) t[j] = (int32_t)rows->items[r].items[j].integer;
            CHECK_MSG(obeys_lexicon(lexicon, t, (int64_t)rows->items[r].len, 2), "%s row %zu leaves the lexicon",
                      mmt_json_get(c, "name")->string, r);
        }
    }
    CHECK(n >= 8);
}

/* ---- sampling ------------------------------------------------------------------------ */

static int same_output(const mmt_gen_output *a, const mmt_gen_output *b) {
    if (a->n_rows != b->n_rows || a->width != b->width) return 0;
    return !memcmp(a->tokens, b->tokens, (size_t)(a->n_rows * a->width) * sizeof(int32_t)) &&
           !memcmp(a->lengths, b->lengths, (size_t)a->n_rows * sizeof(int64_t));
}

static void test_sampling_is_seeded(void) {
    model *m = model_named("generation/tiny-c");
    mmt_gen_settings s = model_settings(m);
    s.do_sample = 1, s.seed = 42, s.num_return_sequences = 3, s.temperature = 1.5;
    mmt_gen_output a, b, c;
    CHECK_OK(mmt_generate(&m->dec, NULL, 2, 0, &s, &a));
    CHECK_OK(mmt_generate(&m->dec, NULL, 2, 0, &s, &b));
    CHECK(same_output(&a, &b));
    /* the three samples of an image differ from one another somewhere */
    CHECK(memcmp(a.tokens, a.tokens + a.width, (size_t)a.width * sizeof(int32_t)) ||
          memcmp(a.tokens, a.tokens + 2 * a.width, (size_t)a.width * sizeof(int32_t)));
    s.seed = 43;
    CHECK_OK(mmt_generate(&m->dec, NULL, 2, 0, &s, &c));
    CHECK(!same_output(&a, &c));
    mmt_gen_output_free(&c);
    /* a row's text depends on its seed and index only: row 0 alone gives the same tokens */
    s.seed = 42, s.num_return_sequences = 1;
    CHECK_OK(mmt_generate(&m->dec, NULL, 2, 0, &s, &c));
    CHECK(!memcmp(c.tokens, a.tokens, (size_t)a.width * sizeof(int32_t)));
    mmt_gen_output_free(&a), mmt_gen_output_free(&b), mmt_gen_output_free(&c);
    /* beam sampling: seeded too */
    s.num_beams = 3, s.num_return_sequences = 2;
    CHECK_OK(mmt_generate(&m->dec, NULL, 2, 0, &s, &a));
    CHECK_OK(mmt_generate(&m->dec, NULL, 2, 0, &s, &b));
    CHECK(same_output(&a, &b));
    for (int64_t r = 0; r < a.n_rows; r++) CHECK(a.lengths[r] >= 1 && a.scores[r] < 0);
    mmt_gen_output_free(&a), mmt_gen_output_free(&b);
}

static void test_sampling_like_greedy(void) {
    model *m = model_named("generation/tiny-c");
    mmt_gen_settings s = model_settings(m);
    mmt_gen_output greedy, cold, top1;
    CHECK_OK(mmt_generate(&m->dec, NULL, 2, 0, &s, &greedy));
    s.do_sample = 1, s.seed = 7, s.temperature = 1e-4; /* logits / 1e-4: all mass on the argmax */
    CHECK_OK(mmt_generate(&m->dec, NULL, 2, 0, &s, &cold));
    s.temperature = 1.0, s.top_k = 1;
    CHECK_OK(mmt_generate(&m->dec, NULL, 2, 0, &s, &top1));
    CHECK(same_output(&greedy, &cold));
    CHECK(same_output(&greedy, &top1));
    mmt_gen_output_free(&greedy), mmt_gen_output_free(&cold), mmt_gen_output_free(&top1);
}

/* Draws after top-k / top-p never land on a token those masked. */
static void test_sampling_respects_masks(void) {
    enum { V = 40, DRAWS = 20000 };
    float base[V], x[V], heap[V];
    gen_scored sorted[V];
    double probs[V];
    uint64_t state = gen_sampler_stream(3, 0);
    for (int v = 0; v < V; v++) base[v] = (float)(gen_sampler_uniform(&state) * 6 - 3);
    for (int mode = 0; mode < 2; mode++) {
        memcpy(x, base, sizeof x);
        if (mode == 0) gen_top_k(x, V, 5, 1, heap);
        else gen_top_p(x, V, 0.6, 1, sorted);
        int kept = 0, seen[V] = {0};
        for (int v = 0; v < V; v++) kept += !isinf(x[v]);
        CHECK(kept >= 1 && kept < V);
        int64_t masked_picks = 0;
        for (int i = 0; i < DRAWS; i++) {
            int64_t t = -1;
            CHECK_OK(gen_sample(x, V, &state, probs, &t));
            masked_picks += isinf(x[t]) != 0;
            seen[t] = 1;
        }
        int distinct = 0;
        for (int v = 0; v < V; v++) distinct += seen[v];
        CHECK_MSG(masked_picks == 0, "%s: %lld draws took a masked token", mode ? "top-p" : "top-k", (long long)masked_picks);
        CHECK(distinct == kept); /* and every kept token comes up */
    }
    float dead[3] = {-INFINITY, -INFINITY, -INFINITY};
    int64_t t;
    CHECK_FAILS(gen_sample(dead, 3, &state, probs, &t), MMT_STATUS_INVALID_ARGUMENT, "no token has a finite probability");
}

/* ---- bad input ----------------------------------------------------------------------- */

static void expect_bad(const model *m, const mmt_gen_settings *s, const int32_t *prompt, int64_t L, const char *needle) {
    mmt_gen_output out;
    CHECK_FAILS(mmt_generate(&m->dec, prompt, 2, L, s, &out), MMT_STATUS_INVALID_ARGUMENT, needle);
    CHECK(strchr(mmt_last_error(), '\n') == NULL);
    CHECK(out.tokens == NULL && out.n_rows == 0);
}

static void test_bad_input(void) {
    model *m = model_named("generation/tiny-c");
    mmt_gen_settings s = model_settings(m);
    s.num_beams = 0;
    expect_bad(m, &s, NULL, 0, "num_beams is 0");
    s = model_settings(m), s.max_new_tokens = 0;
    expect_bad(m, &s, NULL, 0, "max_new_tokens is 0");
    s = model_settings(m), s.top_p = 0;
    expect_bad(m, &s, NULL, 0, "top_p is 0");
    s.top_p = 1.5;
    expect_bad(m, &s, NULL, 0, "top_p is 1.5");
    s = model_settings(m), s.temperature = 0;
    expect_bad(m, &s, NULL, 0, "temperature is 0");
    s.temperature = -1;
    expect_bad(m, &s, NULL, 0, "temperature is -1");
    s = model_settings(m), s.repetition_penalty = 0;
    expect_bad(m, &s, NULL, 0, "repetition_penalty");
    s = model_settings(m), s.top_k = -1;
    expect_bad(m, &s, NULL, 0, "top_k");
    s = model_settings(m), s.num_return_sequences = 2;
    expect_bad(m, &s, NULL, 0, "greedy");
    s.num_beams = 2, s.num_return_sequences = 3;
    expect_bad(m, &s, NULL, 0, "exceeds num_beams");
    s = model_settings(m), s.eos_token_id = 80;
    expect_bad(m, &s, NULL, 0, "eos_token_id is 80");
    int32_t bad_ids[] = {3, 99};
    int64_t bad_len[] = {2};
    s = model_settings(m), s.bad_words = (mmt_gen_sequences){bad_ids, bad_len, 1};
    expect_bad(m, &s, NULL, 0, "bad word 0 token 1 is 99");
    /* tiny-c holds 64 positions: a 60-token prompt leaves room for 5 new tokens */
    int32_t *long_prompt = calloc(2 * 70, sizeof(int32_t));
    for (int i = 0; i < 2 * 70; i++) long_prompt[i] = 5;
    s = model_settings(m), s.max_new_tokens = 6;
    expect_bad(m, &s, long_prompt, 60, "need 65 positions; the decoder holds 64");
    s.max_new_tokens = 1;
    expect_bad(m, &s, long_prompt, 70, "need 70 positions");
    s.max_new_tokens = 5;
    mmt_gen_output out;
    CHECK_OK(mmt_generate(&m->dec, long_prompt, 2, 60, &s, &out));
    mmt_gen_output_free(&out);
    long_prompt[3] = 80;
    expect_bad(m, &s, long_prompt, 60, "prompt token 3 of row 0 is 80");
    free(long_prompt);
    s = model_settings(m), s.bos_token_id = -1;
    expect_bad(m, &s, NULL, 0, "no bos_token_id");
    s = model_settings(m), s.allowed_words = lexicon;
    model *a = model_named("git/tiny-a");
    CHECK_FAILS(mmt_generate(&a->dec, NULL, 2, 0, &s, &out), MMT_STATUS_INVALID_ARGUMENT, "allowed_words were made for 80");
}

/* Every allocation of a beam search with every processor, failed in turn, is reported as
 * out of memory (or absorbed), and nothing leaks. */
static void test_allocation_failures(void) {
    model *m = model_named("generation/tiny-c");
    mmt_gen_settings s = model_settings(m);
    int32_t bad_ids[] = {35, 0, 52};
    int64_t bad_len[] = {1, 2};
    s.num_beams = 3, s.num_return_sequences = 2, s.max_new_tokens = 6, s.repetition_penalty = 1.3;
    s.no_repeat_ngram_size = 2, s.bad_words = (mmt_gen_sequences){bad_ids, bad_len, 2}, s.allowed_words = lexicon;
    mmt_gen_output ref, out;
    CHECK_OK(mmt_generate(&m->dec, NULL, 2, 0, &s, &ref));
    int64_t n, failures = 0;
    for (n = 1; n < 200; n++) {
        mmt_alloc_fail_after(n);
        mmt_status st = mmt_generate(&m->dec, NULL, 2, 0, &s, &out);
        mmt_alloc_fail_after(0);
        if (st == MMT_OK) {
            CHECK(same_output(&ref, &out));
            mmt_gen_output_free(&out);
            break;
        }
        failures++;
        CHECK_MSG(st == MMT_STATUS_OUT_OF_MEMORY, "allocation %lld: %s", (long long)n, mmt_last_error());
        CHECK(out.tokens == NULL);
    }
    CHECK(failures > 10 && n < 200);
    mmt_gen_output_free(&ref);
    s.num_beams = 1, s.num_return_sequences = 1, s.do_sample = 1;
    for (n = 1; n < 100; n++) {
        mmt_alloc_fail_after(n);
        mmt_status st = mmt_generate(&m->dec, NULL, 2, 0, &s, &out);
        mmt_alloc_fail_after(0);
        if (st == MMT_OK) break;
        CHECK(st == MMT_STATUS_OUT_OF_MEMORY);
    }
    mmt_gen_output_free(&out);
}

int main(void) {
    int ok = 1;
    for (int i = 0; i < 3; i++) ok = model_open(&models[i]) && ok;
    if (!ok || mmt_json_parse_file(fixture("generation/cases.json"), &cases_doc) != MMT_OK) {
        fprintf(stderr, "fixtures: %s\n", mmt_last_error());
        return 1;
    }
    id_lists words = read_lists(mmt_json_get(mmt_json_root(cases_doc), "lexicon"));
    mmt_gen_sequences seqs = as_sequences(&words);
    if (mmt_gen_words_create(&seqs, 80, &lexicon) != MMT_OK) {
        fprintf(stderr, "lexicon: %s\n", mmt_last_error());
        return 1;
    }
    RUN(test_cases_match_transformers);
    RUN(test_processors_match_transformers);
    RUN(test_words_rule);
    RUN(test_constrained_outputs_obey);
    RUN(test_sampling_is_seeded);
    RUN(test_sampling_like_greedy);
    RUN(test_sampling_respects_masks);
    RUN(test_bad_input);
    RUN(test_allocation_failures);
    mmt_gen_words_free(lexicon);
    free_lists(&words);
    mmt_json_free(cases_doc);
    for (int i = 0; i < 3; i++) model_close(&models[i]);
    return check_summary();
}
