/*
 * wordpiece.c — BERT's WordPiece tokenizer from tokenizer.json (wordpiece.h).
 *
 * Each step follows the code it must match, in HF tokenizers 0.23 (Rust) unless named:
 *   added tokens  tokenizer/added_vocabulary.rs: extract_and_normalize, find_matches
 *                 (leftmost-longest, then lstrip / rstrip over whitespace)
 *   normalizer    normalizers/bert.rs: clean_text, handle_chinese_chars, strip_accents
 *                 (NFD of unicode-normalization-alignments, then drop Mn), lowercase
 *   pre-tokenizer pre_tokenizers/bert.rs: split on char::is_whitespace (removed), then on
 *                 is_bert_punc (isolated)
 *   model         models/wordpiece/mod.rs: tokenize
 *   decode        tokenizer/mod.rs: decode (added tokens' contents, special ones skipped),
 *                 decoders/wordpiece.rs; then transformers 5 tokenization_utils_tokenizers.py
 *                 _decode with tokenization_utils_base.py clean_up_tokenization
 *   settings      transformers 5 models/bert/tokenization_bert.py (BertTokenizer.__init__)
 * The character classes come from tables probed from tokenizers itself (wordpiece_tables.c);
 * lowercasing and the canonical decomposition data are data/unicode.h's "fast" flavour,
 * which is the same Rust code's.
 */
#include "data/wordpiece.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/json.h"
#include "data/tokenizer_json.h"
#include "data/unicode.h"

/* Positions inside a text are int64, but buffers grow by a few times the text: cap it. */
#define MAX_TEXT_BYTES ((size_t)256 << 20)
/* BertTokenizer's WordPiece(vocab, unk_token) keeps these defaults of models/wordpiece. */
#define BERT_PREFIX "##"
#define BERT_MAX_CHARS 100

typedef struct vocab_entry {
    uint32_t offset; /* into pool */
    uint32_t len;
    int32_t id;
} vocab_entry;

typedef struct added_token {
    char *content;      /* as tokenizer.json has it: what token_to_id and specials go by (owned) */
    size_t len;
    char *text;         /* what decode writes: the pattern in UTF-8 (owned) */
    uint32_t *pattern;  /* what is matched: the content, normalised when `normalized` (owned) */
    int64_t n_pattern;
    int32_t id;
    int special, normalized, lstrip, rstrip;
} added_token;

typedef struct bert_normalizer {
    int present; /* 0: no normalizer */
    int clean_text, handle_chinese_chars, lowercase;
    int strip_accents; /* 1, 0, or -1 for null (follows lowercase) */
} bert_normalizer;

struct mmt_wordpiece {
    char *pool;              /* vocabulary strings, NUL-terminated (owned) */
    vocab_entry *entries;    /* one per model.vocab key (owned) */
    int64_t n_entries;
    int32_t *slots;          /* open addressing into entries, -1 empty (owned) */
    int64_t slot_mask;
    int32_t *id_to_entry;    /* by id, -1 where the vocabulary has none (owned) */
    int32_t *id_to_added;    /* by id, -1 where no added token has it (owned) */
    added_token *added;      /* (owned, with their strings) */
    int64_t n_added;
    int32_t *raw_order;      /* indices of non-normalized added tokens by first code point (owned) */
    int32_t *norm_order;     /* ... of normalized ones (owned) */
    int64_t n_raw, n_norm;
    bert_normalizer norm;
    int bert_pre_tokenizer;  /* 0: the whole piece is one word */
    char *prefix;            /* continuing_subword_prefix (owned) */
    size_t prefix_len;
    int64_t max_chars;       /* max_input_chars_per_word */
    int64_t longest_token;   /* bytes of the longest vocabulary string */
    int wordpiece_decoder;   /* 0: tokens joined with " " */
    char *decoder_prefix;    /* (owned) */
    size_t decoder_prefix_len;
    int decoder_cleanup;
    mmt_tokenizer_json_frame frame;
    uint8_t ascii_class[128];
    mmt_wordpiece_info info;
};

/* ------------------------------------------------------------------------------------ */
/* Character classes                                                                    */

static uint32_t class_lookup(uint32_t cp) {
    int64_t lo = 0, hi = mmt_wordpiece_class_count - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if ((mmt_wordpiece_class_table[mid] >> 8) <= cp) lo = mid;
        else hi = mid - 1;
    }
    return mmt_wordpiece_class_table[lo] & 0xFF;
}

static uint32_t char_class(const mmt_wordpiece *t, uint32_t cp) {
    return cp < 128 ? t->ascii_class[cp] : class_lookup(cp);
}

/* ------------------------------------------------------------------------------------ */
/* Vocabulary                                                                           */

static int32_t vocab_lookup(const mmt_wordpiece *t, const char *s, size_t n) {
    uint64_t h = mmt_hash64(s, n, 0);
    for (int64_t i = (int64_t)(h & (uint64_t)t->slot_mask);; i = (i + 1) & t->slot_mask) {
        int32_t e = t->slots[i];
        if (e < 0) return -1;
        const vocab_entry *v = &t->entries[e];
        if (v->len == n && memcmp(t->pool + v->offset, s, n) == 0) return v->id;
    }
}

int32_t mmt_wordpiece_token_to_id(const mmt_wordpiece *t, const char *token, size_t len) {
    for (int64_t i = t->n_added; i-- > 0;)
        if (t->added[i].len == len && memcmp(t->added[i].content, token, len) == 0) return t->added[i].id;
    return vocab_lookup(t, token, len);
}

const char *mmt_wordpiece_id_to_token(const mmt_wordpiece *t, int32_t id) {
    if (id < 0 || id >= t->info.vocab_size) return NULL;
    if (t->id_to_added[id] >= 0) return t->added[t->id_to_added[id]].text;
    if (t->id_to_entry[id] >= 0) return t->pool + t->entries[t->id_to_entry[id]].offset;
    return NULL;
}

/* Builds the tables from model.vocab (ids already checked by mmt_tokenizer_json_vocab). A
 * repeated key keeps its last id, as serde's map does; two tokens with one id are refused,
 * since decoding could give back only one of them. */
static mmt_status vocab_build(mmt_wordpiece *t, const mmt_json *vocab, const char *what) {
    size_t pool_bytes = 0;
    for (size_t i = 0; i < vocab->len; i++) {
        if (vocab->key_lens[i] > UINT32_MAX / 4)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: model.vocab: token %zu is too long", what, i);
        pool_bytes += vocab->key_lens[i] + 1;
        if ((int64_t)vocab->key_lens[i] > t->longest_token) t->longest_token = (int64_t)vocab->key_lens[i];
    }
    if (pool_bytes > UINT32_MAX)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: model.vocab: strings exceed 4 GiB", what);
    t->n_entries = (int64_t)vocab->len;
    int64_t slots = 16;
    while (slots < 2 * t->n_entries) slots *= 2;
    t->slot_mask = slots - 1;
    t->pool = mmt_malloc(pool_bytes);
    t->entries = mmt_malloc((size_t)t->n_entries * sizeof *t->entries);
    t->slots = mmt_malloc((size_t)slots * sizeof *t->slots);
    if (!t->pool || !t->entries || !t->slots) return mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", what);
    memset(t->slots, 0xff, (size_t)slots * sizeof *t->slots);
    size_t off = 0;
    for (size_t i = 0; i < vocab->len; i++) {
        size_t n = vocab->key_lens[i];
        memcpy(t->pool + off, vocab->keys[i], n);
        t->pool[off + n] = '\0';
        t->entries[i] = (vocab_entry){(uint32_t)off, (uint32_t)n, (int32_t)vocab->items[i].integer};
        off += n + 1;
        uint64_t h = mmt_hash64(vocab->keys[i], n, 0);
        for (int64_t k = (int64_t)(h & (uint64_t)t->slot_mask);; k = (k + 1) & t->slot_mask) {
            int32_t cur = t->slots[k];
            if (cur < 0 || (t->entries[cur].len == n &&
                            memcmp(t->pool + t->entries[cur].offset, vocab->keys[i], n) == 0)) {
                t->slots[k] = (int32_t)i;
                break;
            }
        }
    }
    for (int64_t i = 0; i < t->n_entries; i++) {
        const vocab_entry *e = &t->entries[i];
        const char *token = t->pool + e->offset;
        if (vocab_lookup(t, token, e->len) != e->id) continue; /* overridden by a later key */
        int32_t other = t->id_to_entry[e->id];
        if (other >= 0 && t->entries[other].len == e->len &&
            memcmp(t->pool + t->entries[other].offset, token, e->len) == 0)
            other = -1;
        if (other >= 0) {
            char a[44], b[44];
            const vocab_entry *o = &t->entries[other];
            return mmt_fail(MMT_STATUS_BAD_FORMAT,
                            "%s: model.vocab: tokens \"%s\" and \"%s\" both have id %d (an id must decode to one token)",
                            what, mmt_tokenizer_json_shown(t->pool + o->offset, o->len, a),
                            mmt_tokenizer_json_shown(token, e->len, b), (int)e->id);
        }
        t->id_to_entry[e->id] = (int32_t)i;
    }
    return MMT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Per-call scratch                                                                      */

typedef struct scratch {
    uint32_t *cps, *a, *b;     /* the text; two normalisation buffers */
    int64_t cps_cap, a_cap, b_cap;
    char *word, *key;          /* a word's UTF-8; a vocabulary key (prefix + piece) */
    int64_t word_cap, key_cap;
    int32_t *ids;
    int64_t n_ids, ids_cap;
    mmt_pretoken_fn sink;      /* set by mmt_wordpiece_pretokenize: words go here */
    void *sink_ctx;
} scratch;

static void scratch_free(scratch *s) {
    mmt_free(s->cps);
    mmt_free(s->a);
    mmt_free(s->b);
    mmt_free(s->word);
    mmt_free(s->key);
    mmt_free(s->ids);
}

#define GROW(s, field, capfield, need)                                                     \
    mmt_grow((void **)&(s)->field, &(s)->capfield, (need), sizeof *(s)->field)

static mmt_status emit_id(scratch *s, int32_t id) {
    MMT_TRY(GROW(s, ids, ids_cap, s->n_ids + 1));
    s->ids[s->n_ids++] = id;
    return MMT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* BertNormalizer                                                                       */

/* bert.rs BertNormalizer::normalize over in[0, n): clean_text, handle_chinese_chars,
 * strip_accents, lowercase, in that order. *out points to s->a or s->b afterwards. */
static mmt_status normalize(const mmt_wordpiece *t, scratch *s, const uint32_t *in, int64_t n,
                            const uint32_t **out, int64_t *m) {
    const bert_normalizer *nz = &t->norm;
    *out = in;
    *m = n;
    if (!nz->present || n == 0) return MMT_OK;
    MMT_TRY(GROW(s, a, a_cap, 3 * n));
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t c = in[i], cls = char_class(t, c);
        if (nz->clean_text && (cls & MMT_WP_REMOVE)) continue;
        if (nz->clean_text && (cls & MMT_WP_TO_SPACE)) c = ' ';
        if (nz->handle_chinese_chars && (cls & MMT_WP_CJK)) {
            s->a[k++] = ' ';
            s->a[k++] = c;
            s->a[k++] = ' ';
        } else {
            s->a[k++] = c;
        }
    }
    uint32_t *cur = s->a;
    int strip = nz->strip_accents < 0 ? nz->lowercase : nz->strip_accents;
    if (strip) {
        MMT_TRY(GROW(s, b, b_cap, mmt_unicode_nfc_bound(k) + 1));
        int64_t d = mmt_unicode_nfd(s->a, k, MMT_UNICODE_FAST, s->b);
        k = 0;
        for (int64_t i = 0; i < d; i++)
            if (!(char_class(t, s->b[i]) & MMT_WP_MARK)) s->b[k++] = s->b[i];
        cur = s->b;
    }
    if (nz->lowercase) {
        int from_a = cur == s->a; /* growing the other buffer leaves this one in place */
        MMT_TRY(from_a ? GROW(s, b, b_cap, 3 * k + 1) : GROW(s, a, a_cap, 3 * k + 1));
        const uint32_t *src = from_a ? s->a : s->b;
        uint32_t *dst = from_a ? s->b : s->a;
        int64_t w = 0;
        for (int64_t i = 0; i < k; i++) w += mmt_unicode_lower_char(src[i], MMT_UNICODE_FAST, dst + w);
        cur = dst;
        k = w;
    }
    *out = cur;
    *m = k;
    return MMT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Added tokens                                                                         */

/* Length of added token `a` at cps[i] (0 if it does not match there). */
static int64_t added_match(const added_token *a, const uint32_t *cps, int64_t n, int64_t i) {
    if (a->n_pattern > n - i) return 0;
    return memcmp(a->pattern, cps + i, (size_t)a->n_pattern * sizeof *cps) == 0 ? a->n_pattern : 0;
}

/* The leftmost-longest match at or after `from` among the tokens `order` lists (sorted by
 * first code point): *index and [*start, *end), or 0 when there is none. Equal patterns: the
 * first listed wins. */
static int next_match(const mmt_wordpiece *t, const int32_t *order, int64_t count, const uint32_t *cps,
                      int64_t n, int64_t from, int64_t *start, int64_t *end, int32_t *index) {
    if (count == 0) return 0;
    for (int64_t i = from; i < n; i++) {
        int64_t lo = 0, hi = count;
        while (lo < hi) { /* first token whose pattern starts at >= cps[i] */
            int64_t mid = lo + (hi - lo) / 2;
            if (t->added[order[mid]].pattern[0] < cps[i]) lo = mid + 1;
            else hi = mid;
        }
        int64_t best = 0;
        for (int64_t k = lo; k < count && t->added[order[k]].pattern[0] == cps[i]; k++) {
            int64_t m = added_match(&t->added[order[k]], cps, n, i);
            if (m > best) {
                best = m;
                *index = order[k];
            }
        }
        if (best) {
            *start = i;
            *end = i + best;
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* WordPiece                                                                            */

/* models/wordpiece tokenize of one word: greedy longest match from the left, pieces after
 * the first looked up with the prefix; no match anywhere, or more than max_chars characters,
 * gives the single unk id. Substrings longer than the longest vocabulary string are not
 * looked up (they cannot match), which keeps hostile 100-character words cheap. */
static mmt_status wordpiece_word(const mmt_wordpiece *t, scratch *s, const uint32_t *cps, int64_t n) {
    if (s->sink) {
        MMT_TRY(GROW(s, word, word_cap, 4 * n));
        int64_t w = 0;
        for (int64_t i = 0; i < n; i++) w += mmt_utf8_encode(cps[i], s->word + w);
        return s->sink(s->sink_ctx, s->word, (size_t)w);
    }
    if (n > t->max_chars) return emit_id(s, t->info.unk);
    MMT_TRY(GROW(s, word, word_cap, 4 * n));
    int64_t w = 0;
    for (int64_t i = 0; i < n; i++) w += mmt_utf8_encode(cps[i], s->word + w);
    MMT_TRY(GROW(s, key, key_cap, (int64_t)t->prefix_len + w));
    const unsigned char *word = (const unsigned char *)s->word;
    int64_t first = s->n_ids, start = 0;
    while (start < w) {
        int64_t pl = start > 0 ? (int64_t)t->prefix_len : 0;
        int64_t end = start + (t->longest_token - pl);
        if (end > w) end = w;
        int32_t id = -1;
        memcpy(s->key, t->prefix, (size_t)pl);
        for (; end > start; end--) {
            if (end < w && (word[end] & 0xC0) == 0x80) continue; /* inside a character */
            memcpy(s->key + pl, word + start, (size_t)(end - start));
            if ((id = vocab_lookup(t, s->key, (size_t)(pl + end - start))) >= 0) break;
        }
        if (id < 0) {
            s->n_ids = first;
            return emit_id(s, t->info.unk);
        }
        MMT_TRY(emit_id(s, id));
        start = end;
    }
    return MMT_OK;
}

/* BertPreTokenizer over a normalised piece: whitespace ends a word and is dropped,
 * punctuation is a word of its own. Without a pre-tokenizer the piece is one word. */
static mmt_status pre_tokenize(const mmt_wordpiece *t, scratch *s, const uint32_t *cps, int64_t n) {
    if (!t->bert_pre_tokenizer) return n > 0 ? wordpiece_word(t, s, cps, n) : MMT_OK;
    int64_t start = 0;
    for (int64_t i = 0; i <= n; i++) {
        uint32_t cls = i < n ? char_class(t, cps[i]) : MMT_WP_SPACE;
        if (!(cls & (MMT_WP_SPACE | MMT_WP_PUNCT))) continue;
        if (i > start) MMT_TRY(wordpiece_word(t, s, cps + start, i - start));
        if (cls & MMT_WP_PUNCT) MMT_TRY(wordpiece_word(t, s, cps + i, 1));
        start = i + 1;
    }
    return MMT_OK;
}

/* find_matches of added_vocabulary.rs over one piece with one kind of added token, each gap
 * between matches handed to `gap`. lstrip takes the whitespace before a match along (not
 * past the previous match), rstrip the whitespace after it; the search goes on from the end
 * of the match itself, as the Aho-Corasick iterator does. */
typedef mmt_status (*gap_fn)(const mmt_wordpiece *t, scratch *s, const uint32_t *cps, int64_t n);

static mmt_status split_added(const mmt_wordpiece *t, scratch *s, const int32_t *order, int64_t count,
                              const uint32_t *cps, int64_t n, gap_fn gap) {
    int64_t done = 0, from = 0, start, end;
    int32_t index;
    while (next_match(t, order, count, cps, n, from, &start, &end, &index)) {
        const added_token *a = &t->added[index];
        int64_t stop = end;
        from = end;
        if (a->lstrip) {
            while (start > done && (char_class(t, cps[start - 1]) & MMT_WP_SPACE)) start--;
        }
        if (a->rstrip) {
            while (stop < n && (char_class(t, cps[stop]) & MMT_WP_SPACE)) stop++;
        }
        if (done < start) MMT_TRY(gap(t, s, cps + done, start - done));
        if (!s->sink) MMT_TRY(emit_id(s, a->id));
        done = stop;
    }
    return done < n ? gap(t, s, cps + done, n - done) : MMT_OK;
}

/* A piece of normalised text between normalized added tokens. */
static mmt_status normalized_gap(const mmt_wordpiece *t, scratch *s, const uint32_t *cps, int64_t n) {
    return pre_tokenize(t, s, cps, n);
}

/* A piece of raw text between non-normalized added tokens: normalise, then split again. */
static mmt_status raw_gap(const mmt_wordpiece *t, scratch *s, const uint32_t *cps, int64_t n) {
    const uint32_t *normalized;
    int64_t m;
    MMT_TRY(normalize(t, s, cps, n, &normalized, &m));
    return split_added(t, s, t->norm_order, t->n_norm, normalized, m, normalized_gap);
}

static mmt_status tokenize_text(const mmt_wordpiece *t, scratch *s, const char *text, size_t len) {
    if (len > MAX_TEXT_BYTES)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "wordpiece: text of %zu bytes is longer than the %d MiB limit",
                        len, (int)(MAX_TEXT_BYTES >> 20));
    MMT_TRY(GROW(s, cps, cps_cap, (int64_t)len + 1));
    size_t bad = 0;
    int64_t n = len ? mmt_utf8_decode(text, len, s->cps, &bad) : 0;
    if (n < 0) return mmt_fail(MMT_STATUS_BAD_FORMAT, "wordpiece: invalid UTF-8 at byte offset %zu", bad);
    return split_added(t, s, t->raw_order, t->n_raw, s->cps, n, raw_gap);
}

mmt_status mmt_wordpiece_encode(const mmt_wordpiece *t, const char *text, size_t len, int add_special,
                                int32_t *ids, int64_t capacity, int64_t *n_total) {
    int64_t np = t && add_special ? t->frame.n_prefix : 0, ns = t && add_special ? t->frame.n_suffix : 0;
    if (!t || (!text && len) || !n_total || capacity < 0 || (capacity > 0 && capacity < np + ns) ||
        (capacity > 0 && !ids))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "mmt_wordpiece_encode: bad arguments (capacity %lld, the frame needs %lld)",
                        (long long)capacity, (long long)(np + ns));
    *n_total = 0;
    scratch s = {0};
    mmt_status st = tokenize_text(t, &s, text, len);
    if (st == MMT_OK) {
        *n_total = np + s.n_ids + ns;
        if (capacity > 0) {
            int64_t keep = s.n_ids < capacity - np - ns ? s.n_ids : capacity - np - ns;
            memcpy(ids, t->frame.prefix, (size_t)np * sizeof *ids);
            if (keep > 0) memcpy(ids + np, s.ids, (size_t)keep * sizeof *ids);
            memcpy(ids + np + keep, t->frame.suffix, (size_t)ns * sizeof *ids);
        }
    }
    scratch_free(&s);
    return st;
}

mmt_status mmt_wordpiece_pretokenize(const mmt_wordpiece *t, const char *text, size_t len,
                                     mmt_pretoken_fn fn, void *ctx) {
    if (!t || (!text && len) || !fn)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_wordpiece_pretokenize: bad arguments");
    scratch s = {0};
    s.sink = fn;
    s.sink_ctx = ctx;
    mmt_status st = tokenize_text(t, &s, text, len);
    scratch_free(&s);
    return st;
}

/* ------------------------------------------------------------------------------------ */
/* Decode                                                                               */

/* str.replace(from, to) in place, for len(to) <= len(from); returns the new length. */
static size_t replace_all(char *s, size_t n, const char *from, const char *to) {
    size_t nf = strlen(from), nt = strlen(to), r = 0, w = 0;
    while (r < n) {
        if (n - r >= nf && memcmp(s + r, from, nf) == 0) {
            memmove(s + w, to, nt);
            w += nt;
            r += nf;
        } else {
            s[w++] = s[r++];
        }
    }
    return w;
}

/* decoders/wordpiece.rs cleanup, applied to each token (with its leading space). */
static size_t decoder_cleanup(char *s, size_t n) {
    static const char *const pairs[][2] = {
        {" .", "."},     {" ?", "?"},     {" !", "!"},           {" ,", ","},
        {" ' ", "'"},    {" n't", "n't"}, {" 'm", "'m"},         {" do not", " don't"},
        {" 's", "'s"},   {" 've", "'ve"}, {" 're", "'re"}};
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) n = replace_all(s, n, pairs[i][0], pairs[i][1]);
    return n;
}

/* transformers' clean_up_tokenization (tokenization_utils_base.py), over the whole text. */
static size_t transformers_cleanup(char *s, size_t n) {
    static const char *const pairs[][2] = {
        {" .", "."},  {" ?", "?"},     {" !", "!"},   {" ,", ","},   {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) n = replace_all(s, n, pairs[i][0], pairs[i][1]);
    return n;
}

static int is_special_token(const mmt_wordpiece *t, const char *token, size_t len) {
    for (int64_t i = 0; i < t->n_added; i++)
        if (t->added[i].special && t->added[i].len == len && memcmp(t->added[i].content, token, len) == 0)
            return 1;
    return 0;
}

mmt_status mmt_wordpiece_decode(const mmt_wordpiece *t, const int32_t *ids, int64_t n, int skip_special,
                                char *out, size_t capacity, size_t *len) {
    if (!t || (n > 0 && !ids) || n < 0 || (capacity > 0 && !out) || !len)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_wordpiece_decode: bad arguments");
    *len = 0;
    size_t bytes = 1;
    for (int64_t i = 0; i < n; i++) {
        const char *token = mmt_wordpiece_id_to_token(t, ids[i]);
        if (!token)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "wordpiece: unknown id %d at %lld", ids[i], (long long)i);
        bytes += strlen(token) + 1;
    }
    char *text = mmt_malloc(bytes);
    if (!text) return MMT_STATUS_OUT_OF_MEMORY;
    size_t w = 0;
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *token = mmt_wordpiece_id_to_token(t, ids[i]);
        size_t tl = strlen(token);
        if (skip_special && is_special_token(t, token, tl)) continue;
        char *piece = text + w;
        size_t pn = 0;
        if (!t->wordpiece_decoder) {
            if (kept > 0) piece[pn++] = ' ';
        } else if (kept > 0) {
            size_t dp = t->decoder_prefix_len;
            if (tl >= dp && memcmp(token, t->decoder_prefix, dp) == 0) {
                token += dp;
                tl -= dp;
            } else {
                piece[pn++] = ' ';
            }
        }
        memcpy(piece + pn, token, tl);
        pn += tl;
        if (t->wordpiece_decoder && t->decoder_cleanup) pn = decoder_cleanup(piece, pn);
        w += pn;
        kept++;
    }
    if (t->info.clean_up_tokenization_spaces) w = transformers_cleanup(text, w);
    /* Copy out, cut at a character boundary. */
    size_t k = w;
    if (capacity > 0) {
        if (k + 1 > capacity) {
            k = capacity - 1;
            while (k > 0 && ((unsigned char)text[k] & 0xC0) == 0x80) k--;
        }
        memcpy(out, text, k);
        out[k] = '\0';
    }
    *len = w;
    mmt_free(text);
    return MMT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Loading                                                                              */

static mmt_status unsupported(const char *what, const char *component, const char *type, const char *allowed) {
    char shown[44];
    return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: %s: type \"%s\" is not supported by the WordPiece tokenizer (%s)",
                    what, component, mmt_tokenizer_json_shown(type, strlen(type), shown), allowed);
}

/* A string member copied into an owned buffer (def when absent or null). */
static mmt_status owned_string(const mmt_json *obj, const char *key, const char *def, char **out, size_t *len,
                               const char *what, const char *path) {
    const mmt_json *v = mmt_json_get(obj, key);
    const char *s = def;
    size_t n = strlen(def);
    if (v && v->type != MMT_JSON_NULL) {
        if (v->type != MMT_JSON_STRING)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s.%s: expected a string, got %s", what, path, key,
                            mmt_json_type_name(v->type));
        s = v->string;
        n = v->len;
    }
    mmt_free(*out);
    *out = mmt_strndup(s, n);
    if (!*out) return MMT_STATUS_OUT_OF_MEMORY;
    *len = n;
    return MMT_OK;
}

/* The pipeline components tokenizer.json names. */
static mmt_status read_pipeline(mmt_wordpiece *t, const mmt_json *root, const mmt_json *model, const char *what,
                                char **unk, size_t *unk_len) {
    const mmt_json *c;
    const char *type;
    MMT_TRY(owned_string(model, "unk_token", "[UNK]", unk, unk_len, what, "model"));
    MMT_TRY(owned_string(model, "continuing_subword_prefix", BERT_PREFIX, &t->prefix, &t->prefix_len, what, "model"));
    MMT_TRY(mmt_json_get_int(model, "max_input_chars_per_word", BERT_MAX_CHARS, &t->max_chars, what, "model"));

    MMT_TRY(mmt_tokenizer_json_component(root, "normalizer", what, &c, &type));
    if (c && strcmp(type, "BertNormalizer") != 0) return unsupported(what, "normalizer", type, "BertNormalizer or null");
    if (c) {
        /* BertNormalizer::default(): everything on, strip_accents null. */
        bert_normalizer *nz = &t->norm;
        const mmt_json *strip = mmt_json_get(c, "strip_accents");
        nz->present = 1;
        MMT_TRY(mmt_json_get_bool(c, "clean_text", 1, &nz->clean_text, what, "normalizer"));
        MMT_TRY(mmt_json_get_bool(c, "handle_chinese_chars", 1, &nz->handle_chinese_chars, what, "normalizer"));
        MMT_TRY(mmt_json_get_bool(c, "lowercase", 1, &nz->lowercase, what, "normalizer"));
        MMT_TRY(mmt_json_get_bool(c, "strip_accents", 0, &nz->strip_accents, what, "normalizer"));
        if (!strip || strip->type == MMT_JSON_NULL) nz->strip_accents = -1;
    }
    MMT_TRY(mmt_tokenizer_json_component(root, "pre_tokenizer", what, &c, &type));
    if (c && strcmp(type, "BertPreTokenizer") != 0)
        return unsupported(what, "pre_tokenizer", type, "BertPreTokenizer or null");
    t->bert_pre_tokenizer = c != NULL;
    MMT_TRY(mmt_tokenizer_json_component(root, "decoder", what, &c, &type));
    if (c && strcmp(type, "WordPiece") != 0) return unsupported(what, "decoder", type, "WordPiece or null");
    t->wordpiece_decoder = c != NULL;
    MMT_TRY(owned_string(c, "prefix", BERT_PREFIX, &t->decoder_prefix, &t->decoder_prefix_len, what, "decoder"));
    MMT_TRY(mmt_json_get_bool(c, "cleanup", 1, &t->decoder_cleanup, what, "decoder"));
    return MMT_OK;
}

/* A special token setting of tokenizer_config.json: a string, or {"content": ...} as
 * transformers 4 wrote AddedToken objects. */
static mmt_status config_token(const mmt_json *config, const char *key, const char *def, const char **out,
                               const char *what) {
    const mmt_json *v = mmt_json_get(config, key);
    *out = def;
    if (!v || v->type == MMT_JSON_NULL) return MMT_OK;
    if (v->type == MMT_JSON_OBJECT) v = mmt_json_get(v, "content");
    if (!v || v->type != MMT_JSON_STRING)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: expected a string or {\"content\": string}", what, key);
    *out = v->string;
    return MMT_OK;
}

/* tokenizer_config.json: what transformers 5 takes from it. For BertTokenizer(Fast) that is
 * the whole pipeline but the vocabulary, added tokens and post-processor (tokenization_bert.py
 * builds normalizer, pre-tokenizer, model and decoder from its arguments). */
static mmt_status read_config(mmt_wordpiece *t, const mmt_json *config, const char *what, char **unk,
                              size_t *unk_len, const char **pad, const char **mask) {
    if (config->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected an object, got %s", what, mmt_json_type_name(config->type));
    const char *cls_name;
    MMT_TRY(mmt_json_get_string(config, "tokenizer_class", "", &cls_name, what, ""));
    MMT_TRY(mmt_json_get_bool(config, "clean_up_tokenization_spaces", 0, &t->info.clean_up_tokenization_spaces,
                              what, ""));
    const mmt_json *max_len = mmt_json_get(config, "model_max_length");
    if (max_len && max_len->type == MMT_JSON_NUMBER && max_len->is_integer && max_len->integer > 0 &&
        max_len->integer < ((int64_t)1 << 40))
        t->info.model_max_length = max_len->integer; /* transformers' "unbounded" is 1e30 */
    MMT_TRY(config_token(config, "pad_token", "[PAD]", pad, what));
    MMT_TRY(config_token(config, "mask_token", "[MASK]", mask, what));
    if (strcmp(cls_name, "BertTokenizer") != 0 && strcmp(cls_name, "BertTokenizerFast") != 0) return MMT_OK;
    const char *unk_name;
    MMT_TRY(config_token(config, "unk_token", "[UNK]", &unk_name, what));
    mmt_free(*unk);
    if (!(*unk = mmt_strdup(unk_name))) return MMT_STATUS_OUT_OF_MEMORY;
    *unk_len = strlen(unk_name);
    bert_normalizer *nz = &t->norm;
    const mmt_json *strip = mmt_json_get(config, "strip_accents");
    nz->present = nz->clean_text = 1;
    MMT_TRY(mmt_json_get_bool(config, "do_lower_case", 1, &nz->lowercase, what, ""));
    MMT_TRY(mmt_json_get_bool(config, "tokenize_chinese_chars", 1, &nz->handle_chinese_chars, what, ""));
    MMT_TRY(mmt_json_get_bool(config, "strip_accents", 0, &nz->strip_accents, what, ""));
    if (!strip || strip->type == MMT_JSON_NULL) nz->strip_accents = -1;
    t->bert_pre_tokenizer = 1;
    t->max_chars = BERT_MAX_CHARS;
    t->wordpiece_decoder = t->decoder_cleanup = 1;
    mmt_free(t->prefix);
    mmt_free(t->decoder_prefix);
    t->prefix = mmt_strdup(BERT_PREFIX);
    t->decoder_prefix = mmt_strdup(BERT_PREFIX);
    if (!t->prefix || !t->decoder_prefix) return MMT_STATUS_OUT_OF_MEMORY;
    t->prefix_len = t->decoder_prefix_len = strlen(BERT_PREFIX);
    return MMT_OK;
}

static int added_order_cmp(const mmt_wordpiece *t, int32_t a, int32_t b) {
    uint32_t x = t->added[a].pattern[0], y = t->added[b].pattern[0];
    return x < y ? -1 : x > y ? 1 : (a > b) - (a < b);
}

/* Insertion sort of added-token indices by first code point, then position (few tokens). */
static void sort_by_first_cp(const mmt_wordpiece *t, int32_t *order, int64_t n) {
    for (int64_t i = 1; i < n; i++) {
        int32_t v = order[i];
        int64_t j = i;
        for (; j > 0 && added_order_cmp(t, order[j - 1], v) > 0; j--) order[j] = order[j - 1];
        order[j] = v;
    }
}

/* Copies the added tokens, works out their patterns (normalized ones through the normalizer,
 * as AddedVocabulary::refresh_added_tokens does) and the two match orders. */
static mmt_status added_build(mmt_wordpiece *t, const mmt_tokenizer_json_added *src, int64_t n, const char *what) {
    if (n > 0x100000) return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: added_tokens: %lld is too many", what, (long long)n);
    t->added = mmt_calloc((size_t)(n ? n : 1), sizeof *t->added);
    t->raw_order = mmt_malloc((size_t)(n ? n : 1) * sizeof *t->raw_order);
    t->norm_order = mmt_malloc((size_t)(n ? n : 1) * sizeof *t->norm_order);
    if (!t->added || !t->raw_order || !t->norm_order) return MMT_STATUS_OUT_OF_MEMORY;
    scratch s = {0};
    mmt_status st = MMT_OK;
    for (int64_t i = 0; i < n && st == MMT_OK; i++) {
        added_token *a = &t->added[i];
        char shown[44];
        if (src[i].single_word) {
            st = mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: added_tokens[%lld] \"%s\": single_word is not supported",
                          what, (long long)i, mmt_tokenizer_json_shown(src[i].content, src[i].len, shown));
            break;
        }
        t->n_added = i + 1;
        a->id = src[i].id;
        a->special = src[i].special;
        a->normalized = src[i].normalized;
        a->lstrip = src[i].lstrip;
        a->rstrip = src[i].rstrip;
        a->len = src[i].len;
        a->content = mmt_strndup(src[i].content, src[i].len);
        if (!a->content || (st = GROW(&s, cps, cps_cap, (int64_t)a->len + 1)) != MMT_OK) {
            st = MMT_STATUS_OUT_OF_MEMORY;
            break;
        }
        const uint32_t *pattern = s.cps;
        int64_t m = mmt_utf8_decode(a->content, a->len, s.cps, NULL);
        if (a->normalized && (st = normalize(t, &s, s.cps, m, &pattern, &m)) != MMT_OK) break;
        if (m == 0) {
            st = mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: added_tokens[%lld] \"%s\" normalizes to nothing", what,
                          (long long)i, mmt_tokenizer_json_shown(a->content, a->len, shown));
            break;
        }
        a->pattern = mmt_malloc((size_t)m * sizeof *a->pattern);
        if (!a->pattern) {
            st = MMT_STATUS_OUT_OF_MEMORY;
            break;
        }
        memcpy(a->pattern, pattern, (size_t)m * sizeof *a->pattern);
        a->n_pattern = m;
        /* tokenizers 0.23 decodes a normalized added token as its normalised form */
        if (!(a->text = mmt_malloc((size_t)(4 * m + 1)))) {
            st = MMT_STATUS_OUT_OF_MEMORY;
            break;
        }
        size_t w = 0;
        for (int64_t k = 0; k < m; k++) w += (size_t)mmt_utf8_encode(a->pattern[k], a->text + w);
        a->text[w] = '\0';
        if (a->normalized) t->norm_order[t->n_norm++] = (int32_t)i;
        else t->raw_order[t->n_raw++] = (int32_t)i;
    }
    scratch_free(&s);
    MMT_TRY(st);
    sort_by_first_cp(t, t->raw_order, t->n_raw);
    sort_by_first_cp(t, t->norm_order, t->n_norm);
    return MMT_OK;
}

/* Id tables, special roles and the ASCII class cache, once everything is read. */
static mmt_status finish(mmt_wordpiece *t, const mmt_json *vocab, int64_t max_id, const char *unk, size_t unk_len,
                         const char *pad, const char *mask, const char *what) {
    for (int64_t i = 0; i < t->n_added; i++)
        if (t->added[i].id > max_id) max_id = t->added[i].id;
    t->info.vocab_size = max_id + 1;
    t->id_to_entry = mmt_malloc((size_t)t->info.vocab_size * sizeof *t->id_to_entry);
    t->id_to_added = mmt_malloc((size_t)t->info.vocab_size * sizeof *t->id_to_added);
    if (!t->id_to_entry || !t->id_to_added) return mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", what);
    memset(t->id_to_entry, 0xff, (size_t)t->info.vocab_size * sizeof *t->id_to_entry);
    memset(t->id_to_added, 0xff, (size_t)t->info.vocab_size * sizeof *t->id_to_added);
    for (int64_t i = 0; i < t->n_added; i++) t->id_to_added[t->added[i].id] = (int32_t)i;
    MMT_TRY(vocab_build(t, vocab, what));
    /* The model's own lookup: tokenizers fails at encode time without it; we fail now. */
    if ((t->info.unk = vocab_lookup(t, unk, unk_len)) < 0) {
        char shown[44];
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: model.unk_token \"%s\" is not in model.vocab", what,
                        mmt_tokenizer_json_shown(unk, unk_len, shown));
    }
    for (int64_t i = 0; i < t->frame.n_prefix + t->frame.n_suffix; i++) {
        int32_t id = i < t->frame.n_prefix ? t->frame.prefix[i] : t->frame.suffix[i - t->frame.n_prefix];
        if (!mmt_wordpiece_id_to_token(t, id))
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: post_processor: id %d is not a token", what, (int)id);
    }
    t->info.n_prefix = t->frame.n_prefix;
    t->info.n_suffix = t->frame.n_suffix;
    t->info.cls = t->frame.n_prefix ? t->frame.prefix[0] : -1;
    t->info.sep = t->frame.n_suffix ? t->frame.suffix[t->frame.n_suffix - 1] : -1;
    t->info.pad = mmt_wordpiece_token_to_id(t, pad, strlen(pad));
    t->info.mask = mmt_wordpiece_token_to_id(t, mask, strlen(mask));
    if (t->max_chars < 0) t->max_chars = 0;
    return MMT_OK;
}

mmt_status mmt_wordpiece_from_json(const mmt_json *root, const char *what, const mmt_json *config,
                                   const char *config_what, mmt_wordpiece **out) {
    if (!out || !root || !what || (config && !config_what))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_wordpiece_from_json: NULL argument");
    *out = NULL;
    MMT_TRY(mmt_tokenizer_json_check_root(root, what));
    const mmt_json *model, *vocab;
    int64_t max_id;
    MMT_TRY(mmt_tokenizer_json_model(root, what, "WordPiece", &model));
    MMT_TRY(mmt_tokenizer_json_vocab(model, what, &vocab, &max_id));
    mmt_wordpiece *t = mmt_calloc(1, sizeof *t);
    if (!t) return MMT_STATUS_OUT_OF_MEMORY;
    for (uint32_t c = 0; c < 128; c++) t->ascii_class[c] = (uint8_t)class_lookup(c);
    mmt_tokenizer_json_added *added = NULL;
    int64_t n_added = 0;
    char *unk = NULL;
    size_t unk_len = 0;
    const char *pad = "[PAD]", *mask = "[MASK]";
    mmt_status s = read_pipeline(t, root, model, what, &unk, &unk_len);
    if (s == MMT_OK && config) s = read_config(t, config, config_what, &unk, &unk_len, &pad, &mask);
    if (s == MMT_OK) s = mmt_tokenizer_json_frame_of(root, what, &t->frame);
    if (s == MMT_OK) s = mmt_tokenizer_json_added_tokens(root, what, &added, &n_added);
    if (s == MMT_OK) s = added_build(t, added, n_added, what);
    if (s == MMT_OK) s = finish(t, vocab, max_id, unk, unk_len, pad, mask, what);
    mmt_free(added);
    mmt_free(unk);
    if (s != MMT_OK) {
        mmt_wordpiece_free(t);
        return s;
    }
    *out = t;
    return MMT_OK;
}

mmt_status mmt_wordpiece_load_json(const char *tokenizer_json_path, const char *tokenizer_config_path,
                                   mmt_wordpiece **out) {
    if (!out || !tokenizer_json_path)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_wordpiece_load_json: NULL argument");
    *out = NULL;
    mmt_json_doc *doc = NULL, *config = NULL;
    MMT_TRY(mmt_tokenizer_json_open(tokenizer_json_path, &doc));
    mmt_status s = tokenizer_config_path ? mmt_json_parse_file(tokenizer_config_path, &config) : MMT_OK;
    if (s == MMT_OK)
        s = mmt_wordpiece_from_json(mmt_json_root(doc), tokenizer_json_path, config ? mmt_json_root(config) : NULL,
                                    tokenizer_config_path, out);
    mmt_json_free(doc);
    mmt_json_free(config);
    return s;
}

mmt_status mmt_wordpiece_load_dir(const char *dir, mmt_wordpiece **out) {
    if (!out || !dir) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_wordpiece_load_dir: NULL argument");
    *out = NULL;
    char *json = mmt_path_join(dir, "tokenizer.json"), *config = mmt_path_join(dir, "tokenizer_config.json");
    mmt_status s = json && config ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK && !mmt_file_exists(json))
        s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: no tokenizer.json (the WordPiece tokenizer reads only that file)", dir);
    if (s == MMT_OK) s = mmt_wordpiece_load_json(json, mmt_file_exists(config) ? config : NULL, out);
    mmt_free(json);
    mmt_free(config);
    return s;
}

void mmt_wordpiece_free(mmt_wordpiece *t) {
    if (!t) return;
    for (int64_t i = 0; i < t->n_added; i++) {
        mmt_free(t->added[i].content);
        mmt_free(t->added[i].text);
        mmt_free(t->added[i].pattern);
    }
    mmt_free(t->added);
    mmt_free(t->raw_order);
    mmt_free(t->norm_order);
    mmt_free(t->pool);
    mmt_free(t->entries);
    mmt_free(t->slots);
    mmt_free(t->id_to_entry);
    mmt_free(t->id_to_added);
    mmt_free(t->prefix);
    mmt_free(t->decoder_prefix);
    mmt_free(t);
}

const mmt_wordpiece_info *mmt_wordpiece_info_of(const mmt_wordpiece *t) { return &t->info; }

mmt_status mmt_wordpiece_word_sequences(const mmt_wordpiece *t, const char *const *words, int64_t n, int32_t **ids,
                                        int64_t **lengths, int64_t *count) {
    int64_t cap_ids = 0, used = 0, k = 0;
    mmt_status s = MMT_OK;
    *ids = NULL;
    *lengths = n > 0 ? mmt_malloc((size_t)n * sizeof **lengths) : NULL;
    *count = 0;
    if (n > 0 && !*lengths) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < n; i++) {
        size_t len = strlen(words[i]);
        while (len > 0 && (words[i][len - 1] == '\r' || words[i][len - 1] == ' ')) len--;
        int64_t total = 0;
        if ((s = mmt_wordpiece_encode(t, words[i], len, 0, NULL, 0, &total)) != MMT_OK) {
            s = mmt_error_prefix(s, "word %lld: ", (long long)i);
            break;
        }
        if (total == 0) continue;
        if (used + total > cap_ids) {
            cap_ids = 2 * (used + total);
            int32_t *g = mmt_realloc(*ids, (size_t)cap_ids * sizeof(int32_t));
            if (!g) {
                s = MMT_STATUS_OUT_OF_MEMORY;
                break;
            }
            *ids = g;
        }
        if ((s = mmt_wordpiece_encode(t, words[i], len, 0, *ids + used, total, &total)) != MMT_OK) break;
        (*lengths)[k++] = total;
        used += total;
    }
    if (s == MMT_OK && k == 0) s = mmt_fail(MMT_STATUS_BAD_FORMAT, "no words: every one is empty");
    if (s != MMT_OK) {
        mmt_free(*ids);
        mmt_free(*lengths);
        *ids = NULL;
        *lengths = NULL;
        return s;
    }
    *count = k;
    return MMT_OK;
}

mmt_status mmt_wordpiece_check_writable(const mmt_wordpiece *t, const int32_t *ids, const int64_t *lengths, int64_t n) {
    const mmt_wordpiece_info *in = &t->info;
    for (int64_t w = 0, at = 0; w < n; at += lengths[w++])
        for (int64_t i = 0; i < lengths[w]; i++) {
            int32_t id = ids[at + i];
            if (id == in->unk || id == in->cls || id == in->sep || id == in->pad || id == in->mask)
                return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "word %lld (non-empty ones counted) tokenizes to %s: a caption "
                                "cannot write it", (long long)w, id == in->unk ? "[UNK], a piece the vocabulary lacks"
                                                                  : "a special token");
        }
    return MMT_OK;
}
