/*
 * tokenizer.c — CLIP byte-level BPE (tokenizer.h), matching Hugging Face id for id.
 *
 * Pipeline (both modes): split the raw text at the literal special tokens; normalise each
 * piece; cut it into pre-tokens with the CLIP regex
 *     <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * (implemented by hand below, one branch per alternative); map each pre-token's UTF-8 bytes
 * to byte-level symbols; run BPE with "</w>" on the last symbol; frame with BOS/EOS.
 *
 * The modes differ in normalisation and in a few regex details, each cited where handled:
 *   fast = transformers CLIPTokenizer(Fast) on HF tokenizers (tokenization_clip.py in 5.x):
 *          NFC, Replace(\s+ -> " "), Lowercase, Split(regex), ByteLevel(use_regex=True).
 *   slow = transformers 4.x tokenization_clip.py without ftfy: BasicTokenizer(strip_accents=
 *          False, do_split_on_punc=False), then re.findall(pat, text) with IGNORECASE.
 *
 * BPE follows tokenizers' word.rs merge_all: a min-heap of (rank, position) candidate merges,
 * the lowest rank merged first, leftmost on ties. For merges files where every merge's parts
 * exist before it (CLIP's do) this equals the Python loop that merges all occurrences of the
 * best pair at once, and it stays O(n log n) on hostile 100 kB words.
 */
#include "data/tokenizer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "core/log.h"
#include "data/tokenizer_json.h"
#include "data/unicode.h"

#define EOW_SUFFIX "</w>"
#define BOS_TEXT "<|startoftext|>"
#define EOS_TEXT "<|endoftext|>"
/* tokenization_clip.py (4.x) keeps lines[1 : 49152 - 256 - 2 + 1] of merges.txt. */
#define SLOW_MAX_MERGES (49152 - 256 - 2)
#define MERGES_MAX_BYTES ((size_t)256 << 20)

/* BPE cache: words up to this many bytes are cached; the cache is emptied when full. */
#define CACHE_MAX_WORD 255
#define CACHE_SLOTS 32768
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_POOL_BYTES ((size_t)1 << 20)
/* Positions inside a word are int32; no caption comes near this. */
#define MAX_TEXT_BYTES ((size_t)256 << 20)
/* Ids index dense arrays; a hostile vocab.json must not make us allocate gigabytes. */
#define MAX_TOKEN_ID (1 << 24)

typedef struct vocab_entry {
    uint32_t offset; /* into token_pool */
    uint32_t len;
    int32_t id;
} vocab_entry;

typedef struct merge_slot {
    uint32_t left, right; /* left == UINT32_MAX: empty */
    int32_t rank;
    int32_t new_id;
} merge_slot;

/* One cached word: header, word bytes, then ids (unaligned, read with memcpy). */
typedef struct cache_header {
    uint16_t word_len;
    uint16_t n_ids;
    uint8_t mode;
} cache_header;

typedef struct bpe_cache {
    pthread_mutex_t lock;
    uint64_t *hashes;   /* CACHE_SLOTS, 0 = empty (owned) */
    uint32_t *offsets;  /* CACHE_SLOTS, entry offset in pool (owned) */
    unsigned char *pool; /* CACHE_POOL_BYTES (owned) */
    size_t pool_used;
    int64_t count;
} bpe_cache;

struct mmt_tokenizer {
    _Atomic int mode;
    char *token_pool;          /* all vocab strings, NUL-terminated (owned) */
    vocab_entry *entries;      /* one per vocab.json key (owned) */
    int64_t n_entries;
    int32_t *vocab_slots;      /* open-addressing index into entries, -1 empty (owned) */
    int64_t vocab_mask;
    int32_t *id_to_entry;      /* by id, -1 for gaps (owned) */
    int64_t vocab_size;        /* largest id + 1 */
    merge_slot *merge_slots;   /* (left, right) -> (rank, new id) (owned) */
    int64_t merge_mask;
    int64_t merge_count;
    int32_t slow_first_rank;   /* 1 when line 1 of merges.txt was a merge (slow mode drops it) */
    int32_t byte_id[256];      /* id of the byte-level symbol for each byte */
    int32_t byte_eow_id[256];  /* ... and of the symbol + "</w>" */
    int16_t char_to_byte[324]; /* inverse of bytes_to_unicode, -1 where none */
    int32_t bos, eos;
    int64_t max_token_len;     /* the longest vocab string in bytes: no token covers more text bytes */
    bpe_cache cache;
};

/* ------------------------------------------------------------------------------------ */
/* Hashing and lookup tables                                                            */

static uint64_t hash_bytes(const void *data, size_t n, uint64_t seed) {
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static uint64_t hash_pair(uint32_t a, uint32_t b) {
    uint64_t h = ((uint64_t)a << 32 | b) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

static int64_t table_size_for(int64_t n) {
    int64_t size = 16;
    while (size < n * 2) size *= 2;
    return size;
}

/* Id of a token string, or -1. */
static int32_t vocab_lookup(const mmt_tokenizer *t, const char *s, size_t n) {
    uint64_t h = hash_bytes(s, n, 0);
    for (int64_t i = (int64_t)(h & (uint64_t)t->vocab_mask);; i = (i + 1) & t->vocab_mask) {
        int32_t e = t->vocab_slots[i];
        if (e < 0) return -1;
        const vocab_entry *v = &t->entries[e];
        if (v->len == n && memcmp(t->token_pool + v->offset, s, n) == 0) return v->id;
    }
}

static const merge_slot *merge_find(const mmt_tokenizer *t, int32_t left, int32_t right) {
    uint64_t h = hash_pair((uint32_t)left, (uint32_t)right);
    for (int64_t i = (int64_t)(h & (uint64_t)t->merge_mask);; i = (i + 1) & t->merge_mask) {
        const merge_slot *m = &t->merge_slots[i];
        if (m->left == UINT32_MAX) return NULL;
        if (m->left == (uint32_t)left && m->right == (uint32_t)right) return m;
    }
}

/* bytes_to_unicode() of GPT-2/CLIP: printable Latin-1 bytes map to themselves, the other 68
 * bytes to U+0100.. in increasing order, so no symbol is whitespace or a control. */
static void bytes_to_unicode(uint32_t map[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        map[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Loading                                                                              */

/* At most 40 bytes of a token or merge line for an error message, control characters shown
 * as '?', so that a hostile file cannot break the one-line message. */
static const char *shown(const char *s, size_t n, char out[44]) {
    size_t k = n < 40 ? n : 40;
    for (size_t i = 0; i < k; i++) out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    memcpy(out + k, n > k ? "..." : "", n > k ? 4 : 1);
    return out;
}

/* Fills id_to_entry from the tokens that survive json.load (the last of a repeated key). Two
 * different tokens with one id are refused: decoding could give only one of them back, and
 * which one differs between transformers 4 (the later in the file) and 5 (hash order). */
static mmt_status index_ids(mmt_tokenizer *t, const char *path) {
    for (int64_t i = 0; i < t->n_entries; i++) {
        const vocab_entry *e = &t->entries[i];
        const char *token = t->token_pool + e->offset;
        if (vocab_lookup(t, token, e->len) != e->id) continue; /* overridden by a later key */
        int32_t other = t->id_to_entry[e->id];
        if (other >= 0 && t->entries[other].len == e->len &&
            memcmp(t->token_pool + t->entries[other].offset, token, e->len) == 0)
            other = -1; /* the same key repeated with the same id */
        if (other >= 0) {
            char a[44], b[44];
            const vocab_entry *o = &t->entries[other];
            return mmt_fail(MMT_STATUS_BAD_FORMAT,
                            "%s: tokens \"%s\" and \"%s\" both have id %d (an id must decode to one token)",
                            path, shown(t->token_pool + o->offset, o->len, a), shown(token, e->len, b),
                            (int)e->id);
        }
        t->id_to_entry[e->id] = (int32_t)i;
    }
    return MMT_OK;
}

/* Builds the vocabulary from a {token: id} object: vocab.json's root, or model.vocab of a
 * tokenizer.json. `path` names it in messages. */
static mmt_status vocab_from_object(mmt_tokenizer *t, const mmt_json *root, const char *path) {
    mmt_status s = MMT_OK;
    if (root->type != MMT_JSON_OBJECT) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected a JSON object {token: id}, got %s",
                     path, mmt_json_type_name(root->type));
        goto done;
    }
    if (root->len == 0 || root->len > INT32_MAX) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: vocabulary has %zu entries", path, root->len);
        goto done;
    }
    size_t pool_bytes = 0;
    int64_t max_id = -1;
    for (size_t i = 0; i < root->len; i++) {
        const mmt_json *v = &root->items[i];
        if (v->type != MMT_JSON_NUMBER || !v->is_integer || v->integer < 0 ||
            v->integer >= MAX_TOKEN_ID) {
            char shown_key[44];
            s = mmt_fail(MMT_STATUS_BAD_FORMAT,
                         "%s: token \"%s\": id must be an integer in [0, %d), got %s", path,
                         shown(root->keys[i], root->key_lens[i], shown_key), MAX_TOKEN_ID,
                         v->type == MMT_JSON_NUMBER ? "another number"
                                                    : mmt_json_type_name(v->type));
            goto done;
        }
        if (root->key_lens[i] > UINT32_MAX / 2) {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: token %zu is too long", path, i);
            goto done;
        }
        pool_bytes += root->key_lens[i] + 1;
        if (v->integer > max_id) max_id = v->integer;
    }
    if (pool_bytes > UINT32_MAX) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: vocabulary strings exceed 4 GiB", path);
        goto done;
    }
    t->n_entries = (int64_t)root->len;
    t->vocab_size = max_id + 1;
    t->vocab_mask = table_size_for(t->n_entries) - 1;
    t->token_pool = mmt_malloc(pool_bytes);
    t->entries = mmt_malloc((size_t)t->n_entries * sizeof *t->entries);
    t->vocab_slots = mmt_malloc((size_t)(t->vocab_mask + 1) * sizeof *t->vocab_slots);
    t->id_to_entry = mmt_malloc((size_t)t->vocab_size * sizeof *t->id_to_entry);
    if (!t->token_pool || !t->entries || !t->vocab_slots || !t->id_to_entry) {
        s = mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", path);
        goto done;
    }
    memset(t->vocab_slots, 0xff, (size_t)(t->vocab_mask + 1) * sizeof *t->vocab_slots);
    memset(t->id_to_entry, 0xff, (size_t)t->vocab_size * sizeof *t->id_to_entry);
    size_t off = 0;
    for (size_t i = 0; i < root->len; i++) {
        size_t n = root->key_lens[i];
        memcpy(t->token_pool + off, root->keys[i], n);
        t->token_pool[off + n] = '\0';
        vocab_entry *e = &t->entries[i];
        e->offset = (uint32_t)off;
        e->len = (uint32_t)n;
        e->id = (int32_t)root->items[i].integer;
        if ((int64_t)n > t->max_token_len) t->max_token_len = (int64_t)n;
        off += n + 1;
        /* A repeated key keeps its last id, as Python's json.load does. */
        uint64_t h = hash_bytes(root->keys[i], n, 0);
        for (int64_t k = (int64_t)(h & (uint64_t)t->vocab_mask);; k = (k + 1) & t->vocab_mask) {
            int32_t cur = t->vocab_slots[k];
            if (cur < 0) {
                t->vocab_slots[k] = (int32_t)i;
                break;
            }
            const vocab_entry *c = &t->entries[cur];
            if (c->len == n && memcmp(t->token_pool + c->offset, root->keys[i], n) == 0) {
                t->vocab_slots[k] = (int32_t)i;
                break;
            }
        }
    }
    if ((s = index_ids(t, path)) != MMT_OK) goto done;

    t->bos = vocab_lookup(t, BOS_TEXT, strlen(BOS_TEXT));
    t->eos = vocab_lookup(t, EOS_TEXT, strlen(EOS_TEXT));
    if (t->bos < 0 || t->eos < 0) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: the vocabulary lacks %s", path,
                     t->bos < 0 ? BOS_TEXT : EOS_TEXT);
        goto done;
    }
    uint32_t map[256];
    bytes_to_unicode(map);
    memset(t->char_to_byte, 0xff, sizeof t->char_to_byte);
    for (int b = 0; b < 256; b++) {
        char buf[16];
        int n = mmt_utf8_encode(map[b], buf);
        t->char_to_byte[map[b]] = (int16_t)b;
        t->byte_id[b] = vocab_lookup(t, buf, (size_t)n);
        memcpy(buf + n, EOW_SUFFIX, 4);
        t->byte_eow_id[b] = vocab_lookup(t, buf, (size_t)n + 4);
        if (t->byte_id[b] < 0 || t->byte_eow_id[b] < 0) {
            buf[n + (t->byte_id[b] < 0 ? 0 : 4)] = '\0';
            s = mmt_fail(MMT_STATUS_BAD_FORMAT,
                         "%s: the vocabulary lacks the byte-level token \"%s\" (byte 0x%02x)",
                         path, buf, b);
            goto done;
        }
    }
done:
    return s;
}

static mmt_status load_vocab(mmt_tokenizer *t, const char *path) {
    mmt_json_doc *doc = NULL;
    MMT_TRY(mmt_json_parse_file(path, &doc));
    mmt_status s = vocab_from_object(t, mmt_json_root(doc), path);
    mmt_json_free(doc);
    return s;
}

/* Allocates the merge table for about n merges (empty slots: left == UINT32_MAX). */
static mmt_status merges_alloc(mmt_tokenizer *t, int64_t n) {
    t->merge_mask = table_size_for(n) - 1;
    t->merge_slots = mmt_malloc((size_t)(t->merge_mask + 1) * sizeof *t->merge_slots);
    if (!t->merge_slots) return MMT_STATUS_OUT_OF_MEMORY;
    memset(t->merge_slots, 0xff, (size_t)(t->merge_mask + 1) * sizeof *t->merge_slots);
    return MMT_OK;
}

/* Adds the merge (left, right) with the given rank. Each part and their concatenation must
 * be in the vocabulary (tokenizers refuses such files too, "Token `x` out of vocabulary";
 * transformers 4's Python tokenizer would silently map them to unk). joined has room for
 * nl + nr bytes; path + where name the merge in messages ("merges.txt" ":12"). */
static mmt_status merge_add(mmt_tokenizer *t, const char *left_s, size_t nl, const char *right_s,
                            size_t nr, int32_t rank, char *joined, const char *path,
                            const char *where) {
    int32_t left = vocab_lookup(t, left_s, nl);
    int32_t right = vocab_lookup(t, right_s, nr);
    memcpy(joined, left_s, nl);
    memcpy(joined + nl, right_s, nr);
    int32_t merged = vocab_lookup(t, joined, nl + nr);
    if (left < 0 || right < 0 || merged < 0) {
        const char *missing = left < 0 ? left_s : right < 0 ? right_s : joined;
        size_t missing_len = left < 0 ? nl : right < 0 ? nr : nl + nr;
        /* the merge as its merges.txt line reads, "left right" (shown() reads 40 bytes) */
        char line[41], shown_line[44], shown_missing[44];
        size_t n = nl + 1 + nr, a = nl < 40 ? nl : 40;
        memcpy(line, left_s, a);
        if (a < 40) line[a++] = ' ';
        memcpy(line + a, right_s, nr < 40 - a ? nr : 40 - a);
        return mmt_fail(MMT_STATUS_BAD_FORMAT,
                        "%s%s: merge \"%s\" uses a token missing from the vocabulary: \"%s\"",
                        path, where, shown(line, n, shown_line),
                        shown(missing, missing_len, shown_missing));
    }
    /* A repeated pair keeps its last rank (Rust HashMap::collect, Python dict(zip)). */
    uint64_t h = hash_pair((uint32_t)left, (uint32_t)right);
    for (int64_t k = (int64_t)(h & (uint64_t)t->merge_mask);; k = (k + 1) & t->merge_mask) {
        merge_slot *m = &t->merge_slots[k];
        if (m->left == UINT32_MAX || (m->left == (uint32_t)left && m->right == (uint32_t)right)) {
            m->left = (uint32_t)left;
            m->right = (uint32_t)right;
            m->rank = rank;
            m->new_id = merged;
            break;
        }
    }
    return MMT_OK;
}

/* Reads merges.txt: a "#version" header, then one "left right" pair per line; the rank is the
 * pair's position. Without the header, line 1 is a merge for fast mode and dropped by slow
 * mode, with a warning (docs/compatibility.md, "Tokenizer files"). Each part and their
 * concatenation must be in the vocabulary (tokenizers refuses such files too; Python would
 * silently map them to unk). */
static mmt_status load_merges(mmt_tokenizer *t, const char *path) {
    char *text = NULL;
    size_t len = 0;
    MMT_TRY(mmt_file_read_all(path, MERGES_MAX_BYTES, &text, &len));
    mmt_status s = MMT_OK;
    int64_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    char *joined = mmt_malloc(len + 1);
    if (!joined || merges_alloc(t, lines) != MMT_OK) {
        s = mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", path);
        goto done;
    }

    size_t pos = 0;
    int64_t line_no = 0;
    int32_t rank = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n') end++;
        size_t stop = end;
        if (stop > pos && text[stop - 1] == '\r') stop--; /* tolerate CRLF files */
        line_no++;
        const char *line = text + pos;
        size_t n = stop - pos;
        pos = end + 1;
        /* The "#version: 0.2" header (tokenizers skips any line starting with #version). */
        if (n >= 8 && memcmp(line, "#version", 8) == 0) continue;
        if (line_no == 1 && n > 0) {
            /* transformers 4's Python CLIPTokenizer reads lines[1:], header or not, while
             * tokenizers (transformers 5) keeps such a line as the first merge. Fast mode
             * keeps it, slow mode drops it, each like its reference; the file is suspect. */
            t->slow_first_rank = 1;
            char shown_line[44];
            mmt_log_warn("%s: line 1 is the merge \"%s\", not a \"#version\" header: transformers 5 "
                         "and mmtune keep it, transformers 4's slow CLIPTokenizer (and mmtune's slow "
                         "mode) drop line 1 as the header", path, shown(line, n, shown_line));
        }
        if (n == 0) {
            /* Blank lines are tolerated only at the end of the file. */
            size_t k = pos;
            while (k < len && (text[k] == '\n' || text[k] == '\r')) k++;
            if (k >= len) break;
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: empty merge line", path,
                         (long long)line_no);
            goto done;
        }
        const char *sp = memchr(line, ' ', n);
        if (!sp || sp == line || sp == line + n - 1 || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - line))) {
            char shown_line[44];
            s = mmt_fail(MMT_STATUS_BAD_FORMAT,
                         "%s:%lld: malformed merge line (expected \"left right\"): \"%s\"",
                         path, (long long)line_no, shown(line, n, shown_line));
            goto done;
        }
        char where[32];
        snprintf(where, sizeof where, ":%lld", (long long)line_no);
        size_t nl = (size_t)(sp - line);
        if ((s = merge_add(t, line, nl, sp + 1, n - nl - 1, rank, joined, path, where)) != MMT_OK)
            goto done;
        rank++;
    }
    t->merge_count = rank;
done:
    mmt_free(joined);
    mmt_free(text);
    return s;
}

/* The mutex exists exactly when c->pool is set, which is what mmt_tokenizer_free tests. */
static mmt_status cache_init(bpe_cache *c) {
    c->hashes = mmt_calloc(CACHE_SLOTS, sizeof *c->hashes);
    c->offsets = mmt_malloc(CACHE_SLOTS * sizeof *c->offsets);
    if (!c->hashes || !c->offsets) return MMT_STATUS_OUT_OF_MEMORY;
    if (pthread_mutex_init(&c->lock, NULL) != 0)
        return mmt_fail(MMT_STATUS_INTERNAL, "tokenizer: cannot create the cache mutex");
    c->pool = mmt_malloc(CACHE_POOL_BYTES);
    if (!c->pool) {
        pthread_mutex_destroy(&c->lock);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    return MMT_OK;
}

mmt_status mmt_tokenizer_load(const char *vocab_json_path, const char *merges_txt_path,
                              mmt_tokenizer **out) {
    if (!out || !vocab_json_path || !merges_txt_path)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_tokenizer_load: NULL argument");
    *out = NULL;
    mmt_tokenizer *t = mmt_calloc(1, sizeof *t);
    if (!t) return MMT_STATUS_OUT_OF_MEMORY;
    atomic_init(&t->mode, MMT_TOKENIZER_FAST);
    mmt_status s = load_vocab(t, vocab_json_path);
    if (s == MMT_OK) s = load_merges(t, merges_txt_path);
    if (s == MMT_OK) s = cache_init(&t->cache);
    if (s != MMT_OK) {
        mmt_tokenizer_free(t);
        return s;
    }
    *out = t;
    return MMT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* tokenizer.json                                                                       */

/* model.merges of a tokenizer.json: "left right" strings, read like merges.txt lines
 * ("#version" entries skipped, as tokenizers' convert_merges_to_hashmap does), or [left,
 * right] pairs (tokenizers >= 0.20, whose parts may hold spaces); not both in one list, which
 * tokenizers refuses too. The rank is the position. */
static mmt_status merges_from_json(mmt_tokenizer *t, const mmt_json *model, const char *path) {
    const mmt_json *list = mmt_json_get(model, "merges");
    if (!list || list->type != MMT_JSON_ARRAY)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: model.merges: expected an array, got %s", path,
                        list ? mmt_json_type_name(list->type) : "nothing");
    int strings = list->len > 0 && list->items[0].type == MMT_JSON_STRING;
    size_t longest = 0;
    for (size_t i = 0; i < list->len; i++) {
        const mmt_json *m = &list->items[i];
        int pair = m->type == MMT_JSON_ARRAY && m->len == 2 && m->items[0].type == MMT_JSON_STRING &&
                   m->items[1].type == MMT_JSON_STRING;
        if (strings ? m->type != MMT_JSON_STRING : !pair)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: model.merges[%zu]: expected %s, like the first entry",
                            path, i, strings ? "a \"left right\" string" : "a [left, right] pair of strings");
        size_t n = strings ? m->len : m->items[0].len + m->items[1].len;
        if (n > longest) longest = n;
    }
    mmt_status s = MMT_OK;
    char *joined = mmt_malloc(longest + 1);
    if (!joined || merges_alloc(t, (int64_t)list->len + 1) != MMT_OK) {
        mmt_free(joined);
        return mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", path);
    }
    int32_t rank = 0;
    for (size_t i = 0; i < list->len && s == MMT_OK; i++) {
        const mmt_json *m = &list->items[i];
        char where[48];
        snprintf(where, sizeof where, ": model.merges[%zu]", i);
        if (!strings) {
            const mmt_json *l = &m->items[0], *r = &m->items[1];
            s = merge_add(t, l->string, l->len, r->string, r->len, rank++, joined, path, where);
            continue;
        }
        const char *line = m->string;
        size_t n = m->len;
        if (n >= 8 && memcmp(line, "#version", 8) == 0) continue;
        const char *sp = memchr(line, ' ', n);
        if (!sp || sp == line || sp == line + n - 1 || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - line))) {
            char shown_line[44];
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s%s: malformed merge (expected \"left right\"): \"%s\"",
                         path, where, shown(line, n, shown_line));
            break;
        }
        size_t nl = (size_t)(sp - line);
        s = merge_add(t, line, nl, sp + 1, n - nl - 1, rank++, joined, path, where);
    }
    t->merge_count = rank;
    mmt_free(joined);
    return s;
}

/* CLIP's added tokens are its two specials, which encode splits off the raw text by itself.
 * Their flags are not checked: transformers 5 CLIPTokenizer rebuilds them from its own
 * arguments (hub files mark them "normalized": true, what save_pretrained writes marks them
 * false). Any other added token would need a split the BPE tokenizer does not have. The
 * post-processor must frame the text as BOS ... EOS, or be null (CLIPTokenizer sets that
 * frame whatever the file says). */
static mmt_status check_clip_specials(const mmt_tokenizer *t, const mmt_json *root, const char *path) {
    mmt_tokenizer_json_added *added = NULL;
    int64_t n = 0;
    MMT_TRY(mmt_tokenizer_json_added_tokens(root, path, &added, &n));
    mmt_status s = MMT_OK;
    for (int64_t i = 0; i < n && s == MMT_OK; i++) {
        const mmt_tokenizer_json_added *a = &added[i];
        int is_bos = a->len == strlen(BOS_TEXT) && memcmp(a->content, BOS_TEXT, a->len) == 0;
        int is_eos = a->len == strlen(EOS_TEXT) && memcmp(a->content, EOS_TEXT, a->len) == 0;
        char shown_token[44];
        if (!is_bos && !is_eos)
            s = mmt_fail(MMT_STATUS_UNSUPPORTED,
                         "%s: added_tokens[%lld]: \"%s\" is not supported (the CLIP tokenizer knows only %s and %s)",
                         path, (long long)i, shown(a->content, a->len, shown_token), BOS_TEXT, EOS_TEXT);
        else if (a->id != (is_bos ? t->bos : t->eos))
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: added_tokens[%lld]: %s has id %d, model.vocab says %d",
                         path, (long long)i, is_bos ? BOS_TEXT : EOS_TEXT, (int)a->id,
                         (int)(is_bos ? t->bos : t->eos));
    }
    mmt_free(added);
    MMT_TRY(s);
    mmt_tokenizer_json_frame f;
    MMT_TRY(mmt_tokenizer_json_frame_of(root, path, &f));
    int none = f.n_prefix == 0 && f.n_suffix == 0;
    if (!none && (f.n_prefix != 1 || f.n_suffix != 1 || f.prefix[0] != t->bos || f.suffix[0] != t->eos))
        return mmt_fail(MMT_STATUS_UNSUPPORTED,
                        "%s: post_processor: CLIP frames a text as %s (%d) ... %s (%d), this file does not",
                        path, BOS_TEXT, (int)t->bos, EOS_TEXT, (int)t->eos);
    return MMT_OK;
}

mmt_status mmt_tokenizer_from_json(const mmt_json *root, const char *what, mmt_tokenizer **out) {
    if (!out || !root || !what)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_tokenizer_from_json: NULL argument");
    *out = NULL;
    MMT_TRY(mmt_tokenizer_json_check_root(root, what));
    MMT_TRY(mmt_tokenizer_json_check_clip(root, what));
    const mmt_json *model = mmt_json_get(root, "model"), *vocab;
    int64_t max_id;
    MMT_TRY(mmt_tokenizer_json_vocab(model, what, &vocab, &max_id));
    mmt_tokenizer *t = mmt_calloc(1, sizeof *t);
    if (!t) return MMT_STATUS_OUT_OF_MEMORY;
    atomic_init(&t->mode, MMT_TOKENIZER_FAST);
    size_t n = strlen(what) + sizeof ": model.vocab";
    char *vocab_what = mmt_malloc(n);
    mmt_status s = vocab_what ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) {
        snprintf(vocab_what, n, "%s: model.vocab", what);
        s = vocab_from_object(t, vocab, vocab_what);
    }
    mmt_free(vocab_what);
    if (s == MMT_OK) s = merges_from_json(t, model, what);
    if (s == MMT_OK) s = check_clip_specials(t, root, what);
    if (s == MMT_OK) s = cache_init(&t->cache);
    if (s != MMT_OK) {
        mmt_tokenizer_free(t);
        return s;
    }
    *out = t;
    return MMT_OK;
}

mmt_status mmt_tokenizer_load_json(const char *tokenizer_json_path, mmt_tokenizer **out) {
    if (!out || !tokenizer_json_path)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_tokenizer_load_json: NULL argument");
    *out = NULL;
    mmt_json_doc *doc = NULL;
    MMT_TRY(mmt_tokenizer_json_open(tokenizer_json_path, &doc));
    mmt_status s = mmt_tokenizer_from_json(mmt_json_root(doc), tokenizer_json_path, out);
    mmt_json_free(doc);
    return s;
}

void mmt_tokenizer_free(mmt_tokenizer *t) {
    if (!t) return;
    if (t->cache.pool) pthread_mutex_destroy(&t->cache.lock);
    mmt_free(t->cache.hashes);
    mmt_free(t->cache.offsets);
    mmt_free(t->cache.pool);
    mmt_free(t->token_pool);
    mmt_free(t->entries);
    mmt_free(t->vocab_slots);
    mmt_free(t->id_to_entry);
    mmt_free(t->merge_slots);
    mmt_free(t);
}

void mmt_tokenizer_set_mode(mmt_tokenizer *t, mmt_tokenizer_mode mode) {
    atomic_store(&t->mode, mode == MMT_TOKENIZER_SLOW ? MMT_TOKENIZER_SLOW : MMT_TOKENIZER_FAST);
}
mmt_tokenizer_mode mmt_tokenizer_mode_of(const mmt_tokenizer *t) {
    return (mmt_tokenizer_mode)atomic_load(&((mmt_tokenizer *)t)->mode);
}
int32_t mmt_tokenizer_bos(const mmt_tokenizer *t) { return t->bos; }
int32_t mmt_tokenizer_eos(const mmt_tokenizer *t) { return t->eos; }
int64_t mmt_tokenizer_vocab_size(const mmt_tokenizer *t) { return t->vocab_size; }
int64_t mmt_tokenizer_merge_count(const mmt_tokenizer *t) { return t->merge_count; }

const char *mmt_tokenizer_id_to_token(const mmt_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->vocab_size || t->id_to_entry[id] < 0) return NULL;
    return t->token_pool + t->entries[t->id_to_entry[id]].offset;
}

/* ------------------------------------------------------------------------------------ */
/* Per-call scratch                                                                      */

typedef struct bpe_symbol {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    int32_t alive;
} bpe_symbol;

typedef struct bpe_candidate {
    int32_t rank, pos, new_id;
} bpe_candidate;

/* Everything one encode call needs; freed at its end, so calls share nothing. */
typedef struct scratch {
    uint32_t *cps, *a, *b;
    int64_t cps_cap, a_cap, b_cap;
    char *bytes;
    int64_t bytes_cap;
    int32_t *ids;
    int64_t n_ids, ids_cap;
    bpe_symbol *sym;
    int64_t sym_cap;
    bpe_candidate *heap;
    int64_t heap_cap;
    /* Set by mmt_tokenizer_pretokenize: pre-tokens go to the sink instead of BPE, specials
     * are dropped, and the tokenizer pointer is NULL. */
    mmt_pretoken_fn sink;
    void *sink_ctx;
    /* mmt_tokenizer_encode_limit: once more than stop_after ids are certain, BPE stops
     * (stopped set); 0 runs to the end. */
    int64_t stop_after;
    int stopped;
} scratch;

static void scratch_free(scratch *s) {
    mmt_free(s->cps);
    mmt_free(s->a);
    mmt_free(s->b);
    mmt_free(s->bytes);
    mmt_free(s->ids);
    mmt_free(s->sym);
    mmt_free(s->heap);
}

#define GROW(s, field, capfield, need)                                                     \
    mmt_grow((void **)&(s)->field, &(s)->capfield, (need), sizeof *(s)->field)

static mmt_status emit_id(scratch *s, int32_t id) {
    MMT_TRY(GROW(s, ids, ids_cap, s->n_ids + 1));
    s->ids[s->n_ids++] = id;
    return MMT_OK;
}

/* A special token met in the text: its id, or nothing when only pre-tokenizing. */
static mmt_status emit_special(const mmt_tokenizer *t, scratch *s, int is_bos) {
    if (s->sink) return MMT_OK;
    return emit_id(s, is_bos ? t->bos : t->eos);
}

/* ------------------------------------------------------------------------------------ */
/* BPE                                                                                  */

static int candidate_less(const bpe_candidate *a, const bpe_candidate *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(bpe_candidate *h, int64_t *n, bpe_candidate c) {
    int64_t i = (*n)++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!candidate_less(&c, &h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = c;
}

static bpe_candidate heap_pop(bpe_candidate *h, int64_t *n) {
    bpe_candidate top = h[0], last = h[--(*n)];
    int64_t i = 0;
    for (;;) {
        int64_t child = 2 * i + 1;
        if (child >= *n) break;
        if (child + 1 < *n && candidate_less(&h[child + 1], &h[child])) child++;
        if (!candidate_less(&h[child], &last)) break;
        h[i] = h[child];
        i = child;
    }
    if (*n > 0) h[i] = last;
    return top;
}

/* The merges a mode uses: ranks in [first, end). */
typedef struct rank_window {
    int32_t first, end;
} rank_window;

/* Pushes the merge of symbol pos with its right neighbour, if there is one. */
static void push_pair(const mmt_tokenizer *t, scratch *s, int64_t *n_heap, int32_t pos,
                      rank_window ranks) {
    int32_t next = s->sym[pos].next;
    if (next < 0) return;
    const merge_slot *m = merge_find(t, s->sym[pos].id, s->sym[next].id);
    if (m && m->rank >= ranks.first && m->rank < ranks.end) heap_push(s->heap, n_heap, (bpe_candidate){m->rank, pos, m->new_id});
}

/* BPE of one pre-token (its raw UTF-8 bytes); appends the ids to s->ids. */
static mmt_status bpe_word_compute(const mmt_tokenizer *t, scratch *s, const unsigned char *w,
                                   int64_t n, rank_window ranks) {
    MMT_TRY(GROW(s, sym, sym_cap, n));
    /* Each merge adds at most two candidates to the n - 1 initial ones. */
    MMT_TRY(GROW(s, heap, heap_cap, 3 * n));
    for (int64_t i = 0; i < n; i++) {
        s->sym[i].id = i == n - 1 ? t->byte_eow_id[w[i]] : t->byte_id[w[i]];
        s->sym[i].prev = (int32_t)i - 1;
        s->sym[i].next = i == n - 1 ? -1 : (int32_t)i + 1;
        s->sym[i].alive = 1;
    }
    int64_t n_heap = 0;
    for (int64_t i = 0; i + 1 < n; i++) push_pair(t, s, &n_heap, (int32_t)i, ranks);
    while (n_heap > 0) {
        bpe_candidate top = heap_pop(s->heap, &n_heap);
        bpe_symbol *cur = &s->sym[top.pos];
        if (!cur->alive || cur->next < 0) continue;
        bpe_symbol *right = &s->sym[cur->next];
        /* Skip stale candidates: a neighbour changed since this one was pushed. */
        const merge_slot *m = merge_find(t, cur->id, right->id);
        if (!m || m->new_id != top.new_id || m->rank < ranks.first || m->rank >= ranks.end) continue;
        cur->id = top.new_id;
        right->alive = 0;
        cur->next = right->next;
        if (right->next >= 0) s->sym[right->next].prev = top.pos;
        if (cur->prev >= 0) push_pair(t, s, &n_heap, cur->prev, ranks);
        push_pair(t, s, &n_heap, top.pos, ranks);
    }
    for (int32_t i = 0; i >= 0; i = s->sym[i].next) MMT_TRY(emit_id(s, s->sym[i].id));
    return MMT_OK;
}

static int cache_find(bpe_cache *c, uint64_t h, int mode, const unsigned char *w, int64_t n,
                      int64_t *slot) {
    for (int64_t i = (int64_t)(h & (CACHE_SLOTS - 1));; i = (i + 1) & (CACHE_SLOTS - 1)) {
        if (c->hashes[i] == 0) {
            *slot = i;
            return 0;
        }
        if (c->hashes[i] == h) {
            cache_header hd;
            memcpy(&hd, c->pool + c->offsets[i], sizeof hd);
            if (hd.mode == mode && hd.word_len == n &&
                memcmp(c->pool + c->offsets[i] + sizeof hd, w, (size_t)n) == 0) {
                *slot = i;
                return 1;
            }
        }
    }
}

/* BPE with the shared cache: look up under the lock, compute outside it, insert under it. */
static mmt_status bpe_word(mmt_tokenizer *t, scratch *s, const unsigned char *w, int64_t n,
                           int mode) {
    rank_window ranks = {0, INT32_MAX};
    if (mode == MMT_TOKENIZER_SLOW)
        ranks = (rank_window){t->slow_first_rank, t->slow_first_rank + SLOW_MAX_MERGES};
    if (n > CACHE_MAX_WORD) return bpe_word_compute(t, s, w, n, ranks);
    bpe_cache *c = &t->cache;
    uint64_t h = hash_bytes(w, (size_t)n, (uint64_t)mode) | 1; /* 0 marks an empty slot */
    int64_t slot;
    pthread_mutex_lock(&c->lock);
    if (cache_find(c, h, mode, w, n, &slot)) {
        cache_header hd;
        const unsigned char *e = c->pool + c->offsets[slot];
        memcpy(&hd, e, sizeof hd);
        mmt_status st = GROW(s, ids, ids_cap, s->n_ids + hd.n_ids);
        if (st == MMT_OK) {
            memcpy(s->ids + s->n_ids, e + sizeof hd + hd.word_len, hd.n_ids * sizeof(int32_t));
            s->n_ids += hd.n_ids;
        }
        pthread_mutex_unlock(&c->lock);
        return st;
    }
    pthread_mutex_unlock(&c->lock);

    int64_t first = s->n_ids;
    MMT_TRY(bpe_word_compute(t, s, w, n, ranks));
    int64_t n_ids = s->n_ids - first;
    size_t need = sizeof(cache_header) + (size_t)n + (size_t)n_ids * sizeof(int32_t);

    pthread_mutex_lock(&c->lock);
    if (!cache_find(c, h, mode, w, n, &slot)) { /* another thread may have added it */
        if (c->count >= CACHE_MAX_ENTRIES || c->pool_used + need > CACHE_POOL_BYTES) {
            memset(c->hashes, 0, CACHE_SLOTS * sizeof *c->hashes);
            c->pool_used = 0;
            c->count = 0;
            cache_find(c, h, mode, w, n, &slot);
        }
        cache_header hd = {(uint16_t)n, (uint16_t)n_ids, (uint8_t)mode};
        unsigned char *e = c->pool + c->pool_used;
        memcpy(e, &hd, sizeof hd);
        memcpy(e + sizeof hd, w, (size_t)n);
        memcpy(e + sizeof hd + n, s->ids + first, (size_t)n_ids * sizeof(int32_t));
        c->hashes[slot] = h;
        c->offsets[slot] = (uint32_t)c->pool_used;
        c->pool_used += need;
        c->count++;
    }
    pthread_mutex_unlock(&c->lock);
    return MMT_OK;
}

/* UTF-8 encodes cps[start, end) and runs BPE on it. */
static mmt_status bpe_cps(mmt_tokenizer *t, scratch *s, const uint32_t *cps, int64_t start,
                          int64_t end, int mode) {
    MMT_TRY(GROW(s, bytes, bytes_cap, 4 * (end - start)));
    int64_t n = 0;
    for (int64_t i = start; i < end; i++) n += mmt_utf8_encode(cps[i], s->bytes + n);
    if (s->sink) return n > 0 ? s->sink(s->sink_ctx, s->bytes, (size_t)n) : MMT_OK;
    if (s->stop_after > 0) {
        /* a word of n bytes is at least n / max_token_len tokens: a huge one need not be run */
        if (s->stopped || s->n_ids + (n + t->max_token_len - 1) / t->max_token_len > s->stop_after) {
            s->stopped = 1;
            return MMT_OK;
        }
    }
    MMT_TRY(bpe_word(t, s, (const unsigned char *)s->bytes, n, mode));
    if (s->stop_after > 0 && s->n_ids > s->stop_after) s->stopped = 1;
    return MMT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Pre-tokenisation: the CLIP regex, by hand                                            */

/* Case-insensitive equality of a text code point with a lowercase ASCII pattern letter, as
 * the regex module's IGNORECASE (simple case folding) sees it: only U+017F LONG S and
 * U+212A KELVIN SIGN fold onto ASCII letters besides the upper case ones. */
static int fold_equal(uint32_t cp, char pattern, int ignore_case) {
    if (cp == (uint32_t)pattern) return 1;
    if (!ignore_case) return 0;
    if (pattern >= 'a' && pattern <= 'z' && cp == (uint32_t)(pattern - 32)) return 1;
    return (pattern == 's' && cp == 0x17F) || (pattern == 'k' && cp == 0x212A);
}

/* Length of literal `lit` at cps[i] (0 if it does not match there). */
static int64_t match_literal(const uint32_t *cps, int64_t n, int64_t i, const char *lit,
                             int ignore_case) {
    int64_t k = 0;
    for (; lit[k]; k++)
        if (i + k >= n || !fold_equal(cps[i + k], lit[k], ignore_case)) return 0;
    return k;
}

/* The contraction alternatives 's|'t|'re|'ve|'m|'ll|'d, in pattern order. */
static int64_t match_contraction(const uint32_t *cps, int64_t n, int64_t i, int ignore_case) {
    static const char *const forms[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    if (cps[i] != '\'') return 0;
    for (size_t k = 0; k < sizeof forms / sizeof *forms; k++) {
        int64_t m = match_literal(cps, n, i, forms[k], ignore_case);
        if (m) return m;
    }
    return 0;
}

/* Runs the CLIP regex over normalised text and BPE-encodes every match.
 * fast: Oniguruma classes, case-sensitive; ByteLevel(use_regex=True) then re-splits each
 *       match with the GPT-2 regex, which changes only a matched "<|endoftext|>" literal:
 *       it becomes "<|", "endoftext", "|>" (and never a special id: added tokens were
 *       already split off before normalisation).
 * slow: Python regex classes with IGNORECASE; a matched literal that is exactly a special
 *       token is returned unchanged by bpe() (its cache is seeded with them) -> special id. */
static mmt_status pretokenize(mmt_tokenizer *t, scratch *s, const uint32_t *cps, int64_t n,
                              int mode) {
    int slow = mode == MMT_TOKENIZER_SLOW;
    uint32_t letter = slow ? MMT_UNI_SLOW_LETTER : MMT_UNI_FAST_LETTER;
    uint32_t number = slow ? MMT_UNI_SLOW_NUMBER : MMT_UNI_FAST_NUMBER;
    int64_t i = 0;
    while (i < n) {
        int64_t m = match_literal(cps, n, i, BOS_TEXT, slow);
        int is_bos = m > 0;
        if (!m) m = match_literal(cps, n, i, EOS_TEXT, slow);
        if (m) {
            if (!slow) {
                MMT_TRY(bpe_cps(t, s, cps, i, i + 2, mode));
                MMT_TRY(bpe_cps(t, s, cps, i + 2, i + m - 2, mode));
                MMT_TRY(bpe_cps(t, s, cps, i + m - 2, i + m, mode));
            } else if (match_literal(cps, n, i, is_bos ? BOS_TEXT : EOS_TEXT, 0)) {
                MMT_TRY(emit_special(t, s, is_bos));
            } else {
                MMT_TRY(bpe_cps(t, s, cps, i, i + m, mode));
            }
            i += m;
            continue;
        }
        m = match_contraction(cps, n, i, slow);
        if (m) {
            MMT_TRY(bpe_cps(t, s, cps, i, i + m, mode));
            i += m;
            continue;
        }
        uint32_t p = mmt_unicode_props(cps[i]);
        int64_t j = i + 1;
        if (p & letter) {
            while (j < n && (mmt_unicode_props(cps[j]) & letter)) j++;
        } else if (p & number) {
            /* one digit per token */
        } else if (slow ? (p & MMT_UNI_SLOW_PUNCT) != 0 : (p & MMT_UNI_SPACE) == 0) {
            /* Inside the run only the class [^\s\p{L}\p{N}] itself matters. */
            for (; j < n; j++) {
                uint32_t q = mmt_unicode_props(cps[j]);
                int punct = slow ? (q & MMT_UNI_SLOW_PUNCT) != 0
                                 : !(q & (MMT_UNI_SPACE | letter | number));
                if (!punct) break;
            }
        } else {
            i++; /* whitespace (or, slow only, a character no alternative matches) */
            continue;
        }
        MMT_TRY(bpe_cps(t, s, cps, i, j, mode));
        i = j;
    }
    return MMT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Normalisation                                                                        */

/* HF tokenizers: NFC, then Replace(\s+ -> " "), then Lowercase (char::to_lowercase). */
static mmt_status segment_fast(mmt_tokenizer *t, scratch *s, const uint32_t *in, int64_t n) {
    MMT_TRY(GROW(s, a, a_cap, mmt_unicode_nfc_bound(n)));
    int64_t m = mmt_unicode_nfc(in, n, MMT_UNICODE_FAST, s->a);
    MMT_TRY(GROW(s, b, b_cap, 3 * m));
    int64_t k = 0;
    for (int64_t i = 0; i < m; i++) {
        if (mmt_unicode_props(s->a[i]) & MMT_UNI_SPACE) {
            if (i == 0 || !(mmt_unicode_props(s->a[i - 1]) & MMT_UNI_SPACE)) s->b[k++] = ' ';
            continue;
        }
        k += mmt_unicode_lower_char(s->a[i], MMT_UNICODE_FAST, s->b + k);
    }
    return pretokenize(t, s, s->b, k, MMT_TOKENIZER_FAST);
}

/* BasicTokenizer._is_chinese_char: the CJK Unified Ideographs blocks it hard-codes. */
static int is_cjk_ideograph(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* BasicTokenizer.tokenize: _clean_text, _tokenize_chinese_chars, NFC, whitespace split,
 * str.lower per token; the tokens are rejoined with spaces before the regex runs. */
static mmt_status segment_slow(mmt_tokenizer *t, scratch *s, const uint32_t *in, int64_t n) {
    MMT_TRY(GROW(s, b, b_cap, 3 * n));
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t p = mmt_unicode_props(in[i]);
        if (p & MMT_UNI_SLOW_REMOVE) continue;
        if (p & MMT_UNI_SLOW_WHITESPACE) {
            s->b[k++] = ' ';
        } else if (is_cjk_ideograph(in[i])) {
            s->b[k++] = ' ';
            s->b[k++] = in[i];
            s->b[k++] = ' ';
        } else {
            s->b[k++] = in[i];
        }
    }
    MMT_TRY(GROW(s, a, a_cap, mmt_unicode_nfc_bound(k)));
    int64_t m = mmt_unicode_nfc(s->b, k, MMT_UNICODE_SLOW, s->a);
    /* Lowercase each whitespace-separated token (final sigma looks only inside it). */
    MMT_TRY(GROW(s, b, b_cap, 4 * m + 1));
    k = 0;
    int64_t i = 0;
    while (i < m) {
        if (mmt_unicode_props(s->a[i]) & MMT_UNI_PY_SPACE) {
            i++;
            continue;
        }
        int64_t j = i;
        while (j < m && !(mmt_unicode_props(s->a[j]) & MMT_UNI_PY_SPACE)) j++;
        if (k > 0) s->b[k++] = ' ';
        k += mmt_unicode_lower_python(s->a + i, j - i, s->b + k);
        i = j;
    }
    return pretokenize(t, s, s->b, k, MMT_TOKENIZER_SLOW);
}

/* ------------------------------------------------------------------------------------ */
/* Encode / decode                                                                      */

/* Decodes UTF-8, splits off literal special tokens (HF AddedVocabulary in fast mode,
 * tokens_trie.split in slow mode) and runs normalisation + pre-tokenisation on each piece
 * between them; pre-tokens go to BPE (appending to s->ids) or to s->sink. */
static mmt_status tokenize_text(mmt_tokenizer *t, scratch *s, const char *text, size_t len,
                                int mode) {
    if (len > MAX_TEXT_BYTES)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "tokenizer: text of %zu bytes is longer than the %d MiB limit", len,
                        (int)(MAX_TEXT_BYTES >> 20));
    MMT_TRY(GROW(s, cps, cps_cap, (int64_t)len + 1));
    size_t bad = 0;
    int64_t n = len ? mmt_utf8_decode(text, len, s->cps, &bad) : 0;
    if (n < 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "tokenizer: invalid UTF-8 at byte offset %zu",
                        bad);
    int64_t start = 0;
    for (int64_t i = 0; i <= n && !s->stopped; i++) {
        int64_t m = 0;
        int special = -1; /* 1 BOS, 0 EOS */
        if (i < n && s->cps[i] == '<') {
            if ((m = match_literal(s->cps, n, i, BOS_TEXT, 0))) special = 1;
            else if ((m = match_literal(s->cps, n, i, EOS_TEXT, 0))) special = 0;
        }
        if (special < 0 && i < n) continue;
        if (i > start) {
            MMT_TRY(mode == MMT_TOKENIZER_SLOW ? segment_slow(t, s, s->cps + start, i - start)
                                               : segment_fast(t, s, s->cps + start, i - start));
        }
        if (special >= 0) {
            MMT_TRY(emit_special(t, s, special));
            i += m - 1;
            start = i + 1;
        }
    }
    return MMT_OK;
}

mmt_status mmt_tokenizer_encode(mmt_tokenizer *t, const char *text, size_t len, int32_t *ids,
                                int64_t capacity, int64_t *n_total) {
    return mmt_tokenizer_encode_limit(t, text, len, ids, capacity, 0, n_total);
}

mmt_status mmt_tokenizer_encode_limit(mmt_tokenizer *t, const char *text, size_t len, int32_t *ids,
                                      int64_t capacity, int64_t limit, int64_t *n_total) {
    if (!t || (!text && len) || !n_total || capacity < 0 || capacity == 1 ||
        (capacity > 0 && !ids) || limit < 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "mmt_tokenizer_encode: bad arguments (capacity %lld)",
                        (long long)capacity);
    *n_total = 0;
    scratch s = {.stop_after = limit};
    mmt_status st = tokenize_text(t, &s, text, len, atomic_load(&t->mode));
    if (st != MMT_OK) goto done;
    *n_total = (s.stopped && s.n_ids <= limit ? limit + 1 : s.n_ids) + 2;
    if (capacity > 0) {
        int64_t keep = s.n_ids < capacity - 2 ? s.n_ids : capacity - 2;
        ids[0] = t->bos;
        if (keep > 0) memcpy(ids + 1, s.ids, (size_t)keep * sizeof *ids);
        ids[keep + 1] = t->eos;
    }
done:
    scratch_free(&s);
    return st;
}

mmt_status mmt_tokenizer_pretokenize(const char *text, size_t len, mmt_tokenizer_mode mode,
                                     mmt_pretoken_fn fn, void *ctx) {
    if ((!text && len) || !fn)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_tokenizer_pretokenize: bad arguments");
    scratch s = {0};
    s.sink = fn;
    s.sink_ctx = ctx;
    mmt_status st = tokenize_text(NULL, &s, text, len,
                                  mode == MMT_TOKENIZER_SLOW ? MMT_TOKENIZER_SLOW
                                                             : MMT_TOKENIZER_FAST);
    scratch_free(&s);
    return st;
}

void mmt_bytes_to_unicode(uint32_t map[256]) { bytes_to_unicode(map); }

/* Length of the longest prefix of a valid UTF-8 sequence at s (the "maximal subpart" that
 * Python's errors="replace" and Rust's from_utf8_lossy turn into one U+FFFD), and whether
 * the whole sequence is valid. */
static size_t utf8_prefix(const unsigned char *s, size_t n, int *valid) {
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    *valid = 0;
    if (c < 0x80) {
        *valid = 1;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) need = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) need = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 1;
    size_t k = 1;
    for (; k < need && k < n; k++) {
        unsigned char lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
        if (s[k] < lo_k || s[k] > hi_k) return k;
    }
    if (k == need) *valid = 1;
    return k;
}

mmt_status mmt_tokenizer_decode(const mmt_tokenizer *t, const int32_t *ids, int64_t n,
                                int skip_special, char *out, size_t capacity, size_t *len) {
    if (!t || (n > 0 && !ids) || n < 0 || (capacity > 0 && !out) || !len)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_tokenizer_decode: bad arguments");
    *len = 0;
    /* 1. ids -> raw bytes through the byte-level alphabet */
    size_t raw_cap = 64, raw_n = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *tok = mmt_tokenizer_id_to_token(t, ids[i]);
        if (!tok)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "tokenizer: unknown id %d at %lld",
                            ids[i], (long long)i);
        raw_cap += strlen(tok);
    }
    unsigned char *raw = mmt_malloc(raw_cap);
    char *text = mmt_malloc(raw_cap * 3 + 1); /* each raw byte -> at most U+FFFD (3 bytes) */
    uint32_t *cps = mmt_malloc((raw_cap + 1) * sizeof *cps);
    mmt_status st = MMT_OK;
    if (!raw || !text || !cps) {
        st = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        if (skip_special && (ids[i] == t->bos || ids[i] == t->eos)) continue;
        const char *tok = mmt_tokenizer_id_to_token(t, ids[i]);
        size_t tl = strlen(tok);
        int64_t nc = mmt_utf8_decode(tok, tl, cps, NULL);
        for (int64_t k = 0; k < nc; k++) {
            int b = cps[k] < 324 ? t->char_to_byte[cps[k]] : -1;
            if (b >= 0) {
                raw[raw_n++] = (unsigned char)b;
            } else { /* not a byte-level symbol: keep its UTF-8 as is, as tokenizers does */
                raw_n += (size_t)mmt_utf8_encode(cps[k], (char *)raw + raw_n);
            }
        }
    }
    /* 2. lossy UTF-8 decode, "</w>" -> " " */
    size_t tn = 0;
    for (size_t i = 0; i < raw_n;) {
        if (raw_n - i >= 4 && memcmp(raw + i, EOW_SUFFIX, 4) == 0) {
            text[tn++] = ' ';
            i += 4;
            continue;
        }
        int valid;
        size_t k = utf8_prefix(raw + i, raw_n - i, &valid);
        if (valid) {
            memcpy(text + tn, raw + i, k);
            tn += k;
        } else {
            memcpy(text + tn, "\xEF\xBF\xBD", 3);
            tn += 3;
        }
        i += k;
    }
    /* 3. Python str.strip() */
    int64_t nc = mmt_utf8_decode(text, tn, cps, NULL);
    int64_t first = 0, last = nc;
    while (first < last && (mmt_unicode_props(cps[first]) & MMT_UNI_PY_SPACE)) first++;
    while (last > first && (mmt_unicode_props(cps[last - 1]) & MMT_UNI_PY_SPACE)) last--;
    size_t w = 0;
    int full = 1;
    for (int64_t i = first; i < last; i++) {
        char buf[4];
        int b = mmt_utf8_encode(cps[i], buf);
        if (full && w + (size_t)b + 1 <= capacity) memcpy(out + w, buf, (size_t)b);
        else full = 0;
        if (full) w += (size_t)b;
        *len += (size_t)b;
    }
    if (capacity > 0) out[w] = '\0';
done:
    mmt_free(raw);
    mmt_free(text);
    mmt_free(cps);
    return st;
}
