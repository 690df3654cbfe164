/*
 * generate.h — text generation from any causal language model bound to nn/decoder.h: greedy
 * search, sampling (temperature, top-k, top-p) and beam search, batched over B prompts, with
 * repetition penalty, no-repeat n-grams, bad words, a minimum length and an allowed-words
 * constraint (gen/words.h). It knows no model family.
 *
 * The reference is transformers 5 GenerationMixin.generate (generation/utils.py: _sample,
 * _beam_search and its helpers; _get_logits_processor for the order of the processors;
 * generation/logits_process.py for each). Greedy and beam search give transformers' tokens
 * exactly on the same logits (tests/test_generate.c, token for token on three GIT models).
 * Where transformers leaves an order to torch (ties in torch.topk / torch.sort, which torch
 * breaks in no documented order), the lower index goes first. Sampling draws from our own
 * seeded generator (splitmix64, one stream per output row; gen/sampler.h), so a seed gives the
 * same text on every run and machine, but not torch.multinomial's.
 *
 * Usage (GIT: models/git.h binds its run context to a decoder):
 *     mmt_decoder dec;
 *     mmt_git_run_decoder(run, feats, B, &dec);
 *     mmt_gen_settings s = mmt_gen_settings_default();    // transformers' GenerationConfig
 *     s.num_beams = 3; s.eos_token_id = eos; s.pad_token_id = pad; s.bos_token_id = bos;
 *     mmt_gen_output out;
 *     MMT_TRY(mmt_generate(&dec, NULL, B, 0, &s, &out));   // no prompt: each row starts at BOS
 *     for (r = 0; r < out.n_rows; r++) ... out.tokens + r * out.width, out.lengths[r] ...
 *     mmt_gen_output_free(&out);
 */
#ifndef MMT_GEN_GENERATE_H
#define MMT_GEN_GENERATE_H

#include <stdint.h>

#include "core/status.h"
#include "gen/words.h"
#include "nn/decoder.h"

/* transformers' early_stopping: False, True or "never" (beam search only). */
/* The most beams mmt_generate takes (transformers has no limit; 256 beams of a 30-token
 * caption are already far past any use, and time and cache memory grow with their square). */
#define MMT_GEN_MAX_BEAMS 256

typedef enum mmt_gen_early_stopping {
    MMT_GEN_EARLY_STOPPING_HEURISTIC = 0, /* False: stop a row when its running beams, at the
                                           * current length, cannot beat its finished ones */
    MMT_GEN_EARLY_STOPPING_TRUE,          /* True: stop a row once num_beams hypotheses end */
    MMT_GEN_EARLY_STOPPING_NEVER          /* "never": with length_penalty > 0 the bound uses
                                           * the longest length still possible */
} mmt_gen_early_stopping;

/* The settings of one generate() call; mmt_gen_settings_default() gives transformers'
 * GenerationConfig defaults. Every pointer is borrowed. */
typedef struct mmt_gen_settings {
    int64_t max_new_tokens;   /* >= 1; transformers' max_length is prompt length + this */
    int64_t min_new_tokens;   /* >= 0: EOS is masked until this many tokens (0: off) */
    int64_t num_beams;        /* >= 1; 1: greedy search or sampling */
    int64_t num_return_sequences; /* rows out per prompt: <= num_beams with beams; any >= 1
                                   * when sampling; 1 for greedy search */
    double length_penalty;    /* beams: a finished score is sum(log p) / new_tokens^this */
    mmt_gen_early_stopping early_stopping;
    int do_sample;            /* 0: argmax (greedy, beam search); 1: draw (sampling, beam sampling) */
    double temperature;       /* > 0; sampling divides the scores by it (1: off) */
    int64_t top_k;            /* >= 0; sampling keeps the k best (ties at the k-th too); 0: off */
    double top_p;             /* in (0, 1]; sampling keeps the smallest set with mass >= top_p */
    uint64_t seed;            /* sampling's generator */
    double repetition_penalty;      /* > 0; 1: off. Scores of tokens already in the row
                                     * (prompt included): s < 0 ? s * p : s / p */
    int64_t no_repeat_ngram_size;   /* >= 0; 0: off. An n-gram occurs at most once per row
                                     * (prompt included) */
    mmt_gen_sequences bad_words;    /* n = 0: none. NoBadWordsLogitsProcessor: a word of one
                                     * token is never generated, a longer one never completed;
                                     * the word [eos] is dropped, as transformers does */
    const mmt_gen_words *allowed_words; /* NULL: none (gen/words.h) */
    int32_t bos_token_id;     /* the prompt of every row when none is given; -1: none */
    int32_t eos_token_id;     /* ends a row; -1: rows run to max_new_tokens */
    int32_t pad_token_id;     /* fills a row's tokens past its length; -1: eos_token_id */
} mmt_gen_settings;

/* max_new_tokens 20, min_new_tokens 0, num_beams 1, num_return_sequences 1, length_penalty
 * 1, early_stopping HEURISTIC (False), do_sample 0, temperature 1, top_k 50, top_p 1, seed
 * 0, repetition_penalty 1, no_repeat_ngram_size 0, no bad or allowed words, bos/eos/pad -1. */
mmt_gen_settings mmt_gen_settings_default(void);

/* INVALID_ARGUMENT with a one-line message naming the first bad field, for a vocabulary of
 * vocab_size tokens (token ids, bad words). */
mmt_status mmt_gen_settings_check(const mmt_gen_settings *s, int64_t vocab_size);

/* What generate() gives: n_rows = B * num_return_sequences rows, prompt b's in rows
 * [b * num_return_sequences, (b + 1) * num_return_sequences), best first for beams. */
typedef struct mmt_gen_output {
    int64_t n_rows;
    int64_t width;     /* max_new_tokens */
    int32_t *tokens;   /* owned: (n_rows, width) the generated tokens, prompt excluded; past a
                        * row's length, pad_token_id */
    int64_t *lengths;  /* owned: (n_rows) tokens generated, EOS included where one ended the row */
    float *scores;     /* owned: (n_rows) beam search's sequence score (transformers'
                        * sequences_scores); 0 for greedy search and sampling */
} mmt_gen_output;

void mmt_gen_output_free(mmt_gen_output *out);

/* Generates for B rows from prompt (B, L) — L >= 1 tokens each, the same L for all; or
 * prompt NULL and L 0: every row starts with bos_token_id, as generate() does without
 * input_ids. The decoder must hold room for L + max_new_tokens - 1 tokens (the last token is
 * never fed back). out is filled on success and left zeroed on failure. */
mmt_status mmt_generate(const mmt_decoder *dec, const int32_t *prompt, int64_t B, int64_t L,
                        const mmt_gen_settings *s, mmt_gen_output *out);

#endif
