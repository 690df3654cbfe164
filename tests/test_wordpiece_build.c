/*
 * test_wordpiece_build.c — `mmtune wordpiece` (src/data/wordpiece_build.h): a WordPiece
 * vocabulary built from captions.
 *
 * Reference: tests/fixtures/git_init/ from tools/fixtures/make_git_init_fixtures.py — for the
 * corpus captions.txt, the tokenizer.json and tokenizer_config.json transformers 5 writes for
 * BertTokenizer(vocab=<mmtune's vocabulary>, model_max_length=512), and the ids and decoded
 * text of AutoTokenizer.from_pretrained(<mmtune's folder>) on every caption and on probes
 * (unseen words, capitals, accents, emoji, special tokens in text, a word over 100 letters).
 * Checks: both files byte-identical; ids and decoded text equal (exact); the layout of
 * wordpiece_build.h (specials 0..4, words by count, characters, ## continuations); any random
 * lower-case ASCII word and every corpus word tokenize without [UNK]; the same words in any
 * order give the same bytes; .jsonl input equals plain text; one-line errors; every
 * allocation failure is reported and frees what was allocated; the CLI's files and exit codes.
 */
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "core/alloc.h"
#include "core/json.h"
#include "core/rng.h"
#include "data/wordpiece.h"
#include "data/wordpiece_build.h"

static char tmp[256];

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, name);
    return buf[k];
}

static mmt_wordpiece_vocab *build_fixture(int64_t min_frequency) {
    mmt_wordpiece_build_params p;
    mmt_wordpiece_build_params_default(&p);
    p.min_frequency = min_frequency;
    mmt_wordpiece_vocab *v = NULL;
    CHECK_OK(mmt_wordpiece_build_file(fixture("git_init/captions.txt"), &p, &v));
    return v;
}

static void test_files_match_transformers(void) {
    mmt_wordpiece_vocab *v = build_fixture(2);
    if (!v) return;
    CHECK_OK(mmt_wordpiece_vocab_write(v, tmp_path("api")));
    char ref[512];
    snprintf(ref, sizeof ref, "%s/git_init/tokenizer", MMT_FIXTURE_DIR);
    CHECK_MSG(check_same_file(tmp_path("api"), ref, "tokenizer.json"), "tokenizer.json differs from transformers'");
    CHECK_MSG(check_same_file(tmp_path("api"), ref, "tokenizer_config.json"),
              "tokenizer_config.json differs from transformers'");
    mmt_wordpiece_vocab_free(v);
}

static void test_ids_match_transformers(void) {
    mmt_wordpiece *wp = NULL;
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_wordpiece_load_dir(tmp_path("api"), &wp));
    CHECK_OK(mmt_json_parse_file(fixture("git_init/wordpiece_ids.json"), &doc));
    if (!wp || !doc) goto done;
    const mmt_json *cases = mmt_json_root(doc);
    CHECK(cases->len > 150);
    int bad = 0;
    for (size_t i = 0; i < cases->len; i++) {
        const mmt_json *c = &cases->items[i];
        const char *text = c->items[0].string;
        const mmt_json *want = &c->items[1];
        int32_t ids[512];
        int64_t n = 0;
        CHECK_OK(mmt_wordpiece_encode(wp, text, c->items[0].len, 1, ids, 512, &n));
        int same = n == (int64_t)want->len;
        for (int64_t k = 0; same && k < n; k++) same = ids[k] == want->items[k].integer;
        char out[2048];
        size_t len = 0;
        CHECK_OK(mmt_wordpiece_decode(wp, ids, n, 1, out, sizeof out, &len));
        same = same && len == c->items[2].len && !memcmp(out, c->items[2].string, len);
        if (!same && bad++ < 5) fprintf(stderr, "case %zu differs: \"%s\"\n", i, text);
    }
    CHECK_MSG(bad == 0, "%d of %zu texts differ from transformers", bad, cases->len);
done:
    mmt_json_free(doc);
    mmt_wordpiece_free(wp);
}

/* wordpiece_build.h's id layout, read back through the tokenizer. */
static void test_layout(void) {
    mmt_wordpiece_vocab *v = build_fixture(2);
    mmt_wordpiece *wp = NULL;
    CHECK_OK(mmt_wordpiece_load_dir(tmp_path("api"), &wp));
    if (!v || !wp) goto done;
    static const char *const specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 5; i++) CHECK(!strcmp(mmt_wordpiece_vocab_token(v, i), specials[i]));
    const mmt_wordpiece_info *info = mmt_wordpiece_info_of(wp);
    CHECK(info->pad == MMT_WORDPIECE_PAD_ID && info->unk == MMT_WORDPIECE_UNK_ID && info->cls == MMT_WORDPIECE_CLS_ID &&
          info->sep == MMT_WORDPIECE_SEP_ID && info->mask == MMT_WORDPIECE_MASK_ID);
    CHECK(info->vocab_size == mmt_wordpiece_vocab_size(v) && info->model_max_length == 512);
    CHECK(!strcmp(mmt_wordpiece_vocab_token(v, 5), "a")); /* the corpus' most frequent word */
    CHECK(mmt_wordpiece_vocab_token(v, -1) == NULL);
    CHECK(mmt_wordpiece_vocab_token(v, mmt_wordpiece_vocab_size(v)) == NULL);
    /* every printable lower-case ASCII character, and ## for letters and digits only */
    for (int c = 0x21; c < 0x7f; c++) {
        char one[2] = {(char)c, 0}, cont[4] = {'#', '#', (char)c, 0};
        if (c >= 'A' && c <= 'Z') continue;
        CHECK_MSG(mmt_wordpiece_token_to_id(wp, one, 1) >= 0, "no token '%s'", one);
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        CHECK_MSG((mmt_wordpiece_token_to_id(wp, cont, 3) >= 0) == alnum, "token '%s'", cont);
    }
    /* corpus characters beyond ASCII: accents are stripped, Greek stays, CJK is isolated */
    CHECK(mmt_wordpiece_token_to_id(wp, "##λ", strlen("##λ")) >= 0);
    CHECK(mmt_wordpiece_token_to_id(wp, "ß", strlen("ß")) >= 0);
    CHECK(mmt_wordpiece_token_to_id(wp, "中", strlen("中")) >= 0);
    CHECK(mmt_wordpiece_token_to_id(wp, "##中", strlen("##中")) < 0);
    CHECK(mmt_wordpiece_token_to_id(wp, "é", strlen("é")) < 0);
    /* random lower-case ASCII words never need [UNK] */
    uint64_t state = 7;
    int unk = 0;
    for (int w = 0; w < 2000; w++) {
        char word[24];
        int len = 1 + (int)(mmt_splitmix64(&state) % 20);
        for (int k = 0; k < len; k++) word[k] = "abcdefghijklmnopqrstuvwxyz0123456789"[mmt_splitmix64(&state) % 36];
        int32_t ids[64];
        int64_t n = 0;
        CHECK_OK(mmt_wordpiece_encode(wp, word, (size_t)len, 0, ids, 64, &n));
        for (int64_t k = 0; k < n && k < 64; k++) unk += ids[k] == MMT_WORDPIECE_UNK_ID;
    }
    CHECK_MSG(unk == 0, "%d [UNK] in random lower-case words", unk);
    /* min_frequency: 1 keeps every word, a huge one none (only characters remain) */
    mmt_wordpiece_vocab *all = build_fixture(1), *none = build_fixture(1000000);
    if (all && none) {
        CHECK(mmt_wordpiece_vocab_word_tokens(all) == mmt_wordpiece_vocab_distinct_words(all));
        CHECK(mmt_wordpiece_vocab_word_tokens(all) > mmt_wordpiece_vocab_word_tokens(v));
        CHECK(mmt_wordpiece_vocab_word_tokens(none) == 0);
        CHECK(mmt_wordpiece_vocab_size(none) < mmt_wordpiece_vocab_size(v));
    }
    mmt_wordpiece_vocab_free(all);
    mmt_wordpiece_vocab_free(none);
done:
    mmt_wordpiece_free(wp);
    mmt_wordpiece_vocab_free(v);
}

/* The same words in another order, or from a .jsonl, give the same bytes. */
static void test_order_and_jsonl(void) {
    static const char *const texts[] = {"Two red circles.", "a blue square", "red circles, red squares",
                                        "A small star", "blue star; small circle", "two squares"};
    const int64_t n = 6;
    const char *reversed[6];
    for (int64_t i = 0; i < n; i++) reversed[i] = texts[n - 1 - i];
    mmt_wordpiece_build_params p;
    mmt_wordpiece_build_params_default(&p);
    mmt_wordpiece_vocab *a = NULL, *b = NULL, *c = NULL;
    CHECK_OK(mmt_wordpiece_build(texts, n, &p, &a));
    CHECK_OK(mmt_wordpiece_build(reversed, n, &p, &b));
    FILE *f = fopen(tmp_path("pairs.jsonl"), "w");
    for (int64_t i = 0; f && i < n; i++) fprintf(f, "{\"image_path\": \"x.png\", \"text\": \"%s\"}\n", texts[i]);
    if (f) fclose(f);
    CHECK_OK(mmt_wordpiece_build_file(tmp_path("pairs.jsonl"), &p, &c));
    if (!a || !b || !c) goto done;
    CHECK_OK(mmt_wordpiece_vocab_write(a, tmp_path("order_a")));
    CHECK_OK(mmt_wordpiece_vocab_write(b, tmp_path("order_b")));
    CHECK_OK(mmt_wordpiece_vocab_write(c, tmp_path("order_c")));
    CHECK(check_same_file(tmp_path("order_a"), tmp_path("order_b"), "tokenizer.json"));
    CHECK(check_same_file(tmp_path("order_a"), tmp_path("order_c"), "tokenizer.json"));
    /* counts: red 3, circles 2, squares 2 (squares: "red squares" + "two squares"), ... */
    CHECK(!strcmp(mmt_wordpiece_vocab_token(a, 5), "red"));
    CHECK(mmt_wordpiece_vocab_distinct_words(a) == 13);
done:
    mmt_wordpiece_vocab_free(a);
    mmt_wordpiece_vocab_free(b);
    mmt_wordpiece_vocab_free(c);
}

static void test_errors(void) {
    mmt_wordpiece_build_params p;
    mmt_wordpiece_build_params_default(&p);
    mmt_wordpiece_vocab *v = NULL;
    static const char *const ok[] = {"a red circle"};
    static const char *const blank[] = {"", "   \t", "\n"};
    static const char *const bad_utf8[] = {"fine", "bad \xff byte"};
    p.min_frequency = 0;
    CHECK_FAILS(mmt_wordpiece_build(ok, 1, &p, &v), MMT_STATUS_INVALID_ARGUMENT, "min_frequency");
    mmt_wordpiece_build_params_default(&p);
    p.model_max_length = 0;
    CHECK_FAILS(mmt_wordpiece_build(ok, 1, &p, &v), MMT_STATUS_INVALID_ARGUMENT, "model_max_length");
    mmt_wordpiece_build_params_default(&p);
    CHECK_FAILS(mmt_wordpiece_build(blank, 3, &p, &v), MMT_STATUS_INVALID_ARGUMENT, "no word");
    CHECK_FAILS(mmt_wordpiece_build(ok, 0, &p, &v), MMT_STATUS_INVALID_ARGUMENT, "no word");
    CHECK_FAILS(mmt_wordpiece_build(bad_utf8, 2, &p, &v), MMT_STATUS_BAD_FORMAT, "text 1");
    CHECK(v == NULL);
    CHECK_FAILS(mmt_wordpiece_build_file(tmp_path("nowhere.txt"), &p, &v), MMT_STATUS_NOT_FOUND, "nowhere.txt");
    FILE *f = fopen(tmp_path("broken.jsonl"), "w");
    if (f) fputs("{\"image_path\": \"x.png\"}\n", f), fclose(f);
    CHECK(mmt_wordpiece_build_file(tmp_path("broken.jsonl"), &p, &v) != MMT_OK);
    CHECK(strstr(mmt_last_error(), "broken.jsonl") != NULL);
    f = fopen(tmp_path("empty.txt"), "w");
    if (f) fputs("\n\n", f), fclose(f);
    CHECK_FAILS(mmt_wordpiece_build_file(tmp_path("empty.txt"), &p, &v), MMT_STATUS_INVALID_ARGUMENT, "empty.txt");
    CHECK(v == NULL);
}

static void test_allocation_failures(void) {
    static const char *const texts[] = {"Two red circles, left of a Blue square.", "naïve Ελληνικά 中文",
                                        "two"};
    mmt_wordpiece_build_params p;
    mmt_wordpiece_build_params_default(&p);
    p.min_frequency = 1;
    int failures = 0;
    for (long k = 1; k < 2000; k++) {
        mmt_wordpiece_vocab *v = NULL;
        size_t before = mmt_alloc_current_bytes();
        mmt_alloc_fail_after(k);
        mmt_status s = mmt_wordpiece_build(texts, 3, &p, &v);
        if (s == MMT_OK) s = mmt_wordpiece_vocab_write(v, tmp_path("oom"));
        mmt_alloc_fail_after(0);
        mmt_wordpiece_vocab_free(v);
        if (s == MMT_OK) break;
        CHECK_MSG(s == MMT_STATUS_OUT_OF_MEMORY, "allocation %ld: %s", k, mmt_last_error());
        CHECK_MSG(mmt_alloc_current_bytes() == before, "allocation %ld failing leaks memory", k);
        failures++;
    }
    CHECK(failures > 10);
    mmt_wordpiece_vocab *v = NULL;
    CHECK_OK(mmt_wordpiece_build(texts, 3, &p, &v));
    if (v) CHECK_OK(mmt_wordpiece_vocab_write(v, tmp_path("oom_ref")));
    mmt_wordpiece_vocab_free(v);
    CHECK(check_same_file(tmp_path("oom"), tmp_path("oom_ref"), "tokenizer.json"));
}

static void test_cli(void) {
    CHECK(run("wordpiece --input %s --out %s/cli", fixture("git_init/captions.txt"), tmp) == 0);
    CHECK(out_text && strstr(out_text, "wrote 192 tokens"));
    char ref[512], dir[400];
    snprintf(ref, sizeof ref, "%s/git_init/tokenizer", MMT_FIXTURE_DIR);
    snprintf(dir, sizeof dir, "%s/cli", tmp);
    CHECK(check_same_file(dir, ref, "tokenizer.json") && check_same_file(dir, ref, "tokenizer_config.json"));
    /* a non-empty --out is refused without --overwrite, and kept */
    CHECK(run("wordpiece --input %s --out %s/cli --min-frequency 1", fixture("git_init/captions.txt"), tmp) == 1);
    CHECK(err_text && strstr(err_text, "--overwrite"));
    CHECK(check_same_file(dir, ref, "tokenizer.json"));
    CHECK(run("wordpiece --input %s --out %s/cli --min-frequency 1 --model-max-length 64 --overwrite",
              fixture("git_init/captions.txt"), tmp) == 0);
    CHECK(!check_same_file(dir, ref, "tokenizer.json"));
    size_t n = 0;
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    char *config = check_read_file(path, &n);
    CHECK(config && strstr(config, "\"model_max_length\": 64,"));
    free(config);
    CHECK(run("wordpiece --input %s/nowhere.txt --out %s/e", tmp, tmp) == 1);
    CHECK(err_text && strstr(err_text, "nowhere.txt") && !exists("%s/e", tmp));
    CHECK(run("wordpiece --input %s --out %s/e --min-frequency 0", fixture("git_init/captions.txt"), tmp) == 2);
    CHECK(run("wordpiece --input %s --out %s/e --frobnicate", fixture("git_init/captions.txt"), tmp) == 2);
    CHECK(run("wordpiece --out %s/e", tmp) == 2 && err_text && strstr(err_text, "--input"));
    CHECK(run("wordpiece --input %s", fixture("git_init/captions.txt")) == 2 && err_text && strstr(err_text, "--out"));
    CHECK(run("wordpiece --help") == 0 && out_text && strstr(out_text, "usage: mmtune wordpiece"));
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s/wordpiece_build_test_XXXXXX", MMT_BUILD_DIR);
    if (!mkdtemp(tmp)) return 1;
    cli_run_setup(tmp);
    RUN(test_files_match_transformers);
    RUN(test_ids_match_transformers);
    RUN(test_layout);
    RUN(test_order_and_jsonl);
    RUN(test_errors);
    RUN(test_allocation_failures);
    RUN(test_cli);
    cli_run_cleanup();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return check_summary();
}
