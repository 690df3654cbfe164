/*
 * test_ops_attention_kv.c — attention with more keys than queries and a causal offset
 * (ops.h attention_kv_fwd / attention_kv_bwd, used by prefix tuning), in the style of
 * test_ops_bwd.c:
 *   1. the reference backward against central finite differences of the reference forward:
 *      L = sum(out * R) in double, each input moved by +-1e-3, |analytic - fd| <= 1e-3 +
 *      1e-2 |fd| (test_ops_bwd.c explains the numbers: truncation ~1e-7, float rounding of
 *      the forward over 2h a few 1e-5);
 *   2. the reference forward: probabilities of masked keys exactly 0, every row summing to 1
 *      (1e-6), and Tq = Tk with offset 0 bitwise equal to attention_fwd / attention_bwd;
 *   3. the fast table against the reference over odd and CLIP-sized shapes: out and dq, dk,
 *      dv within 1e-5 (inputs of size <= 1), the outputs accumulated onto random prefills, no
 *      write outside them, and the square case bitwise equal to the fast attention_fwd/bwd.
 * Part 3 runs once per fast table ("avx2", "avx512") this CPU has (ops_fixture.h).
 */
#include <stdint.h>

#include "check.h"
#include "ops/ops.h"
#include "ops_fixture.h"

typedef struct kv_case {
    int64_t B, Tq, Tk, H, D;
    int causal;
    int64_t offset;
} kv_case;

typedef struct kv_data {
    kv_case c;
    float *q, *k, *v, *out, *att, *r;
} kv_data;

static void kv_alloc(kv_data *d, kv_case c) {
    int64_t C = c.H * c.D;
    d->c = c;
    d->q = random_floats(c.B * c.Tq * C, 1.5f);
    d->k = random_floats(c.B * c.Tk * C, 1.5f);
    d->v = random_floats(c.B * c.Tk * C, 1.0f);
    d->out = random_floats(c.B * c.Tq * C, 1.0f);
    d->att = random_floats(c.B * c.H * c.Tq * c.Tk, 1.0f);
    d->r = random_floats(c.B * c.Tq * C, 1.0f);
}

static void kv_free(kv_data *d) { free(d->q), free(d->k), free(d->v), free(d->out), free(d->att), free(d->r); }

static void kv_forward(const mmt_ops *ops, kv_data *d) {
    kv_case c = d->c;
    ops->attention_kv_fwd(d->out, d->att, d->q, d->k, d->v, c.B, c.Tq, c.Tk, c.H, c.D, c.causal, c.offset);
}

static double kv_loss(kv_data *d) {
    kv_forward(mmt_ops_ref(), d);
    double s = 0;
    for (int64_t i = 0; i < d->c.B * d->c.Tq * d->c.H * d->c.D; i++) s += (double)d->out[i] * d->r[i];
    return s;
}

static double fd_worst(kv_data *d, float *input, const float *grad, int64_t n, const char *what) {
    const float h = 1e-3f;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        float saved = input[i], up = saved + h, down = saved - h;
        input[i] = up;
        double lu = kv_loss(d);
        input[i] = down;
        double ld = kv_loss(d);
        input[i] = saved;
        double fd = (lu - ld) / ((double)up - (double)down), err = fabs(grad[i] - fd) / (1e-3 + 1e-2 * fabs(fd));
        if (err > 1.0) fprintf(stderr, "  %s[%lld]: analytic %.7g, fd %.7g\n", what, (long long)i, grad[i], fd);
        worst = fmax(worst, err);
    }
    return worst;
}

static const kv_case SMALL[] = {{2, 3, 5, 2, 3, 1, 2}, {1, 4, 6, 3, 2, 0, 0}, {2, 1, 4, 1, 4, 1, 3},
                                {1, 5, 5, 2, 2, 1, 0}, {1, 3, 7, 1, 3, 1, 1}};

static void test_ref_backward_matches_fd(void) {
    for (size_t s = 0; s < sizeof SMALL / sizeof *SMALL; s++) {
        kv_data d;
        kv_alloc(&d, SMALL[s]);
        kv_case c = d.c;
        int64_t C = c.H * c.D, nq = c.B * c.Tq * C, nk = c.B * c.Tk * C;
        float *dq = calloc((size_t)nq, sizeof(float)), *dk = calloc((size_t)nk, sizeof(float));
        float *dv = calloc((size_t)nk, sizeof(float)), *datt = random_floats(c.B * c.H * c.Tq * c.Tk, 1);
        kv_forward(mmt_ops_ref(), &d);
        mmt_ops_ref()->attention_kv_bwd(dq, dk, dv, datt, d.r, d.q, d.k, d.v, d.att, c.B, c.Tq, c.Tk, c.H, c.D, c.causal,
                                        c.offset);
        CHECK_MSG(fd_worst(&d, d.q, dq, nq, "dq") <= 1.0, "case %zu", s);
        CHECK_MSG(fd_worst(&d, d.k, dk, nk, "dk") <= 1.0, "case %zu", s);
        CHECK_MSG(fd_worst(&d, d.v, dv, nk, "dv") <= 1.0, "case %zu", s);
        free(dq), free(dk), free(dv), free(datt);
        kv_free(&d);
    }
}

static void test_ref_forward_mask_and_square_case(void) {
    for (size_t s = 0; s < sizeof SMALL / sizeof *SMALL; s++) {
        kv_data d;
        kv_alloc(&d, SMALL[s]);
        kv_case c = d.c;
        kv_forward(mmt_ops_ref(), &d);
        for (int64_t row = 0; row < c.B * c.H * c.Tq; row++) {
            int64_t i = row % c.Tq, visible = c.causal ? i + c.offset + 1 : c.Tk;
            if (visible > c.Tk) visible = c.Tk;
            double sum = 0;
            for (int64_t j = 0; j < c.Tk; j++) {
                float p = d.att[row * c.Tk + j];
                if (j >= visible) CHECK(p == 0.0f);
                sum += p;
            }
            CHECK_NEAR(sum, 1.0, 1e-6);
        }
        kv_free(&d);
    }
    /* Tq = Tk, offset 0: the square kernels, bit for bit, in both tables */
    for (int t = 0; t < 2; t++) {
        const mmt_ops *ops = t ? fast_ops() : mmt_ops_ref();
        for (int causal = 0; causal <= 1; causal++) {
            kv_data d;
            kv_alloc(&d, (kv_case){2, 9, 9, 3, 8, causal, 0});
            kv_case c = d.c;
            int64_t C = c.H * c.D, n = c.B * c.Tq * C, na = c.B * c.H * c.Tq * c.Tq;
            float *out2 = malloc((size_t)n * sizeof(float)), *att2 = malloc((size_t)na * sizeof(float));
            kv_forward(ops, &d);
            ops->attention_fwd(out2, att2, d.q, d.k, d.v, c.B, c.Tq, c.H, c.D, causal);
            CHECK_MSG(memcmp(out2, d.out, (size_t)n * sizeof(float)) == 0, "%s causal %d: out", ops->name, causal);
            CHECK(memcmp(att2, d.att, (size_t)na * sizeof(float)) == 0);
            float *g1[3], *g2[3], *datt = malloc((size_t)na * sizeof(float));
            for (int i = 0; i < 3; i++) g1[i] = calloc((size_t)n, sizeof(float)), g2[i] = calloc((size_t)n, sizeof(float));
            ops->attention_kv_bwd(g1[0], g1[1], g1[2], datt, d.r, d.q, d.k, d.v, d.att, c.B, c.Tq, c.Tq, c.H, c.D, causal, 0);
            ops->attention_bwd(g2[0], g2[1], g2[2], datt, d.r, d.q, d.k, d.v, d.att, c.B, c.Tq, c.H, c.D, causal);
            for (int i = 0; i < 3; i++)
                CHECK_MSG(memcmp(g1[i], g2[i], (size_t)n * sizeof(float)) == 0, "%s causal %d: grad %d", ops->name, causal, i);
            for (int i = 0; i < 3; i++) free(g1[i]), free(g2[i]);
            free(out2), free(att2), free(datt);
            kv_free(&d);
        }
    }
}

static void test_fast_matches_ref(void) {
    /* {B, Tq, Tk, H, D, causal, offset}: tiny, odd, text tower with 10 prefix rows (77 + 10
     * keys, causal offset 10), ViT-B/32 with 8 prefix rows, a wide head */
    static const kv_case shapes[] = {{1, 1, 2, 1, 1, 1, 1},    {2, 7, 10, 3, 5, 1, 3},  {2, 7, 10, 3, 5, 0, 0},
                                     {2, 77, 87, 8, 64, 1, 10}, {2, 50, 58, 12, 64, 0, 0}, {1, 20, 33, 1, 130, 1, 13}};
    const mmt_ops *fast = fast_ops();
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        kv_data d;
        kv_alloc(&d, shapes[s]);
        kv_case c = d.c;
        int64_t C = c.H * c.D, nq = c.B * c.Tq * C, nk = c.B * c.Tk * C, na = c.B * c.H * c.Tq * c.Tk;
        float *out_ref = malloc((size_t)nq * sizeof(float)), *att_ref = malloc((size_t)na * sizeof(float));
        float *out_fast = guarded_copy(d.out, nq), *att_fast = guarded_copy(d.att, na);
        mmt_ops_ref()->attention_kv_fwd(out_ref, att_ref, d.q, d.k, d.v, c.B, c.Tq, c.Tk, c.H, c.D, c.causal, c.offset);
        fast->attention_kv_fwd(out_fast, att_fast, d.q, d.k, d.v, c.B, c.Tq, c.Tk, c.H, c.D, c.causal, c.offset);
        double e = 0;
        for (int64_t i = 0; i < nq; i++) e = fmax(e, fabs(out_fast[i] - out_ref[i]));
        CHECK_MSG(e <= 1e-5, "shape %zu: out differs by %.3g", s, e);
        CHECK(guarded_ok(out_fast, nq) && guarded_ok(att_fast, na));
        int64_t len[3] = {nq, nk, nk};
        float *g0[3], *gr[3], *gf[3];
        for (int i = 0; i < 3; i++) {
            g0[i] = random_floats(len[i], 1.0f);
            gr[i] = guarded_copy(g0[i], len[i]);
            gf[i] = guarded_copy(g0[i], len[i]);
        }
        float *datt_r = malloc((size_t)na * sizeof(float)), *datt_f = guarded_copy(att_ref, na);
        mmt_ops_ref()->attention_kv_bwd(gr[0], gr[1], gr[2], datt_r, d.r, d.q, d.k, d.v, att_ref, c.B, c.Tq, c.Tk, c.H,
                                        c.D, c.causal, c.offset);
        fast->attention_kv_bwd(gf[0], gf[1], gf[2], datt_f, d.r, d.q, d.k, d.v, att_ref, c.B, c.Tq, c.Tk, c.H, c.D,
                               c.causal, c.offset);
        for (int i = 0; i < 3; i++) {
            double w = 0;
            for (int64_t j = 0; j < len[i]; j++) w = fmax(w, fabs(gf[i][j] - gr[i][j]));
            CHECK_MSG(w <= 1e-5, "shape %zu: gradient %d differs by %.3g", s, i, w);
            CHECK(guarded_ok(gf[i], len[i]));
            free(g0[i]), guarded_free(gr[i]), guarded_free(gf[i]);
        }
        CHECK(guarded_ok(datt_f, na));
        free(datt_r), guarded_free(datt_f);
        free(out_ref), free(att_ref), guarded_free(out_fast), guarded_free(att_fast);
        kv_free(&d);
    }
}

int main(void) {
    rng_state = 0x5eedf00d12345678ull; /* this file's stream of random inputs */
    RUN(test_ref_backward_matches_fd);
    RUN(test_ref_forward_mask_and_square_case);
    for (int t = 0; t < FAST_TABLES; t++)
        if (fast_table_use(t)) RUN(test_fast_matches_ref);
    return check_summary();
}
