/*
 * weights.h — the tensors of a Hugging Face checkpoint folder, one file or sharded.
 *
 * Opens `model.safetensors`, or every shard named by `model.safetensors.index.json`
 * (weight_map), keeps them mapped, and hands out float32 views: zero-copy for aligned F32
 * data, converted copies (in the caller's arena) for F16/BF16/F64 or unaligned data.
 */
#ifndef MMT_CORE_WEIGHTS_H
#define MMT_CORE_WEIGHTS_H

#include "core/arena.h"
#include "core/safetensors.h"

typedef struct mmt_weights {
    char *dir;                 /* owned */
    int64_t n_files;
    mmt_safetensors **files;   /* owned */
    int64_t converted_bytes;   /* bytes copied for dtype conversion */
} mmt_weights;

mmt_status mmt_weights_open(const char *dir, mmt_weights **out);
void mmt_weights_free(mmt_weights *w);
/* The tensor with this name in any file, or NULL; *file gets its file when not NULL. */
const mmt_st_tensor *mmt_weights_find(const mmt_weights *w, const char *name,
                                      const mmt_safetensors **file);
/* A float32 view of tensor `name`, which must exist with exactly the given shape. */
mmt_status mmt_weights_f32(mmt_weights *w, mmt_arena *arena, const char *name, int ndim,
                           const int64_t *shape, const float **out);
/* Total parameter count over all tensors (buffers like *.position_ids excluded). */
int64_t mmt_weights_param_count(const mmt_weights *w);

/* Copies a snapshot's small files (config.json, tokenizer and preprocessor files, whichever
 * exist) from one folder to another, each written atomically. */
mmt_status mmt_snapshot_copy_files(const char *from_dir, const char *to_dir);
/* Copies the named files that exist in from_dir to to_dir, each written atomically. */
mmt_status mmt_copy_files(const char *from_dir, const char *to_dir, const char *const *names,
                          size_t n);

#endif
