/*
 * trainer.h — the training loop: batches, gradient accumulation, clipping, AdamW (float32
 * or 8-bit states) with warmup + cosine, metrics, progress reported to a callback, atomic
 * checkpoints and bitwise-exact resume.
 *
 * The loop never knows which model or method it drives: a task (mmt_train_task) loads the
 * examples of a batch, runs forward + loss and backward, lists its trainable tensors and
 * saves/loads them. Everything random is derived from (seed, step): the example order of an
 * epoch from (seed, epoch), dropout from (seed, step, micro-batch), so a run resumed from a
 * checkpoint at step k continues exactly as the uninterrupted run would.
 *
 * The run folder is locked, checked and recorded through train/run_dir.h: a fresh run needs
 * an empty folder (or settings.overwrite), a resumed one the same identity.
 * Files under settings.out:
 *     run.lock, run.json     the lock (holder's pid) and the run's identity record
 *     metrics.jsonl          one line per optimizer step (step, epoch, loss, lr, grad_norm,
 *                            images_per_s, elapsed_s, data_wait_s: the step's time spent in
 *                            load_batch, i.e. waiting on data; penalty with settings.regularize)
 *     ckpt-STEP/             every save_every steps and at the end: the task's files plus
 *                            optimizer.safetensors (moments, step), trainer_state.json and
 *                            manifest.json (sizes and checksums); with task.epoch_order also
 *                            sampling.safetensors (the hard orders of the epochs still in
 *                            use: "epoch.E", int64 (n)); built as ckpt-STEP.tmp-PID,
 *                            files fsync'd, then renamed (core/dir.h); only the run's own
 *                            checkpoints are pruned, and resume skips damaged ones
 *     adapter/               the final artifact (the task's files), also via a rename
 * A non-finite loss or gradient stops the run with an error naming the step (and the tensor);
 * the checkpoints already written stay as they are.
 */
#ifndef MMT_TRAIN_TRAINER_H
#define MMT_TRAIN_TRAINER_H

#include <stdint.h>

#include "core/status.h"
#include "nn/param.h"
#include "train/schedule.h"

typedef struct mmt_train_task {
    void *ctx;
    int64_t n_examples;
    /* Prepares examples indices[0..n) as the current micro-batch. */
    mmt_status (*load_batch)(void *ctx, const int64_t *indices, int64_t n);
    /* Forward and loss on the current micro-batch; seed drives dropout. */
    mmt_status (*forward_loss)(void *ctx, uint64_t seed, double *loss);
    mmt_status (*backward)(void *ctx);
    /* May be NULL (both). For overlapping the gradient all-reduce with backward: early_params
     * sets early[i] = 1 for the tensors of params() whose gradients are final part way
     * through backward and returns their count (0: backward has no such point now);
     * backward_split is backward calling ready(user) once at that point. */
    int64_t (*early_params)(void *ctx, uint8_t *early);
    mmt_status (*backward_split)(void *ctx, void (*ready)(void *user), void *user);
    const mmt_nn_param *(*params)(void *ctx, int64_t *n);
    void (*after_step)(void *ctx);                       /* may be NULL */
    /* Writes the trainable state (the adapter, or the full model) into an existing folder. */
    mmt_status (*save)(void *ctx, const char *dir);
    /* Reads it back from a folder written by save. */
    mmt_status (*load)(void *ctx, const char *dir);
    /* May be NULL. Announces a micro-batch before load_batch asks for it: every micro-batch,
     * in order, with position = its first place in the endless example stream (the same
     * after a resume), prefetch_ahead micro-batches ahead of the one being loaded, so the
     * task can prepare them in the background. */
    mmt_status (*prefetch)(void *ctx, int64_t position, const int64_t *indices, int64_t n);
    int64_t prefetch_ahead;
    /* The op table the trainable tensors live in (the model's); NULL: the CPU's. The
     * optimizer and the gradient helpers compute with it. */
    const struct mmt_ops *ops;
    /* May be NULL (plain sampling: the seeded permutation as it is). Hard-example batches
     * (train/hard_batches.h): reorders epoch `epoch`'s seeded permutation seeded[0..n) into
     * out[0..n) so that its consecutive runs of sizes[0], sizes[1], ... sizes[g - 1] examples
     * are the epoch's micro-batches, in the order they are trained. The trainer calls it once
     * per epoch, at the start of the step that first takes an example of the epoch (so with the
     * trainable tensors of that moment), places the runs where the micro-batches take their
     * examples (every rank's share included), and keeps the result in checkpoints, so that a
     * resumed run trains on the same batches. */
    mmt_status (*epoch_order)(void *ctx, int64_t epoch, const int64_t *seeded, int64_t n, const int64_t *sizes,
                              int64_t g, int64_t *out);
} mmt_train_task;

/* One optimizer step's progress, for settings.on_step. */
typedef struct mmt_train_progress {
    int64_t step;             /* steps done, resumed ones included */
    int64_t total_steps;
    int64_t start_step;       /* where this call began (after a resume) */
    double loss;              /* the step's mean loss */
    double lr;                /* the base learning rate of the step */
    double images_per_s;
    double elapsed_s;         /* since this call began */
    double eta_s;             /* at this call's pace */
} mmt_train_progress;

typedef struct mmt_train_settings {
    const char *out;          /* run folder (created) */
    const char *resume;       /* a run folder (its latest checkpoint) or a ckpt-STEP folder; NULL: fresh */
    int64_t steps;            /* optimizer steps; 0: derived from epochs */
    int64_t epochs;           /* used when steps == 0 */
    int64_t batch_size;       /* examples per micro-batch */
    int64_t grad_accum;       /* micro-batches per optimizer step */
    double lr, weight_decay, beta1, beta2, eps;
    /* "adamw" (NULL: the same; float32 moments, train/optimizer.h) or "adamw8bit"
     * (bitsandbytes' 8-bit states, train/adamw8bit.h). A checkpoint resumes only with the
     * optimizer that wrote it. */
    const char *optim;
    /* Per-group learning rates: "PATTERN=FACTOR,..." — a tensor whose name contains PATTERN
     * (first match wins) trains at lr * FACTOR; others at lr. NULL or "": one rate. */
    const char *lr_scales;
    double max_grad_norm;     /* <= 0: no clipping */
    mmt_schedule_kind schedule;
    double warmup_ratio;      /* of the total steps, used when warmup_steps < 0 */
    int64_t warmup_steps;
    double min_lr_rate;
    uint64_t seed;
    int64_t save_every;       /* 0: only at the end */
    int64_t keep_checkpoints; /* newest to keep; 0: all */
    /* Called after every optimizer step (may be NULL): the library prints no progress itself;
     * the caller draws a bar or writes log lines from it. */
    void (*on_step)(void *user, const struct mmt_train_progress *progress);
    void *on_step_user;
    int quiet;                /* no info log lines (start, resume) */
    const char *settings_json;/* written into trainer_state.json as "settings" (may be NULL) */
    const char *identity_json;/* what makes two runs the same run (run_dir.h); NULL: not checked */
    int overwrite;            /* a fresh run clears a non-empty out instead of refusing it */
    /* Data parallelism (docs/distributed.md). comm: the job's ranks (NULL or one rank: a
     * single process). Each rank trains on its share of every step, like PyTorch's DDP with
     * a DistributedSampler: the example order of an epoch is the seeded permutation padded
     * by repeating its start to a multiple of the ranks, rank r taking positions r, r + R, ...;
     * the global batch is batch_size x grad_accum x ranks. Rank 0's trainable tensors are
     * broadcast at the start; the gradients are summed over ranks in rank order (the same
     * bytes on every rank) and divided by grad_accum x ranks; rank 0 alone writes the run
     * folder. A resumed run may have another number of ranks. */
    struct mmt_comm *comm;
    /* 1: ZeRO stage 1 — each rank keeps the optimizer state of its share of the trainable
     * tensors, steps those and broadcasts them; checkpoints hold the full state. */
    int zero;
    /* 1: overlap the gradient all-reduce with backward where the task has a split point
     * (task.early_params) and the communicator allows a second thread; the sums are the
     * same bytes as without (each element is summed over ranks in rank order either way). */
    int overlap_comm;
    /* One process that trains exactly as an as_ranks-rank job would (the same examples per
     * micro-batch, dropout and augmentation draws, and order of gradient sums): to
     * reproduce or check a distributed run on one machine. 0 or 1: off. */
    int64_t as_ranks;
    /* Replay (continual learning, train/replay.h): the task's last replay_examples examples
     * are a replay set of earlier tasks' pairs, and each micro-batch takes replay_per_batch
     * of its batch_size examples from it (the rest from the data before it, in the data's
     * seeded order; epochs count the data alone). Both 0: off. */
    int64_t replay_examples, replay_per_batch;
    /* May be NULL. A regulariser on the trainable tensors (EWC, train/ewc.h): called once per
     * optimizer step with the averaged gradient in place (after the sum over ranks, on every
     * rank alike, before clipping); adds its gradient to the tensors' gradients and returns
     * its value, which metrics.jsonl records as "penalty" (the "loss" stays the task's). */
    mmt_status (*regularize)(void *user, double *penalty);
    void *regularize_user;
} mmt_train_settings;

void mmt_train_settings_default(mmt_train_settings *s);

typedef struct mmt_train_result {
    int64_t steps_done;       /* the run's step count (resumed steps included) */
    int64_t steps_run;        /* steps this call ran */
    double final_loss;        /* mean loss of the last step */
    double seconds;           /* this call's wall time, checkpoint writes included */
    double comm_seconds;      /* of which in gradient all-reduce and parameter broadcasts */
} mmt_train_result;

mmt_status mmt_train_run(const mmt_train_task *task, const mmt_train_settings *settings,
                         mmt_train_result *result);

#endif
