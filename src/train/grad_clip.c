/*
 * grad_clip.c — gradient helpers around an optimizer step: zeroing before accumulation,
 * scaling after it, global-norm clipping, and finding a non-finite gradient.
 *
 * Clipping follows torch.nn.utils.clip_grad_norm_ with norm_type 2 (torch/nn/utils/
 * clip_grad.py): the total norm is the norm of the per-tensor norms, each rounded to float32
 * (torch._foreach_norm returns float32 tensors), and the coefficient is
 * clamp(max_norm / (total + 1e-6), max=1) in float32. torch sums squares in float32 with
 * 8-lane partial sums; we sum in double in index order, which is deterministic and at least
 * as accurate, so the norms agree to within an ulp of float32.
 *
 * The loops over gradient elements are ops of the CPU table (buffer_fill, scale,
 * sum_squares, find_nonfinite): the parameters these helpers receive are host memory. This
 * file walks the tensors and combines their results.
 */
#include <math.h>
#include <stdio.h>

#include "ops/ops.h"
#include "train/optimizer.h"

/* The op table a group's tensors live in. */
static const mmt_ops *group_ops(const mmt_param_group *g) { return g->ops ? g->ops : mmt_ops_cpu(); }

void mmt_grad_zero(const mmt_param_group *groups, int64_t n_groups) {
    for (int64_t g = 0; g < n_groups; g++) {
        const mmt_ops *ops = group_ops(&groups[g]);
        for (int64_t i = 0; i < groups[g].n_params; i++) {
            const mmt_param *p = &groups[g].params[i];
            ops->buffer_fill(p->grad, 0.0f, p->numel);
        }
    }
}

/* grad *= factor for every gradient element. */
static void scale_all(const mmt_param_group *groups, int64_t n_groups, float factor) {
    for (int64_t g = 0; g < n_groups; g++) {
        const mmt_ops *ops = group_ops(&groups[g]);
        for (int64_t i = 0; i < groups[g].n_params; i++) {
            const mmt_param *p = &groups[g].params[i];
            ops->scale(p->grad, factor, p->numel);
        }
    }
}

void mmt_grad_scale(const mmt_param_group *groups, int64_t n_groups, double scale) {
    scale_all(groups, n_groups, (float)scale);
}

float mmt_grad_global_norm(const mmt_param_group *groups, int64_t n_groups) {
    double total = 0.0;
    for (int64_t g = 0; g < n_groups; g++) {
        const mmt_ops *ops = group_ops(&groups[g]);
        for (int64_t i = 0; i < groups[g].n_params; i++) {
            const mmt_param *p = &groups[g].params[i];
            float norm = (float)sqrt(ops->sum_squares(p->grad, p->numel));
            total += (double)norm * norm;
        }
    }
    return (float)sqrt(total);
}

mmt_status mmt_grad_clip_norm(const mmt_param_group *groups, int64_t n_groups, double max_norm,
                              float *total_norm) {
    if (!(max_norm > 0.0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "gradient clipping: max_norm %g must be > 0",
                        max_norm);
    float norm = mmt_grad_global_norm(groups, n_groups);
    if (total_norm) *total_norm = norm;
    if (!isfinite(norm)) return MMT_OK;
    /* max_norm / (norm + 1e-6) with a tensor denominator is Tensor.__rdiv__:
     * reciprocal, then multiply. */
    float coefficient = (1.0f / (norm + 1e-6f)) * (float)max_norm;
    if (coefficient < 1.0f) scale_all(groups, n_groups, coefficient);
    return MMT_OK;
}

int mmt_grad_find_nonfinite(const mmt_param_group *groups, int64_t n_groups,
                            const mmt_param **param, int64_t *index) {
    for (int64_t g = 0; g < n_groups; g++) {
        const mmt_ops *ops = group_ops(&groups[g]);
        for (int64_t i = 0; i < groups[g].n_params; i++) {
            const mmt_param *p = &groups[g].params[i];
            int64_t j = ops->find_nonfinite(p->grad, p->numel);
            if (j >= 0) {
                if (param) *param = p;
                if (index) *index = j;
                return 1;
            }
        }
    }
    return 0;
}

mmt_status mmt_grad_check_finite(const mmt_param_group *groups, int64_t n_groups) {
    const mmt_param *p = NULL;
    int64_t index = 0;
    if (!mmt_grad_find_nonfinite(groups, n_groups, &p, &index)) return MMT_OK;
    char shape[160];
    return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "non-finite gradient: %s[%lld] = %g (shape %s)",
                    p->name ? p->name : "(unnamed)", (long long)index, (double)p->grad[index],
                    mmt_shape_str(p->shape, p->ndim, shape, sizeof shape));
}
