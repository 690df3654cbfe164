/*
 * adamw8bit.c — bitsandbytes' AdamW8bit: blockwise 8-bit moments, float32 moments for small
 * tensors, checkpoint export/import (see adamw8bit.h).
 *
 * Reference: bitsandbytes 0.50.2, optim/adamw.py AdamW8bit -> optim/optimizer.py
 * Optimizer2State (init_state: uint8 state1/state2 with qmap1 = create_dynamic_map(signed=
 * True), qmap2 = create_dynamic_map(signed=False), absmax1/absmax2 float32 per 256-block,
 * all zero; numel < min_8bit_size: float32 state1/state2) -> update_step ->
 * functional.optimizer_update_8bit_blockwise / optimizer_update_32bit -> on the CPU
 * backends/cpu/ops.py _optimizer_update_8bit_blockwise_cpu / _optimizer_update_32bit_cpu,
 * with gnorm_scale 1, max_unorm 0 and skip_zeros off (AdamW8bit's settings). Those are
 * torch ops in float32; Python computes the scalars in double and each op rounds its scalar
 * to float32. Per element, with c1 = 1 - beta1^t and c2 = sqrt(1 - beta2^t):
 *
 *   8-bit tensors (_optimizer_update_8bit_blockwise_cpu):
 *     m, v = dequantize_blockwise(state1, absmax1, qmap1), (state2, absmax2, qmap2)
 *     m = m * beta1 + (1 - beta1) * g       mul_ then add_(alpha): torch's add is an fma
 *     v = v * beta2 + (1 - beta2) * g * g   mul_ then addcmul_: fma((1 - beta2) * g, g, .)
 *     denom = sqrt(v) / c2 + eps
 *     p = p * (1 - lr * wd)                 only when wd > 0
 *     p = p + ((-lr / c1) * m) / denom      addcdiv_
 *     state1, absmax1 = quantize_blockwise(m, qmap1); state2, absmax2 = (v, qmap2)
 *   float32 tensors (_optimizer_update_32bit_cpu):
 *     m, v as above, in place
 *     p = p * (1 - lr * wd)                 only when wd > 0
 *     p = fma(m / (sqrt(v) + eps * c2), (-lr * c2) / c1, p)    add_(update, alpha)
 *
 * Note the two paths place eps differently (bnb's own inconsistency, kept). Moments do not
 * depend on sqrt, so they match bitsandbytes bit for bit; torch's CPU sqrt (MKL) is off by
 * an ulp on some inputs where ours is correctly rounded, so parameters agree to about an ulp
 * of the update. Quantization is quant/blockwise8.c, bit-identical to bnb's.
 *
 * The 8-bit step works a chunk of blocks at a time: dequantize into a small scratch buffer,
 * update, requantize (blocks are independent, so this equals bnb's whole-tensor passes) —
 * the states never exist in float32 beyond one chunk. The elementwise loops are here rather
 * than in an ops/ table entry because no backend but the CPU has 8-bit states.
 * fmaf is written where torch fuses; no other product feeds an addition, so a compiler that
 * contracts a*b+c finds nothing to fuse and the bits do not depend on the build.
 */
#include "train/adamw8bit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "quant/blockwise8.h"
#include "quant/dynamic_map.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define CHUNK_BLOCKS 16 /* blocks dequantized at once: 2 x 16 KiB of scratch */
#define CHUNK (CHUNK_BLOCKS * MMT_ADAMW8BIT_BLOCK)
#define PARALLEL_MIN_CHUNKS 16 /* 65536 elements */

/* Threads the 8-bit step may use: one scratch pair each. */
static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static int thread_index(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static const char *const state_prefixes[4] = {
    "optimizer.state1.", "optimizer.state2.", "optimizer.absmax1.", "optimizer.absmax2.",
};
static const char step_key[] = "optimizer.step";

mmt_adamw8bit_config mmt_adamw8bit_config_default(void) {
    mmt_adamw8bit_config c;
    c.lr = 1e-3;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    c.min_8bit_size = 4096;
    return c;
}

/* ---- creation ---------------------------------------------------------------------- */

static mmt_status check_config(const mmt_adamw8bit_config *c) {
    MMT_TRY(mmt_adam_hyper_check("adamw8bit", c->lr, c->beta1, c->beta2, c->eps));
    if (c->min_8bit_size < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adamw8bit: min_8bit_size %lld must be >= 1",
                        (long long)c->min_8bit_size);
    return MMT_OK;
}

/* Decides which tensors are 8-bit and lays their states out in two zeroed allocations. */
static mmt_status alloc_states(mmt_adamw8bit *opt) {
    size_t n = (size_t)opt->n_params + 1, n_bytes = 0, n_floats = 0;
    opt->quantized = mmt_calloc(n, 1);
    opt->blocks = mmt_calloc(n, sizeof *opt->blocks);
    opt->state1 = mmt_calloc(n, sizeof *opt->state1);
    opt->state2 = mmt_calloc(n, sizeof *opt->state2);
    opt->absmax1 = mmt_calloc(n, sizeof *opt->absmax1);
    opt->absmax2 = mmt_calloc(n, sizeof *opt->absmax2);
    opt->exp_avg = mmt_calloc(n, sizeof *opt->exp_avg);
    opt->exp_avg_sq = mmt_calloc(n, sizeof *opt->exp_avg_sq);
    if (!opt->quantized || !opt->blocks || !opt->state1 || !opt->state2 || !opt->absmax1 ||
        !opt->absmax2 || !opt->exp_avg || !opt->exp_avg_sq)
        return MMT_STATUS_OUT_OF_MEMORY;
    int any_quantized = 0;
    for (int64_t i = 0; i < opt->n_params; i++) {
        int64_t numel = opt->params[i].numel;
        if ((uint64_t)numel > (SIZE_MAX / sizeof(float)) / 8 - n_floats - n_bytes)
            return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "adamw8bit: optimizer state too large");
        if (numel >= opt->config.min_8bit_size) {
            opt->quantized[i] = 1;
            opt->blocks[i] = (numel + MMT_ADAMW8BIT_BLOCK - 1) / MMT_ADAMW8BIT_BLOCK;
            n_bytes += 2 * (size_t)numel;
            n_floats += 2 * (size_t)opt->blocks[i];
            any_quantized = 1;
        } else {
            n_floats += 2 * (size_t)numel;
        }
    }
    opt->bytes = mmt_calloc(n_bytes + 1, 1);
    opt->floats = mmt_calloc(n_floats + 1, sizeof(float));
    opt->n_scratch = any_quantized ? max_threads() : 0;
    opt->scratch = any_quantized ? mmt_malloc((size_t)opt->n_scratch * 2 * CHUNK * sizeof(float)) : NULL;
    opt->lut = any_quantized ? mmt_malloc(2 * MMT_BLOCKWISE8_GRID) : NULL;
    if (!opt->bytes || !opt->floats || (any_quantized && (!opt->scratch || !opt->lut))) return MMT_STATUS_OUT_OF_MEMORY;
    if (any_quantized) { /* the maps are set before alloc_states runs */
        mmt_blockwise8_lut(opt->code_signed, opt->lut);
        mmt_blockwise8_lut(opt->code_unsigned, opt->lut + MMT_BLOCKWISE8_GRID);
    }
    uint8_t *b = opt->bytes;
    float *f = opt->floats;
    for (int64_t i = 0; i < opt->n_params; i++) {
        size_t numel = (size_t)opt->params[i].numel;
        if (opt->quantized[i]) {
            size_t nb = (size_t)opt->blocks[i];
            opt->state1[i] = b;
            opt->state2[i] = b + numel;
            b += 2 * numel;
            opt->absmax1[i] = f;
            opt->absmax2[i] = f + nb;
            f += 2 * nb;
        } else {
            opt->exp_avg[i] = f;
            opt->exp_avg_sq[i] = f + numel;
            f += 2 * numel;
        }
    }
    return MMT_OK;
}

mmt_status mmt_adamw8bit_create(const mmt_adamw8bit_config *config, const mmt_param_group *groups,
                                int64_t n_groups, mmt_adamw8bit **out) {
    if (!out) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adamw8bit: out is NULL");
    *out = NULL;
    if (!config) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adamw8bit: config is NULL");
    MMT_TRY(check_config(config));
    MMT_TRY(mmt_param_groups_check(groups, n_groups));

    mmt_status status = MMT_STATUS_OUT_OF_MEMORY;
    mmt_adamw8bit *opt = mmt_calloc(1, sizeof *opt);
    if (!opt) return MMT_STATUS_OUT_OF_MEMORY;
    opt->config = *config;
    mmt_dynamic_map(1, opt->code_signed);
    mmt_dynamic_map(0, opt->code_unsigned);
    opt->n_groups = n_groups;
    if ((status = mmt_param_groups_copy(groups, n_groups, state_prefixes, 4, &opt->groups, &opt->params,
                                        &opt->n_params, &opt->names, &opt->keys)) != MMT_OK)
        goto fail;
    if ((status = alloc_states(opt)) != MMT_OK) goto fail;
    *out = opt;
    return MMT_OK;
fail:
    mmt_adamw8bit_free(opt);
    return status;
}

void mmt_adamw8bit_free(mmt_adamw8bit *opt) {
    if (!opt) return;
    mmt_free(opt->groups);
    mmt_free(opt->params);
    mmt_free(opt->quantized);
    mmt_free(opt->blocks);
    mmt_free(opt->state1);
    mmt_free(opt->state2);
    mmt_free(opt->absmax1);
    mmt_free(opt->absmax2);
    mmt_free(opt->exp_avg);
    mmt_free(opt->exp_avg_sq);
    mmt_free(opt->bytes);
    mmt_free(opt->floats);
    mmt_free(opt->scratch);
    mmt_free(opt->lut);
    mmt_free(opt->names);
    mmt_free(opt->keys);
    mmt_free(opt);
}

int64_t mmt_adamw8bit_state_bytes(const mmt_adamw8bit *opt) {
    int64_t total = 0;
    for (int64_t i = 0; i < opt->n_params; i++)
        total += opt->quantized[i] ? 2 * opt->params[i].numel + 2 * opt->blocks[i] * (int64_t)sizeof(float)
                                   : 2 * opt->params[i].numel * (int64_t)sizeof(float);
    return total;
}

/* ---- the step ---------------------------------------------------------------------- */

/* The float32 scalars of one step of one group, each rounded from Python's double where
 * bitsandbytes' torch op rounds it. */
typedef struct step_scalars {
    float beta1, one_minus_beta1, beta2, one_minus_beta2;
    float decay;          /* 1 - lr * wd */
    int apply_decay;      /* wd > 0 */
    float c2;             /* sqrt(1 - beta2^t): 8-bit denominator */
    float eps;            /* 8-bit denominator */
    float neg_step;       /* -lr / c1: 8-bit addcdiv value */
    float eps_c2;         /* eps * c2: float32 denominator */
    float step_size;      /* (-lr * c2) / c1: float32 add alpha */
} step_scalars;

/* m, v (n) dequantized moments, updated; p, g (n). _optimizer_update_8bit_blockwise_cpu. */
static void update_8bit(float *p, const float *g, float *m, float *v, int64_t n, const step_scalars *s) {
    for (int64_t i = 0; i < n; i++) {
        float grad = g[i];
        float avg = fmaf(grad, s->one_minus_beta1, m[i] * s->beta1);
        float sq = fmaf(s->one_minus_beta2 * grad, grad, v[i] * s->beta2);
        m[i] = avg;
        v[i] = sq;
        float denom = sqrtf(sq) / s->c2 + s->eps;
        float w = p[i];
        if (s->apply_decay) w = w * s->decay;
        p[i] = w + (s->neg_step * avg) / denom;
    }
}

/* _optimizer_update_32bit_cpu ("adam", max_unorm 0). */
static void update_32bit(float *p, const float *g, float *m, float *v, int64_t n, const step_scalars *s) {
    for (int64_t i = 0; i < n; i++) {
        float grad = g[i];
        float avg = fmaf(grad, s->one_minus_beta1, m[i] * s->beta1);
        float sq = fmaf(s->one_minus_beta2 * grad, grad, v[i] * s->beta2);
        m[i] = avg;
        v[i] = sq;
        float w = p[i];
        if (s->apply_decay) w = w * s->decay;
        float update = avg / (sqrtf(sq) + s->eps_c2);
        p[i] = fmaf(update, s->step_size, w);
    }
}

/* One 8-bit tensor, a chunk of blocks at a time; chunks are independent, so they may run
 * on several threads (each with its own scratch) and the bits do not depend on how many. */
static void step_quantized(mmt_adamw8bit *opt, int64_t i, const step_scalars *s) {
    const mmt_param *p = &opt->params[i];
    int64_t n_chunks = (p->numel + CHUNK - 1) / CHUNK;
    /* a team costs more than it saves on a few chunks (as ops/cpu's 1 << 16 elements rule) */
    int team = n_chunks < PARALLEL_MIN_CHUNKS ? 1 : opt->n_scratch < n_chunks ? opt->n_scratch : (int)n_chunks;
    (void)team;
#ifdef _OPENMP
#pragma omp parallel for num_threads(team) schedule(static) if (team > 1)
#endif
    for (int64_t c = 0; c < n_chunks; c++) {
        float *m = opt->scratch + (size_t)thread_index() * 2 * CHUNK, *v = m + CHUNK;
        int64_t start = c * CHUNK;
        int64_t len = p->numel - start < CHUNK ? p->numel - start : CHUNK;
        int64_t b = start / MMT_ADAMW8BIT_BLOCK;
        uint8_t *q1 = opt->state1[i] + start, *q2 = opt->state2[i] + start;
        float *a1 = opt->absmax1[i] + b, *a2 = opt->absmax2[i] + b;
        mmt_dequantize_blockwise8(m, q1, a1, len, MMT_ADAMW8BIT_BLOCK, opt->code_signed);
        mmt_dequantize_blockwise8(v, q2, a2, len, MMT_ADAMW8BIT_BLOCK, opt->code_unsigned);
        update_8bit(p->data + start, p->grad + start, m, v, len, s);
        mmt_quantize_blockwise8_lut(q1, a1, m, len, MMT_ADAMW8BIT_BLOCK, opt->lut);
        mmt_quantize_blockwise8_lut(q2, a2, v, len, MMT_ADAMW8BIT_BLOCK, opt->lut + MMT_BLOCKWISE8_GRID);
    }
}

mmt_status mmt_adamw8bit_step(mmt_adamw8bit *opt, double multiplier) {
    if (!isfinite(multiplier) || multiplier < 0.0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adamw8bit: lr multiplier %g must be finite and >= 0",
                        multiplier);
    for (int64_t i = 0; i < opt->n_params; i++) {
        if (opt->params[i].numel > 0 && !opt->params[i].grad)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adamw8bit: parameter \"%s\" has no gradient buffer",
                            opt->params[i].name);
    }
    const mmt_adamw8bit_config *c = &opt->config;
    int64_t t = opt->step + 1;
    double c1 = 1.0 - pow(c->beta1, (double)t);
    double c2 = sqrt(1.0 - pow(c->beta2, (double)t)); /* math.sqrt: correctly rounded */
    step_scalars s;
    s.beta1 = (float)c->beta1;
    s.one_minus_beta1 = (float)(1.0 - c->beta1);
    s.beta2 = (float)c->beta2;
    s.one_minus_beta2 = (float)(1.0 - c->beta2);
    s.c2 = (float)c2;
    s.eps = (float)c->eps;
    s.eps_c2 = (float)(c->eps * c2);
    int64_t k = 0;
    for (int64_t g = 0; g < opt->n_groups; g++) {
        const mmt_param_group *group = &opt->groups[g];
        double lr = (c->lr * group->lr_scale) * multiplier;
        s.apply_decay = group->weight_decay > 0.0;
        s.decay = (float)(1.0 - lr * group->weight_decay);
        s.neg_step = (float)(-lr / c1);
        s.step_size = (float)(-lr * c2 / c1);
        for (int64_t i = 0; i < group->n_params; i++, k++) {
            const mmt_param *p = &group->params[i];
            if (p->numel == 0) continue;
            if (opt->quantized[k]) step_quantized(opt, k, &s);
            else update_32bit(p->data, p->grad, opt->exp_avg[k], opt->exp_avg_sq[k], p->numel, &s);
        }
    }
    opt->step = t;
    return MMT_OK;
}

/* ---- checkpoint state -------------------------------------------------------------- */

int64_t mmt_adamw8bit_state_count(const mmt_adamw8bit *opt) {
    int64_t n = 1;
    for (int64_t i = 0; i < opt->n_params; i++) n += opt->quantized[i] ? 4 : 2;
    return n;
}

mmt_status mmt_adamw8bit_state_export(const mmt_adamw8bit *opt, mmt_st_write_tensor *out, int64_t cap,
                                      int64_t *n_out) {
    int64_t need = mmt_adamw8bit_state_count(opt);
    if (cap < need)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adamw8bit: state export needs %lld entries, given %lld",
                        (long long)need, (long long)cap);
    out[0] = (mmt_st_write_tensor){step_key, MMT_DTYPE_I64, 0, NULL, &opt->step};
    int64_t n = 1;
    for (int64_t i = 0; i < opt->n_params; i++) {
        const mmt_param *p = &opt->params[i];
        const char *const *key = &opt->keys[i * 4];
        if (opt->quantized[i]) {
            out[n++] = (mmt_st_write_tensor){key[0], MMT_DTYPE_U8, p->ndim, p->shape, opt->state1[i]};
            out[n++] = (mmt_st_write_tensor){key[1], MMT_DTYPE_U8, p->ndim, p->shape, opt->state2[i]};
            out[n++] = (mmt_st_write_tensor){key[2], MMT_DTYPE_F32, 1, &opt->blocks[i], opt->absmax1[i]};
            out[n++] = (mmt_st_write_tensor){key[3], MMT_DTYPE_F32, 1, &opt->blocks[i], opt->absmax2[i]};
        } else {
            out[n++] = (mmt_st_write_tensor){key[0], MMT_DTYPE_F32, p->ndim, p->shape, opt->exp_avg[i]};
            out[n++] = (mmt_st_write_tensor){key[1], MMT_DTYPE_F32, p->ndim, p->shape, opt->exp_avg_sq[i]};
        }
    }
    if (n_out) *n_out = n;
    return MMT_OK;
}

/* Present, of the dtype, in the shape: else an error naming the file, tensor and parameter. */
static mmt_status find_state_tensor(const mmt_safetensors *st, const char *key, mmt_dtype dtype, int ndim,
                                    const int64_t *shape, const char *param, const mmt_st_tensor **out) {
    char want[160], got[160];
    const mmt_st_tensor *t = mmt_safetensors_find(st, key);
    if (!t)
        return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: optimizer state tensor \"%s\" is missing", st->path, key);
    if (t->dtype != dtype)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor \"%s\" has dtype %s, expected %s%s%s%s", st->path, key,
                        mmt_dtype_name(t->dtype), mmt_dtype_name(dtype), param ? " (parameter \"" : "",
                        param ? param : "", param ? "\")" : "");
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor \"%s\" has shape %s, expected %s%s%s%s", st->path, key,
                        mmt_shape_str(t->shape, t->ndim, got, sizeof got), mmt_shape_str(shape, ndim, want, sizeof want),
                        param ? " (parameter \"" : "", param ? param : "", param ? "\")" : "");
    *out = t;
    return MMT_OK;
}

/* Every float32 element >= 0 and finite (absmax) or >= 0 and not NaN (second moments). */
static mmt_status check_nonnegative(const mmt_safetensors *st, const char *key, const mmt_st_tensor *t,
                                    int need_finite) {
    const unsigned char *bytes = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        float x;
        memcpy(&x, bytes + 4 * i, sizeof x);
        if (!(x >= 0.0f) || (need_finite && !isfinite(x)))
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor \"%s\" element %lld is %g; it must be >= 0%s", st->path,
                            key, (long long)i, (double)x, need_finite ? " and finite" : "");
    }
    return MMT_OK;
}

/* The file says it holds 8-bit AdamW state; one made by mmt_adamw is named as such. */
static mmt_status check_kind(const mmt_adamw8bit *opt, const mmt_safetensors *st) {
    const char *kind = mmt_safetensors_metadata(st, MMT_ADAMW8BIT_METADATA_KEY);
    if (kind && strcmp(kind, MMT_ADAMW8BIT_NAME) == 0) return MMT_OK;
    int from_adamw = 0;
    if (!kind && opt->n_params > 0) {
        char key[512];
        snprintf(key, sizeof key, "optimizer.exp_avg.%s", opt->params[0].name);
        from_adamw = mmt_safetensors_find(st, key) != NULL;
    }
    if (kind || from_adamw)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: optimizer state made by %s, not adamw8bit (resuming needs the same optimizer)",
                        st->path, kind ? kind : "adamw");
    return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: no \"%s\": \"%s\" metadata; not 8-bit AdamW state", st->path,
                    MMT_ADAMW8BIT_METADATA_KEY, MMT_ADAMW8BIT_NAME);
}

static mmt_status check_param_state(const mmt_adamw8bit *opt, const mmt_safetensors *st, int64_t i) {
    const mmt_param *p = &opt->params[i];
    const char *const *key = &opt->keys[i * 4];
    const mmt_st_tensor *t;
    if (!opt->quantized[i]) {
        MMT_TRY(find_state_tensor(st, key[0], MMT_DTYPE_F32, p->ndim, p->shape, p->name, &t));
        MMT_TRY(find_state_tensor(st, key[1], MMT_DTYPE_F32, p->ndim, p->shape, p->name, &t));
        return check_nonnegative(st, key[1], t, 0);
    }
    MMT_TRY(find_state_tensor(st, key[0], MMT_DTYPE_U8, p->ndim, p->shape, p->name, &t));
    MMT_TRY(find_state_tensor(st, key[1], MMT_DTYPE_U8, p->ndim, p->shape, p->name, &t));
    for (int k = 2; k < 4; k++) {
        MMT_TRY(find_state_tensor(st, key[k], MMT_DTYPE_F32, 1, &opt->blocks[i], p->name, &t));
        MMT_TRY(check_nonnegative(st, key[k], t, 1));
    }
    return MMT_OK;
}

static void copy_tensor(void *dst, const mmt_safetensors *st, const char *key) {
    const mmt_st_tensor *t = mmt_safetensors_find(st, key);
    if (t->end > t->begin) memcpy(dst, t->data, (size_t)(t->end - t->begin));
}

mmt_status mmt_adamw8bit_state_import(mmt_adamw8bit *opt, const mmt_safetensors *st) {
    MMT_TRY(check_kind(opt, st));
    const mmt_st_tensor *t;
    MMT_TRY(find_state_tensor(st, step_key, MMT_DTYPE_I64, 0, NULL, NULL, &t));
    int64_t step;
    memcpy(&step, t->data, sizeof step);
    if (step < 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor \"%s\" is %lld, expected >= 0", st->path, step_key,
                        (long long)step);
    /* Check everything before copying anything, so a failure leaves the state as it was. */
    for (int64_t i = 0; i < opt->n_params; i++) MMT_TRY(check_param_state(opt, st, i));
    for (int64_t i = 0; i < opt->n_params; i++) {
        const char *const *key = &opt->keys[i * 4];
        if (opt->quantized[i]) {
            copy_tensor(opt->state1[i], st, key[0]);
            copy_tensor(opt->state2[i], st, key[1]);
            copy_tensor(opt->absmax1[i], st, key[2]);
            copy_tensor(opt->absmax2[i], st, key[3]);
        } else {
            copy_tensor(opt->exp_avg[i], st, key[0]);
            copy_tensor(opt->exp_avg_sq[i], st, key[1]);
        }
    }
    opt->step = step;
    return MMT_OK;
}
