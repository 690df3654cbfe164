/*
 * test_git.c — the GIT captioner (models/git.h) against transformers' GitForCausalLM on two
 * tiny random configurations (tools/fixtures/make_git_fixtures.py): tiny-a float32 in one
 * file, tiny-b bfloat16 in six shards, other sizes, ids and epsilons, tiny-cap a whole
 * snapshot with a WordPiece tokenizer.json and a processor.
 *   - logits of [image tokens; 6 text ids] for 2 images: within 1e-4 absolute of
 *     transformers' (logits of size ~10; float32 in both, summed in different orders);
 *   - greedy decoding through the KV cache (start with BOS, then one token per step, argmax)
 *     gives generate()'s 20 new tokens exactly, from BOS and from a 6-token prompt (the
 *     fixture pads a row after its EOS; decoding compares up to and including the EOS);
 *   - cached decoding equals recomputation: the logits of each step equal the last row of
 *     mmt_git_run_logits on the whole sequence so far, within 1e-4;
 *   - select: duplicating and reordering rows keeps each row's continuation;
 *   - continuous batching: rows that join a running decoding between steps (other prompt
 *     lengths, more room), rows dropped when done, and a second decoding switched in between
 *     steps (mmt_git_cache) each give the logits of their own decoding alone (to 1e-6) and of
 *     recomputation over the whole sequence (1e-4);
 *   - bad input: not a GIT config, token ids outside the vocabulary, a prompt longer than
 *     the positions, steps past the room asked for.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/file.h"
#include "core/safetensors.h"
#include "models/git.h"
#include "tmp_files.h"

typedef struct expected {
    mmt_safetensors *st;
    float *pixels, *ids, *logits, *greedy, *greedy_prompt;
    int64_t B, S, L, T, V, G, GP;
} expected;

static float *tensor(const mmt_safetensors *st, const char *name, int64_t *numel) {
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

static int load_expected(const char *model, expected *e) {
    char path[512];
    snprintf(path, sizeof path, "%s/git/%s/expected.safetensors", MMT_FIXTURE_DIR, model);
    memset(e, 0, sizeof *e);
    if (mmt_safetensors_open(path, &e->st) != MMT_OK) return 0;
    const mmt_st_tensor *px = mmt_safetensors_find(e->st, "pixel_values"), *lg = mmt_safetensors_find(e->st, "logits");
    const mmt_st_tensor *g = mmt_safetensors_find(e->st, "greedy"), *gp = mmt_safetensors_find(e->st, "greedy_prompt");
    const mmt_st_tensor *ids = mmt_safetensors_find(e->st, "input_ids");
    if (!px || !lg || !g || !gp || !ids) return 0;
    e->B = px->shape[0], e->S = px->shape[2], e->L = ids->shape[1], e->T = lg->shape[1], e->V = lg->shape[2];
    e->G = g->shape[1], e->GP = gp->shape[1];
    e->pixels = tensor(e->st, "pixel_values", NULL);
    e->ids = tensor(e->st, "input_ids", NULL);
    e->logits = tensor(e->st, "logits", NULL);
    e->greedy = tensor(e->st, "greedy", NULL);
    e->greedy_prompt = tensor(e->st, "greedy_prompt", NULL);
    return e->pixels && e->ids && e->logits && e->greedy && e->greedy_prompt;
}

static void free_expected(expected *e) {
    free(e->pixels), free(e->ids), free(e->logits), free(e->greedy), free(e->greedy_prompt);
    mmt_safetensors_close(e->st);
}

static int32_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

static double max_abs(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static mmt_git *load_model(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/git/%s", MMT_FIXTURE_DIR, name);
    mmt_git *m = NULL;
    CHECK_OK(mmt_git_load(dir, &m));
    return m;
}

static void check_logits(const char *name) {
    expected e;
    CHECK(load_expected(name, &e));
    mmt_git *m = load_model(name);
    mmt_git_run *r = NULL;
    if (m) CHECK_OK(mmt_git_run_create(m, &r));
    if (!r) {
        mmt_git_free(m);
        free_expected(&e);
        return;
    }
    CHECK(mmt_git_image_tokens(m) + e.L == e.T);
    int32_t ids[64];
    for (int64_t i = 0; i < e.B * e.L; i++) ids[i] = (int32_t)e.ids[i];
    float *logits = malloc((size_t)(e.B * e.T * e.V) * sizeof(float));
    CHECK_OK(mmt_git_run_logits(r, e.pixels, ids, e.B, e.L, logits));
    double worst = 0;
    for (int64_t i = 0; i < e.B * e.T * e.V; i++) worst = fmax(worst, fabs((double)logits[i] - e.logits[i]));
    CHECK_MSG(worst <= 1e-4, "%s: logits differ from transformers by %.3g", name, worst);
    printf("     %s: logits (%lld, %lld, %lld) within %.3g of transformers\n", name, (long long)e.B, (long long)e.T,
           (long long)e.V, worst);
    free(logits);
    mmt_git_run_free(r);
    mmt_git_free(m);
    free_expected(&e);
}

static void test_logits_match_transformers(void) {
    check_logits("tiny-a");
    check_logits("tiny-b");
    check_logits("tiny-cap");
}

/* Greedy decoding of rows from prompt (B, L) for `steps` tokens, through the cache; out (B,
 * L + steps). With check_recompute, every step's logits are compared with a full forward. */
static void greedy(mmt_git_run *r, const expected *e, int64_t hidden, const int32_t *prompt, int64_t L, int64_t steps,
                   int32_t *out, int check_recompute, const char *name) {
    int64_t B = e->B, V = e->V, Ni = e->T - e->L;
    float *feats = malloc((size_t)(B * Ni * hidden) * sizeof(float)), *logits = malloc((size_t)(B * V) * sizeof(float));
    CHECK_OK(mmt_git_run_image_features(r, e->pixels, B, feats));
    CHECK_OK(mmt_git_run_start(r, feats, B, prompt, L, L + steps, logits));
    for (int64_t b = 0; b < B; b++) memcpy(out + b * (L + steps), prompt + b * L, (size_t)L * sizeof(int32_t));
    double worst = 0;
    for (int64_t t = 0; t < steps; t++) {
        int32_t next[16];
        for (int64_t b = 0; b < B; b++) next[b] = out[b * (L + steps) + L + t] = argmax(logits + b * V, V);
        if (check_recompute) { /* the cached logits equal a forward over the whole sequence */
            int64_t n = L + t;
            int32_t *ids = malloc((size_t)(B * n) * sizeof(int32_t));
            float *full = malloc((size_t)(B * (Ni + n) * V) * sizeof(float));
            for (int64_t b = 0; b < B; b++) memcpy(ids + b * n, out + b * (L + steps), (size_t)n * sizeof(int32_t));
            CHECK_OK(mmt_git_run_logits(r, e->pixels, ids, B, n, full));
            for (int64_t b = 0; b < B; b++)
                for (int64_t v = 0; v < V; v++)
                    worst = fmax(worst, fabs((double)full[(b * (Ni + n) + Ni + n - 1) * V + v] - logits[b * V + v]));
            free(ids), free(full);
        }
        if (t + 1 < steps) CHECK_OK(mmt_git_run_step(r, next, logits));
    }
    if (check_recompute) CHECK_MSG(worst <= 1e-4, "%s: cached logits differ from recomputation by %.3g", name, worst);
    free(feats), free(logits);
}

/* Rows of got (B, n) against want (B, n) as float, up to and including each row's EOS. */
static void compare_tokens(const int32_t *got, const float *want, int64_t B, int64_t n, int64_t eos, const char *what) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < n; j++) {
            CHECK_MSG(got[b * n + j] == (int32_t)want[b * n + j], "%s row %lld position %lld: %d, transformers %d", what,
                      (long long)b, (long long)j, got[b * n + j], (int)want[b * n + j]);
            if (got[b * n + j] != (int32_t)want[b * n + j] || (j > 0 && got[b * n + j] == eos)) break;
        }
}

static void check_greedy(const char *name) {
    expected e;
    CHECK(load_expected(name, &e));
    mmt_git *m = load_model(name);
    mmt_git_run *r = NULL;
    if (m) CHECK_OK(mmt_git_run_create(m, &r));
    if (r) {
        int64_t eos = mmt_git_config_of(m)->eos_token_id, bos = mmt_git_config_of(m)->bos_token_id;
        int32_t prompt[64], out[256];
        for (int64_t b = 0; b < e.B; b++) prompt[b] = (int32_t)bos;
        greedy(r, &e, mmt_git_config_of(m)->hidden_size, prompt, 1, e.G - 1, out, 1, name);
        compare_tokens(out, e.greedy, e.B, e.G, eos, name);
        for (int64_t i = 0; i < e.B * e.L; i++) prompt[i] = (int32_t)e.ids[i];
        greedy(r, &e, mmt_git_config_of(m)->hidden_size, prompt, e.L, e.GP - e.L, out, 0, name);
        compare_tokens(out, e.greedy_prompt, e.B, e.GP, eos, name);
    }
    mmt_git_run_free(r);
    mmt_git_free(m);
    free_expected(&e);
}

static void test_greedy_matches_generate(void) {
    check_greedy("tiny-a");
    check_greedy("tiny-b");
    check_greedy("tiny-cap");
}

static void test_select_keeps_rows(void) {
    expected e;
    CHECK(load_expected("tiny-b", &e));
    mmt_git *m = load_model("tiny-b");
    mmt_git_run *r = NULL;
    if (m) CHECK_OK(mmt_git_run_create(m, &r));
    if (r) {
        int64_t V = e.V, Ni = e.T - e.L, steps = 6;
        float *feats = malloc((size_t)(e.B * Ni * mmt_git_config_of(m)->hidden_size) * sizeof(float)), *lg = malloc((size_t)(4 * V) * sizeof(float));
        float *ref = malloc((size_t)(2 * steps * V) * sizeof(float));
        int32_t prompt[2] = {(int32_t)mmt_git_config_of(m)->bos_token_id, (int32_t)mmt_git_config_of(m)->bos_token_id};
        int32_t tok[4];
        /* reference: both rows decoded plainly, greedily */
        CHECK_OK(mmt_git_run_image_features(r, e.pixels, 2, feats));
        CHECK_OK(mmt_git_run_start(r, feats, 2, prompt, 1, 1 + steps, lg));
        for (int64_t t = 0; t < steps; t++) {
            memcpy(ref + t * 2 * V, lg, (size_t)(2 * V) * sizeof(float));
            for (int b = 0; b < 2; b++) tok[b] = argmax(lg + b * V, V);
            if (t + 1 < steps) CHECK_OK(mmt_git_run_step(r, tok, lg));
        }
        /* after one step, rows become [1, 0, 1, 1]: each keeps its own continuation */
        CHECK_OK(mmt_git_run_start(r, feats, 2, prompt, 1, 1 + steps, lg));
        for (int b = 0; b < 2; b++) tok[b] = argmax(lg + b * V, V);
        CHECK_OK(mmt_git_run_step(r, tok, lg));
        int64_t rows[4] = {1, 0, 1, 1};
        CHECK_OK(mmt_git_run_select(r, rows, 4));
        double worst = 0;
        for (int64_t t = 2; t < steps; t++) {
            int32_t next[4];
            for (int j = 0; j < 4; j++) next[j] = argmax(ref + (t - 1) * 2 * V + rows[j] * V, V);
            CHECK_OK(mmt_git_run_step(r, next, lg));
            for (int j = 0; j < 4; j++)
                for (int64_t v = 0; v < V; v++)
                    worst = fmax(worst, fabs((double)lg[j * V + v] - ref[t * 2 * V + rows[j] * V + v]));
        }
        CHECK_MSG(worst <= 1e-5, "select: rows differ from their own decoding by %.3g", worst);
        CHECK(mmt_git_run_length(r) == steps);
        /* bad input: room for 1 + steps text tokens, 6 used */
        CHECK_OK(mmt_git_run_step(r, tok, lg));
        CHECK_FAILS(mmt_git_run_step(r, tok, lg), MMT_STATUS_INVALID_ARGUMENT, "used up");
        int64_t bad_rows[1] = {4};
        CHECK_FAILS(mmt_git_run_select(r, bad_rows, 1), MMT_STATUS_INVALID_ARGUMENT, "select");
        int32_t bad = (int32_t)V;
        CHECK_FAILS(mmt_git_run_start(r, feats, 1, &bad, 1, 4, lg), MMT_STATUS_INVALID_ARGUMENT, "outside the vocabulary");
        int32_t *many = calloc(100, sizeof(int32_t));
        CHECK_FAILS(mmt_git_run_start(r, feats, 1, many, 100, 100, lg), MMT_STATUS_INVALID_ARGUMENT, "tokens");
        free(many);
        free(feats), free(lg), free(ref);
    }
    mmt_git_run_free(r);
    mmt_git_free(m);
    free_expected(&e);
}

/* Greedy decoding of one row alone: logits (steps, V) and the tokens picked (steps). */
static void decode_alone(mmt_git_run *r, const float *feats, const int32_t *prompt, int64_t L, int64_t steps, int64_t V,
                         float *logits, int32_t *tokens) {
    CHECK_OK(mmt_git_run_start(r, feats, 1, prompt, L, L + steps, logits));
    for (int64_t t = 0; t < steps; t++) {
        tokens[t] = argmax(logits + t * V, V);
        if (t + 1 < steps) CHECK_OK(mmt_git_run_step(r, tokens + t, logits + (t + 1) * V));
    }
}

static void test_join_continuous(void) {
    expected e;
    CHECK(load_expected("tiny-b", &e));
    mmt_git *m = load_model("tiny-b");
    mmt_git_run *r = NULL;
    mmt_git_cache *other = NULL;
    if (m) CHECK_OK(mmt_git_run_create(m, &r));
    if (r) CHECK_OK(mmt_git_cache_create(r, &other));
    if (!r || !other) goto done;
    int64_t V = e.V, Ni = e.T - e.L, C = mmt_git_config_of(m)->hidden_size, steps = 8;
    float *feats = malloc((size_t)(2 * Ni * C) * sizeof(float)), *lg = malloc((size_t)(4 * V) * sizeof(float));
    float *ref0 = malloc((size_t)(steps * V) * sizeof(float)), *ref1 = malloc((size_t)(steps * V) * sizeof(float));
    int32_t tok0[8], tok1[8], bos = (int32_t)mmt_git_config_of(m)->bos_token_id, prompt1[3];
    for (int i = 0; i < 3; i++) prompt1[i] = (int32_t)e.ids[e.L + i]; /* row 1's first three ids */
    CHECK_OK(mmt_git_run_image_features(r, e.pixels, 2, feats));
    decode_alone(r, feats, &bos, 1, steps, V, ref0, tok0);
    decode_alone(r, feats + Ni * C, prompt1, 3, steps, V, ref1, tok1);
    /* row a: image 0 from BOS; after 2 steps row b (image 1, 3-token prompt) joins; after 2
     * more, row c (image 0 from BOS, more room) joins; a is dropped when done */
    double worst = 0;
    int32_t next[3];
    int64_t ta = 0, tb = 0, tc = 0; /* each row's step */
    CHECK_OK(mmt_git_run_start(r, feats, 1, &bos, 1, 1 + 5, lg));
    worst = fmax(worst, max_abs(lg, ref0, V));
    for (; ta < 2; ta++) {
        next[0] = tok0[ta];
        CHECK_OK(mmt_git_run_step(r, next, lg));
        worst = fmax(worst, max_abs(lg, ref0 + (ta + 1) * V, V));
    }
    CHECK_OK(mmt_git_run_join(r, feats + Ni * C, 1, prompt1, 3, 3 + steps, lg + V));
    worst = fmax(worst, max_abs(lg + V, ref1, V));
    CHECK(mmt_git_run_rows(r) == 2 && mmt_git_run_length(r) == 3);
    /* the other decoding runs between two steps of this one, and leaves it alone */
    mmt_git_run_use_cache(r, other);
    CHECK_OK(mmt_git_run_start(r, feats + Ni * C, 1, prompt1, 3, 4, lg + 2 * V));
    CHECK(max_abs(lg + 2 * V, ref1, V) <= 1e-6);
    CHECK_OK(mmt_git_run_step(r, tok1, lg + 2 * V));
    CHECK(max_abs(lg + 2 * V, ref1 + V, V) <= 1e-6);
    mmt_git_run_use_cache(r, NULL);
    for (; tb < 2; ta++, tb++) {
        next[0] = tok0[ta], next[1] = tok1[tb];
        CHECK_OK(mmt_git_run_step(r, next, lg));
        worst = fmax(worst, max_abs(lg, ref0 + (ta + 1) * V, V));
        worst = fmax(worst, max_abs(lg + V, ref1 + (tb + 1) * V, V));
    }
    CHECK_OK(mmt_git_run_join(r, feats, 1, &bos, 1, 1 + steps, lg + 2 * V));
    worst = fmax(worst, max_abs(lg + 2 * V, ref0, V));
    for (; ta < 5; ta++, tb++, tc++) { /* then a is done */
        next[0] = tok0[ta], next[1] = tok1[tb], next[2] = tok0[tc];
        CHECK_OK(mmt_git_run_step(r, next, lg));
        worst = fmax(worst, max_abs(lg, ref0 + (ta + 1) * V, V));
        worst = fmax(worst, max_abs(lg + V, ref1 + (tb + 1) * V, V));
        worst = fmax(worst, max_abs(lg + 2 * V, ref0 + (tc + 1) * V, V));
    }
    int64_t keep[2] = {1, 2};
    CHECK_OK(mmt_git_run_select(r, keep, 2));
    for (; tb + 1 < steps; tb++, tc++) {
        next[0] = tok1[tb], next[1] = tok0[tc];
        CHECK_OK(mmt_git_run_step(r, next, lg));
        worst = fmax(worst, max_abs(lg, ref1 + (tb + 1) * V, V));
        worst = fmax(worst, max_abs(lg + V, ref0 + (tc + 1) * V, V));
    }
    CHECK_MSG(worst <= 1e-6, "joined rows differ from their own decoding by %.3g", worst);
    printf("     continuous batching: joined rows within %.3g of their own decoding\n", worst);
    /* and from recomputation over the whole sequence: row b's last logits */
    int32_t ids[16];
    memcpy(ids, prompt1, sizeof prompt1);
    memcpy(ids + 3, tok1, (size_t)tb * sizeof(int32_t));
    int64_t n = 3 + tb;
    float *full = malloc((size_t)((Ni + n) * V) * sizeof(float));
    CHECK_OK(mmt_git_run_logits(r, e.pixels + 3 * e.S * e.S, ids, 1, n, full));
    CHECK_MSG(max_abs(full + (Ni + n - 1) * V, lg, V) <= 1e-4, "a joined row differs from recomputation by %.3g",
              max_abs(full + (Ni + n - 1) * V, lg, V));
    mmt_git_run_clear(r);
    CHECK(mmt_git_run_rows(r) == 0);
    CHECK_FAILS(mmt_git_run_step(r, next, lg), MMT_STATUS_INVALID_ARGUMENT, "before start");
    /* a join with no rows decoding starts them */
    CHECK_OK(mmt_git_run_join(r, feats, 1, &bos, 1, 2, lg));
    CHECK(max_abs(lg, ref0, V) <= 1e-6);
    free(full), free(feats), free(lg), free(ref0), free(ref1);
done:
    mmt_git_cache_free(other);
    mmt_git_run_free(r);
    mmt_git_free(m);
    free_expected(&e);
}

static void test_not_git(void) {
    mmt_git *m = NULL;
    CHECK_FAILS(mmt_git_load(MMT_FIXTURE_DIR "/clip/tiny-a", &m), MMT_STATUS_UNSUPPORTED, "not a GIT");
    CHECK(m == NULL);
}

int main(void) {
    RUN(test_logits_match_transformers);
    RUN(test_greedy_matches_generate);
    RUN(test_select_keeps_rows);
    RUN(test_join_continuous);
    RUN(test_not_git);
    return check_summary();
}
