/*
 * continual.h — what a training run needs to learn a task after earlier ones without
 * forgetting them (docs/continual.md), between the settings (train/train_config.h) and the
 * run (train/train_job.h):
 *
 *   --init-adapter DIR   the run's adapter starts from DIR's weights. The method and its
 *                        settings must be DIR's: after the task is made, its fresh state is
 *                        saved to a temporary folder and its adapter_config.json (and
 *                        prompt/adapter_config.json) compared with DIR's, key by key, leaving
 *                        out what does not change the adapter's function (paths, dropout,
 *                        initialisation); a difference is an error naming each key. Then the
 *                        task loads DIR as it loads a checkpoint (tensor names and shapes
 *                        checked).
 *   --ewc L --ewc-from D the EWC penalty (train/ewc.h) on the trainable tensors, with D's
 *                        ewc_fisher.safetensors (D defaults to the init adapter).
 *   --save-fisher        after the last step, the Fisher of this run's data at its final
 *                        weights (plus --ewc-from's, when given: several earlier tasks sum)
 *                        is written as OUT/adapter/ewc_fisher.safetensors, atomically, after
 *                        the adapter itself.
 *   --replay F --replay-ratio R
 *                        F's pairs follow the data in the task's examples, and each
 *                        micro-batch takes round(R x batch) of them (train/replay.h).
 *   --distill-from-previous
 *                        --distill's teacher is a frozen view with DIR attached (the model
 *                        before this task) instead of the bare base (models/clip_train.h).
 * The run's identity (train/run_dir.h) gains the content fingerprints of DIR, D's file and
 * F, so resuming with other files is refused like resuming with other data.
 */
#ifndef MMT_TRAIN_CONTINUAL_H
#define MMT_TRAIN_CONTINUAL_H

#include "core/status.h"
#include "data/pairs.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "train/train_config.h"
#include "train/trainer.h"

typedef struct mmt_continual mmt_continual;

/* Reads the replay pairs and the EWC state the settings name (c has passed
 * mmt_train_config_check); data is borrowed and must outlive it. */
mmt_status mmt_continual_open(const mmt_train_config *c, const mmt_pairs *data, mmt_continual **out);
void mmt_continual_free(mmt_continual *k);

/* The task's examples: the data, then the replay pairs (or data itself without replay). */
const mmt_pairs *mmt_continual_pairs(const mmt_continual *k);

/* --distill-from-previous: a view of model with the init adapter attached, frozen (owned by
 * k; NULL without the setting), for the task's clip_train options' base_teacher. */
mmt_status mmt_continual_teacher(mmt_continual *k, mmt_clip *model, mmt_clip_train **teacher);

/* After the task is made: checks and loads --init-adapter into it and binds the EWC penalty
 * to its trainable tensors. */
mmt_status mmt_continual_bind(mmt_continual *k, const mmt_train_task *task);

/* Appends the files' fingerprints to the run's identity object (*identity is replaced). */
mmt_status mmt_continual_identity(const mmt_continual *k, char **identity);

/* The trainer's replay and regulariser settings. */
void mmt_continual_settings(mmt_continual *k, mmt_train_settings *ts);

/* After a successful run: --save-fisher (comm: the job's ranks; rank 0 writes). */
mmt_status mmt_continual_finish(mmt_continual *k, const mmt_train_task *task, struct mmt_comm *comm);

#endif
