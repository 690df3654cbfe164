/*
 * clip_fixture.h — a batch on the tiny fixture CLIPs (tests/fixtures/clip/<name>) and the
 * finite-difference check of the training view's gradients, shared by test_clip_train.c,
 * test_clip_prompts.c, test_bottleneck.c and test_dora.c.
 *
 * The batch: CLIP_BATCH captions (CLIP_TEXTS) and as many images of pixels 1.5 u, u uniform
 * in [-1, 1) from the stream of rng.h. loss_of is the contrastive loss with dropout seed 7.
 *
 * check_fd compares each registered tensor's gradient g with a central finite difference of
 * the loss along a random direction v (uniform in [-1, 1) per element, from the same stream):
 *   - step h = step * max(RMS of the tensor, 0.1) / RMS(v), step 5e-2 unless the caller says
 *     otherwise (5% of the tensor's RMS, at least 0.005, along a unit-RMS direction);
 *   - fd = (4 d(h/2) - d(h)) / 3, the Richardson extrapolation of the central differences at
 *     h and h/2, which cancels their h^2 term, so truncation is O(h^4);
 *   - |fd - g.v| <= 2e-2 max(|fd|, |g.v|) + 16 * 6e-8 * max(1, |loss|) / h: the loss is
 *     computed in float, and its rounding (~6e-8 relative per evaluation) divided by the step
 *     is the noise floor of the quotient (it matters for gradients that are exactly zero).
 * The LoRA helper registers A and B under PEFT's names; `owned` holds every buffer a test
 * allocates for adapters so that one owned_free releases them. Header-only, like check.h.
 */
#ifndef MMT_TESTS_CLIP_FIXTURE_H
#define MMT_TESTS_CLIP_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "nn/linear.h"
#include "rng.h"

#define CLIP_BATCH 3

static const char *CLIP_TEXTS[CLIP_BATCH] = {"a photo of a cat", "a red car on a street", "two dogs in snow"};

typedef struct clip_batch {
    mmt_clip *model;
    float *pixels; // (B, 3, S, S)
    int32_t *ids;  // (B, L)
    int64_t L;
} clip_batch;

/* Loads tests/fixtures/clip/<name> and makes the batch; 0 (with a line on stderr) on failure.
 * batch_free is safe on a batch whose load failed. */
static inline int batch_load(const char *name, clip_batch *b) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/clip/%s", MMT_FIXTURE_DIR, name);
    memset(b, 0, sizeof *b);
    if (mmt_clip_load(dir, &b->model) != MMT_OK) {
        fprintf(stderr, "load %s: %s\n", dir, mmt_last_error());
        return 0;
    }
    const mmt_clip_config *c = mmt_clip_config_of(b->model);
    int64_t S = c->vision.image_size, n = (int64_t)CLIP_BATCH * 3 * S * S;
    b->L = c->text.max_positions;
    b->pixels = malloc((size_t)n * sizeof(float));
    b->ids = malloc((size_t)(CLIP_BATCH * b->L) * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) b->pixels[i] = 1.5f * rng_uniform();
    if (mmt_clip_tokenize(b->model, CLIP_TEXTS, CLIP_BATCH, 1, b->ids) != MMT_OK) {
        fprintf(stderr, "tokenize: %s\n", mmt_last_error());
        return 0;
    }
    return 1;
}

static inline void batch_free(clip_batch *b) {
    mmt_clip_free(b->model);
    free(b->pixels);
    free(b->ids);
}

static inline double loss_of(mmt_clip_train *ct, const clip_batch *b) {
    double loss = NAN;
    if (mmt_clip_train_forward_loss(ct, b->pixels, b->ids, CLIP_BATCH, b->L, 7, &loss) != MMT_OK)
        fprintf(stderr, "forward: %s\n", mmt_last_error());
    return loss;
}

/* Gradients of every registered tensor, copied out after one forward + backward (the loss
 * into *loss_out unless NULL). Free with grads_free(g, number of tensors). */
static inline float **grads_of(mmt_clip_train *ct, const clip_batch *b, double *loss_out) {
    int64_t n;
    const mmt_nn_param *p = mmt_clip_train_params(ct, &n);
    mmt_clip_train_zero_grad(ct);
    double loss = loss_of(ct, b);
    if (loss_out) *loss_out = loss;
    CHECK(isfinite(loss));
    CHECK_OK(mmt_clip_train_backward(ct));
    float **g = calloc((size_t)n, sizeof *g);
    for (int64_t i = 0; i < n; i++) {
        g[i] = malloc((size_t)p[i].numel * sizeof(float));
        memcpy(g[i], p[i].grad, (size_t)p[i].numel * sizeof(float));
    }
    return g;
}

static inline void grads_free(float **g, int64_t n) {
    for (int64_t i = 0; g && i < n; i++) free(g[i]);
    free(g);
}

/* What check_fd_with varies; fd_defaults() is check_fd's choice. */
typedef struct fd_options {
    double step;         /* relative step (see the top of this file); 5e-2 by default */
    const char *only;    /* check only tensors whose name contains this; NULL: every tensor */
    int require_nonzero; /* also fail a tensor with |g.v| <= 1e-6 (a gradient that never flows) */
} fd_options;

static inline fd_options fd_defaults(void) {
    fd_options o = {5e-2, NULL, 0};
    return o;
}

/* The directional finite-difference check of every (or every `only`) registered tensor, with
 * the tolerance at the top of this file; messages start with `what`. Returns how many tensors
 * it checked. Leaves the parameters as it found them. */
static inline int64_t check_fd_with(mmt_clip_train *ct, const clip_batch *b, const fd_options *o, const char *what) {
    int64_t n;
    const mmt_nn_param *p = mmt_clip_train_params(ct, &n);
    CHECK(n > 0);
    float **g = grads_of(ct, b, NULL);
    int64_t checked = 0;
    for (int64_t i = 0; i < n; i++) {
        if (o->only && !strstr(p[i].name, o->only)) continue;
        int64_t m = p[i].numel;
        float *v = malloc((size_t)m * sizeof(float)), *saved = malloc((size_t)m * sizeof(float));
        memcpy(saved, p[i].data, (size_t)m * sizeof(float));
        double gv = 0, vv = 0, pp = 0;
        for (int64_t j = 0; j < m; j++) {
            v[j] = rng_uniform();
            gv += (double)g[i][j] * v[j];
            vv += (double)v[j] * v[j];
            pp += (double)saved[j] * saved[j];
        }
        double rms = sqrt(pp / (double)m), h = o->step * (rms > 0.1 ? rms : 0.1) / sqrt(vv / (double)m);
        double d[2], l0 = 0;
        for (int k = 0; k < 2; k++) {
            double hk = k ? h / 2 : h;
            for (int64_t j = 0; j < m; j++) p[i].data[j] = (float)(saved[j] + hk * v[j]);
            double lp = loss_of(ct, b);
            for (int64_t j = 0; j < m; j++) p[i].data[j] = (float)(saved[j] - hk * v[j]);
            double lm = loss_of(ct, b);
            d[k] = (lp - lm) / (2 * hk);
            l0 = fmax(fabs(lp), fabs(lm));
        }
        memcpy(p[i].data, saved, (size_t)m * sizeof(float));
        double fd = (4 * d[1] - d[0]) / 3;
        /* float rounding of the loss (~6e-8 relative per evaluation) over the smaller step */
        double noise = 16 * 6e-8 * fmax(1.0, l0) / h;
        double tol = 2e-2 * fmax(fabs(fd), fabs(gv)) + noise;
        if (o->require_nonzero)
            CHECK_MSG(fabs(gv) > 1e-6, "%s: %s: zero gradient along a random direction", what, p[i].name);
        CHECK_MSG(fabs(fd - gv) <= tol, "%s: %s: finite difference %.6g, gradient %.6g (tol %.3g)", what,
                  p[i].name, fd, gv, tol);
        checked++;
        free(v);
        free(saved);
    }
    if (!o->only) CHECK(checked == n);
    grads_free(g, n);
    return checked;
}

static inline void check_fd(mmt_clip_train *ct, const clip_batch *b, const char *what) {
    fd_options o = fd_defaults();
    check_fd_with(ct, b, &o, what);
}

/* Adapter tensors a test allocates, freed together by owned_free (after the view that uses
 * them). The LoRA descriptors live here too, so that nothing outlives its test. */
typedef struct owned {
    float *bufs[64];
    int n;
    mmt_lora loras[16];
    int n_loras;
} owned;

/* n floats scale * u, u drawn from the stream even when scale is 0 (so a zero buffer still
 * advances it, as test_clip_train.c's adapters always have). */
static inline float *own(owned *o, int64_t n, float scale) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = scale * rng_uniform();
    o->bufs[o->n++] = p;
    return p;
}

/* n zero floats, drawing nothing from the stream. */
static inline float *own_zeros(owned *o, int64_t n) {
    float *p = calloc((size_t)n, sizeof(float));
    o->bufs[o->n++] = p;
    return p;
}

static inline void owned_free(owned *o) {
    for (int i = 0; i < o->n; i++) free(o->bufs[i]);
    o->n = 0;
    o->n_loras = 0;
}

/* How attach_lora fills the new adapter: A = 0.3 u, B = b_scale u, in that order. The gradient
 * buffers start at zero; grads_draw 1 makes them advance the stream by one number per element
 * as well (own(.., 0)), 0 leaves it alone (own_zeros). The two are kept apart because each test
 * file's random directions, and so the margins its checks were observed with, follow from it. */
typedef struct lora_init {
    int64_t r;
    float dropout;
    float b_scale;
    int grads_draw;
} lora_init;

/* A LoRA (scaling 2) on `module` of the view, registered as <module>.lora_A.weight and
 * <module>.lora_B.weight; its buffers are owned by `o`. NULL when there is no such module. */
static inline mmt_lora *attach_lora_with(mmt_clip_train *ct, owned *o, const char *module, lora_init init) {
    mmt_linear *l = mmt_clip_train_linear(ct, module);
    CHECK_MSG(l != NULL, "no module %s", module);
    if (!l) return NULL;
    int64_t r = init.r;
    mmt_lora *a = &o->loras[o->n_loras++];
    memset(a, 0, sizeof *a);
    a->r = r;
    a->scaling = 2.0f;
    a->dropout = init.dropout;
    a->a = own(o, r * l->in, 0.3f);
    a->b = own(o, l->out * r, init.b_scale);
    a->da = init.grads_draw ? own(o, r * l->in, 0) : own_zeros(o, r * l->in);
    a->db = init.grads_draw ? own(o, l->out * r, 0) : own_zeros(o, l->out * r);
    l->lora = a;
    char name[256];
    int64_t sa[2] = {r, l->in}, sb[2] = {l->out, r};
    snprintf(name, sizeof name, "%s.lora_A.weight", module);
    CHECK_OK(mmt_clip_train_add_param(ct, name, a->a, a->da, 2, sa, 0));
    snprintf(name, sizeof name, "%s.lora_B.weight", module);
    CHECK_OK(mmt_clip_train_add_param(ct, name, a->b, a->db, 2, sb, 0));
    return a;
}

#endif
