/*
 * generate.c — the settings, their checks, the entry point, and greedy search / sampling as
 * transformers' _sample runs them (see generate.h). Rows that end are dropped from the
 * decoder (select), so a long tail of one row costs one row's compute.
 */
#include "gen/generate.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "gen/generate_internal.h"
#include "gen/processors.h"
#include "gen/sampler.h"

mmt_gen_settings mmt_gen_settings_default(void) {
    mmt_gen_settings s;
    memset(&s, 0, sizeof s);
    s.max_new_tokens = 20;
    s.num_beams = 1;
    s.num_return_sequences = 1;
    s.length_penalty = 1.0;
    s.early_stopping = MMT_GEN_EARLY_STOPPING_HEURISTIC;
    s.temperature = 1.0;
    s.top_k = 50;
    s.top_p = 1.0;
    s.repetition_penalty = 1.0;
    s.bos_token_id = s.eos_token_id = s.pad_token_id = -1;
    return s;
}

static mmt_status bad(const char *field, const char *why) {
    return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "generation settings: %s %s", field, why);
}

static mmt_status check_token(const char *field, int32_t id, int64_t V) {
    if (id < -1 || id >= V)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "generation settings: %s is %d, outside the vocabulary (0..%lld, or -1)",
                        field, (int)id, (long long)V - 1);
    return MMT_OK;
}

static mmt_status check_bad_words(const mmt_gen_sequences *w, int64_t V) {
    if (w->n < 0 || (w->n > 0 && (!w->ids || !w->lengths))) return bad("bad_words", "is malformed");
    for (int64_t i = 0, off = 0; i < w->n; off += w->lengths[i], i++) {
        if (w->lengths[i] < 1)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "generation settings: bad word %lld has no tokens", (long long)i);
        for (int64_t j = 0; j < w->lengths[i]; j++)
            if (w->ids[off + j] < 0 || w->ids[off + j] >= V)
                return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                                "generation settings: bad word %lld token %lld is %d, outside the vocabulary (0..%lld)",
                                (long long)i, (long long)j, (int)w->ids[off + j], (long long)V - 1);
    }
    return MMT_OK;
}

mmt_status mmt_gen_settings_check(const mmt_gen_settings *s, int64_t V) {
    char msg[96];
    if (s->max_new_tokens < 1) {
        snprintf(msg, sizeof msg, "is %lld; it must be at least 1", (long long)s->max_new_tokens);
        return bad("max_new_tokens", msg);
    }
    if (s->min_new_tokens < 0) return bad("min_new_tokens", "is negative");
    if (s->num_beams < 1) {
        snprintf(msg, sizeof msg, "is %lld; it must be at least 1", (long long)s->num_beams);
        return bad("num_beams", msg);
    }
    if (s->num_beams > MMT_GEN_MAX_BEAMS) { /* each beam is a decoding of its own: time and cache grow with the square */
        snprintf(msg, sizeof msg, "is %lld; it must be at most %d", (long long)s->num_beams, MMT_GEN_MAX_BEAMS);
        return bad("num_beams", msg);
    }
    if (s->num_beams > 1 && V < 2) return bad("num_beams", "needs a vocabulary of 2 tokens or more");
    if (s->num_return_sequences < 1) return bad("num_return_sequences", "must be at least 1");
    if (s->num_beams > 1 && s->num_return_sequences > s->num_beams)
        return bad("num_return_sequences", "exceeds num_beams (beam search returns its best num_beams at most)");
    if (s->num_beams == 1 && !s->do_sample && s->num_return_sequences != 1)
        return bad("num_return_sequences", "must be 1 for greedy search (its rows would be identical)");
    if (!(s->temperature > 0) || !isfinite(s->temperature)) {
        snprintf(msg, sizeof msg, "is %g; it must be a finite number > 0", s->temperature);
        return bad("temperature", msg);
    }
    if (s->top_k < 0) return bad("top_k", "is negative (0 turns it off)");
    if (!(s->top_p > 0 && s->top_p <= 1)) {
        snprintf(msg, sizeof msg, "is %g; it must be in (0, 1]", s->top_p);
        return bad("top_p", msg);
    }
    if (!(s->repetition_penalty > 0) || !isfinite(s->repetition_penalty)) {
        snprintf(msg, sizeof msg, "is %g; it must be a finite number > 0", s->repetition_penalty);
        return bad("repetition_penalty", msg);
    }
    if (!isfinite(s->length_penalty)) return bad("length_penalty", "is not finite");
    if (s->no_repeat_ngram_size < 0) return bad("no_repeat_ngram_size", "is negative (0 turns it off)");
    if (s->early_stopping < MMT_GEN_EARLY_STOPPING_HEURISTIC || s->early_stopping > MMT_GEN_EARLY_STOPPING_NEVER)
        return bad("early_stopping", "is not one of HEURISTIC, TRUE, NEVER");
    MMT_TRY(check_token("bos_token_id", s->bos_token_id, V));
    MMT_TRY(check_token("eos_token_id", s->eos_token_id, V));
    MMT_TRY(check_token("pad_token_id", s->pad_token_id, V));
    MMT_TRY(check_bad_words(&s->bad_words, V));
    if (s->allowed_words && s->allowed_words->vocab_size != V)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "generation settings: allowed_words were made for %lld tokens, the decoder has %lld",
                        (long long)s->allowed_words->vocab_size, (long long)V);
    return MMT_OK;
}

void mmt_gen_output_free(mmt_gen_output *out) {
    if (!out) return;
    mmt_free(out->tokens), mmt_free(out->lengths), mmt_free(out->scores);
    memset(out, 0, sizeof *out);
}

static mmt_status check_call(const mmt_decoder *dec, const int32_t *prompt, int64_t B, int64_t L,
                             const mmt_gen_settings *s, gen_call *c) {
    if (!dec || !dec->start || !dec->step || !dec->select || dec->vocab_size < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "generate: the decoder is incomplete");
    if (!s) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "generate: no settings");
    MMT_TRY(mmt_gen_settings_check(s, dec->vocab_size));
    if (B < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "generate: %lld rows; at least 1 is needed", (long long)B);
    if (L < 0 || (L == 0) != (prompt == NULL))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "generate: a prompt needs L >= 1 tokens (or NULL and L = 0)");
    if (L == 0 && s->bos_token_id < 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "generate: no prompt and no bos_token_id to start from");
    memset(c, 0, sizeof *c);
    c->dec = dec, c->s = s, c->B = B, c->V = dec->vocab_size;
    c->bos[0] = s->bos_token_id;
    c->prompt = prompt ? prompt : c->bos;
    c->L = prompt ? L : 1;
    for (int64_t i = 0; prompt && i < B * L; i++)
        if (prompt[i] < 0 || prompt[i] >= c->V)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "generate: prompt token %lld of row %lld is %d, outside the vocabulary (0..%lld)",
                            (long long)(i % L), (long long)(i / L), (int)prompt[i], (long long)c->V - 1);
    /* the last token is never fed back: L + max_new_tokens - 1 positions */
    if (c->L + s->max_new_tokens - 1 > dec->max_tokens)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "generate: a prompt of %lld tokens and max_new_tokens %lld need %lld positions; the decoder holds %lld",
                        (long long)c->L, (long long)s->max_new_tokens, (long long)(c->L + s->max_new_tokens - 1),
                        (long long)dec->max_tokens);
    c->max_len = c->L + s->max_new_tokens;
    return MMT_OK;
}

/* Without a prompt every row starts at BOS: the decoder gets B copies of it. */
mmt_status gen_start(const gen_call *c, int64_t copies, float *logits) {
    int64_t B = c->B, L = c->L, V = c->V, cap = c->max_len - 1;
    int32_t *ids = NULL;
    const int32_t *prompt = c->prompt;
    if (prompt == c->bos) {
        ids = mmt_malloc((size_t)B * sizeof(int32_t));
        if (!ids) return MMT_STATUS_OUT_OF_MEMORY;
        for (int64_t b = 0; b < B; b++) ids[b] = c->bos[0];
        prompt = ids;
    }
    mmt_status st = c->dec->start(c->dec->ctx, B, prompt, L, cap, logits);
    mmt_free(ids);
    if (st != MMT_OK || copies == 1) return st;
    int64_t *rows = mmt_malloc((size_t)(B * copies) * sizeof(int64_t));
    if (!rows) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t r = 0; r < B * copies; r++) rows[r] = r / copies;
    st = c->dec->select(c->dec->ctx, rows, B * copies);
    mmt_free(rows);
    /* row b's logits to rows b * copies + j, last row first so no source is overwritten */
    for (int64_t b = B - 1; st == MMT_OK && b >= 0; b--)
        for (int64_t j = copies - 1; j >= 0; j--)
            memmove(logits + (b * copies + j) * V, logits + b * V, (size_t)V * sizeof(float));
    return st;
}

int64_t gen_argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(x[i])) return i;
        if (x[i] > x[best]) best = i;
    }
    return best;
}

static mmt_status output_init(const gen_call *c, int64_t rows, mmt_gen_output *out) {
    const mmt_gen_settings *s = c->s;
    out->n_rows = rows;
    out->width = s->max_new_tokens;
    out->tokens = mmt_malloc((size_t)(rows * out->width) * sizeof(int32_t));
    out->lengths = mmt_calloc((size_t)rows, sizeof(int64_t));
    out->scores = mmt_calloc((size_t)rows, sizeof(float));
    if (!out->tokens || !out->lengths || !out->scores) {
        mmt_gen_output_free(out);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    int32_t fill = s->pad_token_id >= 0 ? s->pad_token_id : s->eos_token_id;
    for (int64_t i = 0; i < rows * out->width; i++) out->tokens[i] = fill;
    return MMT_OK;
}

mmt_status mmt_generate(const mmt_decoder *dec, const int32_t *prompt, int64_t B, int64_t L,
                        const mmt_gen_settings *s, mmt_gen_output *out) {
    gen_call c;
    memset(out, 0, sizeof *out);
    MMT_TRY(check_call(dec, prompt, B, L, s, &c));
    MMT_TRY(output_init(&c, B * s->num_return_sequences, out));
    mmt_status st = s->num_beams > 1 ? gen_beam_search(&c, out) : gen_greedy_or_sample(&c, out);
    if (st != MMT_OK) mmt_gen_output_free(out);
    return st;
}

/* ---- greedy search and sampling (transformers' _sample) ----------------------------- */

typedef struct greedy_buffers {
    int32_t *seq;      /* (rows, max_len) each row's tokens, prompt first */
    float *logits;     /* (rows, V) the live rows' logits, in decoder order */
    int64_t *live;     /* (rows) output row of each decoder row */
    int64_t *keep;     /* (rows) decoder rows that go on */
    int32_t *next;     /* (rows) tokens fed to the decoder */
    uint64_t *streams; /* (rows) sampling streams */
    double *probs;     /* (V) */
    gen_scratch scratch;
} greedy_buffers;

static void greedy_free(greedy_buffers *g) {
    mmt_free(g->seq), mmt_free(g->logits), mmt_free(g->live), mmt_free(g->keep), mmt_free(g->next);
    mmt_free(g->streams), mmt_free(g->probs);
    gen_scratch_free(&g->scratch);
}

static mmt_status greedy_init(const gen_call *c, int64_t rows, greedy_buffers *g) {
    memset(g, 0, sizeof *g);
    g->seq = mmt_malloc((size_t)(rows * c->max_len) * sizeof(int32_t));
    g->logits = mmt_malloc((size_t)(rows * c->V) * sizeof(float));
    g->live = mmt_malloc((size_t)rows * sizeof(int64_t));
    g->keep = mmt_malloc((size_t)rows * sizeof(int64_t));
    g->next = mmt_malloc((size_t)rows * sizeof(int32_t));
    g->streams = mmt_malloc((size_t)rows * sizeof(uint64_t));
    g->probs = mmt_malloc((size_t)c->V * sizeof(double));
    if (!g->seq || !g->logits || !g->live || !g->keep || !g->next || !g->streams || !g->probs ||
        gen_scratch_init(&g->scratch, c->V) != MMT_OK) {
        greedy_free(g);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    int64_t n = c->s->num_return_sequences;
    for (int64_t r = 0; r < rows; r++) {
        memcpy(g->seq + r * c->max_len, gen_prompt_row(c, r / n), (size_t)c->L * sizeof(int32_t));
        g->live[r] = r;
        g->streams[r] = gen_sampler_stream(c->s->seed, r);
    }
    return MMT_OK;
}

/* Picks the next token of each live row; *n_live shrinks to the rows that go on (their
 * decoder rows in keep, their tokens in next). */
static mmt_status greedy_pick(const gen_call *c, greedy_buffers *g, int64_t t, int64_t *n_live, mmt_gen_output *out) {
    const mmt_gen_settings *s = c->s;
    int64_t V = c->V, cur_len = c->L + t, kept = 0;
    for (int64_t i = 0; i < *n_live; i++) {
        int64_t r = g->live[i], token;
        float *x = g->logits + i * V;
        int32_t *seq = g->seq + r * c->max_len;
        gen_process_row(s, x, V, seq, cur_len, c->L, s->do_sample, 1, &g->scratch);
        if (s->do_sample) MMT_TRY(gen_sample(x, V, &g->streams[r], g->probs, &token));
        else token = gen_argmax(x, V);
        seq[cur_len] = (int32_t)token;
        out->tokens[r * out->width + t] = (int32_t)token;
        out->lengths[r] = t + 1;
        if (token == s->eos_token_id) continue;
        g->live[kept] = r, g->keep[kept] = i, g->next[kept] = (int32_t)token;
        kept++;
    }
    *n_live = kept;
    return MMT_OK;
}

mmt_status gen_greedy_or_sample(const gen_call *c, mmt_gen_output *out) {
    int64_t rows = out->n_rows, n_live = rows;
    greedy_buffers g;
    MMT_TRY(greedy_init(c, rows, &g));
    mmt_status st = gen_start(c, c->s->num_return_sequences, g.logits);
    for (int64_t t = 0; st == MMT_OK && t < c->s->max_new_tokens; t++) {
        int64_t before = n_live;
        st = greedy_pick(c, &g, t, &n_live, out);
        if (st != MMT_OK || n_live == 0 || t + 1 == c->s->max_new_tokens) break;
        if (n_live < before) st = c->dec->select(c->dec->ctx, g.keep, n_live);
        if (st == MMT_OK) st = c->dec->step(c->dec->ctx, g.next, g.logits);
    }
    greedy_free(&g);
    return st;
}
