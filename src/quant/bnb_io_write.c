/*
 * bnb_io_write.c — produces the tensors transformers + bitsandbytes save for a quantized
 * nn.Linear (layout in bnb_io.h) from a float32 weight, byte for byte what bitsandbytes 0.50.2
 * writes: QuantState.as_dict(packed=True) for NF4 (functional.py; the JSON made by
 * utils.pack_dict_to_tensor, i.e. Python's json.dumps with its ", " / ": " separators and the
 * key order quant_type, blocksize, dtype, shape[, nested_blocksize, nested_dtype,
 * nested_offset]) and Linear8bitLt._save_to_state_dict for int8 (weight, SCB, weight_format 0).
 * Everything is allocated in the caller's arena, which must outlive the safetensors write.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/bnb_io.h"
#include "quant/dynamic_map.h"
#include "quant/int8_rows.h"
#include "quant/nf4.h"

typedef struct writer {
    mmt_arena *arena;
    const char *weight_name;
    mmt_bnb_tensors *out;
} writer;

static void *alloc(writer *wr, size_t bytes) {
    return mmt_arena_alloc(wr->arena, bytes ? bytes : 1, 64);
}

/* Adds tensor weight_name + suffix (1-D of n, or a scalar when n < 0); NULL on no memory. */
static int add(writer *wr, const char *suffix, mmt_dtype dtype, int64_t n0, int64_t n1,
               const void *data) {
    size_t len = strlen(wr->weight_name) + strlen(suffix) + 1;
    char *name = alloc(wr, len);
    int64_t *shape = alloc(wr, 2 * sizeof(int64_t));
    if (!name || !shape) return 0;
    snprintf(name, len, "%s%s", wr->weight_name, suffix);
    shape[0] = n0;
    shape[1] = n1;
    mmt_st_write_tensor *t = &wr->out->tensors[wr->out->n++];
    t->name = name;
    t->dtype = dtype;
    t->ndim = n0 < 0 ? 0 : n1 < 0 ? 1 : 2;
    t->shape = n0 < 0 ? NULL : shape;
    t->data = data;
    return 1;
}

/* Python's repr of a float32 value held in a double: the shortest text that reads back as
 * the same double, with ".0" added to integral values as Python writes them. */
static void python_float_repr(char *buf, size_t cap, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEn")) {
        size_t len = strlen(buf);
        if (len + 3 <= cap) memcpy(buf + len, ".0", 3);
    }
}

static mmt_status check_args(const char *weight_name, int64_t rows, int64_t cols) {
    size_t len = strlen(weight_name);
    if (len < 7 || strcmp(weight_name + len - 7, ".weight") != 0 || rows < 1 || cols < 1 ||
        rows > INT64_MAX / 2 / cols)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "bnb_io: bad linear \"%s\" (%lld, %lld)",
                        weight_name, (long long)rows, (long long)cols);
    return MMT_OK;
}

mmt_status mmt_bnb_nf4_tensors(mmt_arena *arena, const char *weight_name, const float *w,
                               int64_t rows, int64_t cols, int64_t blocksize, int double_quant,
                               mmt_bnb_tensors *out) {
    MMT_TRY(check_args(weight_name, rows, cols));
    if (blocksize < 1 || blocksize > ((int64_t)1 << 24))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "bnb_io: %s: bad blocksize %lld", weight_name,
                        (long long)blocksize);
    writer wr = {arena, weight_name, out};
    memset(out, 0, sizeof *out);
    int64_t n = rows * cols, blocks = mmt_nf4_blocks(n, blocksize), nbytes = mmt_nf4_packed_bytes(n);
    uint8_t *packed = alloc(&wr, (size_t)nbytes);
    float *absmax = alloc(&wr, (size_t)blocks * sizeof(float));
    char *json = alloc(&wr, 512);
    if (!packed || !absmax || !json) goto oom;
    mmt_nf4_quantize(packed, absmax, w, n, blocksize);
    if (!add(&wr, "", MMT_DTYPE_U8, nbytes, 1, packed) ||
        !add(&wr, ".quant_map", MMT_DTYPE_F32, 16, -1, mmt_nf4_code))
        goto oom;
    int len = snprintf(json, 512, "{\"quant_type\": \"nf4\", \"blocksize\": %lld, \"dtype\": \"float32\", "
                       "\"shape\": [%lld, %lld]", (long long)blocksize, (long long)rows, (long long)cols);
    if (double_quant) {
        const int64_t nested_blocksize = 256;
        int64_t nested = mmt_nf4_blocks(blocks, nested_blocksize);
        uint8_t *qabsmax = alloc(&wr, (size_t)blocks);
        float *nested_absmax = alloc(&wr, (size_t)nested * sizeof(float));
        float *work = alloc(&wr, (size_t)blocks * sizeof(float)), *code = alloc(&wr, 256 * sizeof(float));
        float offset = 0;
        if (!qabsmax || !nested_absmax || !work || !code) goto oom;
        mmt_nf4_compress_absmax(qabsmax, nested_absmax, &offset, absmax, work, blocks, nested_blocksize);
        mmt_dynamic_map(1, code);
        char repr[64];
        python_float_repr(repr, sizeof repr, (double)offset);
        len += snprintf(json + len, 512 - (size_t)len, ", \"nested_blocksize\": %lld, \"nested_dtype\": "
                        "\"float32\", \"nested_offset\": %s", (long long)nested_blocksize, repr);
        if (!add(&wr, ".absmax", MMT_DTYPE_U8, blocks, -1, qabsmax) ||
            !add(&wr, ".nested_absmax", MMT_DTYPE_F32, nested, -1, nested_absmax) ||
            !add(&wr, ".nested_quant_map", MMT_DTYPE_F32, 256, -1, code))
            goto oom;
    } else if (!add(&wr, ".absmax", MMT_DTYPE_F32, blocks, -1, absmax)) {
        goto oom;
    }
    len += snprintf(json + len, 512 - (size_t)len, "}");
    if (!add(&wr, ".quant_state.bitsandbytes__nf4", MMT_DTYPE_U8, len, -1, json)) goto oom;
    return MMT_OK;
oom:
    return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "bnb_io: %s: out of memory", weight_name);
}

mmt_status mmt_bnb_int8_tensors(mmt_arena *arena, const char *weight_name, const float *w,
                                int64_t rows, int64_t cols, mmt_bnb_tensors *out) {
    MMT_TRY(check_args(weight_name, rows, cols));
    memset(out, 0, sizeof *out);
    /* SCB and weight_format are named after the module, not its weight. */
    size_t base_len = strlen(weight_name) - strlen(".weight");
    char *base = mmt_arena_alloc(arena, base_len + 1, 1);
    int8_t *q = mmt_arena_alloc(arena, (size_t)(rows * cols), 64);
    float *scb = mmt_arena_alloc(arena, (size_t)rows * sizeof(float), 64);
    uint8_t *format = mmt_arena_alloc(arena, 1, 1);
    float *half = mmt_arena_alloc(arena, (size_t)(rows * cols) * sizeof(float), 64);
    if (!base || !q || !scb || !format || !half) goto oom;
    memcpy(base, weight_name, base_len);
    base[base_len] = '\0';
    *format = 0; /* "row" */
    /* Int8Params._quantize (nn/modules.py) quantizes self.data.to(torch.float16): the weight
     * is rounded to float16 first, and SCB is the absmax of the rounded values. */
    for (int64_t i = 0; i < rows * cols; i++) half[i] = mmt_f16_to_f32(mmt_f32_to_f16(w[i]));
    mmt_int8_rows_quantize(q, scb, half, rows, cols);
    writer weight = {arena, weight_name, out}, module = {arena, base, out};
    if (!add(&weight, "", MMT_DTYPE_I8, rows, cols, q) ||
        !add(&module, ".SCB", MMT_DTYPE_F32, rows, -1, scb) ||
        !add(&module, ".weight_format", MMT_DTYPE_U8, -1, -1, format))
        goto oom;
    return MMT_OK;
oom:
    return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "bnb_io: %s: out of memory", weight_name);
}

void mmt_bnb_quantization_config(mmt_strbuf *b, mmt_bnb_kind kind, int double_quant) {
    int four = kind == MMT_BNB_NF4;
    /* transformers 5.24 BitsAndBytesConfig.to_dict(), keys in its (sorted) order. */
    mmt_strbuf_printf(b,
                      "{\"_load_in_4bit\": %s, \"_load_in_8bit\": %s, \"bnb_4bit_compute_dtype\": "
                      "\"float32\", \"bnb_4bit_quant_storage\": \"uint8\", \"bnb_4bit_quant_type\": "
                      "\"%s\", \"bnb_4bit_use_double_quant\": %s, "
                      "\"llm_int8_enable_fp32_cpu_offload\": false, \"llm_int8_has_fp16_weight\": false, "
                      "\"llm_int8_skip_modules\": null, \"llm_int8_threshold\": 6.0, \"load_in_4bit\": %s, "
                      "\"load_in_8bit\": %s, \"quant_method\": \"bitsandbytes\"}",
                      four ? "true" : "false", four ? "false" : "true", four ? "nf4" : "fp4",
                      four && double_quant ? "true" : "false", four ? "true" : "false",
                      four ? "false" : "true");
}
