/*
 * tensor.h — dtypes, shapes and float conversions shared by all layers.
 *
 * Tensors travel as raw buffers with explicit shapes (ops/ops.h); where a buffer lives is
 * the business of the op table that allocated it (its buffer operations), so there is no
 * tensor descriptor carrying a device flag that nothing would read.
 */
#ifndef MMT_CORE_TENSOR_H
#define MMT_CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define MMT_MAX_DIMS 8

/* The safetensors dtype set. */
typedef enum mmt_dtype {
    MMT_DTYPE_BOOL, MMT_DTYPE_U8, MMT_DTYPE_I8, MMT_DTYPE_I16, MMT_DTYPE_U16, MMT_DTYPE_F16,
    MMT_DTYPE_BF16, MMT_DTYPE_I32, MMT_DTYPE_U32, MMT_DTYPE_F32, MMT_DTYPE_F64, MMT_DTYPE_I64,
    MMT_DTYPE_U64, MMT_DTYPE_C64, MMT_DTYPE_F8_E5M2, MMT_DTYPE_F8_E4M3, MMT_DTYPE_F8_E8M0,
    MMT_DTYPE_F8_E4M3FNUZ, MMT_DTYPE_F8_E5M2FNUZ, MMT_DTYPE_F4, MMT_DTYPE_F6_E2M3,
    MMT_DTYPE_F6_E3M2,
    MMT_DTYPE_COUNT
} mmt_dtype;

int mmt_dtype_bits(mmt_dtype dtype);             /* bits per element */
const char *mmt_dtype_name(mmt_dtype dtype);     /* safetensors spelling, "F32" */
mmt_status mmt_dtype_parse(const char *name, mmt_dtype *out); /* BAD_FORMAT if unknown */

/* Product of dims; -1 if it overflows int64. */
int64_t mmt_shape_numel(const int64_t *shape, int ndim);
/* "[2, 3, 4]" into buf. */
const char *mmt_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);

float mmt_f16_to_f32(uint16_t h);
float mmt_bf16_to_f32(uint16_t h);
uint16_t mmt_f32_to_bf16(float f); /* round to nearest even, NaN kept */
uint16_t mmt_f32_to_f16(float f);  /* round to nearest even */

#endif
