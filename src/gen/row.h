/*
 * row.h — greedy search or sampling one row at a time, for a caller that steps the rows of
 * many requests together and lets rows join and leave between steps (continuous batching:
 * serve/caption_service.c). The caller runs the decoder; a row only picks its next token
 * from the logits it is given.
 *
 * A row picks exactly as mmt_generate's greedy search and sampling (gen/generate.c) pick for
 * output row `row` of a call with the same settings and prompt: the same processors in the
 * same order over the same sequence, the same argmax, and for sampling the same stream
 * (seed, row). So a request decoded this way gives generate()'s tokens whatever other rows
 * share its steps (tests/test_serve_caption.c compares them with `mmtune caption`).
 *
 * Usage:
 *     mmt_gen_picker *p;  MMT_TRY(mmt_gen_picker_create(V, &p));   // one per decoding thread
 *     mmt_gen_row g;      MMT_TRY(mmt_gen_row_init(&g, &settings, prompt, L, i));
 *     ... decoder start / join gives logits ...
 *     MMT_TRY(mmt_gen_row_pick(&g, p, logits, &token));            // until g.done
 *     mmt_gen_row_free(&g);
 */
#ifndef MMT_GEN_ROW_H
#define MMT_GEN_ROW_H

#include <stdint.h>

#include "core/status.h"
#include "gen/generate.h"

/* Scratch of the processors and the sampler for a vocabulary of V tokens. */
typedef struct mmt_gen_picker mmt_gen_picker;

mmt_status mmt_gen_picker_create(int64_t V, mmt_gen_picker **out);
void mmt_gen_picker_free(mmt_gen_picker *p);

typedef struct mmt_gen_row {
    const mmt_gen_settings *s; /* borrowed: checked (mmt_gen_settings_check), num_beams 1 */
    int32_t *seq;              /* owned: the prompt (L) then the tokens picked (t), room for
                                * L + max_new_tokens */
    int64_t L, t;
    uint64_t stream;           /* sampling */
    int done;                  /* EOS picked, or max_new_tokens reached */
} mmt_gen_row;

/* A row from prompt (L >= 1 tokens; generate()'s BOS when it has none) that is output row
 * `row` of a generate() call. */
mmt_status mmt_gen_row_init(mmt_gen_row *g, const mmt_gen_settings *s, const int32_t *prompt, int64_t L, int64_t row);
void mmt_gen_row_free(mmt_gen_row *g);

/* Processes logits (V: the picker's) in place and picks the row's next token into *token
 * (appended to seq); sets done when it is EOS or the row has max_new_tokens. */
mmt_status mmt_gen_row_pick(mmt_gen_row *g, mmt_gen_picker *p, float *logits, int32_t *token);

#endif
