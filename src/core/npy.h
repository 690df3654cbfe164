/*
 * npy.h — NumPy's .npy format, version 1.0, for the plain arrays mmtune writes (a search
 * index's vectors): little-endian float32, int8 or int32, C order, one or two dimensions.
 *
 * Layout (numpy/lib/format.py): the magic "\x93NUMPY", the version bytes 1 0, a uint16
 * little-endian header length, then the header — an ASCII Python dict literal such as
 * "{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 512), }" padded with spaces and
 * ending in '\n' so that the data starts at a multiple of 64 bytes — then the raw data.
 * np.load reads what mmt_npy_header writes; mmt_npy_parse accepts what NumPy 1.x and 2.x
 * write for such arrays (key order and spacing free), and refuses everything else by name.
 *
 * Usage:
 *     char head[MMT_NPY_MAX_HEADER]; size_t n;
 *     mmt_npy_header(MMT_NPY_F32, rows, cols, head, &n);   // write head[0..n), then the data
 *     mmt_npy_array a;
 *     MMT_TRY(mmt_npy_parse("v.npy", map.data, map.size, &a));   // a.data, a.shape
 */
#ifndef MMT_CORE_NPY_H
#define MMT_CORE_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define MMT_NPY_MAX_HEADER 192

typedef enum mmt_npy_dtype { MMT_NPY_F32, MMT_NPY_I8, MMT_NPY_I32 } mmt_npy_dtype;

typedef struct mmt_npy_array {
    mmt_npy_dtype dtype;
    int ndim;             /* 1 or 2 */
    int64_t shape[2];     /* shape[1] is 1 for a 1-D array */
    const void *data;     /* points into the bytes given to mmt_npy_parse */
    size_t data_bytes;
} mmt_npy_array;

/* Bytes per element of dtype. */
size_t mmt_npy_dtype_size(mmt_npy_dtype dtype);

/* The header of a (rows, cols) array, or of a 1-D (rows) array when cols < 0, into out (at
 * least MMT_NPY_MAX_HEADER bytes); *len is a multiple of 64. */
void mmt_npy_header(mmt_npy_dtype dtype, int64_t rows, int64_t cols, char *out, size_t *len);

/* Parses an .npy file held in bytes[0..len); `what` names it in messages. The data must be
 * exactly as long as the shape says: a shorter one is "truncated", a longer one refused. */
mmt_status mmt_npy_parse(const char *what, const void *bytes, size_t len, mmt_npy_array *out);

#endif
