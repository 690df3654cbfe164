/*
 * beam.c — beam search as transformers 5 runs it (generation/utils.py _beam_search with
 * _get_top_k_continuations, _get_running_beams_for_next_iteration, _update_finished_beams,
 * _check_early_stop_heuristic, _beam_search_has_unfinished_sequences), batched over B prompts
 * of num_beams rows each (decoder row b * num_beams + k).
 *
 * Each step, per prompt: the rows' log_softmax goes through the processors, the running
 * beams' scores are added, and the best K = 2 * num_beams (token, beam) continuations are
 * kept (drawn without replacement when sampling). The best num_beams that do not end
 * (EOS, or the length limit) run on; those of the first num_beams that end compete with the
 * finished hypotheses on sum(log p) / new_tokens^length_penalty. Numbers are float32 as in
 * torch; the penalty's power is a Python float (double) rounded to float32 before the
 * division, and "-1e9" marks are added in float32 exactly where transformers adds them, so
 * the same marks tie and round the same way.
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "gen/generate_internal.h"
#include "gen/processors.h"
#include "gen/sampler.h"

#define BEAM_MARK (-1.0e9f) /* transformers' -1.0e9 in float32 */

/* A continuation: score, the beam it extends, its token, whether it ends. */
typedef struct beam_cand {
    float score;
    int64_t beam;
    int32_t token;
    uint8_t ends;
} beam_cand;

/* Hypotheses of every prompt, [b * nb + k] for beam k of prompt b: running beams use seq and
 * score, finished ones all four. */
typedef struct beam_set {
    int32_t *seq;  /* (B * nb, max_len) prompt and tokens */
    float *score;  /* (B * nb) */
    uint8_t *done; /* (B * nb) transformers' is_sent_finished */
    int64_t *len;  /* (B * nb) tokens generated (its beam_indices >= 0) */
} beam_set;

/* One beam search's buffers. Each step reads run and fin and writes the *_next sets, which
 * then swap in. */
typedef struct beam_search {
    const gen_call *c;
    int64_t B, nb, K, V, L, max_len;
    beam_set run, run_next, fin, fin_next;
    int64_t *parent;      /* (B * nb) the decoder row each new running beam comes from */
    int32_t *next;        /* (B * nb) its last token */
    uint8_t *improvable;  /* (B) is_early_stop_heuristic_unsatisfied */
    float *logits;        /* (B * nb, V) */
    beam_cand *cand;      /* (B, K) */
    float *merged;        /* (nb + K) */
    int64_t *order;       /* (nb + K) */
    int64_t *drawn;       /* (K) */
    double *probs;        /* (nb * V) */
    uint64_t *streams;    /* (B) */
    gen_scratch scratch;
} beam_search;

static void set_free(beam_set *x) {
    mmt_free(x->seq), mmt_free(x->score), mmt_free(x->done), mmt_free(x->len);
}

static int set_init(beam_set *x, int64_t rows, int64_t max_len) {
    x->seq = mmt_malloc((size_t)(rows * max_len) * sizeof(int32_t));
    x->score = mmt_malloc((size_t)rows * sizeof(float));
    x->done = mmt_calloc((size_t)rows, 1);
    x->len = mmt_calloc((size_t)rows, sizeof(int64_t));
    return x->seq && x->score && x->done && x->len;
}

static void beam_free(beam_search *w) {
    set_free(&w->run), set_free(&w->run_next), set_free(&w->fin), set_free(&w->fin_next);
    mmt_free(w->parent), mmt_free(w->next), mmt_free(w->improvable), mmt_free(w->logits), mmt_free(w->cand);
    mmt_free(w->merged), mmt_free(w->order), mmt_free(w->drawn), mmt_free(w->probs), mmt_free(w->streams);
    gen_scratch_free(&w->scratch);
}

static mmt_status beam_init(const gen_call *c, beam_search *w) {
    memset(w, 0, sizeof *w);
    w->c = c, w->B = c->B, w->nb = c->s->num_beams, w->V = c->V, w->L = c->L, w->max_len = c->max_len;
    /* K = max(2, 1 + number of EOS tokens) * num_beams: one EOS id or none gives 2 */
    w->K = 2 * w->nb;
    int64_t R = w->B * w->nb, M = w->nb + w->K;
    int sets = set_init(&w->run, R, w->max_len) & set_init(&w->run_next, R, w->max_len) &
               set_init(&w->fin, R, w->max_len) & set_init(&w->fin_next, R, w->max_len);
    w->parent = mmt_malloc((size_t)R * sizeof(int64_t)), w->next = mmt_malloc((size_t)R * sizeof(int32_t));
    w->improvable = mmt_malloc((size_t)w->B);
    w->logits = mmt_malloc((size_t)(R * w->V) * sizeof(float));
    w->cand = mmt_malloc((size_t)(w->B * w->K) * sizeof(beam_cand));
    w->merged = mmt_malloc((size_t)M * sizeof(float)), w->order = mmt_malloc((size_t)M * sizeof(int64_t));
    w->drawn = mmt_malloc((size_t)w->K * sizeof(int64_t));
    w->probs = mmt_malloc((size_t)(w->nb * w->V) * sizeof(double));
    w->streams = mmt_malloc((size_t)w->B * sizeof(uint64_t));
    if (!sets || !w->parent || !w->next || !w->improvable || !w->logits || !w->cand || !w->merged || !w->order || !w->drawn ||
        !w->probs || !w->streams || gen_scratch_init(&w->scratch, w->V) != MMT_OK) {
        beam_free(w);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    /* only beam 0 of each prompt starts live (the others at -1e9), so step one's
     * continuations all extend it; no hypothesis is finished (-1e9) */
    int32_t fill = c->s->pad_token_id >= 0 ? c->s->pad_token_id : c->s->eos_token_id;
    for (int64_t r = 0; r < R; r++) {
        int32_t *seq = w->run.seq + r * w->max_len;
        memcpy(seq, gen_prompt_row(c, r / w->nb), (size_t)w->L * sizeof(int32_t));
        for (int64_t i = w->L; i < w->max_len; i++) seq[i] = fill;
        memcpy(w->fin.seq + r * w->max_len, seq, (size_t)w->max_len * sizeof(int32_t));
        w->run.score[r] = r % w->nb == 0 ? 0.0f : BEAM_MARK;
        w->fin.score[r] = BEAM_MARK;
    }
    memset(w->improvable, 1, (size_t)w->B);
    for (int64_t b = 0; b < w->B; b++) w->streams[b] = gen_sampler_stream(c->s->seed, b);
    return MMT_OK;
}

/* Indices of x (n) by descending value, the first k of them in order[0..k); equal values keep
 * index order (torch.topk leaves ties in no documented order). */
static void top_indices(const float *x, int64_t n, int64_t k, int64_t *order) {
    int64_t have = 0;
    for (int64_t i = 0; i < n; i++) {
        if (have == k && !(x[i] > x[order[k - 1]])) continue;
        int64_t j = have < k ? have++ : k - 1;
        while (j > 0 && x[i] > x[order[j - 1]]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

/* The K best continuations of prompt b over its nb rows' scores acc (nb * V), sorted by
 * descending score: torch.topk, or, when sampling, K drawn without replacement then sorted. */
static mmt_status top_continuations(beam_search *w, int64_t b, const float *acc, int64_t cur_len) {
    const mmt_gen_settings *s = w->c->s;
    int64_t n = w->nb * w->V;
    int64_t *pick = w->drawn;
    if (s->do_sample) {
        MMT_TRY(gen_sample_distinct(acc, n, w->K, &w->streams[b], w->probs, pick));
        for (int64_t j = 1; j < w->K; j++) /* sort the draws by score, equal scores by index */
            for (int64_t i = j; i > 0 && (acc[pick[i]] > acc[pick[i - 1]] ||
                                          (acc[pick[i]] == acc[pick[i - 1]] && pick[i] < pick[i - 1])); i--) {
                int64_t t = pick[i];
                pick[i] = pick[i - 1], pick[i - 1] = t;
            }
    } else {
        top_indices(acc, n, w->K, pick);
    }
    beam_cand *cand = w->cand + b * w->K;
    for (int64_t j = 0; j < w->K; j++) {
        cand[j].score = acc[pick[j]];
        cand[j].beam = pick[j] / w->V;
        cand[j].token = (int32_t)(pick[j] % w->V);
        cand[j].ends = cand[j].token == s->eos_token_id || cur_len + 1 >= w->max_len;
    }
    return MMT_OK;
}

/* The next running beams of prompt b: the best nb continuations once those that end are
 * marked down by 1e9 (transformers' _get_running_beams_for_next_iteration). */
static void next_running(beam_search *w, int64_t b, int64_t cur_len) {
    const beam_cand *cand = w->cand + b * w->K;
    for (int64_t j = 0; j < w->K; j++) w->merged[j] = cand[j].score + (cand[j].ends ? BEAM_MARK : 0.0f);
    top_indices(w->merged, w->K, w->nb, w->order);
    for (int64_t i = 0; i < w->nb; i++) {
        const beam_cand *x = &cand[w->order[i]];
        int64_t from = b * w->nb + x->beam, to = b * w->nb + i;
        int32_t *seq = w->run_next.seq + to * w->max_len;
        memcpy(seq, w->run.seq + from * w->max_len, (size_t)w->max_len * sizeof(int32_t));
        seq[cur_len] = x->token;
        w->run_next.score[to] = w->merged[w->order[i]];
        w->parent[to] = from;
        w->next[to] = x->token;
    }
}

/* transformers' _update_finished_beams for prompt b: the first nb continuations that end,
 * scored with the length penalty, against the finished hypotheses; the best nb stay. */
static void update_finished(beam_search *w, int64_t b, int64_t cur_len) {
    const mmt_gen_settings *s = w->c->s;
    const beam_cand *cand = w->cand + b * w->K;
    int64_t nb = w->nb, base = b * nb;
    float penalty = (float)pow((double)(cur_len + 1 - w->L), s->length_penalty);
    int full = s->early_stopping == MMT_GEN_EARLY_STOPPING_TRUE;
    for (int64_t k = 0; k < nb; k++) full = full && w->fin.done[base + k];
    for (int64_t k = 0; k < nb; k++) w->merged[k] = w->fin.score[base + k];
    for (int64_t j = 0; j < w->K; j++) {
        float x = cand[j].score / penalty;
        x += full ? BEAM_MARK : 0.0f;
        x += w->improvable[b] ? 0.0f : BEAM_MARK;
        x += cand[j].ends && j < nb ? 0.0f : BEAM_MARK;
        w->merged[nb + j] = x;
    }
    top_indices(w->merged, nb + w->K, nb, w->order);
    for (int64_t i = 0; i < nb; i++) {
        int64_t m = w->order[i], to = base + i;
        int32_t *seq = w->fin_next.seq + to * w->max_len;
        w->fin_next.score[to] = w->merged[m];
        if (m < nb) {
            memcpy(seq, w->fin.seq + (base + m) * w->max_len, (size_t)w->max_len * sizeof(int32_t));
            w->fin_next.done[to] = w->fin.done[base + m];
            w->fin_next.len[to] = w->fin.len[base + m];
        } else {
            const beam_cand *x = &cand[m - nb];
            memcpy(seq, w->run.seq + (base + x->beam) * w->max_len, (size_t)w->max_len * sizeof(int32_t));
            seq[cur_len] = x->token;
            w->fin_next.done[to] = x->ends && m - nb < nb;
            w->fin_next.len[to] = cur_len + 1 - w->L;
        }
    }
}

/* transformers' _check_early_stop_heuristic for prompt b, cur_len already advanced: can the
 * best running beam, at the best length it may still reach, beat a finished hypothesis? */
static void check_improvable(beam_search *w, int64_t b, int64_t cur_len) {
    const mmt_gen_settings *s = w->c->s;
    int64_t nb = w->nb, base = b * nb;
    int64_t length = s->early_stopping == MMT_GEN_EARLY_STOPPING_NEVER && s->length_penalty > 0 ? w->max_len - w->L
                                                                                                  : cur_len - w->L;
    float best = w->run.score[base] / (float)pow((double)length, s->length_penalty);
    float worst = w->fin.score[base];
    for (int64_t k = 1; k < nb; k++) worst = fminf(worst, w->fin.score[base + k]);
    int any = 0;
    for (int64_t k = 0; k < nb; k++) any = any || best > (w->fin.done[base + k] ? worst : BEAM_MARK);
    w->improvable[b] = w->improvable[b] && any;
}

static void set_swap(beam_set *a, beam_set *b) {
    beam_set t = *a;
    *a = *b, *b = t;
}

/* One step on the logits of every row; *more is 0 when beam search is over. */
static mmt_status beam_step(beam_search *w, int64_t cur_len, int *more) {
    const mmt_gen_settings *s = w->c->s;
    int64_t nb = w->nb, V = w->V;
    int all_end = 1;
    for (int64_t b = 0; b < w->B; b++) {
        for (int64_t k = 0; k < nb; k++) {
            int64_t r = b * nb + k;
            float *x = w->logits + r * V;
            gen_log_softmax(x, V);
            /* beams keep at least 2 tokens through the warpers: one more than the EOS ids */
            gen_process_row(s, x, V, w->run.seq + r * w->max_len, cur_len, w->L, s->do_sample, 2, &w->scratch);
            for (int64_t v = 0; v < V; v++) x[v] += w->run.score[r];
        }
        MMT_TRY(top_continuations(w, b, w->logits + b * nb * V, cur_len));
        for (int64_t j = 0; j < w->K; j++) all_end = all_end && w->cand[b * w->K + j].ends;
        next_running(w, b, cur_len);
        update_finished(w, b, cur_len);
    }
    set_swap(&w->run, &w->run_next);
    set_swap(&w->fin, &w->fin_next);
    int any_improvable = 0, all_done = 1;
    for (int64_t b = 0; b < w->B; b++) {
        check_improvable(w, b, cur_len + 1);
        any_improvable = any_improvable || w->improvable[b];
    }
    for (int64_t r = 0; r < w->B * nb; r++) all_done = all_done && w->fin.done[r];
    *more = any_improvable && !(all_done && s->early_stopping == MMT_GEN_EARLY_STOPPING_TRUE) && !all_end;
    return MMT_OK;
}

static void beam_output(const beam_search *w, mmt_gen_output *out) {
    int64_t n = w->c->s->num_return_sequences;
    for (int64_t b = 0; b < w->B; b++)
        for (int64_t i = 0; i < n; i++) {
            int64_t from = b * w->nb + i, to = b * n + i, len = w->fin.len[from];
            memcpy(out->tokens + to * out->width, w->fin.seq + from * w->max_len + w->L, (size_t)len * sizeof(int32_t));
            out->lengths[to] = len;
            out->scores[to] = w->fin.score[from];
        }
}

mmt_status gen_beam_search(const gen_call *c, mmt_gen_output *out) {
    beam_search w;
    MMT_TRY(beam_init(c, &w));
    mmt_status st = gen_start(c, w.nb, w.logits);
    int more = 1;
    for (int64_t cur_len = w.L; st == MMT_OK && more; cur_len++) {
        st = beam_step(&w, cur_len, &more);
        if (st == MMT_OK && more) st = c->dec->select(c->dec->ctx, w.parent, w.B * w.nb);
        if (st == MMT_OK && more) st = c->dec->step(c->dec->ctx, w.next, w.logits);
    }
    if (st == MMT_OK) beam_output(&w, out);
    beam_free(&w);
    return st;
}
