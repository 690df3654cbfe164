/*
 * ewc.h — Elastic Weight Consolidation (Kirkpatrick et al. 2017, "Overcoming catastrophic
 * forgetting in neural networks", PNAS 114(13), eq. 3): a quadratic penalty that keeps the
 * trainable tensors near the values an earlier task left them at, each number weighted by
 * how much that task's loss depends on it:
 *
 *     penalty = (lambda / 2) sum_i F_i (theta_i - theta*_i)^2
 *     d penalty / d theta_i = lambda F_i (theta_i - theta*_i)
 *
 * theta* are the earlier adapter's weights; F is the diagonal of the empirical Fisher
 * information of the earlier task's loss at theta*. mmt_ewc_estimate computes it as the mean
 * over micro-batches of the squared gradient of each micro-batch's mean loss: the contrastive
 * loss couples the examples of a batch (a single pair has no negatives), so the micro-batch,
 * not the example, is the unit. F is then about 1/B of the per-example Fisher for the part
 * of the gradient that is noise; lambda absorbs the scale (docs/continual.md).
 *
 * Several earlier tasks (A, then B, then C): the state trained after B holds F_A + F_B and
 * theta*_B (the Fishers are summed, the latest weights kept), the "online" form of
 * Schwarz et al. 2018 without decay. mmt_ewc_estimate adds the new estimate to a previous
 * state when given one.
 *
 * The state is a file beside the adapter, ewc_fisher.safetensors: for each trainable tensor
 * (by the name the task registers it under, e.g. a LoRA matrix's PEFT key) "fisher.<name>"
 * and "theta.<name>", float32 in the tensor's shape, and metadata "mmtune": "ewc",
 * "version": "1", "tasks" (estimates summed into fisher), "micro_batches" and "batch_size"
 * (of the latest estimate) and "estimator" (the sentence above).
 *
 * The penalty is a regulariser on the trainable tensors alone (train/trainer.h's
 * settings.regularize): the trainer adds its gradient once per optimizer step to the
 * averaged gradient (after the sum over ranks, identically on every rank), never per
 * micro-batch or per rank. The tensors live in CPU memory (the trainer refuses others).
 */
#ifndef MMT_TRAIN_EWC_H
#define MMT_TRAIN_EWC_H

#include <stdint.h>

#include "core/status.h"
#include "nn/param.h"
#include "train/trainer.h"

#define MMT_EWC_FILE "ewc_fisher.safetensors"

struct mmt_comm;

typedef struct mmt_ewc_tensor {
    char *name;                         /* owned: the trainable tensor's name */
    int ndim;
    int64_t shape[MMT_PARAM_MAX_DIMS];
    int64_t numel;
    float *fisher;                      /* owned (numel): F */
    float *theta;                       /* owned (numel): theta* */
} mmt_ewc_tensor;

typedef struct mmt_ewc_state {
    mmt_ewc_tensor *tensors;            /* owned */
    int64_t n;
    int64_t tasks;                      /* estimates summed into fisher */
    int64_t micro_batches, batch_size;  /* of the latest estimate */
} mmt_ewc_state;

void mmt_ewc_state_free(mmt_ewc_state *s);
/* path: an ewc_fisher.safetensors file or a folder holding one. A missing file, a tensor
 * without its pair, a shape mismatch or a non-finite / negative Fisher value is an error
 * naming the file. */
mmt_status mmt_ewc_state_load(const char *path, mmt_ewc_state **out);
/* Writes the file atomically. */
mmt_status mmt_ewc_state_save(const mmt_ewc_state *s, const char *path);

typedef struct mmt_ewc_estimate_options {
    int64_t batch_size;      /* examples per micro-batch (the training batch size) */
    int64_t n_examples;      /* the examples 0..n-1 of the task (not a replay set after them); 0: all */
    int64_t max_batches;     /* 0: every whole micro-batch of a seeded shuffle (n / B of them; at least one) */
    uint64_t seed;           /* the shuffle and dropout */
    struct mmt_comm *comm;   /* NULL or one rank: alone; else micro-batch j is computed on rank j mod R and the
                              * squared gradients summed over ranks */
    const mmt_ewc_state *previous; /* NULL, or a state whose F is added (its tensors must match the task's) */
} mmt_ewc_estimate_options;

/* F at the task's current weights (theta* = those weights). The task's gradients are
 * overwritten. */
mmt_status mmt_ewc_estimate(const mmt_train_task *task, const mmt_ewc_estimate_options *o, mmt_ewc_state **out);

/* The penalty bound to the trainable tensors params[0..n) (borrowed, as the state is): every
 * tensor must have its entry in the state with the same shape and every entry its tensor,
 * else an error naming both. lambda >= 0. */
typedef struct mmt_ewc mmt_ewc;
mmt_status mmt_ewc_create(const mmt_ewc_state *state, const char *what, const mmt_nn_param *params, int64_t n,
                          double lambda, mmt_ewc **out);
void mmt_ewc_free(mmt_ewc *e);
/* The penalty at the tensors' current values (summed in float64). */
double mmt_ewc_penalty(const mmt_ewc *e);
/* Adds the penalty's gradient to the tensors' gradients; *penalty gets the penalty. The
 * signature of the trainer's settings.regularize (user: the mmt_ewc). */
mmt_status mmt_ewc_regularize(void *ewc, double *penalty);

#endif
