/*
 * test_linear_groups.c — the mixed-batch forward of nn.Linear (nn/linear.h row groups): the
 * base product once over every row, then each group's adapter (LoRA of any rank, IA3 on the
 * output or the input) on its own rows. Small groups run side by side on the threads, a
 * group with more than its share of the rows alone with every thread (linear.c).
 *
 * References and tolerances, on the reference table and every fast table this CPU has, with
 * 1, 2 and 3 OpenMP threads where OpenMP is built in:
 *   - bitwise: the same products done one group after another on the calling thread (the
 *     base forward of a plain layer, then per group: IA3-input's own base product, the two
 *     LoRA products through ops->gemm, IA3-output's scaling), so no row is missed, written
 *     twice or raced on, and the thread count changes no bit;
 *   - within 1e-5 of max(1, |y|): a plain double-precision loop over the same formula
 *     (y = x W^T + b; LoRA adds scaling (x A^T) B^T; IA3 scales the output or the input).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/arena.h"
#include "nn/linear.h"
#include "ops/ops.h"
#include "ops_fixture.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define IN 96
#define OUT 80
#define PER 5   /* rows per sequence */
#define SEQS 12 /* sequences in the batch */
#define M (PER * SEQS)
#define N_GROUPS 6

typedef struct group_spec {
    int seq0, n_seq, r;      /* r 0: no LoRA */
    mmt_ia3_mode ia3;
} group_spec;

/* Sequence 11 belongs to no group (the base alone). The first group has 7 of the 12
 * sequences: more than its share at 2 or 3 threads, so it takes every thread. */
static const group_spec specs[N_GROUPS] = {
    {0, 7, 4, MMT_IA3_NONE}, {7, 1, 8, MMT_IA3_NONE}, {8, 1, 0, MMT_IA3_OUTPUT},
    {9, 1, 2, MMT_IA3_INPUT}, {10, 1, 1, MMT_IA3_OUTPUT}, {6, 0, 3, MMT_IA3_NONE}, /* an empty group */
};

static float w[OUT * IN], bias[OUT], x[M * IN];
static float lora_a[N_GROUPS][8 * IN], lora_b[N_GROUPS][OUT * 8], ia3[N_GROUPS][IN > OUT ? IN : OUT];
static mmt_lora loras[N_GROUPS];
static mmt_linear_group groups[N_GROUPS];

static void fill(float *p, int64_t n, float scale) {
    float *r = random_floats(n, scale);
    memcpy(p, r, (size_t)n * sizeof(float));
    free(r);
}

static void setup(void) {
    fill(w, OUT * IN, 0.3f);
    fill(bias, OUT, 0.5f);
    fill(x, M * IN, 1.0f);
    for (int g = 0; g < N_GROUPS; g++) {
        const group_spec *s = &specs[g];
        fill(lora_a[g], 8 * IN, 0.3f);
        fill(lora_b[g], OUT * 8, 0.3f);
        for (int j = 0; j < (IN > OUT ? IN : OUT); j++) ia3[g][j] = 0.5f + (float)((j * 7 + g * 3) % 11) / 10.0f;
        loras[g] = (mmt_lora){.r = s->r, .scaling = 2.0f / (float)(s->r ? s->r : 1), .a = lora_a[g], .b = lora_b[g]};
        groups[g] = (mmt_linear_group){.seq0 = s->seq0, .n_seq = s->n_seq, .lora = s->r ? &loras[g] : NULL,
                                       .ia3 = s->ia3 != MMT_IA3_NONE ? ia3[g] : NULL, .ia3_mode = s->ia3};
    }
}

/* The grouped layer's products, one group after another on this thread. */
static void serial_expected(const mmt_ops *ops, mmt_arena *arena, float *y) {
    mmt_linear plain = {.in = IN, .out = OUT, .w = w, .b = bias};
    CHECK_OK(nn_linear_forward(&plain, ops, arena, y, x, M, 0));
    for (int g = 0; g < N_GROUPS; g++) {
        const mmt_linear_group *gr = &groups[g];
        int64_t r0 = gr->seq0 * PER, m = gr->n_seq * PER;
        const float *xg = x + r0 * IN;
        float *yg = y + r0 * OUT;
        static float xs[M * IN], xa[M * 8];
        if (gr->ia3 && gr->ia3_mode == MMT_IA3_INPUT) {
            for (int64_t i = 0; i < m * IN; i++) xs[i] = xg[i] * gr->ia3[i % IN];
            CHECK_OK(nn_linear_forward(&plain, ops, arena, yg, xs, m, 0));
            xg = xs;
        }
        if (gr->lora) {
            ops->gemm(0, 1, m, gr->lora->r, IN, 1.0f, xg, IN, gr->lora->a, IN, 0.0f, xa, gr->lora->r);
            ops->gemm(0, 1, m, OUT, gr->lora->r, gr->lora->scaling, xa, gr->lora->r, gr->lora->b, gr->lora->r, 1.0f, yg, OUT);
        }
        if (gr->ia3 && gr->ia3_mode == MMT_IA3_OUTPUT)
            for (int64_t i = 0; i < m * OUT; i++) yg[i] *= gr->ia3[i % OUT];
    }
}

/* The formula in doubles, row by row. */
static void naive(double *y) {
    for (int64_t i = 0; i < M; i++) {
        const mmt_linear_group *gr = NULL;
        for (int g = 0; g < N_GROUPS; g++)
            if (i >= groups[g].seq0 * PER && i < (groups[g].seq0 + groups[g].n_seq) * PER) gr = &groups[g];
        double xi[IN];
        for (int j = 0; j < IN; j++)
            xi[j] = x[i * IN + j] * (gr && gr->ia3 && gr->ia3_mode == MMT_IA3_INPUT ? gr->ia3[j] : 1.0f);
        double xa[8] = {0};
        for (int k = 0; gr && gr->lora && k < gr->lora->r; k++)
            for (int j = 0; j < IN; j++) xa[k] += xi[j] * gr->lora->a[k * IN + j];
        for (int o = 0; o < OUT; o++) {
            double v = bias[o];
            for (int j = 0; j < IN; j++) v += xi[j] * w[o * IN + j];
            for (int k = 0; gr && gr->lora && k < gr->lora->r; k++) v += gr->lora->scaling * xa[k] * gr->lora->b[o * gr->lora->r + k];
            if (gr && gr->ia3 && gr->ia3_mode == MMT_IA3_OUTPUT) v *= gr->ia3[o];
            y[i * OUT + o] = v;
        }
    }
}

static void check_table(const mmt_ops *ops) {
    mmt_arena arena;
    mmt_arena_init(&arena, 1 << 20);
    float *want = guarded_alloc(M * OUT), *got = guarded_alloc(M * OUT);
    static double exact[M * OUT];
    naive(exact);
    serial_expected(ops, &arena, want);
    mmt_arena_reset(&arena);
    double worst = 0;
    for (int64_t i = 0; i < M * OUT; i++) worst = fmax(worst, fabs(want[i] - exact[i]) / fmax(1.0, fabs(exact[i])));
    CHECK_MSG(worst < 1e-5, "%s: the serial products are %g from the formula", ops->name, worst);
    static const int thread_counts[] = {1, 2, 3};
    for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
#ifdef _OPENMP
        int saved = omp_get_max_threads();
        omp_set_num_threads(thread_counts[t]);
#else
        if (t) break;
#endif
        mmt_linear l = {.in = IN, .out = OUT, .w = w, .b = bias, .groups = groups, .n_groups = N_GROUPS, .group_batch = SEQS};
        CHECK_OK(nn_linear_forward(&l, ops, &arena, got, x, M, 0));
        mmt_arena_reset(&arena);
#ifdef _OPENMP
        omp_set_num_threads(saved);
#endif
        int64_t bad = -1;
        for (int64_t i = 0; i < M * OUT && bad < 0; i++)
            if (memcmp(&got[i], &want[i], sizeof(float))) bad = i;
        CHECK_MSG(bad < 0, "%s, %d threads: row %lld column %lld is %.9g, serially %.9g", ops->name, thread_counts[t],
                  (long long)(bad / OUT), (long long)(bad % OUT), bad >= 0 ? got[bad] : 0.0, bad >= 0 ? want[bad] : 0.0);
        CHECK(guarded_ok(got, M * OUT));
    }
    /* a training forward refuses groups */
    mmt_linear l = {.in = IN, .out = OUT, .w = w, .b = bias, .groups = groups, .n_groups = N_GROUPS, .group_batch = SEQS};
    CHECK(nn_linear_forward(&l, ops, &arena, got, x, M, 1) == MMT_STATUS_UNSUPPORTED);
    guarded_free(want), guarded_free(got);
    mmt_arena_free(&arena);
}

static void test_reference_table(void) { check_table(mmt_ops_ref()); }
static void test_fast_table(void) { check_table(fast_ops()); }

int main(void) {
    setup();
    RUN(test_reference_table);
    for (int t = 0; t < FAST_TABLES; t++)
        if (fast_table_use(t)) RUN(test_fast_table);
    return check_summary();
}
