/*
 * param.h — a named trainable tensor as a model exposes it to the trainer.
 *
 * Models (and the PEFT methods attached to them) own the data and gradient buffers; the
 * trainer borrows them through this description. Names are the keys the tensor is saved
 * under: PEFT's adapter keys for adapter tensors, Hugging Face's for base weights.
 */
#ifndef MMT_NN_PARAM_H
#define MMT_NN_PARAM_H

#include <stdint.h>

#define MMT_PARAM_MAX_DIMS 4

typedef struct mmt_nn_param {
    char *name;          /* owned by the model that lists it */
    float *data, *grad;  /* (numel) each */
    int ndim;            /* 0 for a scalar */
    int64_t shape[MMT_PARAM_MAX_DIMS];
    int64_t numel;
    int no_decay;        /* biases, norms, embeddings, scales: AdamW weight decay off */
} mmt_nn_param;

#endif
