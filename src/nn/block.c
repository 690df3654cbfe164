/* block.c — the pre-LN transformer block with its backward (see block.h). */
#include "nn/block.h"

#include <string.h>

#define ALLOC_F(ar, n) ((float *)mmt_arena_alloc((ar), (size_t)(n) * sizeof(float), 64))

/* full (B, V + T, C) = [the layer's V prefix rows (keys, or values when is_value); x (B, T, C)]. */
static void prefix_concat(const mmt_block *y, const float *x, float *full, int64_t B, int64_t T, int64_t C,
                          int is_value) {
    int64_t V = y->n_prefix, Tk = V + T;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t r = 0; r < V; r++)
            memcpy(full + (b * Tk + r) * C, y->prefix + r * y->prefix_stride + (is_value ? C : 0),
                   (size_t)C * sizeof(float));
        memcpy(full + (b * Tk + V) * C, x + b * T * C, (size_t)(T * C) * sizeof(float));
    }
}

/* The transpose of prefix_concat: dx (B, T, C) += the sequence rows of dfull; the layer's
 * prefix gradient (when trainable) += the prefix rows summed over the batch. */
static void prefix_split_grad(mmt_block *y, const float *dfull, float *dx, int64_t B, int64_t T, int64_t C,
                              int is_value) {
    int64_t V = y->n_prefix, Tk = V + T;
    for (int64_t b = 0; b < B; b++) {
        const float *src = dfull + (b * Tk + V) * C;
        float *dst = dx + b * T * C;
        for (int64_t j = 0; j < T * C; j++) dst[j] += src[j];
        if (!y->dprefix) continue;
        for (int64_t r = 0; r < V; r++) {
            float *g = y->dprefix + r * y->prefix_stride + (is_value ? C : 0);
            const float *d = dfull + (b * Tk + r) * C;
            for (int64_t j = 0; j < C; j++) g[j] += d[j];
        }
    }
}

mmt_status nn_kv_cache_init(mmt_kv_cache *cache, mmt_arena *ar, int64_t B, int64_t cap, int64_t C) {
    if (B < 1 || cap < 1 || C < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "a KV cache needs B, positions and channels >= 1 (%lld, %lld, %lld)",
                        (long long)B, (long long)cap, (long long)C);
    cache->k = ALLOC_F(ar, B * cap * C);
    cache->v = ALLOC_F(ar, B * cap * C);
    cache->cap = cap;
    cache->len = 0;
    cache->row_len = NULL;
    return cache->k && cache->v ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
}

/* The first n_bidir positions of a row that attend both ways (the rest: causally). */
static int64_t bidir_rows(const mmt_block_config *c, int64_t T) {
    if (!c->causal || c->n_bidir <= 0) return 0;
    return c->n_bidir < T ? c->n_bidir : T;
}

/* With V prefix rows in front, keys are counted from the first prefix row and the
 * bidirectional block covers KEYS 0..nb-1 (the prefix and the first nb - V positions), as
 * transformers' create_causal_mask places block_sequence_ids without the cache offset:
 * query i sees key k iff k <= i + V, or i < nb and k < nb. So the queries before q0 =
 * max(0, nb - V) see exactly keys 0..nb-1 (no mask), and the others every key up to
 * i + V (causal). Without a prefix: the block's queries see the block, the rest causally. */
static int64_t bidir_q0(int64_t V, int64_t nb) { return nb > V ? nb - V : 0; }

/* Floats of the attention probabilities of one row with nb bidirectional positions. */
static int64_t bidir_att_floats(const mmt_block_config *c, int64_t T, int64_t V, int64_t nb) {
    int64_t q0 = bidir_q0(V, nb);
    return c->heads * (q0 * nb + (T - q0) * (V + T));
}

/* One row's attention with a bidirectional block: q, a (T, C) at positions 0..T-1, keys and
 * values (V + T, C) with the V prefix rows first; the masks above. att: the row's
 * probabilities, the block's queries first. */
static void bidir_attend(const mmt_block_config *c, const mmt_ops *ops, float *a, float *att, const float *q,
                         const float *k, const float *v, int64_t T, int64_t V, int64_t nb) {
    int64_t C = c->hidden, H = c->heads, q0 = bidir_q0(V, nb);
    if (q0 > 0) ops->attention_kv_fwd(a, att, q, k, v, 1, q0, nb, H, C / H, 0, 0);
    if (q0 < T)
        ops->attention_kv_fwd(a + q0 * C, att + H * q0 * nb, q + q0 * C, k, v, 1, T - q0, V + T, H, C / H, 1, V + q0);
}

/* Attention over a cache whose rows hold different lengths (kv->row_len): one new position
 * per row, appended after that row's keys, attending to all of them. Each row makes the same
 * op call a cache of its own length would (the uniform path below with T = 1), so a row's
 * result does not depend on the other rows. */
static mmt_status ragged_attention(mmt_block *y, const mmt_block_config *c, const mmt_ops *ops, mmt_arena *ar,
                                   int64_t B, int64_t T) {
    mmt_kv_cache *kv = y->cache;
    int64_t C = c->hidden, H = c->heads, most = 0;
    if (T != 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "a KV cache with rows of different lengths takes one position "
                        "per row, not %lld", (long long)T);
    for (int64_t b = 0; b < B; b++) {
        if (kv->row_len[b] < 1 || kv->row_len[b] + 1 > kv->cap)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "KV cache row %lld: %lld positions cached, room for %lld",
                            (long long)b, (long long)kv->row_len[b], (long long)kv->cap);
        if (kv->row_len[b] > most) most = kv->row_len[b];
    }
    float *att = ALLOC_F(ar, H * (most + 1));
    if (!att) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t b = 0; b < B; b++) {
        int64_t start = kv->row_len[b];
        float *kb = kv->k + b * kv->cap * C, *vb = kv->v + b * kv->cap * C;
        memcpy(kb + start * C, y->k_out + b * C, (size_t)C * sizeof(float));
        memcpy(vb + start * C, y->v_out + b * C, (size_t)C * sizeof(float));
        ops->attention_kv_fwd(y->a + b * C, att, y->q_out + b * C, kb, vb, 1, 1, start + 1, H, C / H, c->causal, start);
    }
    return MMT_OK;
}

/* Attention over the cache: appends k_new, v_new (B, T, C) after the cached rows (the prefix
 * first, when the cache is empty) and attends q (B, T, C) to every row so far. */
static mmt_status cached_attention(mmt_block *y, const mmt_block_config *c, const mmt_ops *ops, mmt_arena *ar,
                                   int64_t B, int64_t T) {
    mmt_kv_cache *kv = y->cache;
    if (kv->row_len) return ragged_attention(y, c, ops, ar, B, T);
    int64_t C = c->hidden, H = c->heads, V = y->n_prefix;
    int64_t start = kv->len == 0 ? V : kv->len;
    if (c->causal && c->n_bidir > 0 && start - V < c->n_bidir && (start != V || T < c->n_bidir))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the %lld bidirectional positions must enter a KV cache in its "
                        "first call (cached %lld, now %lld)", (long long)c->n_bidir, (long long)(start - V), (long long)T);
    if (start + T > kv->cap)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "KV cache full: %lld positions cached, %lld more, room for %lld",
                        (long long)start, (long long)T, (long long)kv->cap);
    for (int64_t b = 0; b < B; b++) {
        float *kb = kv->k + b * kv->cap * C, *vb = kv->v + b * kv->cap * C;
        for (int64_t r = 0; kv->len == 0 && r < V; r++) {
            memcpy(kb + r * C, y->prefix + r * y->prefix_stride, (size_t)C * sizeof(float));
            memcpy(vb + r * C, y->prefix + r * y->prefix_stride + C, (size_t)C * sizeof(float));
        }
        memcpy(kb + start * C, y->k_out + b * T * C, (size_t)(T * C) * sizeof(float));
        memcpy(vb + start * C, y->v_out + b * T * C, (size_t)(T * C) * sizeof(float));
    }
    int64_t Tk = start + T, nb = start == V ? bidir_rows(c, T) : 0;
    float *att = ALLOC_F(ar, nb > 0 ? bidir_att_floats(c, T, V, nb) : H * T * Tk);
    if (!att) return MMT_STATUS_OUT_OF_MEMORY;
    /* one sequence at a time: the cache's rows are cap apart, not Tk */
    for (int64_t b = 0; b < B; b++) {
        float *a = y->a + b * T * C, *kb = kv->k + b * kv->cap * C, *vb = kv->v + b * kv->cap * C;
        const float *q = y->q_out + b * T * C;
        if (nb > 0) bidir_attend(c, ops, a, att, q, kb, vb, T, V, nb);
        else ops->attention_kv_fwd(a, att, q, kb, vb, 1, T, Tk, H, C / H, c->causal, start);
    }
    kv->len = Tk;
    return MMT_OK;
}

/* Attention with per-row key counts and prefixes (y->row_keys / row_prefix): each row on its
 * own, its keys [its prefix rows; its first row_keys[b] positions]. */
static mmt_status row_attention(mmt_block *y, const mmt_block_config *c, const mmt_ops *ops, mmt_arena *ar,
                                int64_t B, int64_t T) {
    int64_t C = c->hidden, H = c->heads, Vmax = 0;
    for (int64_t b = 0; y->row_n_prefix && b < B; b++)
        if (y->row_prefix[b] && y->row_n_prefix[b] > Vmax) Vmax = y->row_n_prefix[b];
    float *kf = ALLOC_F(ar, (Vmax + T) * C), *vf = ALLOC_F(ar, (Vmax + T) * C), *att = ALLOC_F(ar, H * T * (Vmax + T));
    if (!kf || !vf || !att) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t b = 0; b < B; b++) {
        const float *pre = y->row_prefix ? y->row_prefix[b] : NULL;
        int64_t V = pre && y->row_n_prefix ? y->row_n_prefix[b] : 0;
        int64_t keys = y->row_keys && y->row_keys[b] > 0 && y->row_keys[b] < T ? y->row_keys[b] : T;
        for (int64_t r = 0; r < V; r++) {
            memcpy(kf + r * C, pre + r * y->prefix_stride, (size_t)C * sizeof(float));
            memcpy(vf + r * C, pre + r * y->prefix_stride + C, (size_t)C * sizeof(float));
        }
        memcpy(kf + V * C, y->k_out + b * T * C, (size_t)(keys * C) * sizeof(float));
        memcpy(vf + V * C, y->v_out + b * T * C, (size_t)(keys * C) * sizeof(float));
        ops->attention_kv_fwd(y->a + b * T * C, att, y->q_out + b * T * C, kf, vf, 1, T, V + keys, H, C / H,
                              c->causal, V);
    }
    return MMT_OK;
}

/* Selective recomputation (block.h `recompute`): whether forward leaves att and f to scratch. */
static int drops_att(const mmt_block *y, const mmt_block_config *c, int64_t T) {
    return y->recompute && y->n_prefix == 0 && bidir_rows(c, T) == 0 && !y->cache && !y->row_keys && !y->row_prefix;
}
static int drops_f(const mmt_block *y) {
    const mmt_linear *l = &y->fc1;
    return y->recompute && !l->dw && !l->db && !l->lora && !l->ia3;
}

/* x_out (B, T, C) = layer(x_in). With train, the activations backward needs are allocated
 * from `ar` and recorded in y, and those it does not need from tmp when there is one;
 * otherwise `ar` holds scratch the caller rewinds. */
static mmt_status block_forward(mmt_block *y, const mmt_block_config *c, const mmt_ops *ops, mmt_arena *ar,
                                mmt_arena *tmp, const float *x_in, float *x_out, int64_t B, int64_t T, uint64_t seed,
                                int64_t index, int train) {
    int64_t C = c->hidden, I = c->intermediate, H = c->heads, N = B * T;
    int64_t V = y->n_prefix, Tk = T + V, nb = bidir_rows(c, T);
    float eps = c->eps;
    int post = c->post_ln;
    y->k_full = y->v_full = NULL;
    y->h1 = y->h2 = y->r1 = y->r2 = NULL;
    if (y->cache && train) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "a block with a KV cache does not train");
    int per_row = y->row_keys || y->row_prefix;
    if (per_row && (train || V > 0 || y->cache || nb > 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "per-row keys and prefixes are for inference without a cache, "
                                                     "a bidirectional block or the block's own prefix");
    int64_t att_n = nb > 0 ? B * bidir_att_floats(c, T, V, nb) : B * H * T * Tk;
    if (y->cache || per_row) att_n = 1; /* per sequence (cached_attention, row_attention) */
    if (V > 0 && !y->cache) {
        y->k_full = ALLOC_F(ar, B * Tk * C);
        y->v_full = ALLOC_F(ar, B * Tk * C);
        if (!y->k_full || !y->v_full) return MMT_STATUS_OUT_OF_MEMORY;
    }
    y->mean1 = ALLOC_F(ar, N);
    y->rstd1 = ALLOC_F(ar, N);
    y->q_out = ALLOC_F(ar, N * C);
    y->k_out = ALLOC_F(ar, N * C);
    y->v_out = ALLOC_F(ar, N * C);
    mmt_arena *tmp_or_ar = tmp ? tmp : ar;
    y->att = ALLOC_F(drops_att(y, c, T) ? tmp_or_ar : ar, att_n);
    y->a = ALLOC_F(nn_linear_reads_input(&y->o) ? ar : tmp_or_ar, N * C);
    y->x_mid = ALLOC_F(ar, N * C);
    y->mean2 = ALLOC_F(ar, N);
    y->rstd2 = ALLOC_F(ar, N);
    y->f = ALLOC_F(drops_f(y) ? tmp_or_ar : ar, N * I);
    y->g = ALLOC_F(nn_linear_reads_input(&y->fc2) ? ar : tmp_or_ar, N * I);
    /* post-LN backward reads the sums r1, r2; pre-LN recomputes h1, h2 when it needs them */
    float **extra1 = post ? &y->r1 : &y->h1, **extra2 = post ? &y->r2 : &y->h2;
    *extra1 = ALLOC_F(post ? ar : tmp_or_ar, N * C);
    *extra2 = ALLOC_F(post ? ar : tmp_or_ar, N * C);
    if (!y->mean1 || !y->rstd1 || !*extra1 || !y->q_out || !y->k_out || !y->v_out || !y->att || !y->a ||
        !y->x_mid || !y->mean2 || !y->rstd2 || !*extra2 || !y->f || !y->g)
        return MMT_STATUS_OUT_OF_MEMORY;
    mmt_linear *lin[6] = {&y->q, &y->k, &y->v, &y->o, &y->fc1, &y->fc2};
    for (int j = 0; j < 6; j++)
        if (lin[j]->lora) lin[j]->lora->dropout_seed = nn_dropout_seed(seed, (uint64_t)index, (uint64_t)j);
    const float *qkv_in = x_in;
    if (!post) {
        ops->layernorm_fwd(y->h1, y->mean1, y->rstd1, x_in, y->ln1_w, y->ln1_b, N, C, eps);
        qkv_in = y->h1;
    }
    mmt_linear *const qkv[3] = {&y->q, &y->k, &y->v};
    float *const qkv_out[3] = {y->q_out, y->k_out, y->v_out};
    MMT_TRY(nn_linear_forward_shared(qkv, 3, ops, ar, qkv_out, qkv_in, N, train));
    if (y->cache) {
        MMT_TRY(cached_attention(y, c, ops, ar, B, T));
    } else if (per_row) {
        MMT_TRY(row_attention(y, c, ops, ar, B, T));
    } else {
        const float *k = y->k_out, *v = y->v_out;
        if (V > 0) {
            prefix_concat(y, y->k_out, y->k_full, B, T, C, 0);
            prefix_concat(y, y->v_out, y->v_full, B, T, C, 1);
            k = y->k_full;
            v = y->v_full;
        }
        if (nb > 0) {
            for (int64_t b = 0; b < B; b++)
                bidir_attend(c, ops, y->a + b * T * C, y->att + b * bidir_att_floats(c, T, V, nb), y->q_out + b * T * C,
                             k + b * Tk * C, v + b * Tk * C, T, V, nb);
        } else if (V > 0) {
            ops->attention_kv_fwd(y->a, y->att, y->q_out, k, v, B, T, Tk, H, C / H, c->causal, V);
        } else {
            ops->attention_fwd(y->a, y->att, y->q_out, k, v, B, T, H, C / H, c->causal);
        }
    }
    /* attention half: pre-LN x_mid = x_in + o; post-LN r1 = x_in + o, x_mid = ln1(r1) */
    float *sum1 = post ? y->r1 : y->x_mid;
    MMT_TRY(nn_linear_forward(&y->o, ops, ar, sum1, y->a, N, train));
    if (y->adapter_attn) MMT_TRY(nn_bottleneck_forward(y->adapter_attn, ops, ar, sum1, N, train));
    ops->add_fwd(sum1, sum1, x_in, N * C);
    const float *fc1_in = y->x_mid;
    if (post) {
        ops->layernorm_fwd(y->x_mid, y->mean1, y->rstd1, y->r1, y->ln1_w, y->ln1_b, N, C, eps);
    } else {
        ops->layernorm_fwd(y->h2, y->mean2, y->rstd2, y->x_mid, y->ln2_w, y->ln2_b, N, C, eps);
        fc1_in = y->h2;
    }
    MMT_TRY(nn_linear_forward(&y->fc1, ops, ar, y->f, fc1_in, N, train));
    if (c->act == MMT_BLOCK_GELU) ops->gelu_fwd(y->g, y->f, N * I);
    else ops->quick_gelu_fwd(y->g, y->f, N * I);
    /* MLP half: pre-LN x_out = x_mid + fc2; post-LN r2 = x_mid + fc2, x_out = ln2(r2) */
    float *sum2 = post ? y->r2 : x_out;
    MMT_TRY(nn_linear_forward(&y->fc2, ops, ar, sum2, y->g, N, train));
    if (y->adapter_mlp) MMT_TRY(nn_bottleneck_forward(y->adapter_mlp, ops, ar, sum2, N, train));
    ops->add_fwd(sum2, sum2, y->x_mid, N * C);
    if (post) ops->layernorm_fwd(x_out, y->mean2, y->rstd2, y->r2, y->ln2_w, y->ln2_b, N, C, eps);
    return MMT_OK;
}

mmt_status nn_block_forward(mmt_block *y, const mmt_block_config *c, const mmt_ops *ops, mmt_arena *ar,
                            const float *x_in, float *x_out, int64_t B, int64_t T, uint64_t seed, int64_t index,
                            int train) {
    mmt_arena *tmp = train && y->scratch && y->scratch != ar ? y->scratch : NULL;
    if (!tmp) return block_forward(y, c, ops, ar, NULL, x_in, x_out, B, T, seed, index, train);
    mmt_arena_mark mark = mmt_arena_get_mark(tmp);
    mmt_status s = block_forward(y, c, ops, ar, tmp, x_in, x_out, B, T, seed, index, train);
    mmt_arena_rewind(tmp, mark);
    if (!c->post_ln) y->h1 = y->h2 = NULL;
    if (!nn_linear_reads_input(&y->o)) y->a = NULL;
    if (!nn_linear_reads_input(&y->fc2)) y->g = NULL;
    if (drops_att(y, c, T)) y->att = NULL;
    if (drops_f(y)) y->f = NULL;
    return s;
}

/* A pre-LN layernorm's output when forward did not keep it: recomputed from its input into
 * scratch from `ar`, the same numbers (layernorm_fwd is deterministic); NULL when none of the
 * n linears reading it needs it. */
static mmt_status layernorm_output(const mmt_ops *ops, mmt_arena *ar, const float *kept, const float *x,
                                   const float *w, const float *b, int64_t N, int64_t C, float eps,
                                   mmt_linear *const *readers, int n, const float **out) {
    *out = kept;
    int need = 0;
    for (int j = 0; j < n; j++) need |= nn_linear_reads_input(readers[j]);
    if (kept || !need) return MMT_OK;
    float *h = ALLOC_F(ar, N * C), *mean = ALLOC_F(ar, N), *rstd = ALLOC_F(ar, N);
    if (!h || !mean || !rstd) return MMT_STATUS_OUT_OF_MEMORY;
    ops->layernorm_fwd(h, mean, rstd, x, w, b, N, C, eps);
    *out = h;
    return MMT_OK;
}

/* *dx_in (N, C) = the gradient at a bottleneck adapter's input given dy at its output, in
 * scratch from `ar`; without an adapter, dy itself. */
static mmt_status adapter_backward(mmt_bottleneck *bn, const mmt_ops *ops, mmt_arena *ar, const float *dy,
                                   int64_t N, const float **dx_in) {
    *dx_in = dy;
    if (!bn) return MMT_OK;
    float *d = ALLOC_F(ar, N * bn->dim);
    if (!d) return MMT_STATUS_OUT_OF_MEMORY;
    memset(d, 0, (size_t)(N * bn->dim) * sizeof(float));
    MMT_TRY(nn_bottleneck_backward(bn, ops, ar, d, dy, N));
    *dx_in = d;
    return MMT_OK;
}

/* dq, dk, dv (N, C) = the gradients of the attention's inputs given s->da, from the forward's
 * saved probabilities (prefix gradients go to y->dprefix). */
static mmt_status attention_backward(mmt_block *y, const mmt_block_config *c, const mmt_ops *ops, mmt_arena *ar,
                                     const mmt_block_grads *s, int64_t B, int64_t T) {
    int64_t C = c->hidden, H = c->heads, N = B * T, V = y->n_prefix, Tk = T + V, nb = bidir_rows(c, T);
    size_t nc = (size_t)(N * C) * sizeof(float);
    memset(s->dq, 0, nc);
    memset(s->dk, 0, nc);
    memset(s->dv, 0, nc);
    if (V == 0 && nb == 0) {
        const float *att = y->att;
        if (!att) { /* selective recomputation: the probabilities again, from the kept q, k, v */
            float *p = ALLOC_F(ar, B * H * T * T), *out = ALLOC_F(ar, N * C);
            if (!p || !out) return MMT_STATUS_OUT_OF_MEMORY;
            ops->attention_fwd(out, p, y->q_out, y->k_out, y->v_out, B, T, H, C / H, c->causal);
            att = p;
        }
        ops->attention_bwd(s->dq, s->dk, s->dv, s->datt, s->da, y->q_out, y->k_out, y->v_out, att, B, T, H, C / H,
                           c->causal);
        return MMT_OK;
    }
    if (!y->att) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "block backward: the attention probabilities were not kept");
    float *dk = s->dk, *dv = s->dv;
    const float *k = y->k_out, *v = y->v_out;
    if (V > 0) {
        size_t nk = (size_t)(B * Tk * C) * sizeof(float);
        dk = mmt_arena_alloc(ar, nk, 64);
        dv = mmt_arena_alloc(ar, nk, 64);
        if (!dk || !dv) return MMT_STATUS_OUT_OF_MEMORY;
        memset(dk, 0, nk);
        memset(dv, 0, nk);
        k = y->k_full;
        v = y->v_full;
    }
    if (nb == 0) {
        ops->attention_kv_bwd(s->dq, dk, dv, s->datt, s->da, y->q_out, k, v, y->att, B, T, Tk, H, C / H, c->causal, V);
    } else {
        for (int64_t b = 0; b < B; b++) { /* as bidir_attend: the block's queries, then the others */
            const float *att = y->att + b * bidir_att_floats(c, T, V, nb), *q = y->q_out + b * T * C;
            const float *kb = k + b * Tk * C, *vb = v + b * Tk * C, *da = s->da + b * T * C;
            float *dq = s->dq + b * T * C, *dkb = dk + b * Tk * C, *dvb = dv + b * Tk * C;
            int64_t q0 = bidir_q0(V, nb);
            if (q0 > 0) ops->attention_kv_bwd(dq, dkb, dvb, s->datt, da, q, kb, vb, att, 1, q0, nb, H, C / H, 0, 0);
            if (q0 < T)
                ops->attention_kv_bwd(dq + q0 * C, dkb, dvb, s->datt, da + q0 * C, q + q0 * C, kb, vb, att + H * q0 * nb, 1,
                                      T - q0, V + T, H, C / H, 1, V + q0);
        }
    }
    if (V > 0) {
        prefix_split_grad(y, dk, s->dk, B, T, C, 0);
        prefix_split_grad(y, dv, s->dv, B, T, C, 1);
    }
    return MMT_OK;
}

/* dx_in (N, C) += gradient given dx_out; parameter gradients +=. dx_in may be NULL. */
mmt_status nn_block_backward(mmt_block *y, const mmt_block_config *c, const mmt_ops *ops, mmt_arena *ar,
                             const mmt_block_grads *s, const float *x_in, const float *dx_out, float *dx_in,
                             int64_t B, int64_t T) {
    int64_t C = c->hidden, I = c->intermediate, N = B * T;
    size_t nc = (size_t)(N * C) * sizeof(float), ni = (size_t)(N * I) * sizeof(float);
    int post = c->post_ln;
    /* MLP half. pre-LN: x_out = x_mid + fc2(act(fc1(ln2(x_mid)))); post-LN: x_out = ln2(r2),
     * r2 = x_mid + fc2(act(fc1(x_mid))). s->dmid collects the gradient at x_mid. */
    if (post) {
        memset(s->dmid, 0, nc);
        ops->layernorm_bwd(s->dmid, y->dln2_w, y->dln2_b, dx_out, y->r2, y->mean2, y->rstd2, y->ln2_w, N, C);
        dx_out = s->dmid; /* the gradient at r2, which is also x_mid's through the residual */
    } else {
        memcpy(s->dmid, dx_out, nc);
    }
    memset(s->dg, 0, ni);
    const float *dfc2;
    MMT_TRY(adapter_backward(y->adapter_mlp, ops, ar, dx_out, N, &dfc2));
    MMT_TRY(nn_linear_backward(&y->fc2, ops, ar, s->dg, dfc2, y->g, N));
    const float *f = y->f;
    if (!f) { /* selective recomputation: fc1's output again, from x_mid (pre-LN: through layernorm2) */
        float *fr = ALLOC_F(ar, N * I);
        const float *in = y->x_mid;
        if (!fr) return MMT_STATUS_OUT_OF_MEMORY;
        if (!post) {
            float *h = ALLOC_F(ar, N * C), *mean = ALLOC_F(ar, N), *rstd = ALLOC_F(ar, N);
            if (!h || !mean || !rstd) return MMT_STATUS_OUT_OF_MEMORY;
            ops->layernorm_fwd(h, mean, rstd, y->x_mid, y->ln2_w, y->ln2_b, N, C, c->eps);
            in = h;
        }
        MMT_TRY(nn_linear_forward(&y->fc1, ops, ar, fr, in, N, 1));
        f = fr;
    }
    memset(s->df, 0, ni);
    if (c->act == MMT_BLOCK_GELU) ops->gelu_bwd(s->df, s->dg, f, N * I);
    else ops->quick_gelu_bwd(s->df, s->dg, f, N * I);
    if (post) {
        MMT_TRY(nn_linear_backward(&y->fc1, ops, ar, s->dmid, s->df, y->x_mid, N));
    } else {
        memset(s->dh, 0, nc);
        const float *h2;
        mmt_linear *fc1 = &y->fc1;
        MMT_TRY(layernorm_output(ops, ar, y->h2, y->x_mid, y->ln2_w, y->ln2_b, N, C, c->eps, &fc1, 1, &h2));
        MMT_TRY(nn_linear_backward(&y->fc1, ops, ar, s->dh, s->df, h2, N));
        ops->layernorm_bwd(s->dmid, y->dln2_w, y->dln2_b, s->dh, y->x_mid, y->mean2, y->rstd2, y->ln2_w, N, C);
    }
    /* attention half. pre-LN: x_mid = x_in + o(attention(q, k, v of ln1(x_in))); post-LN:
     * x_mid = ln1(r1), r1 = x_in + o(attention(q, k, v of x_in)). dsum: the gradient at the sum. */
    const float *dsum = s->dmid;
    if (post) {
        memset(s->dh, 0, nc);
        ops->layernorm_bwd(s->dh, y->dln1_w, y->dln1_b, s->dmid, y->r1, y->mean1, y->rstd1, y->ln1_w, N, C);
        dsum = s->dh;
    }
    memset(s->da, 0, nc);
    const float *dout_proj;
    MMT_TRY(adapter_backward(y->adapter_attn, ops, ar, dsum, N, &dout_proj));
    MMT_TRY(nn_linear_backward(&y->o, ops, ar, s->da, dout_proj, y->a, N));
    MMT_TRY(attention_backward(y, c, ops, ar, s, B, T));
    if (post) { /* q, k, v read x_in itself: their gradients and the residual's go straight to dx_in */
        if (dx_in) ops->add_fwd(dx_in, dx_in, dsum, N * C);
        MMT_TRY(nn_linear_backward(&y->q, ops, ar, dx_in, s->dq, x_in, N));
        MMT_TRY(nn_linear_backward(&y->k, ops, ar, dx_in, s->dk, x_in, N));
        MMT_TRY(nn_linear_backward(&y->v, ops, ar, dx_in, s->dv, x_in, N));
        return MMT_OK;
    }
    float *dh1 = dx_in || y->dln1_w ? s->dh : NULL;
    if (dh1) memset(dh1, 0, nc);
    const float *h1;
    mmt_linear *const qkv[3] = {&y->q, &y->k, &y->v};
    MMT_TRY(layernorm_output(ops, ar, y->h1, x_in, y->ln1_w, y->ln1_b, N, C, c->eps, qkv, 3, &h1));
    MMT_TRY(nn_linear_backward(&y->q, ops, ar, dh1, s->dq, h1, N));
    MMT_TRY(nn_linear_backward(&y->k, ops, ar, dh1, s->dk, h1, N));
    MMT_TRY(nn_linear_backward(&y->v, ops, ar, dh1, s->dv, h1, N));
    if (dh1) {
        /* layernorm_bwd accumulates into dx_in; the residual path adds dmid. */
        if (dx_in) {
            ops->add_fwd(dx_in, dx_in, s->dmid, N * C);
            ops->layernorm_bwd(dx_in, y->dln1_w, y->dln1_b, dh1, x_in, y->mean1, y->rstd1, y->ln1_w, N, C);
        } else {
            ops->layernorm_bwd(NULL, y->dln1_w, y->dln1_b, dh1, x_in, y->mean1, y->rstd1, y->ln1_w, N, C);
        }
    }
    return MMT_OK;
}

mmt_status nn_block_grads_alloc(mmt_arena *ar, const mmt_block_config *c, int64_t B, int64_t T, int64_t n_prefix,
                                mmt_block_grads *s) {
    int64_t N = B * T, C = c->hidden, I = c->intermediate, Tk = T + n_prefix;
    s->dh = ALLOC_F(ar, N * C);
    s->dq = ALLOC_F(ar, N * C);
    s->dk = ALLOC_F(ar, N * C);
    s->dv = ALLOC_F(ar, N * C);
    s->da = ALLOC_F(ar, N * C);
    s->datt = ALLOC_F(ar, B * c->heads * T * Tk);
    s->df = ALLOC_F(ar, N * I);
    s->dg = ALLOC_F(ar, N * I);
    s->dmid = ALLOC_F(ar, N * C);
    if (!s->dh || !s->dq || !s->dk || !s->dv || !s->da || !s->datt || !s->df || !s->dg || !s->dmid)
        return MMT_STATUS_OUT_OF_MEMORY;
    return MMT_OK;
}

int nn_block_has_grads(const mmt_block *y) {
    return nn_linear_has_grads(&y->q) || nn_linear_has_grads(&y->k) || nn_linear_has_grads(&y->v) ||
           nn_linear_has_grads(&y->o) || nn_linear_has_grads(&y->fc1) || nn_linear_has_grads(&y->fc2) ||
           nn_bottleneck_has_grads(y->adapter_attn) || nn_bottleneck_has_grads(y->adapter_mlp) ||
           y->dln1_w || y->dln2_w || y->dprefix;
}

void nn_block_weights_pack(mmt_block_weights *w, mmt_pack_set *s, int64_t hidden, int64_t intermediate) {
    const float *const lw[6] = {w->q_w, w->k_w, w->v_w, w->out_w, w->fc1_w, w->fc2_w};
    for (int j = 0; j < 6; j++) {
        if (w->qw[j] || !lw[j]) continue;
        const mmt_packed_linear *p = nn_pack_set_add(s, lw[j], j == 4 ? intermediate : hidden, j == 5 ? intermediate : hidden);
        if (p) w->packed[j] = p;
    }
}

void nn_block_init(mmt_block *y, const mmt_block_weights *w, int64_t hidden, int64_t intermediate) {
    memset(y, 0, sizeof *y);
    const float *const lw[6] = {w->q_w, w->k_w, w->v_w, w->out_w, w->fc1_w, w->fc2_w};
    const float *const lb[6] = {w->q_b, w->k_b, w->v_b, w->out_b, w->fc1_b, w->fc2_b};
    mmt_linear *lin[6] = {&y->q, &y->k, &y->v, &y->o, &y->fc1, &y->fc2};
    for (int j = 0; j < 6; j++) {
        lin[j]->w = lw[j];
        lin[j]->qw = w->qw[j];
        lin[j]->packed = w->packed[j];
        lin[j]->b = lb[j];
        lin[j]->in = j == 5 ? intermediate : hidden;
        lin[j]->out = j == 4 ? intermediate : hidden;
    }
    y->ln1_w = w->ln1_w;
    y->ln1_b = w->ln1_b;
    y->ln2_w = w->ln2_w;
    y->ln2_b = w->ln2_b;
}
