/*
 * test_ewc.c — Elastic Weight Consolidation (train/ewc.h):
 *   - the penalty (lambda/2) sum F (w - w*)^2 and the gradient it adds, against a direct
 *     float64 computation (relative 1e-12 on the penalty, 1 ulp of the float gradient), and
 *     the gradient against central finite differences of the penalty (relative 1e-6);
 *   - binding: a tensor without Fisher values, one of another shape, and Fisher values for a
 *     tensor the run does not train are errors naming the tensor;
 *   - the Fisher estimate on a task with a closed-form gradient (mean of 0.5 ||w - x_i||^2,
 *     gradient w - mean x): the mean over the micro-batches it computed of the squared
 *     gradient (1e-6), every whole micro-batch of a shuffle of the examples, theta* = w;
 *     with a previous state, F is summed and "tasks" counted;
 *   - the file round trip: ewc_fisher.safetensors written and read back bit for bit (folder
 *     or file path), and damaged files (a missing theta, a negative Fisher value, another
 *     metadata kind, no file) refused with their name;
 *   - in the trainer (settings.regularize): called once per optimizer step whatever the
 *     gradient accumulation and the number of shares (--as-ranks), on the averaged gradient:
 *     batch 4, 2 x 2 and 1 x 2 x 2 shares give the same weights (1e-6); the penalty is in
 *     metrics.jsonl.
 */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "core/alloc.h"
#include "core/safetensors.h"
#include "toy_task.h"
#include "train/ewc.h"
#include "train/trainer.h"

static char dir[128];

/* ---- the penalty -------------------------------------------------------------------------- */

static uint64_t rng = 12345;
static double unit(void) { /* [0, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* Two tensors (3, 4) and (5) with random weights, theta* and Fisher values. */
typedef struct two {
    float w1[12], g1[12], w2[5], g2[5];
    mmt_nn_param p[2];
    mmt_ewc_state *st;
} two;

static void two_make(two *t) {
    memset(t, 0, sizeof *t);
    t->p[0] = (mmt_nn_param){"a.weight", t->w1, t->g1, 2, {3, 4}, 12, 0};
    t->p[1] = (mmt_nn_param){"b.bias", t->w2, t->g2, 1, {5}, 5, 1};
    t->st = mmt_calloc(1, sizeof *t->st);
    t->st->tensors = mmt_calloc(2, sizeof *t->st->tensors);
    t->st->n = 2;
    t->st->tasks = 1;
    for (int i = 0; i < 2; i++) {
        mmt_ewc_tensor *e = &t->st->tensors[i];
        e->name = mmt_strdup(t->p[i].name);
        e->ndim = t->p[i].ndim;
        memcpy(e->shape, t->p[i].shape, sizeof e->shape);
        e->numel = t->p[i].numel;
        e->fisher = mmt_malloc((size_t)e->numel * sizeof(float));
        e->theta = mmt_malloc((size_t)e->numel * sizeof(float));
        for (int64_t k = 0; k < e->numel; k++) {
            e->fisher[k] = (float)(unit() * 3);
            e->theta[k] = (float)(unit() * 2 - 1);
            t->p[i].data[k] = (float)(unit() * 2 - 1);
            t->p[i].grad[k] = (float)(unit() - 0.5);
        }
    }
}

static double direct_penalty(const two *t, double lambda) {
    double sum = 0;
    for (int i = 0; i < 2; i++)
        for (int64_t k = 0; k < t->p[i].numel; k++) {
            double d = (double)t->p[i].data[k] - (double)t->st->tensors[i].theta[k];
            sum += (double)t->st->tensors[i].fisher[k] * d * d;
        }
    return 0.5 * lambda * sum;
}

static void test_penalty_and_gradient(void) {
    two t;
    two_make(&t);
    const double lambda = 37.5;
    mmt_ewc *e = NULL;
    CHECK_OK(mmt_ewc_create(t.st, "state", t.p, 2, lambda, &e));
    if (!e) return;
    double want = direct_penalty(&t, lambda), got = mmt_ewc_penalty(e);
    CHECK_NEAR(got, want, 1e-12 * fabs(want));
    float g0[2][12];
    for (int i = 0; i < 2; i++) memcpy(g0[i], t.p[i].grad, (size_t)t.p[i].numel * sizeof(float));
    double reported = 0;
    CHECK_OK(mmt_ewc_regularize(e, &reported));
    CHECK_NEAR(reported, want, 1e-12 * fabs(want));
    /* the gradient added: lambda F (w - w*), the task's gradient kept (+=) */
    for (int i = 0; i < 2; i++)
        for (int64_t k = 0; k < t.p[i].numel; k++) {
            double d = (double)t.p[i].data[k] - (double)t.st->tensors[i].theta[k];
            float expect = g0[i][k] + (float)(lambda * (double)t.st->tensors[i].fisher[k] * d);
            CHECK_NEAR(t.p[i].grad[k], expect, 2 * nextafterf(fabsf(expect), INFINITY) - 2 * fabsf(expect));
        }
    /* central finite differences of the penalty (it is quadratic: exact up to rounding) */
    double worst = 0;
    for (int i = 0; i < 2; i++)
        for (int64_t k = 0; k < t.p[i].numel; k++) {
            const float h = 1e-2f, x = t.p[i].data[k];
            t.p[i].data[k] = x + h;
            double up = mmt_ewc_penalty(e);
            t.p[i].data[k] = x - h;
            double down = mmt_ewc_penalty(e);
            t.p[i].data[k] = x;
            double fd = (up - down) / ((double)(x + h) - (double)(x - h));
            double analytic = (double)t.p[i].grad[k] - (double)g0[i][k];
            double rel = fabs(fd - analytic) / fmax(1e-3, fabs(analytic));
            if (rel > worst) worst = rel;
        }
    CHECK_MSG(worst < 1e-6, "finite differences: worst relative error %g", worst);
    /* lambda 0 adds nothing */
    mmt_ewc *zero = NULL;
    CHECK_OK(mmt_ewc_create(t.st, "state", t.p, 2, 0, &zero));
    float before = t.p[0].grad[3];
    CHECK_OK(mmt_ewc_regularize(zero, &reported));
    CHECK(reported == 0 && t.p[0].grad[3] == before);
    mmt_ewc_free(zero);
    CHECK_FAILS(mmt_ewc_create(t.st, "state", t.p, 2, -1, &zero), MMT_STATUS_INVALID_ARGUMENT, "--ewc");
    CHECK(zero == NULL);
    mmt_ewc_free(e);
    mmt_ewc_state_free(t.st);
}

static void test_binding_errors(void) {
    two t;
    two_make(&t);
    mmt_ewc *e = NULL;
    /* the run trains a tensor the state lacks */
    mmt_nn_param extra[3] = {t.p[0], t.p[1], {"c.weight", t.w2, t.g2, 1, {5}, 5, 0}};
    CHECK_FAILS(mmt_ewc_create(t.st, "prev/ewc_fisher.safetensors", extra, 3, 1, &e), MMT_STATUS_INVALID_ARGUMENT,
                "has no Fisher values for c.weight");
    /* the state has a tensor the run does not train */
    CHECK_FAILS(mmt_ewc_create(t.st, "prev", t.p, 1, 1, &e), MMT_STATUS_INVALID_ARGUMENT, "b.bias, which this run does not train");
    /* another shape */
    mmt_nn_param other[2] = {t.p[0], t.p[1]};
    other[0].shape[0] = 4;
    other[0].shape[1] = 3;
    CHECK_FAILS(mmt_ewc_create(t.st, "prev", other, 2, 1, &e), MMT_STATUS_INVALID_ARGUMENT, "a.weight");
    CHECK(e == NULL);
    mmt_ewc_state_free(t.st);
}

/* ---- the file ------------------------------------------------------------------------------- */

static void test_file_round_trip(void) {
    two t;
    two_make(&t);
    t.st->tasks = 3;
    t.st->micro_batches = 7;
    t.st->batch_size = 16;
    char path[256];
    snprintf(path, sizeof path, "%s/ewc_fisher.safetensors", dir);
    CHECK_OK(mmt_ewc_state_save(t.st, path));
    mmt_ewc_state *back = NULL, *by_dir = NULL;
    CHECK_OK(mmt_ewc_state_load(path, &back));
    CHECK_OK(mmt_ewc_state_load(dir, &by_dir)); /* the folder holding it */
    for (int pass = 0; pass < 2; pass++) {
        mmt_ewc_state *b = pass ? by_dir : back;
        if (!b) continue;
        CHECK(b->n == 2 && b->tasks == 3 && b->micro_batches == 7 && b->batch_size == 16);
        for (int64_t i = 0; i < b->n && i < 2; i++) {
            const mmt_ewc_tensor *x = NULL;
            for (int k = 0; k < 2; k++)
                if (!strcmp(t.st->tensors[k].name, b->tensors[i].name)) x = &t.st->tensors[k];
            CHECK(x && x->ndim == b->tensors[i].ndim && x->numel == b->tensors[i].numel);
            if (!x) continue;
            CHECK(memcmp(x->shape, b->tensors[i].shape, sizeof x->shape) == 0);
            CHECK(memcmp(x->fisher, b->tensors[i].fisher, (size_t)x->numel * sizeof(float)) == 0);
            CHECK(memcmp(x->theta, b->tensors[i].theta, (size_t)x->numel * sizeof(float)) == 0);
        }
    }
    mmt_ewc_state_free(back);
    mmt_ewc_state_free(by_dir);
    /* damaged files */
    mmt_ewc_state *bad = NULL;
    char other[256];
    snprintf(other, sizeof other, "%s/missing", dir);
    CHECK_FAILS(mmt_ewc_state_load(other, &bad), MMT_STATUS_NOT_FOUND, "--save-fisher");
    snprintf(other, sizeof other, "%s/bad.safetensors", dir);
    int64_t shape[1] = {2};
    float v[2] = {1, 2}, neg[2] = {1, -1};
    const char *meta[] = {"mmtune", "ewc"};
    mmt_st_write_tensor one[1] = {{"fisher.x", MMT_DTYPE_F32, 1, shape, v}};
    CHECK_OK(mmt_safetensors_write(other, one, 1, meta, 1));
    CHECK_FAILS(mmt_ewc_state_load(other, &bad), MMT_STATUS_BAD_FORMAT, "no theta.x");
    mmt_st_write_tensor two_t[2] = {{"fisher.x", MMT_DTYPE_F32, 1, shape, neg}, {"theta.x", MMT_DTYPE_F32, 1, shape, v}};
    CHECK_OK(mmt_safetensors_write(other, two_t, 2, meta, 1));
    CHECK_FAILS(mmt_ewc_state_load(other, &bad), MMT_STATUS_BAD_FORMAT, "fisher.x[1]");
    two_t[0].data = v;
    CHECK_OK(mmt_safetensors_write(other, two_t, 2, NULL, 0));
    CHECK_FAILS(mmt_ewc_state_load(other, &bad), MMT_STATUS_BAD_FORMAT, "not an EWC state");
    CHECK_OK(mmt_safetensors_write(other, two_t, 2, meta, 1)); /* now a good one */
    CHECK_OK(mmt_ewc_state_load(other, &bad));
    CHECK(bad && bad->n == 1 && bad->tasks == 1 && bad->tensors[0].theta[1] == 2);
    mmt_ewc_state_free(bad);
    mmt_ewc_state_free(t.st);
}

/* ---- the estimate ------------------------------------------------------------------------- */

#define DIM 3
#define N_EX 10

/* The toy task, recording the micro-batches forward saw; it saves and loads nothing. */
typedef struct toy {
    toy_task base;
    int64_t seen[64][8], n_seen;
} toy;

static mmt_status toy_forward(void *ctx, uint64_t seed, double *loss) {
    toy *t = ctx;
    for (int64_t i = 0; i < t->base.nb && i < 8; i++)
        if (t->n_seen < 64) t->seen[t->n_seen][i] = t->base.batch[i];
    t->n_seen++;
    return toy_task_forward(&t->base, seed, loss);
}

static void toy_init(toy *t, mmt_train_task *task) {
    memset(t, 0, sizeof *t);
    toy_task_init(&t->base, task, N_EX, DIM);
    for (int d = 0; d < DIM; d++) t->base.w[d] = 0.25f * (float)d;
    task->forward_loss = toy_forward;
    task->save = toy_task_keep_nothing;
    task->load = toy_task_keep_nothing;
}

/* F from the micro-batches the task saw: the mean of (w - mean_b x)^2. */
static void expected_fisher(const toy *t, int64_t B, double *f) {
    memset(f, 0, DIM * sizeof *f);
    for (int64_t j = 0; j < t->n_seen; j++)
        for (int d = 0; d < DIM; d++) {
            double m = 0;
            for (int64_t i = 0; i < B; i++) m += t->base.x[t->seen[j][i]][d];
            double g = (double)(float)(t->base.w[d] - m / (double)B);
            f[d] += g * g / (double)t->n_seen;
        }
}

static void test_estimate(void) {
    toy t;
    mmt_train_task task;
    toy_init(&t, &task);
    mmt_ewc_estimate_options o = {3, 0, 0, 7, NULL, NULL};
    mmt_ewc_state *st = NULL;
    CHECK_OK(mmt_ewc_estimate(&task, &o, &st));
    if (!st) return;
    CHECK(st->n == 1 && st->tasks == 1 && st->micro_batches == 3 && st->batch_size == 3 && t.n_seen == 3);
    /* three whole micro-batches of distinct examples */
    int used[N_EX] = {0};
    for (int64_t j = 0; j < t.n_seen; j++)
        for (int i = 0; i < 3; i++) used[t.seen[j][i]]++;
    for (int i = 0; i < N_EX; i++) CHECK(used[i] <= 1);
    double f[DIM];
    expected_fisher(&t, 3, f);
    for (int d = 0; d < DIM; d++) {
        CHECK_NEAR(st->tensors[0].fisher[d], f[d], 1e-6 * fmax(1, f[d]));
        CHECK(st->tensors[0].theta[d] == t.base.w[d]);
    }
    /* the same seed: the same micro-batches; n_examples limits them to the first examples */
    toy u;
    mmt_train_task task_u;
    toy_init(&u, &task_u);
    mmt_ewc_state *again = NULL;
    CHECK_OK(mmt_ewc_estimate(&task_u, &o, &again));
    CHECK(again && memcmp(again->tensors[0].fisher, st->tensors[0].fisher, DIM * sizeof(float)) == 0);
    mmt_ewc_state_free(again);
    toy_init(&u, &task_u);
    mmt_ewc_estimate_options first6 = {3, 6, 0, 7, NULL, NULL};
    CHECK_OK(mmt_ewc_estimate(&task_u, &first6, &again));
    CHECK(again && again->micro_batches == 2);
    for (int64_t j = 0; j < u.n_seen; j++)
        for (int i = 0; i < 3; i++) CHECK(u.seen[j][i] < 6);
    mmt_ewc_state_free(again);
    /* a second task: the Fisher summed, theta* the current weights, tasks counted */
    toy_init(&u, &task_u);
    for (int d = 0; d < DIM; d++) u.base.w[d] = -1.0f + (float)d;
    mmt_ewc_estimate_options o2 = {5, 0, 1, 9, NULL, st};
    mmt_ewc_state *sum = NULL;
    CHECK_OK(mmt_ewc_estimate(&task_u, &o2, &sum));
    if (sum) {
        CHECK(sum->tasks == 2 && sum->micro_batches == 1 && u.n_seen == 1); /* max_batches 1 */
        double f2[DIM];
        expected_fisher(&u, 5, f2);
        for (int d = 0; d < DIM; d++) {
            CHECK_NEAR(sum->tensors[0].fisher[d], f2[d] + st->tensors[0].fisher[d], 1e-6 * fmax(1, f2[d]));
            CHECK(sum->tensors[0].theta[d] == u.base.w[d]);
        }
    }
    mmt_ewc_state_free(sum);
    /* a previous state for other tensors is refused */
    st->tensors[0].shape[0] = DIM + 1;
    CHECK_FAILS(mmt_ewc_estimate(&task_u, &o2, &sum), MMT_STATUS_INVALID_ARGUMENT, "w");
    mmt_ewc_state_free(st);
}

/* ---- in the trainer ------------------------------------------------------------------------ */

typedef struct counted {
    mmt_ewc *ewc;
    int64_t calls;
} counted;

static mmt_status counted_regularize(void *user, double *penalty) {
    counted *c = user;
    c->calls++;
    return mmt_ewc_regularize(c->ewc, penalty);
}

static void run_with_ewc(int64_t batch, int64_t accum, int64_t as_ranks, float *w_out, int64_t *calls) {
    toy t;
    mmt_train_task task;
    toy_init(&t, &task);
    /* theta* away from the start, a strong pull */
    mmt_ewc_state st = {0};
    mmt_ewc_tensor tensor = {"w", 1, {DIM}, DIM, (float[DIM]){4, 0.5f, 2}, (float[DIM]){1, -1, 0.5f}};
    st.tensors = &tensor;
    st.n = 1;
    st.tasks = 1;
    counted c = {NULL, 0};
    CHECK_OK(mmt_ewc_create(&st, "toy", t.base.params, 1, 3.0, &c.ewc));
    mmt_train_settings s;
    mmt_train_settings_default(&s);
    char out[256];
    snprintf(out, sizeof out, "%s/run_%lld_%lld_%lld", dir, (long long)batch, (long long)accum, (long long)as_ranks);
    s.out = out;
    s.steps = 5;
    s.batch_size = batch;
    s.grad_accum = accum;
    s.as_ranks = as_ranks;
    s.lr = 0.05;
    s.quiet = 1;
    s.max_grad_norm = 0;
    s.weight_decay = 0;
    s.regularize = counted_regularize;
    s.regularize_user = &c;
    mmt_train_result r;
    CHECK_MSG(mmt_train_run(&task, &s, &r) == MMT_OK, "%s", mmt_last_error());
    *calls = c.calls;
    memcpy(w_out, t.base.w, DIM * sizeof *w_out);
    mmt_ewc_free(c.ewc);
}

static void test_trainer_adds_it_once_per_step(void) {
    float w[3][DIM];
    int64_t calls[3];
    run_with_ewc(4, 1, 0, w[0], &calls[0]);
    run_with_ewc(2, 2, 0, w[1], &calls[1]);
    run_with_ewc(1, 2, 2, w[2], &calls[2]);
    for (int k = 0; k < 3; k++) CHECK_MSG(calls[k] == 5, "run %d: %lld calls for 5 steps", k, (long long)calls[k]);
    for (int k = 1; k < 3; k++)
        for (int d = 0; d < DIM; d++) CHECK_NEAR(w[k][d], w[0][d], 1e-6);
    char path[256];
    snprintf(path, sizeof path, "%s/run_4_1_0/metrics.jsonl", dir);
    char *m = check_read_file(path, NULL);
    CHECK(m && strstr(m, "\"penalty\": "));
    free(m);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/mmt_ewc_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    RUN(test_penalty_and_gradient);
    RUN(test_binding_errors);
    RUN(test_file_round_trip);
    RUN(test_estimate);
    RUN(test_trainer_adds_it_once_per_step);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
    return check_summary();
}
