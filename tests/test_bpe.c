/*
 * test_bpe.c — BPE training (src/data/bpe_train.h).
 *
 * Reference: tests/fixtures/bpe/ from tools/fixtures/make_bpe_fixtures.py — a 300-caption
 * corpus, the vocabulary `mmtune bpe` trained on it, and the ids transformers' CLIPTokenizer
 * (5.x, HF tokenizers) gives with that vocabulary. Tolerance: none; the retrained files must
 * be byte-identical and every id equal. The other cases check the trainer's own promises:
 * determinism, exact vocabulary size, known ids for every training word, decode round trip,
 * and one-line errors.
 */
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "core/json.h"
#include "data/bpe_train.h"
#include "data/tokenizer.h"

static const char *const FILES[] = {"vocab.json", "merges.txt", "tokenizer_config.json",
                                    "special_tokens_map.json"};

/* A fresh folder under the build dir (static buffer per slot). */
static const char *temp_dir(int slot) {
    static char dirs[2][4096];
    snprintf(dirs[slot], sizeof dirs[slot], "%s/bpe_test_XXXXXX", MMT_BUILD_DIR);
    return mkdtemp(dirs[slot]) ? dirs[slot] : NULL;
}

static void remove_dir(const char *dir) {
    char path[4200];
    for (size_t i = 0; i < sizeof FILES / sizeof *FILES; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, FILES[i]);
        remove(path);
    }
    rmdir(dir);
}

static mmt_tokenizer *load_dir(const char *dir) {
    char v[4200], m[4200];
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    mmt_tokenizer *t = NULL;
    CHECK_OK(mmt_tokenizer_load(v, m, &t));
    return t;
}

/* A varied synthetic corpus from a fixed LCG: fixed words plus made-up ones of 1-3
 * syllables, so there are enough distinct pairs to fill a few hundred merges. */
static char **make_corpus(int64_t n) {
    static const char *const W[] = {"a", "red", "blue", "circle", "square", "left", "of",
                                    "photo", "café", "sneakers", "boot", "it's", "42",
                                    "T-shirt!", "über", "the", "small", "large", "(x)"};
    static const char *const SYL[] = {"ka", "lo", "mi", "ne", "ru", "sta", "pe", "dor",
                                      "vin", "qu", "ax", "zel", "tho", "bri", "gu", "fe"};
    char **texts = malloc((size_t)n * sizeof *texts);
    uint64_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        char buf[256] = "";
        for (int k = 0; k < 6; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            if ((s >> 60) & 1) {
                strcat(buf, W[(s >> 33) % (sizeof W / sizeof *W)]);
            } else {
                for (uint64_t y = 0; y <= (s >> 40) % 3; y++)
                    strcat(buf, SYL[(s >> (20 + 4 * y)) % (sizeof SYL / sizeof *SYL)]);
            }
            strcat(buf, k < 5 ? " " : "");
        }
        texts[i] = strdup(buf);
    }
    return texts;
}

static void free_corpus(char **texts, int64_t n) {
    for (int64_t i = 0; i < n; i++) free(texts[i]);
    free(texts);
}

static void test_parity_with_transformers(void) {
    const char *dir = temp_dir(0);
    CHECK(dir != NULL);
    if (!dir) return;
    mmt_bpe_params p;
    mmt_bpe_params_default(&p);
    p.vocab_size = 700; /* as make_bpe_fixtures.py */
    mmt_bpe_vocab *v = NULL;
    CHECK_OK(mmt_bpe_train_file(fixture("bpe/corpus.txt"), &p, &v));
    if (!v) return;
    CHECK_OK(mmt_bpe_vocab_write(v, dir));
    mmt_bpe_vocab_free(v);
    for (size_t i = 0; i < sizeof FILES / sizeof *FILES; i++) {
        char mine[4200], ref[4200];
        snprintf(mine, sizeof mine, "%s/%s", dir, FILES[i]);
        snprintf(ref, sizeof ref, "%s/bpe/vocab/%s", MMT_FIXTURE_DIR, FILES[i]);
        CHECK_MSG(check_same_file(mine, NULL, ref), "%s differs from the committed fixture", FILES[i]);
    }
    mmt_tokenizer *t = load_dir(dir);
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse_file(fixture("bpe/cases.json"), &doc));
    if (!t || !doc) goto done;
    const mmt_json *cases = mmt_json_root(doc);
    CHECK(cases->type == MMT_JSON_ARRAY && cases->len > 300);
    int64_t mismatches = 0;
    for (size_t c = 0; c < cases->len; c++) {
        const mmt_json *text = mmt_json_get(&cases->items[c], "text");
        const mmt_json *ids = mmt_json_get(&cases->items[c], "ids");
        int32_t got[1024];
        int64_t n = 0;
        CHECK_OK(mmt_tokenizer_encode(t, text->string, text->len, got, 1024, &n));
        int same = n == (int64_t)ids->len;
        for (int64_t k = 0; same && k < n; k++) same = got[k] == ids->items[k].integer;
        if (!same && mismatches++ < 5)
            CHECK_MSG(same, "case %zu \"%s\": %lld ids, transformers %zu", c, text->string,
                      (long long)n, ids->len);
    }
    CHECK(mismatches == 0);
done:
    mmt_json_free(doc);
    mmt_tokenizer_free(t);
    remove_dir(dir);
}

static void test_deterministic_and_exact_size(void) {
    int64_t n = 2000;
    char **texts = make_corpus(n);
    const char *dirs[2] = {temp_dir(0), temp_dir(1)};
    CHECK(dirs[0] && dirs[1]);
    mmt_bpe_params p;
    mmt_bpe_params_default(&p);
    p.vocab_size = 600;
    for (int run = 0; run < 2 && dirs[run]; run++) {
        mmt_bpe_vocab *v = NULL;
        CHECK_OK(mmt_bpe_train((const char *const *)texts, n, &p, &v));
        if (!v) continue;
        CHECK(mmt_bpe_vocab_size(v) == 600);
        CHECK_OK(mmt_bpe_vocab_write(v, dirs[run]));
        mmt_bpe_vocab_free(v);
    }
    for (size_t i = 0; dirs[0] && dirs[1] && i < sizeof FILES / sizeof *FILES; i++) {
        char a[4200], b[4200];
        snprintf(a, sizeof a, "%s/%s", dirs[0], FILES[i]);
        snprintf(b, sizeof b, "%s/%s", dirs[1], FILES[i]);
        CHECK_MSG(check_same_file(a, NULL, b), "%s differs between two runs", FILES[i]);
    }
    /* vocab.json has exactly N entries, ids 0..N-1, specials last. */
    char path[4200];
    snprintf(path, sizeof path, "%s/vocab.json", dirs[0]);
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse_file(path, &doc));
    if (doc) CHECK(mmt_json_root(doc)->len == 600);
    mmt_json_free(doc);
    mmt_tokenizer *t = load_dir(dirs[0]);
    if (t) {
        CHECK(mmt_tokenizer_vocab_size(t) == 600);
        CHECK(mmt_tokenizer_bos(t) == 598 && mmt_tokenizer_eos(t) == 599);
        CHECK(strcmp(mmt_tokenizer_id_to_token(t, 64), "a") == 0);     /* CLIP's layout */
        CHECK(strcmp(mmt_tokenizer_id_to_token(t, 320), "a</w>") == 0);
        /* Every training text encodes to known ids, and frequent words became one token. */
        for (int64_t i = 0; i < n; i++) {
            int32_t ids[77];
            int64_t m;
            CHECK_OK(mmt_tokenizer_encode(t, texts[i], strlen(texts[i]), ids, 77, &m));
            for (int64_t k = 0; k < m && k < 77; k++)
                CHECK(mmt_tokenizer_id_to_token(t, ids[k]) != NULL);
        }
        int32_t ids[8];
        int64_t m;
        CHECK_OK(mmt_tokenizer_encode(t, "circle", 6, ids, 8, &m));
        CHECK(m == 3 && strcmp(mmt_tokenizer_id_to_token(t, ids[1]), "circle</w>") == 0);
    }
    mmt_tokenizer_free(t);
    for (int run = 0; run < 2; run++) if (dirs[run]) remove_dir(dirs[run]);
    free_corpus(texts, n);
}

static void test_round_trip(void) {
    int64_t n = 500;
    char **texts = make_corpus(n);
    const char *dir = temp_dir(0);
    mmt_bpe_params p;
    mmt_bpe_params_default(&p);
    p.vocab_size = 2000; /* more than the corpus supports: stops at min_frequency */
    mmt_bpe_vocab *v = NULL;
    CHECK_OK(mmt_bpe_train((const char *const *)texts, n, &p, &v));
    if (v) {
        CHECK(mmt_bpe_vocab_size(v) < 2000 && mmt_bpe_vocab_size(v) > MMT_BPE_BASE_VOCAB);
        CHECK_OK(mmt_bpe_vocab_write(v, dir));
    }
    mmt_bpe_vocab_free(v);
    mmt_tokenizer *t = load_dir(dir);
    const char *const samples[] = {"A small red circle left of a blue square",
                                   "unseen words: zebra 1234 ??", "café über it's (x)"};
    const char *const expect[] = {"a small red circle left of a blue square",
                                  "unseen words : zebra 1 2 3 4 ??", "café über it 's ( x )"};
    for (size_t i = 0; t && i < 3; i++) {
        int32_t ids[77];
        int64_t m;
        char out[256];
        size_t len;
        CHECK_OK(mmt_tokenizer_encode(t, samples[i], strlen(samples[i]), ids, 77, &m));
        CHECK_OK(mmt_tokenizer_decode(t, ids, m, 1, out, sizeof out, &len));
        CHECK_MSG(strcmp(out, expect[i]) == 0, "decoded \"%s\"", out);
    }
    mmt_tokenizer_free(t);
    remove_dir(dir);
    free_corpus(texts, n);
}

static void test_errors(void) {
    mmt_bpe_params p;
    mmt_bpe_params_default(&p);
    mmt_bpe_vocab *v = NULL;
    const char *blank[] = {"", "   ", "\t\n"};
    CHECK_FAILS(mmt_bpe_train(blank, 3, &p, &v), MMT_STATUS_INVALID_ARGUMENT,
                "corpus has no words");
    CHECK(!strchr(mmt_last_error(), '\n'));
    CHECK_FAILS(mmt_bpe_train(NULL, 0, &p, &v), MMT_STATUS_INVALID_ARGUMENT, "no words");
    const char *one[] = {"a cat"};
    p.vocab_size = 513;
    CHECK_FAILS(mmt_bpe_train(one, 1, &p, &v), MMT_STATUS_INVALID_ARGUMENT,
                "vocab size 513 is outside 514..");
    CHECK(!strchr(mmt_last_error(), '\n'));
    p.vocab_size = 600;
    p.min_frequency = 0;
    CHECK_FAILS(mmt_bpe_train(one, 1, &p, &v), MMT_STATUS_INVALID_ARGUMENT, "min frequency");
    p.min_frequency = 2;
    CHECK(v == NULL);
    CHECK(mmt_bpe_train_file(MMT_BUILD_DIR "/no/such/corpus.txt", &p, &v) != MMT_OK);
    CHECK(strstr(mmt_last_error(), "corpus.txt") != NULL);
    /* Exactly the base vocabulary: no merges. */
    p.vocab_size = MMT_BPE_BASE_VOCAB;
    CHECK_OK(mmt_bpe_train(one, 1, &p, &v));
    if (v) CHECK(mmt_bpe_vocab_size(v) == 514 && mmt_bpe_merge_count(v) == 0);
    mmt_bpe_vocab_free(v);
    mmt_bpe_vocab_free(NULL);
}

int main(void) {
    RUN(test_parity_with_transformers);
    RUN(test_deterministic_and_exact_size);
    RUN(test_round_trip);
    RUN(test_errors);
    return check_summary();
}
