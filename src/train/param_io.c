/* param_io.c — trainable tensors from a full fine-tuning's model.safetensors (see param_io.h). */
#include "train/param_io.h"

#include "core/alloc.h"
#include "core/file.h"
#include "core/safetensors.h"

mmt_status mmt_params_load_model_file(const mmt_nn_param *p, int64_t n, const char *dir) {
    char *path = mmt_path_join(dir, "model.safetensors");
    mmt_safetensors *st = NULL;
    mmt_status s = path ? mmt_safetensors_open(path, &st) : MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < n; i++) {
        const mmt_st_tensor *x = mmt_safetensors_find(st, p[i].name);
        if (!x || x->numel != p[i].numel || x->dtype != MMT_DTYPE_F32)
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor %s is missing or has the wrong shape or dtype", path, p[i].name);
        else
            s = mmt_st_tensor_to_f32_finite(x, p[i].data);
    }
    mmt_safetensors_close(st);
    mmt_free(path);
    return s;
}
