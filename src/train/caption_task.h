/*
 * caption_task.h — fine-tuning a GIT captioner on image–caption pairs, as an mmt_train_task.
 *
 * Each caption is tokenized once up front with the model's WordPiece tokenizer as
 * GitProcessor does ([CLS] caption [SEP], truncated to max_tokens); a batch is padded to its
 * longest caption with the pad id, and the labels are the ids with padding set to -100 (so
 * the loss is GitForCausalLM's: every caption token after [CLS], [SEP] included; with prompt
 * tuning PEFT's: [CLS] too, predicted by the last prompt row). Images
 * come from train/image_source.h (loader workers, cache, augmentation). What trains: a PEFT
 * adapter (LoRA / rsLoRA / DoRA / IA3 from an mmt_peft_config, attached through GIT's model
 * interface with PEFT's target rules: decoder modules query, key, value, dense..., vision
 * q_proj, v_proj..., "all-linear") or the whole model.
 *
 * What save writes: prompt / prefix tuning: PEFT's PROMPT_TUNING / PREFIX_TUNING adapter files
 * (prompt rows in front of the text as PeftModelForCausalLM puts them); adapter: adapter_config.json + adapter_model.safetensors (PEFT's format,
 * loadable by PeftModel on GitForCausalLM); full: a Hugging Face snapshot (model.safetensors
 * with every tensor, and the base's config, tokenizer and preprocessor files copied).
 */
#ifndef MMT_TRAIN_CAPTION_TASK_H
#define MMT_TRAIN_CAPTION_TASK_H

#include "data/augment.h"
#include "data/pairs.h"
#include "models/git.h"
#include "peft/adapter.h"
#include "peft/peft_config.h"
#include "train/trainer.h"

typedef struct mmt_caption_task mmt_caption_task;

typedef struct mmt_caption_task_options {
    const mmt_peft_config *peft;   /* NULL: full fine-tuning (unless prompt) */
    /* prompt tuning (peft/prompt.h: text_tokens) or prefix tuning of the decoder
     * (prefix_tokens, prefix_projection); NULL: none. Saved as the adapter (PEFT's files). */
    const struct mmt_prompt_settings *prompt;
    const char *prompt_init_text;  /* prompt tuning: PEFT's prompt_tuning_init_text; NULL: random */
    int64_t max_tokens;            /* caption length with [CLS] and [SEP]; 0: 40, or the model's positions if fewer */
    float label_smoothing;         /* torch's cross_entropy label_smoothing */
    uint64_t seed;                 /* adapter initialisation, augmentation */
    size_t cache_bytes;            /* pixel cache budget; 0: no cache */
    int64_t loader_workers, prefetch_batches;
    mmt_augment augment;
    mmt_dicom_options dicom;       /* DICOM rendering of the training images (zeroed: the file's) */
} mmt_caption_task_options;

/* model and pairs are borrowed and must outlive the task. */
mmt_status mmt_caption_task_create(mmt_git *model, const mmt_pairs *pairs, const mmt_caption_task_options *o,
                                   mmt_caption_task **out);
void mmt_caption_task_free(mmt_caption_task *t);
void mmt_caption_task_bind(mmt_caption_task *t, mmt_train_task *out);

int64_t mmt_caption_task_trainable_numel(mmt_caption_task *t);
mmt_git_run *mmt_caption_task_run(mmt_caption_task *t);
mmt_adapter *mmt_caption_task_adapter(mmt_caption_task *t);

#endif
