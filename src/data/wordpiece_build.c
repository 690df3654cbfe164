/*
 * wordpiece_build.c — a WordPiece vocabulary from captions, written as transformers 5 writes
 * BertTokenizer's files (wordpiece_build.h).
 *
 * 1. A tokenizer holding only the special tokens is made from the very JSON this file writes
 *    (so counting and later encoding share one normaliser and pre-tokenizer).
 * 2. Every text goes through mmt_wordpiece_pretokenize; distinct words are counted in a hash
 *    set.
 * 3. Tokens are laid out as the header says and the two files rendered: tokenizer.json as the
 *    tokenizers library serialises BertTokenizer's backend (serde_json's pretty printer: two
 *    spaces, non-ASCII raw, no final newline), tokenizer_config.json as transformers'
 *    save_pretrained (sorted keys, final newline).
 */
#include "data/wordpiece_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/json.h"
#include "data/pairs.h"
#include "data/unicode.h"
#include "data/wordpiece.h"

#define MAX_CHARS_PER_WORD 100         /* BertTokenizer's max_input_chars_per_word */
#define MAX_TOKENS ((int64_t)1 << 24)  /* ids must fit the tokenizers' int32 with room */
#define CORPUS_MAX_BYTES ((size_t)4 << 30)

static const char *const SPECIALS[MMT_WORDPIECE_N_SPECIAL] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

/* ---- a set of byte strings, each with a count ------------------------------------------ */

typedef struct str_entry {
    int64_t offset, len; /* into pool; the string is NUL-terminated there */
    int64_t count;
} str_entry;

typedef struct strset {
    char *pool;         /* owned */
    int64_t pool_len, pool_cap;
    str_entry *entries; /* owned; index = insertion order */
    int64_t n, cap;
    int64_t *slots;     /* owned: entry index or -1 */
    int64_t mask;
} strset;

static void strset_free(strset *s) {
    mmt_free(s->pool);
    mmt_free(s->entries);
    mmt_free(s->slots);
    memset(s, 0, sizeof *s);
}

static int64_t strset_find(const strset *s, const char *str, size_t n) {
    if (!s->slots) return -1;
    for (int64_t i = (int64_t)(mmt_hash64(str, n, 0) & (uint64_t)s->mask);; i = (i + 1) & s->mask) {
        int64_t e = s->slots[i];
        if (e < 0) return -1;
        if (s->entries[e].len == (int64_t)n && memcmp(s->pool + s->entries[e].offset, str, n) == 0) return e;
    }
}

static mmt_status strset_rehash(strset *s, int64_t n_slots) {
    int64_t *slots = mmt_malloc((size_t)n_slots * sizeof *slots);
    if (!slots) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < n_slots; i++) slots[i] = -1;
    for (int64_t e = 0; e < s->n; e++) {
        const str_entry *x = &s->entries[e];
        int64_t i = (int64_t)(mmt_hash64(s->pool + x->offset, (size_t)x->len, 0) & (uint64_t)(n_slots - 1));
        while (slots[i] >= 0) i = (i + 1) & (n_slots - 1);
        slots[i] = e;
    }
    mmt_free(s->slots);
    s->slots = slots;
    s->mask = n_slots - 1;
    return MMT_OK;
}

/* Adds `count` to str's entry, creating it (count 0) first when absent. */
static mmt_status strset_add(strset *s, const char *str, size_t n, int64_t count) {
    int64_t e = strset_find(s, str, n);
    if (e < 0) {
        if (!s->slots || 2 * (s->n + 1) > s->mask + 1) MMT_TRY(strset_rehash(s, s->slots ? 2 * (s->mask + 1) : 256));
        MMT_TRY(mmt_grow((void **)&s->entries, &s->cap, s->n + 1, sizeof *s->entries));
        MMT_TRY(mmt_grow((void **)&s->pool, &s->pool_cap, s->pool_len + (int64_t)n + 1, 1));
        memcpy(s->pool + s->pool_len, str, n);
        s->pool[s->pool_len + (int64_t)n] = '\0';
        e = s->n++;
        s->entries[e] = (str_entry){s->pool_len, (int64_t)n, 0};
        s->pool_len += (int64_t)n + 1;
        int64_t i = (int64_t)(mmt_hash64(str, n, 0) & (uint64_t)s->mask);
        while (s->slots[i] >= 0) i = (i + 1) & s->mask;
        s->slots[i] = e;
    }
    s->entries[e].count += count;
    return MMT_OK;
}

static const char *strset_string(const strset *s, int64_t e) { return s->pool + s->entries[e].offset; }

/* ---- the vocabulary ---------------------------------------------------------------------- */

struct mmt_wordpiece_vocab {
    strset tokens;            /* owned: entry index = id */
    int64_t model_max_length;
    int64_t word_tokens, distinct_words;
};

void mmt_wordpiece_build_params_default(mmt_wordpiece_build_params *p) {
    p->min_frequency = 2;
    p->model_max_length = 512;
}

int64_t mmt_wordpiece_vocab_size(const mmt_wordpiece_vocab *v) { return v->tokens.n; }
int64_t mmt_wordpiece_vocab_word_tokens(const mmt_wordpiece_vocab *v) { return v->word_tokens; }
int64_t mmt_wordpiece_vocab_distinct_words(const mmt_wordpiece_vocab *v) { return v->distinct_words; }

const char *mmt_wordpiece_vocab_token(const mmt_wordpiece_vocab *v, int64_t id) {
    return id >= 0 && id < v->tokens.n ? strset_string(&v->tokens, id) : NULL;
}

void mmt_wordpiece_vocab_free(mmt_wordpiece_vocab *v) {
    if (!v) return;
    strset_free(&v->tokens);
    mmt_free(v);
}

/* ---- rendering --------------------------------------------------------------------------- */

/* The parts of tokenizer.json that do not depend on the vocabulary, as tokenizers 0.23
 * serialises BertTokenizer's backend (transformers 5.24, tokenization_bert.py). */
static const char NORMALIZER_TO_DECODER[] =
    "  \"normalizer\": {\n"
    "    \"type\": \"BertNormalizer\",\n"
    "    \"clean_text\": true,\n"
    "    \"handle_chinese_chars\": true,\n"
    "    \"strip_accents\": null,\n"
    "    \"lowercase\": true\n"
    "  },\n"
    "  \"pre_tokenizer\": {\n"
    "    \"type\": \"BertPreTokenizer\"\n"
    "  },\n";

static void render_special(mmt_strbuf *b, const char *indent, const char *name, int type_id) {
    mmt_strbuf_printf(b,
                      "%s{\n%s  \"SpecialToken\": {\n%s    \"id\": \"%s\",\n%s    \"type_id\": %d\n%s  }\n%s}",
                      indent, indent, indent, name, indent, type_id, indent, indent);
}

static void render_sequence(mmt_strbuf *b, const char *indent, const char *name, int type_id) {
    mmt_strbuf_printf(b, "%s{\n%s  \"Sequence\": {\n%s    \"id\": \"%s\",\n%s    \"type_id\": %d\n%s  }\n%s}",
                      indent, indent, indent, name, indent, type_id, indent, indent);
}

/* TemplateProcessing "[CLS] $A [SEP]" / "[CLS] $A [SEP] $B:1 [SEP]:1", as BertTokenizer
 * builds it. */
static void render_post_processor(mmt_strbuf *b) {
    const char *in = "      ";
    mmt_strbuf_printf(b, "  \"post_processor\": {\n    \"type\": \"TemplateProcessing\",\n    \"single\": [\n");
    render_special(b, in, "[CLS]", 0);
    mmt_strbuf_printf(b, ",\n");
    render_sequence(b, in, "A", 0);
    mmt_strbuf_printf(b, ",\n");
    render_special(b, in, "[SEP]", 0);
    mmt_strbuf_printf(b, "\n    ],\n    \"pair\": [\n");
    render_special(b, in, "[CLS]", 0);
    mmt_strbuf_printf(b, ",\n");
    render_sequence(b, in, "A", 0);
    mmt_strbuf_printf(b, ",\n");
    render_special(b, in, "[SEP]", 0);
    mmt_strbuf_printf(b, ",\n");
    render_sequence(b, in, "B", 1);
    mmt_strbuf_printf(b, ",\n");
    render_special(b, in, "[SEP]", 1);
    mmt_strbuf_printf(b, "\n    ],\n    \"special_tokens\": {\n");
    static const int ids[2] = {MMT_WORDPIECE_CLS_ID, MMT_WORDPIECE_SEP_ID};
    for (int k = 0; k < 2; k++) {
        const char *name = SPECIALS[ids[k]];
        mmt_strbuf_printf(b,
                          "      \"%s\": {\n        \"id\": \"%s\",\n        \"ids\": [\n          %d\n        ],\n"
                          "        \"tokens\": [\n          \"%s\"\n        ]\n      }%s\n",
                          name, name, ids[k], name, k == 0 ? "," : "");
    }
    mmt_strbuf_printf(b, "    }\n  },\n");
}

static void render_tokenizer_json(const strset *tokens, mmt_strbuf *b) {
    mmt_strbuf_printf(b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
                         "  \"added_tokens\": [\n");
    for (int i = 0; i < MMT_WORDPIECE_N_SPECIAL; i++)
        mmt_strbuf_printf(b,
                          "    {\n      \"id\": %d,\n      \"content\": \"%s\",\n      \"single_word\": false,\n"
                          "      \"lstrip\": false,\n      \"rstrip\": false,\n      \"normalized\": false,\n"
                          "      \"special\": true\n    }%s\n",
                          i, SPECIALS[i], i + 1 < MMT_WORDPIECE_N_SPECIAL ? "," : "");
    mmt_strbuf_printf(b, "  ],\n");
    mmt_strbuf_append(b, NORMALIZER_TO_DECODER, sizeof NORMALIZER_TO_DECODER - 1);
    render_post_processor(b);
    mmt_strbuf_printf(b, "  \"decoder\": {\n    \"type\": \"WordPiece\",\n    \"prefix\": \"##\",\n"
                         "    \"cleanup\": true\n  },\n"
                         "  \"model\": {\n    \"type\": \"WordPiece\",\n    \"unk_token\": \"[UNK]\",\n"
                         "    \"continuing_subword_prefix\": \"##\",\n    \"max_input_chars_per_word\": %d,\n"
                         "    \"vocab\": {\n",
                      MAX_CHARS_PER_WORD);
    /* token strings are normalised text: no control characters, so mmt_strbuf_json_string's
     * escapes (quote, backslash) are serde_json's */
    for (int64_t id = 0; id < tokens->n; id++) {
        mmt_strbuf_printf(b, "      ");
        mmt_strbuf_json_string(b, strset_string(tokens, id), (size_t)tokens->entries[id].len);
        mmt_strbuf_printf(b, ": %lld%s\n", (long long)id, id + 1 < tokens->n ? "," : "");
    }
    mmt_strbuf_printf(b, "    }\n  }\n}");
}

/* tokenizer_config.json as BertTokenizer.save_pretrained writes it in transformers 5.24. */
static void render_config(int64_t model_max_length, mmt_strbuf *b) {
    mmt_strbuf_printf(b,
                      "{\n  \"backend\": \"tokenizers\",\n  \"cls_token\": \"[CLS]\",\n  \"do_lower_case\": true,\n"
                      "  \"mask_token\": \"[MASK]\",\n  \"model_max_length\": %lld,\n  \"pad_token\": \"[PAD]\",\n"
                      "  \"sep_token\": \"[SEP]\",\n  \"strip_accents\": null,\n  \"tokenize_chinese_chars\": true,\n"
                      "  \"tokenizer_class\": \"BertTokenizer\",\n  \"unk_token\": \"[UNK]\"\n}\n",
                      (long long)model_max_length);
}

/* The tokenizer that the files for `tokens` describe, made by data/wordpiece.c from them. */
static mmt_status tokenizer_of(const strset *tokens, int64_t model_max_length, mmt_wordpiece **out) {
    mmt_strbuf tj = {0}, cj = {0};
    mmt_json_doc *tdoc = NULL, *cdoc = NULL;
    render_tokenizer_json(tokens, &tj);
    render_config(model_max_length, &cj);
    mmt_status s = tj.failed || cj.failed ? MMT_STATUS_OUT_OF_MEMORY : MMT_OK;
    if (s == MMT_OK) s = mmt_json_parse(tj.data, tj.len, "tokenizer.json (built)", &tdoc);
    if (s == MMT_OK) s = mmt_json_parse(cj.data, cj.len, "tokenizer_config.json (built)", &cdoc);
    if (s == MMT_OK)
        s = mmt_wordpiece_from_json(mmt_json_root(tdoc), "tokenizer.json (built)", mmt_json_root(cdoc),
                                    "tokenizer_config.json (built)", out);
    mmt_json_free(tdoc);
    mmt_json_free(cdoc);
    mmt_strbuf_free(&tj);
    mmt_strbuf_free(&cj);
    return s;
}

/* ---- building ---------------------------------------------------------------------------- */

static mmt_status count_word(void *ctx, const char *word, size_t len) { return strset_add(ctx, word, len, 1); }

/* BertPreTokenizer always isolates punctuation and (after handle_chinese_chars) CJK
 * ideographs, so only other characters ever continue a word. */
static int continues_words(uint32_t cp) {
    int64_t lo = 0, hi = mmt_wordpiece_class_count - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if ((mmt_wordpiece_class_table[mid] >> 8) <= cp) lo = mid;
        else hi = mid - 1;
    }
    return !(mmt_wordpiece_class_table[lo] & (MMT_WP_PUNCT | MMT_WP_CJK));
}

typedef struct ranked_word {
    int64_t count;
    const char *s;
    int64_t len;
} ranked_word;

static int ranked_cmp(const void *pa, const void *pb) {
    const ranked_word *a = pa, *b = pb;
    if (a->count != b->count) return a->count > b->count ? -1 : 1;
    int64_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, (size_t)n);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

static int cp_cmp(const void *pa, const void *pb) {
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    return (a > b) - (a < b);
}

/* Words seen at least min_frequency times (and short enough for WordPiece), ranked. */
static mmt_status add_words(mmt_wordpiece_vocab *v, const strset *words, int64_t min_frequency) {
    ranked_word *r = mmt_malloc((size_t)(words->n ? words->n : 1) * sizeof *r);
    uint32_t *cps = mmt_malloc((MAX_CHARS_PER_WORD + 1) * 4 * sizeof *cps);
    mmt_status s = r && cps ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    int64_t n = 0;
    for (int64_t e = 0; s == MMT_OK && e < words->n; e++) {
        const str_entry *w = &words->entries[e];
        size_t bad;
        /* at most 4 bytes per character: a word of more than 4 * 100 bytes may still be short */
        if (w->count < min_frequency || w->len > 4 * MAX_CHARS_PER_WORD) continue;
        if (mmt_utf8_decode(words->pool + w->offset, (size_t)w->len, cps, &bad) > MAX_CHARS_PER_WORD) continue;
        r[n++] = (ranked_word){w->count, words->pool + w->offset, w->len};
    }
    if (s == MMT_OK) qsort(r, (size_t)n, sizeof *r, ranked_cmp);
    for (int64_t i = 0; s == MMT_OK && i < n; i++) s = strset_add(&v->tokens, r[i].s, (size_t)r[i].len, 0);
    v->word_tokens = n;
    mmt_free(r);
    mmt_free(cps);
    return s;
}

/* Single characters and their "##" forms: printable lower-case ASCII and every character of
 * every word seen. */
static mmt_status add_characters(mmt_wordpiece_vocab *v, const strset *words) {
    int64_t total = 128;
    for (int64_t e = 0; e < words->n; e++) total += words->entries[e].len;
    uint32_t *cps = mmt_malloc((size_t)total * sizeof *cps);
    if (!cps) return MMT_STATUS_OUT_OF_MEMORY;
    int64_t n = 0;
    for (uint32_t c = 0x21; c < 0x7f; c++)
        if (c < 'A' || c > 'Z') cps[n++] = c;
    for (int64_t e = 0; e < words->n; e++) {
        size_t bad;
        const str_entry *w = &words->entries[e];
        int64_t k = mmt_utf8_decode(words->pool + w->offset, (size_t)w->len, cps + n, &bad);
        if (k > 0) n += k; /* words come from validated text: k < 0 cannot happen */
    }
    qsort(cps, (size_t)n, sizeof *cps, cp_cmp);
    int64_t u = 0;
    for (int64_t i = 0; i < n; i++)
        if (u == 0 || cps[u - 1] != cps[i]) cps[u++] = cps[i];
    mmt_status s = MMT_OK;
    char piece[8] = "##";
    for (int64_t i = 0; s == MMT_OK && i < u; i++) {
        int k = mmt_utf8_encode(cps[i], piece + 2);
        if (strset_find(&v->tokens, piece + 2, (size_t)k) < 0) s = strset_add(&v->tokens, piece + 2, (size_t)k, 0);
    }
    for (int64_t i = 0; s == MMT_OK && i < u; i++) {
        if (!continues_words(cps[i])) continue;
        int k = mmt_utf8_encode(cps[i], piece + 2);
        s = strset_add(&v->tokens, piece, (size_t)k + 2, 0);
    }
    mmt_free(cps);
    return s;
}

mmt_status mmt_wordpiece_build(const char *const *texts, int64_t n, const mmt_wordpiece_build_params *p,
                               mmt_wordpiece_vocab **out) {
    if (!out || !p || (n > 0 && !texts)) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_wordpiece_build: NULL");
    *out = NULL;
    if (p->min_frequency < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "wordpiece: min_frequency %lld must be at least 1",
                        (long long)p->min_frequency);
    if (p->model_max_length < 1 || p->model_max_length > ((int64_t)1 << 40))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "wordpiece: model_max_length %lld is outside 1..2^40",
                        (long long)p->model_max_length);
    mmt_wordpiece_vocab *v = mmt_calloc(1, sizeof *v);
    if (!v) return MMT_STATUS_OUT_OF_MEMORY;
    v->model_max_length = p->model_max_length;
    strset words = {0};
    mmt_wordpiece *base = NULL;
    mmt_status s = MMT_OK;
    for (int i = 0; s == MMT_OK && i < MMT_WORDPIECE_N_SPECIAL; i++)
        s = strset_add(&v->tokens, SPECIALS[i], strlen(SPECIALS[i]), 0);
    if (s == MMT_OK) s = tokenizer_of(&v->tokens, p->model_max_length, &base);
    for (int64_t i = 0; s == MMT_OK && i < n; i++) {
        const char *t = texts[i] ? texts[i] : "";
        s = mmt_wordpiece_pretokenize(base, t, strlen(t), count_word, &words);
        if (s != MMT_OK && s != MMT_STATUS_OUT_OF_MEMORY) s = mmt_error_prefix(s, "text %lld: ", (long long)i);
    }
    if (s == MMT_OK && words.n == 0)
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "wordpiece: the %lld texts hold no word", (long long)n);
    v->distinct_words = words.n;
    if (s == MMT_OK) s = add_words(v, &words, p->min_frequency);
    if (s == MMT_OK) s = add_characters(v, &words);
    if (s == MMT_OK && v->tokens.n > MAX_TOKENS)
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "wordpiece: %lld tokens, more than %lld (raise --min-frequency)",
                     (long long)v->tokens.n, (long long)MAX_TOKENS);
    mmt_wordpiece_free(base);
    strset_free(&words);
    if (s != MMT_OK) {
        mmt_wordpiece_vocab_free(v);
        return s;
    }
    *out = v;
    return MMT_OK;
}

static mmt_status read_lines(const char *path, char **data, char ***lines, int64_t *n) {
    size_t len;
    MMT_TRY(mmt_file_read_all(path, CORPUS_MAX_BYTES, data, &len));
    int64_t cap = 1;
    for (size_t i = 0; i < len; i++) cap += (*data)[i] == '\n';
    *lines = mmt_malloc((size_t)cap * sizeof **lines);
    if (!*lines) return MMT_STATUS_OUT_OF_MEMORY;
    *n = 0;
    char *p = *data, *end = *data + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        if (stop > p && stop[-1] == '\r') stop--;
        *stop = '\0';
        if (stop > p) (*lines)[(*n)++] = p;
        p = nl ? nl + 1 : end;
    }
    return MMT_OK;
}

mmt_status mmt_wordpiece_build_file(const char *path, const mmt_wordpiece_build_params *p,
                                    mmt_wordpiece_vocab **out) {
    if (!path || !out) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_wordpiece_build_file: NULL");
    *out = NULL;
    size_t plen = strlen(path);
    mmt_pairs *pairs = NULL;
    char *data = NULL;
    char **lines = NULL;
    int64_t n = 0;
    mmt_status s;
    if (plen >= 6 && strcmp(path + plen - 6, ".jsonl") == 0) {
        if ((s = mmt_pairs_load_jsonl(path, 0, &pairs)) != MMT_OK) goto done;
        if (!(lines = mmt_malloc((size_t)(pairs->n ? pairs->n : 1) * sizeof *lines))) {
            s = MMT_STATUS_OUT_OF_MEMORY;
            goto done;
        }
        for (n = 0; n < pairs->n; n++) lines[n] = pairs->items[n].text;
    } else if ((s = read_lines(path, &data, &lines, &n)) != MMT_OK) {
        goto done;
    }
    s = mmt_wordpiece_build((const char *const *)lines, n, p, out);
    if (s != MMT_OK && s != MMT_STATUS_OUT_OF_MEMORY) s = mmt_error_prefix(s, "%s: ", path);
done:
    mmt_pairs_free(pairs);
    mmt_free(data);
    mmt_free(lines);
    return s;
}

static mmt_status write_in(const char *dir, const char *name, const mmt_strbuf *b) {
    if (b->failed) return MMT_STATUS_OUT_OF_MEMORY;
    char *path = mmt_path_join(dir, name);
    if (!path) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = mmt_file_write_atomic(path, b->data, b->len);
    mmt_free(path);
    return s;
}

mmt_status mmt_wordpiece_vocab_write(const mmt_wordpiece_vocab *v, const char *dir) {
    if (!v || !dir || !dir[0]) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_wordpiece_vocab_write: no folder");
    MMT_TRY(mmt_mkdirs(dir));
    mmt_strbuf tj = {0}, cj = {0};
    render_tokenizer_json(&v->tokens, &tj);
    render_config(v->model_max_length, &cj);
    mmt_status s = write_in(dir, "tokenizer.json", &tj);
    if (s == MMT_OK) s = write_in(dir, "tokenizer_config.json", &cj);
    mmt_strbuf_free(&tj);
    mmt_strbuf_free(&cj);
    return s;
}
