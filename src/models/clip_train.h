/*
 * clip_train.h — CLIP as a trainable graph: forward that keeps what backward needs, the
 * contrastive loss, hand-written backward, gradient checkpointing per encoder block.
 *
 * A training view wraps a loaded mmt_clip without copying it: base weights stay where the
 * model keeps them (often a read-only mapping) and are frozen. What trains is decided after
 * creation: PEFT methods attach to the view's linear layers (mmt_clip_train_linear) and
 * register their tensors (mmt_clip_train_add_param); mmt_clip_train_make_full() copies every
 * base weight into memory the view owns and makes it trainable (full fine-tuning).
 *
 * One step:
 *     mmt_clip_train_zero_grad(ct);
 *     mmt_clip_train_forward_loss(ct, pixels, ids, B, L, seed, &loss);   // saves activations
 *     mmt_clip_train_backward(ct);                                       // grads +=
 * Backward only runs the towers, and the layers of a tower, that have something trainable
 * at or below them. The module names are transformers' CLIPModel.named_modules() names.
 * Math as modeling_clip.py; the loss is clip_loss (see nn/loss.h).
 */
#ifndef MMT_MODELS_CLIP_TRAIN_H
#define MMT_MODELS_CLIP_TRAIN_H

#include <stdint.h>

#include "models/clip.h"
#include "nn/bottleneck.h"
#include "nn/linear.h"
#include "nn/model.h"
#include "nn/param.h"

typedef struct mmt_clip_train mmt_clip_train;

struct mmt_ops;
struct mmt_comm;

typedef struct mmt_clip_train_options {
    int checkpointing;        /* recompute each encoder block in backward instead of keeping it */
    /* selective recomputation (nn/block.h `recompute`): keep neither the attention
     * probabilities nor a frozen fc1's output, recompute them in backward; same bits */
    int recompute;
    int train_logit_scale;    /* learn CLIP's logit_scale (clamped to [0, ln 100] after steps) */
    float fixed_temperature;  /* > 0: use 1/fixed_temperature as the scale instead of the model's */
    float distill_weight;     /* > 0: add the KL term to the frozen base model's logits */
    /* Data parallelism (docs/distributed.md): the job's ranks (borrowed; NULL or one rank: a
     * single process, and the loss is the local batch's as before, bit for bit). With
     * gather_with_grad, a training forward_loss all-gathers every rank's embeddings (every
     * rank calls it, in the same order, with the same B) and the loss is the global batch's
     * (open_clip's --gather-with-grad, local_loss off; nn_contrastive_loss_gathered): the same
     * value on every rank, the embeddings' gradients R x those of this rank's rows, so that the
     * trainer's sum over ranks / R is the global-batch gradient. An evaluation-mode forward
     * (set_eval) does not gather. With distill_weight the frozen model's embeddings are
     * gathered too. */
    struct mmt_comm *comm;
    int gather_with_grad;
    /* What the plain distillation term (distill_weight without a distill_teacher) compares
     * with (borrowed): NULL, the frozen base model; else a view of the same base with
     * something attached that does not train (an earlier task's adapter: continual
     * learning's --distill-from-previous, docs/continual.md). Its encode_* give the teacher's
     * embeddings; the term and its scale are unchanged. */
    struct mmt_clip_train *base_teacher;
    /* Distillation from another model, `train --distill-from` (docs/distillation.md):
     * distill_teacher, when set, is a view over a frozen model (borrowed; its own weights,
     * maybe another architecture, any adapter attached to it applies) that a training
     * forward_loss runs forward only, on the same pixels and ids (same image size, tokenizer
     * and context). The loss is then task_weight * clip_loss + nn_distill_loss (nn/loss.h):
     * distill_weight on the KL term at distill_temperature, the teacher's logits at its own
     * scale, and distill_cosine on the embeddings' cosine distance (same projection_dim).
     * Not with gather_with_grad. The three numbers are read only with a distill_teacher. */
    struct mmt_clip_train *distill_teacher;
    float distill_temperature;  /* > 0 (1) */
    float distill_cosine;       /* (0) */
    float task_weight;          /* (1) */
} mmt_clip_train_options;

/* Everything off, and distill_temperature and task_weight 1. */
void mmt_clip_train_options_default(mmt_clip_train_options *o);

mmt_status mmt_clip_train_create(mmt_clip *model, const mmt_clip_train_options *o,
                                 mmt_clip_train **out);
void mmt_clip_train_free(mmt_clip_train *ct);

mmt_clip *mmt_clip_train_model(mmt_clip_train *ct);

/* The view as PEFT methods see it (nn/model.h): peft/ attaches through this alone. Valid
 * while the view lives. */
const mmt_model_iface *mmt_clip_train_iface(mmt_clip_train *ct);

/* The linear layer behind a module name ("text_model.encoder.layers.0.self_attn.q_proj",
 * "vision_model.embeddings.patch_embedding", "visual_projection", ...), or NULL. */
mmt_linear *mmt_clip_train_linear(mmt_clip_train *ct, const char *module_name);

/* Where a bottleneck adapter of an encoder layer goes: "<tower>_model.encoder.layers.<i>.adapter_attn"
 * (on out_proj's output, before the attention residual add) or "...adapter_mlp" (on fc2's
 * output, before the MLP residual add), Houlsby's two places. NULL for any other name. The
 * view computes with whatever the slot points at (NULL: nothing); the caller owns it. */
mmt_bottleneck **mmt_clip_train_bottleneck_slot(mmt_clip_train *ct, const char *module_name);

/* Makes every base tensor trainable: copies into owned memory, gradients allocated, each
 * registered under its Hugging Face name (logit_scale too when the options train it). */
mmt_status mmt_clip_train_make_full(mmt_clip_train *ct);

/* Makes the tensors of one module (transformers' name, e.g. "visual_projection",
 * "vision_model.post_layernorm", "vision_model.embeddings") trainable as make_full does,
 * registered as key_prefix + their Hugging Face name (PEFT's modules_to_save keys use
 * "base_model.model."); *n_added counts them. NOT_FOUND when the module has none. */
mmt_status mmt_clip_train_make_module_trainable(mmt_clip_train *ct, const char *module,
                                                const char *key_prefix, int64_t *n_added);

/* Registers a tensor someone else owns (an adapter's) as trainable; the name is copied. */
mmt_status mmt_clip_train_add_param(mmt_clip_train *ct, const char *name, float *data,
                                    float *grad, int ndim, const int64_t *shape, int no_decay);

/* The trainable tensors in registration order. */
const mmt_nn_param *mmt_clip_train_params(const mmt_clip_train *ct, int64_t *n);
void mmt_clip_train_zero_grad(mmt_clip_train *ct);

/* Forward over a batch of B image-text pairs (pixels (B, 3, S, S), ids (B, L)), keeping
 * activations for backward; seed drives dropout. *loss is the contrastive loss (of every
 * rank's batch together with the options' gather_with_grad; a collective then). */
mmt_status mmt_clip_train_forward_loss(mmt_clip_train *ct, const float *pixels,
                                       const int32_t *ids, int64_t B, int64_t L, uint64_t seed,
                                       double *loss);
/* Evaluation mode (eval != 0): forward_loss only computes the loss and embeddings — no
 * dropout, no activations kept, backward refused. */
void mmt_clip_train_set_eval(mmt_clip_train *ct, int eval);
/* Gradients of the last forward_loss (+= into every registered gradient). */
mmt_status mmt_clip_train_backward(mmt_clip_train *ct);
/* The same backward, calling ready(user) once part way: after the text tower, whose
 * trainable tensors' gradients are final from then on (the vision tower's come next). For
 * overlapping the gradient all-reduce with the rest of backward (train/trainer.h). */
mmt_status mmt_clip_train_backward_split(mmt_clip_train *ct, void (*ready)(void *user), void *user);
/* Marks early[i] = 1 for the trainable tensors (mmt_clip_train_params order) that
 * mmt_clip_train_backward_split finishes before calling ready, and returns their count; 0
 * when backward has no such point on this view: a tower without trainable tensors, hooks
 * that change gradients after backward (prompts), or the gathered loss (a collective inside
 * backward). */
int64_t mmt_clip_train_early_params(const mmt_clip_train *ct, uint8_t *early);

/* The embeddings of the last forward_loss (B, projection_dim each). */
const float *mmt_clip_train_image_embeds(const mmt_clip_train *ct);
const float *mmt_clip_train_text_embeds(const mmt_clip_train *ct);

/* Inference through the view (adapters applied, no dropout, nothing kept): normalised
 * embeddings (B, projection_dim). */
mmt_status mmt_clip_train_encode_pixels(mmt_clip_train *ct, const float *pixels, int64_t B,
                                        float *out);
mmt_status mmt_clip_train_encode_ids(mmt_clip_train *ct, const int32_t *ids, int64_t B,
                                     int64_t L, float *out);

/* A captioner's image features (GIT): the vision tower's last hidden states with
 * post_layernorm applied at every position, (B, T, C_vision), T = 1 + (image_size /
 * patch_size)^2 (+ visual prompts); inference, nothing kept. out holds B * T * C floats. */
mmt_status mmt_clip_train_vision_states(mmt_clip_train *ct, const float *pixels, int64_t B, float *out);

/* The same for training: forward keeping what backward needs (dropout from seed); *states
 * points into the view's activations (valid until the next forward). Then
 * vision_states_backward with dstates (B, T, C_vision), the gradient at the states, adds to
 * every registered gradient of the vision tower. */
mmt_status mmt_clip_train_vision_states_train(mmt_clip_train *ct, const float *pixels, int64_t B, uint64_t seed,
                                              float **states);
mmt_status mmt_clip_train_vision_states_backward(mmt_clip_train *ct, const float *dstates);
/* 1 when anything of the vision tower trains (a registered tensor, an adapter with gradients). */
int mmt_clip_train_vision_trains(const mmt_clip_train *ct);

/* The scale the loss uses now (exp(logit_scale) or 1/fixed_temperature). */
float mmt_clip_train_scale(const mmt_clip_train *ct);
/* The raw logit_scale parameter (learned, or the model's). */
float mmt_clip_train_logit_scale(const mmt_clip_train *ct);
/* After an optimizer step: clamps a learned logit_scale to [0, ln 100] like CLIP. */
void mmt_clip_train_after_step(mmt_clip_train *ct);
/* Peak bytes of the activation arena so far. */
size_t mmt_clip_train_peak_activation_bytes(const mmt_clip_train *ct);

/* ---- prompt and prefix tuning (peft/prompt.h owns the tensors) ----------------------------
 * The view borrows the tensors; a NULL gradient means frozen; a count of 0 removes them.
 * How the sequences change is described at the top of clip_train.c. */

/* The base token embedding (vocab, C) (for prompts initialised from a text). */
const float *mmt_clip_train_token_embedding(const mmt_clip_train *ct);
/* CoOp: M context vectors (M, C_text) after BOS; M <= context length - 2. */
mmt_status mmt_clip_train_set_text_prompt(mmt_clip_train *ct, int64_t M, const float *prompt, float *dprompt);
/* VPT: P tokens after CLS. prompt is (P, C_vision), or with deep (num_layers, P, C_vision):
 * block 0 at the input, block i replacing them at layer i's input. */
mmt_status mmt_clip_train_set_visual_prompt(mmt_clip_train *ct, int64_t P, int deep, const float *prompt,
                                            float *dprompt);
/* Prefix tuning of one tower: kv (V, num_layers * 2 * C), PEFT's prompt_embeddings layout:
 * row r holds, for each layer l, its key at l*2*C and its value at l*2*C + C. */
mmt_status mmt_clip_train_set_prefix(mmt_clip_train *ct, int vision, int64_t V, const float *kv, float *dkv);

/* Mixed batches: prompts and prefixes that differ from row to row, for inference only.
 * Row b of the following encode_* calls (B rows each) uses rows[b]: a text prompt, visual
 * prompts and prefixes of either tower, each count 0 for none. The tensors are laid out as
 * set_text_prompt / set_visual_prompt / set_prefix take them and are borrowed; rows is
 * copied. The view's own prompts and prefixes must be unset. NULL (or B 0) clears. Each
 * row gets what a view with that row's prompts set gives (a batch mixing lengths pads the
 * shorter sequences; padded positions are masked as keys). */
typedef struct mmt_clip_row_prompts {
    int64_t text_tokens;       /* CoOp context vectors */
    const float *text;         /* (text_tokens, C_text) */
    int64_t visual_tokens;     /* VPT tokens */
    int visual_deep;
    const float *visual;       /* (visual_deep ? L_vision : 1, visual_tokens, C_vision) */
    int64_t prefix_tokens[2];  /* [0] text tower, [1] vision tower */
    const float *prefix[2];    /* (prefix_tokens, L*2*C) each */
} mmt_clip_row_prompts;

mmt_status mmt_clip_train_set_row_prompts(mmt_clip_train *ct, const mmt_clip_row_prompts *rows, int64_t B);

/* Calls before every forward (training or encode_*) and after every backward, for modules
 * that derive their tensors (prefix projection); at most 4 per view. Removed by ctx. */
mmt_status mmt_clip_train_add_hooks(mmt_clip_train *ct, void *ctx, mmt_status (*before_forward)(void *ctx),
                                    mmt_status (*after_backward)(void *ctx));
void mmt_clip_train_remove_hooks(mmt_clip_train *ct, void *ctx);

#endif
