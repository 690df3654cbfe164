/*
 * test_train_learns.c — each training method actually learns a small task made here.
 *
 * The task: 12 image–text pairs on the tiny fixture CLIP (random weights, so the base model
 * is at chance). Images are smooth random colour fields (distinct per pair), texts are
 * distinct short captions. Each method trains 40 AdamW steps on batches of 12 through the
 * training view and must (margins, not "it runs"):
 *   - lower the contrastive loss to at most 60% of its starting value, and
 *   - raise image->text recall@1 on the pairs from the base model's to >= base + 0.4
 *     (from ~1/12 to most of the 12).
 */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "eval/retrieval.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "peft/bottleneck_config.h"
#include "peft/peft_config.h"
#include "train/clip_task.h"
#include "train/optimizer.h"

#define N 12

static const char *TEXTS[N] = {"a red circle", "a blue square", "two green dogs", "a small cat",
                               "a car on a road", "an old house", "a yellow flower", "three black birds",
                               "a tall tree", "a white boat", "a big rocket", "a cup of coffee"};

static uint64_t rng = 77;
static float uniform(void) {
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 24));
}

static float recall_at_1(mmt_clip_train *ct, const float *pixels, const int32_t *ids, int64_t L, int64_t P) {
    float img[N * 64], txt[N * 64];
    CHECK(P <= 64);
    CHECK(mmt_clip_train_encode_pixels(ct, pixels, N, img) == MMT_OK);
    CHECK(mmt_clip_train_encode_ids(ct, ids, N, L, txt) == MMT_OK);
    mmt_retrieval_metrics m;
    CHECK(mmt_retrieval_eval(img, txt, N, P, &m) == MMT_OK);
    return (float)m.i2t_r1;
}

static void learn(const char *method) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/clip/tiny-a", MMT_FIXTURE_DIR);
    mmt_clip *model = NULL;
    CHECK(mmt_clip_load(dir, &model) == MMT_OK);
    if (!model) return;
    const mmt_clip_config *c = mmt_clip_config_of(model);
    int64_t S = c->vision.image_size, L = c->text.max_positions, P = c->projection_dim;
    float *pixels = malloc((size_t)(N * 3 * S * S) * sizeof(float));
    int32_t *ids = malloc((size_t)(N * L) * sizeof(int32_t));
    rng = 77;
    for (int64_t i = 0; i < N; i++) /* a colour gradient per image: 9 random coefficients */
        for (int64_t ch = 0; ch < 3; ch++) {
            float a = 4 * uniform() - 2, bx = 4 * uniform() - 2, by = 4 * uniform() - 2;
            for (int64_t y = 0; y < S; y++)
                for (int64_t x = 0; x < S; x++)
                    pixels[((i * 3 + ch) * S + y) * S + x] = a + bx * (float)x / (float)S + by * (float)y / (float)S;
        }
    CHECK(mmt_clip_tokenize(model, TEXTS, N, 1, ids) == MMT_OK);
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    CHECK(mmt_clip_train_create(model, &o, &ct) == MMT_OK);
    float base_r1 = recall_at_1(ct, pixels, ids, L, P);
    mmt_adapter *ad = NULL;
    mmt_peft_config pc;
    int have = 0;
    double lr = 1e-2;
    if (!strcmp(method, "full")) {
        CHECK(mmt_clip_train_make_full(ct) == MMT_OK);
        lr = 2e-3;
    } else if (!strcmp(method, "adapter")) { /* bottleneck adapters after attention and MLP */
        mmt_bottleneck_config bc;
        mmt_bottleneck_config_default(&bc);
        bc.reduction_factor = 4;
        CHECK_MSG(mmt_clip_bottleneck_attach(ct, &bc, 1, 1, &ad) == MMT_OK, "%s", mmt_last_error());
    } else {
        CHECK(mmt_peft_config_default(&pc, !strcmp(method, "ia3") ? MMT_PEFT_IA3 : MMT_PEFT_LORA) == MMT_OK);
        have = 1;
        const char *lora_t[] = {"q_proj", "v_proj", "fc1"};
        const char *ia3_t[] = {"k_proj", "v_proj", "fc2"}, *ff[] = {"fc2"};
        if (!strcmp(method, "ia3")) {
            CHECK(mmt_peft_names_set_list(&pc.target_modules, ia3_t, 3) == MMT_OK);
            CHECK(mmt_peft_names_set_list(&pc.feedforward_modules, ff, 1) == MMT_OK);
            lr = 5e-2;
        } else {
            pc.r = 4;
            pc.lora_alpha = 8;
            pc.use_dora = !strcmp(method, "dora");
            CHECK(mmt_peft_names_set_list(&pc.target_modules, lora_t, 3) == MMT_OK);
        }
        CHECK_MSG(mmt_clip_adapter_from_config(ct, &pc, 1, 1, &ad) == MMT_OK, "%s", mmt_last_error());
    }
    int64_t n;
    const mmt_nn_param *p = mmt_clip_train_params(ct, &n);
    mmt_param *params = calloc((size_t)n, sizeof *params);
    mmt_params_from_nn(p, n, params);
    mmt_param_group g = {"all", params, n, 1.0, 0.0};
    mmt_adamw_config oc = mmt_adamw_config_default();
    oc.lr = lr;
    mmt_adamw *opt = NULL;
    CHECK(mmt_adamw_create(&oc, &g, 1, &opt) == MMT_OK);
    double first = 0, loss = 0;
    for (int step = 0; step < 40 && opt; step++) {
        mmt_clip_train_zero_grad(ct);
        CHECK(mmt_clip_train_forward_loss(ct, pixels, ids, N, L, (uint64_t)step, &loss) == MMT_OK);
        if (step == 0) first = loss;
        CHECK(mmt_clip_train_backward(ct) == MMT_OK);
        CHECK(mmt_adamw_step(opt, 1.0) == MMT_OK);
    }
    float r1 = recall_at_1(ct, pixels, ids, L, P);
    fprintf(stderr, "%s: loss %.4f -> %.4f, i2t recall@1 %.3f -> %.3f\n", method, first, loss, base_r1, r1);
    CHECK_MSG(loss <= 0.6 * first, "%s: loss %.4f -> %.4f", method, first, loss);
    CHECK_MSG(r1 >= base_r1 + 0.4f, "%s: recall@1 %.3f -> %.3f", method, base_r1, r1);
    mmt_adamw_free(opt);
    free(params);
    mmt_adapter_free(ad);
    if (have) mmt_peft_config_free(&pc);
    mmt_clip_train_free(ct);
    mmt_clip_free(model);
    free(pixels);
    free(ids);
}

static void test_lora_learns(void) { learn("lora"); }
static void test_ia3_learns(void) { learn("ia3"); }
static void test_dora_learns(void) { learn("dora"); }
static void test_bottleneck_learns(void) { learn("adapter"); }
static void test_full_finetuning_learns(void) { learn("full"); }

int main(void) {
    RUN(test_lora_learns);
    RUN(test_ia3_learns);
    RUN(test_dora_learns);
    RUN(test_bottleneck_learns);
    RUN(test_full_finetuning_learns);
    return check_summary();
}
