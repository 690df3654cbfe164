/*
 * bench_caption.c — `mmtune bench caption`: GIT captioning throughput and a LoRA training step
 * (issue 11's benchmark). tools/bench/torch_caption.py does the same in PyTorch +
 * transformers (+ PEFT) on the same snapshot; scripts/bench_caption.sh runs both and writes
 * bench/results/caption.md.
 *
 * The snapshot is a random git-base-sized GitForCausalLM (tools/bench/make_git_base.py). Both
 * sides build the same inputs from index formulas (pixels_fill, caption_ids below), so greedy
 * captions and the first training loss can be compared across engines.
 *
 * Generation: B preprocessed images to B captions of exactly N new tokens (min_new_tokens =
 * max_new_tokens = N, so EOS cannot end a row early, as on the PyTorch side), greedy or beam
 * search. The timing starts at the pixels, like model.generate(pixel_values=...):
 *     with the KV cache     mmt_git_run_image_features once per image, then mmt_generate over
 *                           mmt_git_run_decoder;
 *     without the cache     mmt_generate over nocache_decoder below: every step recomputes the
 *                           whole sequence [image; text so far] with mmt_git_run_logits, the
 *                           vision tower included, as generate(use_cache=False) does.
 * Tokens/s counts caption tokens: B * N per call, whatever the beams.
 * A timing wrapper around the decoder splits each call into vision, prefill (start), decoding
 * steps, cache row selection (beams) and the search itself (logit processing, top-k, argmax).
 * --profile adds, per decoding step at M = batch * beams rows, the time of the step's GEMMs
 * alone (six layers' q, k, v, output, fc1, fc2 over their own weights, and the 768 x 30522
 * logits product) and of the attention over a cache of the average length, by calling the ops
 * directly on buffers of the same shapes.
 *
 * Training: LoRA r 8, alpha 16 on query and value, batch --train-batch of --caption-tokens
 * tokens ([CLS] ... [SEP], labels = ids), one step = zero_grad, forward_loss, backward, AdamW.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "gen/generate.h"
#include "models/git.h"
#include "nn/decoder.h"
#include "nn/param.h"
#include "ops/ops.h"
#include "peft/adapter.h"
#include "peft/adapter_folder.h"
#include "peft/peft_config.h"
#include "train/optimizer.h"

#define MAX_LIST 16

static const char *HELP =
    "usage: mmtune bench caption --model DIR [--batch LIST] [--beams LIST] [--cache on|off|both]\n"
    "                            [--new-tokens N] [--iters N] [--warmup N] [--parts generate,train]\n"
    "                            [--train-batch N] [--caption-tokens N] [--steps N] [--profile] [--json]\n"
    "\n"
    "GIT captioning throughput (caption tokens/s from preprocessed pixels, greedy and beam search,\n"
    "with and without the KV cache) and the seconds of a LoRA training step (r 8 on query,\n"
    "value). Make a random git-base-sized model with tools/bench/make_git_base.py.\n"
    "  --model DIR          a GIT snapshot (GitForCausalLM)\n"
    "  --batch LIST         images per generate call (default 1,8)\n"
    "  --beams LIST         1 is greedy search (default 1,3)\n"
    "  --cache MODE         on: KV cache; off: recompute the whole sequence each step (default both)\n"
    "  --new-tokens N       tokens per caption, exactly (default 20)\n"
    "  --iters N            timed calls per setting (default 3)\n"
    "  --warmup N           untimed calls first (default 1)\n"
    "  --parts LIST         generate, train or both (default generate,train)\n"
    "  --train-batch N      captions per training step (default 16)\n"
    "  --caption-tokens N   tokens per training caption, [CLS] and [SEP] included (default 20)\n"
    "  --steps N            timed training steps after one untimed (default 3)\n"
    "  --profile            time the decoding step's GEMMs and attention alone\n"
    "  --json               one JSON object per measurement\n";

typedef struct caption_opts {
    const char *model;
    int64_t batch[MAX_LIST], beams[MAX_LIST];
    int64_t n_batch, n_beams;
    int cache_on, cache_off, generate, train, profile, json;
    long new_tokens, iters, warmup, train_batch, caption_tokens, steps;
} caption_opts;

/* ---- inputs (the same formulas as tools/bench/torch_caption.py) --------------------------- */

/* x (n) = pixel i of a (B, 3, S, S) batch: ((i * 2654435761) mod 2^32 >> 20) / 2048 - 1. */
static void pixels_fill(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(((uint32_t)((uint64_t)i * 2654435761u)) >> 20) / 2048.0f - 1.0f;
}

/* ids (B, L): [CLS]=101, then 1000 + ((b * L + j) * 7919) mod 28000, then [SEP]=102. */
static void caption_ids(int32_t *ids, int64_t B, int64_t L) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < L; j++)
            ids[b * L + j] = j == 0 ? 101 : j == L - 1 ? 102 : (int32_t)(1000 + ((b * L + j) * 7919) % 28000);
}

/* ---- a decoder that times its callee ------------------------------------------------------ */

typedef struct timed_decoder {
    const mmt_decoder *inner;
    double start_s, step_s, select_s;
} timed_decoder;

static mmt_status timed_start(void *ctx, int64_t B, const int32_t *prompt, int64_t L, int64_t cap, float *logits) {
    timed_decoder *t = ctx;
    double t0 = mmt_now_seconds();
    mmt_status s = t->inner->start(t->inner->ctx, B, prompt, L, cap, logits);
    t->start_s += mmt_now_seconds() - t0;
    return s;
}
static mmt_status timed_step(void *ctx, const int32_t *tokens, float *logits) {
    timed_decoder *t = ctx;
    double t0 = mmt_now_seconds();
    mmt_status s = t->inner->step(t->inner->ctx, tokens, logits);
    t->step_s += mmt_now_seconds() - t0;
    return s;
}
static mmt_status timed_select(void *ctx, const int64_t *rows, int64_t n) {
    timed_decoder *t = ctx;
    double t0 = mmt_now_seconds();
    mmt_status s = t->inner->select(t->inner->ctx, rows, n);
    t->select_s += mmt_now_seconds() - t0;
    return s;
}

static mmt_decoder timed_wrap(timed_decoder *t, const mmt_decoder *inner) {
    memset(t, 0, sizeof *t);
    t->inner = inner;
    return (mmt_decoder){.ctx = t, .vocab_size = inner->vocab_size, .max_tokens = inner->max_tokens,
                         .start = timed_start, .step = timed_step, .select = timed_select};
}

/* ---- the baseline without a KV cache -------------------------------------------------------
 * Every call runs mmt_git_run_logits on [image; every text token so far] of each row and keeps
 * the last position's logits. Rows carry the index of their image, so beam search's select
 * (which repeats and reorders rows) needs no recomputation either. */

typedef struct nocache_decoder {
    mmt_git_run *run;
    const float *pixels;       /* borrowed: (B, 3, S, S) */
    int64_t image_floats, Ni, V, max_rows, room;
    int64_t n, len;            /* rows now, text tokens per row */
    int64_t *image, *image_next;   /* owned: (max_rows) image of each row */
    int32_t *seq, *seq_next;       /* owned: (max_rows, room) tokens of each row */
    int32_t *ids;                  /* owned: (max_rows, room) packed (n, len) for the call */
    float *row_pixels;             /* owned: (max_rows, 3, S, S) */
    float *full;                   /* owned: (max_rows, Ni + room, V) */
} nocache_decoder;

static void nocache_free(nocache_decoder *d) {
    mmt_free(d->image), mmt_free(d->image_next), mmt_free(d->seq), mmt_free(d->seq_next);
    mmt_free(d->ids), mmt_free(d->row_pixels), mmt_free(d->full);
    memset(d, 0, sizeof *d);
}

static mmt_status nocache_init(nocache_decoder *d, mmt_git *m, mmt_git_run *run, const float *pixels, int64_t max_rows,
                               int64_t room) {
    const mmt_git_config *c = mmt_git_config_of(m);
    int64_t S = c->vision.image_size;
    memset(d, 0, sizeof *d);
    d->run = run, d->pixels = pixels, d->max_rows = max_rows, d->room = room;
    d->image_floats = 3 * S * S, d->Ni = mmt_git_image_tokens(m), d->V = c->vocab_size;
    d->image = mmt_malloc((size_t)max_rows * sizeof(int64_t));
    d->image_next = mmt_malloc((size_t)max_rows * sizeof(int64_t));
    d->seq = mmt_malloc((size_t)(max_rows * room) * sizeof(int32_t));
    d->seq_next = mmt_malloc((size_t)(max_rows * room) * sizeof(int32_t));
    d->ids = mmt_malloc((size_t)(max_rows * room) * sizeof(int32_t));
    d->row_pixels = mmt_malloc((size_t)(max_rows * d->image_floats) * sizeof(float));
    d->full = mmt_malloc((size_t)(max_rows * (d->Ni + room) * d->V) * sizeof(float));
    if (!d->image || !d->image_next || !d->seq || !d->seq_next || !d->ids || !d->row_pixels || !d->full) {
        nocache_free(d);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    return MMT_OK;
}

/* logits (n, V) after the last token of each row, from the whole sequence. */
static mmt_status nocache_run(nocache_decoder *d, float *logits) {
    int64_t n = d->n, L = d->len, T = d->Ni + L, V = d->V;
    for (int64_t r = 0; r < n; r++) {
        memcpy(d->ids + r * L, d->seq + r * d->room, (size_t)L * sizeof(int32_t));
        memcpy(d->row_pixels + r * d->image_floats, d->pixels + d->image[r] * d->image_floats,
               (size_t)d->image_floats * sizeof(float));
    }
    MMT_TRY(mmt_git_run_logits(d->run, d->row_pixels, d->ids, n, L, d->full));
    for (int64_t r = 0; r < n; r++) memcpy(logits + r * V, d->full + (r * T + T - 1) * V, (size_t)V * sizeof(float));
    return MMT_OK;
}

static mmt_status nocache_start(void *ctx, int64_t B, const int32_t *prompt, int64_t L, int64_t cap, float *logits) {
    nocache_decoder *d = ctx;
    if (B > d->max_rows || cap > d->room)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "bench: %lld rows of %lld tokens exceed the baseline's room",
                        (long long)B, (long long)cap);
    for (int64_t b = 0; b < B; b++) {
        d->image[b] = b;
        memcpy(d->seq + b * d->room, prompt + b * L, (size_t)L * sizeof(int32_t));
    }
    d->n = B, d->len = L;
    return nocache_run(d, logits);
}

static mmt_status nocache_step(void *ctx, const int32_t *tokens, float *logits) {
    nocache_decoder *d = ctx;
    if (d->len >= d->room) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "bench: the baseline's rows are full");
    for (int64_t r = 0; r < d->n; r++) d->seq[r * d->room + d->len] = tokens[r];
    d->len++;
    return nocache_run(d, logits);
}

static mmt_status nocache_select(void *ctx, const int64_t *rows, int64_t n) {
    nocache_decoder *d = ctx;
    if (n > d->max_rows) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "bench: %lld rows selected", (long long)n);
    for (int64_t j = 0; j < n; j++) {
        d->image_next[j] = d->image[rows[j]];
        memcpy(d->seq_next + j * d->room, d->seq + rows[j] * d->room, (size_t)d->len * sizeof(int32_t));
    }
    int64_t *ti = d->image;
    int32_t *ts = d->seq;
    d->image = d->image_next, d->image_next = ti;
    d->seq = d->seq_next, d->seq_next = ts;
    d->n = n;
    return MMT_OK;
}

static mmt_decoder nocache_as_decoder(nocache_decoder *d, int64_t max_tokens) {
    return (mmt_decoder){.ctx = d, .vocab_size = d->V, .max_tokens = max_tokens, .start = nocache_start,
                         .step = nocache_step, .select = nocache_select};
}

/* ---- the step profile: GEMMs and attention alone, at the step's shapes ---------------------- */

typedef struct step_profile {
    float *w;      /* owned: every decoder layer's weights and the output head, random */
    float *x, *y;  /* owned: (rows, 3072) activations */
    float *kv;     /* owned: (rows, keys, C) keys, reused as values */
    float *att;    /* owned: (12, keys) */
    int64_t C, I, V, layers, max_rows, keys;
} step_profile;

static void profile_free(step_profile *p) {
    mmt_free(p->w), mmt_free(p->x), mmt_free(p->y), mmt_free(p->kv), mmt_free(p->att);
    memset(p, 0, sizeof *p);
}

static mmt_status profile_init(step_profile *p, const mmt_git_config *c, int64_t max_rows, int64_t keys) {
    memset(p, 0, sizeof *p);
    p->C = c->hidden_size, p->I = c->intermediate_size, p->V = c->vocab_size, p->layers = c->num_layers;
    p->max_rows = max_rows, p->keys = keys;
    int64_t nw = p->layers * (4 * p->C * p->C + 2 * p->C * p->I) + p->V * p->C;
    p->w = mmt_malloc((size_t)nw * sizeof(float));
    p->x = mmt_malloc((size_t)(max_rows * p->I) * sizeof(float));
    p->y = mmt_malloc((size_t)(max_rows * (p->V > p->I ? p->V : p->I)) * sizeof(float));
    p->kv = mmt_malloc((size_t)(max_rows * keys * p->C) * sizeof(float));
    p->att = mmt_malloc((size_t)(c->num_heads * keys) * sizeof(float));
    if (!p->w || !p->x || !p->y || !p->kv || !p->att) {
        profile_free(p);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    pixels_fill(p->w, nw);
    for (int64_t i = 0; i < nw; i++) p->w[i] *= 0.02f;
    pixels_fill(p->x, max_rows * p->I);
    pixels_fill(p->kv, max_rows * keys * p->C);
    return MMT_OK;
}

/* Seconds per decoding step at M rows: the decoder's GEMMs (each layer's weights distinct, so
 * they stream from memory as in a real step), the logits GEMM, and the attention of M rows
 * over `keys` cached positions in every layer, each the mean of `reps` passes. */
static void profile_step(step_profile *p, const mmt_ops *ops, int64_t M, int64_t heads, int reps, double *gemm_s,
                         double *logits_s, double *attention_s) {
    int64_t C = p->C, I = p->I;
    double t0 = mmt_now_seconds();
    for (int rep = 0; rep < reps; rep++) {
        const float *w = p->w;
        for (int64_t l = 0; l < p->layers; l++) {
            for (int q = 0; q < 4; q++, w += C * C) ops->matmul_fwd(p->y, p->x, w, NULL, M, C, C);
            ops->matmul_fwd(p->y, p->x, w, NULL, M, C, I), w += C * I;
            ops->matmul_fwd(p->y, p->x, w, NULL, M, I, C), w += C * I;
        }
    }
    ops->sync();
    double t1 = mmt_now_seconds();
    const float *head = p->w + p->layers * (4 * C * C + 2 * C * I);
    for (int rep = 0; rep < reps; rep++) ops->matmul_fwd(p->y, p->x, head, NULL, M, C, p->V);
    ops->sync();
    double t2 = mmt_now_seconds();
    for (int rep = 0; rep < reps; rep++)
        for (int64_t l = 0; l < p->layers; l++)
            for (int64_t r = 0; r < M; r++) {
                const float *k = p->kv + r * p->keys * C;
                ops->attention_kv_fwd(p->y + r * C, p->att, p->x + r * C, k, k, 1, 1, p->keys, heads, C / heads, 1,
                                      p->keys - 1);
            }
    ops->sync();
    double t3 = mmt_now_seconds();
    *gemm_s = (t1 - t0) / reps, *logits_s = (t2 - t1) / reps, *attention_s = (t3 - t2) / reps;
}

/* ---- generation ------------------------------------------------------------------------------- */

typedef struct gen_result {
    double mean_s, best_s, vision_s, prefill_s, decode_s, select_s, search_s;
    int32_t first[64]; /* row 0's first tokens */
} gen_result;

/* One generate setting: warmup + iters calls of B images to B captions of N tokens. */
static mmt_status measure_generate(mmt_git *m, mmt_git_run *run, const caption_opts *o, int64_t B, int64_t k,
                                   int cached, gen_result *res) {
    const mmt_git_config *c = mmt_git_config_of(m);
    int64_t S = c->vision.image_size, Ni = mmt_git_image_tokens(m), C = c->hidden_size, N = o->new_tokens;
    memset(res, 0, sizeof *res);
    res->best_s = 1e30;
    float *pixels = mmt_malloc((size_t)(B * 3 * S * S) * sizeof(float));
    float *feats = mmt_malloc((size_t)(B * Ni * C) * sizeof(float));
    nocache_decoder nd;
    memset(&nd, 0, sizeof nd);
    mmt_status s = pixels && feats ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK && !cached) s = nocache_init(&nd, m, run, pixels, B * k, N);
    if (s != MMT_OK) goto done;
    pixels_fill(pixels, B * 3 * S * S);
    mmt_gen_settings g = mmt_gen_settings_default();
    g.max_new_tokens = g.min_new_tokens = N;
    g.num_beams = k;
    g.bos_token_id = (int32_t)c->bos_token_id;
    g.eos_token_id = (int32_t)c->eos_token_id;
    g.pad_token_id = (int32_t)c->pad_token_id;
    for (long it = 0; it < o->warmup + o->iters && s == MMT_OK; it++) {
        mmt_decoder inner, outer;
        timed_decoder td;
        mmt_gen_output out;
        double t0 = mmt_now_seconds(), tv = t0;
        if (cached) {
            s = mmt_git_run_image_features(run, pixels, B, feats);
            tv = mmt_now_seconds();
            mmt_git_run_decoder(run, feats, B, &inner);
        } else {
            inner = nocache_as_decoder(&nd, c->max_positions);
        }
        outer = timed_wrap(&td, &inner);
        if (s == MMT_OK) s = mmt_generate(&outer, NULL, B, 0, &g, &out);
        double t1 = mmt_now_seconds();
        if (s != MMT_OK) break;
        for (int64_t r = 0; r < out.n_rows && s == MMT_OK; r++)
            if (out.lengths[r] != N)
                s = mmt_fail(MMT_STATUS_INTERNAL, "bench caption: row %lld got %lld tokens, not %lld", (long long)r,
                             (long long)out.lengths[r], (long long)N);
        for (int64_t j = 0; j < N && j < 64; j++) res->first[j] = out.tokens[j];
        mmt_gen_output_free(&out);
        if (it < o->warmup) continue;
        double total = t1 - t0;
        res->mean_s += total;
        res->best_s = total < res->best_s ? total : res->best_s;
        res->vision_s += tv - t0;
        res->prefill_s += td.start_s;
        res->decode_s += td.step_s;
        res->select_s += td.select_s;
        res->search_s += (t1 - tv) - td.start_s - td.step_s - td.select_s;
    }
    double n = (double)o->iters;
    res->mean_s /= n, res->vision_s /= n, res->prefill_s /= n, res->decode_s /= n, res->select_s /= n, res->search_s /= n;
done:
    nocache_free(&nd);
    mmt_free(pixels);
    mmt_free(feats);
    return s;
}

static void print_generate(const caption_opts *o, int64_t B, int64_t k, int cached, const gen_result *r,
                           const double *prof) {
    double tps = (double)(B * o->new_tokens) / r->mean_s;
    int64_t steps = o->new_tokens - 1;
    if (!o->json) {
        printf("%-6s %5lld %5lld %10.2f %9.3f   vision %.3f  prefill %.3f  steps %.3f (%.1f ms each)  select %.3f  "
               "search %.3f\n", cached ? "cache" : "none", (long long)B, (long long)k, tps, r->mean_s, r->vision_s,
               r->prefill_s, r->decode_s, 1e3 * r->decode_s / (double)steps, r->select_s, r->search_s);
        if (prof)
            printf("       step alone at %lld rows: decoder GEMMs %.1f ms, logits GEMM %.1f ms, attention %.1f ms\n",
                   (long long)(B * k), 1e3 * prof[0], 1e3 * prof[1], 1e3 * prof[2]);
        return;
    }
    printf("{\"kind\": \"generate\", \"batch\": %lld, \"beams\": %lld, \"cache\": %s, \"new_tokens\": %ld, \"iters\": %ld, "
           "\"mean_s\": %.5f, \"best_s\": %.5f, \"tokens_per_s\": %.4f, \"vision_s\": %.5f, \"prefill_s\": %.5f, "
           "\"decode_s\": %.5f, \"step_ms\": %.3f, \"select_s\": %.5f, \"search_s\": %.5f",
           (long long)B, (long long)k, cached ? "true" : "false", o->new_tokens, o->iters, r->mean_s, r->best_s, tps,
           r->vision_s, r->prefill_s, r->decode_s, 1e3 * r->decode_s / (double)steps, r->select_s, r->search_s);
    if (prof)
        printf(", \"profile_rows\": %lld, \"profile_gemm_ms\": %.3f, \"profile_logits_ms\": %.3f, \"profile_attention_ms\": %.3f",
               (long long)(B * k), 1e3 * prof[0], 1e3 * prof[1], 1e3 * prof[2]);
    printf(", \"tokens\": [");
    for (long j = 0; j < o->new_tokens && j < 64; j++) printf("%s%d", j ? ", " : "", r->first[j]);
    printf("], \"kernels\": \"%s\"}\n", mmt_ops_cpu()->name);
}

static int run_generate(mmt_git *m, const caption_opts *o) {
    const mmt_git_config *c = mmt_git_config_of(m);
    mmt_git_run *run = NULL;
    step_profile prof;
    memset(&prof, 0, sizeof prof);
    int rc = 0;
    int64_t max_rows = 1;
    for (int64_t i = 0; i < o->n_batch; i++)
        for (int64_t j = 0; j < o->n_beams; j++)
            if (o->batch[i] * o->beams[j] > max_rows) max_rows = o->batch[i] * o->beams[j];
    if (mmt_git_run_create(m, &run) != MMT_OK ||
        (o->profile && profile_init(&prof, c, max_rows, mmt_git_image_tokens(m) + o->new_tokens / 2) != MMT_OK)) {
        rc = cli_runtime_error();
        goto done;
    }
    if (!o->json)
        printf("%-6s %5s %5s %10s %9s   (kernels: %s; %ld new tokens per caption, mean of %ld calls)\n", "cache",
               "batch", "beams", "tokens/s", "s/call", mmt_ops_cpu()->name, o->new_tokens, o->iters);
    for (int cached = 1; cached >= 0 && !rc; cached--) {
        if ((cached && !o->cache_on) || (!cached && !o->cache_off)) continue;
        for (int64_t i = 0; i < o->n_batch && !rc; i++)
            for (int64_t j = 0; j < o->n_beams && !rc; j++) {
                gen_result r;
                double p[3];
                if (measure_generate(m, run, o, o->batch[i], o->beams[j], cached, &r) != MMT_OK) {
                    rc = cli_runtime_error();
                    break;
                }
                if (o->profile && cached)
                    profile_step(&prof, mmt_ops_cpu(), o->batch[i] * o->beams[j], c->num_heads, 5, &p[0], &p[1], &p[2]);
                print_generate(o, o->batch[i], o->beams[j], cached, &r, o->profile && cached ? p : NULL);
                fflush(stdout);
            }
    }
done:
    profile_free(&prof);
    mmt_git_run_free(run);
    return rc;
}

/* ---- the LoRA training step ------------------------------------------------------------------ */

static int run_train(mmt_git *m, const caption_opts *o) {
    const mmt_git_config *c = mmt_git_config_of(m);
    int64_t S = c->vision.image_size, B = o->train_batch, L = o->caption_tokens;
    const char *targets[] = {"query", "value"};
    mmt_git_run *run = NULL;
    mmt_adapter *ad = NULL;
    mmt_adamw *opt = NULL;
    mmt_param *params = NULL;
    mmt_peft_config pc;
    int have_pc = 0, rc = 0;
    float *pixels = mmt_malloc((size_t)(B * 3 * S * S) * sizeof(float));
    int32_t *ids = mmt_malloc((size_t)(B * L) * sizeof(int32_t));
    if (!pixels || !ids || mmt_git_run_create(m, &run) != MMT_OK || mmt_peft_config_default(&pc, MMT_PEFT_LORA) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    have_pc = 1;
    pixels_fill(pixels, B * 3 * S * S);
    caption_ids(ids, B, L);
    pc.r = 8;
    pc.lora_alpha = 16;
    if (mmt_peft_names_set_list(&pc.target_modules, targets, 2) != MMT_OK ||
        mmt_adapter_from_config(mmt_git_run_iface(run), &pc, 1, 1, &ad) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    int64_t n, trainable = 0;
    const mmt_nn_param *p = mmt_git_run_params(run, &n);
    params = mmt_calloc((size_t)n, sizeof *params);
    if (!params) {
        rc = cli_runtime_error();
        goto done;
    }
    mmt_params_from_nn(p, n, params);
    for (int64_t i = 0; i < n; i++) trainable += p[i].numel;
    mmt_param_group g = {"all", params, n, 1.0, 0.01, NULL};
    mmt_adamw_config oc = mmt_adamw_config_default();
    oc.lr = 1e-4;
    if (mmt_adamw_create(&oc, &g, 1, &opt) != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    double t0 = 0, fwd = 0, bwd = 0, loss = 0, first_loss = 0, best = 1e30;
    for (long step = 0; step < 1 + o->steps; step++) {
        if (step == 1) t0 = mmt_now_seconds(), fwd = bwd = 0;
        double ta = mmt_now_seconds();
        mmt_git_run_zero_grad(run);
        mmt_status s = mmt_git_run_forward_loss(run, pixels, ids, ids, B, L, 0.0f, (uint64_t)step, &loss);
        double tb = mmt_now_seconds();
        if (s == MMT_OK) s = mmt_git_run_backward(run);
        double tc = mmt_now_seconds();
        if (s == MMT_OK) s = mmt_adamw_step(opt, 1.0);
        if (s != MMT_OK) {
            rc = cli_runtime_error();
            goto done;
        }
        if (step == 0) first_loss = loss;
        fwd += tb - ta, bwd += tc - tb;
        double dt = mmt_now_seconds() - ta;
        if (step > 0 && dt < best) best = dt;
    }
    double per = (mmt_now_seconds() - t0) / (double)o->steps;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = (double)ru.ru_maxrss / (1024.0 * 1024.0);
    if (o->json)
        printf("{\"kind\": \"train\", \"method\": \"lora\", \"batch\": %lld, \"caption_tokens\": %lld, \"steps\": %ld, "
               "\"s_per_step\": %.4f, \"best_s\": %.4f, \"forward_s\": %.4f, \"backward_s\": %.4f, \"trainable_params\": %lld, "
               "\"first_loss\": %.6f, \"peak_rss_gib\": %.3f, \"kernels\": \"%s\"}\n",
               (long long)B, (long long)L, o->steps, per, best, fwd / (double)o->steps, bwd / (double)o->steps,
               (long long)trainable, first_loss, rss, mmt_ops_cpu()->name);
    else
        printf("lora train step (batch %lld, %lld tokens): %.3f s/step (forward %.3f, backward %.3f), %lld trainable, "
               "first loss %.5f, peak RSS %.2f GiB\n", (long long)B, (long long)L, per, fwd / (double)o->steps,
               bwd / (double)o->steps, (long long)trainable, first_loss, rss);
done:
    mmt_adamw_free(opt);
    mmt_free(params);
    mmt_adapter_free(ad);
    if (have_pc) mmt_peft_config_free(&pc);
    mmt_git_run_free(run);
    mmt_free(pixels);
    mmt_free(ids);
    return rc;
}

/* ---- options ------------------------------------------------------------------------------------ */

/* "1,8" -> list (values in 1..max). */
static int parse_list(const char *s, int64_t *out, int64_t *n, long max) {
    *n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > max || *n >= MAX_LIST || (*end && *end != ',')) return 0;
        out[(*n)++] = v;
        s = *end ? end + 1 : end;
    }
    return *n > 0;
}

static int parse_count(const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

int cmd_bench_caption(int argc, char **argv) {
    caption_opts o = {.n_batch = 2, .n_beams = 2, .cache_on = 1, .cache_off = 1, .generate = 1, .train = 1,
                      .new_tokens = 20, .iters = 3, .warmup = 1, .train_batch = 16, .caption_tokens = 20, .steps = 3};
    o.batch[0] = 1, o.batch[1] = 8, o.beams[0] = 1, o.beams[1] = 3;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), 0;
        if (!strcmp(a, "--profile")) o.profile = 1;
        else if (!strcmp(a, "--json")) o.json = 1;
        else if (!v) return cli_usage_error("bench caption: '%s' needs a value or is unknown", a);
        else if (i++, !strcmp(a, "--model")) o.model = v;
        else if (!strcmp(a, "--batch")) {
            if (!parse_list(v, o.batch, &o.n_batch, 256)) return cli_usage_error("--batch takes a list like 1,8");
        } else if (!strcmp(a, "--beams")) {
            if (!parse_list(v, o.beams, &o.n_beams, 16)) return cli_usage_error("--beams takes a list like 1,3");
        } else if (!strcmp(a, "--cache")) {
            o.cache_on = !strcmp(v, "on") || !strcmp(v, "both");
            o.cache_off = !strcmp(v, "off") || !strcmp(v, "both");
            if (!o.cache_on && !o.cache_off) return cli_usage_error("--cache takes on, off or both");
        } else if (!strcmp(a, "--parts")) {
            o.generate = strstr(v, "generate") != NULL;
            o.train = strstr(v, "train") != NULL;
            if (!o.generate && !o.train) return cli_usage_error("--parts takes generate, train or generate,train");
        } else if (!strcmp(a, "--new-tokens")) {
            if (!parse_count(v, 1, 500, &o.new_tokens)) return cli_usage_error("bad value for --new-tokens");
        } else if (!strcmp(a, "--iters")) {
            if (!parse_count(v, 1, 10000, &o.iters)) return cli_usage_error("bad value for --iters");
        } else if (!strcmp(a, "--warmup")) {
            if (!parse_count(v, 0, 10000, &o.warmup)) return cli_usage_error("bad value for --warmup");
        } else if (!strcmp(a, "--train-batch")) {
            if (!parse_count(v, 1, 1024, &o.train_batch)) return cli_usage_error("bad value for --train-batch");
        } else if (!strcmp(a, "--caption-tokens")) {
            if (!parse_count(v, 2, 512, &o.caption_tokens)) return cli_usage_error("bad value for --caption-tokens");
        } else if (!strcmp(a, "--steps")) {
            if (!parse_count(v, 1, 10000, &o.steps)) return cli_usage_error("bad value for --steps");
        } else return cli_usage_error("bench caption: unknown option '%s'", a);
    }
    if (!o.model)
        return cli_usage_error("bench caption needs --model DIR (make one: python3 tools/bench/make_git_base.py --out DIR)");
    mmt_git *m = NULL;
    if (cli_git_load_inference(o.model, &m) != MMT_OK) return cli_runtime_error();
    const mmt_git_config *c = mmt_git_config_of(m);
    int rc = 0;
    if (c->eos_token_id < 0 || c->eos_token_id >= c->vocab_size || c->bos_token_id < 0 || c->bos_token_id >= c->vocab_size)
        rc = cli_usage_error("bench caption: the model needs bos and eos token ids in its vocabulary");
    else if (o.new_tokens > c->max_positions || o.caption_tokens > c->max_positions)
        rc = cli_usage_error("bench caption: --new-tokens / --caption-tokens exceed max_position_embeddings (%lld)",
                             (long long)c->max_positions);
    if (!rc && o.generate) rc = run_generate(m, &o);
    if (!rc && o.train) rc = run_train(m, &o);
    mmt_git_free(m);
    return rc;
}
