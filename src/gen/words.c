/* words.c — the allowed-words trie (see words.h). */
#include "gen/words.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

typedef struct word_ref {
    const int32_t *ids;
    int64_t n;
} word_ref;

/* Lexicographic order on token sequences, a prefix before its extensions: then the words
 * under a trie node are one run of the sorted list, and the node's whole word (if any) leads
 * it. */
static int word_cmp(const void *pa, const void *pb) {
    const word_ref *a = pa, *b = pb;
    int64_t n = a->n < b->n ? a->n : b->n;
    for (int64_t i = 0; i < n; i++)
        if (a->ids[i] != b->ids[i]) return a->ids[i] < b->ids[i] ? -1 : 1;
    return (a->n > b->n) - (a->n < b->n);
}

static mmt_status check_words(const mmt_gen_sequences *words, int64_t vocab_size, int64_t *total) {
    if (!words || words->n < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "allowed words: the list is empty");
    int64_t off = 0;
    for (int64_t i = 0; i < words->n; i++) {
        if (words->lengths[i] < 1)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "allowed words: word %lld has no tokens", (long long)i);
        for (int64_t j = 0; j < words->lengths[i]; j++) {
            int32_t t = words->ids[off + j];
            if (t < 0 || t >= vocab_size)
                return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                                "allowed words: word %lld token %lld is %d, outside the vocabulary (0..%lld)",
                                (long long)i, (long long)j, (int)t, (long long)vocab_size - 1);
        }
        off += words->lengths[i];
    }
    *total = off;
    return MMT_OK;
}

/* Numbers the nodes breadth first from the sorted words: node i covers words [lo[i], hi[i])
 * at depth[i]; its children are made, in token order, when it is reached, so each node's
 * edges are contiguous and sorted. */
static void build(mmt_gen_words *w, const word_ref *refs, int64_t n_words, int64_t *lo, int64_t *hi, int64_t *depth) {
    int64_t n_nodes = 1, n_edges = 0;
    lo[0] = 0, hi[0] = n_words, depth[0] = 0;
    for (int64_t node = 0; node < n_nodes; node++) {
        int64_t i = lo[node], d = depth[node];
        w->first[node] = n_edges;
        w->complete[node] = 0;
        for (; i < hi[node] && refs[i].n == d; i++) w->complete[node] = 1;
        while (i < hi[node]) {
            int32_t t = refs[i].ids[d];
            int64_t j = i + 1;
            while (j < hi[node] && refs[j].ids[d] == t) j++;
            w->token[n_edges] = t;
            w->child[n_edges++] = n_nodes;
            lo[n_nodes] = i, hi[n_nodes] = j, depth[n_nodes] = d + 1;
            n_nodes++;
            i = j;
        }
    }
    w->first[n_nodes] = n_edges;
    w->n_nodes = n_nodes, w->n_edges = n_edges;
}

mmt_status mmt_gen_words_create(const mmt_gen_sequences *words, int64_t vocab_size, mmt_gen_words **out) {
    *out = NULL;
    int64_t total = 0;
    MMT_TRY(check_words(words, vocab_size, &total));
    mmt_status st = MMT_STATUS_OUT_OF_MEMORY;
    /* at most one node per token plus the root, one edge per token */
    mmt_gen_words *w = mmt_calloc(1, sizeof *w);
    word_ref *refs = mmt_malloc((size_t)words->n * sizeof *refs);
    int64_t *lo = mmt_malloc((size_t)(total + 1) * sizeof(int64_t)), *hi = mmt_malloc((size_t)(total + 1) * sizeof(int64_t));
    int64_t *depth = mmt_malloc((size_t)(total + 1) * sizeof(int64_t));
    if (!w || !refs || !lo || !hi || !depth) goto fail;
    w->first = mmt_malloc((size_t)(total + 2) * sizeof(int64_t));
    w->token = mmt_malloc((size_t)total * sizeof(int32_t));
    w->child = mmt_malloc((size_t)total * sizeof(int64_t));
    w->complete = mmt_malloc((size_t)(total + 1));
    if (!w->first || !w->token || !w->child || !w->complete) goto fail;
    w->vocab_size = vocab_size;
    for (int64_t i = 0, off = 0; i < words->n; off += words->lengths[i], i++)
        refs[i] = (word_ref){words->ids + off, words->lengths[i]};
    qsort(refs, (size_t)words->n, sizeof *refs, word_cmp);
    build(w, refs, words->n, lo, hi, depth);
    *out = w;
    w = NULL;
    st = MMT_OK;
fail:
    mmt_gen_words_free(w);
    mmt_free(refs), mmt_free(lo), mmt_free(hi), mmt_free(depth);
    return st;
}

void mmt_gen_words_free(mmt_gen_words *w) {
    if (!w) return;
    mmt_free(w->first), mmt_free(w->token), mmt_free(w->child), mmt_free(w->complete);
    mmt_free(w);
}

/* The child of node by token t, or -1. */
static int64_t child_of(const mmt_gen_words *w, int64_t node, int32_t t) {
    int64_t a = w->first[node], b = w->first[node + 1];
    while (a < b) {
        int64_t m = a + (b - a) / 2;
        if (w->token[m] == t) return w->child[m];
        if (w->token[m] < t) a = m + 1;
        else b = m;
    }
    return -1;
}

int64_t mmt_gen_words_walk(const mmt_gen_words *w, const int32_t *tokens, int64_t n) {
    int64_t node = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t next = child_of(w, node, tokens[i]);
        if (next < 0 && w->complete[node]) next = child_of(w, 0, tokens[i]);
        if (next < 0) return MMT_GEN_WORDS_OFF_LEXICON;
        node = next;
    }
    return node;
}

static void allow_edges(const mmt_gen_words *w, int64_t node, uint8_t *allowed) {
    for (int64_t e = w->first[node]; e < w->first[node + 1]; e++) allowed[w->token[e]] = 1;
}

void mmt_gen_words_allowed(const mmt_gen_words *w, int64_t node, int32_t eos, uint8_t *allowed) {
    memset(allowed, 0, (size_t)w->vocab_size);
    int end_ok = node == MMT_GEN_WORDS_OFF_LEXICON;
    if (node >= 0) {
        allow_edges(w, node, allowed);
        if (w->complete[node]) {
            allow_edges(w, 0, allowed);
            end_ok = 1;
        }
    }
    if (end_ok && eos >= 0 && eos < w->vocab_size) allowed[eos] = 1;
}
