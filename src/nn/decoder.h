/*
 * decoder.h — what text generation (gen/) needs from a causal language model, so that it
 * knows no model family: start rows from a prompt, feed one token per row, and keep or copy
 * rows (beam search). The family binds its run context to this table (GIT:
 * models/git.h mmt_git_run_decoder).
 */
#ifndef MMT_NN_DECODER_H
#define MMT_NN_DECODER_H

#include <stdint.h>

#include "core/status.h"

typedef struct mmt_decoder {
    void *ctx;
    int64_t vocab_size;
    int64_t max_tokens; /* the most tokens one row may hold in all (prompt included) */
    /* Starts B rows: prompt (B, L) tokens each (L >= 1), room for cap tokens in all per row
     * (L <= cap <= max_tokens); logits (B, vocab_size) for each row's next token. */
    mmt_status (*start)(void *ctx, int64_t B, const int32_t *prompt, int64_t L, int64_t cap, float *logits);
    /* Appends tokens (B) to the rows; logits (B, vocab_size) for the token after. */
    mmt_status (*step)(void *ctx, const int32_t *tokens, float *logits);
    /* The rows become rows[0..n) of the current ones (repeats allowed); n rows from then on. */
    mmt_status (*select)(void *ctx, const int64_t *rows, int64_t n);
} mmt_decoder;

#endif
