/*
 * test_block_memory.c — a training forward with a temporaries arena (mmt_block.scratch) keeps
 * only what backward reads, and backward gives bitwise the same output and gradients as a
 * forward that kept everything.
 *
 * Shapes: C 16, 4 heads, MLP 32, B 2 rows of T 5 positions, random weights ~0.3, inputs ~1.
 * Cases: LoRA (r 2, dropout 0.1) on q and v of a frozen base (QLoRA's and the demo's case),
 * LoRA on all six linears, LoRA training only B, IA3 (k, v, fc2 input), full fine-tuning
 * (weights and layernorms), each pre-LN and post-LN. For each:
 *   - x_out, the input gradient and every parameter gradient equal to the bit;
 *   - the forward's arena holds exactly the floats the rule in block.h leaves out fewer:
 *     the two layernorm outputs (pre-LN), the attention output when out_proj does not read
 *     its input, the activation when fc2 does not (each N*C or N*I floats);
 *   - the temporaries arena is back where it was after forward.
 * With selective recomputation (mmt_block.recompute) the results are the same bits again and
 * the arena holds B*H*T*T fewer floats (the probabilities), and N*I fewer (f) when fc1 is a
 * plain frozen linear (LoRA q,v and IA3 here).
 * Breaking the recomputation (skipping it, or recomputing from the wrong tensor) makes the
 * gradients differ.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/arena.h"
#include "nn/block.h"
#include "ops/ops.h"
#include "rng.h"

enum { C = 16, H = 4, I = 32, B = 2, T = 5, N = B * T, R = 2 };

static const int64_t SIZES[12] = {C * C, C, C * C, C, C * C, C, C * C, C, I * C, I, C * I, C};
static const int64_t IN[6] = {C, C, C, C, C, I}, OUT[6] = {C, C, C, C, I, C};

typedef enum { LORA_QV, LORA_ALL, LORA_B_ONLY, IA3, FULL, N_CASES } test_case;
static const char *const CASE_NAMES[N_CASES] = {"LoRA q,v", "LoRA all", "LoRA B only", "IA3", "full"};

typedef struct params {
    float *w[12], *ln[4], *dw[12], *dln[4];
    float *la[6], *lb[6], *dla[6], *dlb[6], *ia3[6], *dia3[6];
    mmt_lora lora[6];
} params;

static float *zeros(int64_t n) { return calloc((size_t)n, sizeof(float)); }

static void params_make(params *p) {
    memset(p, 0, sizeof *p);
    for (int j = 0; j < 12; j++) p->w[j] = random_floats(SIZES[j], 0.3f), p->dw[j] = zeros(SIZES[j]);
    for (int j = 0; j < 4; j++) p->ln[j] = random_floats(C, 0.2f), p->dln[j] = zeros(C);
    for (int64_t j = 0; j < C; j++) p->ln[0][j] += 1.0f, p->ln[2][j] += 1.0f;
    for (int j = 0; j < 6; j++) {
        p->la[j] = random_floats(R * IN[j], 0.3f), p->lb[j] = random_floats(OUT[j] * R, 0.3f);
        p->dla[j] = zeros(R * IN[j]), p->dlb[j] = zeros(OUT[j] * R);
        int64_t n = j == 5 ? IN[j] : OUT[j];
        p->ia3[j] = random_floats(n, 0.3f), p->dia3[j] = zeros(n);
        for (int64_t i = 0; i < n; i++) p->ia3[j][i] += 1.0f;
    }
}

static void params_zero_grads(params *p) {
    for (int j = 0; j < 12; j++) memset(p->dw[j], 0, (size_t)SIZES[j] * sizeof(float));
    for (int j = 0; j < 4; j++) memset(p->dln[j], 0, C * sizeof(float));
    for (int j = 0; j < 6; j++) {
        memset(p->dla[j], 0, (size_t)(R * IN[j]) * sizeof(float));
        memset(p->dlb[j], 0, (size_t)(OUT[j] * R) * sizeof(float));
        memset(p->dia3[j], 0, (size_t)(j == 5 ? IN[j] : OUT[j]) * sizeof(float));
    }
}

static void params_free(params *p) {
    for (int j = 0; j < 12; j++) free(p->w[j]), free(p->dw[j]);
    for (int j = 0; j < 4; j++) free(p->ln[j]), free(p->dln[j]);
    for (int j = 0; j < 6; j++)
        free(p->la[j]), free(p->lb[j]), free(p->dla[j]), free(p->dlb[j]), free(p->ia3[j]), free(p->dia3[j]);
}

static void bind(params *p, mmt_block *y, test_case k) {
    mmt_block_weights w = {p->w[0], p->w[1], p->w[2], p->w[3], p->w[4], p->w[5],  p->w[6], p->w[7],
                           p->w[8], p->w[9], p->w[10], p->w[11], p->ln[0], p->ln[1], p->ln[2], p->ln[3], {0}, {0}};
    nn_block_init(y, &w, C, I);
    mmt_linear *lin[6] = {&y->q, &y->k, &y->v, &y->o, &y->fc1, &y->fc2};
    for (int j = 0; j < 6; j++) {
        int lora = k == LORA_ALL || k == LORA_B_ONLY || (k == LORA_QV && (j == 0 || j == 2));
        if (lora) {
            p->lora[j] = (mmt_lora){.r = R, .scaling = 2.0f, .dropout = 0.1f, .a = p->la[j], .b = p->lb[j],
                                    .da = k == LORA_B_ONLY ? NULL : p->dla[j], .db = p->dlb[j]};
            lin[j]->lora = &p->lora[j];
        }
        if (k == IA3 && (j == 1 || j == 2 || j == 5)) {
            lin[j]->ia3_mode = j == 5 ? MMT_IA3_INPUT : MMT_IA3_OUTPUT;
            lin[j]->ia3 = p->ia3[j];
            lin[j]->dia3 = p->dia3[j];
        }
        if (k == FULL) lin[j]->dw = p->dw[2 * j], lin[j]->db = p->dw[2 * j + 1];
    }
    if (k == FULL) y->dln1_w = p->dln[0], y->dln1_b = p->dln[1], y->dln2_w = p->dln[2], y->dln2_b = p->dln[3];
}

/* Every gradient of the case, flattened, in `out` (the floats written). */
static int64_t gather_grads(const params *p, float *out) {
    int64_t n = 0;
#define PUT(ptr, len) (memcpy(out + n, (ptr), (size_t)(len) * sizeof(float)), n += (len))
    for (int j = 0; j < 12; j++) PUT(p->dw[j], SIZES[j]);
    for (int j = 0; j < 4; j++) PUT(p->dln[j], C);
    for (int j = 0; j < 6; j++) {
        PUT(p->dla[j], R * IN[j]);
        PUT(p->dlb[j], OUT[j] * R);
        PUT(p->dia3[j], j == 5 ? IN[j] : OUT[j]);
    }
#undef PUT
    return n;
}

typedef struct outcome {
    float x_out[N * C], dx[N * C], grads[20000];
    int64_t n_grads;
    size_t saved_bytes;
} outcome;

/* One forward + backward of case k; with_tmp: temporaries in an arena of their own;
 * recompute: selective recomputation too (block.h). */
static void run(params *p, test_case k, int post, int with_tmp, int recompute, const float *x, const float *dy,
                outcome *o) {
    const mmt_ops *ops = mmt_ops_cpu();
    mmt_block_config bc = {.hidden = C, .intermediate = I, .heads = H, .eps = 1e-5f, .act = MMT_BLOCK_QUICK_GELU,
                           .causal = post, .post_ln = post};
    mmt_arena step, tmp, back;
    mmt_arena_init(&step, (size_t)1 << 16);
    mmt_arena_init(&tmp, (size_t)1 << 16);
    mmt_arena_init(&back, (size_t)1 << 16);
    mmt_block y;
    bind(p, &y, k);
    params_zero_grads(p);
    y.x_in = (float *)x;
    y.scratch = with_tmp ? &tmp : NULL;
    y.recompute = recompute;
    size_t tmp_before = tmp.used_bytes;
    CHECK_OK(nn_block_forward(&y, &bc, ops, &step, x, o->x_out, B, T, 7, 3, 1));
    o->saved_bytes = step.used_bytes;
    CHECK(tmp.used_bytes == tmp_before);
    if (with_tmp) {
        CHECK(!y.h1 && !y.h2);
        CHECK((y.a == NULL) == !nn_linear_reads_input(&y.o));
        CHECK((y.g == NULL) == !nn_linear_reads_input(&y.fc2));
        int plain_fc1 = !y.fc1.dw && !y.fc1.lora && !y.fc1.ia3;
        CHECK((y.att == NULL) == recompute && (y.f == NULL) == (recompute && plain_fc1));
    }
    mmt_block_grads s;
    CHECK_OK(nn_block_grads_alloc(&back, &bc, B, T, 0, &s));
    memset(o->dx, 0, sizeof o->dx);
    CHECK_OK(nn_block_backward(&y, &bc, ops, &back, &s, x, dy, o->dx, B, T));
    o->n_grads = gather_grads(p, o->grads);
    mmt_arena_free(&step);
    mmt_arena_free(&tmp);
    mmt_arena_free(&back);
}

/* Bytes an arena counts for n floats (used_bytes leaves alignment padding out). */
static size_t floats_bytes(int64_t n) { return (size_t)n * sizeof(float); }

static void test_same_gradients_less_memory(void) {
    params p;
    params_make(&p);
    float *x = random_floats(N * C, 1.0f), *dy = random_floats(N * C, 1.0f);
    static outcome kept, lean, least;
    for (int post = 0; post <= 1; post++)
        for (int k = 0; k < N_CASES; k++) {
            run(&p, (test_case)k, post, 0, 0, x, dy, &kept);
            run(&p, (test_case)k, post, 1, 0, x, dy, &lean);
            run(&p, (test_case)k, post, 1, 1, x, dy, &least);
            CHECK_MSG(!memcmp(kept.x_out, least.x_out, sizeof kept.x_out) && !memcmp(kept.dx, least.dx, sizeof kept.dx) &&
                          !memcmp(kept.grads, least.grads, (size_t)kept.n_grads * sizeof(float)),
                      "%s post %d: recomputation changed a result", CASE_NAMES[k], post);
            /* recomputation leaves out the probabilities, and f when fc1 is plain frozen */
            int plain_fc1 = k == LORA_QV || k == IA3;
            size_t more = floats_bytes(B * H * T * T) + (plain_fc1 ? floats_bytes(N * I) : 0);
            CHECK_MSG(lean.saved_bytes - least.saved_bytes == more, "%s post %d: recompute saves %zu bytes, expected %zu",
                      CASE_NAMES[k], post, lean.saved_bytes - least.saved_bytes, more);
            CHECK_MSG(!memcmp(kept.x_out, lean.x_out, sizeof kept.x_out), "%s post %d: x_out differs", CASE_NAMES[k], post);
            CHECK_MSG(!memcmp(kept.dx, lean.dx, sizeof kept.dx), "%s post %d: dx differs", CASE_NAMES[k], post);
            CHECK(kept.n_grads == lean.n_grads);
            CHECK_MSG(!memcmp(kept.grads, lean.grads, (size_t)kept.n_grads * sizeof(float)),
                      "%s post %d: a parameter gradient differs", CASE_NAMES[k], post);
            /* what the rule leaves out of the forward's arena */
            int o_reads = k == LORA_ALL || k == FULL, fc2_reads = k == LORA_ALL || k == FULL || k == IA3;
            size_t expect = (post ? 0 : 2 * floats_bytes(N * C)) + (o_reads ? 0 : floats_bytes(N * C)) +
                            (fc2_reads ? 0 : floats_bytes(N * I));
            CHECK_MSG(kept.saved_bytes - lean.saved_bytes == expect, "%s post %d: %zu bytes fewer, expected %zu",
                      CASE_NAMES[k], post, kept.saved_bytes - lean.saved_bytes, expect);
        }
    /* the gradients are not trivially equal: LoRA q,v's A gradient is non-zero */
    run(&p, LORA_QV, 0, 1, 0, x, dy, &lean);
    double sum = 0;
    for (int64_t i = 0; i < R * C; i++) sum += (double)p.dla[0][i] * p.dla[0][i];
    CHECK(sum > 0);
    free(x), free(dy);
    params_free(&p);
}

/* A backward that needs an input forward did not keep fails with a message, not a crash. */
static void test_missing_input_refused(void) {
    params p;
    params_make(&p);
    mmt_block y;
    bind(&p, &y, FULL);
    mmt_arena ar;
    mmt_arena_init(&ar, (size_t)1 << 12);
    float dy[N * C] = {0}, dx[N * C] = {0};
    CHECK(nn_linear_reads_input(&y.q));
    CHECK_FAILS(nn_linear_backward(&y.q, mmt_ops_cpu(), &ar, dx, dy, NULL, N), MMT_STATUS_INTERNAL, "not kept");
    bind(&p, &y, LORA_QV);
    CHECK(nn_linear_reads_input(&y.q) && !nn_linear_reads_input(&y.k) && !nn_linear_reads_input(&y.fc2));
    CHECK_OK(nn_linear_backward(&y.k, mmt_ops_cpu(), &ar, dx, dy, NULL, N));
    mmt_arena_free(&ar);
    params_free(&p);
}

int main(void) {
    rng_state = 0x626c6f636b6d656dull; /* this file's stream of random inputs */
    RUN(test_same_gradients_less_memory);
    RUN(test_missing_input_refused);
    return check_summary();
}
