/* tensor.c — dtype tables, shape helpers and half-precision conversions. */
#include "core/tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int bits;
} dtype_info[MMT_DTYPE_COUNT] = {
    [MMT_DTYPE_BOOL] = {"BOOL", 8},       [MMT_DTYPE_U8] = {"U8", 8},
    [MMT_DTYPE_I8] = {"I8", 8},           [MMT_DTYPE_I16] = {"I16", 16},
    [MMT_DTYPE_U16] = {"U16", 16},        [MMT_DTYPE_F16] = {"F16", 16},
    [MMT_DTYPE_BF16] = {"BF16", 16},      [MMT_DTYPE_I32] = {"I32", 32},
    [MMT_DTYPE_U32] = {"U32", 32},        [MMT_DTYPE_F32] = {"F32", 32},
    [MMT_DTYPE_F64] = {"F64", 64},        [MMT_DTYPE_I64] = {"I64", 64},
    [MMT_DTYPE_U64] = {"U64", 64},        [MMT_DTYPE_C64] = {"C64", 64},
    [MMT_DTYPE_F8_E5M2] = {"F8_E5M2", 8}, [MMT_DTYPE_F8_E4M3] = {"F8_E4M3", 8},
    [MMT_DTYPE_F8_E8M0] = {"F8_E8M0", 8}, [MMT_DTYPE_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [MMT_DTYPE_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8}, [MMT_DTYPE_F4] = {"F4", 4},
    [MMT_DTYPE_F6_E2M3] = {"F6_E2M3", 6}, [MMT_DTYPE_F6_E3M2] = {"F6_E3M2", 6},
};

int mmt_dtype_bits(mmt_dtype dtype) {
    return (unsigned)dtype < MMT_DTYPE_COUNT ? dtype_info[dtype].bits : 0;
}

const char *mmt_dtype_name(mmt_dtype dtype) {
    return (unsigned)dtype < MMT_DTYPE_COUNT ? dtype_info[dtype].name : "?";
}

mmt_status mmt_dtype_parse(const char *name, mmt_dtype *out) {
    for (int i = 0; i < MMT_DTYPE_COUNT; i++)
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (mmt_dtype)i;
            return MMT_OK;
        }
    return mmt_fail(MMT_STATUS_BAD_FORMAT, "unknown dtype \"%s\"", name);
}

int64_t mmt_shape_numel(const int64_t *shape, int ndim) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] != 0 && n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

const char *mmt_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t k = 0;
    k += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

float mmt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    int exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    float f;
    if (exp == 0) {
        f = ldexpf((float)mant, -24); /* zero or subnormal */
    } else if (exp == 31) {
        f = mant ? NAN : INFINITY;
    } else {
        uint32_t bits = ((uint32_t)(exp - 15 + 127) << 23) | (mant << 13);
        memcpy(&f, &bits, 4);
    }
    uint32_t bits;
    memcpy(&bits, &f, 4);
    bits |= sign;
    memcpy(&f, &bits, 4);
    return f;
}

float mmt_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t mmt_f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffff) > 0x7f800000) return (uint16_t)((bits >> 16) | 0x40);
    bits += 0x7fff + ((bits >> 16) & 1);
    return (uint16_t)(bits >> 16);
}

uint16_t mmt_f32_to_f16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
    uint32_t abs = bits & 0x7fffffff;
    if (abs > 0x7f800000) return sign | 0x7e00;             /* NaN */
    if (abs >= 0x477ff000) return sign | 0x7c00;            /* overflow to inf */
    if (abs < 0x38800000) {                                  /* subnormal or zero */
        float a;
        memcpy(&a, &abs, 4);
        return sign | (uint16_t)lrintf(a * 16777216.0f);     /* a / 2^-24, ties to even */
    }
    uint32_t mant = abs & 0x7fffff;
    uint32_t e = (abs >> 23) - 127 + 15;
    uint32_t h = (e << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return sign | (uint16_t)h;
}
