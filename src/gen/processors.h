/*
 * processors.h — transformers' logits processors and warpers (generation/logits_process.py),
 * one row of scores at a time, in float32 as torch computes them: a scalar such as the
 * penalty or the temperature is rounded to float32 first (torch casts a Python float to the
 * tensor's dtype), masked scores become -inf. `ids` is the row's sequence so far, prompt
 * included (transformers' input_ids row). Scratch buffers are the caller's, so the decoding
 * loop allocates nothing.
 *
 * gen_process_row applies those a setting switches on in _get_logits_processor's order:
 * repetition penalty, no-repeat n-grams, bad words, minimum new tokens, allowed words
 * (PrefixConstrainedLogitsProcessor's place), then, when sampling, temperature, top-k, top-p.
 */
#ifndef MMT_GEN_PROCESSORS_H
#define MMT_GEN_PROCESSORS_H

#include <stdint.h>

#include "gen/generate.h"

/* A (value, index) pair for sorting scores. */
typedef struct gen_scored {
    float value;
    int32_t index;
} gen_scored;

/* RepetitionPenaltyLogitsProcessor: each distinct token of ids once, s < 0 ? s * p : s / p.
 * seen (V) is zero on entry and left zero. */
void gen_repetition_penalty(float *scores, int64_t V, const int32_t *ids, int64_t n, float penalty, uint8_t *seen);

/* NoRepeatNGramLogitsProcessor: the token that would repeat an n-gram of ids gets -inf. */
void gen_no_repeat_ngram(float *scores, int64_t V, const int32_t *ids, int64_t n, int64_t size);

/* NoBadWordsLogitsProcessor: -inf added to the last token of every bad word whose other
 * tokens end ids (a one-token word always); the word [eos] is skipped. */
void gen_bad_words(float *scores, const int32_t *ids, int64_t n, const mmt_gen_sequences *bad, int32_t eos);

/* PrefixConstrainedLogitsProcessor with the allowed-words rule: -inf added to every token
 * the rule does not allow after the generated tokens (n of them). allowed: (V) scratch. */
void gen_allowed_words(float *scores, int64_t V, const mmt_gen_words *w, const int32_t *generated, int64_t n,
                       int32_t eos, uint8_t *allowed);

/* TemperatureLogitsWarper: s / t. */
void gen_temperature(float *scores, int64_t V, float t);

/* TopKLogitsWarper(k, min_keep): scores below the max(k, min_keep)-th largest get -inf (ties
 * with it stay). heap: (k) scratch. */
void gen_top_k(float *scores, int64_t V, int64_t k, int64_t min_keep, float *heap);

/* TopPLogitsWarper(p, min_keep): sorted ascending, the tokens whose cumulative softmax mass
 * (float32, summed in double as torch's CPU cumsum does) is <= (float)(1 - p) get -inf, but
 * never the min_keep best. sorted: (V) scratch. */
void gen_top_p(float *scores, int64_t V, double p, int64_t min_keep, gen_scored *sorted);

/* torch.log_softmax in place: (x - max) - log(sum exp(x - max)), the sum in double. */
void gen_log_softmax(float *x, int64_t V);

/* Scratch for gen_process_row, sized for a vocabulary of V. */
typedef struct gen_scratch {
    uint8_t *mask;      /* (V), zero between uses */
    float *heap;        /* (V) */
    gen_scored *sorted; /* (V) */
} gen_scratch;

mmt_status gen_scratch_init(gen_scratch *s, int64_t V);
void gen_scratch_free(gen_scratch *s);

/* The processors of settings s on one row: seq (cur_len) its tokens, prompt_len of them the
 * prompt. warp: also temperature, top-k, top-p (sampling), keeping at least min_keep tokens. */
void gen_process_row(const mmt_gen_settings *s, float *scores, int64_t V, const int32_t *seq, int64_t cur_len,
                     int64_t prompt_len, int warp, int64_t min_keep, gen_scratch *scratch);

#endif
