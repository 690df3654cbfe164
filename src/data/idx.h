/*
 * idx.h — reading IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.
 *
 * An IDX file is a 4-byte magic (0, 0, element type, number of dimensions), one big-endian
 * uint32 per dimension, then the elements in row-major order. Only unsigned bytes (type 0x08)
 * are read, which is what MNIST-style image and label files hold. The whole file is checked:
 * magic, 1..4 non-zero dimensions, a size within MMT_IDX_MAX_BYTES, exactly as many data bytes
 * as the dimensions say (a truncated or over-long file is an error), and for gzip a valid
 * stream. zlib's gzread reads plain files unchanged, so one path serves both.
 *
 * Usage:
 *     mmt_idx images = {0};
 *     MMT_TRY(mmt_idx_read("train-images-idx3-ubyte.gz", &images)); // dims {60000, 28, 28}
 *     mmt_idx_free(&images);
 */
#ifndef MMT_DATA_IDX_H
#define MMT_DATA_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define MMT_IDX_MAX_DIMS 4
#define MMT_IDX_MAX_BYTES ((size_t)1 << 30)

typedef struct mmt_idx {
    int64_t n_dims;
    int64_t dims[MMT_IDX_MAX_DIMS];
    uint8_t *data;  /* dims[0] * ... * dims[n_dims-1] bytes; owned, mmt_malloc'd */
    size_t size;
} mmt_idx;

/* On failure *out is zeroed and the one-line message names the path. */
mmt_status mmt_idx_read(const char *path, mmt_idx *out);
/* Frees the data and zeroes *idx; accepts NULL and a zeroed one. */
void mmt_idx_free(mmt_idx *idx);

#endif
