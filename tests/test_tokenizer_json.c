/*
 * test_tokenizer_json.c — tokenizers read from Hugging Face tokenizer.json against ids and
 * texts made by transformers 5 / tokenizers themselves.
 *
 * Reference: tests/fixtures/tokenizer_json/ (tools/fixtures/make_tokenizer_json_fixtures.py).
 * For every one of its 3500-odd strings (ASCII, punctuation, accents, CJK, Hangul, emoji,
 * control and invisible characters, whitespace varieties, long words, specials in the text):
 *   bert_uncased, bert_cased, bert_strip, bert_lower_keep: transformers 5 AutoTokenizer
 *     (BertTokenizer) on tokenizer.json + tokenizer_config.json;
 *   bert_raw: tokenizers.Tokenizer on a tokenizer.json alone (extra added tokens, lstrip /
 *     rstrip, a normalized added token, max_input_chars_per_word 12, no decoder clean-up);
 *   clip: transformers 5 CLIPTokenizer on the tokenizer.json of models/mmtune-clip-tiny.
 * Checked: ids with special tokens, without, and truncated to 16; decode(ids,
 * skip_special_tokens=True); decode of random id sequences with and without skipping.
 * Tolerance: none, ids and texts must be identical. Also: the CLIP tokenizer from
 * tokenizer.json gives the same ids as from vocab.json + merges.txt (both modes), legacy
 * "a b" merges read like pairs, transformers 5's tokenizer_config.json override, bad files
 * (one-line messages naming the component), allocation failures.
 * MMT_TOKENIZER_JSON_SWEEP=<file made with --sweep> adds an exhaustive check of the BERT
 * normaliser and pre-tokenizer over every code point (too large to commit).
 */
#include <stdint.h>

#include "check.h"
#include "core/alloc.h"
#include "core/json.h"
#include "data/tokenizer.h"
#include "data/tokenizer_json.h"
#include "data/wordpiece.h"

#define CAP (1 << 16)
#define TRUNCATE 16
#define CLIP_MODEL MMT_SOURCE_DIR "/models/mmtune-clip-tiny"

static mmt_json_doc *cases_doc;
static const mmt_json *texts;

static const char *fx(const char *name) { return fixture(name); }

static int ids_equal(const int32_t *a, int64_t na, const mmt_json *b) {
    if (!b || b->type != MMT_JSON_ARRAY || (int64_t)b->len != na) return 0;
    for (int64_t i = 0; i < na; i++)
        if (!b->items[i].is_integer || b->items[i].integer != a[i]) return 0;
    return 1;
}

static void show_ids(const char *label, const int32_t *ids, int64_t n) {
    fprintf(stderr, "  %s:", label);
    for (int64_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* The reference of one tokenizer; null entries in ids/decoded defer to "same_as". */
typedef struct reference {
    const mmt_json *self, *base;
} reference;

static reference reference_of(const char *name) {
    const mmt_json *all = mmt_json_get(mmt_json_root(cases_doc), "tokenizers");
    reference r = {mmt_json_get(all, name), NULL};
    const mmt_json *same = mmt_json_get(r.self, "same_as");
    if (same && same->type == MMT_JSON_STRING) r.base = mmt_json_get(all, same->string);
    CHECK_MSG(r.self, "no reference for %s", name);
    return r;
}

static const mmt_json *ref_item(reference r, const char *key, size_t i) {
    const mmt_json *v = &mmt_json_get(r.self, key)->items[i];
    if (v->type == MMT_JSON_NULL && r.base) v = &mmt_json_get(r.base, key)->items[i];
    return v;
}

/* ---- WordPiece ---------------------------------------------------------------------- */

static mmt_wordpiece *load_bert(const char *name, int with_config) {
    char json[4200], config[4200];
    snprintf(json, sizeof json, "%s/tokenizer_json/%s/tokenizer.json", MMT_FIXTURE_DIR, name);
    snprintf(config, sizeof config, "%s/tokenizer_json/%s/tokenizer_config.json", MMT_FIXTURE_DIR, name);
    mmt_wordpiece *t = NULL;
    CHECK_OK(mmt_wordpiece_load_json(json, with_config ? config : NULL, &t));
    return t;
}

/* Every text of cases.json through t against the reference `name`: ids (with and without
 * the frame, truncated), decoded text, and the decode cases. */
static void check_bert(mmt_wordpiece *t, const char *name) {
    reference r = reference_of(name);
    if (!t || !r.self) return;
    const mmt_wordpiece_info *info = mmt_wordpiece_info_of(t);
    int32_t *ids = malloc(CAP * sizeof *ids), *bare = malloc(CAP * sizeof *bare), cut[TRUNCATE];
    char *out = malloc(CAP);
    int64_t bad_ids = 0, bad_bare = 0, bad_cut = 0, bad_text = 0, n_cut = 0;
    const mmt_json *truncated = mmt_json_get(mmt_json_get(r.self, "truncated"), "16");
    for (size_t i = 0; i < texts->len; i++) {
        const mmt_json *text = &texts->items[i];
        int64_t n = 0, nb = 0, nc = 0;
        mmt_status s = mmt_wordpiece_encode(t, text->string, text->len, 1, ids, CAP, &n);
        const mmt_json *want = ref_item(r, "ids", i);
        if (s != MMT_OK || !ids_equal(ids, n, want)) {
            if (bad_ids++ < 5) {
                fprintf(stderr, "%s case %zu \"%.60s\": ids differ (%s)\n", name, i, text->string, mmt_last_error());
                show_ids("got", ids, n);
            }
            continue;
        }
        s = mmt_wordpiece_encode(t, text->string, text->len, 0, bare, CAP, &nb);
        if (s != MMT_OK || nb != n - info->n_prefix - info->n_suffix ||
            memcmp(bare, ids + info->n_prefix, (size_t)nb * sizeof *bare) != 0)
            bad_bare++;
        s = mmt_wordpiece_encode(t, text->string, text->len, 1, cut, TRUNCATE, &nc);
        char key[24];
        snprintf(key, sizeof key, "%zu", i);
        const mmt_json *want_cut = mmt_json_get(truncated, key);
        n_cut += want_cut != NULL;
        if (s != MMT_OK || nc != n || (want_cut && !ids_equal(cut, TRUNCATE, want_cut)) ||
            (n <= TRUNCATE && memcmp(cut, ids, (size_t)n * sizeof *cut) != 0))
            bad_cut++;
        size_t len = 0;
        const mmt_json *want_text = ref_item(r, "decoded", i);
        s = mmt_wordpiece_decode(t, ids, n, 1, out, CAP, &len);
        if (s != MMT_OK || len != want_text->len || memcmp(out, want_text->string, len) != 0) {
            if (bad_text++ < 5)
                fprintf(stderr, "%s case %zu: decoded \"%.80s\", transformers \"%.80s\"\n", name, i, out,
                        want_text->string);
        }
    }
    CHECK_MSG(bad_ids == 0, "%s: %lld of %zu texts encode differently", name, (long long)bad_ids, texts->len);
    CHECK_MSG(bad_bare == 0, "%s: %lld texts differ without special tokens", name, (long long)bad_bare);
    CHECK_MSG(bad_cut == 0 && n_cut > 0, "%s: %lld truncations differ (%lld checked)", name, (long long)bad_cut,
              (long long)n_cut);
    CHECK_MSG(bad_text == 0, "%s: %lld texts decode differently", name, (long long)bad_text);

    const mmt_json *decode = mmt_json_get(r.self, "decode");
    int64_t bad_decode = 0;
    for (size_t i = 0; decode && i < decode->len; i++) {
        const mmt_json *c = &decode->items[i], *list = mmt_json_get(c, "ids");
        for (size_t k = 0; k < list->len; k++) ids[k] = (int32_t)list->items[k].integer;
        for (int skip = 0; skip < 2; skip++) {
            const mmt_json *want = mmt_json_get(c, skip ? "skip" : "all");
            size_t len = 0;
            mmt_status s = mmt_wordpiece_decode(t, ids, (int64_t)list->len, skip, out, CAP, &len);
            if (s != MMT_OK || len != want->len || memcmp(out, want->string, len) != 0) {
                if (bad_decode++ < 5)
                    fprintf(stderr, "%s decode case %zu (skip %d): \"%s\", transformers \"%s\"\n", name, i, skip,
                            out, want->string);
            }
        }
    }
    CHECK_MSG(bad_decode == 0 && decode && decode->len > 100, "%s: %lld decode cases differ", name,
              (long long)bad_decode);
    free(ids);
    free(bare);
    free(out);
}

static void test_bert_fixtures(void) {
    static const char *names[] = {"bert_uncased", "bert_cased", "bert_strip", "bert_lower_keep"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        mmt_wordpiece *t = load_bert(names[k], 1);
        check_bert(t, names[k]);
        mmt_wordpiece_free(t);
    }
    mmt_wordpiece *t = load_bert("bert_raw", 0);
    check_bert(t, "bert_raw");
    mmt_wordpiece_free(t);
}

/* transformers 5 BertTokenizer rebuilds its normaliser from tokenizer_config.json: a cased
 * tokenizer.json with an uncased config is the uncased tokenizer (checked in the script). */
static void test_bert_config_wins(void) {
    char json[4200], config[4200];
    snprintf(json, sizeof json, "%s", fx("tokenizer_json/bert_cased/tokenizer.json"));
    snprintf(config, sizeof config, "%s", fx("tokenizer_json/bert_uncased/tokenizer_config.json"));
    mmt_wordpiece *t = NULL;
    CHECK_OK(mmt_wordpiece_load_json(json, config, &t));
    check_bert(t, "bert_uncased");
    mmt_wordpiece_free(t);
}

static void test_bert_info(void) {
    mmt_wordpiece *t = NULL;
    CHECK_OK(mmt_wordpiece_load_dir(fx("tokenizer_json/bert_uncased"), &t));
    if (!t) return;
    const mmt_wordpiece_info *info = mmt_wordpiece_info_of(t);
    CHECK(info->cls == 101 && info->sep == 102 && info->pad == 0 && info->unk == 100 && info->mask == 103);
    CHECK(info->n_prefix == 1 && info->n_suffix == 1);
    CHECK(info->model_max_length == 512 && !info->clean_up_tokenization_spaces);
    CHECK(info->vocab_size > 1000);
    CHECK(mmt_wordpiece_token_to_id(t, "[CLS]", 5) == 101 && mmt_wordpiece_token_to_id(t, "nope!", 5) == -1);
    CHECK(strcmp(mmt_wordpiece_id_to_token(t, 102), "[SEP]") == 0 && !mmt_wordpiece_id_to_token(t, -1) &&
          !mmt_wordpiece_id_to_token(t, (int32_t)info->vocab_size));

    /* capacity rules and errors */
    int32_t ids[8];
    int64_t n = 0;
    CHECK_OK(mmt_wordpiece_encode(t, "a a a a a a a a a a", 19, 1, NULL, 0, &n));
    CHECK(n == 12);
    CHECK_FAILS(mmt_wordpiece_encode(t, "a", 1, 1, ids, 1, &n), MMT_STATUS_INVALID_ARGUMENT, "frame");
    CHECK_OK(mmt_wordpiece_encode(t, "a a a", 5, 1, ids, 2, &n));
    CHECK(n == 5 && ids[0] == 101 && ids[1] == 102);
    CHECK_OK(mmt_wordpiece_encode(t, "a a a", 5, 0, ids, 1, &n));
    CHECK(n == 3);
    CHECK_FAILS(mmt_wordpiece_encode(t, "ab\xff", 3, 1, ids, 8, &n), MMT_STATUS_BAD_FORMAT, "offset 2");
    /* word lists (generation's allowed / bad words): each word alone, empty ones skipped */
    {
        const char *words[] = {"hypertension", "", "  ", "a\r", "chest x-ray"};
        int32_t *wids = NULL;
        int64_t *wlen = NULL, count = 0, one = 0;
        CHECK_OK(mmt_wordpiece_word_sequences(t, words, 5, &wids, &wlen, &count));
        CHECK(count == 3);
        int64_t at = 0, k = 0;
        for (int w = 0; wids && w < 5; w++) {
            int32_t alone[16];
            CHECK_OK(mmt_wordpiece_encode(t, words[w], strcspn(words[w], "\r"), 0, alone, 16, &one));
            if (one == 0) continue;
            CHECK(k < count && wlen[k] == one && !memcmp(wids + at, alone, (size_t)one * sizeof(int32_t)));
            at += one, k++;
        }
        CHECK(k == 3);
        mmt_free(wids);
        mmt_free(wlen);
        const char *none[] = {"", " "};
        CHECK_FAILS(mmt_wordpiece_word_sequences(t, none, 2, &wids, &wlen, &count), MMT_STATUS_BAD_FORMAT, "no words");
        CHECK(!wids && !wlen && count == 0);
        const char *bad[] = {"ok", "b\xff"};
        CHECK_FAILS(mmt_wordpiece_word_sequences(t, bad, 2, &wids, &wlen, &count), MMT_STATUS_BAD_FORMAT, "word 1");
    }
    int32_t unknown = (int32_t)info->vocab_size;
    char out[8];
    size_t len = 0;
    CHECK_FAILS(mmt_wordpiece_decode(t, &unknown, 1, 1, out, sizeof out, &len), MMT_STATUS_INVALID_ARGUMENT,
                "unknown id");
    /* a cut at a character boundary, the full length still reported */
    const char *text = "中中中";
    int64_t m = 0;
    int32_t zh[8];
    CHECK_OK(mmt_wordpiece_encode(t, text, strlen(text), 0, zh, 8, &m));
    CHECK_OK(mmt_wordpiece_decode(t, zh, m, 1, out, 5, &len)); /* "中 中 中" */
    CHECK_MSG(strcmp(out, "中 ") == 0 && len == 11, "\"%s\" %zu", out, len);
    CHECK_OK(mmt_wordpiece_decode(t, zh, m, 1, out, 4, &len));
    CHECK_MSG(strcmp(out, "中") == 0 && len == 11, "\"%s\" %zu", out, len);
    mmt_wordpiece_free(t);
    mmt_wordpiece_free(NULL);
}

/* Words joined as "a|b|c|". */
typedef struct word_list {
    char *text;
    size_t n, cap;
} word_list;

static mmt_status collect(void *ctx, const char *word, size_t len) {
    word_list *w = ctx;
    if (w->n + len + 2 > w->cap) {
        size_t cap = 2 * (w->n + len + 2);
        char *p = realloc(w->text, cap);
        if (!p) return MMT_STATUS_OUT_OF_MEMORY;
        w->text = p;
        w->cap = cap;
    }
    memcpy(w->text + w->n, word, len);
    w->n += len;
    w->text[w->n++] = '|';
    w->text[w->n] = '\0';
    return MMT_OK;
}

static void test_pretokenize(void) {
    mmt_wordpiece *t = load_bert("bert_uncased", 1);
    if (!t) return;
    word_list w = {0};
    const char *text = "Héllo, WORLD![SEP]中文\x01 İs";
    CHECK_OK(mmt_wordpiece_pretokenize(t, text, strlen(text), collect, &w));
    CHECK_MSG(w.text && strcmp(w.text, "hello|,|world|!|中|文|is|") == 0, "%s", w.text);
    free(w.text);
    CHECK_FAILS(mmt_wordpiece_pretokenize(t, text, strlen(text), NULL, NULL), MMT_STATUS_INVALID_ARGUMENT,
                "bad arguments");
    mmt_wordpiece_free(t);
}

/* ---- CLIP --------------------------------------------------------------------------- */

static void check_clip(mmt_tokenizer *t, const char *label) {
    reference r = reference_of("clip");
    if (!t || !r.self) return;
    int32_t *ids = malloc(CAP * sizeof *ids), cut[TRUNCATE];
    char *out = malloc(CAP);
    int64_t bad_ids = 0, bad_cut = 0, bad_text = 0;
    const mmt_json *truncated = mmt_json_get(mmt_json_get(r.self, "truncated"), "16");
    for (size_t i = 0; i < texts->len; i++) {
        const mmt_json *text = &texts->items[i];
        int64_t n = 0, nc = 0;
        mmt_status s = mmt_tokenizer_encode(t, text->string, text->len, ids, CAP, &n);
        if (s != MMT_OK || !ids_equal(ids, n, ref_item(r, "ids", i))) {
            if (bad_ids++ < 5) fprintf(stderr, "%s case %zu \"%.60s\": ids differ\n", label, i, text->string);
            continue;
        }
        char key[24];
        snprintf(key, sizeof key, "%zu", i);
        const mmt_json *want_cut = mmt_json_get(truncated, key);
        s = mmt_tokenizer_encode(t, text->string, text->len, cut, TRUNCATE, &nc);
        if (s != MMT_OK || nc != n || (want_cut && !ids_equal(cut, TRUNCATE, want_cut))) bad_cut++;
        size_t len = 0;
        const mmt_json *want_text = ref_item(r, "decoded", i);
        s = mmt_tokenizer_decode(t, ids, n, 1, out, CAP, &len);
        if (s != MMT_OK || len != want_text->len || memcmp(out, want_text->string, len) != 0) {
            if (bad_text++ < 5)
                fprintf(stderr, "%s case %zu: decoded \"%.80s\", transformers \"%.80s\"\n", label, i, out,
                        want_text->string);
        }
    }
    CHECK_MSG(bad_ids == 0, "%s: %lld of %zu texts encode differently", label, (long long)bad_ids, texts->len);
    CHECK_MSG(bad_cut == 0, "%s: %lld truncations differ", label, (long long)bad_cut);
    CHECK_MSG(bad_text == 0, "%s: %lld texts decode differently", label, (long long)bad_text);
    const mmt_json *decode = mmt_json_get(r.self, "decode");
    int64_t bad_decode = 0;
    for (size_t i = 0; decode && i < decode->len; i++) {
        const mmt_json *c = &decode->items[i], *list = mmt_json_get(c, "ids"), *want = mmt_json_get(c, "skip");
        for (size_t k = 0; k < list->len; k++) ids[k] = (int32_t)list->items[k].integer;
        size_t len = 0;
        if (mmt_tokenizer_decode(t, ids, (int64_t)list->len, 1, out, CAP, &len) != MMT_OK || len != want->len ||
            memcmp(out, want->string, len) != 0)
            bad_decode++;
    }
    CHECK_MSG(bad_decode == 0, "%s: %lld decode cases differ", label, (long long)bad_decode);
    free(ids);
    free(out);
}

static void test_clip_fixtures(void) {
    mmt_tokenizer *t = NULL;
    CHECK_OK(mmt_tokenizer_load_json(fx("tokenizer_json/clip/tokenizer.json"), &t));
    check_clip(t, "clip");
    mmt_tokenizer_free(t);
    t = NULL;
    CHECK_OK(mmt_tokenizer_load_json(fx("tokenizer_json/clip_legacy_merges/tokenizer.json"), &t));
    check_clip(t, "clip_legacy_merges");
    mmt_tokenizer_free(t);
}

/* The default model's tokenizer.json and its vocab.json + merges.txt are one tokenizer. */
static void test_clip_model_files(void) {
    mmt_tokenizer *a = NULL, *b = NULL;
    CHECK_OK(mmt_tokenizer_load(CLIP_MODEL "/vocab.json", CLIP_MODEL "/merges.txt", &a));
    CHECK_OK(mmt_tokenizer_load_json(CLIP_MODEL "/tokenizer.json", &b));
    if (!a || !b) goto done;
    CHECK(mmt_tokenizer_vocab_size(a) == mmt_tokenizer_vocab_size(b));
    CHECK(mmt_tokenizer_merge_count(a) == mmt_tokenizer_merge_count(b));
    CHECK(mmt_tokenizer_bos(a) == mmt_tokenizer_bos(b) && mmt_tokenizer_eos(a) == mmt_tokenizer_eos(b));
    for (int64_t id = 0; id < mmt_tokenizer_vocab_size(a); id++) {
        const char *x = mmt_tokenizer_id_to_token(a, (int32_t)id), *y = mmt_tokenizer_id_to_token(b, (int32_t)id);
        CHECK((!x && !y) || (x && y && strcmp(x, y) == 0));
    }
    int32_t *x = malloc(CAP * sizeof *x), *y = malloc(CAP * sizeof *y);
    for (int mode = 0; mode < 2; mode++) {
        mmt_tokenizer_set_mode(a, (mmt_tokenizer_mode)mode);
        mmt_tokenizer_set_mode(b, (mmt_tokenizer_mode)mode);
        int64_t differ = 0;
        for (size_t i = 0; i < texts->len; i++) {
            const mmt_json *text = &texts->items[i];
            int64_t na = 0, nb = 0;
            mmt_status sa = mmt_tokenizer_encode(a, text->string, text->len, x, CAP, &na);
            mmt_status sb = mmt_tokenizer_encode(b, text->string, text->len, y, CAP, &nb);
            differ += sa != sb || na != nb || memcmp(x, y, (size_t)na * sizeof *x) != 0;
        }
        CHECK_MSG(differ == 0, "mode %d: %lld texts differ between the two files", mode, (long long)differ);
    }
    free(x);
    free(y);
done:
    mmt_tokenizer_free(a);
    mmt_tokenizer_free(b);
}

/* ---- bad files ---------------------------------------------------------------------- */

/* The text of a fixture file with `from` replaced by `to` (all occurrences). */
static char *edited(const char *name, const char *from, const char *to) {
    size_t n = 0;
    char *src = check_read_file(fx(name), &n);
    if (!src) return NULL;
    size_t nf = strlen(from), nt = strlen(to), hits = 0;
    for (char *p = strstr(src, from); nf && p; p = strstr(p + nf, from)) hits++;
    CHECK_MSG(hits > 0 || !nf, "%s does not contain %s", name, from);
    char *out = malloc(n + hits * nt + 1), *w = out;
    for (char *p = src; *p;) {
        if (nf && strncmp(p, from, nf) == 0) {
            memcpy(w, to, nt);
            w += nt;
            p += nf;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    free(src);
    return out;
}

static int one_line(void) { return strchr(mmt_last_error(), '\n') == NULL; }

/* Parses text and loads it as WordPiece (kind 0) or CLIP (kind 1); returns the status. */
static mmt_status load_text(const char *text, int kind) {
    mmt_json_doc *doc = NULL;
    mmt_status s = text ? mmt_json_parse(text, strlen(text), "t.json", &doc) : MMT_STATUS_INTERNAL;
    if (s != MMT_OK) return s;
    if (kind == 0) {
        mmt_wordpiece *t = NULL;
        s = mmt_wordpiece_from_json(mmt_json_root(doc), "t.json", NULL, NULL, &t);
        CHECK((s == MMT_OK) == (t != NULL));
        mmt_wordpiece_free(t);
    } else {
        mmt_tokenizer *t = NULL;
        s = mmt_tokenizer_from_json(mmt_json_root(doc), "t.json", &t);
        CHECK((s == MMT_OK) == (t != NULL));
        mmt_tokenizer_free(t);
    }
    mmt_json_free(doc);
    return s;
}

typedef struct bad_case {
    const char *from, *to;
    mmt_status status;
    const char *needle;
} bad_case;

static void run_bad(const char *file, int kind, const bad_case *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char *text = edited(file, cases[i].from, cases[i].to);
        mmt_status s = load_text(text, kind);
        CHECK_MSG(s == cases[i].status && strstr(mmt_last_error(), cases[i].needle) && one_line(),
                  "%s with %s -> %s: got %s \"%s\", want %s \"%s\"", file, cases[i].from, cases[i].to,
                  mmt_status_name(s), mmt_last_error(), mmt_status_name(cases[i].status), cases[i].needle);
        free(text);
    }
}

static void test_bad_bert(void) {
    static const bad_case cases[] = {
        {"\"type\": \"WordPiece\",\n    \"unk", "\"type\": \"Unigram\",\n    \"unk", MMT_STATUS_UNSUPPORTED,
         "t.json: model: type \"Unigram\" is not supported"},
        {"\"type\": \"BertNormalizer\"", "\"type\": \"NFKC\"", MMT_STATUS_UNSUPPORTED, "t.json: normalizer: type \"NFKC\""},
        {"\"type\": \"BertPreTokenizer\"", "\"type\": \"Whitespace\"", MMT_STATUS_UNSUPPORTED,
         "t.json: pre_tokenizer: type \"Whitespace\""},
        {"\"type\": \"WordPiece\",\n    \"prefix\"", "\"type\": \"ByteLevel\",\n    \"prefix\"", MMT_STATUS_UNSUPPORTED,
         "t.json: decoder: type \"ByteLevel\""},
        {"\"type\": \"TemplateProcessing\"", "\"type\": \"ByteLevel\"", MMT_STATUS_UNSUPPORTED, "t.json: post_processor"},
        {"\"unk_token\": \"[UNK]\"", "\"unk_token\": \"[NOPE]\"", MMT_STATUS_BAD_FORMAT, "model.unk_token \"[NOPE]\""},
        {"\"[SEP]\": 102", "\"[SEP]\": 101", MMT_STATUS_BAD_FORMAT, "both have id 101"},
        {"\"[SEP]\": 102", "\"[SEP]\": -1", MMT_STATUS_BAD_FORMAT, "model.vocab: token \"[SEP]\": id must be"},
        {"\"[SEP]\": 102", "\"[SEP]\": 1e3", MMT_STATUS_BAD_FORMAT, "another number"},
        {"\"single_word\": false", "\"single_word\": true", MMT_STATUS_UNSUPPORTED, "single_word"},
        {"\"clean_text\": true", "\"clean_text\": 1", MMT_STATUS_BAD_FORMAT, "normalizer.clean_text: expected a boolean"},
        {"\"content\": \"[MASK]\"", "\"content\": \"\"", MMT_STATUS_BAD_FORMAT, "added_tokens[4]"},
        {"\"id\": \"A\"", "\"id\": \"B\"", MMT_STATUS_UNSUPPORTED, "only one sequence"},
        {"\"ids\": [\n          101", "\"idz\": [\n          101", MMT_STATUS_BAD_FORMAT, "special token \"[CLS]\""},
        {"\"model\": {", "\"model\": 3, \"x\": {", MMT_STATUS_BAD_FORMAT, "t.json: model: expected an object"},
        {"\"max_input_chars_per_word\": 100", "\"max_input_chars_per_word\": \"x\"", MMT_STATUS_BAD_FORMAT,
         "model.max_input_chars_per_word"},
    };
    run_bad("tokenizer_json/bert_uncased/tokenizer.json", 0, cases, sizeof cases / sizeof *cases);
    /* not JSON, or not a tokenizer.json */
    CHECK_FAILS(load_text("{\"model\": {", 0), MMT_STATUS_BAD_FORMAT, "t.json");
    CHECK_FAILS(load_text("[1, 2]", 0), MMT_STATUS_BAD_FORMAT, "expected a tokenizer.json object");
    CHECK_FAILS(load_text("{\"model\": {\"vocab\": {}}}", 0), MMT_STATUS_UNSUPPORTED, "type \"(none)\"");
    CHECK_FAILS(load_text("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", 0), MMT_STATUS_BAD_FORMAT,
                "model.vocab has 0 entries");
    /* the smallest file that loads: no normalizer, pre-tokenizer, post-processor or decoder */
    const char *tiny = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"ab\": 1, \"##c\": 2}}}";
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse(tiny, strlen(tiny), "tiny", &doc));
    mmt_wordpiece *t = NULL;
    if (doc) CHECK_OK(mmt_wordpiece_from_json(mmt_json_root(doc), "tiny", NULL, NULL, &t));
    if (t) {
        int32_t ids[8];
        int64_t n = 0;
        char out[32];
        size_t len;
        CHECK_OK(mmt_wordpiece_encode(t, "abc", 3, 1, ids, 8, &n));
        CHECK(n == 2 && ids[0] == 1 && ids[1] == 2);
        CHECK_OK(mmt_wordpiece_encode(t, "ab c", 4, 1, ids, 8, &n)); /* one word: no pre-tokenizer */
        CHECK(n == 1 && ids[0] == 0);
        ids[0] = 1, ids[1] = 2, ids[2] = 0;
        CHECK_OK(mmt_wordpiece_decode(t, ids, 3, 1, out, sizeof out, &len));
        CHECK_MSG(strcmp(out, "ab ##c [UNK]") == 0, "%s", out); /* no decoder: joined with spaces */
        CHECK(mmt_wordpiece_info_of(t)->cls == -1 && mmt_wordpiece_info_of(t)->pad == -1);
    }
    mmt_wordpiece_free(t);
    mmt_json_free(doc);
    /* files */
    mmt_wordpiece *w = (mmt_wordpiece *)1;
    CHECK_FAILS(mmt_wordpiece_load_json("/nonexistent/tokenizer.json", NULL, &w), MMT_STATUS_NOT_FOUND,
                "/nonexistent/tokenizer.json");
    CHECK(w == NULL);
    CHECK_FAILS(mmt_wordpiece_load_dir("/nonexistent", &w), MMT_STATUS_NOT_FOUND, "/nonexistent: no tokenizer.json");
    CHECK_FAILS(mmt_wordpiece_load_json(fx("tokenizer_json/bert_uncased/tokenizer.json"), "/nonexistent/c.json", &w),
                MMT_STATUS_NOT_FOUND, "/nonexistent/c.json");
    CHECK_FAILS(mmt_wordpiece_load_json(fx("tokenizer_json/clip/tokenizer.json"), NULL, &w), MMT_STATUS_UNSUPPORTED,
                "clip/tokenizer.json: model: type \"BPE\" is not supported here (expected WordPiece)");
}

static void test_bad_clip(void) {
    static const bad_case cases[] = {
        {"\"type\": \"BPE\"", "\"type\": \"WordPiece\"", MMT_STATUS_UNSUPPORTED, "t.json: model: type \"WordPiece\""},
        {"\"type\": \"NFC\"", "\"type\": \"NFKC\"", MMT_STATUS_UNSUPPORTED,
         "t.json: normalizer: type \"Sequence\" is not CLIP's"},
        {"\"type\": \"Lowercase\"", "\"type\": \"Strip\"", MMT_STATUS_UNSUPPORTED, "normalizer"},
        {"'s|'t|", "'S|'t|", MMT_STATUS_UNSUPPORTED, "t.json: pre_tokenizer"},
        {"\"use_regex\": true\n      }\n    ]", "\"use_regex\": false\n      }\n    ]", MMT_STATUS_UNSUPPORTED,
         "pre_tokenizer"},
        {"\"end_of_word_suffix\": \"</w>\"", "\"end_of_word_suffix\": null", MMT_STATUS_UNSUPPORTED, "end_of_word_suffix"},
        {"\"dropout\": null", "\"dropout\": 0.1", MMT_STATUS_UNSUPPORTED, "model.dropout"},
        {"\"byte_fallback\": false", "\"byte_fallback\": true", MMT_STATUS_UNSUPPORTED, "byte_fallback"},
        {"\"content\": \"<|endoftext|>\"", "\"content\": \"<|pad|>\"", MMT_STATUS_UNSUPPORTED,
         "added_tokens[1]: \"<|pad|>\" is not supported"},
        {"\"id\": 729", "\"id\": 7", MMT_STATUS_BAD_FORMAT, "added_tokens[0]: <|startoftext|> has id 7"},
        {"\"<|endoftext|>\",\n      730", "\"<|endoftext|>\",\n      7", MMT_STATUS_UNSUPPORTED, "post_processor"},
        {"\"type\": \"RobertaProcessing\"", "\"type\": \"Sequence\"", MMT_STATUS_UNSUPPORTED,
         "post_processor: type \"Sequence\""},
        {"\"type\": \"ByteLevel\",\n    \"add_prefix_space\": true", "\"type\": \"Fuse\",\n    \"add_prefix_space\": true",
         MMT_STATUS_UNSUPPORTED, "t.json: decoder: type \"Fuse\""},
        {"[\n        \"o\",\n        \"f</w>\"\n      ]", "\"o f</w>\"", MMT_STATUS_BAD_FORMAT,
         "model.merges[1]: expected a \"left right\""},
        {"[\n        \"o\",\n        \"f</w>\"\n      ]", "[\"o\", \"q</w>x\"]", MMT_STATUS_BAD_FORMAT,
         "t.json: model.merges[0]: merge \"o q</w>x\" uses a token missing from the vocabulary: \"q</w>x\""},
        {"\"merges\": [", "\"merges\": 3, \"x\": [", MMT_STATUS_BAD_FORMAT, "model.merges: expected an array"},
        {"\"<|startoftext|>\": 729", "\"<|start|>\": 729", MMT_STATUS_BAD_FORMAT,
         "t.json: model.vocab: the vocabulary lacks <|startoftext|>"},
    };
    run_bad("tokenizer_json/clip/tokenizer.json", 1, cases, sizeof cases / sizeof *cases);
    static const bad_case legacy[] = {
        {"\"o f</w>\"", "\"of</w>\"", MMT_STATUS_BAD_FORMAT,
         "model.merges[0]: malformed merge (expected \"left right\"): \"of</w>\""},
        {"\"o f</w>\"", "\"o  f</w>\"", MMT_STATUS_BAD_FORMAT, "malformed merge"},
        {"\"o f</w>\"", "[\"o\", \"f</w>\"]", MMT_STATUS_BAD_FORMAT, "model.merges[1]: expected a [left, right] pair"},
        {"\"o f</w>\"", "\"#version: 0.2\", \"o f</w>\"", MMT_OK, ""},
    };
    run_bad("tokenizer_json/clip_legacy_merges/tokenizer.json", 1, legacy, sizeof legacy / sizeof *legacy);
    mmt_tokenizer *t = (mmt_tokenizer *)1;
    CHECK_FAILS(mmt_tokenizer_load_json("/nonexistent/tokenizer.json", &t), MMT_STATUS_NOT_FOUND,
                "/nonexistent/tokenizer.json");
    CHECK(t == NULL);
    CHECK_FAILS(mmt_tokenizer_load_json(fx("tokenizer_json/bert_uncased/tokenizer.json"), &t), MMT_STATUS_UNSUPPORTED,
                "bert_uncased/tokenizer.json: model: type \"WordPiece\" is not supported here (expected BPE)");
}

/* ---- allocation failures ------------------------------------------------------------ */

static void test_alloc_failures(void) {
    int failures = 0;
    for (long k = 1; k < 400; k++) {
        mmt_wordpiece *t = NULL;
        mmt_alloc_fail_after(k);
        mmt_status s = mmt_wordpiece_load_dir(fx("tokenizer_json/bert_uncased"), &t);
        mmt_alloc_fail_after(0);
        CHECK((s == MMT_OK) == (t != NULL));
        if (s == MMT_OK) {
            mmt_wordpiece_free(t);
            break;
        }
        CHECK(s == MMT_STATUS_OUT_OF_MEMORY);
        failures++;
    }
    CHECK(failures > 5);
    failures = 0;
    for (long k = 1; k < 400; k++) {
        mmt_tokenizer *t = NULL;
        mmt_alloc_fail_after(k);
        mmt_status s = mmt_tokenizer_load_json(fx("tokenizer_json/clip/tokenizer.json"), &t);
        mmt_alloc_fail_after(0);
        CHECK((s == MMT_OK) == (t != NULL));
        if (s == MMT_OK) {
            mmt_tokenizer_free(t);
            break;
        }
        CHECK(s == MMT_STATUS_OUT_OF_MEMORY);
        failures++;
    }
    CHECK(failures > 5);
    mmt_wordpiece *t = load_bert("bert_raw", 0);
    if (!t) return;
    const char *text = "Ünïcödé NEW YORK text with 中文, xx <img> and emoji 😀 long enough to grow buffers";
    int32_t want[128], ids[128];
    int64_t n_want = 0, n = 0;
    CHECK_OK(mmt_wordpiece_encode(t, text, strlen(text), 1, want, 128, &n_want));
    for (long k = 1; k < 100; k++) {
        mmt_alloc_fail_after(k);
        mmt_status s = mmt_wordpiece_encode(t, text, strlen(text), 1, ids, 128, &n);
        mmt_alloc_fail_after(0);
        if (s == MMT_OK) {
            CHECK(n == n_want && memcmp(ids, want, (size_t)n * sizeof *ids) == 0);
            break;
        }
        CHECK(s == MMT_STATUS_OUT_OF_MEMORY);
    }
    char out[256];
    size_t len;
    mmt_alloc_fail_after(1);
    CHECK(mmt_wordpiece_decode(t, want, n_want, 1, out, sizeof out, &len) == MMT_STATUS_OUT_OF_MEMORY);
    mmt_alloc_fail_after(0);
    mmt_wordpiece_free(t);
}

/* ---- the exhaustive sweep (MMT_TOKENIZER_JSON_SWEEP) -------------------------------- */

static void test_sweep(void) {
    const char *path = getenv("MMT_TOKENIZER_JSON_SWEEP");
    if (!path) return;
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse_file(path, &doc));
    if (!doc) return;
    const mmt_json *strings = mmt_json_get(mmt_json_root(doc), "texts");
    const mmt_json *words = mmt_json_get(mmt_json_root(doc), "words");
    word_list want = {0}, got = {0};
    for (size_t v = 0; words && v < words->len; v++) {
        mmt_wordpiece *t = load_bert(words->keys[v], 1);
        int64_t bad = 0;
        for (size_t i = 0; t && i < strings->len; i++) {
            const mmt_json *list = &words->items[v].items[i];
            want.n = got.n = 0;
            if (want.text) want.text[0] = '\0';
            if (got.text) got.text[0] = '\0';
            for (size_t k = 0; k < list->len; k++) collect(&want, list->items[k].string, list->items[k].len);
            mmt_status s = mmt_wordpiece_pretokenize(t, strings->items[i].string, strings->items[i].len, collect, &got);
            if (s != MMT_OK || want.n != got.n || (want.n && memcmp(want.text, got.text, want.n) != 0)) {
                if (bad++ < 5)
                    fprintf(stderr, "%s sweep %zu: \"%.120s\"\n  tokenizers \"%.120s\"\n", words->keys[v], i,
                            got.text ? got.text : "", want.text ? want.text : "");
            }
        }
        CHECK_MSG(bad == 0, "%s: %lld of %zu sweep strings differ", words->keys[v], (long long)bad, strings->len);
        mmt_wordpiece_free(t);
    }
    free(want.text);
    free(got.text);
    mmt_json_free(doc);
}

int main(void) {
    CHECK_OK(mmt_json_parse_file(fixture("tokenizer_json/cases.json"), &cases_doc));
    if (!cases_doc) return check_summary();
    texts = mmt_json_get(mmt_json_root(cases_doc), "texts");
    RUN(test_bert_fixtures);
    RUN(test_bert_config_wins);
    RUN(test_bert_info);
    RUN(test_pretokenize);
    RUN(test_clip_fixtures);
    RUN(test_clip_model_files);
    RUN(test_bad_bert);
    RUN(test_bad_clip);
    RUN(test_alloc_failures);
    RUN(test_sweep);
    mmt_json_free(cases_doc);
    return check_summary();
}
