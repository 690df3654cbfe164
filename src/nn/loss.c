/* loss.c — contrastive / distillation / cross-entropy losses with gradients (see loss.h). */
#include "nn/loss.h"

#include <math.h>
#include <string.h>

void nn_clip_logits(float *lt, const float *img, const float *txt, int64_t B, int64_t P,
                    float scale) {
    for (int64_t i = 0; i < B; i++)
        for (int64_t j = 0; j < B; j++) {
            float dot = 0; /* float, as torch's matmul; P is small */
            for (int64_t k = 0; k < P; k++) dot += txt[i * P + k] * img[j * P + k];
            lt[i * B + j] = dot * scale;
        }
}

/* Row-wise log-softmax of a (B, B) matrix read with strides (rs, cs): the same code serves
 * the rows of LT and of LT^T. */
static void log_softmax_rows(double *out, const float *m, int64_t B, int64_t rs, int64_t cs) {
    for (int64_t i = 0; i < B; i++) {
        double mx = -INFINITY;
        for (int64_t j = 0; j < B; j++) mx = fmax(mx, m[i * rs + j * cs]);
        double sum = 0;
        for (int64_t j = 0; j < B; j++) sum += exp(m[i * rs + j * cs] - mx);
        double lse = mx + log(sum);
        for (int64_t j = 0; j < B; j++) out[i * B + j] = m[i * rs + j * cs] - lse;
    }
}

/* d loss / d LT (N, N) and the loss, from the logits lt (N, N) (and the teacher's, when
 * distilling): the part of clip_loss that does not depend on which rows a caller wants the
 * gradient of. dlt and the work rows come from the arena, which the caller rewinds. */
static mmt_status contrastive_dlogits(const float *lt, int64_t B, const float *teacher_lt,
                                      float distill_weight, mmt_arena *arena, double *loss,
                                      double **dlt_out) {
    double *lr = mmt_arena_alloc(arena, (size_t)(B * B) * sizeof(double), 64); // rows of LT
    double *lc = mmt_arena_alloc(arena, (size_t)(B * B) * sizeof(double), 64); // rows of LT^T
    double *dlt = mmt_arena_alloc(arena, (size_t)(B * B) * sizeof(double), 64);
    double *tr = NULL, *tc = NULL;
    int distill = teacher_lt && distill_weight != 0;
    if (distill) {
        tr = mmt_arena_alloc(arena, (size_t)(B * B) * sizeof(double), 64);
        tc = mmt_arena_alloc(arena, (size_t)(B * B) * sizeof(double), 64);
    }
    if (!lr || !lc || !dlt || (distill && (!tr || !tc))) return MMT_STATUS_OUT_OF_MEMORY;
    log_softmax_rows(lr, lt, B, B, 1);
    log_softmax_rows(lc, lt, B, 1, B);
    double total = 0;
    /* d loss / d LT[i][j]: 0.5/B (softmax_row - I) + 0.5/B (softmax_col - I)^T. */
    for (int64_t i = 0; i < B; i++) {
        total += -0.5 / (double)B * (lr[i * B + i] + lc[i * B + i]);
        for (int64_t j = 0; j < B; j++)
            dlt[i * B + j] = 0.5 / (double)B * (exp(lr[i * B + j]) + exp(lc[j * B + i]) - 2.0 * (i == j));
    }
    if (distill) {
        /* KL(t || s) = sum t (log t - log s); d/ds_logits = (softmax(s) - t) per row. */
        log_softmax_rows(tr, teacher_lt, B, B, 1);
        log_softmax_rows(tc, teacher_lt, B, 1, B);
        double w = 0.5 * distill_weight / (double)B;
        for (int64_t i = 0; i < B; i++)
            for (int64_t j = 0; j < B; j++) {
                double pr = exp(tr[i * B + j]), pc = exp(tc[j * B + i]);
                total += w * (pr * (tr[i * B + j] - lr[i * B + j]) + pc * (tc[j * B + i] - lc[j * B + i]));
                dlt[i * B + j] += w * (exp(lr[i * B + j]) - pr + exp(lc[j * B + i]) - pc);
            }
    }
    *loss = total;
    *dlt_out = dlt;
    return MMT_OK;
}

/* LT = scale * txt img^T: dtxt = scale dLT img, dimg = scale dLT^T txt, added to the rows
 * [row0, row0 + rows) of the B-row batch only (dimg, dtxt hold those rows; may be NULL);
 * *ds gets d loss / d scale over the whole batch. Each row's sum runs in the same order
 * whichever rows are asked for, so a row's gradient does not depend on row0 and rows. */
static void contrastive_project(const double *dlt, const float *lt, const float *img,
                                const float *txt, int64_t B, int64_t P, float scale,
                                int64_t row0, int64_t rows, float *dimg, float *dtxt,
                                double *ds) {
    double sum = 0;
    for (int64_t i = 0; i < B; i++) {
        int txt_mine = dtxt && i >= row0 && i < row0 + rows;
        for (int64_t j = 0; j < B; j++) {
            double d = dlt[i * B + j];
            if (scale != 0) sum += d * lt[i * B + j] / scale;
            float fd = (float)(d * scale);
            if (txt_mine)
                for (int64_t k = 0; k < P; k++) dtxt[(i - row0) * P + k] += fd * img[j * P + k];
            if (dimg && j >= row0 && j < row0 + rows)
                for (int64_t k = 0; k < P; k++) dimg[(j - row0) * P + k] += fd * txt[i * P + k];
        }
    }
    *ds = sum;
}

mmt_status nn_contrastive_loss(const float *img, const float *txt, int64_t B, int64_t P,
                               float scale, const float *teacher_lt, float distill_weight,
                               mmt_arena *arena, double *loss, float *dimg, float *dtxt,
                               double *dscale) {
    mmt_arena_mark mark = mmt_arena_get_mark(arena);
    float *lt = mmt_arena_alloc(arena, (size_t)(B * B) * sizeof(float), 64); // (B, B)
    double *dlt = NULL;
    mmt_status st = lt ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (st == MMT_OK) {
        nn_clip_logits(lt, img, txt, B, P, scale);
        st = contrastive_dlogits(lt, B, teacher_lt, distill_weight, arena, loss, &dlt);
    }
    if (st == MMT_OK) {
        double ds;
        contrastive_project(dlt, lt, img, txt, B, P, scale, 0, B, dimg, dtxt, &ds);
        if (dscale) *dscale += ds;
    }
    mmt_arena_rewind(arena, mark);
    return st;
}

mmt_status nn_contrastive_loss_gathered(const float *img_all, const float *txt_all, int64_t R,
                                        int64_t r, int64_t B, int64_t P, float scale,
                                        const float *teacher_lt, float distill_weight,
                                        mmt_arena *arena, double *loss, float *dimg,
                                        float *dtxt, double *dscale) {
    if (R < 1 || r < 0 || r >= R || B < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "gathered contrastive loss: rank %lld of %lld ranks, %lld rows each",
                        (long long)r, (long long)R, (long long)B);
    int64_t N = R * B, row0 = r * B;
    mmt_arena_mark mark = mmt_arena_get_mark(arena);
    float *lt = mmt_arena_alloc(arena, (size_t)(N * N) * sizeof(float), 64);      // (N, N)
    float *gimg = dimg ? mmt_arena_alloc(arena, (size_t)(B * P) * sizeof(float), 64) : NULL; // (B, P)
    float *gtxt = dtxt ? mmt_arena_alloc(arena, (size_t)(B * P) * sizeof(float), 64) : NULL; // (B, P)
    double *dlt = NULL;
    mmt_status st = lt && (!dimg || gimg) && (!dtxt || gtxt) ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (st == MMT_OK) {
        nn_clip_logits(lt, img_all, txt_all, N, P, scale);
        st = contrastive_dlogits(lt, N, teacher_lt, distill_weight, arena, loss, &dlt);
    }
    if (st == MMT_OK) {
        /* The local rows' gradient of the global loss, summed from zero exactly as the
         * whole-batch loss sums those rows, then scaled by R: what autograd through an
         * all-gather gives each rank (every rank's loss reaches these rows), so that the
         * trainer's sum over ranks / R is the global-batch gradient. */
        if (gimg) memset(gimg, 0, (size_t)(B * P) * sizeof(float));
        if (gtxt) memset(gtxt, 0, (size_t)(B * P) * sizeof(float));
        double ds;
        contrastive_project(dlt, lt, img_all, txt_all, N, P, scale, row0, B, gimg, gtxt, &ds);
        float f = (float)R;
        for (int64_t k = 0; gimg && k < B * P; k++) dimg[k] += f * gimg[k];
        for (int64_t k = 0; gtxt && k < B * P; k++) dtxt[k] += f * gtxt[k];
        if (dscale) *dscale += ds;
    }
    mmt_arena_rewind(arena, mark);
    return st;
}

mmt_status nn_distill_loss(const float *img, const float *txt, const float *t_img, const float *t_txt, int64_t B,
                           int64_t P, int64_t Pt, float scale, float t_scale, float temperature, float kl_weight, float cos_weight,
                           mmt_arena *arena, double *loss, float *dimg, float *dtxt, double *dscale) {
    if (!(temperature > 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "distillation temperature must be positive, got %g", (double)temperature);
    if (cos_weight != 0 && Pt != P)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the cosine distillation term compares embeddings: the teacher's have "
                        "%lld dimensions, the student's %lld", (long long)Pt, (long long)P);
    double total = 0;
    mmt_arena_mark mark = mmt_arena_get_mark(arena);
    mmt_status st = MMT_OK;
    if (kl_weight != 0) {
        float *lt = mmt_arena_alloc(arena, (size_t)(B * B) * sizeof(float), 64);   // student LT (B, B)
        float *tz = mmt_arena_alloc(arena, (size_t)(B * B) * sizeof(float), 64);   // teacher LT / T
        float *sz = mmt_arena_alloc(arena, (size_t)(B * B) * sizeof(float), 64);   // student LT / T
        double *lr = mmt_arena_alloc(arena, (size_t)(B * B) * sizeof(double), 64); // log softmax, rows
        double *lc = mmt_arena_alloc(arena, (size_t)(B * B) * sizeof(double), 64); // log softmax, columns
        double *tr = mmt_arena_alloc(arena, (size_t)(B * B) * sizeof(double), 64);
        double *tc = mmt_arena_alloc(arena, (size_t)(B * B) * sizeof(double), 64);
        double *dlt = mmt_arena_alloc(arena, (size_t)(B * B) * sizeof(double), 64);
        if (!lt || !tz || !sz || !lr || !lc || !tr || !tc || !dlt) {
            st = MMT_STATUS_OUT_OF_MEMORY;
        } else {
            nn_clip_logits(lt, img, txt, B, P, scale);
            nn_clip_logits(tz, t_img, t_txt, B, Pt, t_scale / temperature);
            for (int64_t k = 0; k < B * B; k++) sz[k] = lt[k] / temperature;
            log_softmax_rows(lr, sz, B, B, 1);
            log_softmax_rows(lc, sz, B, 1, B);
            log_softmax_rows(tr, tz, B, B, 1);
            log_softmax_rows(tc, tz, B, 1, B);
            /* d/d(LT / T) of T^2 KL is T^2 (softmax - teacher); d/d LT is T (softmax - teacher) */
            double T = (double)temperature, w = 0.5 * (double)kl_weight / (double)B;
            for (int64_t i = 0; i < B; i++)
                for (int64_t j = 0; j < B; j++) {
                    double pr = exp(tr[i * B + j]), pc = exp(tc[j * B + i]);
                    total += w * T * T * (pr * (tr[i * B + j] - lr[i * B + j]) + pc * (tc[j * B + i] - lc[j * B + i]));
                    dlt[i * B + j] = w * T * (exp(lr[i * B + j]) - pr + exp(lc[j * B + i]) - pc);
                }
            double ds;
            contrastive_project(dlt, lt, img, txt, B, P, scale, 0, B, dimg, dtxt, &ds);
            if (dscale) *dscale += ds;
        }
    }
    mmt_arena_rewind(arena, mark);
    if (st != MMT_OK) return st;
    if (cos_weight != 0) {
        double w = 0.5 * (double)cos_weight / (double)B;
        for (int64_t b = 0; b < B; b++) {
            double ci = 0, ct = 0;
            for (int64_t k = 0; k < P; k++) {
                ci += (double)img[b * P + k] * (double)t_img[b * P + k];
                ct += (double)txt[b * P + k] * (double)t_txt[b * P + k];
            }
            total += w * ((1 - ci) + (1 - ct));
            for (int64_t k = 0; dimg && k < P; k++) dimg[b * P + k] -= (float)(w * t_img[b * P + k]);
            for (int64_t k = 0; dtxt && k < P; k++) dtxt[b * P + k] -= (float)(w * t_txt[b * P + k]);
        }
    }
    *loss = total;
    return MMT_OK;
}

double nn_cross_entropy(const float *logits, const int32_t *labels, int64_t B, int64_t K,
                        float *dlogits) {
    double total = 0;
    for (int64_t i = 0; i < B; i++) {
        const float *row = logits + i * K;
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < K; j++) mx = fmax(mx, row[j]);
        for (int64_t j = 0; j < K; j++) sum += exp(row[j] - mx);
        double lse = mx + log(sum);
        total += lse - row[labels[i]];
        if (dlogits)
            for (int64_t j = 0; j < K; j++)
                dlogits[i * K + j] += (float)((exp(row[j] - lse) - (j == labels[i])) / (double)B);
    }
    return total / (double)B;
}

mmt_status nn_lm_loss(const float *logits, const int32_t *targets, int64_t R, int64_t V, float eps, double *loss,
                      float *dlogits, int64_t *counted) {
    int64_t n = 0;
    for (int64_t i = 0; i < R; i++) n += targets[i] >= 0;
    if (counted) *counted = n;
    if (n == 0) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "no token of the batch is a caption token to predict "
                                                            "(every caption empty?)");
    double total = 0, e = eps;
    for (int64_t i = 0; i < R; i++) {
        const float *row = logits + i * V;
        float *g = dlogits ? dlogits + i * V : NULL;
        int32_t t = targets[i];
        if (t < 0 || t >= V) {
            if (g) memset(g, 0, (size_t)V * sizeof(float));
            continue;
        }
        double mx = -INFINITY, sum = 0, mean_logit = 0;
        for (int64_t j = 0; j < V; j++) mx = fmax(mx, row[j]);
        for (int64_t j = 0; j < V; j++) sum += exp(row[j] - mx), mean_logit += row[j];
        double lse = mx + log(sum);
        mean_logit /= (double)V;
        total += (1 - e) * (lse - row[t]) + e * (lse - mean_logit);
        if (g)
            for (int64_t j = 0; j < V; j++)
                g[j] = (float)((exp(row[j] - lse) - (1 - e) * (j == t) - e / (double)V) / (double)n);
    }
    *loss = total / (double)n;
    return MMT_OK;
}
