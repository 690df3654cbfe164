/*
 * bpe_train.c — byte-level BPE training for CLIP vocabularies (bpe_train.h).
 *
 * 1. Count words: every text goes through mmt_tokenizer_pretokenize (the tokenizer's own
 *    normaliser and regex), distinct pre-tokens are counted in a hash table.
 * 2. Spell each word in vocabulary ids: byte symbols, the last one in its "</w>" form.
 * 3. Merge: pair counts live in a hash table, each pair with the list of words it occurs in;
 *    a max-heap over (count, -left, -right) holds candidates lazily (an entry whose count is
 *    out of date is re-pushed with the current count when it surfaces). A merge touches only
 *    the words on its pair's list: their pairs are subtracted, the word is rewritten, its
 *    pairs added back. Only pairs holding the new token can grow, so they are the only ones
 *    pushed afresh; this is the incremental scheme of HF tokenizers' bpe trainer.rs, without
 *    a recount per merge.
 */
#include "data/bpe_train.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "data/pairs.h"
#include "data/tokenizer.h"
#include "data/unicode.h"

#define EOW "</w>"
#define BOS_TEXT "<|startoftext|>"
#define EOS_TEXT "<|endoftext|>"
#define MAX_VOCAB ((int64_t)1 << 24) /* the tokenizer's MAX_TOKEN_ID */
#define MAX_WORD_BYTES 4096          /* longer pre-tokens are not worth learning from */
#define CORPUS_MAX_BYTES ((size_t)4 << 30)

typedef struct word {
    int64_t count;
    int64_t offset; /* into bytes (while counting), then into symbols */
    int32_t len;    /* bytes, then symbols (shrinks as merges apply) */
    int32_t stamp;  /* last merge that visited it, to skip duplicates in a pair's list */
} word;

typedef struct pair {
    int32_t left, right;
    int64_t count;
    int32_t *words; /* words it may occur in; may hold stale or repeated entries (owned) */
    int32_t n_words, cap_words;
    int32_t stamp; /* last merge that changed it upward */
} pair;

typedef struct heap_entry {
    int64_t count;
    int32_t left, right, pair;
} heap_entry;

struct mmt_bpe_vocab {
    char *strings;      /* token strings back to back (owned) */
    int64_t strings_len, strings_cap;
    int64_t *offsets;   /* by id: start in strings; id i ends at offsets[i + 1] (owned) */
    int64_t n_tokens;   /* ids made so far (specials last) */
    int64_t tokens_cap;
    int32_t *merges;    /* left, right per merge (owned) */
    int64_t n_merges, merges_cap;
    int64_t n_words;
};

/* Everything training needs besides the result; freed when it ends. */
typedef struct trainer {
    mmt_bpe_vocab *v;
    word *words;
    int64_t n_words, words_cap;
    char *bytes; /* word spellings while counting (owned) */
    int64_t bytes_len, bytes_cap;
    int32_t *word_slots; /* hash of words, -1 empty (owned) */
    int64_t word_mask;
    int32_t *symbols; /* all words' symbols (owned) */
    pair *pairs;
    int64_t n_pairs, pairs_cap;
    int32_t *pair_slots; /* hash (left, right) -> pair, -1 empty (owned) */
    int64_t pair_mask;
    int32_t *token_slots; /* hash of merged token strings -> id, -1 empty (owned) */
    int64_t token_mask;
    heap_entry *heap;
    int64_t heap_len, heap_cap;
    int32_t *touched; /* pairs grown by the current merge (owned) */
    int64_t n_touched, touched_cap;
} trainer;

/* ------------------------------------------------------------------------------------ */
/* Small helpers                                                                        */


static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static uint64_t hash_pair(int32_t a, int32_t b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

/* A fresh table of -1 slots with room for n entries at load <= 1/2. */
static mmt_status slots_alloc(int32_t **slots, int64_t *mask, int64_t n) {
    int64_t size = 64;
    while (size < 2 * n) size *= 2;
    int32_t *s = mmt_malloc((size_t)size * sizeof *s);
    if (!s) return MMT_STATUS_OUT_OF_MEMORY;
    memset(s, 0xff, (size_t)size * sizeof *s);
    mmt_free(*slots);
    *slots = s;
    *mask = size - 1;
    return MMT_OK;
}

static const char *token_string(const mmt_bpe_vocab *v, int64_t id, int64_t *len) {
    *len = v->offsets[id + 1] - v->offsets[id];
    return v->strings + v->offsets[id];
}

static mmt_status token_append(mmt_bpe_vocab *v, const char *a, int64_t na, const char *b,
                               int64_t nb) {
    MMT_TRY(mmt_grow((void **)&v->strings, &v->strings_cap, v->strings_len + na + nb, 1));
    MMT_TRY(mmt_grow((void **)&v->offsets, &v->tokens_cap, v->n_tokens + 2, sizeof *v->offsets));
    memcpy(v->strings + v->strings_len, a, (size_t)na);
    if (nb) memcpy(v->strings + v->strings_len + na, b, (size_t)nb);
    v->strings_len += na + nb;
    v->offsets[v->n_tokens] = v->strings_len - na - nb;
    v->offsets[++v->n_tokens] = v->strings_len;
    return MMT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Counting words                                                                       */

static mmt_status word_count_add(void *ctx, const char *w, size_t n) {
    trainer *t = ctx;
    if (n > MAX_WORD_BYTES) return MMT_OK;
    uint64_t h = hash_bytes(w, n);
    int64_t i = (int64_t)(h & (uint64_t)t->word_mask);
    for (; t->word_slots[i] >= 0; i = (i + 1) & t->word_mask) {
        word *e = &t->words[t->word_slots[i]];
        if (e->len == (int32_t)n && memcmp(t->bytes + e->offset, w, n) == 0) {
            e->count++;
            return MMT_OK;
        }
    }
    if (t->n_words >= INT32_MAX - 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "bpe: more than %d distinct words",
                        INT32_MAX - 1);
    MMT_TRY(mmt_grow((void **)&t->words, &t->words_cap, t->n_words + 1, sizeof *t->words));
    MMT_TRY(mmt_grow((void **)&t->bytes, &t->bytes_cap, t->bytes_len + (int64_t)n, 1));
    memcpy(t->bytes + t->bytes_len, w, n);
    t->words[t->n_words] = (word){1, t->bytes_len, (int32_t)n, -1};
    t->bytes_len += (int64_t)n;
    t->word_slots[i] = (int32_t)t->n_words++;
    if (2 * t->n_words > t->word_mask) { /* rehash at load 1/2 */
        MMT_TRY(slots_alloc(&t->word_slots, &t->word_mask, t->n_words));
        for (int64_t k = 0; k < t->n_words; k++) {
            uint64_t hk = hash_bytes(t->bytes + t->words[k].offset, (size_t)t->words[k].len);
            int64_t j = (int64_t)(hk & (uint64_t)t->word_mask);
            while (t->word_slots[j] >= 0) j = (j + 1) & t->word_mask;
            t->word_slots[j] = (int32_t)k;
        }
    }
    return MMT_OK;
}

/* The 512 base tokens, and every word spelled in their ids. */
static mmt_status spell_words(trainer *t) {
    mmt_bpe_vocab *v = t->v;
    uint32_t map[256];
    mmt_bytes_to_unicode(map);
    int32_t id_of_byte[256];
    int32_t order[256], n = 0;
    for (int b = 0; b < 256; b++) if (map[b] == (uint32_t)b) order[n++] = b;
    for (int b = 0; b < 256; b++) if (map[b] != (uint32_t)b) order[n++] = b;
    for (int eow = 0; eow < 2; eow++) {
        for (int k = 0; k < 256; k++) {
            char buf[8];
            int len = mmt_utf8_encode(map[order[k]], buf);
            MMT_TRY(token_append(v, buf, len, EOW, eow ? 4 : 0));
            id_of_byte[order[k]] = k;
        }
    }
    t->symbols = mmt_malloc((size_t)(t->bytes_len ? t->bytes_len : 1) * sizeof *t->symbols);
    if (!t->symbols) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t w = 0; w < t->n_words; w++) {
        word *e = &t->words[w];
        const unsigned char *b = (const unsigned char *)t->bytes + e->offset;
        int32_t *s = t->symbols + e->offset;
        for (int32_t i = 0; i < e->len; i++) s[i] = id_of_byte[b[i]] + (i == e->len - 1 ? 256 : 0);
    }
    return MMT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Pairs and the heap                                                                   */

static int heap_above(const heap_entry *a, const heap_entry *b) {
    if (a->count != b->count) return a->count > b->count;
    if (a->left != b->left) return a->left < b->left;
    return a->right < b->right;
}

static mmt_status heap_push(trainer *t, int32_t p) {
    MMT_TRY(mmt_grow((void **)&t->heap, &t->heap_cap, t->heap_len + 1, sizeof *t->heap));
    heap_entry e = {t->pairs[p].count, t->pairs[p].left, t->pairs[p].right, p};
    int64_t i = t->heap_len++;
    while (i > 0 && heap_above(&e, &t->heap[(i - 1) / 2])) {
        t->heap[i] = t->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    t->heap[i] = e;
    return MMT_OK;
}

static heap_entry heap_pop(trainer *t) {
    heap_entry top = t->heap[0], last = t->heap[--t->heap_len];
    int64_t i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= t->heap_len) break;
        if (c + 1 < t->heap_len && heap_above(&t->heap[c + 1], &t->heap[c])) c++;
        if (!heap_above(&t->heap[c], &last)) break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (t->heap_len > 0) t->heap[i] = last;
    return top;
}

/* Index of pair (a, b), created with count 0 if new; -1 on allocation failure. */
static int32_t pair_get(trainer *t, int32_t a, int32_t b) {
    int64_t i = (int64_t)(hash_pair(a, b) & (uint64_t)t->pair_mask);
    for (; t->pair_slots[i] >= 0; i = (i + 1) & t->pair_mask) {
        const pair *p = &t->pairs[t->pair_slots[i]];
        if (p->left == a && p->right == b) return t->pair_slots[i];
    }
    if (mmt_grow((void **)&t->pairs, &t->pairs_cap, t->n_pairs + 1, sizeof *t->pairs) != MMT_OK)
        return -1;
    t->pairs[t->n_pairs] = (pair){a, b, 0, NULL, 0, 0, -1};
    t->pair_slots[i] = (int32_t)t->n_pairs++;
    if (2 * t->n_pairs > t->pair_mask) {
        if (slots_alloc(&t->pair_slots, &t->pair_mask, t->n_pairs) != MMT_OK) return -1;
        for (int64_t k = 0; k < t->n_pairs; k++) {
            int64_t j = (int64_t)(hash_pair(t->pairs[k].left, t->pairs[k].right) &
                                  (uint64_t)t->pair_mask);
            while (t->pair_slots[j] >= 0) j = (j + 1) & t->pair_mask;
            t->pair_slots[j] = (int32_t)k;
        }
    }
    return (int32_t)(t->n_pairs - 1);
}

/* Adds delta to the count of every adjacent pair of word w. With `list_new` >= 0, pairs that
 * hold that token record w in their word lists and are marked as grown by merge `stamp`. */
static mmt_status word_pairs_add(trainer *t, int32_t w, int64_t delta, int32_t list_new,
                                 int32_t stamp) {
    const word *e = &t->words[w];
    const int32_t *s = t->symbols + e->offset;
    for (int32_t i = 0; i + 1 < e->len; i++) {
        int32_t p = pair_get(t, s[i], s[i + 1]);
        if (p < 0) return MMT_STATUS_OUT_OF_MEMORY;
        pair *q = &t->pairs[p];
        q->count += delta;
        if (list_new < 0 || (s[i] != list_new && s[i + 1] != list_new)) continue;
        if (q->n_words == 0 || q->words[q->n_words - 1] != w) {
            int64_t cap = q->cap_words;
            MMT_TRY(mmt_grow((void **)&q->words, &cap, (int64_t)q->n_words + 1, sizeof *q->words));
            q->cap_words = (int32_t)cap;
            q->words[q->n_words++] = w;
        }
        if (q->stamp != stamp) {
            q->stamp = stamp;
            MMT_TRY(mmt_grow((void **)&t->touched, &t->touched_cap, t->n_touched + 1,
                         sizeof *t->touched));
            t->touched[t->n_touched++] = p;
        }
    }
    return MMT_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Merging                                                                              */

/* Id of the token a+b: an existing merged token with that string, or a new one. */
static mmt_status merged_token(trainer *t, int32_t a, int32_t b, int32_t *id) {
    mmt_bpe_vocab *v = t->v;
    int64_t na, nb;
    const char *sa = token_string(v, a, &na);
    const char *sb = token_string(v, b, &nb);
    char stack[256];
    char *joined = na + nb <= (int64_t)sizeof stack ? stack : mmt_malloc((size_t)(na + nb));
    if (!joined) return MMT_STATUS_OUT_OF_MEMORY;
    memcpy(joined, sa, (size_t)na);
    memcpy(joined + na, sb, (size_t)nb);
    int64_t i = (int64_t)(hash_bytes(joined, (size_t)(na + nb)) & (uint64_t)t->token_mask);
    mmt_status st = MMT_OK;
    for (; t->token_slots[i] >= 0; i = (i + 1) & t->token_mask) {
        int64_t nc;
        const char *sc = token_string(v, t->token_slots[i], &nc);
        if (nc == na + nb && memcmp(sc, joined, (size_t)nc) == 0) {
            *id = t->token_slots[i];
            goto done;
        }
    }
    /* sa/sb may move when strings grows: copy from `joined`. */
    if ((st = token_append(v, joined, na + nb, NULL, 0)) != MMT_OK) goto done;
    *id = (int32_t)(v->n_tokens - 1);
    t->token_slots[i] = *id;
done:
    if (joined != stack) mmt_free(joined);
    return st;
}

/* Rewrites every occurrence of (a, b) in word w as c, left to right, like word.rs merge. */
static void word_merge(trainer *t, int32_t w, int32_t a, int32_t b, int32_t c) {
    word *e = &t->words[w];
    int32_t *s = t->symbols + e->offset;
    int32_t out = 0;
    for (int32_t i = 0; i < e->len; i++) {
        if (i + 1 < e->len && s[i] == a && s[i + 1] == b) {
            s[out++] = c;
            i++;
        } else {
            s[out++] = s[i];
        }
    }
    e->len = out;
}

static int word_has_pair(const trainer *t, int32_t w, int32_t a, int32_t b) {
    const word *e = &t->words[w];
    const int32_t *s = t->symbols + e->offset;
    for (int32_t i = 0; i + 1 < e->len; i++)
        if (s[i] == a && s[i + 1] == b) return 1;
    return 0;
}

static mmt_status apply_merge(trainer *t, int32_t p, int32_t stamp) {
    int32_t a = t->pairs[p].left, b = t->pairs[p].right, c;
    MMT_TRY(merged_token(t, a, b, &c));
    mmt_bpe_vocab *v = t->v;
    MMT_TRY(mmt_grow((void **)&v->merges, &v->merges_cap, 2 * v->n_merges + 2, sizeof *v->merges));
    v->merges[2 * v->n_merges] = a;
    v->merges[2 * v->n_merges + 1] = b;
    v->n_merges++;
    t->n_touched = 0;
    /* The list is read by index: word_pairs_add may append to other pairs' lists only,
     * since (a, b) never survives its own merge. */
    for (int32_t k = 0; k < t->pairs[p].n_words; k++) {
        int32_t w = t->pairs[p].words[k];
        if (t->words[w].stamp == stamp || !word_has_pair(t, w, a, b)) continue;
        t->words[w].stamp = stamp;
        int64_t count = t->words[w].count;
        MMT_TRY(word_pairs_add(t, w, -count, -1, stamp));
        word_merge(t, w, a, b, c);
        MMT_TRY(word_pairs_add(t, w, count, c, stamp));
    }
    pair *q = &t->pairs[p];
    mmt_free(q->words);
    q->words = NULL;
    q->n_words = q->cap_words = 0;
    for (int64_t k = 0; k < t->n_touched; k++)
        if (t->pairs[t->touched[k]].count > 0) MMT_TRY(heap_push(t, t->touched[k]));
    return MMT_OK;
}

static mmt_status train_merges(trainer *t, const mmt_bpe_params *p) {
    MMT_TRY(slots_alloc(&t->pair_slots, &t->pair_mask, 1024));
    MMT_TRY(slots_alloc(&t->token_slots, &t->token_mask, p->vocab_size));
    for (int32_t w = 0; w < (int32_t)t->n_words; w++)
        MMT_TRY(word_pairs_add(t, w, t->words[w].count, -2, 0));
    /* Initial word lists: every pair of every word (list_new -2 above lists nothing). */
    for (int32_t w = 0; w < (int32_t)t->n_words; w++) {
        const word *e = &t->words[w];
        const int32_t *s = t->symbols + e->offset;
        for (int32_t i = 0; i + 1 < e->len; i++) {
            pair *q = &t->pairs[pair_get(t, s[i], s[i + 1])]; /* exists: no allocation */
            if (q->n_words > 0 && q->words[q->n_words - 1] == w) continue;
            int64_t cap = q->cap_words;
            MMT_TRY(mmt_grow((void **)&q->words, &cap, (int64_t)q->n_words + 1, sizeof *q->words));
            q->cap_words = (int32_t)cap;
            q->words[q->n_words++] = w;
        }
    }
    for (int32_t k = 0; k < (int32_t)t->n_pairs; k++) MMT_TRY(heap_push(t, k));

    int64_t target = p->vocab_size - 2; /* room left for the specials */
    int32_t stamp = 0;
    while (t->v->n_tokens < target && t->heap_len > 0) {
        heap_entry top = heap_pop(t);
        int64_t now = t->pairs[top.pair].count;
        if (now != top.count) { /* stale: the pair shrank (or grew and was re-pushed) */
            if (now > 0) MMT_TRY(heap_push(t, top.pair));
            continue;
        }
        if (now < p->min_frequency || now <= 0) break;
        MMT_TRY(apply_merge(t, top.pair, ++stamp));
    }
    MMT_TRY(token_append(t->v, BOS_TEXT, (int64_t)strlen(BOS_TEXT), NULL, 0));
    return token_append(t->v, EOS_TEXT, (int64_t)strlen(EOS_TEXT), NULL, 0);
}

static void trainer_free(trainer *t) {
    for (int64_t k = 0; k < t->n_pairs; k++) mmt_free(t->pairs[k].words);
    mmt_free(t->pairs);
    mmt_free(t->pair_slots);
    mmt_free(t->token_slots);
    mmt_free(t->heap);
    mmt_free(t->touched);
    mmt_free(t->words);
    mmt_free(t->bytes);
    mmt_free(t->word_slots);
    mmt_free(t->symbols);
}

/* ------------------------------------------------------------------------------------ */
/* Public API                                                                           */

void mmt_bpe_params_default(mmt_bpe_params *p) {
    p->vocab_size = 8192;
    p->min_frequency = 2;
}

mmt_status mmt_bpe_train(const char *const *texts, int64_t n, const mmt_bpe_params *p,
                         mmt_bpe_vocab **out) {
    if (!out || !p || n < 0 || (n > 0 && !texts))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_bpe_train: bad arguments");
    *out = NULL;
    if (p->vocab_size < MMT_BPE_BASE_VOCAB || p->vocab_size > MAX_VOCAB)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "bpe: vocab size %lld is outside %d..%lld (the base alphabet is 256 "
                        "byte symbols, their 256 </w> forms and 2 specials)",
                        (long long)p->vocab_size, MMT_BPE_BASE_VOCAB, (long long)MAX_VOCAB);
    if (p->min_frequency < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "bpe: min frequency %lld is below 1",
                        (long long)p->min_frequency);
    trainer t = {0};
    mmt_status st = MMT_STATUS_OUT_OF_MEMORY;
    t.v = mmt_calloc(1, sizeof *t.v);
    if (!t.v) goto fail;
    if ((st = slots_alloc(&t.word_slots, &t.word_mask, 1024)) != MMT_OK) goto fail;
    for (int64_t i = 0; i < n; i++) {
        st = mmt_tokenizer_pretokenize(texts[i], strlen(texts[i]), MMT_TOKENIZER_FAST,
                                       word_count_add, &t);
        if (st != MMT_OK) {
            st = mmt_error_prefix(st, "bpe: text %lld: ", (long long)i + 1);
            goto fail;
        }
    }
    if (t.n_words == 0) {
        st = mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                      "bpe: the corpus has no words to learn from (%lld texts)", (long long)n);
        goto fail;
    }
    if ((st = spell_words(&t)) != MMT_OK) goto fail;
    if ((st = train_merges(&t, p)) != MMT_OK) goto fail;
    t.v->n_words = t.n_words;
    *out = t.v;
    t.v = NULL;
fail:
    mmt_bpe_vocab_free(t.v);
    trainer_free(&t);
    return st;
}

/* Plain text: one caption per line, "\r\n" accepted, blank lines skipped. */
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

mmt_status mmt_bpe_train_file(const char *path, const mmt_bpe_params *p, mmt_bpe_vocab **out) {
    if (!path || !out) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_bpe_train_file: NULL");
    *out = NULL;
    size_t plen = strlen(path);
    mmt_pairs *pairs = NULL;
    char *data = NULL;
    char **lines = NULL;
    int64_t n = 0;
    mmt_status st;
    if (plen >= 6 && strcmp(path + plen - 6, ".jsonl") == 0) {
        if ((st = mmt_pairs_load_jsonl(path, 0, &pairs)) != MMT_OK) goto done;
        lines = mmt_malloc((size_t)(pairs->n ? pairs->n : 1) * sizeof *lines);
        if (!lines) {
            st = MMT_STATUS_OUT_OF_MEMORY;
            goto done;
        }
        for (n = 0; n < pairs->n; n++) lines[n] = pairs->items[n].text;
    } else if ((st = read_lines(path, &data, &lines, &n)) != MMT_OK) {
        goto done;
    }
    st = mmt_bpe_train((const char *const *)lines, n, p, out);
    if (st != MMT_OK) st = mmt_error_prefix(st, "%s: ", path);
done:
    mmt_pairs_free(pairs);
    mmt_free(data);
    mmt_free(lines);
    return st;
}

/* A JSON string literal; token strings hold no control characters (bytes_to_unicode maps
 * them above U+00FF), so only the quote and the backslash need escaping. */
static mmt_status put_json_string(char **buf, int64_t *len, int64_t *cap, const char *s,
                                  int64_t n) {
    MMT_TRY(mmt_grow((void **)buf, cap, *len + 2 * n + 2, 1));
    (*buf)[(*len)++] = '"';
    for (int64_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') (*buf)[(*len)++] = '\\';
        (*buf)[(*len)++] = s[i];
    }
    (*buf)[(*len)++] = '"';
    return MMT_OK;
}

static mmt_status put_text(char **buf, int64_t *len, int64_t *cap, const char *s, int64_t n) {
    MMT_TRY(mmt_grow((void **)buf, cap, *len + n, 1));
    memcpy(*buf + *len, s, (size_t)n);
    *len += n;
    return MMT_OK;
}

static mmt_status write_in(const char *dir, const char *name, const char *data, int64_t n) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "bpe: output path too long: %s", dir);
    return mmt_file_write_atomic(path, data, (size_t)n);
}

static const char TOKENIZER_CONFIG[] =
    "{\n"
    "  \"bos_token\": \"<|startoftext|>\",\n"
    "  \"eos_token\": \"<|endoftext|>\",\n"
    "  \"pad_token\": \"<|endoftext|>\",\n"
    "  \"unk_token\": \"<|endoftext|>\",\n"
    "  \"model_max_length\": 77,\n"
    "  \"do_lower_case\": true,\n"
    "  \"errors\": \"replace\",\n"
    "  \"clean_up_tokenization_spaces\": false,\n"
    "  \"tokenizer_class\": \"CLIPTokenizer\"\n"
    "}\n";

static const char SPECIAL_TOKENS_MAP[] =
    "{\n"
    "  \"bos_token\": \"<|startoftext|>\",\n"
    "  \"eos_token\": \"<|endoftext|>\",\n"
    "  \"pad_token\": \"<|endoftext|>\",\n"
    "  \"unk_token\": \"<|endoftext|>\"\n"
    "}\n";

mmt_status mmt_bpe_vocab_write(const mmt_bpe_vocab *v, const char *dir) {
    if (!v || !dir) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "mmt_bpe_vocab_write: NULL");
    MMT_TRY(mmt_mkdirs(dir));
    char *buf = NULL;
    int64_t len = 0, cap = 0;
    char num[32];
    mmt_status st = put_text(&buf, &len, &cap, "{", 1);
    for (int64_t id = 0; st == MMT_OK && id < v->n_tokens; id++) {
        int64_t n;
        const char *s = token_string(v, id, &n);
        st = put_text(&buf, &len, &cap, id ? ",\n  " : "\n  ", id ? 4 : 3);
        if (st == MMT_OK) st = put_json_string(&buf, &len, &cap, s, n);
        int k = snprintf(num, sizeof num, ": %lld", (long long)id);
        if (st == MMT_OK) st = put_text(&buf, &len, &cap, num, k);
    }
    if (st == MMT_OK) st = put_text(&buf, &len, &cap, "\n}\n", 3);
    if (st == MMT_OK) st = write_in(dir, "vocab.json", buf, len);

    len = 0;
    if (st == MMT_OK) st = put_text(&buf, &len, &cap, "#version: 0.2\n", 14);
    for (int64_t m = 0; st == MMT_OK && m < v->n_merges; m++) {
        int64_t na, nb;
        const char *a = token_string(v, v->merges[2 * m], &na);
        const char *b = token_string(v, v->merges[2 * m + 1], &nb);
        st = put_text(&buf, &len, &cap, a, na);
        if (st == MMT_OK) st = put_text(&buf, &len, &cap, " ", 1);
        if (st == MMT_OK) st = put_text(&buf, &len, &cap, b, nb);
        if (st == MMT_OK) st = put_text(&buf, &len, &cap, "\n", 1);
    }
    if (st == MMT_OK) st = write_in(dir, "merges.txt", buf, len);
    if (st == MMT_OK)
        st = write_in(dir, "tokenizer_config.json", TOKENIZER_CONFIG,
                      (int64_t)sizeof TOKENIZER_CONFIG - 1);
    if (st == MMT_OK)
        st = write_in(dir, "special_tokens_map.json", SPECIAL_TOKENS_MAP,
                      (int64_t)sizeof SPECIAL_TOKENS_MAP - 1);
    mmt_free(buf);
    return st;
}

int64_t mmt_bpe_vocab_size(const mmt_bpe_vocab *v) { return v->n_tokens; }
int64_t mmt_bpe_merge_count(const mmt_bpe_vocab *v) { return v->n_merges; }
int64_t mmt_bpe_word_count(const mmt_bpe_vocab *v) { return v->n_words; }

void mmt_bpe_vocab_free(mmt_bpe_vocab *v) {
    if (!v) return;
    mmt_free(v->strings);
    mmt_free(v->offsets);
    mmt_free(v->merges);
    mmt_free(v);
}
