/*
 * embed.h — the input sequences of transformer towers, forward and backward: a ViT's
 * [CLS][prompt tokens][patches] with position embeddings, token embeddings with prompt
 * slots, and prompt rows replaced inside a sequence (VPT-deep). Each row b of a batch may
 * bring its own prompt tokens (mixed batches); backward takes one prompt for every row.
 *
 * Shapes: B rows of T positions of C channels; prompts (n, C) row-major.
 */
#ifndef MMT_NN_EMBED_H
#define MMT_NN_EMBED_H

#include <stdint.h>

#include "ops/ops.h"

/* x0 (B, T, C), row b = [cls + pos[0]][n[b] rows of prompt[b]][patch_emb row n + pos[n + 1]
 * for the Np patches][zeros up to T] (no position embedding on prompts, as VPT's CLIP ports).
 * patch_emb (B * Np, C); n and prompt may be NULL (no prompts); T >= 1 + Np + n[b]. */
void nn_vit_embed_fwd(const mmt_ops *ops, float *x0, const float *patch_emb, const float *cls, const float *pos,
                      const int64_t *n, const float *const *prompt, int64_t B, int64_t Np, int64_t T, int64_t C);

/* Backward of nn_vit_embed_fwd with P prompt tokens in every row, given dx0 (B, T, C): each
 * non-NULL gradient +=: dcls (C), dpos (1 + Np, C), dprompt (P, C); dpatch (B * Np, C) is
 * overwritten with the patch rows of dx0. */
void nn_vit_embed_bwd(float *dcls, float *dpos, float *dprompt, float *dpatch, const float *dx0, int64_t P,
                      int64_t B, int64_t Np, int64_t T, int64_t C);

/* x (B, T, C) = e + pos[j] at position j, where e is row ids[b, j] of tok, or, for an id < 0
 * (a prompt slot), row j - 1 of prompt[b] (slots follow position 0). ids are valid. */
void nn_token_embed_fwd(const mmt_ops *ops, float *x, const int32_t *ids, const float *tok, const float *pos,
                        const float *const *prompt, int64_t B, int64_t T, int64_t C);

/* Backward of nn_token_embed_fwd with one prompt for every row, given dx (B, T, C): each
 * non-NULL gradient +=: dtok (vocab, C) at the ids, dprompt at the slots, dpos (T, C). */
void nn_token_embed_bwd(const mmt_ops *ops, float *dtok, float *dprompt, float *dpos, const float *dx,
                        const int32_t *ids, int64_t B, int64_t T, int64_t C);

/* Rows first .. first + n[b] - 1 of each sequence of x (B, T, C) become src[b] (n[b], C)
 * (src[b] NULL or n[b] 0: the row is left alone). */
void nn_rows_replace(const mmt_ops *ops, float *x, const int64_t *n, const float *const *src, int64_t first,
                     int64_t B, int64_t T, int64_t C);

/* Backward of nn_rows_replace with n rows in every sequence: dsrc (n, C) += those rows of dx
 * summed over the batch (dsrc NULL: frozen), and the rows of dx become 0 (what was replaced
 * does not reach the layer below). */
void nn_rows_replace_bwd(const mmt_ops *ops, float *dx, float *dsrc, int64_t n, int64_t first, int64_t B, int64_t T,
                         int64_t C);

#endif
