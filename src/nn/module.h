/*
 * module.h — a model's named modules as PEFT sees them, whatever the family.
 *
 * PEFT chooses what to adapt by module name (target_modules, exclude_modules, modules_to_save,
 * layers_to_transform, rank_pattern): every model family lists its modules in the order and
 * with the names torch's named_modules() gives (models/clip_modules.h for CLIP), and peft/
 * reads only this list and these dimensions, never a family's own structures.
 */
#ifndef MMT_NN_MODULE_H
#define MMT_NN_MODULE_H

#include <stdint.h>

#include "core/status.h"

typedef enum mmt_module_kind {
    MMT_MODULE_CONTAINER,  /* only holds other modules: CLIPModel, CLIPEncoderLayer, ModuleList... */
    MMT_MODULE_ACTIVATION, /* parameter-free activation (QuickGELUActivation, GELUActivation) */
    MMT_MODULE_LINEAR,
    MMT_MODULE_CONV2D,
    MMT_MODULE_LAYERNORM,
    MMT_MODULE_EMBEDDING
} mmt_module_kind;

typedef enum mmt_tower { MMT_TOWER_NONE, MMT_TOWER_TEXT, MMT_TOWER_VISION } mmt_tower;

typedef struct mmt_module_info {
    char *name;            /* owned; "" for the root module */
    const char *type_name; /* torch class name ("Linear", "CLIPMLP", ...); static storage */
    mmt_module_kind kind;
    mmt_tower tower;       /* text_model.* and text_projection are TEXT; the root is NONE */
    int64_t layer;         /* encoder layer index for layers.N and everything under it, else -1 */
    /* Linear: in_features / out_features. Conv2d: in = in_channels * k * k (the flattened
     * patch), out = out_channels. Embedding: in = num_embeddings, out = embedding_dim.
     * LayerNorm: in = out = normalized size. Containers and activations: 0. */
    int64_t in_features, out_features;
    int64_t in_channels, kernel_size; /* Conv2d only (square kernel, stride = kernel, no padding) */
    int has_bias;
    int output_head;       /* the language-model head (PEFT's all-linear leaves it out) */
} mmt_module_info;

/* Frees a list a family made. */
void mmt_modules_free(mmt_module_info *modules, int64_t n);

/* Index of the module called name, or -1. */
int64_t mmt_module_find(const mmt_module_info *modules, int64_t n, const char *name);
/* "Linear", "Conv2d", "LayerNorm", "Embedding", "activation", "container". */
const char *mmt_module_kind_name(mmt_module_kind kind);
/* "text", "vision", "none". */
const char *mmt_tower_name(mmt_tower tower);

/* The sizes of one transformer stack of a model (a CLIP tower, a captioner's decoder). */
typedef struct mmt_tower_dims {
    int present;
    int64_t layers, hidden, heads;
    int64_t vocab;          /* token vocabulary (text); 0 elsewhere */
    int64_t patch, channels;/* patch size and image channels (vision); 0 elsewhere */
} mmt_tower_dims;

/* What PEFT methods read of a model's sizes. */
typedef struct mmt_model_dims {
    mmt_tower_dims text, vision;
} mmt_model_dims;

#endif
