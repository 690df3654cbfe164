/* bottleneck.c — the bottleneck adapter's forward and backward (see bottleneck.h). */
#include "nn/bottleneck.h"

#include <string.h>

static float *scratch(mmt_arena *arena, int64_t n) {
    return mmt_arena_alloc(arena, (size_t)n * sizeof(float), 64);
}

int nn_bottleneck_has_grads(const mmt_bottleneck *bn) {
    return bn && (bn->ddown_w || bn->ddown_b || bn->dup_w || bn->dup_b);
}

mmt_status nn_bottleneck_forward(mmt_bottleneck *bn, const mmt_ops *ops, mmt_arena *arena, float *x,
                                 int64_t N, int train) {
    int64_t C = bn->dim, D = bn->hidden;
    float *pre = scratch(arena, N * D), *act = scratch(arena, N * D), *up = scratch(arena, N * C);
    float *saved = train ? scratch(arena, N * C) : NULL;
    if (!pre || !act || !up || (train && !saved)) return MMT_STATUS_OUT_OF_MEMORY;
    if (saved) memcpy(saved, x, (size_t)(N * C) * sizeof(float));
    ops->matmul_fwd(pre, x, bn->down_w, bn->down_b, N, C, D);
    if (bn->act == MMT_BOTTLENECK_GELU) {
        ops->gelu_fwd(act, pre, N * D);
    } else {
        for (int64_t i = 0; i < N * D; i++) act[i] = pre[i] > 0 ? pre[i] : 0.0f;
    }
    ops->matmul_fwd(up, act, bn->up_w, bn->up_b, N, D, C);
    ops->add_fwd(x, x, up, N * C);
    bn->saved_x = saved;
    bn->saved_pre = train ? pre : NULL;
    bn->saved_act = train ? act : NULL;
    return MMT_OK;
}

mmt_status nn_bottleneck_backward(mmt_bottleneck *bn, const mmt_ops *ops, mmt_arena *arena, float *dx,
                                  const float *dy, int64_t N) {
    int64_t C = bn->dim, D = bn->hidden;
    if (dx) ops->add_fwd(dx, dx, dy, N * C); /* the skip connection */
    if (!dx && !bn->ddown_w && !bn->ddown_b && !bn->dup_w && !bn->dup_b) return MMT_OK;
    mmt_arena_mark mark = mmt_arena_get_mark(arena);
    mmt_status s = MMT_OK;
    float *dact = scratch(arena, N * D), *dpre = scratch(arena, N * D); // (N, D) each
    if (!dact || !dpre) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    memset(dact, 0, (size_t)(N * D) * sizeof(float));
    memset(dpre, 0, (size_t)(N * D) * sizeof(float));
    ops->matmul_bwd(dact, bn->dup_w, bn->dup_b, dy, bn->saved_act, bn->up_w, N, D, C);
    if (bn->act == MMT_BOTTLENECK_GELU) {
        ops->gelu_bwd(dpre, dact, bn->saved_pre, N * D);
    } else {
        for (int64_t i = 0; i < N * D; i++) dpre[i] = bn->saved_pre[i] > 0 ? dact[i] : 0.0f;
    }
    ops->matmul_bwd(dx, bn->ddown_w, bn->ddown_b, dpre, bn->saved_x, bn->down_w, N, C, D);
done:
    mmt_arena_rewind(arena, mark);
    return s;
}
