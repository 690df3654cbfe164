/*
 * mmtune.h — public API of the mmtune library.
 *
 * Conventions: every fallible call returns an mmt_status; on failure a one-line message
 * naming the file/field/value is available from mmt_last_error() (thread-local, valid until
 * the next failing call on the same thread). Handles are opaque; every *_create / *_load has
 * a matching *_free that accepts NULL. The library never prints and never exits.
 */
#ifndef MMTUNE_H
#define MMTUNE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MMT_VERSION_STRING "0.1.0"

typedef enum mmt_status {
    MMT_OK = 0,
    MMT_STATUS_INVALID_ARGUMENT = 1, /* a caller passed something out of range */
    MMT_STATUS_IO = 2,               /* open/read/write/mmap failed */
    MMT_STATUS_BAD_FORMAT = 3,       /* a file or string is malformed */
    MMT_STATUS_NOT_FOUND = 4,        /* a required file, tensor or key is missing */
    MMT_STATUS_OUT_OF_MEMORY = 5,
    MMT_STATUS_UNSUPPORTED = 6,      /* valid input that this build cannot handle */
    MMT_STATUS_INTERNAL = 7
} mmt_status;

/* Message of the last failure on this thread ("" if none). */
const char *mmt_last_error(void);
/* Short name of a status code ("bad format", ...). */
const char *mmt_status_name(mmt_status status);

/* Logging: the library logs through one callback the caller may replace or silence. */
typedef enum mmt_log_level {
    MMT_LOG_DEBUG = 0,
    MMT_LOG_INFO = 1,
    MMT_LOG_WARN = 2,
    MMT_LOG_ERROR = 3,
    MMT_LOG_SILENT = 4
} mmt_log_level;
typedef void (*mmt_log_fn)(mmt_log_level level, const char *message, void *user);
/* fn == NULL restores the default (stderr) logger. */
void mmt_log_set_callback(mmt_log_fn fn, void *user);
void mmt_log_set_level(mmt_log_level level);

/* Bytes currently allocated through the library's allocator, and the peak. */
size_t mmt_alloc_current_bytes(void);
size_t mmt_alloc_peak_bytes(void);

/* ------------------------------------------------------------------------------------ */
/* CLIP models                                                                          */

typedef struct mmt_clip mmt_clip; /* a loaded CLIP model (weights, config, tokenizer, processor) */

/* Loads a Hugging Face CLIP snapshot folder: config.json, model.safetensors (or a sharded
 * model.safetensors.index.json), vocab.json + merges.txt, optional preprocessor_config.json. */
mmt_status mmt_clip_load(const char *dir, mmt_clip **out);
void mmt_clip_free(mmt_clip *model);

/* Keeping a loaded model's linear weights quantized (before any run context or view of it
 * exists: they copy the weights when created). INT8: one int8 row and one scale per output
 * feature (bitsandbytes' LLM.int8 layout); inference quantizes activations per token and
 * multiplies in integers. NF4: bitsandbytes' 4-bit NormalFloat, blocks of 64 (QLoRA's base),
 * computed in fp32 on the weight dequantized panel by panel. Weights a snapshot already holds
 * quantized stay as they are. */
typedef enum mmt_quant_type { MMT_QUANT_NONE = 0, MMT_QUANT_INT8 = 1, MMT_QUANT_NF4 = 2 } mmt_quant_type;
typedef struct mmt_quant_options {
    mmt_quant_type type;
    int keep_edge_layers;   /* 1: the first and last block of each tower stay fp32 */
    int keep_projections;   /* 1: linears outside the blocks (CLIP's projections) stay fp32 */
    int nf4_double_quant;   /* NF4: double quantization of the block scales (bitsandbytes') */
} mmt_quant_options;
/* type's defaults: every linear quantized (transformers' choice), NF4 with double quantization. */
void mmt_quant_options_default(mmt_quant_options *o, mmt_quant_type type);
/* "int8" / "nf4" -> the type; INVALID_ARGUMENT for anything else. */
mmt_status mmt_quant_type_parse(const char *name, mmt_quant_type *out);
mmt_status mmt_clip_quantize(mmt_clip *model, const mmt_quant_options *o);
/* mmt_clip_load that quantizes each linear as it reads it (o NULL: none): the float32 weights
 * are never all in memory at once, so the peak is the quantized model's. */
mmt_status mmt_clip_load_quantized(const char *dir, const mmt_quant_options *o, mmt_clip **out);

int64_t mmt_clip_embed_dim(const mmt_clip *model);       /* projection_dim */
float mmt_clip_logit_scale(const mmt_clip *model);       /* exp(logit_scale) */

/* L2-normalised projected image embeddings for n encoded image files; out holds
 * n * embed_dim floats. */
mmt_status mmt_clip_embed_image_files(mmt_clip *model, const char *const *paths, int64_t n,
                                      float *out);
/* L2-normalised projected text embeddings for n UTF-8 strings. */
mmt_status mmt_clip_embed_texts(mmt_clip *model, const char *const *texts, int64_t n,
                                float *out);

/* ------------------------------------------------------------------------------------ */
/* Adapters over one base, and run contexts                                             */
/*
 * One base model serves any number of adapters and threads. An adapter is a PEFT adapter
 * folder (LoRA, rsLoRA, DoRA, IA3, prompt, prefix, bottleneck, from mmtune or from PEFT),
 * checked against the base when opened; opening never changes the base or another adapter.
 * A run context holds what one thread needs to compute (activations, scratch, and the
 * binding of adapters to the base's layers); use one per thread. Every embedding call takes
 * one adapter per input row (NULL: the base model alone); rows that share an adapter are
 * computed together, and each row's result equals computing it in a batch of that adapter
 * alone. Free run contexts (or make them forget the adapter: mmt_clip_run_forget) before
 * closing the adapters, and the base last.
 */
typedef struct mmt_clip_adapter mmt_clip_adapter;
typedef struct mmt_clip_run mmt_clip_run;

mmt_status mmt_clip_adapter_open(mmt_clip *base, const char *dir, mmt_clip_adapter **out);
void mmt_clip_adapter_close(mmt_clip_adapter *adapter);
/* The folder the adapter was opened from. */
const char *mmt_clip_adapter_dir(const mmt_clip_adapter *adapter);

mmt_status mmt_clip_run_create(mmt_clip *base, mmt_clip_run **out);
void mmt_clip_run_free(mmt_clip_run *run);
/* Drops what run keeps for adapter (its binding to the run's layers), so that the adapter
 * may be closed while the run lives on (a server unloading adapters). Call it on the run's
 * thread; the run computes the adapter's rows again if it meets it later. */
void mmt_clip_run_forget(mmt_clip_run *run, const mmt_clip_adapter *adapter);

/* Normalised embeddings (n, embed_dim) of n image files / n UTF-8 texts; adapters holds n
 * entries (or is NULL: the base model for every row). */
mmt_status mmt_clip_run_embed_image_files(mmt_clip_run *run, const char *const *paths,
                                          mmt_clip_adapter *const *adapters, int64_t n, float *out);
mmt_status mmt_clip_run_embed_texts(mmt_clip_run *run, const char *const *texts,
                                    mmt_clip_adapter *const *adapters, int64_t n, float *out);
/* The same for images already preprocessed as the model's processor does: pixels holds n
 * images of (3, image_size, image_size) floats (for programs that decode themselves). */
mmt_status mmt_clip_run_embed_pixels(mmt_clip_run *run, const float *pixels,
                                     mmt_clip_adapter *const *adapters, int64_t n, float *out);

/* ------------------------------------------------------------------------------------ */
/* Training                                                                             */
/*
 * Trains an adapter over a loaded base on image-text pairs with CLIP's contrastive loss
 * through the code path of `mmtune train`: the same settings, data and seed give the same
 * adapter files, bit for bit. Every setting of `mmtune train --help` is a field below, named
 * by its --config key, with the same default and the same checks (a string left NULL takes
 * its default). The run folder out_dir gets what the CLI writes: run.json,
 * metrics.jsonl, checkpoints ckpt-STEP/ and the adapter in out_dir/adapter, which
 * mmt_clip_adapter_open opens (method "full" writes a whole snapshot there instead, which
 * mmt_clip_load opens; "linear-probe" a classification head, for `mmtune eval --head`).
 * A run folder written here can be resumed by `mmtune train --resume` and the other way round.
 *
 * The library prints nothing: progress goes to on_step, log lines (a resume, skipped
 * checkpoints) to the logger (mmt_log_set_callback). The base is only read, so other threads
 * may embed with it meanwhile. Settings out of range (an unknown method, steps < 0, a bad
 * schedule, scope or layer list, NULL or empty paths, ...) fail with
 * MMT_STATUS_INVALID_ARGUMENT and a one-line message before the data is read. docs/api.md
 * has an example; examples/train_adapter.c is a whole program.
 */

/* One optimizer step's progress, for mmt_train_options.on_step. */
typedef struct mmt_train_step_info {
    int64_t step;         /* steps done, resumed ones included */
    int64_t total_steps;
    int64_t start_step;   /* where this call began (after a resume) */
    double loss;          /* the step's mean loss */
    double lr;            /* the base learning rate of the step */
    double images_per_s;
    double elapsed_s;     /* since this call began */
    double eta_s;         /* at this call's pace */
} mmt_train_step_info;

typedef struct mmt_train_options {
    /* what trains: "lora" (default), "ia3", "adapter" (bottleneck), "prompt" (CoOp),
     * "visual-prompt" (VPT), "prefix", "full" or "linear-probe" */
    const char *method;
    const char *target_modules;      /* comma-separated names or "all-linear"; NULL: q_proj,v_proj
                                      * (ia3: k_proj,v_proj,fc2 as PEFT) */
    const char *target_regex;        /* instead of target_modules: full names matching it */
    const char *scope;               /* towers: "both" (default), "text" or "vision" */
    const char *layers_to_transform; /* comma-separated layer indices; NULL: all */
    const char *modules_to_save;     /* modules trained in full and saved with the adapter */
    const char *feedforward_modules; /* ia3: modules whose input is scaled; NULL: fc2 when targeted */
    int64_t lora_r;                  /* 8 */
    double lora_alpha;               /* 16 (scaling alpha / r) */
    double lora_dropout;             /* 0 */
    int use_rslora, use_dora;        /* alpha / sqrt(r); DoRA's magnitudes */
    int64_t adapter_reduction;       /* adapter: bottleneck width hidden / N (16) */
    const char *adapter_placement;   /* adapter: "attn", "mlp" or "both" (default) */
    const char *adapter_act;         /* adapter: "relu" (default) or "gelu" */
    int64_t num_virtual_tokens;      /* prompt, visual-prompt, prefix: learned tokens (8) */
    int64_t prompt_tokens;           /* also learn N CoOp text prompts (0) */
    int64_t visual_prompt_tokens;    /* also learn N VPT tokens (0) */
    int vpt_deep;                    /* visual prompts in every vision layer */
    const char *prompt_tuning_init_text; /* initialise text prompts from this text */
    int prefix_projection;           /* prefix: PEFT's MLP reparameterisation */
    int64_t encoder_hidden_size;     /* its width (0: the hidden size) */
    int prefix_vision;               /* prefix: the vision tower too */
    /* the loop */
    int64_t steps;                   /* optimizer steps (0, the default: from epochs) */
    int64_t epochs;                  /* passes over the data when steps is 0 (1) */
    int64_t batch_size;              /* pairs per micro-batch, the contrastive batch (32) */
    int64_t grad_accum;              /* micro-batches per optimizer step (1) */
    double lr;                       /* peak learning rate, AdamW (1e-4) */
    const char *optim;               /* "adamw" (default) or "adamw8bit" (bitsandbytes' 8-bit
                                      * optimizer states: ~2 bytes per parameter, not 8) */
    const char *quantize;            /* "none" (default), "nf4" (QLoRA: the frozen base in
                                      * bitsandbytes' NF4) or "int8": the base's linears are
                                      * quantized before training (mmt_clip_quantize) */
    const char *lr_scales;           /* per-group rates "PATTERN=FACTOR,..."; NULL: one rate */
    double weight_decay;             /* 0.01 */
    const char *schedule;            /* "cosine" (default), "linear" or "constant" */
    double warmup_ratio;             /* 0.05 of the steps ... */
    int64_t warmup_steps;            /* ... unless this is >= 0 (-1) */
    double min_lr_rate;              /* cosine floor as a fraction of the peak (0) */
    double max_grad_norm;            /* global clipping (1; 0: off) */
    int64_t seed;                    /* data order, dropout, initialisation (42; >= 0) */
    int64_t save_every;              /* checkpoint every N steps and at the end (0: at the end) */
    int64_t keep_checkpoints;        /* newest checkpoints kept (2; 0: all) */
    /* the model */
    int gradient_checkpointing;      /* recompute encoder blocks in backward */
    int recompute;                   /* selective recomputation: attention probabilities and a
                                      * frozen fc1's output recomputed in backward (CLIP) */
    int learn_logit_scale;           /* train CLIP's temperature too */
    double temperature;              /* fixed softmax temperature (0: the model's) */
    double distill_weight;           /* KL to the frozen base model's logits (0); with
                                      * distill_from, to the teacher's */
    const char *distill_from;        /* a teacher CLIP snapshot, frozen and run forward only, to
                                      * distill from (docs/distillation.md; NULL: none) */
    const char *teacher_adapter;     /* an adapter folder applied to the teacher (NULL: none) */
    double distill_temperature;      /* with distill_from: the KL term's temperature (1) */
    double distill_cosine;           /* with distill_from: weight of the embeddings' cosine
                                      * distance to the teacher's (0) */
    double task_weight;              /* with distill_from: weight of the contrastive loss (1) */
    /* captioners (GIT snapshots) */
    int64_t max_caption_tokens;      /* caption length with [CLS] and [SEP] (0: 40) */
    double label_smoothing;          /* of the language-model loss, as torch (0) */
    /* the data */
    const char *image_root;          /* COCO: folder the file_name entries are relative to */
    int skip_bad;                    /* skip (and count) bad records instead of failing */
    int64_t max_text_bytes;          /* a longer caption makes its record bad (65536) */
    int64_t max_file_bytes;          /* a larger data file is refused (2 GiB) */
    int64_t cache_mb;                /* keep decoded images when the set fits (1024) */
    int64_t loader_workers;          /* threads decoding ahead (0: the training thread) */
    int64_t prefetch;                /* micro-batches prepared ahead */
    int augment_crop, augment_flip;  /* random resized crop; horizontal flip */
    const char *window;              /* DICOM images: "CENTER,WIDTH", a linear VOI window in
                                      * rescaled units for every DICOM image read (NULL: each
                                      * file's own window, else min-max; docs/data.md) */
    double augment_jitter;           /* colour jitter strength (0: off) */
    const char *sampling;            /* "plain" (default: the seeded order) or "hard": each epoch
                                      * the pairs are embedded with the model as it is and
                                      * batches are built of near neighbours (docs/curation.md) */
    double hard_ratio;               /* hard: the share of a batch that is a seed pair and its
                                      * nearest neighbours, in (0, 1] (0.5) */
    /* several ranks (mpirun; docs/distributed.md) */
    int64_t zero;                    /* 1: ZeRO-1, the optimizer state sharded over ranks (0) */
    int overlap_comm;                /* under mpirun: overlap the gradient all-reduce with
                                      * backward where the model allows (CLIP: the text tower's
                                      * gradients while the vision tower runs backward); the
                                      * numbers are the same either way */
    int64_t as_ranks;                /* one process trains exactly as an N-rank job would (0: off) */
    int gather_with_grad;            /* contrastive negatives from every rank's batch (0) */
    /* continual learning: a task after earlier ones (docs/continual.md) */
    const char *init_adapter;        /* start from this adapter folder's weights (same method and
                                      * settings as this run; NULL: a fresh adapter) */
    double ewc_lambda;               /* Elastic Weight Consolidation strength (0: off) */
    const char *ewc_from;            /* the folder (or file) with ewc_fisher.safetensors; NULL:
                                      * init_adapter */
    int save_fisher;                 /* estimate the Fisher on this data at the end and write
                                      * ewc_fisher.safetensors into the adapter folder */
    const char *replay;              /* pairs of earlier tasks mixed into every batch (NULL: none) */
    double replay_ratio;             /* the share of each batch taken from them (rounded) */
    int distill_from_previous;       /* --distill's teacher is base + init_adapter, not the base */
    /* the run folder */
    const char *resume;   /* continue the run in this folder (or ckpt-STEP); NULL: fresh */
    int overwrite;        /* clear a non-empty out_dir instead of refusing it */
    /* progress: called after every optimizer step (may be NULL) */
    void (*on_step)(void *user, const mmt_train_step_info *info);
    void *user;
} mmt_train_options;

/* The defaults of `mmtune train`. */
void mmt_train_options_default(mmt_train_options *o);

typedef struct mmt_train_summary {
    int64_t steps_done;        /* the run's steps, resumed ones included (linear-probe: the
                                * final fit's L-BFGS iterations) */
    int64_t steps_run;         /* steps this call ran */
    double final_loss;         /* mean loss of the last step */
    double seconds;            /* wall time of the training, checkpoint writes included */
    int64_t trainable_params;
    int64_t total_params;      /* of the base */
    int64_t pairs;             /* pairs trained on */
    int64_t skipped;           /* bad records left out (skip_bad) */
} mmt_train_summary;

/* Trains on a data file (any layout `mmtune train --data` reads: JSONL pairs, COCO captions
 * .json, .csv, or a class-per-folder directory) into the run folder out_dir. o may be NULL
 * (the defaults); summary may be NULL. */
mmt_status mmt_clip_train_adapter(mmt_clip *base, const char *data_path, const mmt_train_options *o,
                                  const char *out_dir, mmt_train_summary *summary);
/* The same on n pairs in memory: image file paths (relative to the working directory, or
 * absolute) and their captions. */
mmt_status mmt_clip_train_adapter_on_pairs(mmt_clip *base, const char *const *image_paths,
                                           const char *const *texts, int64_t n,
                                           const mmt_train_options *o, const char *out_dir,
                                           mmt_train_summary *summary);

#ifdef __cplusplus
}
#endif
#endif /* MMTUNE_H */
