/*
 * test_mixed_batch.c — one call whose rows use many adapters gives each row what a batch of
 * that adapter alone gives, to 1e-6 (issue 10).
 *
 * Adapters on tests/fixtures/clip/tiny-a, made through the library (adapter_fixture.h): eight
 * LoRA adapters of ranks 1 to 8 on different targets in both towers (q/v, k/fc1, out_proj,
 * fc2, the patch embedding, the projections, rsLoRA on everything linear, one vision-only),
 * IA3 (keys, values and fc1 as feed-forward), DoRA, a text prompt (CoOp), visual prompts (VPT
 * shallow and deep) and prefix tuning of both towers; 36 texts and 36 images spread over them
 * and the base in a fixed shuffled order. The reference for a row is an independent
 * computation: a fresh view of the base with only that adapter loaded from its folder
 * (mmt_adapter_folders_load), embedding only the rows of that adapter. The mixed call
 * (mmtune.h's run context) runs every row but DoRA's in mixed batches (nn/linear.h row groups,
 * per-row prompts and prefixes with padded rows masked); the test checks that DoRA's is the
 * only view of its own the run made.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adapter_fixture.h"
#include "check.h"
#include "clip_fixture.h"
#include "api/clip_run_internal.h"
#include "mmtune.h"

#define N_ADAPTERS 14 /* 8 LoRA, IA3, DoRA, prompt, VPT, prefix, VPT-deep */
#define N_ROWS 36
#define IMAGES MMT_FIXTURE_DIR "/clip/images"

static clip_batch fx;
static char root[] = "/tmp/mmt_mixed_XXXXXX";
static char dirs[N_ADAPTERS][300];

static void make_adapters(void) {
    static const char *targets[8][4] = {
        {"q_proj", "v_proj"}, {"k_proj", "fc1"}, {"out_proj"}, {"fc2"}, {"patch_embedding", "q_proj"},
        {"visual_projection", "text_projection", "v_proj"}, {"all-linear"}, {"q_proj", "fc2"}};
    static const int n_targets[8] = {2, 2, 1, 1, 2, 3, 0, 2};
    for (int a = 0; a < 8; a++) {
        mmt_peft_config cfg;
        snprintf(dirs[a], sizeof dirs[a], "%s/lora%d", root, a);
        CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_LORA));
        cfg.r = a + 1;
        cfg.lora_alpha = 2.0 * (a + 1) + 1;
        if (a == 6) {
            CHECK_OK(mmt_peft_names_set_regex(&cfg.target_modules, "all-linear"));
            cfg.use_rslora = 1;
        } else {
            CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, targets[a], n_targets[a]));
        }
        if (a == 7) cfg.scope = MMT_SCOPE_VISION;
        adapter_fixture_save(fx.model, &cfg, dirs[a], 0.01f * (float)(a + 1));
        mmt_peft_config_free(&cfg);
    }
    mmt_peft_config cfg;
    const char *kvf[] = {"k_proj", "v_proj", "fc1"}, *ff[] = {"fc1"}, *qv[] = {"q_proj", "v_proj"};
    snprintf(dirs[8], sizeof dirs[8], "%s/ia3", root);
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_IA3));
    CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, kvf, 3));
    CHECK_OK(mmt_peft_names_set_list(&cfg.feedforward_modules, ff, 1));
    adapter_fixture_save(fx.model, &cfg, dirs[8], 0.1f);
    mmt_peft_config_free(&cfg);
    snprintf(dirs[9], sizeof dirs[9], "%s/dora", root);
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_LORA));
    cfg.r = 4;
    cfg.use_dora = 1;
    CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, qv, 2));
    adapter_fixture_save(fx.model, &cfg, dirs[9], 0.02f);
    mmt_peft_config_free(&cfg);
    mmt_prompt_settings ps;
    memset(&ps, 0, sizeof ps);
    ps.text_tokens = 4;
    ps.seed = 3;
    snprintf(dirs[10], sizeof dirs[10], "%s/prompt", root);
    adapter_fixture_save_prompt(fx.model, &ps, dirs[10]);
    memset(&ps, 0, sizeof ps);
    ps.visual_tokens = 3;
    ps.seed = 4;
    snprintf(dirs[11], sizeof dirs[11], "%s/vpt", root);
    adapter_fixture_save_prompt(fx.model, &ps, dirs[11]);
    memset(&ps, 0, sizeof ps);
    ps.prefix_tokens = 2;
    ps.prefix_vision = 1;
    ps.seed = 5;
    snprintf(dirs[12], sizeof dirs[12], "%s/prefix", root);
    adapter_fixture_save_prompt(fx.model, &ps, dirs[12]);
    memset(&ps, 0, sizeof ps);
    ps.visual_tokens = 2;
    ps.visual_deep = 1;
    ps.seed = 6;
    snprintf(dirs[13], sizeof dirs[13], "%s/vpt_deep", root);
    adapter_fixture_save_prompt(fx.model, &ps, dirs[13]);
}

/* The reference: rows rows[0..m) of inputs through a fresh view with only dir loaded. */
static void embed_alone(const char *dir, int images, const char *const *inputs, const int *rows, int m, float *out) {
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    mmt_adapter *ad = NULL;
    mmt_prompt *pr = NULL;
    const mmt_clip_config *c = mmt_clip_config_of(fx.model);
    int64_t S = c->vision.image_size, L = c->text.max_positions;
    CHECK_OK(mmt_clip_train_create(fx.model, &o, &ct));
    if (dir) CHECK_OK(mmt_adapter_folders_load(mmt_clip_train_iface(ct), dir, 0, &ad, &pr));
    mmt_clip_train_set_eval(ct, 1);
    if (images) {
        float *px = malloc((size_t)(m * 3 * S * S) * sizeof(float));
        for (int i = 0; i < m; i++) CHECK_OK(mmt_clip_image_file_pixels(fx.model, inputs[rows[i]], px + i * 3 * S * S));
        CHECK_OK(mmt_clip_train_encode_pixels(ct, px, m, out));
        free(px);
    } else {
        const char **t = malloc((size_t)m * sizeof *t);
        int32_t *ids = malloc((size_t)(m * L) * sizeof(int32_t));
        for (int i = 0; i < m; i++) t[i] = inputs[rows[i]];
        CHECK_OK(mmt_clip_tokenize(fx.model, t, m, 0, ids));
        CHECK_OK(mmt_clip_train_encode_ids(ct, ids, m, L, out));
        free(t);
        free(ids);
    }
    mmt_prompt_free(pr);
    mmt_adapter_free(ad);
    mmt_clip_train_free(ct);
}

static void test_mixed_rows_match_each_adapter_alone(void) {
    mmt_clip_adapter *opened[N_ADAPTERS] = {0};
    for (int a = 0; a < N_ADAPTERS; a++) CHECK_OK(mmt_clip_adapter_open(fx.model, dirs[a], &opened[a]));
    static const char *photos[5] = {"chelsea.jpg", "astronaut.png", "camera_gray.png", "coffee_portrait.jpg",
                                    "rocket_rgba.png"};
    static const char *words[6] = {"cat", "rocket", "coffee", "camera", "astronaut", "street"};
    char text_buf[N_ROWS][64], path_buf[N_ROWS][300];
    const char *texts[N_ROWS], *paths[N_ROWS];
    mmt_clip_adapter *rows[N_ROWS];
    int which[N_ROWS]; /* adapter index, N_ADAPTERS: the base */
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < N_ROWS; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        which[i] = i < N_ADAPTERS + 1 ? i : (int)(state % (N_ADAPTERS + 1)); /* every adapter at least once */
        snprintf(text_buf[i], sizeof text_buf[i], "a photo of a %s number %d", words[i % 6], i);
        snprintf(path_buf[i], sizeof path_buf[i], "%s/%s", IMAGES, photos[i % 5]);
        texts[i] = text_buf[i];
        paths[i] = path_buf[i];
    }
    for (int i = N_ROWS - 1; i > 0; i--) { /* shuffle so adapters interleave */
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        int j = (int)(state % (uint64_t)(i + 1)), t = which[i];
        which[i] = which[j];
        which[j] = t;
    }
    for (int i = 0; i < N_ROWS; i++) rows[i] = which[i] < N_ADAPTERS ? opened[which[i]] : NULL;
    int64_t P = mmt_clip_embed_dim(fx.model);
    float *got = malloc((size_t)(N_ROWS * P) * sizeof(float)), *want = malloc((size_t)(N_ROWS * P) * sizeof(float));
    mmt_clip_run *run = NULL;
    CHECK_OK(mmt_clip_run_create(fx.model, &run));
    for (int images = 0; images < 2 && run; images++) {
        const char *const *in = images ? paths : texts;
        mmt_status s = images ? mmt_clip_run_embed_image_files(run, in, rows, N_ROWS, got)
                              : mmt_clip_run_embed_texts(run, in, rows, N_ROWS, got);
        CHECK_MSG(s == MMT_OK, "%s", mmt_last_error());
        double worst = 0;
        for (int a = 0; a <= N_ADAPTERS; a++) {
            int idx[N_ROWS], m = 0;
            for (int i = 0; i < N_ROWS; i++)
                if (which[i] == a) idx[m++] = i;
            if (!m) continue;
            float *ref = malloc((size_t)(m * P) * sizeof(float));
            embed_alone(a < N_ADAPTERS ? dirs[a] : NULL, images, in, idx, m, ref);
            double d = 0;
            for (int i = 0; i < m; i++)
                for (int64_t j = 0; j < P; j++) d = fmax(d, fabs((double)got[idx[i] * P + j] - ref[i * P + j]));
            CHECK_MSG(d <= 1e-6, "%s, adapter %s: max difference %g from a batch of it alone", images ? "images" : "texts",
                      a < N_ADAPTERS ? dirs[a] : "base", d);
            worst = fmax(worst, d);
            /* and the adapter does change the result (else the check proves little) */
            if (a < N_ADAPTERS) {
                float *base_ref = malloc((size_t)(m * P) * sizeof(float));
                embed_alone(NULL, images, in, idx, m, base_ref);
                double moved = 0;
                for (int64_t j = 0; j < m * P; j++) moved = fmax(moved, fabs((double)base_ref[j] - ref[j]));
                /* a text-only adapter leaves images alone and a vision-only one texts */
                int text_only = a == 10, vision_only = a == 7 || a == 11 || a == 13;
                if (!(images && text_only) && !(!images && vision_only))
                    CHECK_MSG(moved > 1e-5, "%s: adapter %s does not change the embeddings", images ? "images" : "texts", dirs[a]);
                free(base_ref);
            }
            free(ref);
        }
        printf("     %s: %d rows over %d adapters and the base, max difference %.3g\n", images ? "images" : "texts", N_ROWS,
               N_ADAPTERS, worst);
    }
    /* every adapter but DoRA joined the mixed batches */
    CHECK_MSG(run && mmt_clip_run_own_views(run) == 1, "the run made %lld views of their own, want 1 (DoRA)",
              run ? (long long)mmt_clip_run_own_views(run) : -1LL);
    mmt_clip_run_free(run);
    for (int a = 0; a < N_ADAPTERS; a++) mmt_clip_adapter_close(opened[a]);
    free(got);
    free(want);
}

int main(void) {
    if (!mkdtemp(root) || !batch_load("tiny-a", &fx)) return 1;
    make_adapters();
    RUN(test_mixed_rows_match_each_adapter_alone);
    batch_free(&fx);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) return 1;
    return check_summary();
}
