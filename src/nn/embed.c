/* embed.c — the input sequences of transformer towers (see embed.h). */
#include "nn/embed.h"

#include <string.h>

void nn_vit_embed_fwd(const mmt_ops *ops, float *x0, const float *patch_emb, const float *cls, const float *pos,
                      const int64_t *n, const float *const *prompt, int64_t B, int64_t Np, int64_t T, int64_t C) {
    for (int64_t b = 0; b < B; b++) {
        float *row = x0 + b * T * C;
        int64_t P = n && prompt && prompt[b] ? n[b] : 0;
        ops->add_fwd(row, cls, pos, C);
        if (P > 0) ops->buffer_copy(row + C, prompt[b], (size_t)(P * C) * sizeof(float));
        ops->add_fwd(row + (1 + P) * C, patch_emb + b * Np * C, pos + C, Np * C);
        if (1 + P + Np < T) ops->buffer_fill(row + (1 + P + Np) * C, 0.0f, (T - 1 - P - Np) * C); /* padding */
    }
}

void nn_vit_embed_bwd(float *dcls, float *dpos, float *dprompt, float *dpatch, const float *dx0, int64_t P,
                      int64_t B, int64_t Np, int64_t T, int64_t C) {
    for (int64_t b = 0; b < B; b++) {
        const float *row = dx0 + b * T * C;
        for (int64_t j = 0; dcls && j < C; j++) dcls[j] += row[j];
        for (int64_t j = 0; dpos && j < C; j++) dpos[j] += row[j];
        for (int64_t j = 0; dprompt && j < P * C; j++) dprompt[j] += row[C + j];
        const float *patches = row + (1 + P) * C;
        for (int64_t j = 0; dpos && j < Np * C; j++) dpos[C + j] += patches[j];
        if (dpatch) memcpy(dpatch + b * Np * C, patches, (size_t)(Np * C) * sizeof(float));
    }
}

void nn_token_embed_fwd(const mmt_ops *ops, float *x, const int32_t *ids, const float *tok, const float *pos,
                        const float *const *prompt, int64_t B, int64_t T, int64_t C) {
    for (int64_t b = 0; b < B; b++) {
        float *xb = x + b * T * C;
        const int32_t *row = ids + b * T;
        int has_slots = 0;
        for (int64_t j = 0; j < T && !has_slots; j++) has_slots = row[j] < 0;
        if (!has_slots) {
            ops->embedding_fwd(xb, row, tok, T, C);
        } else {
            for (int64_t j = 0; j < T; j++) {
                const float *e = row[j] < 0 ? prompt[b] + (j - 1) * C : tok + (int64_t)row[j] * C;
                memcpy(xb + j * C, e, (size_t)C * sizeof(float));
            }
        }
        ops->add_fwd(xb, xb, pos, T * C);
    }
}

void nn_token_embed_bwd(const mmt_ops *ops, float *dtok, float *dprompt, float *dpos, const float *dx,
                        const int32_t *ids, int64_t B, int64_t T, int64_t C) {
    int any_slot = 0;
    for (int64_t i = 0; i < B * T && !any_slot; i++) any_slot = ids[i] < 0;
    if (!any_slot) {
        if (dtok) ops->embedding_bwd(dtok, dx, ids, B * T, C);
    } else {
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < T; j++) {
                int32_t id = ids[b * T + j];
                float *g = id < 0 ? (dprompt ? dprompt + (j - 1) * C : NULL) : (dtok ? dtok + (int64_t)id * C : NULL);
                if (!g) continue;
                const float *d = dx + (b * T + j) * C;
                for (int64_t k = 0; k < C; k++) g[k] += d[k];
            }
    }
    for (int64_t b = 0; dpos && b < B; b++) ops->add_fwd(dpos, dpos, dx + b * T * C, T * C);
}

void nn_rows_replace(const mmt_ops *ops, float *x, const int64_t *n, const float *const *src, int64_t first,
                     int64_t B, int64_t T, int64_t C) {
    for (int64_t b = 0; b < B; b++)
        if (src[b] && n[b] > 0) ops->buffer_copy(x + (b * T + first) * C, src[b], (size_t)(n[b] * C) * sizeof(float));
}

void nn_rows_replace_bwd(const mmt_ops *ops, float *dx, float *dsrc, int64_t n, int64_t first, int64_t B, int64_t T,
                         int64_t C) {
    for (int64_t b = 0; b < B; b++) {
        float *rows = dx + (b * T + first) * C;
        if (dsrc) ops->add_fwd(dsrc, dsrc, rows, n * C);
        ops->buffer_fill(rows, 0.0f, n * C);
    }
}
