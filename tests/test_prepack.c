/*
 * test_prepack.c — prepacked weights (ops.h matmul_pack / matmul_fwd_packed; mmt_clip_prepack,
 * mmt_git_prepack) give bitwise the results of packing on every call.
 *
 * Kernel level, on every fast table this CPU has and on the reference:
 *   - matmul_fwd_packed on the table's panels equals matmul_fwd bit for bit, with and without
 *     bias, at few rows (the rows path, which streams w) and many (the packed path, which
 *     reads the panels), over K and N off the block and panel sizes and K across kc blocks;
 *   - above the rows path the product follows the panels, not w: given the panels of another
 *     matrix it gives that matrix's product (so the panels are really what is read);
 *   - the reference packs nothing (size 0) and its packed entry is its matmul_fwd.
 * Model level, on the repository's tiny CLIP and GIT: image and text embeddings, and GIT's
 * logits over image + text positions, are the same bits after prepacking; overwriting the
 * panels afterwards changes them (the forward reads the panels).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/log.h"
#include "models/clip.h"
#include "models/clip_internal.h"
#include "models/git.h"
#include "models/git_internal.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"
#include "ops_fixture.h"

#define CLIP_TINY MMT_SOURCE_DIR "/models/mmtune-clip-tiny"
#define GIT_TINY MMT_SOURCE_DIR "/models/mmtune-git-tiny"

static float *packed_for(const mmt_ops *ops, const float *w, int64_t K, int64_t N) {
    int64_t n = ops->matmul_pack(NULL, w, K, N);
    CHECK(n > 0);
    float *p = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64));
    ops->matmul_pack(p, w, K, N);
    return p;
}

static void test_packed_same_bits(void) {
    static const int64_t ms[] = {1, 3, 8, 9, 50, 200};
    static const int64_t kn[][2] = {{1, 1}, {5, 7}, {17, 33}, {257, 100}, {300, 129}, {768, 50}, {512, 513}};
    const mmt_ops *ops = fast_ops();
    for (size_t s = 0; s < sizeof kn / sizeof kn[0]; s++) {
        const int64_t K = kn[s][0], N = kn[s][1];
        float *w = random_floats(N * K, 0.5f), *w2 = random_floats(N * K, 0.5f), *b = random_floats(N, 1.0f);
        float *panels = packed_for(ops, w, K, N), *panels2 = packed_for(ops, w2, K, N);
        for (size_t m = 0; m < sizeof ms / sizeof ms[0]; m++) {
            const int64_t M = ms[m];
            float *x = random_floats(M * K, 1.0f), *y = guarded_alloc(M * N), *yp = guarded_alloc(M * N);
            for (int with_bias = 0; with_bias <= 1; with_bias++) {
                const float *bias = with_bias ? b : NULL;
                ops->matmul_fwd(y, x, w, bias, M, K, N);
                ops->matmul_fwd_packed(yp, x, w, panels, bias, M, K, N);
                CHECK_MSG(!memcmp(y, yp, (size_t)(M * N) * sizeof(float)), "%s M=%lld K=%lld N=%lld bias=%d: packed differs",
                          ops->name, (long long)M, (long long)K, (long long)N, with_bias);
                ops->matmul_fwd_packed(yp, x, w, NULL, bias, M, K, N); /* no panels: matmul_fwd */
                CHECK(!memcmp(y, yp, (size_t)(M * N) * sizeof(float)));
            }
            if (M > SGEMM_ROWS_MAX_M) { /* the packed path reads the panels it is given */
                ops->matmul_fwd(y, x, w2, NULL, M, K, N);
                ops->matmul_fwd_packed(yp, x, w, panels2, NULL, M, K, N);
                CHECK_MSG(!memcmp(y, yp, (size_t)(M * N) * sizeof(float)), "%s M=%lld: the panels were not read",
                          ops->name, (long long)M);
            }
            CHECK(guarded_ok(y, M * N) && guarded_ok(yp, M * N));
            free(x), guarded_free(y), guarded_free(yp);
        }
        free(w), free(w2), free(b), free(panels), free(panels2);
    }
}

static void test_reference_packs_nothing(void) {
    const mmt_ops *ref = mmt_ops_ref();
    float *w = random_floats(6 * 5, 0.5f), *x = random_floats(2 * 5, 1.0f), y[12], yp[12];
    CHECK(ref->matmul_pack(NULL, w, 5, 6) == 0);
    ref->matmul_fwd(y, x, w, NULL, 2, 5, 6);
    ref->matmul_fwd_packed(yp, x, w, NULL, NULL, 2, 5, 6);
    CHECK(!memcmp(y, yp, sizeof y));
    free(w), free(x);
}

/* Image and text embeddings of the tiny CLIP into img (B, P) and txt (B, P). */
static void clip_embed(mmt_clip *m, const float *pixels, const int32_t *ids, int64_t B, int64_t L, float *img, float *txt) {
    CHECK_OK(mmt_clip_encode_pixels(m, pixels, B, img));
    CHECK_OK(mmt_clip_encode_ids(m, ids, B, L, txt));
}

static void test_clip_prepack(void) {
    mmt_clip *m = NULL;
    CHECK_OK(mmt_clip_load(CLIP_TINY, &m));
    const mmt_clip_config *c = mmt_clip_config_of(m);
    const int64_t B = 3, L = 12, S = c->vision.image_size, P = mmt_clip_embed_dim(m);
    float *pixels = random_floats(B * 3 * S * S, 1.0f);
    int32_t ids[3 * 12];
    for (int64_t b = 0; b < B; b++) /* BOS, words, EOS, then EOS padding */
        for (int64_t j = 0; j < L; j++)
            ids[b * L + j] = j == 0 ? (int32_t)c->text.bos_token_id
                             : j < 4 + 3 * b ? (int32_t)(300 + 17 * j + b)
                                             : (int32_t)c->text.eos_token_id;
    /* 1 row (its 4-token text takes the rows path) and B rows, before and after prepacking */
    float *img[2][2], *txt[2][2];
    for (int k = 0; k < 2; k++)
        for (int p = 0; p < 2; p++)
            img[k][p] = malloc((size_t)(B * P) * sizeof(float)), txt[k][p] = malloc((size_t)(B * P) * sizeof(float));
    for (int p = 0; p < 2; p++) {
        if (p == 1) {
            CHECK_OK(mmt_clip_prepack(m));
            CHECK_OK(mmt_clip_prepack(m)); /* twice is once */
            if (strcmp(mmt_ops_cpu()->name, "ref") != 0) CHECK(m->packs.items != NULL);
        }
        for (int k = 0; k < 2; k++) clip_embed(m, pixels, ids, k ? B : 1, L, img[k][p], txt[k][p]);
    }
    for (int k = 0; k < 2; k++) {
        int64_t rows = k ? B : 1;
        CHECK_MSG(!memcmp(img[k][0], img[k][1], (size_t)(rows * P) * sizeof(float)), "%lld images: embeddings differ after prepack", (long long)rows);
        CHECK_MSG(!memcmp(txt[k][0], txt[k][1], (size_t)(rows * P) * sizeof(float)), "%lld texts: embeddings differ after prepack", (long long)rows);
    }
    float *img0 = img[1][0], *txt0 = txt[1][0], *img1 = img[1][1], *txt1 = txt[1][1];
    if (m->packs.items) { /* the forward reads the panels */
        const clip_layer *l = &m->vision.layers[0];
        int64_t C = c->vision.hidden_size;
        memset((float *)l->packed[4]->panels, 0, (size_t)mmt_ops_cpu()->matmul_pack(NULL, l->fc1_w, C, c->vision.intermediate_size) * sizeof(float));
        clip_embed(m, pixels, ids, B, L, img1, txt1);
        CHECK(memcmp(img0, img1, (size_t)(B * P) * sizeof(float)) != 0);
        CHECK(!memcmp(txt0, txt1, (size_t)(B * P) * sizeof(float))); /* the text tower's are intact */
    }
    mmt_clip_free(m);
    free(pixels);
    for (int k = 0; k < 2; k++)
        for (int p = 0; p < 2; p++) free(img[k][p]), free(txt[k][p]);
}

static void test_git_prepack(void) {
    mmt_git *m = NULL;
    CHECK_OK(mmt_git_load(GIT_TINY, &m));
    const mmt_git_config *c = mmt_git_config_of(m);
    const int64_t B = 2, L = 5, S = c->vision.image_size, V = c->vocab_size, T = mmt_git_image_tokens(m) + L;
    float *pixels = random_floats(B * 3 * S * S, 1.0f);
    int32_t ids[2 * 5];
    for (int64_t i = 0; i < B * L; i++) ids[i] = (int32_t)(100 + 37 * i % (V - 100));
    float *before = malloc((size_t)(B * T * V) * sizeof(float)), *after = malloc((size_t)(B * T * V) * sizeof(float));
    mmt_git_run *r = NULL;
    CHECK_OK(mmt_git_run_create(m, &r));
    CHECK_OK(mmt_git_run_logits(r, pixels, ids, B, L, before));
    mmt_git_run_free(r);
    CHECK_OK(mmt_git_prepack(m));
    CHECK_OK(mmt_git_run_create(m, &r));
    CHECK_OK(mmt_git_run_logits(r, pixels, ids, B, L, after));
    CHECK_MSG(!memcmp(before, after, (size_t)(B * T * V) * sizeof(float)), "GIT logits differ after prepack");
    if (m->packs.items) { /* the decoder reads its panels */
        memset(m->packs.panels, 0, (size_t)mmt_ops_cpu()->matmul_pack(NULL, m->layers[0].q_w, c->hidden_size, c->hidden_size) * sizeof(float));
        CHECK_OK(mmt_git_run_logits(r, pixels, ids, B, L, after));
        CHECK(memcmp(before, after, (size_t)(B * T * V) * sizeof(float)) != 0);
    }
    mmt_git_run_free(r);
    mmt_git_free(m);
    free(pixels), free(before), free(after);
}

int main(void) {
    mmt_log_set_level(MMT_LOG_SILENT);
    for (int t = 0; t < FAST_TABLES; t++)
        if (fast_table_use(t)) RUN(test_packed_same_bits);
    RUN(test_reference_packs_nothing);
    RUN(test_clip_prepack);
    RUN(test_git_prepack);
    return check_summary();
}
