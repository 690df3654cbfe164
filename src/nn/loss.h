/*
 * loss.h — the training objectives, each with its gradient. (The L2 normalisation that
 * precedes CLIP's similarity is the op table's l2_normalize_fwd/_bwd, src/ops/ops.h.)
 *
 * Contrastive: transformers' clip_loss (modeling_clip.py): with logits_per_text
 * LT = scale * txt @ img^T (B, B), loss = (CE(LT, arange) + CE(LT^T, arange)) / 2, each CE a
 * mean over the batch. Distillation: the same two directions, each the KL divergence
 * KL(softmax(teacher) || softmax(student)) averaged over rows (torch's kl_div with
 * reduction "batchmean"), halved and summed like the contrastive term. Cross-entropy: mean
 * over rows of -log softmax(logits)[label] (torch's cross_entropy).
 * Sums run in double; losses are returned as double.
 */
#ifndef MMT_NN_LOSS_H
#define MMT_NN_LOSS_H

#include <stdint.h>

#include "core/arena.h"
#include "core/status.h"

/* Contrastive loss of normalised embeddings img, txt (B, P) at temperature `scale` (the
 * exp of CLIP's logit_scale). When teacher_lt (B, B) is given (the frozen model's
 * logits_per_text), distill_weight * the distillation term is added. Gradients (+=) into
 * dimg, dtxt (may be NULL) and *dscale (d loss / d scale, may be NULL). */
mmt_status nn_contrastive_loss(const float *img, const float *txt, int64_t B, int64_t P,
                               float scale, const float *teacher_lt, float distill_weight,
                               mmt_arena *arena, double *loss, float *dimg, float *dtxt,
                               double *dscale);

/* The contrastive loss over the batch of every rank of a data-parallel job (open_clip's
 * --gather-with-grad with local_loss off): img_all, txt_all (R*B, P) are the R ranks'
 * normalised embeddings gathered in rank order, this rank's (r) rows at r*B. *loss is the
 * loss of the whole R*B batch, the same value nn_contrastive_loss gives on it (the same
 * code and order: bitwise), on every rank. teacher_lt, when given, is (R*B, R*B).
 *
 * Gradients (+=) go to this rank's rows only: dimg, dtxt (B, P) get R x d loss / d (rows
 * r*B .. r*B + B - 1), *dscale the whole d loss / d scale. The factor R is what autograd
 * through open_clip's all_gather gives (each of the R ranks' copies of the loss reaches
 * these rows), which DDP's mean over ranks then cancels: a trainer that sums every rank's
 * parameter gradients and divides by R gets the global-batch gradient, and d scale (the
 * same on every rank) summed and divided by R stays the global one. */
mmt_status nn_contrastive_loss_gathered(const float *img_all, const float *txt_all, int64_t R,
                                        int64_t r, int64_t B, int64_t P, float scale,
                                        const float *teacher_lt, float distill_weight,
                                        mmt_arena *arena, double *loss, float *dimg,
                                        float *dtxt, double *dscale);

/* Distillation from a teacher's normalised embeddings t_img, t_txt (B, Pt) (docs/distillation.md):
 *   kl_weight * T^2 * the distillation term above, between softmax(teacher LT / T) and
 *       softmax(student LT / T), teacher LT = t_scale * t_txt @ t_img^T, student LT = scale *
 *       txt @ img^T (Hinton et al. 2015: T^2 keeps the gradient's size as T changes);
 *   + cos_weight * mean over rows of ((1 - img . t_img) + (1 - txt . t_txt)) / 2 (the cosine
 *       distance of each embedding to the teacher's; it needs Pt == P).
 * *loss gets the sum; gradients (+=) into dimg, dtxt (may be NULL) and *dscale (may be NULL).
 * The arena is only borrowed for scratch (rewound before returning). */
mmt_status nn_distill_loss(const float *img, const float *txt, const float *t_img, const float *t_txt, int64_t B,
                           int64_t P, int64_t Pt, float scale, float t_scale, float temperature, float kl_weight, float cos_weight,
                           mmt_arena *arena, double *loss, float *dimg, float *dtxt, double *dscale);

/* logits_per_text (B, B) = scale * txt @ img^T, as CLIPModel computes it. */
void nn_clip_logits(float *lt, const float *img, const float *txt, int64_t B, int64_t P,
                    float scale);

/* Cross-entropy of logits (B, K) against labels (B) in 0..K-1; dlogits (B, K) += gradient
 * when not NULL. */
double nn_cross_entropy(const float *logits, const int32_t *labels, int64_t B, int64_t K,
                        float *dlogits);

/* The language-model loss: mean cross-entropy of logits (R, V) over the rows whose target
 * (R) is >= 0 (others ignored, transformers' -100), with label smoothing eps as torch's
 * cross_entropy (label_smoothing): per row (1 - eps) * (-log p[target]) + eps * mean over
 * classes of -log p. dlogits (R, V), when not NULL, is overwritten with the gradient (0 on
 * ignored rows). *counted: the rows that count. A batch where none counts is an error. */
mmt_status nn_lm_loss(const float *logits, const int32_t *targets, int64_t R, int64_t V, float eps, double *loss,
                      float *dlogits, int64_t *counted);

#endif
