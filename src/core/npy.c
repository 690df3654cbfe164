/*
 * npy.c — NumPy .npy v1.0 headers: writing them, and reading back the small set of arrays
 * that mmtune writes (see npy.h). The header parser is strict about what it accepts, so a
 * corrupt or foreign file gives one message naming the file and what is wrong with it.
 */
#include "core/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char MAGIC[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

static const char *dtype_descr(mmt_npy_dtype dtype) {
    switch (dtype) {
    case MMT_NPY_F32: return "<f4";
    case MMT_NPY_I8: return "|i1";
    case MMT_NPY_I32: return "<i4";
    }
    return "?";
}

size_t mmt_npy_dtype_size(mmt_npy_dtype dtype) {
    switch (dtype) {
    case MMT_NPY_F32: return 4;
    case MMT_NPY_I8: return 1;
    case MMT_NPY_I32: return 4;
    }
    return 0;
}

void mmt_npy_header(mmt_npy_dtype dtype, int64_t rows, int64_t cols, char *out, size_t *len) {
    char dict[128];
    int n;
    if (cols < 0)
        n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld,), }",
                     dtype_descr(dtype), (long long)rows);
    else
        n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld, %lld), }",
                     dtype_descr(dtype), (long long)rows, (long long)cols);
    /* 10 bytes of preamble, the dict, spaces, '\n': a multiple of 64 in all */
    size_t total = (10 + (size_t)n + 1 + 63) / 64 * 64;
    size_t header_len = total - 10;
    memcpy(out, MAGIC, 6);
    out[6] = 1;
    out[7] = 0;
    out[8] = (char)(header_len & 0xff);
    out[9] = (char)(header_len >> 8);
    memcpy(out + 10, dict, (size_t)n);
    memset(out + 10 + n, ' ', total - 10 - (size_t)n - 1);
    out[total - 1] = '\n';
    *len = total;
}

/* The value text after 'key': in the dict (NULL when the key is missing). */
static const char *dict_value(const char *dict, const char *key) {
    char quoted[32];
    snprintf(quoted, sizeof quoted, "'%s'", key);
    const char *at = strstr(dict, quoted);
    if (!at) return NULL;
    at += strlen(quoted);
    while (*at == ' ') at++;
    if (*at != ':') return NULL;
    at++;
    while (*at == ' ') at++;
    return at;
}

/* A shape tuple "(R,)" or "(R, C)" with non-negative dimensions; 0 when it is not one. */
static int parse_shape(const char *p, mmt_npy_array *a) {
    if (*p++ != '(') return 0;
    a->ndim = 0;
    for (;;) {
        while (*p == ' ') p++;
        if (*p == ')') break;
        if (a->ndim == 2 || *p < '0' || *p > '9') return 0;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (v < 0 || v > ((int64_t)1 << 40)) return 0;
        a->shape[a->ndim++] = v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p != ')') return 0;
    }
    if (a->ndim == 0) return 0;
    if (a->ndim == 1) a->shape[1] = 1;
    return 1;
}

mmt_status mmt_npy_parse(const char *what, const void *bytes, size_t len, mmt_npy_array *out) {
    const unsigned char *b = bytes;
    memset(out, 0, sizeof *out);
    if (len < 10 || memcmp(b, MAGIC, 6) != 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", what);
    if (b[6] != 1 || b[7] != 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: .npy version %d.%d, expected 1.0", what, b[6], b[7]);
    size_t header_len = (size_t)b[8] | (size_t)b[9] << 8;
    if (10 + header_len > len) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: truncated .npy header", what);
    if (header_len > 4096) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: .npy header of %zu bytes, expected a short one", what, header_len);
    char dict[4096 + 1];
    memcpy(dict, b + 10, header_len);
    dict[header_len] = '\0';
    if (memchr(b + 10, '\0', header_len))
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: .npy header holds a NUL byte", what);
    const char *descr = dict_value(dict, "descr"), *order = dict_value(dict, "fortran_order"),
               *shape = dict_value(dict, "shape");
    if (!descr || !order || !shape)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: .npy header lacks descr, fortran_order or shape", what);
    if (!strncmp(descr, "'<f4'", 5)) out->dtype = MMT_NPY_F32;
    else if (!strncmp(descr, "'|i1'", 5) || !strncmp(descr, "'<i1'", 5)) out->dtype = MMT_NPY_I8;
    else if (!strncmp(descr, "'<i4'", 5)) out->dtype = MMT_NPY_I32;
    else return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: .npy dtype %.12s is not one mmtune reads (<f4, |i1, <i4)", what, descr);
    if (strncmp(order, "False", 5) != 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: .npy array is not in C order", what);
    if (!parse_shape(shape, out)) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: .npy shape is not (N,) or (N, D)", what);
    size_t need = (size_t)out->shape[0] * (size_t)out->shape[1] * mmt_npy_dtype_size(out->dtype);
    size_t have = len - 10 - header_len;
    if (have < need)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: truncated: the shape needs %zu data bytes, the file has %zu", what,
                        need, have);
    if (have > need)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %zu bytes after the data the shape describes", what, have - need);
    out->data = b + 10 + header_len;
    out->data_bytes = need;
    return MMT_OK;
}
