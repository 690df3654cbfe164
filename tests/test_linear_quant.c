/*
 * test_linear_quant.c — nn.Linear over a quantized frozen weight (nn/linear.h qw): LoRA on an
 * NF4 or int8 base, as QLoRA trains it.
 *
 * References and tolerances:
 *   - the training forward equals the fp32 layer on the dequantized weight (qmat_dequant_rows,
 *     exact per element) within 1e-5 relative: the dequantizing GEMM may cut K differently;
 *   - backward (dx and the LoRA gradients) against central finite differences of the forward
 *     (float forward): error below 2e-3 of max(|fd|, 0.1) with step 1e-2 on a loss
 *     sum(y * r) for a fixed random r;
 *   - inference with a packed int8 weight (integer kernel) within 2e-2 relative of the fp32
 *     layer on the dequantized weight: the difference is the activations' 8-bit rounding;
 *   - layers sharing one input (nn_linear_forward_shared): bitwise the separate forwards;
 *   - a quantized weight refuses training and DoRA.
 */
#include <stdint.h>

#include "check.h"
#include "core/arena.h"
#include "nn/linear.h"
#include "ops/ops.h"
#include "quant/int8_rows.h"
#include "quant/nf4.h"

#define M 5
#define IN 70 /* not a multiple of 64: NF4 blocks straddle rows */
#define OUT 9
#define R 3

static uint64_t rng_state = 88172645463325252ull;
static float frand(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

typedef struct lq_fixture {
    float w[OUT * IN], deq[OUT * IN], bias[OUT], x[M * IN], r[M * OUT];
    float a[R * IN], b[OUT * R], da[R * IN], db[OUT * R];
    uint8_t nf4[(OUT * IN + 1) / 2];
    float absmax[(OUT * IN + 63) / 64];
    int8_t s8[OUT * IN];
    float scb[OUT], scale[OUT];
    void *packed;
    mmt_qmat q;
    mmt_lora lora;
    mmt_linear lin;
} lq_fixture;

static void fixture_init(lq_fixture *f, mmt_qmat_type type, const mmt_ops *ops) {
    memset(f, 0, sizeof *f);
    for (int i = 0; i < OUT * IN; i++) f->w[i] = frand();
    for (int i = 0; i < OUT; i++) f->bias[i] = frand();
    for (int i = 0; i < M * IN; i++) f->x[i] = frand();
    for (int i = 0; i < M * OUT; i++) f->r[i] = frand();
    for (int i = 0; i < R * IN; i++) f->a[i] = 0.3f * frand();
    for (int i = 0; i < OUT * R; i++) f->b[i] = 0.3f * frand();
    f->q.type = type;
    f->q.rows = OUT;
    f->q.cols = IN;
    if (type == MMT_QMAT_NF4) {
        mmt_nf4_quantize(f->nf4, f->absmax, f->w, OUT * IN, 64);
        f->q.nf4 = f->nf4;
        f->q.absmax = f->absmax;
        f->q.code = mmt_nf4_code;
        f->q.blocksize = 64;
    } else {
        mmt_int8_rows_quantize(f->s8, f->scb, f->w, OUT, IN);
        for (int i = 0; i < OUT; i++) f->scale[i] = f->scb[i] * 0.007874016f;
        f->packed = ops->buffer_alloc(ops->s8_packed_bytes(OUT, IN));
        ops->s8_pack(f->packed, f->s8, OUT, IN);
        f->q.s8 = f->s8;
        f->q.scale = f->scale;
        f->q.s8_packed = f->packed;
    }
    ops->qmat_dequant_rows(f->deq, &f->q, 0, OUT);
    f->lora = (mmt_lora){.r = R, .scaling = 0.7f, .a = f->a, .b = f->b, .da = f->da, .db = f->db};
    f->lin = (mmt_linear){.in = IN, .out = OUT, .qw = &f->q, .b = f->bias, .lora = &f->lora};
}

static double loss_of(lq_fixture *f, const mmt_ops *ops, mmt_arena *ar) {
    float y[M * OUT];
    mmt_arena_mark mark = mmt_arena_get_mark(ar);
    CHECK_OK(nn_linear_forward(&f->lin, ops, ar, y, f->x, M, 1));
    mmt_arena_rewind(ar, mark);
    double s = 0;
    for (int i = 0; i < M * OUT; i++) s += (double)y[i] * f->r[i];
    return s;
}

static void check_grad(const char *what, float *param, const float *grad, int n, lq_fixture *f, const mmt_ops *ops,
                       mmt_arena *ar) {
    double worst = 0;
    for (int i = 0; i < n; i += 3) {
        float keep = param[i], h = 1e-2f;
        param[i] = keep + h;
        double up = loss_of(f, ops, ar);
        param[i] = keep - h;
        double down = loss_of(f, ops, ar);
        param[i] = keep;
        double fd = (up - down) / (2.0 * h), err = fabs(fd - grad[i]) / (fabs(fd) + 1e-1);
        if (err > worst) worst = err;
    }
    CHECK_MSG(worst < 2e-3, "%s: worst relative error %.3g", what, worst);
}

static void run_type(mmt_qmat_type type, const mmt_ops *ops) {
    static lq_fixture f;
    fixture_init(&f, type, ops);
    mmt_arena ar;
    mmt_arena_init(&ar, 1 << 20);
    /* the training forward = the fp32 layer on deq(W) */
    float y[M * OUT], yref[M * OUT], dy[M * OUT], dx[M * IN];
    mmt_linear ref = {.in = IN, .out = OUT, .w = f.deq, .b = f.bias, .lora = &f.lora};
    CHECK_OK(nn_linear_forward(&ref, ops, &ar, yref, f.x, M, 0));
    CHECK_OK(nn_linear_forward(&f.lin, ops, &ar, y, f.x, M, 1));
    double worst = 0;
    for (int i = 0; i < M * OUT; i++) worst = fmax(worst, fabs(y[i] - yref[i]) / (fabs(yref[i]) + 1e-3));
    CHECK_MSG(worst < 1e-5, "%s forward: worst relative difference %.3g", ops->name, worst);
    /* backward against finite differences */
    memcpy(dy, f.r, sizeof dy);
    memset(dx, 0, sizeof dx);
    CHECK_OK(nn_linear_backward(&f.lin, ops, &ar, dx, dy, f.x, M));
    check_grad("dx", f.x, dx, M * IN, &f, ops, &ar);
    check_grad("dA", f.a, f.da, R * IN, &f, ops, &ar);
    check_grad("dB", f.b, f.db, OUT * R, &f, ops, &ar);
    /* inference: int8 goes through the integer kernel, NF4 through the same dequantizing GEMM */
    CHECK_OK(nn_linear_forward(&f.lin, ops, &ar, y, f.x, M, 0));
    worst = 0;
    double scale = 0;
    for (int i = 0; i < M * OUT; i++) scale = fmax(scale, fabs(yref[i]));
    for (int i = 0; i < M * OUT; i++) worst = fmax(worst, fabs(y[i] - yref[i]) / scale);
    CHECK_MSG(worst < (type == MMT_QMAT_S8 ? 2e-2 : 1e-5), "%s inference: worst difference %.3g of the largest output",
              ops->name, worst);
    /* several layers over one x (attention's q, k, v): the shared quantization gives the bits
     * of separate calls, and the arena is left as it was */
    mmt_linear plain = f.lin;
    plain.lora = NULL;
    mmt_linear *const ls[2] = {&f.lin, &plain};
    float y1[M * OUT], y2[M * OUT], s1[M * OUT], s2[M * OUT];
    float *const ys[2] = {s1, s2};
    CHECK_OK(nn_linear_forward(&f.lin, ops, &ar, y1, f.x, M, 0));
    CHECK_OK(nn_linear_forward(&plain, ops, &ar, y2, f.x, M, 0));
    size_t used = ar.used_bytes;
    CHECK_OK(nn_linear_forward_shared(ls, 2, ops, &ar, ys, f.x, M, 0));
    CHECK(ar.used_bytes == used);
    CHECK_MSG(!memcmp(y1, s1, sizeof y1) && !memcmp(y2, s2, sizeof y2), "%s: shared forward differs", ops->name);
    /* a quantized weight is frozen, and takes no DoRA */
    float dw[OUT * IN], mag[OUT];
    f.lin.dw = dw;
    CHECK(nn_linear_forward(&f.lin, ops, &ar, y, f.x, M, 1) == MMT_STATUS_UNSUPPORTED);
    f.lin.dw = NULL;
    f.lora.magnitude = mag;
    CHECK(nn_linear_forward(&f.lin, ops, &ar, y, f.x, M, 1) == MMT_STATUS_UNSUPPORTED);
    f.lora.magnitude = NULL;
    if (f.packed) ops->buffer_free(f.packed);
    mmt_arena_free(&ar);
}

static void test_nf4_base(void) {
    run_type(MMT_QMAT_NF4, mmt_ops_ref());
    run_type(MMT_QMAT_NF4, mmt_ops_cpu());
}

static void test_int8_base(void) {
    run_type(MMT_QMAT_S8, mmt_ops_ref());
    run_type(MMT_QMAT_S8, mmt_ops_cpu());
}

int main(void) {
    mmt_log_set_level(MMT_LOG_ERROR);
    RUN(test_nf4_base);
    RUN(test_int8_base);
    return check_summary();
}
