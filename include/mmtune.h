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
 * alone. Free run contexts before the adapters and the base they use.
 */
typedef struct mmt_clip_adapter mmt_clip_adapter;
typedef struct mmt_clip_run mmt_clip_run;

mmt_status mmt_clip_adapter_open(mmt_clip *base, const char *dir, mmt_clip_adapter **out);
void mmt_clip_adapter_close(mmt_clip_adapter *adapter);
/* The folder the adapter was opened from. */
const char *mmt_clip_adapter_dir(const mmt_clip_adapter *adapter);

mmt_status mmt_clip_run_create(mmt_clip *base, mmt_clip_run **out);
void mmt_clip_run_free(mmt_clip_run *run);

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

#ifdef __cplusplus
}
#endif
#endif /* MMTUNE_H */
