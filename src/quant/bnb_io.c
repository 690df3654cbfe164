/*
 * bnb_io.c — reads the tensors transformers + bitsandbytes save for a quantized nn.Linear
 * (the layout is in bnb_io.h), checking each against the linear's declared shape before any
 * pointer into the file is handed out. The writer is in bnb_io_write.c.
 *
 * The checks follow what bitsandbytes itself requires when it loads a snapshot
 * (functional.QuantState.from_dict: exactly one quant_state.bitsandbytes__<type> tensor, only
 * known keys in its JSON, quant_map present; nn/modules.py maybe_rearrange_weight: the
 * weight_format must be row) plus the size rules that bitsandbytes leaves to a later crash.
 */
#include "quant/bnb_io.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quant/int8_rows.h"
#include "quant/nf4.h"

#define NAME_CAP 512
#define QUANT_STATE_MAX_BYTES 65536
#define BLOCKSIZE_MAX ((int64_t)1 << 24)

/* The tensor `name` in any file of w, or NULL; *path gets its file's path. */
static const mmt_st_tensor *find(const mmt_weights *w, const char *name, const char **path) {
    const mmt_safetensors *file = NULL;
    const mmt_st_tensor *t = mmt_weights_find(w, name, &file);
    if (t && path) *path = file->path;
    return t;
}

/* The first tensor whose name starts with prefix (tensors are sorted by name in each file),
 * and whether a second one does too. */
static const mmt_st_tensor *find_prefix(const mmt_weights *w, const char *prefix,
                                        const char **path, int *more) {
    const mmt_st_tensor *hit = NULL;
    size_t len = strlen(prefix);
    *more = 0;
    for (int64_t f = 0; f < w->n_files; f++)
        for (int64_t i = 0; i < w->files[f]->n_tensors; i++) {
            const mmt_st_tensor *t = &w->files[f]->tensors[i];
            if (strncmp(t->name, prefix, len) != 0) continue;
            if (hit) {
                *more = 1;
                return hit;
            }
            hit = t;
            *path = w->files[f]->path;
        }
    return hit;
}

/* tensor must have this dtype and shape; ndim < 0 skips the shape check. */
static mmt_status expect(const char *path, const mmt_st_tensor *t, mmt_dtype dtype, int ndim,
                         const int64_t *shape) {
    if (t->dtype != dtype)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor \"%s\" has dtype %s, expected %s", path,
                        t->name, mmt_dtype_name(t->dtype), mmt_dtype_name(dtype));
    int same = ndim < 0 || t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char got[128], want[128];
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor \"%s\" has shape %s, expected %s", path,
                        t->name, mmt_shape_str(t->shape, t->ndim, got, sizeof got),
                        mmt_shape_str(shape, ndim, want, sizeof want));
    }
    return MMT_OK;
}

/* A float32 view of an F32 tensor: the mapping when aligned, else a copy in the arena. */
static mmt_status f32_view(mmt_arena *arena, const char *path, const mmt_st_tensor *t,
                           const float **out) {
    if (((uintptr_t)t->data & 3) == 0) {
        *out = t->data;
        return MMT_OK;
    }
    float *copy = mmt_arena_alloc(arena, (size_t)t->numel * sizeof(float) + 1, 64);
    if (!copy) return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "%s: tensor \"%s\": out of memory", path, t->name);
    memcpy(copy, t->data, (size_t)t->numel * sizeof(float));
    *out = copy;
    return MMT_OK;
}

/* The parsed quant_state JSON of one NF4 weight. */
typedef struct quant_state {
    int64_t blocksize;
    int nested;
    int64_t nested_blocksize;
    float nested_offset;
} quant_state;

static mmt_status parse_quant_state(const char *path, const mmt_st_tensor *t, const char *type,
                                    int64_t rows, int64_t cols, quant_state *qs) {
    static const char *const keys[] = {"quant_type", "blocksize", "dtype", "shape",
                                       "nested_blocksize", "nested_dtype", "nested_offset"};
    char what[NAME_CAP + 256];
    snprintf(what, sizeof what, "%s: tensor \"%s\"", path, t->name);
    if (t->dtype != MMT_DTYPE_U8 || t->ndim != 1 || t->numel < 2 || t->numel > QUANT_STATE_MAX_BYTES)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected the U8 bytes of a JSON object (at most %d)",
                        what, QUANT_STATE_MAX_BYTES);
    mmt_json_doc *doc = NULL;
    mmt_status s = mmt_json_parse(t->data, (size_t)t->numel, what, &doc);
    if (s != MMT_OK) return s;
    const mmt_json *root = mmt_json_root(doc);
    const char *quant_type = NULL, *dtype = NULL, *nested_dtype = NULL;
    int64_t nested_blocksize = 0;
    double offset = 0;
    const mmt_json *shape = mmt_json_get(root, "shape");
    memset(qs, 0, sizeof *qs);
    if (root->type != MMT_JSON_OBJECT) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: quant_state is not a JSON object", what);
        goto done;
    }
    for (size_t i = 0; i < root->len; i++) {
        size_t k = 0;
        while (k < sizeof keys / sizeof keys[0] && strcmp(root->keys[i], keys[k]) != 0) k++;
        if (k == sizeof keys / sizeof keys[0]) {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: unknown quant_state key \"%s\"", what, root->keys[i]);
            goto done;
        }
    }
    if ((s = mmt_json_get_string(root, "quant_type", NULL, &quant_type, what, "")) != MMT_OK ||
        (s = mmt_json_get_int(root, "blocksize", 0, &qs->blocksize, what, "")) != MMT_OK ||
        (s = mmt_json_get_string(root, "dtype", NULL, &dtype, what, "")) != MMT_OK ||
        (s = mmt_json_get_int(root, "nested_blocksize", 0, &nested_blocksize, what, "")) != MMT_OK ||
        (s = mmt_json_get_string(root, "nested_dtype", NULL, &nested_dtype, what, "")) != MMT_OK ||
        (s = mmt_json_get_double(root, "nested_offset", NAN, &offset, what, "")) != MMT_OK)
        goto done;
    if (!quant_type || strcmp(quant_type, type) != 0) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: quant_type \"%s\" does not match the tensor name",
                     what, quant_type ? quant_type : "(missing)");
        goto done;
    }
    if (qs->blocksize < 1 || qs->blocksize > BLOCKSIZE_MAX || !dtype) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: needs a blocksize in 1..%lld and a dtype string",
                     what, (long long)BLOCKSIZE_MAX);
        goto done;
    }
    if (!shape || shape->type != MMT_JSON_ARRAY || shape->len != 2 ||
        shape->items[0].type != MMT_JSON_NUMBER || !shape->items[0].is_integer ||
        shape->items[1].type != MMT_JSON_NUMBER || !shape->items[1].is_integer ||
        shape->items[0].integer != rows || shape->items[1].integer != cols) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: quant_state shape is not [%lld, %lld] as the model declares",
                     what, (long long)rows, (long long)cols);
        goto done;
    }
    qs->nested = mmt_json_get(root, "nested_blocksize") || mmt_json_get(root, "nested_offset") ||
                 mmt_json_get(root, "nested_dtype");
    if (qs->nested) {
        if (nested_blocksize < 1 || nested_blocksize > BLOCKSIZE_MAX || !nested_dtype ||
            !isfinite(offset) || fabs(offset) > 3.4e38) {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT,
                         "%s: double quantization needs nested_blocksize in 1..%lld, nested_dtype "
                         "and a finite nested_offset", what, (long long)BLOCKSIZE_MAX);
            goto done;
        }
        qs->nested_blocksize = nested_blocksize;
        /* torch.tensor(float(nested_offset)): the double rounded to float32. */
        qs->nested_offset = (float)offset;
    }
done:
    mmt_json_free(doc);
    return s;
}

static mmt_status load_nf4(mmt_weights *w, mmt_arena *arena, const char *weight_name,
                           const char *state_path, const mmt_st_tensor *state, const char *type,
                           mmt_bnb_linear *out) {
    char name[NAME_CAP];
    const char *path = state_path;
    int64_t n = out->rows * out->cols;
    quant_state qs;
    MMT_TRY(parse_quant_state(state_path, state, type, out->rows, out->cols, &qs));
    out->kind = MMT_BNB_NF4;
    out->blocksize = qs.blocksize;
    out->blocks = mmt_nf4_blocks(n, qs.blocksize);
    out->double_quant = qs.nested;
    out->code = mmt_nf4_code;

    const mmt_st_tensor *weight = find(w, weight_name, &path);
    if (weight->dtype != MMT_DTYPE_U8)
        return mmt_fail(MMT_STATUS_UNSUPPORTED,
                        "%s: tensor \"%s\": 4-bit storage %s is not supported (only U8, "
                        "bnb_4bit_quant_storage=uint8)", path, weight_name, mmt_dtype_name(weight->dtype));
    int64_t packed_shape[2] = {mmt_nf4_packed_bytes(n), 1};
    if (!(weight->ndim == 1 && weight->shape[0] == packed_shape[0]))
        MMT_TRY(expect(path, weight, MMT_DTYPE_U8, 2, packed_shape));
    out->packed = weight->data;

    snprintf(name, sizeof name, "%s.quant_map", weight_name);
    const mmt_st_tensor *quant_map = find(w, name, &path);
    if (!quant_map) return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: missing tensor \"%s\"", w->dir, name);
    int64_t sixteen = 16;
    MMT_TRY(expect(path, quant_map, MMT_DTYPE_F32, 1, &sixteen));

    snprintf(name, sizeof name, "%s.absmax", weight_name);
    const mmt_st_tensor *absmax = find(w, name, &path);
    if (!absmax) return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: missing tensor \"%s\"", w->dir, name);
    snprintf(name, sizeof name, "%s.nested_absmax", weight_name);
    const char *nested_path = NULL;
    const mmt_st_tensor *nested_absmax = find(w, name, &nested_path);
    if (!!nested_absmax != qs.nested)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor \"%s\": the quant_state %s nested keys but "
                        "\"%s\" is %s", state_path, state->name, qs.nested ? "has" : "lacks", name,
                        nested_absmax ? "present" : "missing");
    if (!qs.nested) {
        MMT_TRY(expect(path, absmax, MMT_DTYPE_F32, 1, &out->blocks));
        return f32_view(arena, path, absmax, &out->absmax);
    }
    /* Double quantization: absmax holds one byte per block into the nested code. */
    MMT_TRY(expect(path, absmax, MMT_DTYPE_U8, 1, &out->blocks));
    int64_t n_nested = mmt_nf4_blocks(out->blocks, qs.nested_blocksize), n_code = 256;
    const float *nested_values = NULL;
    MMT_TRY(expect(nested_path, nested_absmax, MMT_DTYPE_F32, 1, &n_nested));
    MMT_TRY(f32_view(arena, nested_path, nested_absmax, &nested_values));
    snprintf(name, sizeof name, "%s.nested_quant_map", weight_name);
    const mmt_st_tensor *nested_map = find(w, name, &path);
    if (!nested_map) return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: missing tensor \"%s\"", w->dir, name);
    MMT_TRY(expect(path, nested_map, MMT_DTYPE_F32, 1, &n_code));
    float nested_code[256];
    memcpy(nested_code, nested_map->data, sizeof nested_code);
    float *resolved = mmt_arena_alloc(arena, (size_t)out->blocks * sizeof(float), 64);
    if (!resolved)
        return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "%s: tensor \"%s\": out of memory", path, absmax->name);
    mmt_nf4_expand_absmax(resolved, absmax->data, nested_values, qs.nested_offset, out->blocks,
                          qs.nested_blocksize, nested_code);
    out->absmax = resolved;
    return MMT_OK;
}

static mmt_status load_int8(mmt_weights *w, mmt_arena *arena, const char *weight_name,
                            const char *path, const mmt_st_tensor *weight, mmt_bnb_linear *out) {
    char name[NAME_CAP];
    size_t base_len = strlen(weight_name) - strlen(".weight");
    int64_t shape[2] = {out->rows, out->cols};
    MMT_TRY(expect(path, weight, MMT_DTYPE_I8, 2, shape));
    out->kind = MMT_BNB_INT8;
    out->s8 = weight->data;

    snprintf(name, sizeof name, "%.*s.SCB", (int)base_len, weight_name);
    const mmt_st_tensor *scb = find(w, name, &path);
    if (!scb)
        return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: tensor \"%s\" is int8 but \"%s\" is missing", w->dir,
                        weight_name, name);
    MMT_TRY(expect(path, scb, MMT_DTYPE_F32, 1, &out->rows));
    MMT_TRY(f32_view(arena, path, scb, &out->scb));

    /* weight_format: 0 ("row") is the only layout bitsandbytes 0.50 reads. */
    snprintf(name, sizeof name, "%.*s.weight_format", (int)base_len, weight_name);
    const mmt_st_tensor *format = find(w, name, &path);
    if (format) {
        if (format->numel != 1 || (format->dtype != MMT_DTYPE_U8 && format->dtype != MMT_DTYPE_I8))
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor \"%s\" must be one U8 value", path, name);
        uint8_t v = *(const uint8_t *)format->data;
        if (v != 0)
            return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: tensor \"%s\" is %u; only 0 (row) is supported",
                            path, name, v);
    }
    return MMT_OK;
}

mmt_status mmt_bnb_linear_load(mmt_weights *w, mmt_arena *arena, const char *weight_name,
                               int64_t rows, int64_t cols, mmt_bnb_linear *out) {
    memset(out, 0, sizeof *out);
    size_t len = strlen(weight_name);
    if (len + 64 > NAME_CAP || len < 7 || strcmp(weight_name + len - 7, ".weight") != 0 ||
        rows < 1 || cols < 1 || rows > INT64_MAX / 2 / cols)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "bnb_io: bad linear \"%s\" (%lld, %lld)",
                        weight_name, (long long)rows, (long long)cols);
    out->rows = rows;
    out->cols = cols;
    const char *path = NULL;
    const mmt_st_tensor *weight = find(w, weight_name, &path);
    if (!weight) return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: missing tensor \"%s\"", w->dir, weight_name);

    char prefix[NAME_CAP];
    snprintf(prefix, sizeof prefix, "%s.quant_state.", weight_name);
    const char *state_path = NULL;
    int more = 0;
    const mmt_st_tensor *state = find_prefix(w, prefix, &state_path, &more);
    if (state) {
        const char *suffix = state->name + strlen(prefix);
        if (more || strncmp(suffix, "bitsandbytes__", 14) != 0)
            return mmt_fail(MMT_STATUS_BAD_FORMAT,
                            "%s: tensor \"%s\": expected exactly one quant_state.bitsandbytes__<type>",
                            state_path, state->name);
        const char *type = suffix + 14;
        if (strcmp(type, "nf4") != 0)
            return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: tensor \"%s\": quant type \"%s\" is not supported (only nf4)",
                            state_path, state->name, type);
        return load_nf4(w, arena, weight_name, state_path, state, type, out);
    }
    if (weight->dtype == MMT_DTYPE_I8) return load_int8(w, arena, weight_name, path, weight, out);

    snprintf(prefix, sizeof prefix, "%s.absmax", weight_name);
    if (find(w, prefix, NULL))
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor \"%s\" has 4-bit parts but no quant_state", path,
                        weight_name);
    out->kind = MMT_BNB_PLAIN;
    return MMT_OK;
}

mmt_status mmt_bnb_linear_dequantize(const mmt_bnb_linear *lin, float *w) {
    if (lin->kind == MMT_BNB_NF4) {
        mmt_nf4_dequantize(w, lin->packed, lin->absmax, lin->rows * lin->cols, lin->blocksize, lin->code);
        return MMT_OK;
    }
    if (lin->kind == MMT_BNB_INT8) {
        mmt_int8_rows_dequantize(w, lin->s8, lin->scb, lin->rows, lin->cols);
        return MMT_OK;
    }
    return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "bnb_io: a plain weight has nothing to dequantize");
}
