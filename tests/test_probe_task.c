/*
 * test_probe_task.c — linear probing (train/probe_task.h) on the tiny fixture CLIP and the
 * fixture photos:
 *   - classes: a pair's "label" field, else its text; sorted, distinct; fewer than 2 refused;
 *   - the head's gradient (through the task's forward_loss / backward, as the trainer calls
 *     them) against float64 central finite differences of the loss: |error| <= 2e-3 +
 *     1e-2 |grad| (the loss is float32 logits summed in double, step 1e-3);
 *   - backward adds into the gradients (called twice = twice the gradient);
 *   - it learns: mmt_train_run on 10 labelled pairs takes top-1 accuracy from the zero
 *     head's (ties -> class 0) to 1.0 with every margin (true logit - best other) > 0.5 and
 *     the loss below 0.3 ln K;
 *   - head files: save then load gives the same bytes of W, b and the classes; wrong shapes,
 *     unsorted classes and an unknown class at evaluation are one-line errors.
 */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "data/pairs.h"
#include "models/clip.h"
#include "core/safetensors.h"
#include "train/probe_task.h"
#include "train/trainer.h"

#define MODEL MMT_FIXTURE_DIR "/clip/tiny-a"
#define IMAGES MMT_FIXTURE_DIR "/clip/images"

static char tmp[256];

/* A JSONL of the five photos twice; labels[i] NULL means no "label" field. */
static const char *write_pairs(const char *name, const char *const labels[5]) {
    static const char *imgs[] = {"chelsea.jpg", "astronaut.png", "camera_gray.png", "coffee_portrait.jpg", "rocket_rgba.png"};
    static const char *texts[] = {"a cat on a chair", "an astronaut smiling", "a man with a camera", "a cup of coffee",
                                  "a rocket on the pad"};
    static char path[400];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    FILE *f = fopen(path, "w");
    for (int rep = 0; rep < 2; rep++)
        for (int i = 0; i < 5; i++) {
            fprintf(f, "{\"image_path\": \"%s/%s\", \"text\": \"%s\"", IMAGES, imgs[i], texts[i]);
            if (labels && labels[i]) fprintf(f, ", \"label\": \"%s\"", labels[i]);
            fputs("}\n", f);
        }
    fclose(f);
    return path;
}

static const char *const LABELS[5] = {"cat", "person", "gray", "person", NULL}; /* the rocket: its text */

static uint64_t rng = 12345;
static float uniform_pm1(void) {
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

static void test_classes_from_labels_and_texts(void) {
    mmt_clip *model = NULL;
    mmt_pairs *pairs = NULL;
    mmt_probe_task *t = NULL;
    CHECK_OK(mmt_clip_load(MODEL, &model));
    CHECK_OK(mmt_pairs_load_jsonl(write_pairs("labels.jsonl", LABELS), 0, &pairs));
    if (!model || !pairs) goto done;
    CHECK(pairs->items[0].label && strcmp(pairs->items[0].label, "cat") == 0 && !pairs->items[4].label);
    CHECK_OK(mmt_probe_task_create(model, pairs, &t));
    if (!t) goto done;
    const mmt_probe_head *h = mmt_probe_task_head(t);
    const char *want[] = {"a rocket on the pad", "cat", "gray", "person"};
    CHECK(h->K == 4 && h->P == 24);
    for (int64_t k = 0; k < h->K && k < 4; k++) CHECK_MSG(strcmp(h->classes[k], want[k]) == 0, "class %lld: %s", (long long)k, h->classes[k]);
    CHECK(mmt_probe_head_class(h, "person") == 3 && mmt_probe_head_class(h, "dog") == -1);
    /* the cached embeddings are the model's own */
    float e[24];
    const char *path = pairs->items[1].image_path;
    CHECK_OK(mmt_clip_embed_image_files(model, &path, 1, e));
    double d = 0;
    for (int j = 0; j < 24; j++) d = fmax(d, fabs(e[j] - mmt_probe_task_embeddings(t)[24 + j]));
    CHECK_NEAR(d, 0, 1e-6);
    /* one class only */
    mmt_pairs_free(pairs);
    pairs = NULL;
    const char *const same[5] = {"x", "x", "x", "x", "x"};
    CHECK_OK(mmt_pairs_load_jsonl(write_pairs("one.jsonl", same), 0, &pairs));
    mmt_probe_task *t1 = NULL;
    if (pairs) CHECK_FAILS(mmt_probe_task_create(model, pairs, &t1), MMT_STATUS_INVALID_ARGUMENT, "at least two classes");
    CHECK(!t1);
done:
    mmt_probe_task_free(t);
    mmt_pairs_free(pairs);
    mmt_clip_free(model);
}

static void test_gradient_matches_finite_differences(void) {
    mmt_clip *model = NULL;
    mmt_pairs *pairs = NULL;
    mmt_probe_task *t = NULL;
    CHECK_OK(mmt_clip_load(MODEL, &model));
    CHECK_OK(mmt_pairs_load_jsonl(write_pairs("grad.jsonl", LABELS), 0, &pairs));
    if (model && pairs) CHECK_OK(mmt_probe_task_create(model, pairs, &t));
    if (!t) goto done;
    mmt_train_task tt;
    mmt_probe_task_bind(t, &tt);
    int64_t n;
    const mmt_nn_param *p = tt.params(tt.ctx, &n);
    CHECK(n == 2 && strcmp(p[0].name, "head.weight") == 0 && strcmp(p[1].name, "head.bias") == 0);
    CHECK(!p[0].no_decay && p[1].no_decay);
    /* a head away from zero so every logit differs */
    for (int i = 0; i < 2; i++)
        for (int64_t j = 0; j < p[i].numel; j++) p[i].data[j] = 2.0f * uniform_pm1();
    const int64_t idx[7] = {0, 3, 4, 7, 2, 9, 3};
    CHECK_OK(tt.load_batch(tt.ctx, idx, 7));
    for (int i = 0; i < 2; i++) memset(p[i].grad, 0, (size_t)p[i].numel * sizeof(float));
    double loss;
    CHECK_OK(tt.forward_loss(tt.ctx, 0, &loss));
    CHECK_OK(tt.backward(tt.ctx));
    const float h = 1e-3f;
    double worst = 0;
    for (int i = 0; i < 2; i++)
        for (int64_t j = 0; j < p[i].numel; j++) {
            float keep = p[i].data[j];
            double lp, lm;
            p[i].data[j] = keep + h;
            CHECK_OK(tt.forward_loss(tt.ctx, 0, &lp));
            p[i].data[j] = keep - h;
            CHECK_OK(tt.forward_loss(tt.ctx, 0, &lm));
            p[i].data[j] = keep;
            double fd = (lp - lm) / (2.0 * (double)h), g = p[i].grad[j];
            double err = fabs(fd - g) - (2e-3 + 1e-2 * fabs(g));
            if (err > worst) worst = err;
            CHECK_MSG(err <= 0, "%s[%lld]: backward %.6g, finite differences %.6g", p[i].name, (long long)j, g, fd);
        }
    CHECK(worst <= 0);
    /* += semantics */
    float g0 = p[0].grad[5], b0 = p[1].grad[2];
    CHECK_OK(tt.forward_loss(tt.ctx, 0, &loss));
    CHECK_OK(tt.backward(tt.ctx));
    CHECK_NEAR(p[0].grad[5], 2 * g0, 1e-6);
    CHECK_NEAR(p[1].grad[2], 2 * b0, 1e-6);
done:
    mmt_probe_task_free(t);
    mmt_pairs_free(pairs);
    mmt_clip_free(model);
}

/* Smallest margin (true logit - best other logit) over the task's examples. */
static double min_margin(const mmt_probe_head *h, const float *emb, const mmt_pairs *pairs) {
    double m = INFINITY;
    float logits[16];
    for (int64_t i = 0; i < pairs->n; i++) {
        mmt_probe_head_logits(h, emb + i * h->P, 1, logits);
        int64_t y = mmt_probe_head_class(h, mmt_probe_pair_class(&pairs->items[i]));
        double other = -INFINITY;
        for (int64_t k = 0; k < h->K; k++)
            if (k != y && logits[k] > other) other = logits[k];
        if (logits[y] - other < m) m = logits[y] - other;
    }
    return m;
}

static void test_learns(void) {
    mmt_clip *model = NULL;
    mmt_pairs *pairs = NULL;
    mmt_probe_task *t = NULL;
    CHECK_OK(mmt_clip_load(MODEL, &model));
    CHECK_OK(mmt_pairs_load_jsonl(write_pairs("learn.jsonl", LABELS), 0, &pairs));
    if (model && pairs) CHECK_OK(mmt_probe_task_create(model, pairs, &t));
    if (!t) goto done;
    const mmt_probe_head *h = mmt_probe_task_head(t);
    mmt_probe_metrics before, after;
    CHECK_OK(mmt_probe_evaluate(h, pairs, mmt_probe_task_embeddings(t), &before));
    CHECK_NEAR(before.loss, log(4.0), 1e-6); /* zero head */
    CHECK_NEAR(before.accuracy, 0.2, 1e-9);  /* ties go to class 0: the rocket, 2 of 10 */
    mmt_train_task tt;
    mmt_probe_task_bind(t, &tt);
    mmt_train_settings s;
    mmt_train_settings_default(&s);
    char out[400];
    snprintf(out, sizeof out, "%s/learn_run", tmp);
    s.out = out;
    s.steps = 150;
    s.batch_size = 5;
    s.lr = 0.1;
    s.weight_decay = 0;
    s.schedule = MMT_SCHEDULE_CONSTANT;
    s.warmup_steps = 0;
    s.quiet = 1;
    mmt_train_result r;
    CHECK_OK(mmt_train_run(&tt, &s, &r));
    CHECK_OK(mmt_probe_evaluate(h, pairs, mmt_probe_task_embeddings(t), &after));
    double margin = min_margin(h, mmt_probe_task_embeddings(t), pairs);
    CHECK_MSG(after.accuracy == 1.0, "accuracy %.3f (before %.3f)", after.accuracy, before.accuracy);
    CHECK_MSG(margin > 0.5, "smallest margin %.4f", margin);
    CHECK_MSG(after.loss < 0.3 * log(4.0), "loss %.4f from %.4f", after.loss, before.loss);
    /* the saved head is the trained one */
    char dir[450];
    snprintf(dir, sizeof dir, "%s/adapter", out);
    mmt_probe_head *loaded = NULL;
    CHECK_OK(mmt_probe_head_load(dir, &loaded));
    if (loaded) {
        CHECK(loaded->K == h->K && loaded->P == h->P);
        CHECK(memcmp(loaded->weight, h->weight, (size_t)(h->K * h->P) * sizeof(float)) == 0);
        CHECK(memcmp(loaded->bias, h->bias, (size_t)h->K * sizeof(float)) == 0);
        for (int64_t k = 0; k < h->K; k++) CHECK(strcmp(loaded->classes[k], h->classes[k]) == 0);
    }
    mmt_probe_head_free(loaded);
done:
    mmt_probe_task_free(t);
    mmt_pairs_free(pairs);
    mmt_clip_free(model);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

static void test_head_file_errors(void) {
    char dir[400];
    snprintf(dir, sizeof dir, "%s/badhead", tmp);
    mkdir(dir, 0700);
    mmt_probe_head *h = NULL;
    CHECK_FAILS(mmt_probe_head_load(dir, &h), MMT_STATUS_NOT_FOUND, "head_config.json");
    write_text(dir, "head_config.json", "{\"type\": \"linear_probe\", \"projection_dim\": 3, \"classes\": [\"b\", \"a\"]}");
    CHECK_FAILS(mmt_probe_head_load(dir, &h), MMT_STATUS_BAD_FORMAT, "distinct and sorted");
    write_text(dir, "head_config.json", "{\"type\": \"lora\", \"projection_dim\": 3, \"classes\": [\"a\", \"b\"]}");
    CHECK_FAILS(mmt_probe_head_load(dir, &h), MMT_STATUS_UNSUPPORTED, "linear_probe");
    write_text(dir, "head_config.json", "{\"type\": \"linear_probe\", \"projection_dim\": 3, \"classes\": [\"a\", \"b\"]}");
    float w[8] = {0}, b[2] = {0}; /* room for the wrong [2, 4] shape written first */
    int64_t ws[2] = {2, 4}, bs[1] = {2};
    mmt_st_write_tensor t[2] = {{"head.weight", MMT_DTYPE_F32, 2, ws, w}, {"head.bias", MMT_DTYPE_F32, 1, bs, b}};
    char wpath[500];
    snprintf(wpath, sizeof wpath, "%s/head.safetensors", dir);
    CHECK_OK(mmt_safetensors_write(wpath, t, 2, NULL, 0));
    CHECK_FAILS(mmt_probe_head_load(dir, &h), MMT_STATUS_BAD_FORMAT, "head.weight: expected shape [2, 3]");
    ws[1] = 3;
    CHECK_OK(mmt_safetensors_write(wpath, t, 1, NULL, 0));
    CHECK_FAILS(mmt_probe_head_load(dir, &h), MMT_STATUS_BAD_FORMAT, "missing tensor head.bias");
    CHECK_OK(mmt_safetensors_write(wpath, t, 2, NULL, 0));
    CHECK_OK(mmt_probe_head_load(dir, &h));
    if (h) {
        /* a pair whose class the head does not know */
        mmt_pairs *pairs = NULL;
        CHECK_OK(mmt_pairs_load_jsonl(write_pairs("unknown.jsonl", NULL), 0, &pairs));
        float emb[10 * 3] = {0};
        mmt_probe_metrics m;
        if (pairs)
            CHECK_FAILS(mmt_probe_evaluate(h, pairs, emb, &m), MMT_STATUS_INVALID_ARGUMENT,
                        "pair 1: class \"a cat on a chair\" is not one of the head's 2 classes");
        mmt_pairs_free(pairs);
    }
    mmt_probe_head_free(h);
    /* an empty label is a bad line */
    char path[400];
    snprintf(path, sizeof path, "%s/empty_label.jsonl", tmp);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"image_path\": \"x.jpg\", \"text\": \"t\", \"label\": \"\"}\n");
    fclose(f);
    mmt_pairs *pairs = NULL;
    CHECK_FAILS(mmt_pairs_load_jsonl(path, 0, &pairs), MMT_STATUS_BAD_FORMAT, ":1: empty \"label\"");
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mmt_probe_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    RUN(test_classes_from_labels_and_texts);
    RUN(test_gradient_matches_finite_differences);
    RUN(test_learns);
    RUN(test_head_file_errors);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) return 1;
    return check_summary();
}
