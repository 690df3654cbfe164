/*
 * words.h — the "allowed words" constraint of text generation: a trie of token-id sequences
 * (words) that the generated text must be made of, such as a medical lexicon.
 *
 * A word is the token sequence a tokenizer gives for it alone: for WordPiece (BERT, GIT) a
 * first piece and its "##" continuations ("hypertension" -> [hyper, ##tension]); for other
 * tokenizers whatever encode() returns. The trie knows only ids; making the sequences is the
 * caller's job (docs/generation.md). Punctuation that may appear is listed as one-token words.
 *
 * The rule, on the generated tokens only (the prompt is free text):
 *   - at the start, a token must begin an allowed word;
 *   - inside a word, a token must continue it (a child in the trie);
 *   - where the tokens so far end a whole word, the next token may also begin a new word,
 *     or be EOS. EOS is allowed nowhere else, so a caption holds at least one whole word;
 *   - a token that is a continuation and also begins a word counts as a continuation;
 *   - after a token the rule did not allow (possible only when other processors masked every
 *     allowed token and greedy search took token 0 anyway), only EOS is allowed.
 * Generation applies the rule as transformers' PrefixConstrainedLogitsProcessor does with a
 * prefix_allowed_tokens_fn walking the same trie (tools/fixtures/make_generation_fixtures.py):
 * the scores of tokens not allowed become -inf, in that processor's place in the order.
 *
 * Usage:
 *     mmt_gen_sequences seqs = {ids, lengths, n};             // gen/generate.h
 *     mmt_gen_words *w;
 *     MMT_TRY(mmt_gen_words_create(&seqs, vocab_size, &w));
 *     settings.allowed_words = w;                              // borrowed by mmt_generate
 *     ...
 *     mmt_gen_words_free(w);
 */
#ifndef MMT_GEN_WORDS_H
#define MMT_GEN_WORDS_H

#include <stdint.h>

#include "core/status.h"

/* A list of token sequences, back to back: sequence i is lengths[i] ids following those of
 * sequences 0..i-1 in ids. Borrowed wherever it appears. */
typedef struct mmt_gen_sequences {
    const int32_t *ids;
    const int64_t *lengths; /* (n) */
    int64_t n;
} mmt_gen_sequences;

/* The trie, immutable once made (threads may share it). Node 0 is the root; a node's edges
 * are [first[node], first[node + 1]) in the edge arrays, sorted by token. */
typedef struct mmt_gen_words {
    int64_t n_nodes, n_edges;
    int64_t *first;    /* owned: (n_nodes + 1) */
    int32_t *token;    /* owned: (n_edges) the token of each edge */
    int64_t *child;    /* owned: (n_edges) the node it leads to */
    uint8_t *complete; /* owned: (n_nodes) 1 where the path from the root spells a whole word */
    int64_t vocab_size;
} mmt_gen_words;

/* The state of a row that took a token the rule did not allow: only EOS follows. */
#define MMT_GEN_WORDS_OFF_LEXICON (-1)

/* Builds the trie of words (at least one; each non-empty, ids in [0, vocab_size); repeats
 * allowed). INVALID_ARGUMENT naming the word and token otherwise. */
mmt_status mmt_gen_words_create(const mmt_gen_sequences *words, int64_t vocab_size, mmt_gen_words **out);
void mmt_gen_words_free(mmt_gen_words *w);

/* The node reached after the generated tokens (n of them; 0 is the root), or
 * MMT_GEN_WORDS_OFF_LEXICON. */
int64_t mmt_gen_words_walk(const mmt_gen_words *w, const int32_t *tokens, int64_t n);

/* allowed (vocab_size) gets 1 for every token allowed after reaching `node`, 0 elsewhere;
 * eos < 0 means no EOS token. */
void mmt_gen_words_allowed(const mmt_gen_words *w, int64_t node, int32_t eos, uint8_t *allowed);

#endif
