/*
 * clip_task.h — contrastive fine-tuning of CLIP on image–text pairs, as an mmt_train_task.
 *
 * Binds the pieces the trainer does not know about: the pairs file, the image processor and
 * tokenizer of the model, the training view, and what trains — a PEFT adapter (LoRA or IA3,
 * from an mmt_peft_config whose target patterns are resolved with PEFT's rules) or the whole
 * model. Texts are tokenized once up front (truncated to the context length, as CLIP
 * training does); images are decoded, preprocessed and augmented per batch by a background
 * loader that the trainer's prefetch hook keeps one or more micro-batches ahead and, while the
 * preprocessed pixels of the whole set fit in the cache budget, kept after their first use.
 *
 * With hard_ratio the task gives the trainer an epoch_order hook: the epoch's pairs embedded
 * with the current model, then grouped into micro-batches of near neighbours; it logs the
 * mean in-batch similarity of the hard batches and of the plain order's (an info line).
 *
 * What save writes (the folder the trainer names):
 *   adapter: adapter_config.json + adapter_model.safetensors (PEFT's format);
 *   full:    a Hugging Face snapshot: model.safetensors with every tensor, and the base's
 *            config.json, tokenizer and preprocessor files copied.
 */
#ifndef MMT_TRAIN_CLIP_TASK_H
#define MMT_TRAIN_CLIP_TASK_H

#include "data/augment.h"
#include "data/pairs.h"
#include "models/clip_train.h"
#include "peft/adapter.h"
#include "peft/adapter_folder.h"
#include "peft/bottleneck_config.h"
#include "peft/peft_config.h"
#include "peft/prompt.h"
#include "train/trainer.h"

typedef struct mmt_clip_task mmt_clip_task;

typedef struct mmt_clip_task_options {
    const mmt_peft_config *peft;        /* LoRA / IA3; NULL: none (full fine-tuning without prompt) */
    /* prompt / prefix tuning (peft/prompt.h), alone or beside peft; NULL: none. Alone it is
     * saved as the adapter; beside a LoRA / IA3 adapter in its subfolder "prompt/" (where
     * PEFT saves a second adapter named "prompt"). */
    const mmt_prompt_settings *prompt;
    const char *prompt_init_text;       /* initialise text prompts from this text's embeddings */
    /* bottleneck adapters (peft/bottleneck_config.h) instead of peft; NULL: none */
    const mmt_bottleneck_config *bottleneck;
    mmt_clip_train_options train;
    uint64_t seed;                      /* adapter initialisation */
    size_t cache_bytes;                 /* pixel cache budget; 0: no cache */
    /* Background loading (data/loader.h): worker threads (0: on the training thread) and
     * micro-batches prepared ahead (0 counts as 1). Either way the pixels are the same. */
    int64_t loader_workers, prefetch_batches;
    /* training augmentations (data/augment.h), seeded by `seed` and the example's place in
     * the stream; all off when zeroed. The cache keeps un-augmented pixels only: with crop or
     * jitter on it is not used. */
    mmt_augment augment;
    mmt_dicom_options dicom;       /* DICOM rendering of the training images (zeroed: the file's) */
    /* > 0 (up to 1): hard-example batches (train/hard_batches.h, `--sampling hard`): at the
     * start of each epoch every pair is embedded through the view as it is then (images
     * un-augmented), and that share of each micro-batch is a seed pair and its nearest
     * neighbours. 0: plain sampling (the trainer's seeded order). */
    double hard_ratio;
} mmt_clip_task_options;

/* model and pairs stay borrowed and must outlive the task. */
mmt_status mmt_clip_task_create(mmt_clip *model, const mmt_pairs *pairs,
                                const mmt_clip_task_options *o, mmt_clip_task **out);
void mmt_clip_task_free(mmt_clip_task *t);
/* The trainer's view of it. */
void mmt_clip_task_bind(mmt_clip_task *t, mmt_train_task *out);

int64_t mmt_clip_task_trainable_numel(const mmt_clip_task *t);
mmt_clip_train *mmt_clip_task_view(mmt_clip_task *t);
mmt_adapter *mmt_clip_task_adapter(mmt_clip_task *t);
mmt_prompt *mmt_clip_task_prompt(mmt_clip_task *t);

#endif
