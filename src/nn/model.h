/*
 * model.h — a model as PEFT methods see it, whatever the family.
 *
 * peft/ attaches LoRA / DoRA / IA3 to linear layers, bottleneck adapters to their slots,
 * prompt and prefix tuning to the token streams, and registers what trains — all through
 * this small table, filled by a model family's training/inference view (for CLIP,
 * mmt_clip_train_iface in models/clip_train.h). Module names are those of the family's
 * module list (nn/module.h, torch's named_modules()). A NULL entry is a capability the
 * family lacks; the PEFT method then refuses with a clear error.
 */
#ifndef MMT_NN_MODEL_H
#define MMT_NN_MODEL_H

#include <stdint.h>

#include "core/status.h"
#include "nn/bottleneck.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/param.h"
#include "ops/ops.h"

typedef struct mmt_model_iface {
    void *ctx;              /* the family's view */
    const char *source;     /* the model's folder, for messages */
    mmt_model_dims dims;
    const mmt_ops *ops;
    /* the model's modules in named_modules() order (the caller frees with mmt_modules_free) */
    mmt_status (*list_modules)(void *ctx, mmt_module_info **out, int64_t *n);
    /* where adapters go: the linear layer behind a module name (Conv2d patch embeddings
     * included, as the same linear on flattened patches), a bottleneck slot */
    mmt_linear *(*linear)(void *ctx, const char *module);
    mmt_bottleneck **(*bottleneck_slot)(void *ctx, const char *module);
    /* what trains */
    mmt_status (*add_param)(void *ctx, const char *name, float *data, float *grad, int ndim, const int64_t *shape,
                            int no_decay);
    const mmt_nn_param *(*params)(void *ctx, int64_t *n);
    mmt_status (*make_module_trainable)(void *ctx, const char *module, const char *key_prefix, int64_t *n_added);
    /* prompt and prefix tuning (shapes as models/clip_train.h describes them) */
    const float *(*token_embedding)(void *ctx);
    mmt_status (*set_text_prompt)(void *ctx, int64_t M, const float *prompt, float *dprompt);
    mmt_status (*set_visual_prompt)(void *ctx, int64_t P, int deep, const float *prompt, float *dprompt);
    mmt_status (*set_prefix)(void *ctx, int vision, int64_t V, const float *kv, float *dkv);
    mmt_status (*add_hooks)(void *ctx, void *hook_ctx, mmt_status (*before_forward)(void *hook_ctx),
                            mmt_status (*after_backward)(void *hook_ctx));
    void (*remove_hooks)(void *ctx, void *hook_ctx);
} mmt_model_iface;

#endif
