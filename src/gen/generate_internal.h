/*
 * generate_internal.h — what generate.c (settings, checks, greedy search and sampling) shares
 * with beam.c (beam search): the checked call and the decoder's first step.
 */
#ifndef MMT_GEN_GENERATE_INTERNAL_H
#define MMT_GEN_GENERATE_INTERNAL_H

#include <stdint.h>

#include "gen/generate.h"

/* One checked generate() call. */
typedef struct gen_call {
    const mmt_decoder *dec;
    const mmt_gen_settings *s;
    const int32_t *prompt; /* (B, L): the caller's, or `bos` below */
    int64_t B, L, V;
    int64_t max_len;       /* L + max_new_tokens: transformers' max_length */
    int32_t bos[1];
} gen_call;

/* Prompt row b (L tokens). */
static inline const int32_t *gen_prompt_row(const gen_call *c, int64_t b) {
    return c->prompt == c->bos ? c->bos : c->prompt + b * c->L;
}

/* Starts the decoder on the B prompts, each repeated `copies` times (transformers' expansion
 * for beams and num_return_sequences): rows b * copies + c; logits (B * copies, V). */
mmt_status gen_start(const gen_call *c, int64_t copies, float *logits);

/* torch.argmax: the first largest score (a NaN counts as largest). */
int64_t gen_argmax(const float *x, int64_t n);

mmt_status gen_greedy_or_sample(const gen_call *c, mmt_gen_output *out);
mmt_status gen_beam_search(const gen_call *c, mmt_gen_output *out);

#endif
