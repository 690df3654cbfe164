/* linear.c — nn.Linear forward/backward with LoRA and IA3 (see linear.h). */
#include "nn/linear.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static float *scratch(mmt_arena *arena, int64_t n) {
    return mmt_arena_alloc(arena, (size_t)n * sizeof(float), 64);
}

/* dropout(x) (M, in) with inverted scaling, as torch.nn.Dropout in training mode. */
static void dropout_apply(float *y, const float *x, int64_t n, float p, uint64_t seed) {
    float keep_scale = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < n; i++) y[i] = nn_dropout_keep(seed, (uint64_t)i, p) ? x[i] * keep_scale : 0.0f;
}

int nn_linear_has_grads(const mmt_linear *l) {
    return l->dw || l->db || (l->lora && (l->lora->da || l->lora->db || l->lora->dmagnitude)) ||
           (l->ia3_mode != MMT_IA3_NONE && l->dia3);
}

int nn_linear_reads_input(const mmt_linear *l) {
    return l->dw || (l->lora && (l->lora->da || l->lora->magnitude)) || (l->ia3_mode == MMT_IA3_INPUT && l->dia3);
}

void nn_dora_row_norms(const mmt_linear *l, double *norms) {
    const mmt_lora *a = l->lora;
    int64_t in = l->in, r = a->r;
    for (int64_t o = 0; o < l->out; o++) {
        double sum = 0;
        for (int64_t j = 0; j < in; j++) {
            double ba = 0;
            for (int64_t k = 0; k < r; k++) ba += (double)a->b[o * r + k] * a->a[k * in + j];
            double w = (double)l->w[o * in + j] + (double)a->scaling * ba;
            sum += w * w;
        }
        norms[o] = sqrt(sum);
    }
}

/* x quantized per row for the integer kernels (s8_quantize_rows), shared by the linears that
 * read the same x (nn_linear_forward_shared). */
typedef struct s8_input {
    const int8_t *xq;
    const float *xs;
} s8_input;

/* 1 when inference multiplies this layer's base weight in integers. */
static int runs_s8(const mmt_linear *l, int train) {
    return l->qw && l->qw->type == MMT_QMAT_S8 && l->qw->s8_packed && !train;
}

/* y (M, out) = x W^T + b for the base weight: fp32, or quantized (see linear.h). pre: x
 * already quantized (NULL: quantize here when needed). */
static mmt_status base_forward(const mmt_linear *l, const mmt_ops *ops, mmt_arena *arena, float *y,
                               const float *x, int64_t M, int train, const s8_input *pre) {
    const mmt_qmat *q = l->qw;
    if (!q) {
        const mmt_packed_linear *p = l->packed;
        if (p && p->w == l->w && p->ops == ops && !l->dw)
            ops->matmul_fwd_packed(y, x, l->w, p->panels, l->b, M, l->in, l->out);
        else
            ops->matmul_fwd(y, x, l->w, l->b, M, l->in, l->out);
        return MMT_OK;
    }
    if (runs_s8(l, train) && pre) {
        ops->s8_matmul_fwd(y, pre->xq, pre->xs, q, l->b, M);
        return MMT_OK;
    }
    if (runs_s8(l, train)) {
        mmt_arena_mark mark = mmt_arena_get_mark(arena);
        int8_t *xq = mmt_arena_alloc(arena, (size_t)(M * l->in), 64);
        float *xs = scratch(arena, M);
        if (!xq || !xs) return MMT_STATUS_OUT_OF_MEMORY;
        ops->s8_quantize_rows(xq, xs, x, M, l->in);
        ops->s8_matmul_fwd(y, xq, xs, q, l->b, M);
        mmt_arena_rewind(arena, mark);
        return MMT_OK;
    }
    ops->qmat_matmul_fwd(y, x, q, l->b, M);
    return MMT_OK;
}

/* dx (M, in) += dy (M, out) W for the base weight (fp32 or dequantized); dbias += column sums
 * of dy; dw += dy^T x (fp32 weights only). */
static void base_backward(const mmt_linear *l, const mmt_ops *ops, float *dx, float *dw, float *db,
                          const float *dy, const float *x, int64_t M) {
    if (!l->qw) {
        ops->matmul_bwd(dx, dw, db, dy, x, l->w, M, l->in, l->out);
        return;
    }
    assert(!dw);
    if (db) ops->matmul_bwd(NULL, NULL, db, dy, x, NULL, M, l->in, l->out);
    if (dx) ops->qmat_matmul_bwd_dx(dx, dy, l->qw, M);
}

/* DoRA's output on top of y = x W^T + b (M, out), as PEFT adds it: base = xd W^T (with no
 * dropout that is y - b, exactly PEFT's `base_result - bias`), lora = xa B^T, and
 * y += (k - 1) base + k (scaling lora). */
static mmt_status dora_forward(mmt_linear *l, const mmt_ops *ops, mmt_arena *arena, float *y,
                               const float *xd, int dropped, int64_t M, int train) {
    mmt_lora *a = l->lora;
    int64_t out = l->out, in = l->in;
    double *norms = mmt_arena_alloc(arena, (size_t)out * sizeof(double), 64);
    float *k = scratch(arena, out), *inv = scratch(arena, out);
    float *base = scratch(arena, M * out), *lora = scratch(arena, M * out); // (M, out) each
    if (!norms || !k || !inv || !base || !lora) return MMT_STATUS_OUT_OF_MEMORY;
    nn_dora_row_norms(l, norms);
    for (int64_t o = 0; o < out; o++) {
        float n = (float)norms[o];
        k[o] = a->magnitude[o] / n;
        inv[o] = 1.0f / n;
    }
    if (dropped) {
        ops->matmul_fwd(base, xd, l->w, NULL, M, in, out);
    } else {
        for (int64_t i = 0; i < M; i++)
            for (int64_t o = 0; o < out; o++) base[i * out + o] = y[i * out + o] - (l->b ? l->b[o] : 0.0f);
    }
    ops->gemm(0, 1, M, out, a->r, 1.0f, a->saved_xa, a->r, a->b, a->r, 0.0f, lora, out);
    for (int64_t i = 0; i < M; i++)
        for (int64_t o = 0; o < out; o++) {
            float bs = base[i * out + o], ls = lora[i * out + o] * a->scaling;
            y[i * out + o] += (k[o] - 1.0f) * bs + k[o] * ls;
            base[i * out + o] = bs + ls; /* z: what the magnitude multiplies, over the norm */
        }
    a->saved_k = train ? k : NULL;
    a->saved_inv_norm = train ? inv : NULL;
    a->saved_z = train ? base : NULL;
    return MMT_OK;
}

/* Group g's LoRA and output IA3 on its rows of y (grouped_forward): xs its input rows, xa
 * scratch for its (m, r) product. */
static void group_adapter(const mmt_linear *l, const mmt_ops *ops, int64_t g, int64_t per, const float *const *xs_of,
                          float *const *xa_of, float *y) {
    const mmt_linear_group *gr = &l->groups[g];
    int64_t in = l->in, out = l->out, m = gr->n_seq * per;
    float *yg = y + gr->seq0 * per * out;
    if (gr->lora) {
        const mmt_lora *a = gr->lora;
        ops->gemm(0, 1, m, a->r, in, 1.0f, xs_of[g], in, a->a, in, 0.0f, xa_of[g], a->r);
        ops->gemm(0, 1, m, out, a->r, a->scaling, xa_of[g], a->r, a->b, a->r, 1.0f, yg, out);
    }
    if (gr->ia3 && gr->ia3_mode == MMT_IA3_OUTPUT)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < out; j++) yg[i * out + j] *= gr->ia3[j];
}

/* Whether group g runs alone with every thread: one thread only, or more than its share of
 * the rows (1/threads), which on one thread would leave the others waiting. */
static int group_alone(const mmt_linear *l, int64_t g, int64_t threads) {
    return threads == 1 || l->groups[g].n_seq * threads > l->group_batch;
}

/* The mixed-batch forward (see mmt_linear_group): base product once, then each group's
 * adapter on its rows exactly as a batch of that adapter alone computes it. */
static mmt_status grouped_forward(mmt_linear *l, const mmt_ops *ops, mmt_arena *arena, float *y, const float *x,
                                  int64_t M, const s8_input *pre) {
    int64_t in = l->in, out = l->out;
    if (l->lora || l->ia3_mode != MMT_IA3_NONE || l->group_batch < 1 || M % l->group_batch != 0)
        return mmt_fail(MMT_STATUS_INTERNAL, "linear: row groups on a layer with an adapter of its own, or %lld rows "
                                             "for %lld sequences", (long long)M, (long long)l->group_batch);
    int64_t per = M / l->group_batch;
    MMT_TRY(base_forward(l, ops, arena, y, x, M, 0, pre));
    /* First, serially, what runs threaded kernels of its own (IA3 on the input: a base
     * product over the group's rows) and the scratch; then each group's LoRA and output IA3,
     * the small groups side by side on the threads. A group is often one request's rows (50
     * for a ViT-B/32 image): its two rank-r products are too small to split over threads,
     * so one after another they left all but one core idle (a batch of 32 images over 32
     * int8 adapters ran at 0.90x one adapter's speed, 0.96x side by side). Nested in that
     * loop, ops' parallel regions run on one thread; a product's bits do not depend on the
     * thread count. Groups own disjoint rows of y. */
    const float **xs_of = mmt_arena_alloc(arena, (size_t)l->n_groups * sizeof *xs_of, 64);
    float **xa_of = mmt_arena_alloc(arena, (size_t)l->n_groups * sizeof *xa_of, 64);
    if (!xs_of || !xa_of) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t g = 0; g < l->n_groups; g++) {
        const mmt_linear_group *gr = &l->groups[g];
        int64_t r0 = gr->seq0 * per, m = gr->n_seq * per;
        if (gr->seq0 < 0 || gr->n_seq < 0 || r0 + m > M)
            return mmt_fail(MMT_STATUS_INTERNAL, "linear: row group outside the batch");
        xs_of[g] = x + r0 * in;
        xa_of[g] = NULL;
        if (gr->ia3 && gr->ia3_mode == MMT_IA3_INPUT) {
            /* (x * l) W^T + b: this group's rows need a product of their own */
            float *xs = scratch(arena, m * in);
            if (!xs) return MMT_STATUS_OUT_OF_MEMORY;
            const float *xg = xs_of[g];
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < in; j++) xs[i * in + j] = xg[i * in + j] * gr->ia3[j];
            MMT_TRY(base_forward(l, ops, arena, y + r0 * out, xs, m, 0, NULL));
            xs_of[g] = xs;
        }
        if (gr->lora && !(xa_of[g] = scratch(arena, m * gr->lora->r))) return MMT_STATUS_OUT_OF_MEMORY; // (m, r)
    }
    int64_t threads = 1, n_small = 0;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    for (int64_t g = 0; g < l->n_groups; g++) {
        if (group_alone(l, g, threads)) group_adapter(l, ops, g, per, xs_of, xa_of, y);
        else n_small++;
    }
    if (n_small == 0) return MMT_OK;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_small < threads ? (int)n_small : (int)threads)
#endif
    for (int64_t g = 0; g < l->n_groups; g++)
        if (!group_alone(l, g, threads)) group_adapter(l, ops, g, per, xs_of, xa_of, y);
    return MMT_OK;
}

/* nn_linear_forward with x perhaps already quantized (pre; used only where the base product
 * reads x itself, not IA3's scaled input). */
static mmt_status linear_forward(mmt_linear *l, const mmt_ops *ops, mmt_arena *arena, float *y, const float *x,
                                 int64_t M, int train, const s8_input *pre) {
    int64_t in = l->in, out = l->out;
    if (l->n_groups > 0) {
        if (train) return mmt_fail(MMT_STATUS_UNSUPPORTED, "linear: mixed-adapter batches are for inference only");
        return grouped_forward(l, ops, arena, y, x, M, pre);
    }
    const float *xin = x; // (M, in)
    if (l->ia3_mode == MMT_IA3_INPUT) {
        float *xs = scratch(arena, M * in);
        if (!xs) return MMT_STATUS_OUT_OF_MEMORY;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < in; j++) xs[i * in + j] = x[i * in + j] * l->ia3[j];
        xin = xs;
        l->saved_ia3 = train ? xs : NULL;
    }
    if (l->qw && (l->dw || (l->lora && l->lora->magnitude)))
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "linear: a quantized base weight can be neither trained nor used with DoRA");
    MMT_TRY(base_forward(l, ops, arena, y, xin, M, train, xin == x ? pre : NULL));
    if (l->lora) {
        mmt_lora *a = l->lora;
        const float *xd = xin;
        if (train && a->dropout > 0) {
            float *d = scratch(arena, M * in);
            if (!d) return MMT_STATUS_OUT_OF_MEMORY;
            dropout_apply(d, xin, M * in, a->dropout, a->dropout_seed);
            xd = d;
        }
        float *xa = scratch(arena, M * a->r); // (M, r)
        if (!xa) return MMT_STATUS_OUT_OF_MEMORY;
        ops->gemm(0, 1, M, a->r, in, 1.0f, xd, in, a->a, in, 0.0f, xa, a->r);
        a->saved_xa = xa;
        if (a->magnitude) MMT_TRY(dora_forward(l, ops, arena, y, xd, xd != xin, M, train));
        else ops->gemm(0, 1, M, out, a->r, a->scaling, xa, a->r, a->b, a->r, 1.0f, y, out);
        if (!train) a->saved_xa = NULL;
    }
    if (l->ia3_mode == MMT_IA3_OUTPUT) {
        if (train) {
            float *pre = scratch(arena, M * out);
            if (!pre) return MMT_STATUS_OUT_OF_MEMORY;
            memcpy(pre, y, (size_t)(M * out) * sizeof(float));
            l->saved_ia3 = pre;
        }
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < out; j++) y[i * out + j] *= l->ia3[j];
    }
    return MMT_OK;
}

mmt_status nn_linear_forward(mmt_linear *l, const mmt_ops *ops, mmt_arena *arena, float *y,
                             const float *x, int64_t M, int train) {
    return linear_forward(l, ops, arena, y, x, M, train, NULL);
}

mmt_status nn_linear_forward_shared(mmt_linear *const *ls, int n, const mmt_ops *ops, mmt_arena *arena,
                                    float *const *ys, const float *x, int64_t M, int train) {
    int share = n > 1;
    for (int j = 0; j < n && share; j++)
        share = runs_s8(ls[j], train) && ls[j]->ia3_mode != MMT_IA3_INPUT && ls[j]->in == ls[0]->in;
    mmt_arena_mark mark = mmt_arena_get_mark(arena);
    if (!share) {
        mmt_status s = MMT_OK;
        for (int j = 0; j < n && s == MMT_OK; j++) s = nn_linear_forward(ls[j], ops, arena, ys[j], x, M, train);
        if (!train) mmt_arena_rewind(arena, mark); /* inference keeps nothing */
        return s;
    }
    int8_t *xq = mmt_arena_alloc(arena, (size_t)(M * ls[0]->in), 64);
    float *xs = scratch(arena, M);
    if (!xq || !xs) return MMT_STATUS_OUT_OF_MEMORY;
    ops->s8_quantize_rows(xq, xs, x, M, ls[0]->in);
    s8_input pre = {xq, xs};
    mmt_status s = MMT_OK;
    for (int j = 0; j < n && s == MMT_OK; j++) s = linear_forward(ls[j], ops, arena, ys[j], x, M, train, &pre);
    mmt_arena_rewind(arena, mark);
    return s;
}

mmt_status nn_linear_backward(mmt_linear *l, const mmt_ops *ops, mmt_arena *arena, float *dx,
                              const float *dy, const float *x, int64_t M) {
    int64_t in = l->in, out = l->out;
    if (!x && nn_linear_reads_input(l))
        return mmt_fail(MMT_STATUS_INTERNAL, "linear backward: the forward's input was not kept");
    mmt_arena_mark mark = mmt_arena_get_mark(arena);
    mmt_status s = MMT_OK;
    const float *g = dy; // gradient at x W^T + b (+ LoRA), (M, out)
    if (l->ia3_mode == MMT_IA3_OUTPUT) {
        float *gs = scratch(arena, M * out);
        if (!gs) goto oom;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < out; j++) {
                float d = dy[i * out + j];
                gs[i * out + j] = d * l->ia3[j];
                if (l->dia3) l->dia3[j] += d * l->saved_ia3[i * out + j];
            }
        g = gs;
    }
    const float *xin = l->ia3_mode == MMT_IA3_INPUT ? l->saved_ia3 : x; // (M, in)
    /* The gradient at xin: straight into dx, or into scratch when IA3 scales the input. */
    float *dxin = dx;
    if (l->ia3_mode == MMT_IA3_INPUT && (dx || l->dia3)) {
        dxin = scratch(arena, M * in);
        if (!dxin) goto oom;
        memset(dxin, 0, (size_t)(M * in) * sizeof(float));
    }
    /* DoRA: the LoRA path and (without dropout) the base path see g scaled by k per column;
     * with dropout the base path splits into g W on x and (k - 1) g W on the dropped x. */
    mmt_lora *dora = l->lora && l->lora->magnitude ? l->lora : NULL;
    float *gk = NULL, *gk1 = NULL; // (M, out): g * k and g * (k - 1)
    if (dora) {
        assert(!l->dw);
        gk = scratch(arena, M * out);
        if (!gk) goto oom;
        for (int64_t i = 0; i < M; i++)
            for (int64_t o = 0; o < out; o++) gk[i * out + o] = g[i * out + o] * dora->saved_k[o];
        if (dora->dmagnitude) // dm (out) += column sums of g * z, over the norm
            for (int64_t o = 0; o < out; o++) {
                double sum = 0;
                for (int64_t i = 0; i < M; i++) sum += (double)g[i * out + o] * dora->saved_z[i * out + o];
                dora->dmagnitude[o] += (float)(sum * dora->saved_inv_norm[o]);
            }
        if (dora->dropout > 0 && dxin) {
            gk1 = scratch(arena, M * out);
            if (!gk1) goto oom;
            for (int64_t i = 0; i < M * out; i++) gk1[i] = gk[i] - g[i];
        }
        if (dora->dropout > 0) {
            ops->matmul_bwd(dxin, NULL, l->db, g, xin, l->w, M, in, out);
        } else {
            if (l->db) ops->matmul_bwd(NULL, NULL, l->db, g, xin, l->w, M, in, out);
            if (dxin) ops->matmul_bwd(dxin, NULL, NULL, gk, xin, l->w, M, in, out);
        }
    } else {
        base_backward(l, ops, dxin, l->dw, l->db, g, xin, M);
    }
    if (l->lora) {
        mmt_lora *a = l->lora;
        int64_t r = a->r;
        const float *gl = dora ? gk : g; // gradient at the LoRA branch's output, before scaling
        const float *xd = xin;
        if (a->dropout > 0 && a->da) { // the dropped input only feeds dA
            float *d = scratch(arena, M * in);
            if (!d) goto oom;
            dropout_apply(d, xin, M * in, a->dropout, a->dropout_seed);
            xd = d;
        }
        if (a->db) // dB (out, r) += s gl^T xa
            ops->gemm(1, 0, out, r, M, a->scaling, gl, out, a->saved_xa, r, 1.0f, a->db, r);
        if (a->da || dxin) {
            float *dxa = scratch(arena, M * r); // (M, r) = s gl B
            if (!dxa) goto oom;
            ops->gemm(0, 0, M, r, out, a->scaling, gl, out, a->b, r, 0.0f, dxa, r);
            if (a->da) ops->gemm(1, 0, r, in, M, 1.0f, dxa, r, xd, in, 1.0f, a->da, in);
            if (dxin) {
                if (a->dropout > 0) {
                    float *dxd = scratch(arena, M * in);
                    if (!dxd) goto oom;
                    ops->gemm(0, 0, M, in, r, 1.0f, dxa, r, a->a, in, 0.0f, dxd, in);
                    if (gk1) ops->gemm(0, 0, M, in, out, 1.0f, gk1, out, l->w, in, 1.0f, dxd, in);
                    float keep_scale = 1.0f / (1.0f - a->dropout);
                    for (int64_t i = 0; i < M * in; i++)
                        if (nn_dropout_keep(a->dropout_seed, (uint64_t)i, a->dropout)) dxin[i] += dxd[i] * keep_scale;
                } else {
                    ops->gemm(0, 0, M, in, r, 1.0f, dxa, r, a->a, in, 1.0f, dxin, in);
                }
            }
        }
    }
    if (l->ia3_mode == MMT_IA3_INPUT && dxin) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < in; j++) {
                float d = dxin[i * in + j];
                if (l->dia3) l->dia3[j] += d * x[i * in + j];
                if (dx) dx[i * in + j] += d * l->ia3[j];
            }
    }
    goto done;
oom:
    s = MMT_STATUS_OUT_OF_MEMORY;
done:
    mmt_arena_rewind(arena, mark);
    return s;
}

const mmt_packed_linear *nn_pack_set_add(mmt_pack_set *s, const float *w, int64_t out, int64_t in) {
    if (!s->items) {
        s->n++;
        s->floats += s->ops->matmul_pack(NULL, w, in, out);
        return NULL;
    }
    float *dst = s->panels + s->offset;
    s->offset += s->ops->matmul_pack(dst, w, in, out);
    s->items[s->filled] = (mmt_packed_linear){w, dst, s->ops};
    return &s->items[s->filled++];
}

mmt_status nn_pack_set_alloc(mmt_pack_set *s) {
    if (s->n == 0 || s->floats == 0) return MMT_OK;
    s->items = mmt_calloc((size_t)s->n, sizeof *s->items);
    s->panels = aligned_alloc(64, ((size_t)s->floats * sizeof(float) + 63) / 64 * 64);
    if (!s->items || !s->panels) {
        nn_pack_set_free(s);
        return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "prepacking the weights: %lld MiB", (long long)(s->floats >> 18));
    }
    return MMT_OK;
}

void nn_pack_set_free(mmt_pack_set *s) {
    mmt_free(s->items);
    free(s->panels);
    s->items = NULL, s->panels = NULL;
}
