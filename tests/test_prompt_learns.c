/*
 * test_prompt_learns.c — prompt and prefix tuning actually learn (the task of
 * test_train_learns.c: 12 image–text pairs on the tiny random fixture CLIP, smooth random
 * colour fields and distinct captions, so the base model is at chance).
 *
 * Each method trains AdamW steps on batches of 12 through the training view and must
 * (margins, not "it runs") lower the contrastive loss to at most `loss_ratio` of its start
 * and raise image->text recall@1 on the pairs by at least `gain` over the base model's; all
 * are held to test_train_learns.c's margins, 0.6 and +0.4 (observed: prompt 0.27 / +0.58,
 * VPT-deep 0.36 / +0.67, prefix and prefix projection 0.01 / +0.92, LoRA + prompts 0.06 /
 * +0.92). Shared tokens carry less capacity per step than per-layer weights (text prompts are
 * the same for every caption), so the prompt methods get more steps and a larger rate.
 */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "eval/retrieval.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "peft/peft_config.h"
#include "peft/prompt.h"
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
    CHECK_OK(mmt_clip_train_encode_pixels(ct, pixels, N, img));
    CHECK_OK(mmt_clip_train_encode_ids(ct, ids, N, L, txt));
    mmt_retrieval_metrics m;
    CHECK_OK(mmt_retrieval_eval(img, txt, N, P, &m));
    return (float)m.i2t_r1;
}

typedef struct method {
    const char *name;
    mmt_prompt_settings s;
    int with_lora;
    double lr;
    int steps;
    double loss_ratio;
    float gain;
} method;

static void learn(const method *me) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/clip/tiny-a", MMT_FIXTURE_DIR);
    mmt_clip *model = NULL;
    CHECK_OK(mmt_clip_load(dir, &model));
    if (!model) return;
    const mmt_clip_config *c = mmt_clip_config_of(model);
    int64_t S = c->vision.image_size, L = c->text.max_positions, P = c->projection_dim;
    float *pixels = malloc((size_t)(N * 3 * S * S) * sizeof(float));
    int32_t *ids = malloc((size_t)(N * L) * sizeof(int32_t));
    rng = 77;
    for (int64_t i = 0; i < N; i++)
        for (int64_t ch = 0; ch < 3; ch++) {
            float a = 4 * uniform() - 2, bx = 4 * uniform() - 2, by = 4 * uniform() - 2;
            for (int64_t y = 0; y < S; y++)
                for (int64_t x = 0; x < S; x++)
                    pixels[((i * 3 + ch) * S + y) * S + x] = a + bx * (float)x / (float)S + by * (float)y / (float)S;
        }
    CHECK_OK(mmt_clip_tokenize(model, TEXTS, N, 1, ids));
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    CHECK_OK(mmt_clip_train_create(model, &o, &ct));
    float base_r1 = recall_at_1(ct, pixels, ids, L, P);
    mmt_adapter *ad = NULL;
    mmt_peft_config pc;
    memset(&pc, 0, sizeof pc);
    if (me->with_lora) {
        const char *targets[] = {"q_proj", "v_proj"};
        CHECK_OK(mmt_peft_config_default(&pc, MMT_PEFT_LORA));
        pc.r = 2;
        pc.lora_alpha = 4;
        CHECK_OK(mmt_peft_names_set_list(&pc.target_modules, targets, 2));
        CHECK_OK(mmt_clip_adapter_from_config(ct, &pc, 1, 1, &ad));
    }
    mmt_prompt *pr = NULL;
    CHECK_OK(mmt_prompt_attach(ct, &me->s, &pr));
    int64_t n;
    const mmt_nn_param *p = mmt_clip_train_params(ct, &n);
    mmt_param *params = calloc((size_t)n, sizeof *params);
    mmt_params_from_nn(p, n, params);
    mmt_param_group g = {"all", params, n, 1.0, 0.0};
    mmt_adamw_config oc = mmt_adamw_config_default();
    oc.lr = me->lr;
    mmt_adamw *opt = NULL;
    CHECK_OK(mmt_adamw_create(&oc, &g, 1, &opt));
    double first = 0, loss = 0;
    for (int step = 0; step < me->steps && opt && pr; step++) {
        mmt_clip_train_zero_grad(ct);
        CHECK_OK(mmt_clip_train_forward_loss(ct, pixels, ids, N, L, (uint64_t)step, &loss));
        if (step == 0) first = loss;
        CHECK_OK(mmt_clip_train_backward(ct));
        CHECK_OK(mmt_adamw_step(opt, 1.0));
    }
    float r1 = recall_at_1(ct, pixels, ids, L, P);
    fprintf(stderr, "%s: loss %.4f -> %.4f, i2t recall@1 %.3f -> %.3f\n", me->name, first, loss, base_r1, r1);
    CHECK_MSG(loss <= me->loss_ratio * first, "%s: loss %.4f -> %.4f", me->name, first, loss);
    CHECK_MSG(r1 >= base_r1 + me->gain, "%s: recall@1 %.3f -> %.3f", me->name, base_r1, r1);
    mmt_adamw_free(opt);
    free(params);
    mmt_prompt_free(pr);
    mmt_adapter_free(ad);
    mmt_peft_config_free(&pc);
    mmt_clip_train_free(ct);
    mmt_clip_free(model);
    free(pixels);
    free(ids);
}

static mmt_prompt_settings S(int64_t text, int64_t visual, int deep, int64_t prefix, int projection, int vision_prefix) {
    mmt_prompt_settings s;
    memset(&s, 0, sizeof s);
    s.text_tokens = text;
    s.visual_tokens = visual;
    s.visual_deep = deep;
    s.prefix_tokens = prefix;
    s.prefix_projection = projection;
    s.prefix_vision = vision_prefix;
    s.seed = 1;
    s.trainable = 1;
    return s;
}

static void test_text_prompt_learns(void) {
    method m = {"prompt", S(8, 0, 0, 0, 0, 0), 0, 5e-2, 120, 0.6, 0.4f};
    learn(&m);
}
static void test_visual_prompt_learns(void) {
    method m = {"visual-prompt deep", S(0, 8, 1, 0, 0, 0), 0, 5e-2, 80, 0.6, 0.4f};
    learn(&m);
}
static void test_prefix_learns(void) {
    method m = {"prefix (text + vision)", S(0, 0, 0, 8, 0, 1), 0, 5e-2, 80, 0.6, 0.4f};
    learn(&m);
}
static void test_prefix_projection_learns(void) {
    method m = {"prefix projection", S(0, 0, 0, 8, 1, 1), 0, 5e-3, 80, 0.6, 0.4f};
    learn(&m);
}
static void test_lora_with_prompts_learns(void) {
    method m = {"lora + text + visual prompts", S(4, 4, 0, 0, 0, 0), 1, 1e-2, 40, 0.6, 0.4f};
    learn(&m);
}

int main(void) {
    RUN(test_text_prompt_learns);
    RUN(test_visual_prompt_learns);
    RUN(test_prefix_learns);
    RUN(test_prefix_projection_learns);
    RUN(test_lora_with_prompts_learns);
    return check_summary();
}
