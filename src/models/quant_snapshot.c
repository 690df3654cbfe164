/* quant_snapshot.c — writing a quantized Hugging Face snapshot (see quant_snapshot.h). */
#include "models/quant_snapshot.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "quant/bnb_io.h"

/* The slot whose weight is `tensor`, over all sets; NULL if none. */
static const mmt_qlinear_slot *find_slot(const mmt_qlinears *const *sets, int64_t n_sets, const char *tensor) {
    for (int64_t i = 0; i < n_sets; i++) {
        const mmt_qlinear_slot *s = mmt_qlinears_find(sets[i], tensor);
        if (s) return s;
    }
    return NULL;
}

/* config.json with "quantization_config" added as its last key (the rest kept byte for byte). */
static mmt_status write_config(const char *src_dir, const char *out_dir, mmt_bnb_kind kind, int double_quant) {
    char *in = mmt_path_join(src_dir, "config.json"), *out = mmt_path_join(out_dir, "config.json"), *text = NULL;
    size_t len = 0;
    mmt_strbuf b = {0};
    mmt_status s = in && out ? mmt_file_read_all(in, (size_t)1 << 24, &text, &len) : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) {
        size_t end = len;
        while (end > 0 && text[end - 1] != '}') end--;
        if (end == 0 || strstr(text, "\"quantization_config\"")) {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s", in,
                         end == 0 ? "not a JSON object" : "the snapshot is already quantized (quantization_config)");
        } else {
            size_t body = end - 1;
            while (body > 0 && (text[body - 1] == ' ' || text[body - 1] == '\n' || text[body - 1] == '\r' ||
                                text[body - 1] == '\t'))
                body--;
            mmt_strbuf_append(&b, text, body);
            mmt_strbuf_printf(&b, ",\n  \"quantization_config\": ");
            mmt_bnb_quantization_config(&b, kind, double_quant);
            mmt_strbuf_printf(&b, "\n}\n");
            s = b.failed ? MMT_STATUS_OUT_OF_MEMORY : mmt_file_write_atomic(out, b.data, b.len);
        }
    }
    mmt_strbuf_free(&b);
    mmt_free(text);
    mmt_free(in);
    mmt_free(out);
    return s;
}

mmt_status mmt_quant_snapshot_write(mmt_weights *weights, const mmt_qlinears *const *sets, int64_t n_sets,
                                    const char *src_dir, const char *out_dir, mmt_quant_type type,
                                    int64_t *n_quantized) {
    if (type != MMT_QUANT_INT8 && type != MMT_QUANT_NF4)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "quantize: the type must be int8 or nf4");
    mmt_bnb_kind kind = type == MMT_QUANT_INT8 ? MMT_BNB_INT8 : MMT_BNB_NF4;
    int64_t cap = 0, n = 0, done = 0;
    for (int64_t f = 0; f < weights->n_files; f++) cap += weights->files[f]->n_tensors * MMT_BNB_MAX_TENSORS;
    mmt_st_write_tensor *list = mmt_calloc((size_t)(cap ? cap : 1), sizeof *list);
    mmt_arena ar;
    mmt_arena_init(&ar, (size_t)1 << 24);
    mmt_status s = list ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t f = 0; s == MMT_OK && f < weights->n_files; f++) {
        const mmt_safetensors *st = weights->files[f];
        for (int64_t i = 0; s == MMT_OK && i < st->n_tensors; i++) {
            const mmt_st_tensor *t = &st->tensors[i];
            const mmt_qlinear_slot *slot = find_slot(sets, n_sets, t->name);
            if (slot && *slot->qw && slot->from_file) {
                s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s is already quantized", src_dir, t->name);
                break;
            }
            if (!slot || slot->keep_fp32) { /* copied as stored */
                list[n++] = (mmt_st_write_tensor){t->name, t->dtype, t->ndim, t->shape, t->data};
                continue;
            }
            const float *w;
            int64_t shape[2] = {slot->out, slot->in};
            mmt_bnb_tensors bt;
            s = mmt_weights_f32(weights, &ar, t->name, 2, shape, &w);
            if (s == MMT_OK)
                s = kind == MMT_BNB_NF4 ? mmt_bnb_nf4_tensors(&ar, t->name, w, slot->out, slot->in, 64, 1, &bt)
                                        : mmt_bnb_int8_tensors(&ar, t->name, w, slot->out, slot->in, &bt);
            for (int64_t k = 0; s == MMT_OK && k < bt.n; k++) list[n++] = bt.tensors[k];
            if (s == MMT_OK) done++;
        }
    }
    char *path = s == MMT_OK ? mmt_path_join(out_dir, "model.safetensors") : NULL;
    if (s == MMT_OK && !path) s = MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK && done == 0) s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: no linear weight to quantize", src_dir);
    if (s == MMT_OK) s = mmt_safetensors_write(path, list, n, NULL, 0);
    if (s == MMT_OK) s = mmt_snapshot_copy_files(src_dir, out_dir);
    if (s == MMT_OK) s = write_config(src_dir, out_dir, kind, 1); /* after the copy: it replaces config.json */
    if (s == MMT_OK && n_quantized) *n_quantized = done;
    mmt_free(path);
    mmt_free(list);
    mmt_arena_free(&ar);
    return s;
}
