/*
 * test_tokenizer.c — the CLIP BPE tokenizer against ids made by transformers itself.
 *
 * Reference: tests/fixtures/tokenizer/cases.json (tools/fixtures/make_tokenizer_fixtures.py):
 * every string encoded by transformers 5.x CLIPTokenizer (fast mode) and by the Python
 * CLIPTokenizer of transformers 4.x without ftfy (slow mode), untruncated and with
 * truncation=True, max_length=77. Tolerance: none, ids must be identical.
 * Also: load and encode errors, decode, allocation-failure injection, two threads sharing one
 * tokenizer. Setting MMT_TOKENIZER_SWEEP=<file made with --sweep> adds an exhaustive check
 * over every code point (too large to commit).
 */
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include <time.h>

#include "check.h"
#include "core/alloc.h"
#include "core/json.h"
#include "data/tokenizer.h"

static mmt_tokenizer *full_tok;

static mmt_tokenizer *load_dir(const char *dir) {
    char vocab[4200], merges[4200];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", fixture(dir));
    snprintf(merges, sizeof merges, "%s/merges.txt", fixture(dir));
    mmt_tokenizer *t = NULL;
    CHECK_OK(mmt_tokenizer_load(vocab, merges, &t));
    return t;
}

static int ids_equal(const int32_t *a, int64_t na, const mmt_json *b) {
    if (!b || b->type != MMT_JSON_ARRAY || (int64_t)b->len != na) return 0;
    for (int64_t i = 0; i < na; i++)
        if (!b->items[i].is_integer || b->items[i].integer != a[i]) return 0;
    return 1;
}

static void print_mismatch(const char *what, int64_t index, const mmt_json *c,
                           const int32_t *got, int64_t n) {
    const mmt_json *text = mmt_json_get(c, "text");
    fprintf(stderr, "%s case %lld: text (%zu bytes) \"%.80s\"\n  got:", what, (long long)index,
            text->len, text->string);
    for (int64_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", got[i]);
    fprintf(stderr, "\n");
}

/* Runs every case of a cases.json against t in one mode; returns the number identical. */
static int64_t run_cases(mmt_tokenizer *t, const char *path, mmt_tokenizer_mode mode,
                         int64_t *n_cases, int quiet) {
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse_file(path, &doc));
    if (!doc) return 0;
    const mmt_json *cases = mmt_json_get(mmt_json_root(doc), "cases");
    CHECK(cases && cases->type == MMT_JSON_ARRAY);
    const char *key = mode == MMT_TOKENIZER_SLOW ? "slow" : "fast";
    const char *key77 = mode == MMT_TOKENIZER_SLOW ? "slow_77" : "fast_77";
    mmt_tokenizer_set_mode(t, mode);
    int64_t cap = 1 << 16, good = 0, shown = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    for (size_t i = 0; cases && i < cases->len; i++) {
        const mmt_json *c = &cases->items[i];
        const mmt_json *text = mmt_json_get(c, "text");
        const mmt_json *want = mmt_json_get(c, key);
        if (!want) want = mmt_json_get(c, "fast"); /* slow is stored only when it differs */
        const mmt_json *want77 = mmt_json_get(c, key77);
        if (!want77) want77 = want;
        int64_t n = 0, n77 = 0;
        int ok = mmt_tokenizer_encode(t, text->string, text->len, ids, cap, &n) == MMT_OK &&
                 ids_equal(ids, n, want);
        if (!ok && shown++ < 5 && !quiet) print_mismatch(key, (int64_t)i, c, ids, n);
        int32_t ids77[MMT_CLIP_CONTEXT_LENGTH];
        int ok77 = mmt_tokenizer_encode(t, text->string, text->len, ids77,
                                        MMT_CLIP_CONTEXT_LENGTH, &n77) == MMT_OK &&
                   n77 == n &&
                   ids_equal(ids77, n77 < MMT_CLIP_CONTEXT_LENGTH ? n77 : MMT_CLIP_CONTEXT_LENGTH,
                             want77);
        if (ok && !ok77 && shown++ < 5 && !quiet) print_mismatch(key77, (int64_t)i, c, ids77, 77);
        good += ok && ok77;
    }
    *n_cases = cases ? (int64_t)cases->len : 0;
    free(ids);
    mmt_json_free(doc);
    mmt_tokenizer_set_mode(t, MMT_TOKENIZER_FAST);
    return good;
}

static void test_load_full(void) {
    full_tok = load_dir("tokenizer");
    if (!full_tok) return;
    CHECK(mmt_tokenizer_bos(full_tok) == 49406);
    CHECK(mmt_tokenizer_eos(full_tok) == 49407);
    CHECK(mmt_tokenizer_vocab_size(full_tok) == 49408);
    CHECK(mmt_tokenizer_merge_count(full_tok) == 48894);
    CHECK(strcmp(mmt_tokenizer_id_to_token(full_tok, 320), "a</w>") == 0);
    CHECK(mmt_tokenizer_id_to_token(full_tok, 49408) == NULL);
}

static void test_known_example(void) {
    static const int32_t want[] = {49406, 320, 1125, 539, 320, 2368, 49407};
    for (int mode = 0; mode < 2; mode++) {
        mmt_tokenizer_set_mode(full_tok, (mmt_tokenizer_mode)mode);
        int32_t ids[16];
        int64_t n = 0;
        CHECK_OK(mmt_tokenizer_encode(full_tok, "a photo of a cat", 16, ids, 16, &n));
        CHECK(n == 7 && memcmp(ids, want, sizeof want) == 0);
    }
    mmt_tokenizer_set_mode(full_tok, MMT_TOKENIZER_FAST);
}

static void test_fixture_cases(void) {
    for (int mode = 0; mode < 2; mode++) {
        int64_t n = 0;
        int64_t good = run_cases(full_tok, fixture("tokenizer/cases.json"),
                                 (mmt_tokenizer_mode)mode, &n, 0);
        printf("     %s mode: %lld / %lld strings identical (untruncated and max_length 77)\n",
               mode ? "slow" : "fast", (long long)good, (long long)n);
        CHECK(n >= 2000);
        CHECK(good == n);
    }
}

static void test_small_vocab(void) {
    mmt_tokenizer *t = load_dir("tokenizer/small");
    if (!t) return;
    CHECK(mmt_tokenizer_vocab_size(t) == 1514);
    CHECK(mmt_tokenizer_bos(t) == 1512 && mmt_tokenizer_eos(t) == 1513);
    for (int mode = 0; mode < 2; mode++) {
        int64_t n = 0;
        int64_t good = run_cases(t, fixture("tokenizer/small/cases.json"),
                                 (mmt_tokenizer_mode)mode, &n, 0);
        printf("     small vocab, %s mode: %lld / %lld identical\n", mode ? "slow" : "fast",
               (long long)good, (long long)n);
        CHECK(n > 0 && good == n);
    }
    mmt_tokenizer_free(t);
}

static void test_sweep(void) {
    const char *path = getenv("MMT_TOKENIZER_SWEEP");
    if (!path) {
        printf("     (MMT_TOKENIZER_SWEEP not set: exhaustive code point sweep skipped)\n");
        return;
    }
    for (int mode = 0; mode < 2; mode++) {
        int64_t n = 0;
        int64_t good = run_cases(full_tok, path, (mmt_tokenizer_mode)mode, &n, 0);
        printf("     sweep, %s mode: %lld / %lld identical\n", mode ? "slow" : "fast",
               (long long)good, (long long)n);
        CHECK(good == n);
    }
}

static void test_truncation(void) {
    char text[2000];
    size_t len = 0;
    for (int i = 0; i < 100; i++) len += (size_t)snprintf(text + len, sizeof text - len, "cat ");
    int32_t full[128], cut[77], tiny[3];
    int64_t n = 0, n77 = 0, n3 = 0, n0 = 0;
    CHECK_OK(mmt_tokenizer_encode(full_tok, text, len, full, 128, &n));
    CHECK(n == 102);
    CHECK_OK(mmt_tokenizer_encode(full_tok, text, len, cut, 77, &n77));
    CHECK(n77 == 102);
    CHECK(memcmp(cut, full, 76 * sizeof *cut) == 0 && cut[76] == 49407);
    CHECK_OK(mmt_tokenizer_encode(full_tok, text, len, tiny, 3, &n3));
    CHECK(n3 == 102 && tiny[0] == 49406 && tiny[1] == full[1] && tiny[2] == 49407);
    CHECK_OK(mmt_tokenizer_encode(full_tok, text, len, NULL, 0, &n0));
    CHECK(n0 == 102);
    CHECK_OK(mmt_tokenizer_encode(full_tok, "", 0, tiny, 2, &n0));
    CHECK(n0 == 2 && tiny[0] == 49406 && tiny[1] == 49407);
    CHECK_FAILS(mmt_tokenizer_encode(full_tok, "x", 1, tiny, 1, &n0),
                MMT_STATUS_INVALID_ARGUMENT, "capacity");
}

/* mmt_tokenizer_encode_limit: within the limit, ids and count are exactly encode's (every
 * prefix length of a mixed text, both modes); past it the count is only "more than limit",
 * and a 4 MB single word is refused from its length (at most max_token_len bytes per token)
 * without running BPE on it. */
static void test_encode_limit(void) {
    const char *words[] = {"cat ", "photographically ", "!? ", "naïve ", "东京 ", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "};
    char text[4000];
    size_t len = 0;
    for (int i = 0; i < 60; i++) len += (size_t)snprintf(text + len, sizeof text - len, "%s", words[(i * 7) % 6]);
    for (int mode = 0; mode < 2; mode++) {
        mmt_tokenizer_set_mode(full_tok, (mmt_tokenizer_mode)mode);
        int64_t within = 0, past = 0;
        for (size_t cut = 0; cut <= len; cut += 7) {
            while (cut < len && ((unsigned char)text[cut] & 0xC0) == 0x80) cut++; /* whole characters */
            for (int64_t limit = 5; limit <= 45; limit += 20) {
                int32_t a[128], b[128];
                int64_t na = 0, nb = 0;
                CHECK_OK(mmt_tokenizer_encode(full_tok, text, cut, a, 128, &na));
                CHECK_OK(mmt_tokenizer_encode_limit(full_tok, text, cut, b, 128, limit, &nb));
                if (na <= limit + 2) {
                    CHECK_MSG(nb == na && !memcmp(a, b, (size_t)(na < 128 ? na : 128) * sizeof *a),
                              "cut %zu limit %lld: %lld vs %lld ids", cut, (long long)limit, (long long)nb, (long long)na);
                    within++;
                } else {
                    CHECK_MSG(nb > limit + 2, "cut %zu limit %lld: %lld for a text of %lld", cut, (long long)limit,
                              (long long)nb, (long long)na);
                    past++;
                }
            }
        }
        CHECK(within > 20 && past > 20);
    }
    mmt_tokenizer_set_mode(full_tok, MMT_TOKENIZER_FAST);
    size_t big = (size_t)4 << 20;
    char *word = mmt_malloc(big);
    if (!word) return;
    memset(word, 'q', big);
    int32_t ids[77];
    int64_t n = 0;
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    CHECK_OK(mmt_tokenizer_encode_limit(full_tok, word, big, ids, 77, 100, &n));
    CHECK(n > 102);
    double took = (double)clock() / CLOCKS_PER_SEC - t0;
    printf("     a 4 MiB word refused after %.3f s of CPU\n", took);
    mmt_free(word);
}

static void test_invalid_utf8(void) {
    static const struct {
        const char *bytes;
        size_t len;
        const char *offset;
    } bad[] = {
        {"ab\x80", 3, "offset 2"},          /* lone continuation byte */
        {"\xc0\x80", 2, "offset 0"},        /* overlong NUL */
        {"x\xe0\x80\xaf", 4, "offset 1"},   /* overlong '/' */
        {"ok \xed\xa0\x80", 6, "offset 3"}, /* UTF-16 surrogate */
        {"\xf4\x90\x80\x80", 4, "offset 0"}, /* above U+10FFFF */
        {"caf\xc3", 4, "offset 3"},         /* truncated sequence */
        {"\xe2\x82z", 3, "offset 0"},       /* bad continuation */
        {"\xff", 1, "offset 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int32_t ids[8];
        int64_t n = 0;
        for (int mode = 0; mode < 2; mode++) {
            mmt_tokenizer_set_mode(full_tok, (mmt_tokenizer_mode)mode);
            CHECK_FAILS(mmt_tokenizer_encode(full_tok, bad[i].bytes, bad[i].len, ids, 8, &n),
                        MMT_STATUS_BAD_FORMAT, bad[i].offset);
        }
    }
    mmt_tokenizer_set_mode(full_tok, MMT_TOKENIZER_FAST);
    /* an embedded NUL is valid UTF-8 */
    int32_t ids[8];
    int64_t n = 0;
    CHECK_OK(mmt_tokenizer_encode(full_tok, "a\0b", 3, ids, 8, &n));
}

static void test_decode(void) {
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse_file(fixture("tokenizer/cases.json"), &doc));
    if (!doc) return;
    const mmt_json *cases = mmt_json_get(mmt_json_root(doc), "cases");
    int64_t checked = 0, good = 0;
    char out[8192];
    int32_t ids[4096];
    for (size_t i = 0; i < cases->len; i++) {
        const mmt_json *c = &cases->items[i];
        const mmt_json *want = mmt_json_get(c, "decoded");
        if (!want) continue;
        const mmt_json *fast = mmt_json_get(c, "fast");
        int64_t n = (int64_t)fast->len;
        if (n > 4096) continue;
        for (int64_t k = 0; k < n; k++) ids[k] = (int32_t)fast->items[k].integer;
        size_t len = 0;
        checked++;
        if (mmt_tokenizer_decode(full_tok, ids, n, 1, out, sizeof out, &len) == MMT_OK &&
            len == want->len && memcmp(out, want->string, len) == 0)
            good++;
        else if (checked - good <= 3)
            fprintf(stderr, "decode case %zu: got \"%s\" want \"%s\"\n", i, out, want->string);
    }
    printf("     decode: %lld / %lld identical to transformers decode()\n", (long long)good,
           (long long)checked);
    CHECK(checked > 100 && good == checked);
    mmt_json_free(doc);

    /* with specials kept, and a capacity too small for the text */
    static const int32_t cat[] = {49406, 320, 1125, 539, 320, 2368, 49407};
    size_t len = 0;
    CHECK_OK(mmt_tokenizer_decode(full_tok, cat, 7, 0, out, sizeof out, &len));
    CHECK(strcmp(out, "<|startoftext|>a photo of a cat <|endoftext|>") == 0);
    char small[6];
    CHECK_OK(mmt_tokenizer_decode(full_tok, cat, 7, 1, small, sizeof small, &len));
    CHECK(len == 16 && strcmp(small, "a pho") == 0);
    int32_t bad_id = 49408;
    CHECK_FAILS(mmt_tokenizer_decode(full_tok, &bad_id, 1, 1, out, sizeof out, &len),
                MMT_STATUS_INVALID_ARGUMENT, "49408");
}

/* ---- load errors: small files written to a temporary folder ---- */

static char tmp_dir[256];

static const char *tmp_write(const char *name, const char *content) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(content, f);
        fclose(f);
    }
    return path;
}

/* A minimal valid vocabulary: the 512 byte symbols, "ab", "ab</w>" and the specials. */
static char *tiny_vocab_json(int drop_specials, int drop_byte) {
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    n += (size_t)snprintf(s + n, cap - n, "{");
    int id = 0;
    for (int pass = 0; pass < 2; pass++) {
        int k = 0;
        for (int b = 0; b < 256; b++) {
            int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
            unsigned cp = printable ? (unsigned)b : 256u + (unsigned)k++;
            if (drop_byte && b == 'q' && pass == 1) {
                id++;
                continue;
            }
            char u[8];
            int ul;
            if (cp < 0x80) u[0] = (char)cp, ul = 1;
            else u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F)), ul = 2;
            const char *esc = (cp == '"' || cp == '\\') ? "\\" : "";
            n += (size_t)snprintf(s + n, cap - n, "\"%s%.*s%s\":%d,", esc, ul, u,
                                  pass ? "</w>" : "", id++);
        }
    }
    n += (size_t)snprintf(s + n, cap - n, "\"ab\":%d,\"ab</w>\":%d", id, id + 1);
    id += 2;
    if (!drop_specials)
        n += (size_t)snprintf(s + n, cap - n, ",\"<|startoftext|>\":%d,\"<|endoftext|>\":%d",
                              id, id + 1);
    snprintf(s + n, cap - n, "}");
    return s;
}

static void test_load_errors(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "%s/mmt_tokenizer_test_%d",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmp_dir);
    CHECK(system(cmd) == 0);

    char vocab[512], merges[512];
    char *good = tiny_vocab_json(0, 0);
    snprintf(vocab, sizeof vocab, "%s", tmp_write("vocab.json", good));
    snprintf(merges, sizeof merges, "%s",
             tmp_write("merges.txt", "#version: 0.2\na b\na b</w>\n"));
    mmt_tokenizer *t = NULL;
    CHECK_OK(mmt_tokenizer_load(vocab, merges, &t));
    if (t) {
        int32_t ids[8];
        int64_t n = 0;
        CHECK_OK(mmt_tokenizer_encode(t, "ab", 2, ids, 8, &n));
        CHECK(n == 3 && ids[1] == 513); /* "a b</w>" -> "ab</w>" */
        CHECK_OK(mmt_tokenizer_encode(t, "abc", 3, ids, 8, &n));
        CHECK(n == 4 && ids[1] == 512);
        mmt_tokenizer_free(t);
    }
    mmt_tokenizer_free(NULL);

    /* missing files */
    t = (mmt_tokenizer *)1;
    CHECK_FAILS(mmt_tokenizer_load("/nonexistent/vocab.json", merges, &t), MMT_STATUS_NOT_FOUND,
                "/nonexistent/vocab.json");
    CHECK(t == NULL);
    CHECK_FAILS(mmt_tokenizer_load(vocab, "/nonexistent/merges.txt", &t), MMT_STATUS_NOT_FOUND,
                "/nonexistent/merges.txt");

    /* malformed vocab.json */
    const char *bad_json = tmp_write("bad1.json", "{\"a\": 1,");
    CHECK_FAILS(mmt_tokenizer_load(bad_json, merges, &t), MMT_STATUS_BAD_FORMAT, "bad1.json");
    const char *not_object = tmp_write("bad2.json", "[1, 2, 3]");
    CHECK_FAILS(mmt_tokenizer_load(not_object, merges, &t), MMT_STATUS_BAD_FORMAT,
                "bad2.json: expected a JSON object");
    const char *string_id = tmp_write("bad3.json", "{\"a\": \"1\"}");
    CHECK_FAILS(mmt_tokenizer_load(string_id, merges, &t), MMT_STATUS_BAD_FORMAT,
                "bad3.json: token \"a\": id must be an integer");
    const char *negative = tmp_write("bad4.json", "{\"a\": -4}");
    CHECK_FAILS(mmt_tokenizer_load(negative, merges, &t), MMT_STATUS_BAD_FORMAT, "bad4.json");
    const char *huge = tmp_write("bad5.json", "{\"a\": 3000000000}");
    CHECK_FAILS(mmt_tokenizer_load(huge, merges, &t), MMT_STATUS_BAD_FORMAT, "bad5.json");
    char *no_specials = tiny_vocab_json(1, 0);
    CHECK_FAILS(mmt_tokenizer_load(tmp_write("bad6.json", no_specials), merges, &t),
                MMT_STATUS_BAD_FORMAT, "bad6.json: the vocabulary lacks <|startoftext|>");
    char *no_byte = tiny_vocab_json(0, 1);
    CHECK_FAILS(mmt_tokenizer_load(tmp_write("bad7.json", no_byte), merges, &t),
                MMT_STATUS_BAD_FORMAT, "bad7.json: the vocabulary lacks the byte-level token \"q</w>\"");
    free(no_specials);
    free(no_byte);

    /* malformed merges.txt */
    static const struct {
        const char *content, *needle;
    } bad_merges[] = {
        {"#version: 0.2\na b\nab\n", "bad.txt:3: malformed merge line"},
        {"#version: 0.2\na b c\n", "bad.txt:2: malformed merge line"},
        {"a  b\n", "bad.txt:1: malformed merge line"},
        {"#version: 0.2\n a\n", "bad.txt:2: malformed merge line"},
        {"#version: 0.2\na \n", "bad.txt:2: malformed merge line"},
        {"#version: 0.2\n\na b\n", "bad.txt:2: empty merge line"},
        {"#version: 0.2\nx y\n", "bad.txt:2: merge \"x y\" uses a token missing"},
        {"#version: 0.2\nb c\n", "bad.txt:2: merge \"b c\" uses a token missing"},
    };
    for (size_t i = 0; i < sizeof bad_merges / sizeof *bad_merges; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s", tmp_write("bad.txt", bad_merges[i].content));
        CHECK_FAILS(mmt_tokenizer_load(vocab, path, &t), MMT_STATUS_BAD_FORMAT,
                    bad_merges[i].needle);
    }
    /* CRLF and trailing blank lines are fine */
    snprintf(merges, sizeof merges, "%s", tmp_write("crlf.txt", "#version: 0.2\r\na b\r\n\r\n"));
    CHECK_OK(mmt_tokenizer_load(vocab, merges, &t));
    if (t) CHECK(mmt_tokenizer_merge_count(t) == 1);
    mmt_tokenizer_free(t);
    free(good);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    CHECK(system(cmd) == 0);
}

/* ---- files transformers reads differently, or not at all (issue 9) ----
 * What the references do, checked with transformers 5.24.0 (tokenizers 0.23.3) and 4.57.6
 * (the Python CLIPTokenizer) on the small fixture (docs/compatibility.md, "Tokenizer files"):
 *   - two tokens with one id: both load; 5.x decodes the id to either token, varying from
 *     run to run (hash order), 4.x to the later one in the file. mmtune: error.
 *   - no "#version" line: 5.x keeps line 1 as the first merge, 4.x drops line 1. mmtune:
 *     a warning; fast mode keeps the merge, slow mode drops it. The ids below are the two
 *     libraries' output for "the thing in the ocean" (tolerance: none).
 *   - a merge whose part or result is not in vocab.json: 5.x refuses the files ("Token `x`
 *     out of vocabulary"), 4.x loads them and maps a missing result to unk. mmtune: error
 *     naming the token. */

static int warnings;
static char last_warning[1024];

static void count_warning(mmt_log_level level, const char *message, void *user) {
    (void)user;
    if (level != MMT_LOG_WARN) return;
    warnings++;
    snprintf(last_warning, sizeof last_warning, "%s", message);
}

/* text with the first occurrence of find replaced (malloc'd). */
static char *replaced(const char *text, const char *find, const char *replace) {
    const char *at = strstr(text, find);
    CHECK(at != NULL);
    if (!at) return strdup(text);
    size_t n = strlen(text) + strlen(replace) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, replace, at + strlen(find));
    return out;
}

static void test_file_findings(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "%s/mmt_tokenizer_findings_%d",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    char cmd[600], vocab[4200], merges[4200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmp_dir);
    CHECK(system(cmd) == 0);
    mmt_tokenizer *t = NULL;

    /* duplicate ids: "ab</w>" takes the id of "ab" */
    char *good = tiny_vocab_json(0, 0);
    char *dup = replaced(good, "\"ab</w>\":513", "\"ab</w>\":512");
    snprintf(merges, sizeof merges, "%s", tmp_write("merges.txt", "#version: 0.2\na b\n"));
    CHECK_FAILS(mmt_tokenizer_load(tmp_write("dup_id.json", dup), merges, &t), MMT_STATUS_BAD_FORMAT,
                "dup_id.json: tokens \"ab\" and \"ab</w>\" both have id 512");
    CHECK(t == NULL);
    /* a repeated key is not a shared id: json.load keeps the last, so does mmtune */
    char *same_key = replaced(good, "\"ab</w>\":513", "\"ab\":512,\"ab</w>\":513");
    CHECK_OK(mmt_tokenizer_load(tmp_write("same_key.json", same_key), merges, &t));
    mmt_tokenizer_free(t);
    t = NULL;
    free(dup);
    free(same_key);

    /* merges naming tokens vocab.json lacks: a part, or the merged result */
    snprintf(vocab, sizeof vocab, "%s", tmp_write("vocab.json", good));
    static const struct {
        const char *content, *needle;
    } unknown[] = {
        {"#version: 0.2\nzz b\n", "unknown.txt:2: merge \"zz b\" uses a token missing from the vocabulary: \"zz\""},
        {"#version: 0.2\na zz\n", "unknown.txt:2: merge \"a zz\" uses a token missing from the vocabulary: \"zz\""},
        {"#version: 0.2\nb c\n", "unknown.txt:2: merge \"b c\" uses a token missing from the vocabulary: \"bc\""},
    };
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
        CHECK_FAILS(mmt_tokenizer_load(vocab, tmp_write("unknown.txt", unknown[i].content), &t),
                    MMT_STATUS_BAD_FORMAT, unknown[i].needle);
    free(good);

    /* no "#version" line: the small fixture's merges without their header */
    mmt_log_set_callback(count_warning, NULL);
    warnings = 0;
    snprintf(vocab, sizeof vocab, "%s", fixture("tokenizer/small/vocab.json"));
    char *with_header = check_read_file(fixture("tokenizer/small/merges.txt"), NULL);
    CHECK(with_header && strncmp(with_header, "#version: 0.2\n", 14) == 0);
    CHECK_OK(mmt_tokenizer_load(vocab, fixture("tokenizer/small/merges.txt"), &t));
    CHECK(warnings == 0);
    mmt_tokenizer_free(t);
    t = NULL;
    snprintf(merges, sizeof merges, "%s", tmp_write("no_header.txt", with_header ? with_header + 14 : ""));
    CHECK_OK(mmt_tokenizer_load(vocab, merges, &t));
    CHECK_MSG(warnings == 1 && strstr(last_warning, "no_header.txt: line 1 is the merge \"i n\", not a \"#version\" header"),
              "%d warnings, last: %s", warnings, last_warning);
    mmt_log_set_callback(NULL, NULL);
    if (t) {
        static const char *text = "the thing in the ocean";
        static const int32_t fast[] = {1512, 518, 946, 530, 518, 78, 685, 550, 1513};          /* 5.24.0 */
        static const int32_t slow[] = {1512, 518, 513, 72, 77, 326, 530, 518, 78, 685, 550, 1513}; /* 4.57.6 */
        int32_t ids[32];
        int64_t n = 0;
        CHECK_OK(mmt_tokenizer_encode(t, text, strlen(text), ids, 32, &n));
        CHECK(n == 9 && memcmp(ids, fast, sizeof fast) == 0);
        mmt_tokenizer_set_mode(t, MMT_TOKENIZER_SLOW);
        CHECK_OK(mmt_tokenizer_encode(t, text, strlen(text), ids, 32, &n));
        CHECK(n == 12 && memcmp(ids, slow, sizeof slow) == 0);
        mmt_tokenizer_free(t);
    }
    free(with_header);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    CHECK(system(cmd) == 0);
}

/* Every allocation in load and encode may fail: each must come back as an error, leak-free
 * (ASan's leak checker watches), and the tokenizer must still work afterwards. */
static void test_alloc_failures(void) {
    char vocab[4096], merges[4096];
    snprintf(vocab, sizeof vocab, "%s", fixture("tokenizer/small/vocab.json"));
    snprintf(merges, sizeof merges, "%s", fixture("tokenizer/small/merges.txt"));
    int failures = 0;
    for (long k = 1; k < 200; k++) {
        mmt_tokenizer *t = NULL;
        mmt_alloc_fail_after(k);
        mmt_status s = mmt_tokenizer_load(vocab, merges, &t);
        mmt_alloc_fail_after(0);
        if (s == MMT_OK) {
            mmt_tokenizer_free(t);
            break;
        }
        CHECK(t == NULL);
        failures++;
    }
    CHECK(failures > 3);
    const char *text = "Ünïcödé text with 中文 and emoji 😀 that is long enough to use buffers";
    for (int mode = 0; mode < 2; mode++) {
        mmt_tokenizer_set_mode(full_tok, (mmt_tokenizer_mode)mode);
        int32_t want[128], ids[128];
        int64_t n_want = 0, n = 0;
        CHECK_OK(mmt_tokenizer_encode(full_tok, text, strlen(text), want, 128, &n_want));
        for (long k = 1; k < 100; k++) {
            mmt_alloc_fail_after(k);
            mmt_status s = mmt_tokenizer_encode(full_tok, text, strlen(text), ids, 128, &n);
            mmt_alloc_fail_after(0);
            if (s == MMT_OK) {
                CHECK(n == n_want && memcmp(ids, want, (size_t)n * sizeof *ids) == 0);
                break;
            }
            CHECK(s == MMT_STATUS_OUT_OF_MEMORY);
        }
    }
    mmt_tokenizer_set_mode(full_tok, MMT_TOKENIZER_FAST);
}

/* ---- concurrency: threads share one tokenizer (and its BPE cache) ---- */

typedef struct thread_job {
    const mmt_json *cases;
    int offset;
    int64_t mismatches;
} thread_job;

static void *encode_all(void *arg) {
    thread_job *job = arg;
    static int32_t buffers[4][1 << 14];
    int32_t *ids = buffers[job->offset];
    for (int round = 0; round < 2; round++) {
        for (size_t k = 0; k < job->cases->len; k++) {
            /* start at different places so the threads race on the same cache entries */
            size_t i = (k + (size_t)job->offset * 997) % job->cases->len;
            const mmt_json *c = &job->cases->items[i];
            const mmt_json *text = mmt_json_get(c, "text");
            int64_t n = 0;
            if (mmt_tokenizer_encode(full_tok, text->string, text->len, ids, 1 << 14, &n) !=
                    MMT_OK ||
                !ids_equal(ids, n, mmt_json_get(c, "fast")))
                job->mismatches++;
        }
    }
    return NULL;
}

static void test_threads(void) {
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse_file(fixture("tokenizer/cases.json"), &doc));
    if (!doc) return;
    const mmt_json *cases = mmt_json_get(mmt_json_root(doc), "cases");
    pthread_t threads[4];
    thread_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){cases, i, 0};
        CHECK(pthread_create(&threads[i], NULL, encode_all, &jobs[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        CHECK(jobs[i].mismatches == 0);
    }
    mmt_json_free(doc);
}

int main(void) {
    RUN(test_load_full);
    if (!full_tok) return check_summary();
    RUN(test_known_example);
    RUN(test_fixture_cases);
    RUN(test_small_vocab);
    RUN(test_truncation);
    RUN(test_encode_limit);
    RUN(test_invalid_utf8);
    RUN(test_decode);
    RUN(test_load_errors);
    RUN(test_file_findings);
    RUN(test_alloc_failures);
    RUN(test_threads);
    RUN(test_sweep);
    mmt_tokenizer_free(full_tok);
    return check_summary();
}
