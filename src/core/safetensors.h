/*
 * safetensors.h — reader (mmap, zero-copy) and writer for the safetensors format.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON, then the data buffer. The
 * reader validates everything before handing out a pointer: N <= 100,000,000 and inside the
 * file, the JSON, dtypes, shapes (no negative dims, no overflow of the element count), each
 * tensor's byte size against its offsets, tensors tiling the buffer with no gap or overlap,
 * the buffer ending exactly at end of file, no duplicate names, __metadata__ string->string.
 * Facts: ../shared/reference/formats.md §2 (safetensors/src/tensor.rs).
 *
 * The writer sorts tensors by dtype width (widest first) then name, emits {"format":"pt"}
 * metadata first, pads the header with spaces to a multiple of 8, and writes atomically.
 */
#ifndef MMT_CORE_SAFETENSORS_H
#define MMT_CORE_SAFETENSORS_H

#include <stdint.h>

#include "core/file.h"
#include "core/tensor.h"

typedef struct mmt_st_tensor {
    const char *name;
    mmt_dtype dtype;
    int ndim;
    int64_t shape[MMT_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;   /* offsets into the data buffer */
    const void *data;      /* points into the mapping; may be unaligned for its dtype */
} mmt_st_tensor;

typedef struct mmt_safetensors {
    char *path;               /* owned */
    mmt_file_map map;         /* the whole file: an owned mapping, or borrowed memory */
    int borrowed;             /* map points at the caller's memory (open_memory) */
    struct mmt_json_doc *header; /* owned parsed header (names point into it) */
    int64_t n_tensors;
    mmt_st_tensor *tensors;   /* owned, sorted by name */
    int64_t n_metadata;
    const char **metadata_keys, **metadata_values; /* owned arrays; strings in header */
} mmt_safetensors;

mmt_status mmt_safetensors_open(const char *path, mmt_safetensors **out);
/* Parses a safetensors image already in memory (kept by the caller until close);
 * `what` names it in errors. */
mmt_status mmt_safetensors_open_memory(const void *data, size_t size, const char *what,
                                       mmt_safetensors **out);
void mmt_safetensors_close(mmt_safetensors *st);
/* NULL when absent (no error set). */
const mmt_st_tensor *mmt_safetensors_find(const mmt_safetensors *st, const char *name);
/* Metadata value for key, or NULL. */
const char *mmt_safetensors_metadata(const mmt_safetensors *st, const char *key);

/* The index of the first NaN or infinite value of x[0..n), or -1. */
int64_t mmt_f32_first_nonfinite(const float *x, int64_t n);
/* An error naming the tensor and the element when x holds a NaN or an infinity. */
mmt_status mmt_st_check_finite(const char *name, const float *x, int64_t n);

/* Converts a float tensor (F32, F16, BF16, F64) to float32 into out (numel floats). */
mmt_status mmt_st_tensor_to_f32(const mmt_st_tensor *t, float *out);
/* The same for weights: a NaN or an infinity in it is an error (mmt_st_check_finite). */
mmt_status mmt_st_tensor_to_f32_finite(const mmt_st_tensor *t, float *out);

typedef struct mmt_st_write_tensor {
    const char *name;
    mmt_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data; /* numel * dtype size bytes, little-endian */
} mmt_st_write_tensor;

/* Writes tensors (and extra metadata key/value pairs after "format":"pt") atomically. */
mmt_status mmt_safetensors_write(const char *path, const mmt_st_write_tensor *tensors,
                                 int64_t n, const char *const *metadata_kv, int64_t n_metadata);

#endif
