/*
 * test_block_post_ln.c — the post-LN block (BERT's layer, GIT's decoder: nn/block.h post_ln)
 * and the bidirectional block at the start of a causal sequence (n_bidir: GIT's image
 * tokens), forward against a direct double-precision computation, backward against central
 * finite differences, and decoding with a KV cache against the whole sequence.
 *
 * Shapes: C 12, 3 heads, MLP 20, exact GELU, B 2 rows of T 7 positions, n_bidir 3 (also 0,
 * and 9 > T: all bidirectional), 2 prefix rows (also none). Random weights of size ~0.3,
 * inputs ~1.
 *   - forward: the block in float against the same formulas in double (written out below,
 *     masks included: with a prefix, transformers' rule for GIT — keys counted from the first
 *     prefix row, the bidirectional block among the first n_bidir keys), max |diff| <= 2e-5;
 *   - backward: L = sum(x_out * R) in double; each input and parameter tensor moved along a
 *     random direction by +-1e-2 (float forward); |analytic - fd| <= 2e-3 + 2e-2 |fd| (the fd's
 *     truncation error is O(h^2) ~ 1e-4 for this size of curvature; float rounding of L over
 *     2h ~ 1e-4);
 *   - cache: 4 positions (the bidirectional block inside them), then one at a time, equal to
 *     the whole sequence within 2e-5; a cache whose first call does not hold the whole block
 *     is refused.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/arena.h"
#include "nn/block.h"
#include "ops/ops.h"
#include "rng.h"

enum { C = 12, H = 3, I = 20, B = 2, T = 7, V = 2, D = C / H };

typedef struct blk {
    float *w[12], *ln[4], *prefix, *dw[12], *dln[4], *dprefix;
    mmt_block_config bc;
} blk;

static const int64_t SIZES[12] = {C * C, C, C * C, C, C * C, C, C * C, C, I * C, I, C * I, C};

static void blk_make(blk *k, int64_t n_bidir) {
    for (int j = 0; j < 12; j++) {
        k->w[j] = random_floats(SIZES[j], 0.3f);
        k->dw[j] = calloc((size_t)SIZES[j], sizeof(float));
    }
    for (int j = 0; j < 4; j++) {
        k->ln[j] = random_floats(C, 0.2f);
        k->dln[j] = calloc(C, sizeof(float));
    }
    for (int64_t j = 0; j < C; j++) k->ln[0][j] += 1.0f, k->ln[2][j] += 1.0f;
    k->prefix = random_floats(V * 2 * C, 1.0f);
    k->dprefix = calloc(V * 2 * C, sizeof(float));
    k->bc = (mmt_block_config){.hidden = C, .intermediate = I, .heads = H, .eps = 1e-5f, .act = MMT_BLOCK_GELU,
                               .causal = 1, .post_ln = 1, .n_bidir = n_bidir};
}

static void blk_free(blk *k) {
    for (int j = 0; j < 12; j++) free(k->w[j]), free(k->dw[j]);
    for (int j = 0; j < 4; j++) free(k->ln[j]), free(k->dln[j]);
    free(k->prefix), free(k->dprefix);
}

/* The block over k's tensors; grads: every gradient attached. */
static void blk_bind(const blk *k, mmt_block *y, int with_prefix, int grads) {
    mmt_block_weights w = {k->w[0], k->w[1], k->w[2], k->w[3], k->w[4], k->w[5],  k->w[6], k->w[7],
                           k->w[8], k->w[9], k->w[10], k->w[11], k->ln[0], k->ln[1], k->ln[2], k->ln[3], {0}, {0}};
    nn_block_init(y, &w, C, I);
    if (with_prefix) {
        y->n_prefix = V;
        y->prefix_stride = 2 * C;
        y->prefix = k->prefix;
        y->dprefix = grads ? k->dprefix : NULL;
    }
    if (!grads) return;
    mmt_linear *lin[6] = {&y->q, &y->k, &y->v, &y->o, &y->fc1, &y->fc2};
    for (int j = 0; j < 6; j++) lin[j]->dw = k->dw[2 * j], lin[j]->db = k->dw[2 * j + 1];
    y->dln1_w = k->dln[0], y->dln1_b = k->dln[1], y->dln2_w = k->dln[2], y->dln2_b = k->dln[3];
}

/* ---- the reference in double ---------------------------------------------------------- */

static void lin_d(double *y, const double *x, const float *w, const float *b, int64_t n, int64_t in, int64_t out) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++) {
            double s = b[o];
            for (int64_t j = 0; j < in; j++) s += x[i * in + j] * w[o * in + j];
            y[i * out + o] = s;
        }
}

static void ln_d(double *y, const double *x, const float *w, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double m = 0, v = 0;
        for (int64_t j = 0; j < C; j++) m += x[i * C + j];
        m /= C;
        for (int64_t j = 0; j < C; j++) v += (x[i * C + j] - m) * (x[i * C + j] - m);
        v /= C;
        for (int64_t j = 0; j < C; j++) y[i * C + j] = (x[i * C + j] - m) / sqrt(v + 1e-5) * w[j] + b[j];
    }
}

/* One row of the post-LN block with prefix rows pre (V, 2C) or none, n_bidir nbd. */
static void block_row_d(const blk *k, const float *pre, int64_t nbd, const float *x, double *out) {
    int64_t Vr = pre ? V : 0, Tk = Vr + T;
    double xin[T * C], q[T * C], kk[(V + T) * C], vv[(V + T) * C], a[T * C], r1[T * C], mid[T * C], f[T * I],
        r2[T * C], tmp[T * C];
    for (int64_t i = 0; i < T * C; i++) xin[i] = x[i];
    lin_d(q, xin, k->w[0], k->w[1], T, C, C);
    for (int64_t r = 0; r < Vr; r++)
        for (int64_t j = 0; j < C; j++) kk[r * C + j] = pre[r * 2 * C + j], vv[r * C + j] = pre[r * 2 * C + C + j];
    lin_d(kk + Vr * C, xin, k->w[2], k->w[3], T, C, C);
    lin_d(vv + Vr * C, xin, k->w[4], k->w[5], T, C, C);
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < T; i++) {
            double sc[V + T], mx = -1e300, sum = 0;
            for (int64_t j = 0; j < Tk; j++) {
                /* transformers' rule: keys counted from the first prefix row, the block in
                 * that count (create_causal_mask places block ids without the cache offset) */
                int64_t nb = nbd < T ? nbd : T; /* a block longer than the sequence is all of it */
                int ok = j <= i + Vr || (i < nb && j < nb);
                double d = 0;
                for (int64_t e = 0; e < D; e++) d += q[i * C + h * D + e] * kk[j * C + h * D + e];
                sc[j] = ok ? d / sqrt((double)D) : -INFINITY;
                if (sc[j] > mx) mx = sc[j];
            }
            for (int64_t j = 0; j < Tk; j++) sum += sc[j] == -INFINITY ? 0 : exp(sc[j] - mx);
            for (int64_t e = 0; e < D; e++) {
                double s = 0;
                for (int64_t j = 0; j < Tk; j++)
                    if (sc[j] != -INFINITY) s += exp(sc[j] - mx) / sum * vv[j * C + h * D + e];
                a[i * C + h * D + e] = s;
            }
        }
    lin_d(tmp, a, k->w[6], k->w[7], T, C, C);
    for (int64_t i = 0; i < T * C; i++) r1[i] = tmp[i] + xin[i];
    ln_d(mid, r1, k->ln[0], k->ln[1], T);
    lin_d(f, mid, k->w[8], k->w[9], T, C, I);
    for (int64_t i = 0; i < T * I; i++) f[i] = 0.5 * f[i] * (1 + erf(f[i] / sqrt(2.0)));
    lin_d(tmp, f, k->w[10], k->w[11], T, I, C);
    for (int64_t i = 0; i < T * C; i++) r2[i] = tmp[i] + mid[i];
    ln_d(out, r2, k->ln[2], k->ln[3], T);
}

/* ---- tests ------------------------------------------------------------------------------ */

static const int64_t BIDIR[3] = {3, 0, 9};

static void test_forward_matches_double(void) {
    for (int bi = 0; bi < 3; bi++)
        for (int p = 0; p < 2; p++) {
            blk k;
            blk_make(&k, BIDIR[bi]);
            float *x = random_floats(B * T * C, 1.0f), out[B * T * C];
            mmt_arena ar;
            mmt_arena_init(&ar, (size_t)1 << 16);
            mmt_block y;
            blk_bind(&k, &y, p, 0);
            CHECK_OK(nn_block_forward(&y, &k.bc, mmt_ops_cpu(), &ar, x, out, B, T, 0, 0, 0));
            double worst = 0, ref[T * C];
            for (int64_t b = 0; b < B; b++) {
                block_row_d(&k, p ? k.prefix : NULL, BIDIR[bi], x + b * T * C, ref);
                for (int64_t i = 0; i < T * C; i++) worst = fmax(worst, fabs(ref[i] - out[b * T * C + i]));
            }
            CHECK_MSG(worst <= 2e-5, "n_bidir %lld, prefix %d: forward differs from double by %.3g",
                      (long long)BIDIR[bi], p, worst);
            mmt_arena_free(&ar);
            free(x);
            blk_free(&k);
        }
}

static double loss_of(const blk *k, int p, const float *x, const float *r) {
    mmt_arena ar;
    mmt_arena_init(&ar, (size_t)1 << 16);
    mmt_block y;
    blk_bind(k, &y, p, 0);
    float out[B * T * C];
    double l = 0;
    if (nn_block_forward(&y, &k->bc, mmt_ops_ref(), &ar, x, out, B, T, 0, 0, 0) == MMT_OK)
        for (int64_t i = 0; i < B * T * C; i++) l += (double)out[i] * r[i];
    mmt_arena_free(&ar);
    return l;
}

/* Directional derivative of L along dir for tensor t (n floats) against the analytic g. */
static void check_dir(const blk *k, int p, float *x, const float *r, float *t, const float *g, int64_t n,
                      const char *what) {
    float *dir = random_floats(n, 1.0f), *keep = malloc((size_t)n * sizeof(float));
    memcpy(keep, t, (size_t)n * sizeof(float));
    const double h = 1e-2;
    for (int64_t i = 0; i < n; i++) t[i] = keep[i] + (float)h * dir[i];
    double lp = loss_of(k, p, x, r);
    for (int64_t i = 0; i < n; i++) t[i] = keep[i] - (float)h * dir[i];
    double lm = loss_of(k, p, x, r);
    memcpy(t, keep, (size_t)n * sizeof(float));
    double fd = (lp - lm) / (2 * h), an = 0;
    for (int64_t i = 0; i < n; i++) an += (double)g[i] * dir[i];
    CHECK_MSG(fabs(an - fd) <= 2e-3 + 2e-2 * fabs(fd), "n_bidir %lld, prefix %d, %s: gradient %.6g, finite difference %.6g",
              (long long)k->bc.n_bidir, p, what, an, fd);
    free(dir), free(keep);
}

static void test_backward_matches_fd(void) {
    static const char *names[12] = {"q.w", "q.b", "k.w", "k.b", "v.w", "v.b", "o.w", "o.b", "fc1.w", "fc1.b", "fc2.w", "fc2.b"};
    static const char *ln_names[4] = {"ln1.w", "ln1.b", "ln2.w", "ln2.b"};
    for (int bi = 0; bi < 3; bi++)
        for (int p = 0; p < 2; p++) {
            blk k;
            blk_make(&k, BIDIR[bi]);
            float *x = random_floats(B * T * C, 1.0f), *r = random_floats(B * T * C, 1.0f), out[B * T * C];
            float dx[B * T * C];
            memset(dx, 0, sizeof dx);
            mmt_arena ar;
            mmt_arena_init(&ar, (size_t)1 << 16);
            mmt_block y;
            blk_bind(&k, &y, p, 1);
            mmt_block_grads s;
            CHECK_OK(nn_block_forward(&y, &k.bc, mmt_ops_ref(), &ar, x, out, B, T, 0, 0, 1));
            CHECK_OK(nn_block_grads_alloc(&ar, &k.bc, B, T, p ? V : 0, &s));
            CHECK_OK(nn_block_backward(&y, &k.bc, mmt_ops_ref(), &ar, &s, x, r, dx, B, T));
            check_dir(&k, p, x, r, x, dx, B * T * C, "x_in");
            for (int j = 0; j < 12; j++) check_dir(&k, p, x, r, k.w[j], k.dw[j], SIZES[j], names[j]);
            for (int j = 0; j < 4; j++) check_dir(&k, p, x, r, k.ln[j], k.dln[j], C, ln_names[j]);
            if (p) check_dir(&k, p, x, r, k.prefix, k.dprefix, V * 2 * C, "prefix");
            mmt_arena_free(&ar);
            free(x), free(r);
            blk_free(&k);
        }
}

static void test_cache_matches_whole(void) {
    for (int p = 0; p < 2; p++) {
        blk k;
        blk_make(&k, 3);
        float *x = random_floats(B * T * C, 1.0f), whole[B * T * C], part[B * T * C], pout[B * T * C], steps[B * T * C];
        mmt_arena ar;
        mmt_arena_init(&ar, (size_t)1 << 16);
        mmt_block y;
        blk_bind(&k, &y, p, 0);
        CHECK_OK(nn_block_forward(&y, &k.bc, mmt_ops_cpu(), &ar, x, whole, B, T, 0, 0, 0));
        mmt_kv_cache cache;
        CHECK_OK(nn_kv_cache_init(&cache, &ar, B, V + T, C));
        blk_bind(&k, &y, p, 0);
        y.cache = &cache;
        for (int64_t t0 = 0, n = 4; t0 < T; t0 += n, n = 1) {
            for (int64_t b = 0; b < B; b++) memcpy(part + b * n * C, x + (b * T + t0) * C, (size_t)(n * C) * sizeof(float));
            CHECK_OK(nn_block_forward(&y, &k.bc, mmt_ops_cpu(), &ar, part, pout, B, n, 0, 0, 0));
            for (int64_t b = 0; b < B; b++) memcpy(steps + (b * T + t0) * C, pout + b * n * C, (size_t)(n * C) * sizeof(float));
        }
        double worst = 0;
        for (int64_t i = 0; i < B * T * C; i++) worst = fmax(worst, fabs((double)whole[i] - steps[i]));
        CHECK_MSG(worst <= 2e-5, "prefix %d: cached decoding differs from the whole sequence by %.3g", p, worst);
        /* the bidirectional block must come whole in the first call */
        CHECK_OK(nn_kv_cache_init(&cache, &ar, B, V + T, C));
        CHECK_FAILS(nn_block_forward(&y, &k.bc, mmt_ops_cpu(), &ar, part, pout, B, 2, 0, 0, 0),
                    MMT_STATUS_INVALID_ARGUMENT, "bidirectional positions");
        mmt_arena_free(&ar);
        free(x);
        blk_free(&k);
    }
}

int main(void) {
    rng_state = 0x706f73746c6e0001ull; /* this file's stream of random inputs */
    RUN(test_forward_matches_double);
    RUN(test_backward_matches_fd);
    RUN(test_cache_matches_whole);
    return check_summary();
}
