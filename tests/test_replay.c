/*
 * test_replay.c — experience replay in the trainer (train/replay.h, settings.replay_*), on a
 * toy task that records the examples of every micro-batch:
 *   - the stream: each replay epoch visits every replay example exactly once (n = 1, 2, 3,
 *     17, 100, 1000), epochs differ, seeds differ, and the ratio rounds half away from zero;
 *   - the mix: every micro-batch has exactly round(R x batch) replay examples (the last ones)
 *     and the rest from the data; the data examples of an epoch are each seen once, and
 *     epochs count the data alone (steps per epoch from the data's share of a batch);
 *   - determinism: the same seed, the same micro-batches (and the same with 2 shares in one
 *     process); another seed, others;
 *   - resume: a run resumed from its step-3 checkpoint takes exactly the uninterrupted run's
 *     examples at steps 4..8, and ends with its weights bit for bit;
 *   - bad settings: a replay share of the whole batch, a replay set as large as the task, a
 *     share without a set.
 */
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "core/alloc.h"
#include "toy_task.h"
#include "train/replay.h"
#include "train/trainer.h"

#define DIM 2
#define N_DATA 12
#define N_REPLAY 5
#define N_EX (N_DATA + N_REPLAY)
#define MAX_MICRO 256

/* The toy task, recording the examples of every micro-batch in the order loaded. */
typedef struct toy {
    toy_task base;
    int64_t seen[MAX_MICRO][16];
    int64_t n_seen;
} toy;

static mmt_status toy_load_batch(void *ctx, const int64_t *idx, int64_t n) {
    toy *t = ctx;
    if (t->n_seen < MAX_MICRO) memcpy(t->seen[t->n_seen], idx, (size_t)n * sizeof *idx);
    t->n_seen++;
    return toy_task_load_batch(&t->base, idx, n);
}

/* The replay examples lie 2 away from the data's. */
static void toy_init(toy *t, mmt_train_task *task) {
    memset(t, 0, sizeof *t);
    toy_task_init(&t->base, task, N_EX, DIM);
    for (int i = N_DATA; i < N_EX; i++)
        for (int d = 0; d < DIM; d++) t->base.x[i][d] += 2.0f;
    task->load_batch = toy_load_batch;
}

static char dir[128];

typedef struct run_args {
    const char *name;
    int64_t batch, per_batch, steps, epochs, as_ranks, save_every;
    uint64_t seed;
    const char *resume;
} run_args;

static mmt_status run_toy(const run_args *a, toy *t, mmt_train_result *r) {
    mmt_train_task task;
    toy_init(t, &task);
    mmt_train_settings s;
    mmt_train_settings_default(&s);
    char out[256];
    snprintf(out, sizeof out, "%s/%s", dir, a->name);
    s.out = out;
    s.resume = a->resume ? out : NULL;
    s.steps = a->steps;
    s.epochs = a->epochs;
    s.batch_size = a->batch;
    s.as_ranks = a->as_ranks;
    s.save_every = a->save_every;
    s.keep_checkpoints = 0;
    s.seed = a->seed;
    s.lr = 0.05;
    s.quiet = 1;
    s.replay_examples = a->per_batch > 0 ? N_REPLAY : 0;
    s.replay_per_batch = a->per_batch;
    return mmt_train_run(&task, &s, r);
}

static void test_stream_is_a_permutation_per_epoch(void) {
    static const int64_t sizes[] = {1, 2, 3, 17, 100, 1000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int64_t n = sizes[k];
        mmt_replay r = {50, n, 3, 42};
        int64_t *first = malloc((size_t)n * sizeof *first);
        char *mark = malloc((size_t)n);
        int differs = 0;
        for (int64_t e = 0; e < 3; e++) {
            memset(mark, 0, (size_t)n);
            for (int64_t i = 0; i < n; i++) {
                int64_t x = mmt_replay_at(&r, e * n + i) - 50;
                CHECK(x >= 0 && x < n);
                if (x < 0 || x >= n) continue;
                CHECK(!mark[x]);
                mark[x] = 1;
                if (e == 0) first[i] = x;
                else differs |= first[i] != x;
            }
        }
        if (n >= 17) CHECK_MSG(differs, "n %lld: every epoch in the same order", (long long)n);
        mmt_replay other = {50, n, 3, 43};
        int seed_differs = 0;
        for (int64_t i = 0; i < n; i++) seed_differs |= mmt_replay_at(&other, i) != mmt_replay_at(&r, i);
        if (n >= 17) CHECK(seed_differs);
        free(first);
        free(mark);
    }
    CHECK(mmt_replay_per_batch(0.25, 8) == 2 && mmt_replay_per_batch(0.1, 4) == 0 && mmt_replay_per_batch(0.125, 4) == 1);
    CHECK(mmt_replay_per_batch(0.5, 5) == 3); /* 2.5: half away from zero */
}

static void test_each_batch_mixes_at_the_ratio(void) {
    toy t;
    mmt_train_result r;
    run_args a = {"mix", 4, 1, 0, 3, 0, 0, 7, NULL}; /* 3 epochs of the data, 3 of 4 per batch */
    CHECK_OK(run_toy(&a, &t, &r));
    CHECK_MSG(r.steps_done == 12, "steps %lld (12 data examples, 3 a batch, 3 epochs)", (long long)r.steps_done);
    int seen_data[3][N_DATA] = {{0}}, seen_replay[N_REPLAY] = {0};
    for (int64_t m = 0; m < t.n_seen && m < MAX_MICRO; m++) {
        for (int i = 0; i < 3; i++) {
            CHECK(t.seen[m][i] < N_DATA);
            if (t.seen[m][i] < N_DATA) seen_data[m * 3 / N_DATA][t.seen[m][i]]++;
        }
        CHECK(t.seen[m][3] >= N_DATA && t.seen[m][3] < N_EX);
        if (t.seen[m][3] >= N_DATA && t.seen[m][3] < N_EX) seen_replay[t.seen[m][3] - N_DATA]++;
    }
    for (int e = 0; e < 3; e++)
        for (int i = 0; i < N_DATA; i++) CHECK_MSG(seen_data[e][i] == 1, "epoch %d: example %d seen %d times", e, i, seen_data[e][i]);
    /* 12 replay draws over 5 examples: two whole replay epochs and 2 more */
    for (int i = 0; i < N_REPLAY; i++) CHECK(seen_replay[i] == 2 || seen_replay[i] == 3);
    /* half of each batch */
    run_args b = {"half", 4, 2, 6, 0, 0, 0, 7, NULL};
    CHECK_OK(run_toy(&b, &t, &r));
    for (int64_t m = 0; m < t.n_seen; m++) CHECK(t.seen[m][0] < N_DATA && t.seen[m][1] < N_DATA && t.seen[m][2] >= N_DATA && t.seen[m][3] >= N_DATA);
}

static void test_deterministic_from_the_seed(void) {
    static toy a, b, c, d;
    mmt_train_result r;
    run_args x = {"det1", 4, 1, 10, 0, 0, 0, 5, NULL}, y = x, z = x, w = x;
    y.name = "det2";
    z.name = "det3";
    z.seed = 6;
    w.name = "det4";
    w.batch = 2;
    w.per_batch = 1;
    w.as_ranks = 2; /* 2 shares of 2: the same replay draws by micro-batch number */
    CHECK_OK(run_toy(&x, &a, &r));
    CHECK_OK(run_toy(&y, &b, &r));
    CHECK_OK(run_toy(&z, &c, &r));
    CHECK_OK(run_toy(&w, &d, &r));
    CHECK(a.n_seen == 10 && memcmp(a.seen, b.seen, sizeof a.seen) == 0 &&
          memcmp(a.base.w, b.base.w, DIM * sizeof(float)) == 0);
    CHECK(memcmp(a.seen, c.seen, sizeof a.seen) != 0);
    /* with shares, micro-batch q of the job draws replay positions q .. q + k - 1 */
    mmt_replay rp = {N_DATA, N_REPLAY, 1, 5};
    CHECK(d.n_seen == 20);
    for (int64_t q = 0; q < d.n_seen; q++) CHECK(d.seen[q][1] == mmt_replay_at(&rp, q));
}

static void test_resume_is_exact(void) {
    static toy whole, first, rest;
    mmt_train_result r;
    run_args a = {"whole", 4, 1, 8, 0, 0, 0, 11, NULL};
    CHECK_OK(run_toy(&a, &whole, &r));
    run_args b = {"split", 4, 1, 8, 0, 0, 3, 11, NULL};
    CHECK_OK(run_toy(&b, &first, &r)); /* checkpoints at 3 and 6 */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s/split/ckpt-6 %s/split/ckpt-8 %s/split/adapter", dir, dir, dir);
    CHECK(system(cmd) == 0);
    b.resume = "yes";
    CHECK_OK(run_toy(&b, &rest, &r));
    CHECK(r.steps_run == 5 && rest.n_seen == 5);
    CHECK(memcmp(rest.seen[0], whole.seen[3], 5 * sizeof whole.seen[0]) == 0);
    CHECK(memcmp(rest.base.w, whole.base.w, DIM * sizeof(float)) == 0);
}

static void test_bad_settings(void) {
    toy t;
    mmt_train_result r;
    run_args a = {"bad", 4, 4, 2, 0, 0, 0, 1, NULL}; /* the whole batch from the replay set */
    CHECK_FAILS(run_toy(&a, &t, &r), MMT_STATUS_INVALID_ARGUMENT, "replay");
    mmt_train_task task;
    toy_init(&t, &task);
    mmt_train_settings s;
    mmt_train_settings_default(&s);
    char out[256];
    snprintf(out, sizeof out, "%s/bad2", dir);
    s.out = out;
    s.quiet = 1;
    s.batch_size = 4;
    s.replay_examples = N_EX; /* no data left */
    s.replay_per_batch = 1;
    CHECK_FAILS(mmt_train_run(&task, &s, &r), MMT_STATUS_INVALID_ARGUMENT, "replay");
    s.replay_examples = 0; /* a share without a set */
    CHECK_FAILS(mmt_train_run(&task, &s, &r), MMT_STATUS_INVALID_ARGUMENT, "replay");
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/mmt_replay_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    RUN(test_stream_is_a_permutation_per_epoch);
    RUN(test_each_batch_mixes_at_the_ratio);
    RUN(test_deterministic_from_the_seed);
    RUN(test_resume_is_exact);
    RUN(test_bad_settings);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
    return check_summary();
}
