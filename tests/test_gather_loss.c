/* test_gather_loss.c — the contrastive loss over every rank's batch (--gather-with-grad):
 * nn_contrastive_loss_gathered (nn/loss.h) and the training view's gather_with_grad
 * (models/clip_train.h).
 *
 * Reference: nn_contrastive_loss on the whole R*B batch (itself transformers' clip_loss,
 * checked against it by test_train_parity), which is what open_clip computes on every rank
 * with gather_with_grad and local_loss off. Semantics checked: the loss is the global one on
 * every rank; each rank's embedding gradient is R x the global loss's gradient of its rows
 * (autograd through all_gather), so the sum over ranks / R is the global gradient; d scale is
 * the global one on every rank.
 *
 * Started by ctest (no launcher): simulated ranks R = 2, 3 in one process, then itself under
 * `mpirun -np 2` and `-np 3` (mpirun_self.h, as test_dist.c), where each rank holds its rows of
 * a known global batch and goes through the real communicator, at the loss level and through
 * the training view of the tiny fixture CLIP (fully trainable, logit_scale too; with and
 * without distillation, whose frozen-model embeddings are gathered as well). Also: with one
 * rank the view's gather_with_grad changes nothing (bitwise); an evaluation-mode forward does
 * not gather; ranks whose micro-batches differ in size all fail with one message, none hangs.
 * The multi-rank half is skipped (with a line) where mpirun was not found at build time.
 *
 * Tolerances:
 *   - loss, d scale: bitwise equal to the global batch's (the same code sums in the same order);
 *   - gradients / R against the global ones: |a - b| <= 1e-6 max |global| (float; exact for
 *     R = 2, one rounding of x R and / R for R = 3);
 *   - finite differences (central, step 1e-3 on an embedding element, 1e-2 on a scale of 10):
 *     |fd - g| <= 2e-3 + 1e-2 |g| (the float logits' rounding over 2e-3 plus the h^2 term);
 *   - the training view, R ranks of B pairs against one process with all R*B pairs:
 *     loss within 1e-6 relative; each tensor's gradient (sum over ranks / R) within
 *     1e-4 max |its gradient| + 1e-6 max |any gradient| (the towers run on different batch
 *     sizes, so the float sums need not be bitwise equal; the second term covers gradients
 *     that are zero in exact arithmetic, as the key projections' biases, where ~1e-8 of
 *     float noise remains).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "clip_fixture.h"
#include "core/arena.h"
#include "dist/comm.h"
#include "mpirun_self.h"
#include "nn/loss.h"
#include "rng.h"

#define GB 4    /* rows per rank at the loss level */
#define GP 8    /* embedding width at the loss level */
#define SCALE 10.0f

/* n rows (n, P) uniform then L2-normalised, as CLIP's embeddings. */
static void random_unit_rows(float *x, int64_t n, int64_t P) {
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t k = 0; k < P; k++) x[i * P + k] = rng_uniform(), s += (double)x[i * P + k] * x[i * P + k];
        for (int64_t k = 0; k < P; k++) x[i * P + k] = (float)(x[i * P + k] / sqrt(s));
    }
}

typedef struct global_batch {
    int64_t R, N, P;
    float *img, *txt, *teacher;   /* (N, P), (N, P), (N, N) */
    double loss, dscale;
    float *dimg, *dtxt;           /* (N, P) gradients of the global loss */
} global_batch;

/* The global batch (the same draws on every rank: the stream is seeded here) and its loss
 * and gradients through nn_contrastive_loss; distill: with a teacher at weight 0.5. */
static void global_make(global_batch *g, int64_t R, int distill, mmt_arena *arena) {
    rng_state = 0x5eed0000ull + (uint64_t)R * 16 + (uint64_t)distill;
    g->R = R, g->N = R * GB, g->P = GP;
    int64_t N = g->N;
    g->img = malloc((size_t)(N * GP) * sizeof(float));
    g->txt = malloc((size_t)(N * GP) * sizeof(float));
    g->dimg = calloc((size_t)(N * GP), sizeof(float));
    g->dtxt = calloc((size_t)(N * GP), sizeof(float));
    g->teacher = NULL;
    random_unit_rows(g->img, N, GP);
    random_unit_rows(g->txt, N, GP);
    if (distill) {
        g->teacher = malloc((size_t)(N * N) * sizeof(float));
        for (int64_t i = 0; i < N * N; i++) g->teacher[i] = 5.0f * rng_uniform();
    }
    g->dscale = 0;
    CHECK_OK(nn_contrastive_loss(g->img, g->txt, N, GP, SCALE, g->teacher, 0.5f, arena, &g->loss, g->dimg, g->dtxt,
                                 &g->dscale));
}

static void global_free(global_batch *g) {
    free(g->img), free(g->txt), free(g->teacher), free(g->dimg), free(g->dtxt);
}

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

/* Rank r's gathered loss: bitwise the global loss and d scale, gradients / R the global rows. */
static void check_rank(const global_batch *g, int64_t r, mmt_arena *arena, const char *what) {
    int64_t n = GB * GP, R = g->R;
    float *dimg = calloc((size_t)n, sizeof(float)), *dtxt = calloc((size_t)n, sizeof(float));
    double loss = NAN, ds = 0;
    CHECK_OK(nn_contrastive_loss_gathered(g->img, g->txt, R, r, GB, GP, SCALE, g->teacher, 0.5f, arena, &loss, dimg,
                                          dtxt, &ds));
    CHECK_MSG(memcmp(&loss, &g->loss, sizeof loss) == 0, "%s rank %lld: loss %.17g, global %.17g", what, (long long)r,
              loss, g->loss);
    CHECK_MSG(memcmp(&ds, &g->dscale, sizeof ds) == 0, "%s rank %lld: dscale %.17g, global %.17g", what, (long long)r,
              ds, g->dscale);
    double tol_i = 1e-6 * max_abs(g->dimg, g->N * GP), tol_t = 1e-6 * max_abs(g->dtxt, g->N * GP);
    double worst_i = 0, worst_t = 0;
    for (int64_t k = 0; k < n; k++) {
        worst_i = fmax(worst_i, fabs((double)dimg[k] / (double)R - g->dimg[r * n + k]));
        worst_t = fmax(worst_t, fabs((double)dtxt[k] / (double)R - g->dtxt[r * n + k]));
    }
    CHECK_MSG(worst_i <= tol_i && worst_t <= tol_t, "%s rank %lld: |dimg/R - global| %.3g (tol %.3g), dtxt %.3g (%.3g)",
              what, (long long)r, worst_i, tol_i, worst_t, tol_t);
    free(dimg);
    free(dtxt);
}

static void test_simulated_ranks(void) {
    mmt_arena arena;
    mmt_arena_init(&arena, 1 << 20);
    for (int64_t R = 2; R <= 3; R++)
        for (int distill = 0; distill < 2; distill++) {
            global_batch g;
            global_make(&g, R, distill, &arena);
            char what[64];
            snprintf(what, sizeof what, "R=%lld%s", (long long)R, distill ? " distill" : "");
            for (int64_t r = 0; r < R; r++) check_rank(&g, r, &arena, what);
            global_free(&g);
        }
    mmt_arena_free(&arena);
}

static double gathered_loss_at(const global_batch *g, int64_t r, float scale, mmt_arena *arena) {
    double loss = NAN;
    CHECK_OK(nn_contrastive_loss_gathered(g->img, g->txt, g->R, r, GB, GP, scale, g->teacher, 0.5f, arena, &loss, NULL,
                                          NULL, NULL));
    return loss;
}

/* Central differences of the gathered loss in every element of rank r's rows (img and txt)
 * and in the scale, against the returned gradient (/ R for the rows). */
static void test_finite_differences(void) {
    mmt_arena arena;
    mmt_arena_init(&arena, 1 << 20);
    const double h = 1e-3, hs = 1e-2;
    for (int64_t R = 2; R <= 3; R++)
        for (int distill = 0; distill < 2; distill++) {
            global_batch g;
            global_make(&g, R, distill, &arena);
            int64_t r = R - 1, n = GB * GP;
            float *dimg = calloc((size_t)n, sizeof(float)), *dtxt = calloc((size_t)n, sizeof(float));
            double loss, ds = 0, worst = 0;
            CHECK_OK(nn_contrastive_loss_gathered(g.img, g.txt, R, r, GB, GP, SCALE, g.teacher, 0.5f, &arena, &loss,
                                                  dimg, dtxt, &ds));
            for (int side = 0; side < 2; side++) {
                float *x = (side ? g.txt : g.img) + r * n, *grad = side ? dtxt : dimg;
                for (int64_t k = 0; k < n; k++) {
                    float keep = x[k];
                    x[k] = (float)(keep + h);
                    double up = gathered_loss_at(&g, r, SCALE, &arena);
                    x[k] = (float)(keep - h);
                    double down = gathered_loss_at(&g, r, SCALE, &arena);
                    x[k] = keep;
                    double fd = (up - down) / (2 * h), an = grad[k] / (double)R;
                    worst = fmax(worst, fabs(fd - an) / (2e-3 + 1e-2 * fabs(an)));
                }
            }
            CHECK_MSG(worst <= 1, "R=%lld%s: rows' gradient vs central differences, worst %.3g of the tolerance",
                      (long long)R, distill ? " distill" : "", worst);
            double fd = (gathered_loss_at(&g, r, (float)(SCALE + hs), &arena) -
                         gathered_loss_at(&g, r, (float)(SCALE - hs), &arena)) / (2 * hs);
            CHECK_MSG(fabs(fd - ds) <= 2e-3 + 1e-2 * fabs(ds), "R=%lld: dscale %.9g, central difference %.9g",
                      (long long)R, ds, fd);
            free(dimg);
            free(dtxt);
            global_free(&g);
        }
    mmt_arena_free(&arena);
}

static void test_bad_arguments(void) {
    mmt_arena arena;
    mmt_arena_init(&arena, 1 << 16);
    float x[GP] = {1};
    double loss;
    CHECK_FAILS(nn_contrastive_loss_gathered(x, x, 2, 2, 1, GP, SCALE, NULL, 0, &arena, &loss, NULL, NULL, NULL),
                MMT_STATUS_INVALID_ARGUMENT, "rank 2 of 2");
    CHECK_FAILS(nn_contrastive_loss_gathered(x, x, 0, 0, 1, GP, SCALE, NULL, 0, &arena, &loss, NULL, NULL, NULL),
                MMT_STATUS_INVALID_ARGUMENT, "gathered");
    mmt_arena_free(&arena);
}

/* ---- the training view ------------------------------------------------------------------- */

#define VIEW_B 2 /* pairs per rank through the view */
static const char *VIEW_TEXTS[] = {"a photo of a cat",  "a red car on a street", "two dogs in snow",
                                   "a bowl of soup",    "a man riding a horse",  "green hills at dawn"};

typedef struct view_batch {
    mmt_clip *model;
    int64_t N, L, S;
    float *pixels; /* (N, 3, S, S) */
    int32_t *ids;  /* (N, L) */
} view_batch;

/* The tiny-a fixture and a global batch of N pairs, the same on every rank. */
static int view_batch_load(view_batch *v, int64_t N) {
    memset(v, 0, sizeof *v);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/clip/tiny-a", MMT_FIXTURE_DIR);
    if (mmt_clip_load(dir, &v->model) != MMT_OK) {
        fprintf(stderr, "load %s: %s\n", dir, mmt_last_error());
        return 0;
    }
    const mmt_clip_config *c = mmt_clip_config_of(v->model);
    v->N = N, v->S = c->vision.image_size, v->L = c->text.max_positions;
    int64_t n = N * 3 * v->S * v->S;
    rng_state = 0x71e3ull;
    v->pixels = malloc((size_t)n * sizeof(float));
    v->ids = malloc((size_t)(N * v->L) * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) v->pixels[i] = 1.5f * rng_uniform();
    if (mmt_clip_tokenize(v->model, VIEW_TEXTS, N, 1, v->ids) != MMT_OK) {
        fprintf(stderr, "tokenize: %s\n", mmt_last_error());
        return 0;
    }
    return 1;
}

static void view_batch_free(view_batch *v) {
    mmt_clip_free(v->model);
    free(v->pixels);
    free(v->ids);
}

/* A fully trainable view (logit_scale too) with the given communicator and distillation. */
static mmt_clip_train *view_make(mmt_clip *model, mmt_comm *comm, int gather, float distill) {
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    o.train_logit_scale = 1;
    o.distill_weight = distill;
    o.comm = comm;
    o.gather_with_grad = gather;
    mmt_clip_train *ct = NULL;
    CHECK_OK(mmt_clip_train_create(model, &o, &ct));
    if (!ct) return NULL;
    CHECK_OK(mmt_clip_train_make_full(ct));
    /* move the projections off the base model's, so that distillation's KL term (against the
     * frozen base) is not zero; the same numbers in every view and on every rank */
    int64_t n;
    const mmt_nn_param *p = mmt_clip_train_params(ct, &n);
    for (int64_t i = 0; i < n; i++)
        if (strstr(p[i].name, "projection.weight"))
            for (int64_t k = 0; k < p[i].numel; k++) p[i].data[k] += 0.05f * (float)sin((double)k);
    return ct;
}

/* Rows [row0, row0 + B) of the batch: forward_loss, backward; gradients copied out. */
static float **view_step(mmt_clip_train *ct, const view_batch *v, int64_t row0, int64_t B, double *loss) {
    int64_t S = v->S;
    *loss = NAN;
    mmt_clip_train_zero_grad(ct);
    CHECK_OK(mmt_clip_train_forward_loss(ct, v->pixels + row0 * 3 * S * S, v->ids + row0 * v->L, B, v->L, 7, loss));
    CHECK_OK(mmt_clip_train_backward(ct));
    int64_t n;
    const mmt_nn_param *p = mmt_clip_train_params(ct, &n);
    float **g = calloc((size_t)n, sizeof *g);
    for (int64_t i = 0; i < n; i++) {
        g[i] = malloc((size_t)p[i].numel * sizeof(float));
        memcpy(g[i], p[i].grad, (size_t)p[i].numel * sizeof(float));
    }
    return g;
}

/* With the single world (one rank), gather_with_grad changes nothing: bitwise the same loss
 * and gradients as a view without a communicator. */
static void test_view_one_rank_unchanged(void) {
    view_batch v;
    if (!view_batch_load(&v, 3)) {
        CHECK(0);
        return;
    }
    for (int distill = 0; distill < 2; distill++) {
        mmt_clip_train *a = view_make(v.model, NULL, 0, distill ? 0.5f : 0);
        mmt_clip_train *b = view_make(v.model, mmt_comm_single(), 1, distill ? 0.5f : 0);
        if (!a || !b) {
            mmt_clip_train_free(a);
            mmt_clip_train_free(b);
            break;
        }
        double la, lb;
        float **ga = view_step(a, &v, 0, 3, &la), **gb = view_step(b, &v, 0, 3, &lb);
        CHECK(memcmp(&la, &lb, sizeof la) == 0);
        int64_t n;
        const mmt_nn_param *p = mmt_clip_train_params(a, &n);
        int64_t differ = 0;
        for (int64_t i = 0; i < n; i++) differ += memcmp(ga[i], gb[i], (size_t)p[i].numel * sizeof(float)) != 0;
        CHECK_MSG(differ == 0, "%lld of %lld gradients differ with one rank", (long long)differ, (long long)n);
        grads_free(ga, n);
        grads_free(gb, n);
        mmt_clip_train_free(a);
        mmt_clip_train_free(b);
    }
    view_batch_free(&v);
}

/* ---- under the launcher ---------------------------------------------------------------- */

/* The loss level through the real all-gather: each rank sends only its rows. */
static void test_ranks_loss(void) {
    mmt_comm *c = NULL;
    CHECK_OK(mmt_comm_world(&c));
    if (!c) return;
    int64_t R = mmt_comm_size(c), r = mmt_comm_rank(c), n = GB * GP;
    mmt_arena arena;
    mmt_arena_init(&arena, 1 << 20);
    for (int distill = 0; distill < 2; distill++) {
        global_batch g;
        global_make(&g, R, distill, &arena); /* every rank draws the same; only its rows are used below */
        float *mine = malloc((size_t)(2 * n) * sizeof(float)), *all = malloc((size_t)(2 * R * n) * sizeof(float));
        memcpy(mine, g.img + r * n, (size_t)n * sizeof(float));
        memcpy(mine + n, g.txt + r * n, (size_t)n * sizeof(float));
        CHECK_OK(mmt_comm_allgather(c, mine, 2 * n * (int64_t)sizeof(float), all));
        global_batch got = g;
        got.img = malloc((size_t)(R * n) * sizeof(float));
        got.txt = malloc((size_t)(R * n) * sizeof(float));
        for (int64_t q = 0; q < R; q++) {
            memcpy(got.img + q * n, all + 2 * q * n, (size_t)n * sizeof(float));
            memcpy(got.txt + q * n, all + (2 * q + 1) * n, (size_t)n * sizeof(float));
        }
        CHECK(memcmp(got.img, g.img, (size_t)(R * n) * sizeof(float)) == 0);
        char what[64];
        snprintf(what, sizeof what, "mpi R=%lld%s", (long long)R, distill ? " distill" : "");
        check_rank(&got, r, &arena, what);
        /* the sum over ranks of the local gradients (each at its rows) / R is the global one */
        float *sum = calloc((size_t)(2 * R * n), sizeof(float));
        double loss, ds = 0;
        CHECK_OK(nn_contrastive_loss_gathered(got.img, got.txt, R, r, GB, GP, SCALE, g.teacher, 0.5f, &arena, &loss,
                                              sum + r * n, sum + R * n + r * n, &ds));
        CHECK_OK(mmt_comm_allreduce_sum_f32(c, sum, 2 * R * n));
        CHECK_OK(mmt_comm_allreduce_sum_f64(c, &ds, 1));
        double worst = 0, tol = 1e-6 * fmax(max_abs(g.dimg, R * n), max_abs(g.dtxt, R * n));
        for (int64_t k = 0; k < R * n; k++) {
            worst = fmax(worst, fabs((double)sum[k] / (double)R - g.dimg[k]));
            worst = fmax(worst, fabs((double)sum[R * n + k] / (double)R - g.dtxt[k]));
        }
        CHECK_MSG(worst <= tol, "%s: sum over ranks / R vs global gradient %.3g (tol %.3g)", what, worst, tol);
        CHECK_NEAR(ds / (double)R, g.dscale, 1e-12 * fabs(g.dscale));
        free(sum);
        free(got.img);
        free(got.txt);
        free(mine);
        free(all);
        global_free(&g);
    }
    mmt_arena_free(&arena);
}

/* The training view: R ranks with VIEW_B pairs each against one process with all of them. */
static void test_ranks_view(void) {
    mmt_comm *c = NULL;
    CHECK_OK(mmt_comm_world(&c));
    if (!c) return;
    int64_t R = mmt_comm_size(c), r = mmt_comm_rank(c), N = R * VIEW_B;
    view_batch v;
    if (!view_batch_load(&v, N)) {
        CHECK(0);
        return;
    }
    for (int distill = 0; distill < 2; distill++) {
        float w = distill ? 0.5f : 0;
        mmt_clip_train *ref = view_make(v.model, NULL, 0, w), *dp = view_make(v.model, c, 1, w);
        if (!ref || !dp) {
            mmt_clip_train_free(ref);
            mmt_clip_train_free(dp);
            break;
        }
        double lg, lr;
        float **gg = view_step(ref, &v, 0, N, &lg), **gr = view_step(dp, &v, r * VIEW_B, VIEW_B, &lr);
        CHECK_MSG(fabs(lr - lg) <= 1e-6 * fabs(lg), "rank %lld%s: loss %.9g, one process %.9g", (long long)r,
                  distill ? " distill" : "", lr, lg);
        int64_t n;
        const mmt_nn_param *p = mmt_clip_train_params(dp, &n);
        int64_t bad = 0;
        double worst = 0, largest = 0;
        for (int64_t i = 0; i < n; i++) largest = fmax(largest, max_abs(gg[i], p[i].numel));
        for (int64_t i = 0; i < n; i++) {
            CHECK_OK(mmt_comm_allreduce_sum_f32(c, gr[i], p[i].numel));
            double tol = 1e-4 * max_abs(gg[i], p[i].numel) + 1e-6 * largest, e = 0;
            for (int64_t k = 0; k < p[i].numel; k++) e = fmax(e, fabs((double)gr[i][k] / (double)R - gg[i][k]));
            worst = fmax(worst, e / tol);
            if (e > tol) {
                if (bad++ < 3) fprintf(stderr, "rank %lld: %s: |sum/R - one process| %.3g, tol %.3g\n", (long long)r,
                                       p[i].name, e, tol);
            }
        }
        CHECK_MSG(bad == 0, "rank %lld%s: %lld of %lld gradients differ (worst %.3g of the tolerance)", (long long)r,
                  distill ? " distill" : "", (long long)bad, (long long)n, worst);
        /* evaluation mode does not gather: the rank's own pairs only */
        mmt_clip_train_set_eval(dp, 1);
        mmt_clip_train_set_eval(ref, 1);
        double le, lo;
        CHECK_OK(mmt_clip_train_forward_loss(dp, v.pixels + r * VIEW_B * 3 * v.S * v.S, v.ids + r * VIEW_B * v.L,
                                             VIEW_B, v.L, 7, &le));
        CHECK_OK(mmt_clip_train_forward_loss(ref, v.pixels + r * VIEW_B * 3 * v.S * v.S, v.ids + r * VIEW_B * v.L,
                                             VIEW_B, v.L, 7, &lo));
        CHECK(memcmp(&le, &lo, sizeof le) == 0);
        grads_free(gg, n);
        grads_free(gr, n);
        mmt_clip_train_free(ref);
        mmt_clip_train_free(dp);
    }
    /* micro-batches of different sizes: every rank fails with the same message, none hangs */
    mmt_clip_train *dp = view_make(v.model, c, 1, 0);
    if (dp) {
        double loss;
        int64_t B = r == 0 ? VIEW_B : 1;
        CHECK_FAILS(mmt_clip_train_forward_loss(dp, v.pixels, v.ids, B, v.L, 7, &loss), MMT_STATUS_INVALID_ARGUMENT,
                    "the same number on every rank");
        mmt_clip_train_free(dp);
    }
    view_batch_free(&v);
}

static int child(void) {
    RUN(test_ranks_loss);
    RUN(test_ranks_view);
    int failed = check_summary();
    mmt_comm_finalize();
    return failed;
}

int main(int argc, char **argv) {
    if (mmt_comm_launched()) return child();
    RUN(test_simulated_ranks);
    RUN(test_finite_differences);
    RUN(test_bad_arguments);
    RUN(test_view_one_rank_unchanged);
    mpirun_self_run("test_gather_loss", argv[0]);
    return check_summary();
}
