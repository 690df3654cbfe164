/*
 * test_hard_batches.c — hard-example batches: the grouping (train/hard_batches.h), the
 * trainer's epoch_order hook (train/trainer.h) and `mmtune train --sampling hard`.
 *
 * References:
 *   - grouping: every batch is its seed, the h nearest examples not used before (checked
 *     against a brute-force ranking in double: no unchosen unused example is nearer than a
 *     chosen one, 1e-5), then the seeded order; the result is a permutation; on clustered
 *     embeddings (8 clusters of 12) batches of 12 with ratio 1 are whole clusters, and the
 *     in-batch similarity statistic exceeds the plain order's.
 *   - trainer, on a toy task whose embeddings move with its trained vector: the loaded
 *     micro-batches are the hook's runs in order (one rank, and two shares with --as-ranks 2:
 *     each run whole in one micro-batch); the same seed gives the same batches and weights;
 *     a run resumed mid-epoch from a checkpoint trains on the same batches (the epoch's order
 *     comes from the checkpoint: the model has moved since it was computed) and ends with the
 *     same weights, bit for bit; with prefetching the announced batches are the loaded ones.
 *   - CLI (tiny default model, `mmtune synth` scenes): two runs give identical adapters;
 *     resuming from a checkpoint before an epoch begins and from one inside an epoch gives the
 *     adapter of the uninterrupted run byte for byte; the logged in-batch similarity of the
 *     hard batches exceeds the plain order's; --sampling plain is the default bit for bit;
 *     bad values and a captioner are refused.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "rng.h"
#include "toy_task.h"
#include "train/hard_batches.h"
#include "train/run_dir.h"
#include "train/trainer.h"

#define MODEL MMT_SOURCE_DIR "/models/mmtune-clip-tiny"

static char tmp[256];

/* ---- the grouping ---------------------------------------------------------------------- */

#define HD 16

static void normalise(float *v, int64_t D) {
    double n = 0;
    for (int64_t j = 0; j < D; j++) n += (double)v[j] * v[j];
    for (int64_t j = 0; j < D; j++) v[j] = (float)(v[j] / sqrt(n));
}

/* n examples in clusters of `per` around random centres (noise `spread`): cluster i / per. */
static void clustered(float *img, float *txt, int64_t n, int64_t per, float spread) {
    float centre[HD];
    for (int64_t i = 0; i < n; i++) {
        if (i % per == 0) {
            for (int j = 0; j < HD; j++) centre[j] = rng_uniform();
            normalise(centre, HD);
        }
        for (int j = 0; j < HD; j++) {
            img[i * HD + j] = centre[j] + spread * rng_uniform();
            txt[i * HD + j] = centre[j] + spread * rng_uniform();
        }
        normalise(img + i * HD, HD);
        normalise(txt + i * HD, HD);
    }
}

static void shuffled(int64_t *perm, int64_t n) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next() % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static double nearness(const float *img, const float *txt, int64_t a, int64_t b) {
    double s = 0;
    for (int j = 0; j < HD; j++) s += (double)img[a * HD + j] * img[b * HD + j] + (double)txt[a * HD + j] * txt[b * HD + j];
    return s / 2;
}

/* Checks out against the rule for these sizes and ratio. */
static void check_rule(const float *img, const float *txt, int64_t n, const int64_t *seeded, const int64_t *sizes,
                       int64_t g, double ratio, const int64_t *out) {
    char used[512] = {0};
    int64_t cursor = 0, at = 0;
    for (int64_t b = 0; b < g; at += sizes[b], b++) {
        while (used[seeded[cursor]]) cursor++;
        CHECK_MSG(out[at] == seeded[cursor], "batch %lld: seed %lld, expected %lld", (long long)b, (long long)out[at],
                  (long long)seeded[cursor]);
        int64_t seed = out[at], left = 0;
        used[seed] = 1;
        for (int64_t i = 0; i < n; i++) left += !used[i];
        int64_t h = llround(ratio * (double)sizes[b]);
        h = (h > 1 ? h : 1) - 1;
        if (h > sizes[b] - 1) h = sizes[b] - 1;
        if (h > left) h = left;
        double weakest = 2;
        for (int64_t k = 1; k <= h; k++) {
            CHECK(!used[out[at + k]]);
            double s = nearness(img, txt, seed, out[at + k]);
            if (s < weakest) weakest = s;
            used[out[at + k]] = 1;
        }
        for (int64_t i = 0; h > 0 && i < n; i++)
            if (!used[i]) CHECK_MSG(nearness(img, txt, seed, i) <= weakest + 1e-5, "batch %lld: %lld is nearer", (long long)b,
                                    (long long)i);
        for (int64_t k = h + 1; k < sizes[b]; k++) { /* the rest: the seeded order */
            while (used[seeded[cursor]]) cursor++;
            CHECK(out[at + k] == seeded[cursor]);
            used[out[at + k]] = 1;
        }
    }
}

static void test_grouping_rule(void) {
    enum { N = 96 };
    static float img[N * HD], txt[N * HD];
    int64_t seeded[N], out[N], again[N];
    rng_state = 31;
    clustered(img, txt, N, 12, 0.25f);
    shuffled(seeded, N);
    const int64_t even[8] = {12, 12, 12, 12, 12, 12, 12, 12};
    mmt_hard_batch_stats st;
    CHECK_OK(mmt_hard_batches(img, txt, N, HD, seeded, even, 8, 1.0, out, &st));
    check_rule(img, txt, N, seeded, even, 8, 1.0, out);
    for (int64_t b = 0; b < 8; b++) /* whole clusters */
        for (int64_t k = 1; k < 12; k++) CHECK(out[b * 12 + k] / 12 == out[b * 12] / 12);
    CHECK_MSG(st.hard_similarity > 0.6 && st.plain_similarity < 0.3, "hard %g plain %g", st.hard_similarity, st.plain_similarity);
    const int64_t uneven[7] = {5, 16, 1, 30, 7, 29, 8};
    for (int r = 0; r < 3; r++) {
        double ratio = r == 0 ? 0.5 : r == 1 ? 0.1 : 0.75;
        CHECK_OK(mmt_hard_batches(img, txt, N, HD, seeded, uneven, 7, ratio, out, &st));
        check_rule(img, txt, N, seeded, uneven, 7, ratio, out);
        CHECK(st.hard_similarity > st.plain_similarity);
        CHECK_OK(mmt_hard_batches(img, txt, N, HD, seeded, uneven, 7, ratio, again, NULL));
        CHECK(memcmp(out, again, sizeof out) == 0);
    }
    const int64_t short_sizes[2] = {40, 40};
    CHECK_FAILS(mmt_hard_batches(img, txt, N, HD, seeded, short_sizes, 2, 0.5, out, NULL), MMT_STATUS_INVALID_ARGUMENT,
                "add up to 80");
    CHECK_FAILS(mmt_hard_batches(img, txt, N, HD, seeded, even, 8, 0.0, out, NULL), MMT_STATUS_INVALID_ARGUMENT, "ratio 0");
    seeded[1] = seeded[0];
    CHECK_FAILS(mmt_hard_batches(img, txt, N, HD, seeded, even, 8, 0.5, out, NULL), MMT_STATUS_INVALID_ARGUMENT,
                "not a permutation");
}

/* ---- the trainer's hook on a toy task ---------------------------------------------------- */

#define TN 26  /* examples: batches of 6 straddle the epochs */
#define TD 4
#define MAX_LOG 256

/* The toy task, logging every micro-batch it loads and what the hooks below were given. */
typedef struct toy {
    toy_task base;
    int64_t log[MAX_LOG][16], log_n[MAX_LOG], n_log;   /* every loaded micro-batch */
    int64_t runs[8][TN], run_sizes[8][TN], n_runs[8];   /* the hook's output per epoch */
    int hook_calls[8];
    int64_t announced[MAX_LOG][16], n_announced, n_matched;
} toy;

static mmt_status toy_load_batch(void *ctx, const int64_t *idx, int64_t n) {
    toy *t = ctx;
    if (t->n_log < MAX_LOG) {
        memcpy(t->log[t->n_log], idx, (size_t)n * sizeof *idx);
        t->log_n[t->n_log] = n;
    }
    if (t->n_announced > 0) t->n_matched += t->n_log < t->n_announced && !memcmp(t->announced[t->n_log], idx, (size_t)n * 8);
    t->n_log++;
    return toy_task_load_batch(&t->base, idx, n);
}

static mmt_status toy_prefetch(void *ctx, int64_t position, const int64_t *idx, int64_t n) {
    (void)position;
    toy *t = ctx;
    if (t->n_announced < MAX_LOG) memcpy(t->announced[t->n_announced], idx, (size_t)n * sizeof *idx);
    t->n_announced++;
    return MMT_OK;
}

/* The embeddings move with the trained vector: image (x_i - w), text (x_i - w) reversed,
 * both normalised, so an epoch's order depends on the model at its start. */
static mmt_status toy_epoch_order(void *ctx, int64_t epoch, const int64_t *seeded, int64_t n, const int64_t *sizes,
                                  int64_t g, int64_t *out) {
    toy *t = ctx;
    float img[TN * TD], txt[TN * TD];
    for (int64_t i = 0; i < n; i++) {
        for (int d = 0; d < TD; d++) {
            img[i * TD + d] = t->base.x[i][d] - t->base.w[d];
            txt[i * TD + d] = t->base.x[i][TD - 1 - d] - t->base.w[TD - 1 - d];
        }
        double a = 0, b = 0;
        for (int d = 0; d < TD; d++) a += (double)img[i * TD + d] * img[i * TD + d], b += (double)txt[i * TD + d] * txt[i * TD + d];
        for (int d = 0; d < TD; d++) img[i * TD + d] = (float)(img[i * TD + d] / sqrt(a)), txt[i * TD + d] = (float)(txt[i * TD + d] / sqrt(b));
    }
    MMT_TRY(mmt_hard_batches(img, txt, n, TD, seeded, sizes, g, 0.5, out, NULL));
    if (epoch < 8) {
        memcpy(t->runs[epoch], out, (size_t)n * sizeof *out);
        memcpy(t->run_sizes[epoch], sizes, (size_t)g * sizeof *sizes);
        t->n_runs[epoch] = g;
        t->hook_calls[epoch]++;
    }
    return MMT_OK;
}

static void toy_init(toy *t, mmt_train_task *task, int prefetch) {
    memset(t, 0, sizeof *t);
    toy_task_init(&t->base, task, TN, TD);
    for (int i = 0; i < TN; i++)
        for (int d = 0; d < TD; d++) t->base.x[i][d] *= (float)(1 + i % 3);
    for (int d = 0; d < TD; d++) t->base.w[d] = 0.1f * (float)d;
    task->load_batch = toy_load_batch;
    task->epoch_order = toy_epoch_order;
    if (prefetch) {
        task->prefetch = toy_prefetch;
        task->prefetch_ahead = 2;
    }
}

static void toy_settings(mmt_train_settings *s, const char *out, int64_t batch, int64_t as_ranks) {
    mmt_train_settings_default(s);
    s->out = out;
    s->steps = 10;
    s->batch_size = batch;
    s->lr = 0.05;
    s->quiet = 1;
    s->seed = 11;
    s->save_every = 3;
    s->keep_checkpoints = 0;
    s->as_ranks = as_ranks;
    s->overwrite = 1;
}

static void toy_run(toy *t, int prefetch, const char *name, int64_t batch, int64_t as_ranks, const char *resume) {
    mmt_train_task task;
    toy_init(t, &task, prefetch);
    mmt_train_settings s;
    char out[400];
    snprintf(out, sizeof out, "%s/%s", tmp, name);
    toy_settings(&s, out, batch, as_ranks);
    if (resume) {
        s.resume = resume;
        s.overwrite = 0;
    }
    mmt_train_result r;
    CHECK_MSG(mmt_train_run(&task, &s, &r) == MMT_OK, "%s", mmt_last_error());
}

/* The micro-batches of one rank are the hook's runs in order, a batch straddling two
 * epochs being the last run of one and the first of the next. */
static void test_trainer_lays_runs_on_batches(void) {
    static toy a, b;
    toy_run(&a, 0, "toy_a", 6, 0, NULL);
    CHECK(a.n_log == 10 && a.hook_calls[0] == 1 && a.hook_calls[1] == 1 && a.hook_calls[2] == 1 && a.hook_calls[3] == 0);
    /* the stream: epochs of 26, so the example at stream position q is runs[q / 26][q % 26] */
    for (int64_t k = 0; k < a.n_log; k++)
        for (int64_t j = 0; j < 6; j++) {
            int64_t q = k * 6 + j;
            CHECK(a.log[k][j] == a.runs[q / TN][q % TN]);
        }
    CHECK(a.run_sizes[0][0] == 6 && a.run_sizes[0][4] == 2 && a.run_sizes[1][0] == 4); /* 26 = 4 x 6 + 2 */
    toy_run(&b, 0, "toy_b", 6, 0, NULL);
    CHECK(memcmp(a.log, b.log, sizeof a.log) == 0 && memcmp(a.base.w, b.base.w, TD * sizeof(float)) == 0);
    /* with prefetching: the same batches, and each announced before it is loaded */
    toy_run(&b, 1, "toy_p", 6, 0, NULL);
    CHECK(memcmp(a.log, b.log, sizeof a.log) == 0 && memcmp(a.base.w, b.base.w, TD * sizeof(float)) == 0);
    CHECK(b.n_announced == 10 && b.n_matched == 10);
}

static void test_trainer_resume_mid_epoch(void) {
    static toy a, r;
    toy_run(&a, 0, "toy_r", 6, 0, NULL);
    /* after 6 steps: epoch 1 (0-based) began in the fifth step, whose batch is stream
     * positions [24, 30): its order was computed with the model of then, which has moved since */
    char ckpt[400];
    snprintf(ckpt, sizeof ckpt, "%s/toy_r/ckpt-6", tmp);
    CHECK(exists("%s/sampling.safetensors", ckpt));
    toy_run(&r, 0, "toy_r", 6, 0, ckpt);
    CHECK(r.n_log == 4 && r.hook_calls[1] == 0 && r.hook_calls[2] == 1);
    for (int64_t k = 0; k < r.n_log; k++) CHECK(memcmp(r.log[k], a.log[6 + k], 6 * sizeof(int64_t)) == 0);
    CHECK(memcmp(r.base.w, a.base.w, TD * sizeof(float)) == 0);
    /* ckpt-9 with prefetching too */
    snprintf(ckpt, sizeof ckpt, "%s/toy_r/ckpt-9", tmp);
    toy_run(&r, 1, "toy_r", 6, 0, ckpt);
    CHECK(r.n_log == 1 && memcmp(r.log[0], a.log[9], 6 * sizeof(int64_t)) == 0 &&
          memcmp(r.base.w, a.base.w, TD * sizeof(float)) == 0);
    /* a checkpoint without the orders (its manifest rewritten to match) is refused, naming
     * the epoch; so is one resumed on another number of shares */
    snprintf(ckpt, sizeof ckpt, "%s/toy_r/ckpt-9", tmp);
    mmt_train_task task;
    mmt_train_settings s;
    mmt_train_result res;
    char out[400];
    snprintf(out, sizeof out, "%s/toy_r", tmp);
    toy_init(&r, &task, 0);
    toy_settings(&s, out, 6, 2);
    s.resume = ckpt;
    s.overwrite = 0;
    CHECK_FAILS(mmt_train_run(&task, &s, &res), MMT_STATUS_INVALID_ARGUMENT, "--as-ranks 1");
    char run_id[17];
    CHECK_OK(mmt_ckpt_manifest_verify(ckpt, run_id));
    CHECK(sh("rm %s/sampling.safetensors", ckpt) == 0);
    CHECK_OK(mmt_ckpt_manifest_write(ckpt, run_id));
    toy_init(&r, &task, 0);
    toy_settings(&s, out, 6, 0);
    s.resume = ckpt;
    s.overwrite = 0;
    CHECK_FAILS(mmt_train_run(&task, &s, &res), MMT_STATUS_BAD_FORMAT, "no hard-example order for epoch 3");
}

/* Two shares (--as-ranks 2): every run of the hook lands whole in one micro-batch, in the
 * order the shares' micro-batches are trained. */
static void test_trainer_two_shares(void) {
    static toy a;
    toy_run(&a, 0, "toy_2", 4, 2, NULL); /* 26 over 2 shares: 13 each, micro-batches of 4 */
    CHECK(a.n_log == 20);
    /* epoch 0: share positions 0..12 in micro-batches [0,4) [4,8) [8,12) [12,16): runs in
     * the order (k, share); check the first three micro-batches of each share */
    int64_t run_at[64], at = 0;
    for (int64_t g = 0; g < a.n_runs[0]; g++) {
        run_at[g] = at;
        at += a.run_sizes[0][g];
    }
    for (int64_t k = 0; k < 3; k++)
        for (int64_t share = 0; share < 2; share++) {
            int64_t logged = k * 2 + share, g = k * 2 + share;
            CHECK(a.run_sizes[0][g] == 4);
            CHECK(memcmp(a.log[logged], a.runs[0] + run_at[g], 4 * sizeof(int64_t)) == 0);
        }
}

/* ---- the CLI ----------------------------------------------------------------------------- */

#define TRAIN "train --model " MODEL " --quiet --batch-size 16 --lr 1e-3 --seed 5 --keep-checkpoints 0 "

static int same_adapter(const char *a, const char *b) {
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/%s/adapter/adapter_model.safetensors", tmp, a);
    snprintf(pb, sizeof pb, "%s/%s/adapter/adapter_model.safetensors", tmp, b);
    return check_same_file(pa, NULL, pb);
}

static void test_cli_hard_sampling(void) {
    char data[400];
    snprintf(data, sizeof data, "%s/synth/train.jsonl", tmp); /* 120 pairs: 7 steps an epoch */
    CHECK(run(TRAIN "--data %s --out %s/h1 --steps 10 --save-every 3 --sampling hard", data, tmp) == 0);
    CHECK(run(TRAIN "--data %s --out %s/h2 --steps 10 --save-every 3 --sampling hard", data, tmp) == 0);
    CHECK(same_adapter("h1", "h2"));
    CHECK(exists("%s/h1/ckpt-9/sampling.safetensors", tmp) && exists("%s/h1/ckpt-6/sampling.safetensors", tmp));
    /* resume before epoch 2 begins (ckpt-6: it begins in the eighth step) and inside it (ckpt-9) */
    for (int k = 0; k < 2; k++) {
        CHECK(sh("rm -rf %s/h3 && cp -r %s/h1 %s/h3 && rm -rf %s/h3/adapter %s/h3/ckpt-10", tmp, tmp, tmp, tmp, tmp) == 0);
        if (k == 0) CHECK(sh("rm -rf %s/h3/ckpt-9", tmp) == 0);
        CHECK_MSG(run(TRAIN "--data %s --out %s/h3 --steps 10 --save-every 3 --sampling hard --resume %s/h3", data, tmp, tmp) == 0,
                  "%s", err_text ? err_text : "");
        CHECK_MSG(same_adapter("h1", "h3"), "resumed from ckpt-%d: the adapter differs", k == 0 ? 6 : 9);
    }
    /* the statistic: the hard batches' in-batch similarity over the plain order's */
    CHECK(run("train --model " MODEL " --batch-size 16 --lr 1e-3 --seed 5 --progress log --data %s --out %s/h4 --steps 8 "
              "--sampling hard --hard-ratio 0.75", data, tmp) == 0);
    int epochs = 0;
    for (const char *p = err_text; p && (p = strstr(p, "mean in-batch similarity ")); p++) {
        double hard = 0, plain = 0;
        CHECK(sscanf(p, "mean in-batch similarity %lf, plain order %lf", &hard, &plain) == 2);
        CHECK_MSG(hard > plain + 0.05, "hard %g plain %g", hard, plain);
        epochs++;
    }
    CHECK(epochs == 2);
    /* plain is the default, bit for bit */
    CHECK(run(TRAIN "--data %s --out %s/p1 --steps 4", data, tmp) == 0);
    CHECK(run(TRAIN "--data %s --out %s/p2 --steps 4 --sampling plain --hard-ratio 0.3", data, tmp) == 0);
    CHECK(same_adapter("p1", "p2"));
    CHECK(!exists("%s/p1/ckpt-4/sampling.safetensors", tmp));
    /* a resumed run must keep its sampling (run.json's identity) */
    CHECK(run(TRAIN "--data %s --out %s/p1 --steps 6 --resume %s/p1 --sampling hard", data, tmp, tmp) == 1);
    CHECK(count_lines(err_text) == 1);
    /* refusals */
    CHECK(run(TRAIN "--data %s --out %s/bad --sampling sometimes", data, tmp) == 2 && strstr(err_text, "plain or hard"));
    CHECK(run(TRAIN "--data %s --out %s/bad --sampling hard --hard-ratio 0", data, tmp) == 2 && strstr(err_text, "(0, 1]"));
    CHECK(run(TRAIN "--data %s --out %s/bad --sampling hard --hard-ratio 1.5", data, tmp) == 2);
    CHECK(run("train --model " MMT_SOURCE_DIR "/models/mmtune-git-tiny --data %s --out %s/bad --sampling hard", data, tmp) == 2 &&
          strstr(err_text, "captioner"));
    CHECK(!exists("%s/bad", tmp));
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mmt_hard_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    cli_run_setup(tmp);
    RUN(test_grouping_rule);
    RUN(test_trainer_lays_runs_on_batches);
    RUN(test_trainer_resume_mid_epoch);
    RUN(test_trainer_two_shares);
    if (run("synth --out %s/synth --count 150 --seed 3", tmp) == 0) RUN(test_cli_hard_sampling);
    else CHECK_MSG(0, "synth: %s", err_text ? err_text : "");
    cli_run_cleanup();
    if (!check_failed_) sh("rm -rf %s", tmp);
    return check_summary();
}
