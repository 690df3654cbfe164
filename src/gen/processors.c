/* processors.c — transformers' logits processors on one row of scores (see processors.h). */
#include "gen/processors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

void gen_repetition_penalty(float *scores, int64_t V, const int32_t *ids, int64_t n, float penalty, uint8_t *seen) {
    /* torch gathers the scores of ids, penalises them and scatters them back: a token that
     * occurs twice is penalised once */
    for (int64_t i = 0; i < n; i++) {
        int32_t t = ids[i];
        if (t < 0 || t >= V || seen[t]) continue;
        seen[t] = 1;
        scores[t] = scores[t] < 0 ? scores[t] * penalty : scores[t] / penalty;
    }
    for (int64_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < V) seen[ids[i]] = 0;
}

void gen_no_repeat_ngram(float *scores, int64_t V, const int32_t *ids, int64_t n, int64_t size) {
    if (n < size) return;
    /* the last size-1 tokens against every window ids[i..i+size-1) that has a token after
     * it inside ids; a match bans that token */
    const int32_t *prefix = ids + n - (size - 1);
    for (int64_t i = 0; i + size <= n; i++) {
        int64_t j = 0;
        while (j < size - 1 && ids[i + j] == prefix[j]) j++;
        if (j == size - 1 && ids[i + size - 1] >= 0 && ids[i + size - 1] < V) scores[ids[i + size - 1]] = -INFINITY;
    }
}

void gen_bad_words(float *scores, const int32_t *ids, int64_t n, const mmt_gen_sequences *bad, int32_t eos) {
    const int32_t *word = bad->ids;
    for (int64_t w = 0; w < bad->n; word += bad->lengths[w], w++) {
        int64_t len = bad->lengths[w];
        if (len == 1 && word[0] == eos) continue; /* transformers filters the word [eos] out */
        if (len - 1 > n) continue;
        int64_t j = 0;
        while (j < len - 1 && ids[n - (len - 1) + j] == word[j]) j++;
        if (j == len - 1) scores[word[len - 1]] += -INFINITY; /* scores + bias, bias -inf */
    }
}

void gen_allowed_words(float *scores, int64_t V, const mmt_gen_words *w, const int32_t *generated, int64_t n,
                       int32_t eos, uint8_t *allowed) {
    mmt_gen_words_allowed(w, mmt_gen_words_walk(w, generated, n), eos, allowed);
    for (int64_t t = 0; t < V; t++)
        if (!allowed[t]) scores[t] += -INFINITY; /* scores + mask, mask 0 or -inf */
    memset(allowed, 0, (size_t)V);
}

void gen_temperature(float *scores, int64_t V, float t) {
    for (int64_t i = 0; i < V; i++) scores[i] = scores[i] / t;
}

static void sift_down(float *heap, int64_t k, int64_t i) {
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < k && heap[l] < heap[m]) m = l;
        if (r < k && heap[r] < heap[m]) m = r;
        if (m == i) return;
        float x = heap[i];
        heap[i] = heap[m], heap[m] = x;
        i = m;
    }
}

void gen_top_k(float *scores, int64_t V, int64_t k, int64_t min_keep, float *heap) {
    if (k < min_keep) k = min_keep;
    if (k > V) k = V;
    if (k < 1) return;
    /* a min-heap of the k largest: its root is the k-th largest value */
    for (int64_t i = 0; i < k; i++) heap[i] = scores[i];
    for (int64_t i = k / 2 - 1; i >= 0; i--) sift_down(heap, k, i);
    for (int64_t i = k; i < V; i++)
        if (scores[i] > heap[0]) {
            heap[0] = scores[i];
            sift_down(heap, k, 0);
        }
    float kth = heap[0];
    for (int64_t i = 0; i < V; i++)
        if (scores[i] < kth) scores[i] = -INFINITY;
}

static int scored_ascending(const void *pa, const void *pb) {
    const gen_scored *a = pa, *b = pb;
    if (a->value != b->value) return a->value < b->value ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

void gen_top_p(float *scores, int64_t V, double p, int64_t min_keep, gen_scored *sorted) {
    for (int64_t i = 0; i < V; i++) sorted[i] = (gen_scored){scores[i], (int32_t)i};
    qsort(sorted, (size_t)V, sizeof *sorted, scored_ascending);
    float max = sorted[V - 1].value;
    if (!isfinite(max)) return; /* every score -inf: torch's softmax gives NaN, nothing goes */
    double sum = 0;
    for (int64_t i = 0; i < V; i++) sum += expf(sorted[i].value - max);
    float inv = (float)sum, threshold = (float)(1.0 - p);
    double cumulative = 0; /* torch's CPU cumsum accumulates float in double */
    for (int64_t i = 0; i < V - min_keep; i++) {
        cumulative += expf(sorted[i].value - max) / inv;
        if ((float)cumulative > threshold) break; /* the sum only grows */
        scores[sorted[i].index] = -INFINITY;
    }
}

void gen_log_softmax(float *x, int64_t V) {
    float max = -INFINITY;
    for (int64_t i = 0; i < V; i++)
        if (x[i] > max) max = x[i];
    double sum = 0;
    for (int64_t i = 0; i < V; i++) sum += expf(x[i] - max);
    float lse = (float)log(sum);
    for (int64_t i = 0; i < V; i++) x[i] = (x[i] - max) - lse;
}

mmt_status gen_scratch_init(gen_scratch *s, int64_t V) {
    s->mask = mmt_calloc((size_t)V, 1);
    s->heap = mmt_malloc((size_t)V * sizeof(float));
    s->sorted = mmt_malloc((size_t)V * sizeof(gen_scored));
    if (s->mask && s->heap && s->sorted) return MMT_OK;
    gen_scratch_free(s);
    return MMT_STATUS_OUT_OF_MEMORY;
}

void gen_scratch_free(gen_scratch *s) {
    mmt_free(s->mask), mmt_free(s->heap), mmt_free(s->sorted);
    memset(s, 0, sizeof *s);
}

void gen_process_row(const mmt_gen_settings *s, float *scores, int64_t V, const int32_t *seq, int64_t cur_len,
                     int64_t prompt_len, int warp, int64_t min_keep, gen_scratch *scratch) {
    if (s->repetition_penalty != 1.0)
        gen_repetition_penalty(scores, V, seq, cur_len, (float)s->repetition_penalty, scratch->mask);
    if (s->no_repeat_ngram_size > 0) gen_no_repeat_ngram(scores, V, seq, cur_len, s->no_repeat_ngram_size);
    if (s->bad_words.n > 0) gen_bad_words(scores, seq, cur_len, &s->bad_words, s->eos_token_id);
    if (s->min_new_tokens > 0 && s->eos_token_id >= 0 && cur_len - prompt_len < s->min_new_tokens)
        scores[s->eos_token_id] = -INFINITY;
    if (s->allowed_words)
        gen_allowed_words(scores, V, s->allowed_words, seq + prompt_len, cur_len - prompt_len, s->eos_token_id,
                          scratch->mask);
    if (!warp) return;
    if (s->temperature != 1.0) gen_temperature(scores, V, (float)s->temperature);
    if (s->top_k != 0) gen_top_k(scores, V, s->top_k, min_keep, scratch->heap);
    if (s->top_p < 1.0) gen_top_p(scores, V, s->top_p, min_keep, scratch->sorted);
}
