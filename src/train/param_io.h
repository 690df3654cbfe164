/*
 * param_io.h — trainable tensors read back from a model.safetensors that a full fine-tuning
 * run wrote (each tensor under its registered name, float32), for the training tasks'
 * checkpoint resume.
 */
#ifndef MMT_TRAIN_PARAM_IO_H
#define MMT_TRAIN_PARAM_IO_H

#include <stdint.h>

#include "core/status.h"
#include "nn/param.h"

/* Fills every p[i].data from dir/model.safetensors; a tensor missing, of another size or not
 * F32 is BAD_FORMAT naming the file and the tensor. */
mmt_status mmt_params_load_model_file(const mmt_nn_param *p, int64_t n, const char *dir);

#endif
