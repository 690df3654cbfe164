/*
 * bottleneck.h — a bottleneck adapter (Houlsby et al. 2019, "Parameter-Efficient Transfer
 * Learning for NLP"; Pfeiffer et al. 2020), forward and backward on rows of width C:
 *     y = x + up(act(down(x)))      down: (D, C) + (D),  up: (C, D) + (C),  D = C / reduction
 * act is ReLU or exact-erf GELU. With up = 0 (its initialisation) the adapter is the identity,
 * so a fresh adapter leaves the model's outputs unchanged and training starts from the base.
 *
 * The adapter does not own its tensors (whoever attaches it does, see peft/adapter.h). A NULL
 * gradient pointer means frozen. Usage: nn_bottleneck_forward(..., train = 1) works in place on
 * x and saves its input, down's output and the activation in `arena` (the adapter keeps
 * pointers until the next forward); nn_bottleneck_backward then follows once. Under gradient
 * checkpointing the caller simply runs forward again before backward: it is deterministic.
 */
#ifndef MMT_NN_BOTTLENECK_H
#define MMT_NN_BOTTLENECK_H

#include <stdint.h>

#include "core/arena.h"
#include "core/status.h"
#include "ops/ops.h"

typedef enum mmt_bottleneck_act { MMT_BOTTLENECK_RELU, MMT_BOTTLENECK_GELU } mmt_bottleneck_act;

typedef struct mmt_bottleneck {
    int64_t dim, hidden;          /* C and D */
    mmt_bottleneck_act act;
    float *down_w, *down_b;       /* (D, C), (D) */
    float *up_w, *up_b;           /* (C, D), (C) */
    float *ddown_w, *ddown_b;     /* gradients, NULL when frozen */
    float *dup_w, *dup_b;
    /* saved by a training forward (arena) */
    float *saved_x;               /* the input (N, C) */
    float *saved_pre;             /* down(x) (N, D) */
    float *saved_act;             /* act(down(x)) (N, D) */
} mmt_bottleneck;

/* x (N, C) <- x + up(act(down(x))), in place. Scratch and saved tensors come from `arena`. */
mmt_status nn_bottleneck_forward(mmt_bottleneck *bn, const mmt_ops *ops, mmt_arena *arena, float *x,
                                 int64_t N, int train);

/* For the last training forward: dx (N, C) += dy + the gradient through the adapter branch
 * (dx NULL: not needed), parameter gradients +=. Scratch from `arena`, given back. */
mmt_status nn_bottleneck_backward(mmt_bottleneck *bn, const mmt_ops *ops, mmt_arena *arena, float *dx,
                                  const float *dy, int64_t N);

/* 1 when bn is not NULL and has a trainable tensor. */
int nn_bottleneck_has_grads(const mmt_bottleneck *bn);

#endif
