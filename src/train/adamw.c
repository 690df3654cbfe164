/*
 * adamw.c — AdamW over named parameter groups, the weight-decay rule, and optimizer state
 * export/import for checkpoints.
 *
 * Reference: torch.optim.AdamW, the single-tensor path (torch/optim/adam.py,
 * _single_tensor_adam, decoupled_weight_decay=True, capturable/differentiable off). Python
 * computes the scalars in double (1 - beta^t with pow, sqrt as pow(x, 0.5), lr / bc1) and
 * each in-place op casts its scalar to float32 and runs float32 elementwise. Two of those ops
 * are fused multiply-adds in torch's CPU kernels: lerp_ (Lerp.h, fmadd with weight < 0.5)
 * and addcmul_ (self + value*t1*t2, contracted), so we use fmaf there; with that the moments
 * match torch bit for bit. The one remaining difference is sqrt: torch's CPU sqrt (MKL VML)
 * is off by an ulp on some inputs, ours is correctly rounded, so parameters agree to about
 * one float32 ulp of the update.
 *
 * The elementwise update is the op table's adamw_step (src/ops/ref/train_ref.c, and the
 * AVX2 version beside it); this file computes its scalars in double, rounds them where torch
 * does, and walks the parameters. Results do not depend on the build or the table: fmaf,
 * sqrt and division are exactly rounded wherever they run, and the op holds no other product
 * that feeds an addition (see ops.h). (Only the double scalar 1 - lr*wd could be contracted
 * under -march=native; a double ulp there does not survive the rounding to float32.)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/cpu.h"
#include "ops/ops.h"
#include "train/optimizer.h"

/* ---- weight-decay rule ------------------------------------------------------------- */

/* 1 when some dot-separated component of name contains needle. */
static int component_contains(const char *name, const char *needle) {
    size_t needle_len = strlen(needle);
    const char *c = name;
    while (*c) {
        const char *end = strchr(c, '.');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        for (size_t i = 0; i + needle_len <= len; i++) {
            if (memcmp(c + i, needle, needle_len) == 0) return 1;
        }
        if (!end) break;
        c = end + 1;
    }
    return 0;
}

/* 1 when some dot-separated component of name starts with prefix. */
static int component_starts_with(const char *name, const char *prefix) {
    size_t prefix_len = strlen(prefix);
    const char *c = name;
    for (;;) {
        if (strncmp(c, prefix, prefix_len) == 0) return 1;
        c = strchr(c, '.');
        if (!c) return 0;
        c++;
    }
}

int mmt_param_no_decay(const char *name, int ndim) {
    static const char *const substrings[] = {
        "bias", "logit_scale", "position_embedding", "positional_embedding",
        "class_embedding", "pos_embed", "cls_token",
    };
    if (ndim < 2) return 1;
    if (!name) return 0;
    for (size_t i = 0; i < sizeof substrings / sizeof substrings[0]; i++) {
        if (strstr(name, substrings[i])) return 1;
    }
    return component_starts_with(name, "ln") || component_starts_with(name, "bn") ||
           component_contains(name, "norm");
}

void mmt_param_groups_by_decay(const mmt_param *params, int64_t n, double weight_decay,
                               double lr_scale, mmt_param *sorted, mmt_param_group groups[2],
                               int64_t *n_groups) {
    int64_t n_decay = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!mmt_param_no_decay(params[i].name, params[i].ndim)) sorted[n_decay++] = params[i];
    }
    int64_t k = n_decay;
    for (int64_t i = 0; i < n; i++) {
        if (mmt_param_no_decay(params[i].name, params[i].ndim)) sorted[k++] = params[i];
    }
    int64_t g = 0;
    if (n_decay > 0) {
        groups[g++] = (mmt_param_group){"decay", sorted, n_decay, lr_scale, weight_decay, NULL};
    }
    if (n - n_decay > 0) {
        groups[g++] = (mmt_param_group){"no_decay", sorted + n_decay, n - n_decay, lr_scale, 0.0, NULL};
    }
    *n_groups = g;
}

/* ---- creation ---------------------------------------------------------------------- */

static const char *const state_prefixes[3] = {
    "optimizer.exp_avg.", "optimizer.exp_avg_sq.", "optimizer.max_exp_avg_sq.",
};
static const char step_key[] = "optimizer.step";

mmt_adamw_config mmt_adamw_config_default(void) {
    mmt_adamw_config c;
    c.lr = 1e-3;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    c.amsgrad = 0;
    return c;
}

static int finite_nonnegative(double x) { return isfinite(x) && x >= 0.0; }

mmt_status mmt_adam_hyper_check(const char *who, double lr, double beta1, double beta2, double eps) {
    if (!finite_nonnegative(lr))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: lr %g must be finite and >= 0", who, lr);
    if (!(beta1 >= 0.0 && beta1 < 1.0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: beta1 %g is outside [0, 1)", who, beta1);
    if (!(beta2 >= 0.0 && beta2 < 1.0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: beta2 %g is outside [0, 1)", who, beta2);
    if (!finite_nonnegative(eps))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: eps %g must be finite and >= 0", who, eps);
    return MMT_OK;
}

static mmt_status check_config(const mmt_adamw_config *c) {
    MMT_TRY(mmt_adam_hyper_check("adamw", c->lr, c->beta1, c->beta2, c->eps));
    if (c->amsgrad != 0 && c->amsgrad != 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adamw: amsgrad %d must be 0 or 1",
                        c->amsgrad);
    return MMT_OK;
}

static mmt_status check_param(const mmt_param_group *group, int64_t g, int64_t i) {
    const mmt_param *p = &group->params[i];
    char buf[160];
    if (!p->name || !p->name[0])
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adamw: group %lld parameter %lld has no name",
                        (long long)g, (long long)i);
    if (p->ndim < 0 || p->ndim > MMT_MAX_DIMS)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adamw: parameter \"%s\": ndim %d",
                        p->name, p->ndim);
    for (int d = 0; d < p->ndim; d++) {
        if (p->shape[d] < 0)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                            "adamw: parameter \"%s\": negative dimension in shape %s", p->name,
                            mmt_shape_str(p->shape, p->ndim, buf, sizeof buf));
    }
    int64_t numel = mmt_shape_numel(p->shape, p->ndim);
    if (p->numel < 0 || numel != p->numel)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "adamw: parameter \"%s\": numel %lld does not match shape %s",
                        p->name, (long long)p->numel,
                        mmt_shape_str(p->shape, p->ndim, buf, sizeof buf));
    if (p->numel > 0 && !p->data)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adamw: parameter \"%s\" has no data",
                        p->name);
    if (p->numel > 0 && !p->grad)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "adamw: parameter \"%s\" has no gradient buffer", p->name);
    return MMT_OK;
}

static mmt_status check_groups(const mmt_param_group *groups, int64_t n_groups) {
    if (n_groups < 0 || (n_groups > 0 && !groups))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adamw: %lld parameter groups",
                        (long long)n_groups);
    for (int64_t g = 0; g < n_groups; g++) {
        const mmt_param_group *group = &groups[g];
        const char *label = group->name ? group->name : "";
        if (group->n_params < 0 || (group->n_params > 0 && !group->params))
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                            "adamw: group %lld \"%s\": %lld parameters", (long long)g, label,
                            (long long)group->n_params);
        if (!finite_nonnegative(group->lr_scale))
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                            "adamw: group %lld \"%s\": lr_scale %g must be finite and >= 0",
                            (long long)g, label, group->lr_scale);
        if (!finite_nonnegative(group->weight_decay))
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                            "adamw: group %lld \"%s\": weight_decay %g must be finite and >= 0",
                            (long long)g, label, group->weight_decay);
        for (int64_t i = 0; i < group->n_params; i++) MMT_TRY(check_param(group, g, i));
    }
    return MMT_OK;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts a copy of the names and compares neighbours: O(n log n) for models with many
 * tensors. */
static mmt_status check_unique_names(const mmt_param *params, int64_t n) {
    if (n < 2) return MMT_OK;
    const char **names = mmt_malloc((size_t)n * sizeof *names);
    if (!names) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < n; i++) names[i] = params[i].name;
    qsort(names, (size_t)n, sizeof *names, compare_names);
    mmt_status status = MMT_OK;
    for (int64_t i = 1; i < n; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) {
            status = mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                              "adamw: parameter name \"%s\" appears twice", names[i]);
            break;
        }
    }
    mmt_free(names);
    return status;
}

mmt_status mmt_param_groups_check(const mmt_param_group *groups, int64_t n_groups) {
    MMT_TRY(check_groups(groups, n_groups));
    int64_t n = 0;
    for (int64_t g = 0; g < n_groups; g++) n += groups[g].n_params;
    mmt_param *flat = mmt_calloc((size_t)n + 1, sizeof *flat);
    if (!flat) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t g = 0, k = 0; g < n_groups; g++)
        for (int64_t i = 0; i < groups[g].n_params; i++) flat[k++] = groups[g].params[i];
    mmt_status status = check_unique_names(flat, n);
    mmt_free(flat);
    return status;
}

static int64_t moments_per_param(const mmt_adamw *opt) { return opt->config.amsgrad ? 3 : 2; }

/* See optimizer.h. Names go into one block: group labels, then each parameter's name and its
 * state keys; the copies in the groups and params are repointed there. */
mmt_status mmt_param_groups_copy(const mmt_param_group *groups, int64_t n_groups, const char *const *prefixes,
                                 int n_prefixes, mmt_param_group **groups_out, mmt_param **params_out,
                                 int64_t *n_params, char **names_out, const char ***keys_out) {
    int64_t n = 0;
    for (int64_t g = 0; g < n_groups; g++) n += groups[g].n_params;
    *n_params = n;
    mmt_param_group *gs = *groups_out = mmt_calloc((size_t)n_groups + 1, sizeof *gs);
    mmt_param *ps = *params_out = mmt_calloc((size_t)n + 1, sizeof *ps);
    if (!gs || !ps) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t g = 0, k = 0; g < n_groups; g++) {
        gs[g] = groups[g];
        gs[g].params = ps + k;
        for (int64_t i = 0; i < groups[g].n_params; i++) ps[k++] = groups[g].params[i];
    }
    size_t bytes = 0;
    for (int64_t g = 0; g < n_groups; g++)
        if (gs[g].name) bytes += strlen(gs[g].name) + 1;
    for (int64_t i = 0; i < n; i++) {
        size_t len = strlen(ps[i].name) + 1;
        bytes += len;
        for (int k = 0; k < n_prefixes; k++) bytes += strlen(prefixes[k]) + len;
    }
    char *w = *names_out = mmt_malloc(bytes ? bytes : 1);
    const char **keys = *keys_out = mmt_calloc((size_t)(n * n_prefixes) + 1, sizeof *keys);
    if (!w || !keys) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t g = 0; g < n_groups; g++) {
        if (!gs[g].name) continue;
        size_t len = strlen(gs[g].name) + 1;
        memcpy(w, gs[g].name, len);
        gs[g].name = w;
        w += len;
    }
    for (int64_t i = 0; i < n; i++) {
        size_t len = strlen(ps[i].name) + 1;
        memcpy(w, ps[i].name, len);
        ps[i].name = w;
        w += len;
        for (int k = 0; k < n_prefixes; k++) {
            size_t prefix_len = strlen(prefixes[k]);
            keys[i * n_prefixes + k] = w;
            memcpy(w, prefixes[k], prefix_len);
            memcpy(w + prefix_len, ps[i].name, len);
            w += prefix_len + len;
        }
    }
    return MMT_OK;
}

/* One zeroed allocation for every moment buffer; exp_avg[i] etc. point into it. */
static mmt_status alloc_moments(mmt_adamw *opt) {
    int64_t per = moments_per_param(opt);
    size_t total = 0;
    for (int64_t i = 0; i < opt->n_params; i++) {
        if ((uint64_t)opt->params[i].numel > (SIZE_MAX / sizeof(float)) / 4 - total)
            return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "adamw: optimizer state too large");
        total += (size_t)opt->params[i].numel;
    }
    size_t n = (size_t)opt->n_params + 1;
    opt->state = mmt_calloc(total * (size_t)per + 1, sizeof(float));
    opt->exp_avg = mmt_calloc(n, sizeof *opt->exp_avg);
    opt->exp_avg_sq = mmt_calloc(n, sizeof *opt->exp_avg_sq);
    if (per == 3) opt->max_exp_avg_sq = mmt_calloc(n, sizeof *opt->max_exp_avg_sq);
    if (!opt->state || !opt->exp_avg || !opt->exp_avg_sq || (per == 3 && !opt->max_exp_avg_sq))
        return MMT_STATUS_OUT_OF_MEMORY;
    float *w = opt->state;
    for (int64_t i = 0; i < opt->n_params; i++) {
        size_t numel = (size_t)opt->params[i].numel;
        opt->exp_avg[i] = w;
        opt->exp_avg_sq[i] = w + total;
        if (per == 3) opt->max_exp_avg_sq[i] = w + 2 * total;
        w += numel;
    }
    return MMT_OK;
}

mmt_status mmt_adamw_create(const mmt_adamw_config *config, const mmt_param_group *groups,
                            int64_t n_groups, mmt_adamw **out) {
    if (!out) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adamw: out is NULL");
    *out = NULL;
    if (!config) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adamw: config is NULL");
    MMT_TRY(check_config(config));
    MMT_TRY(mmt_param_groups_check(groups, n_groups));

    mmt_status status = MMT_STATUS_OUT_OF_MEMORY;
    mmt_adamw *opt = mmt_calloc(1, sizeof *opt);
    if (!opt) return MMT_STATUS_OUT_OF_MEMORY;
    opt->config = *config;
    opt->ops = mmt_ops_cpu();
    opt->fma = mmt_cpu_detect().avx2;
    opt->n_groups = n_groups;
    status = mmt_param_groups_copy(groups, n_groups, state_prefixes, (int)moments_per_param(opt), &opt->groups,
                                   &opt->params, &opt->n_params, &opt->names, &opt->keys);
    if (status != MMT_OK) goto fail;
    status = alloc_moments(opt);
    if (status != MMT_OK) goto fail;
    *out = opt;
    return MMT_OK;
fail:
    mmt_adamw_free(opt);
    return status;
}

void mmt_adamw_free(mmt_adamw *opt) {
    if (!opt) return;
    mmt_free(opt->groups);
    mmt_free(opt->params);
    mmt_free(opt->state);
    mmt_free(opt->exp_avg);
    mmt_free(opt->exp_avg_sq);
    mmt_free(opt->max_exp_avg_sq);
    mmt_free(opt->names);
    mmt_free(opt->keys);
    mmt_free(opt);
}

/* ---- the step ---------------------------------------------------------------------- */

double mmt_adamw_group_lr(const mmt_adamw *opt, int64_t group, double multiplier) {
    return (opt->config.lr * opt->groups[group].lr_scale) * multiplier;
}

mmt_status mmt_adamw_step(mmt_adamw *opt, double multiplier) {
    if (!isfinite(multiplier) || multiplier < 0.0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "adamw: lr multiplier %g must be finite and >= 0", multiplier);
    for (int64_t i = 0; i < opt->n_params; i++) {
        if (opt->params[i].numel > 0 && !opt->params[i].grad)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                            "adamw: parameter \"%s\" has no gradient buffer",
                            opt->params[i].name);
    }
    const mmt_adamw_config *c = &opt->config;
    int64_t t = opt->step + 1;
    double bias_correction1 = 1.0 - pow(c->beta1, (double)t);
    double bias_correction2 = 1.0 - pow(c->beta2, (double)t);
    mmt_adamw_scalars s;
    s.lerp_weight = (float)(1.0 - c->beta1);
    s.beta2 = (float)c->beta2;
    s.one_minus_beta2 = (float)(1.0 - c->beta2);
    s.bias_correction2_sqrt = (float)pow(bias_correction2, 0.5);
    s.eps = (float)c->eps;
    const mmt_ops *ops = opt->fma ? opt->ops : mmt_ops_ref();

    int64_t k = 0;
    for (int64_t g = 0; g < opt->n_groups; g++) {
        const mmt_param_group *group = &opt->groups[g];
        double lr = mmt_adamw_group_lr(opt, g, multiplier);
        s.decay = (float)(1.0 - lr * group->weight_decay);
        /* torch skips the decay when weight_decay == 0 (not just multiplies by 1). */
        s.apply_decay = group->weight_decay != 0.0;
        s.neg_step = (float)(-(lr / bias_correction1));
        for (int64_t i = 0; i < group->n_params; i++, k++) {
            const mmt_param *p = &group->params[i];
            float *vmax = opt->max_exp_avg_sq ? opt->max_exp_avg_sq[k] : NULL;
            ops->adamw_step(p->data, p->grad, opt->exp_avg[k], opt->exp_avg_sq[k], vmax, p->numel,
                            &s);
        }
    }
    opt->step = t;
    return MMT_OK;
}

/* ---- checkpoint state -------------------------------------------------------------- */

int64_t mmt_adamw_state_count(const mmt_adamw *opt) {
    return 1 + opt->n_params * moments_per_param(opt);
}

static float *moment_buffer(const mmt_adamw *opt, int64_t param, int64_t k) {
    return k == 0 ? opt->exp_avg[param] : k == 1 ? opt->exp_avg_sq[param]
                                                 : opt->max_exp_avg_sq[param];
}

mmt_status mmt_adamw_state_export(const mmt_adamw *opt, mmt_st_write_tensor *out, int64_t cap,
                                  int64_t *n_out) {
    int64_t need = mmt_adamw_state_count(opt);
    if (cap < need)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "adamw: state export needs %lld entries, given %lld", (long long)need,
                        (long long)cap);
    int64_t per = moments_per_param(opt);
    out[0] = (mmt_st_write_tensor){step_key, MMT_DTYPE_I64, 0, NULL, &opt->step};
    int64_t n = 1;
    for (int64_t i = 0; i < opt->n_params; i++) {
        const mmt_param *p = &opt->params[i];
        for (int64_t k = 0; k < per; k++) {
            out[n++] = (mmt_st_write_tensor){opt->keys[i * per + k], MMT_DTYPE_F32, p->ndim,
                                             p->shape, moment_buffer(opt, i, k)};
        }
    }
    if (n_out) *n_out = n;
    return MMT_OK;
}

/* Present, of the dtype, in the shape: else an error naming the file and tensor. */
static mmt_status find_state_tensor(const mmt_safetensors *st, const char *key, mmt_dtype dtype,
                                    int ndim, const int64_t *shape, const char *param,
                                    const mmt_st_tensor **out) {
    char want[160], got[160];
    const mmt_st_tensor *t = mmt_safetensors_find(st, key);
    if (!t)
        return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: optimizer state tensor \"%s\" is missing",
                        st->path, key);
    if (t->dtype != dtype)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor \"%s\" has dtype %s, expected %s",
                        st->path, key, mmt_dtype_name(t->dtype), mmt_dtype_name(dtype));
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same)
        return mmt_fail(MMT_STATUS_BAD_FORMAT,
                        "%s: tensor \"%s\" has shape %s, expected %s%s%s%s", st->path, key,
                        mmt_shape_str(t->shape, t->ndim, got, sizeof got),
                        mmt_shape_str(shape, ndim, want, sizeof want),
                        param ? " (parameter \"" : "", param ? param : "", param ? "\")" : "");
    *out = t;
    return MMT_OK;
}

/* Second moments are sums of squares: a negative or NaN value means a corrupt file. */
static mmt_status check_second_moment(const mmt_safetensors *st, const char *key,
                                      const mmt_st_tensor *t) {
    const unsigned char *bytes = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        float x;
        memcpy(&x, bytes + 4 * i, sizeof x);
        if (!(x >= 0.0f))
            return mmt_fail(MMT_STATUS_BAD_FORMAT,
                            "%s: tensor \"%s\" element %lld is %g; second moments must be >= 0",
                            st->path, key, (long long)i, (double)x);
    }
    return MMT_OK;
}

mmt_status mmt_adamw_state_import(mmt_adamw *opt, const mmt_safetensors *st) {
    const mmt_st_tensor *t;
    MMT_TRY(find_state_tensor(st, step_key, MMT_DTYPE_I64, 0, NULL, NULL, &t));
    int64_t step;
    memcpy(&step, t->data, sizeof step);
    if (step < 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor \"%s\" is %lld, expected >= 0",
                        st->path, step_key, (long long)step);
    /* Check everything before copying anything, so a failure leaves the state as it was. */
    int64_t per = moments_per_param(opt);
    for (int64_t i = 0; i < opt->n_params; i++) {
        const mmt_param *p = &opt->params[i];
        for (int64_t k = 0; k < per; k++) {
            const char *key = opt->keys[i * per + k];
            MMT_TRY(find_state_tensor(st, key, MMT_DTYPE_F32, p->ndim, p->shape, p->name, &t));
            if (k > 0) MMT_TRY(check_second_moment(st, key, t));
        }
    }
    for (int64_t i = 0; i < opt->n_params; i++) {
        for (int64_t k = 0; k < per; k++) {
            t = mmt_safetensors_find(st, opt->keys[i * per + k]);
            if (t->numel > 0)
                memcpy(moment_buffer(opt, i, k), t->data, (size_t)t->numel * sizeof(float));
        }
    }
    opt->step = step;
    return MMT_OK;
}

void mmt_params_from_nn(const mmt_nn_param *in, int64_t n, mmt_param *out) {
    for (int64_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].name = in[i].name;
        out[i].data = in[i].data;
        out[i].grad = in[i].grad;
        out[i].ndim = in[i].ndim;
        for (int d = 0; d < in[i].ndim; d++) out[i].shape[d] = in[i].shape[d];
        out[i].numel = in[i].numel;
    }
}
