/*
 * train_job.h — one CLIP training run made from checked settings (train/train_config.h):
 * what `mmtune train` and mmt_clip_train_adapter (mmtune.h) both run, so that the same
 * settings give the same run folder and the same adapter, bit for bit.
 *
 * create builds what the method trains — the PEFT config of LoRA / IA3, the bottleneck
 * config, the prompt and prefix settings — and the task over the model and the pairs
 * (train/clip_task.h); run trains it into the run folder with the trainer (train/trainer.h).
 * For linear-probe, create holds the run folder and embeds the pairs once
 * (train/probe_task.h) and run fits the head with L-BFGS (train/probe_fit.h). Between the two
 * the caller may report the parameter counts.
 */
#ifndef MMT_TRAIN_TRAIN_JOB_H
#define MMT_TRAIN_TRAIN_JOB_H

#include <stdint.h>

#include "core/status.h"
#include "data/pairs.h"
#include "train/trainer.h"
#include "train/train_config.h"

typedef struct mmt_train_job mmt_train_job;

typedef struct mmt_train_job_result {
    /* linear-probe: steps = the final fit's L-BFGS iterations, final_loss its training loss */
    mmt_train_result train;
    int64_t probe_iterations;      /* linear-probe: iterations of every fit, sweep included */
    double probe_C;                /* linear-probe: the L2 strength chosen on held-out data */
    double probe_heldout_accuracy; /* at that C; NaN without a held-out split */
} mmt_train_job_result;

/* model, pairs and c are borrowed and must outlive the job; c has passed
 * mmt_train_config_check. */
mmt_status mmt_train_job_create(mmt_clip *model, const mmt_pairs *pairs, const mmt_train_config *c,
                                mmt_train_job **out);
/* The same for a GIT captioner (train/caption_task.h): lora, ia3, prompt, prefix or full. */
struct mmt_git;
mmt_status mmt_train_job_create_caption(struct mmt_git *model, const mmt_pairs *pairs, const mmt_train_config *c,
                                        mmt_train_job **out);
void mmt_train_job_free(mmt_train_job *j);

int64_t mmt_train_job_trainable_params(const mmt_train_job *j);
int64_t mmt_train_job_total_params(const mmt_train_job *j); /* the base model's */

/* Trains (or fits); on_step (may be NULL) is called after every optimizer step. */
mmt_status mmt_train_job_run(mmt_train_job *j, void (*on_step)(void *user, const mmt_train_progress *progress),
                             void *user, mmt_train_job_result *result);

#endif
