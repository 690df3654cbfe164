/* merge.c — an adapter folded into a written Hugging Face snapshot (see merge.h). */
#include "peft/merge.h"

#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/safetensors.h"
#include "core/weights.h"

mmt_status mmt_adapter_merge_write(const mmt_weights *w, const mmt_adapter *adapter, const char *out_dir) {
    if (adapter->settings.method == MMT_ADAPTER_BOTTLENECK)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "bottleneck adapters add layers of their own; they cannot be merged "
                                                "into the base weights (use the adapter as it is)");
    int64_t n = 0;
    for (int64_t f = 0; f < w->n_files; f++) n += w->files[f]->n_tensors;
    mmt_st_write_tensor *out = mmt_calloc((size_t)(n > 0 ? n : 1), sizeof *out);
    float **bufs = mmt_calloc((size_t)(n > 0 ? n : 1), sizeof *bufs);
    char *path = mmt_path_join(out_dir, "model.safetensors");
    mmt_status s = out && bufs && path ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    int64_t k = 0, changed = 0, quantized = 0;
    for (int64_t f = 0; f < w->n_files && s == MMT_OK; f++) {
        const mmt_safetensors *st = w->files[f];
        for (int64_t i = 0; i < st->n_tensors && s == MMT_OK; i++) {
            const mmt_st_tensor *t = &st->tensors[i];
            if (t->dtype != MMT_DTYPE_F32 && t->dtype != MMT_DTYPE_F16 && t->dtype != MMT_DTYPE_BF16) {
                /* integer buffers (position_ids) are not weights: transformers rebuilds them; an
                 * 8-bit ".weight" is a quantized layer (bitsandbytes int8 or NF4) */
                size_t len = strlen(t->name);
                quantized += (t->dtype == MMT_DTYPE_I8 || t->dtype == MMT_DTYPE_U8) && len > 7 &&
                             !strcmp(t->name + len - 7, ".weight");
                continue;
            }
            float *base = mmt_malloc((size_t)(t->numel > 0 ? t->numel : 1) * sizeof(float));
            float *merged = mmt_malloc((size_t)(t->numel > 0 ? t->numel : 1) * sizeof(float));
            if (!base || !merged) {
                mmt_free(base);
                mmt_free(merged);
                s = MMT_STATUS_OUT_OF_MEMORY;
                break;
            }
            if ((s = mmt_st_tensor_to_f32_finite(t, base)) != MMT_OK) {
                mmt_free(base);
                mmt_free(merged);
                break;
            }
            if (mmt_adapter_merged_tensor(adapter, t->name, base, t->numel, merged)) {
                mmt_free(base);
                base = merged;
                changed++;
                /* the adapter's scale or weights overflowed (a huge lora_alpha): no snapshot of NaN */
                if ((s = mmt_st_check_finite(t->name, merged, t->numel)) != MMT_OK) {
                    s = mmt_error_prefix(s, "merging the adapter: ");
                    mmt_free(base);
                    break;
                }
            } else {
                mmt_free(merged);
            }
            bufs[k] = base;
            out[k].name = t->name;
            out[k].dtype = MMT_DTYPE_F32;
            out[k].ndim = t->ndim;
            out[k].shape = t->shape;
            out[k].data = base;
            k++;
        }
    }
    if (s == MMT_OK && changed == 0 && quantized > 0)
        s = mmt_fail(MMT_STATUS_UNSUPPORTED, "%s is a quantized snapshot (%lld 8-bit layers): merge the adapter into the "
                     "float snapshot it came from, then quantize the result", w->dir, (long long)quantized);
    if (s == MMT_OK && changed == 0)
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the adapter changes no tensor of %s", w->dir);
    if (s == MMT_OK) s = mmt_mkdirs(out_dir);
    if (s == MMT_OK) s = mmt_safetensors_write(path, out, k, NULL, 0);
    if (s == MMT_OK) s = mmt_snapshot_copy_files(w->dir, out_dir);
    for (int64_t i = 0; i < k; i++) mmt_free(bufs[i]);
    mmt_free(bufs);
    mmt_free(out);
    mmt_free(path);
    return s;
}
