/*
 * optimizer.h — trainable parameters, AdamW, gradient clipping and accumulation helpers.
 *
 * The trainer never knows which model or PEFT method it drives: a model hands it a list of
 * parameter groups, each a list of named float32 parameters with their gradient buffers
 * (borrowed; the model owns them) plus the group's learning-rate multiplier and weight decay.
 *
 * Usage, one optimizer step with gradient accumulation over k micro-batches:
 *
 *     mmt_grad_zero(groups, n_groups);
 *     for (i = 0; i < k; i++) forward + backward (gradients add up);
 *     mmt_grad_scale(groups, n_groups, 1.0 / k);            // mean over micro-batches
 *     float norm;
 *     mmt_grad_clip_norm(groups, n_groups, max_norm, &norm);
 *     if (!isfinite(norm)) return mmt_grad_check_finite(groups, n_groups);  // names the tensor
 *     mmt_adamw_step(opt, mmt_schedule_multiplier(&sched, opt->step));   // train/schedule.h
 *
 * adamw.c matches torch.optim.AdamW (torch/optim/adam.py, _single_tensor_adam with
 * decoupled_weight_decay=True, the default non-fused, non-foreach path); grad_clip.c matches
 * torch.nn.utils.clip_grad_norm_ (torch/nn/utils/clip_grad.py) for norm_type 2. The learning
 * rate of group g at a step is (lr * lr_scale_g) * multiplier, the order torch's LambdaLR
 * uses (base_lr_g * lr_lambda(step)) when the group's base lr is lr * lr_scale_g.
 */
#ifndef MMT_TRAIN_OPTIMIZER_H
#define MMT_TRAIN_OPTIMIZER_H

#include <stdint.h>

#include "core/safetensors.h"
#include "core/tensor.h"
#include "nn/param.h"

struct mmt_ops;

/* One trainable tensor. data and grad are borrowed (the model owns them). */
typedef struct mmt_param {
    const char *name;               /* unique among the optimizer's parameters: the state key */
    float *data;                    /* (numel) */
    float *grad;                    /* (numel); may be NULL only where numel == 0 */
    int ndim;                       /* 0 for a scalar such as logit_scale */
    int64_t shape[MMT_MAX_DIMS];
    int64_t numel;                  /* product of shape; 0 is allowed */
} mmt_param;

/* A list of parameters sharing optimizer settings. params is borrowed. */
typedef struct mmt_param_group {
    const char *name;               /* label for logs ("decay", "no_decay"); may be NULL */
    mmt_param *params;
    int64_t n_params;
    double lr_scale;                /* this group's lr = base lr * lr_scale * schedule */
    double weight_decay;            /* decoupled: p -= lr * weight_decay * p */
    const struct mmt_ops *ops;      /* the backend the tensors live in (the model's op table);
                                     * NULL: the CPU's. The gradient helpers compute with it. */
} mmt_param_group;

/* Fills out[0..n) from a model's trainable-tensor list (names and buffers stay borrowed). */
void mmt_params_from_nn(const mmt_nn_param *in, int64_t n, mmt_param *out);

/* ---- weight-decay rule ------------------------------------------------------------- */

/*
 * 1 when a parameter should get no weight decay. The rule is open_clip's (training/main.py:
 * `p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n`) with two
 * changes: "ln"/"bn" match only at the start of a dot-separated name component (ln_1,
 * ln_final, bn1) so unrelated words do not match, and any component containing "norm"
 * (HF's layer_norm1, final_layer_norm, pre_layrnorm, post_layernorm) matches too; plus timm's
 * no_weight_decay tokens (position/class embeddings: names containing "position_embedding",
 * "positional_embedding", "class_embedding", "pos_embed" or "cls_token"), so a 2-D position
 * table is not pulled towards zero. Token-embedding tables and projection/LoRA matrices decay.
 */
int mmt_param_no_decay(const char *name, int ndim);

/*
 * Splits params (n of them) into at most two groups: first those that decay (weight_decay),
 * then those that do not (0), each keeping the input order. sorted receives the n params
 * reordered (caller-owned, n entries) and the groups point into it; both groups get lr_scale
 * and are named "decay" and "no_decay". Empty groups are left out; *n_groups gets 0, 1 or 2.
 */
void mmt_param_groups_by_decay(const mmt_param *params, int64_t n, double weight_decay,
                               double lr_scale, mmt_param *sorted, mmt_param_group groups[2],
                               int64_t *n_groups);

/* ---- gradient helpers (grad_clip.c) ------------------------------------------------ */

/* Sets every gradient to 0 (start of an accumulation window). */
void mmt_grad_zero(const mmt_param_group *groups, int64_t n_groups);
/* grad *= (float)scale, e.g. 1.0 / k after accumulating k micro-batches. */
void mmt_grad_scale(const mmt_param_group *groups, int64_t n_groups, double scale);

/*
 * The global L2 norm of all gradients as torch computes it: the norm of the per-tensor
 * norms, each tensor's norm rounded to float32 (torch._foreach_norm), the total too.
 * Sums run in double in a fixed order, so the result is deterministic.
 */
float mmt_grad_global_norm(const mmt_param_group *groups, int64_t n_groups);

/*
 * torch.nn.utils.clip_grad_norm_(params, max_norm): *total_norm gets the norm above; if it
 * is finite, every gradient is multiplied by min(max_norm / (total_norm + 1e-6), 1) in
 * float32, evaluated as torch does: (1 / (total_norm + 1e-6f)) * max_norm (Tensor.__rdiv__
 * is reciprocal-then-multiply); a coefficient of 1 leaves them untouched. A non-finite norm
 * leaves the gradients untouched (torch would scale them by NaN) and is reported through
 * *total_norm only, so the trainer can stop with its own message; mmt_grad_check_finite or
 * mmt_grad_find_nonfinite then names the culprit. INVALID_ARGUMENT if max_norm <= 0 or NaN
 * (to log the norm without clipping, call mmt_grad_global_norm).
 */
mmt_status mmt_grad_clip_norm(const mmt_param_group *groups, int64_t n_groups, double max_norm,
                              float *total_norm);

/* Finds the first NaN/Inf gradient element: returns 1 and sets *param (may be NULL) and
 * *index (may be NULL); returns 0 when every gradient is finite. */
int mmt_grad_find_nonfinite(const mmt_param_group *groups, int64_t n_groups,
                            const mmt_param **param, int64_t *index);
/* MMT_OK when every gradient is finite; else INVALID_ARGUMENT with a message naming the first
 * bad element: "non-finite gradient: <param>[<index>] = nan (shape [6, 5])". */
mmt_status mmt_grad_check_finite(const mmt_param_group *groups, int64_t n_groups);

/* ---- AdamW (adamw.c) --------------------------------------------------------------- */

typedef struct mmt_adamw_config {
    double lr;             /* base learning rate; each group multiplies it by lr_scale */
    double beta1, beta2;   /* in [0, 1) */
    double eps;            /* added to sqrt(v_hat), outside the square root, as torch does */
    int amsgrad;           /* 1: keep max(v) and use it in the denominator */
} mmt_adamw_config;

/* INVALID_ARGUMENT, with `who` leading the message, unless lr and eps are finite and >= 0 and
 * both betas are in [0, 1): the checks every Adam variant (adamw, adamw8bit) makes. */
mmt_status mmt_adam_hyper_check(const char *who, double lr, double beta1, double beta2, double eps);

/* torch.optim.AdamW defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, amsgrad off. (Weight
 * decay is per group; torch's default is 1e-2.) */
mmt_adamw_config mmt_adamw_config_default(void);

typedef struct mmt_adamw {
    mmt_adamw_config config;
    int64_t step;                 /* optimizer steps taken (torch's state["step"]) */
    mmt_param_group *groups;      /* owned copy of the groups; params point into `params` */
    int64_t n_groups;
    mmt_param *params;            /* owned copy of every parameter (data/grad stay borrowed) */
    int64_t n_params;
    float *state;                 /* owned: one allocation for every moment buffer */
    float **exp_avg;              /* owned array; [i] points into state, params[i].numel floats */
    float **exp_avg_sq;           /* same */
    float **max_exp_avg_sq;       /* same, amsgrad only (else NULL) */
    char *names;                  /* owned: group labels, parameter names and state keys */
    const char **keys;            /* owned array: 2 (3 with amsgrad) state keys per parameter,
                                     exp_avg, exp_avg_sq[, max_exp_avg_sq]; into names */
    const struct mmt_ops *ops;    /* borrowed: the table whose adamw_step updates the
                                     parameters; create sets mmt_ops_cpu(), a caller whose
                                     tensors live elsewhere may replace it (resolved table) */
    int fma;                      /* 1: the step runs ops->adamw_step (the AVX2 one where the
                                     CPU has it; same bits); set by create from the CPU, 0
                                     forces the reference twin (mmt_ops_ref()) */
} mmt_adamw;

/*
 * Creates an optimizer over the groups (copied, with their labels and parameter names; the
 * parameters' data and grad stay borrowed). Moments start at zero. INVALID_ARGUMENT for bad
 * hyperparameters (lr, lr_scale, weight_decay and eps must be finite and >= 0, betas in
 * [0, 1)), a negative numel, a numel that does not match the shape, missing data or grad
 * where numel > 0, a missing name or a duplicate name. *out is NULL on failure.
 */
mmt_status mmt_adamw_create(const mmt_adamw_config *config, const mmt_param_group *groups,
                            int64_t n_groups, mmt_adamw **out);
void mmt_adamw_free(mmt_adamw *opt);

/* The checks mmt_adamw_create makes on the groups (everything in the list above but the
 * hyperparameters), for other optimizers over the same groups (train/adamw8bit.h). */
mmt_status mmt_param_groups_check(const mmt_param_group *groups, int64_t n_groups);
/* The copies an optimizer keeps of checked groups: *groups_out (n_groups, each pointing into
 * *params_out), *params_out (*n_params, in group order), one block *names_out holding the group
 * labels, the parameter names (the copies point there) and, per parameter i and prefix k, the
 * state key "<prefix k><name>" at (*keys_out)[i * n_prefixes + k]. The caller frees the four
 * arrays with mmt_free, also after a failure (OUT_OF_MEMORY). */
mmt_status mmt_param_groups_copy(const mmt_param_group *groups, int64_t n_groups, const char *const *prefixes,
                                 int n_prefixes, mmt_param_group **groups_out, mmt_param **params_out,
                                 int64_t *n_params, char **names_out, const char ***keys_out);

/* The learning rate group g gets for a schedule multiplier: (lr * lr_scale) * multiplier. */
double mmt_adamw_group_lr(const mmt_adamw *opt, int64_t group, double multiplier);

/*
 * One AdamW step on every parameter with lr = mmt_adamw_group_lr(opt, g, multiplier):
 * p *= 1 - lr*wd;  m = lerp(m, g, 1-beta1);  v = v*beta2 + (1-beta2)*g*g;
 * (amsgrad: vmax = max(vmax, v), used for v below);
 * p += -(lr / (1-beta1^t)) * m / (sqrt(v) / sqrt(1-beta2^t) + eps).
 * Scalars (bias corrections, step size) are double as in Python, elementwise math float32
 * with torch's fused multiply-adds (lerp, addcmul), so given the same gradients the moments
 * match torch bit for bit and the parameters do too on the fixtures, or within an ulp
 * (torch's CPU sqrt is not always correctly rounded; ours is).
 * Allocates nothing. INVALID_ARGUMENT (state unchanged) if the multiplier is negative or not
 * finite, or a parameter with elements has no gradient buffer.
 */
mmt_status mmt_adamw_step(mmt_adamw *opt, double multiplier);

/*
 * Checkpoint state, as safetensors tensors: "optimizer.step" (I64, shape []) and, for each
 * parameter p, "optimizer.exp_avg.<p>", "optimizer.exp_avg_sq.<p>" (and
 * "optimizer.max_exp_avg_sq.<p>" with amsgrad): F32 in the parameter's shape.
 * mmt_adamw_state_count gives the number of tensors; mmt_adamw_state_export fills out
 * (cap entries, INVALID_ARGUMENT if too few; *n_out gets the count) with views of the
 * optimizer's own memory (names, shapes, data): valid until free, the data current until the
 * next step or import; ready for mmt_safetensors_write together with the trainer's other
 * tensors.
 */
int64_t mmt_adamw_state_count(const mmt_adamw *opt);
mmt_status mmt_adamw_state_export(const mmt_adamw *opt, mmt_st_write_tensor *out, int64_t cap,
                                  int64_t *n_out);

/*
 * Restores step and moments from an opened safetensors file. Every tensor is checked first
 * (present: else NOT_FOUND; F32 or I64 as above, same shape, step >= 0, second moments >= 0
 * and not NaN: else BAD_FORMAT); on any failure nothing is changed and the message names the
 * file and tensor. Other tensors in the file are ignored (so a file saved without amsgrad
 * lacks max_exp_avg_sq and cannot resume an amsgrad optimizer). Values are copied bit for
 * bit, so steps after a resume equal those of an uninterrupted run. Allocates nothing.
 */
mmt_status mmt_adamw_state_import(mmt_adamw *opt, const mmt_safetensors *st);

#endif
