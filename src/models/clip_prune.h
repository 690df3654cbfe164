/*
 * clip_prune.h — structured pruning of a CLIP: how much each attention head, MLP neuron and
 * encoder layer matters to the contrastive loss on some data, and a smaller Hugging Face
 * snapshot without the least important MLP neurons and layers (docs/distillation.md).
 *
 * Importance is the first-order Taylor score (Molchanov et al. 2019, "Importance Estimation
 * for Neural Network Pruning"): for a unit u with output a_u and loss gradient g_u there,
 * per batch |sum over the batch's rows and positions of a_u * g_u|, summed over batches. It is
 * the change of the loss, to first order, when the unit is removed. A unit is
 *   - a head: its slice of the attention output (the head_dim inputs of out_proj it feeds);
 *   - a neuron: one input of fc2 (the activation after fc1);
 *   - a layer: both residual branches (out_proj's and fc2's outputs, biases included).
 * None of these needs the activations: for y = x W^T + b, sum_n x_nj (dL/dx_nj) =
 * sum_i W_ij dW_ij, so a unit's score is the sum of W * dW (and b * db) over the columns
 * (and rows) of out_proj and fc2 it owns, from the gradients the training view computes
 * (models/clip_train.h) with only out_proj and fc2 trainable.
 *
 * What can be removed is what transformers' CLIPConfig can describe (one num_hidden_layers,
 * num_attention_heads and intermediate_size per tower): the same number of MLP neurons in
 * every layer of a tower (intermediate_size smaller) and whole layers (num_hidden_layers
 * smaller). Heads cannot: CLIPAttention's q/k/v/out projections are hidden x hidden with
 * head_dim = hidden / num_attention_heads, and transformers keeps no pruned_heads for CLIP
 * (version 5 has none at all), so heads are scored and reported but not removed.
 *
 * Use:
 *     mmt_clip_importance *imp;  mmt_clip_importance_create(model, &imp);
 *     for each batch: mmt_clip_importance_add(imp, pixels, ids, B, L, &loss);
 *     mmt_clip_prune_plan plan;  mmt_clip_prune_plan_make(model, imp, &settings, &plan);
 *     mmt_clip_prune_write(model, &plan, "out/");
 */
#ifndef MMT_MODELS_CLIP_PRUNE_H
#define MMT_MODELS_CLIP_PRUNE_H

#include <stdint.h>

#include "models/clip.h"

/* Scores of one tower, each a sum over the batches added so far (>= 0). */
typedef struct mmt_clip_tower_scores {
    int64_t layers, heads, neurons; /* neurons: intermediate_size */
    double *head;    /* (layers, heads) */
    double *neuron;  /* (layers, neurons) */
    double *layer;   /* (layers) */
} mmt_clip_tower_scores;

typedef struct mmt_clip_importance mmt_clip_importance;

/* model is borrowed (it must have both towers and fp32 linears). */
mmt_status mmt_clip_importance_create(mmt_clip *model, mmt_clip_importance **out);
void mmt_clip_importance_free(mmt_clip_importance *imp);
/* Adds one batch: pixels (B, 3, S, S), ids (B, L) as mmt_clip_tokenize frames them; B >= 2
 * (with one pair the contrastive loss is constant). *loss (may be NULL): the batch's loss. */
mmt_status mmt_clip_importance_add(mmt_clip_importance *imp, const float *pixels, const int32_t *ids, int64_t B,
                                   int64_t L, double *loss);
/* The scores so far of the text (vision 0) or vision tower. */
const mmt_clip_tower_scores *mmt_clip_importance_tower(const mmt_clip_importance *imp, int vision);
int64_t mmt_clip_importance_batches(const mmt_clip_importance *imp);

/* What to remove, as fractions in [0, 1) of each pruned tower's layers and of each kept
 * layer's MLP neurons: round(f * n) units go (at least one stays). */
typedef struct mmt_clip_prune_settings {
    double layers, mlp;
    int text, vision;        /* towers to prune (the other keeps everything) */
} mmt_clip_prune_settings;

/* What stays of one tower: source layer indices and, for each kept layer, its source neuron
 * indices, both ascending. */
typedef struct mmt_clip_prune_tower_plan {
    int64_t n_layers, n_neurons;
    int64_t *layer;   /* (n_layers), owned */
    int64_t *neuron;  /* (n_layers, n_neurons), owned */
} mmt_clip_prune_tower_plan;

typedef struct mmt_clip_prune_plan {
    mmt_clip_prune_tower_plan text, vision;
} mmt_clip_prune_plan;

/* The plan the scores give: in each pruned tower the lowest-scoring layers go, then in
 * every kept layer its lowest-scoring neurons (ties: the higher index goes first). imp may be
 * NULL when both fractions are 0. Fractions outside [0, 1) are an error naming them. */
mmt_status mmt_clip_prune_plan_make(const mmt_clip *model, const mmt_clip_importance *imp,
                                    const mmt_clip_prune_settings *s, mmt_clip_prune_plan *plan);
void mmt_clip_prune_plan_free(mmt_clip_prune_plan *plan);
/* The pruned model's config: model's with the plan's layer counts and intermediate sizes. */
void mmt_clip_prune_config(const mmt_clip *model, const mmt_clip_prune_plan *plan, mmt_clip_config *out);

/* Writes the pruned snapshot into out_dir (created if missing; its files replaced):
 * config.json (CLIPConfig's keys, the smaller sizes), model.safetensors (F32: kept layers
 * renumbered from 0, fc1's kept rows and fc2's kept columns, everything else as it was, and
 * logit_scale), and the tokenizer and preprocessor files copied from the model's folder. */
mmt_status mmt_clip_prune_write(mmt_clip *model, const mmt_clip_prune_plan *plan, const char *out_dir);

#endif
