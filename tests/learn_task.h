/*
 * learn_task.h — the small task test_train_learns.c and test_prompt_learns.c train on, and
 * the loop and margins they hold every method to.
 *
 * The task: LEARN_N = 12 image–text pairs on the tiny fixture CLIP tests/fixtures/clip/tiny-a
 * (random weights, so the base model is at chance). Images are smooth colour fields, one
 * random gradient per channel (the stream of rng.h seeded with 77, the same images on every
 * load); texts are distinct short captions. learn_task_train runs plain AdamW on every
 * registered tensor, one batch of all 12 pairs per step; learn_task_check requires the loss to
 * fall to loss_ratio of its first value and image->text recall@1 to rise by gain over the
 * base model's. Header-only, like check.h.
 */
#ifndef MMT_TESTS_LEARN_TASK_H
#define MMT_TESTS_LEARN_TASK_H

#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "eval/retrieval.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "rng.h"
#include "train/optimizer.h"

#define LEARN_N 12

static const char *LEARN_TEXTS[LEARN_N] = {"a red circle", "a blue square", "two green dogs", "a small cat",
                                           "a car on a road", "an old house", "a yellow flower", "three black birds",
                                           "a tall tree", "a white boat", "a big rocket", "a cup of coffee"};

typedef struct learn_task {
    mmt_clip *model;
    float *pixels;  // (N, 3, S, S)
    int32_t *ids;   // (N, L)
    int64_t L, P;   /* context length, embedding size */
} learn_task;

/* Loads the model and makes the pairs; 0 when the model does not load (checked here). */
static inline int learn_task_load(learn_task *t) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/clip/tiny-a", MMT_FIXTURE_DIR);
    memset(t, 0, sizeof *t);
    CHECK_OK(mmt_clip_load(dir, &t->model));
    if (!t->model) return 0;
    const mmt_clip_config *c = mmt_clip_config_of(t->model);
    int64_t S = c->vision.image_size;
    t->L = c->text.max_positions;
    t->P = c->projection_dim;
    t->pixels = malloc((size_t)(LEARN_N * 3 * S * S) * sizeof(float));
    t->ids = malloc((size_t)(LEARN_N * t->L) * sizeof(int32_t));
    rng_state = 77;
    for (int64_t i = 0; i < LEARN_N; i++) /* a colour gradient per image: 9 random coefficients */
        for (int64_t ch = 0; ch < 3; ch++) {
            float a = 4 * rng_unit() - 2, bx = 4 * rng_unit() - 2, by = 4 * rng_unit() - 2;
            for (int64_t y = 0; y < S; y++)
                for (int64_t x = 0; x < S; x++)
                    t->pixels[((i * 3 + ch) * S + y) * S + x] = a + bx * (float)x / (float)S + by * (float)y / (float)S;
        }
    CHECK_OK(mmt_clip_tokenize(t->model, LEARN_TEXTS, LEARN_N, 1, t->ids));
    return 1;
}

static inline void learn_task_free(learn_task *t) {
    mmt_clip_free(t->model);
    free(t->pixels);
    free(t->ids);
}

/* Image->text recall@1 of the view on the 12 pairs. */
static inline float recall_at_1(mmt_clip_train *ct, const learn_task *t) {
    float img[LEARN_N * 64], txt[LEARN_N * 64];
    CHECK(t->P <= 64);
    CHECK_OK(mmt_clip_train_encode_pixels(ct, t->pixels, LEARN_N, img));
    CHECK_OK(mmt_clip_train_encode_ids(ct, t->ids, LEARN_N, t->L, txt));
    mmt_retrieval_metrics m;
    CHECK_OK(mmt_retrieval_eval(img, txt, LEARN_N, t->P, &m));
    return (float)m.i2t_r1;
}

/* `steps` AdamW steps (default settings but the learning rate lr, one group without weight
 * decay, schedule multiplier 1, no clipping) on every registered tensor, dropout seed = step;
 * *first and *last get the first and the last loss. */
static inline void learn_task_train(mmt_clip_train *ct, const learn_task *t, double lr, int steps, double *first,
                                    double *last) {
    int64_t n;
    const mmt_nn_param *p = mmt_clip_train_params(ct, &n);
    mmt_param *params = calloc((size_t)n, sizeof *params);
    mmt_params_from_nn(p, n, params);
    mmt_param_group g = {"all", params, n, 1.0, 0.0, NULL};
    mmt_adamw_config oc = mmt_adamw_config_default();
    oc.lr = lr;
    mmt_adamw *opt = NULL;
    CHECK_OK(mmt_adamw_create(&oc, &g, 1, &opt));
    double loss = 0;
    *first = 0;
    for (int step = 0; step < steps && opt; step++) {
        mmt_clip_train_zero_grad(ct);
        CHECK_OK(mmt_clip_train_forward_loss(ct, t->pixels, t->ids, LEARN_N, t->L, (uint64_t)step, &loss));
        if (step == 0) *first = loss;
        CHECK_OK(mmt_clip_train_backward(ct));
        CHECK_OK(mmt_adamw_step(opt, 1.0));
    }
    *last = loss;
    mmt_adamw_free(opt);
    free(params);
}

/* The margins: loss down to loss_ratio of its start, recall@1 up by gain (and a summary line
 * on stderr either way, for the record of what each method reached). */
static inline void learn_task_check(const char *name, double first, double last, float base_r1, float r1,
                                    double loss_ratio, float gain) {
    fprintf(stderr, "%s: loss %.4f -> %.4f, i2t recall@1 %.3f -> %.3f\n", name, first, last, base_r1, r1);
    CHECK_MSG(last <= loss_ratio * first, "%s: loss %.4f -> %.4f", name, first, last);
    CHECK_MSG(r1 >= base_r1 + gain, "%s: recall@1 %.3f -> %.3f", name, base_r1, r1);
}

#endif
