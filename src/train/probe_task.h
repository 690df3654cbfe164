/*
 * probe_task.h — linear probing: a frozen CLIP image tower and a linear head on its
 * normalised image embeddings. `mmtune train --method linear-probe` fits the head as CLIP's
 * paper does, by L-BFGS logistic regression with a regularisation sweep (train/probe_fit.h);
 * the task below also runs it under the generic trainer as an mmt_train_task (cross-entropy,
 * AdamW).
 *
 * Classes come from the pairs: a pair's "label" field, or its text when it has none. The
 * distinct names sorted by byte value (Python's sorted() order for UTF-8) are classes 0..K-1.
 * The tower is frozen, so every example's embedding is computed once, when the task is
 * created, in fixed chunks (the same bits whatever the batch order, so a resumed run stays
 * bitwise equal), and kept: n x projection_dim floats.
 *
 * The head (torch: nn.Linear(P, K) on F.normalize(get_image_features(x))):
 *     logits (B, K) = E (B, P) . W^T (P, K) + b (K),   loss = nn_cross_entropy (mean over B)
 * W and b start at zero: every class equally likely, loss ln K, and the run does not depend on
 * an initialisation draw. Weight decay applies to W, not to b.
 *
 * What save writes (the folder the trainer names; OUT/adapter/ for the final head):
 *     head.safetensors   "head.weight" F32 [K, P], "head.bias" F32 [K]
 *     head_config.json   {"type": "linear_probe", "input": "normalized_image_embeds",
 *                         "projection_dim": P, "num_classes": K, "classes": [...],
 *                         "base_model_name_or_path": ...,
 *                         "fit": {...}}   (probe_fit.h: solver, C, held-out accuracy, sweep)
 */
#ifndef MMT_TRAIN_PROBE_TASK_H
#define MMT_TRAIN_PROBE_TASK_H

#include <stdint.h>

#include "data/pairs.h"
#include "models/clip.h"
#include "train/trainer.h"

typedef struct mmt_probe_head {
    int64_t K, P;
    char **classes;     /* owned: K owned names, sorted */
    float *weight;      /* owned (K, P) */
    float *bias;        /* owned (K) */
} mmt_probe_head;

/* Reads head_config.json + head.safetensors from a folder written by save. */
mmt_status mmt_probe_head_load(const char *dir, mmt_probe_head **out);
/* Writes them (atomically) into an existing folder; base_model may be NULL. */
mmt_status mmt_probe_head_save(const mmt_probe_head *h, const char *base_model, const char *dir);
/* The same with a "fit" member holding fit_json (a JSON object's text; NULL: none). */
mmt_status mmt_probe_head_save_fit(const mmt_probe_head *h, const char *base_model, const char *fit_json,
                                   const char *dir);
void mmt_probe_head_free(mmt_probe_head *h);

/* logits (B, K) of normalised image embeddings emb (B, P). */
void mmt_probe_head_logits(const mmt_probe_head *h, const float *emb, int64_t B, float *logits);
/* The index of a class name, or -1. */
int64_t mmt_probe_head_class(const mmt_probe_head *h, const char *name);

/* The class name of a pair: its label, or its text. */
const char *mmt_probe_pair_class(const mmt_pair *p);

typedef struct mmt_probe_metrics {
    int64_t n;          /* examples */
    int64_t correct;    /* top-1 hits (ties go to the lower class index, as torch.argmax) */
    double accuracy;    /* correct / n */
    double loss;        /* mean cross-entropy */
} mmt_probe_metrics;

/* Scores a head on embeddings emb (n, P) of pairs (the same order); a pair whose class the
 * head does not know is an error naming the file and pair. */
mmt_status mmt_probe_evaluate(const mmt_probe_head *h, const mmt_pairs *pairs, const float *emb,
                              mmt_probe_metrics *out);

typedef struct mmt_probe_task mmt_probe_task;

/* Embeds every pair's image with the frozen model (decoded and preprocessed as the model's
 * processor says) and sets up a zero head over the pairs' classes. model and pairs stay
 * borrowed and must outlive the task. Fewer than two classes is an error. */
mmt_status mmt_probe_task_create(mmt_clip *model, const mmt_pairs *pairs, mmt_probe_task **out);
void mmt_probe_task_free(mmt_probe_task *t);
void mmt_probe_task_bind(mmt_probe_task *t, mmt_train_task *out);

const mmt_probe_head *mmt_probe_task_head(const mmt_probe_task *t);
/* The same head, for a fit to overwrite (mmt_probe_task_fit). */
mmt_probe_head *mmt_probe_task_head_mutable(mmt_probe_task *t);
/* The class index of each of the task's n examples (n into *n). */
const int32_t *mmt_probe_task_labels(const mmt_probe_task *t, int64_t *n);
/* The cached embeddings (n, P) of the task's pairs. */
const float *mmt_probe_task_embeddings(const mmt_probe_task *t);

#endif
