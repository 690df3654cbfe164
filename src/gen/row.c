/* row.c — one row of greedy search or sampling, token by token (row.h); the steps are
 * generate.c's greedy_pick for one row. */
#include "gen/row.h"

#include <string.h>

#include "core/alloc.h"
#include "gen/generate_internal.h"
#include "gen/processors.h"
#include "gen/sampler.h"

struct mmt_gen_picker {
    int64_t V;
    gen_scratch scratch;
    double *probs; /* (V) */
};

mmt_status mmt_gen_picker_create(int64_t V, mmt_gen_picker **out) {
    *out = NULL;
    if (V < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "generation: a vocabulary of %lld tokens", (long long)V);
    mmt_gen_picker *p = mmt_calloc(1, sizeof *p);
    if (!p) return MMT_STATUS_OUT_OF_MEMORY;
    p->V = V;
    p->probs = mmt_malloc((size_t)V * sizeof(double));
    if (!p->probs || gen_scratch_init(&p->scratch, V) != MMT_OK) {
        mmt_gen_picker_free(p);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    *out = p;
    return MMT_OK;
}

void mmt_gen_picker_free(mmt_gen_picker *p) {
    if (!p) return;
    gen_scratch_free(&p->scratch);
    mmt_free(p->probs);
    mmt_free(p);
}

mmt_status mmt_gen_row_init(mmt_gen_row *g, const mmt_gen_settings *s, const int32_t *prompt, int64_t L, int64_t row) {
    memset(g, 0, sizeof *g);
    if (L < 1 || s->max_new_tokens < 1 || s->num_beams != 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "generation: a row needs a prompt, max_new_tokens >= 1 and one beam");
    g->seq = mmt_malloc((size_t)(L + s->max_new_tokens) * sizeof(int32_t));
    if (!g->seq) return MMT_STATUS_OUT_OF_MEMORY;
    memcpy(g->seq, prompt, (size_t)L * sizeof(int32_t));
    g->s = s;
    g->L = L;
    g->stream = gen_sampler_stream(s->seed, row);
    return MMT_OK;
}

void mmt_gen_row_free(mmt_gen_row *g) {
    if (!g) return;
    mmt_free(g->seq);
    memset(g, 0, sizeof *g);
}

mmt_status mmt_gen_row_pick(mmt_gen_row *g, mmt_gen_picker *p, float *logits, int32_t *token) {
    const mmt_gen_settings *s = g->s;
    if (g->done) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "generation: the row is done");
    int64_t cur_len = g->L + g->t, next;
    gen_process_row(s, logits, p->V, g->seq, cur_len, g->L, s->do_sample, 1, &p->scratch);
    if (s->do_sample) MMT_TRY(gen_sample(logits, p->V, &g->stream, p->probs, &next));
    else next = gen_argmax(logits, p->V);
    g->seq[cur_len] = (int32_t)next;
    g->t++;
    g->done = next == s->eos_token_id || g->t == s->max_new_tokens;
    *token = (int32_t)next;
    return MMT_OK;
}
