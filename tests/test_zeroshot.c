/*
 * test_zeroshot.c — CLIP-style zero-shot classification (eval/zeroshot.h) and
 * `mmtune eval --zero-shot`.
 *   - templates: the default set, a file (comments, blank lines, CRLF), a line without "{}";
 *   - classes: distinct labels in byte order, a --classes list, unlabelled pairs;
 *   - prompt ensembling on embeddings the tiny fixture CLIP computes: each class embedding
 *     equals the renormalised mean of its normalised prompt embeddings (1e-6), and on a
 *     hand-checkable case (two classes whose prompts are the images' own captions) every
 *     prediction is the image's own class;
 *   - the CLI's accuracy and per-class accuracy equal a direct computation in this file from
 *     the library's embeddings (1e-6), with and without --templates, and --adapter works.
 */
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "core/alloc.h"
#include "core/json.h"
#include "eval/zeroshot.h"
#include "models/clip.h"

#define MODEL MMT_FIXTURE_DIR "/clip/tiny-a"
#define IMAGES MMT_FIXTURE_DIR "/clip/images"

static char tmp[256];

static const char *IMGS[] = {IMAGES "/chelsea.jpg", IMAGES "/astronaut.png", IMAGES "/camera_gray.png",
                             IMAGES "/coffee_portrait.jpg", IMAGES "/rocket_rgba.png"};
static const char *LABELS[] = {"cat", "person", "person", "cup", "rocket"};

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_templates(void) {
    mmt_zeroshot_templates t;
    CHECK_OK(mmt_zeroshot_templates_default(&t));
    CHECK(t.n >= 3 && !strcmp(t.items[0], "a photo of a {}."));
    mmt_zeroshot_templates_free(&t);
    char path[320];
    snprintf(path, sizeof path, "%s/t.txt", tmp);
    write_file(path, "# comment\n\na {} in the wild.\r\nart of the {}\n");
    CHECK_OK(mmt_zeroshot_templates_load(path, &t));
    CHECK(t.n == 2 && !strcmp(t.items[0], "a {} in the wild.") && !strcmp(t.items[1], "art of the {}"));
    char *p = mmt_zeroshot_prompt(t.items[1], "ankle boot");
    CHECK(p && !strcmp(p, "art of the ankle boot"));
    mmt_free(p);
    mmt_zeroshot_templates_free(&t);
    write_file(path, "a {}.\nno hole here\n");
    CHECK_FAILS(mmt_zeroshot_templates_load(path, &t), MMT_STATUS_BAD_FORMAT, "t.txt:2:");
    write_file(path, "# only a comment\n");
    CHECK_FAILS(mmt_zeroshot_templates_load(path, &t), MMT_STATUS_BAD_FORMAT, "no templates");
}

static mmt_pairs *make_pairs(int labelled) {
    mmt_pairs *p = mmt_calloc(1, sizeof *p);
    p->n = 5;
    p->items = mmt_calloc(5, sizeof *p->items);
    for (int i = 0; i < 5; i++) {
        p->items[i].image_path = mmt_strdup(IMGS[i]);
        p->items[i].text = mmt_strdup(LABELS[i]);
        p->items[i].label = labelled || i != 3 ? mmt_strdup(LABELS[i]) : NULL;
    }
    return p;
}

static void test_classes(void) {
    mmt_pairs *p = make_pairs(1);
    mmt_zeroshot_classes c;
    CHECK_OK(mmt_zeroshot_classes_from_pairs(p, NULL, &c));
    CHECK(c.k == 4 && !strcmp(c.names[0], "cat") && !strcmp(c.names[1], "cup") && !strcmp(c.names[2], "person") &&
          !strcmp(c.names[3], "rocket"));
    CHECK(c.n == 5 && c.labels[0] == 0 && c.labels[1] == 2 && c.labels[2] == 2 && c.labels[3] == 1 && c.labels[4] == 3);
    mmt_zeroshot_classes_free(&c);
    CHECK_OK(mmt_zeroshot_classes_from_pairs(p, "rocket,person,cup,cat,dog", &c));
    CHECK(c.k == 5 && c.labels[0] == 3 && c.labels[4] == 0);
    mmt_zeroshot_classes_free(&c);
    CHECK_FAILS(mmt_zeroshot_classes_from_pairs(p, "cat,person", &c), MMT_STATUS_INVALID_ARGUMENT, "\"cup\"");
    CHECK_FAILS(mmt_zeroshot_classes_from_pairs(p, "cat,,cup", &c), MMT_STATUS_INVALID_ARGUMENT, "empty");
    mmt_pairs_free(p);
    p = make_pairs(0);
    CHECK_FAILS(mmt_zeroshot_classes_from_pairs(p, NULL, &c), MMT_STATUS_BAD_FORMAT, "pair 4");
    mmt_pairs_free(p);
}

/* The class embeddings of names x templates, directly: normalise, average, normalise. */
static void direct_class_embeddings(mmt_clip *m, const char *const *names, int k, const char *const *tpl, int t,
                                    float *out) {
    int64_t P = mmt_clip_embed_dim(m);
    float *e = malloc((size_t)P * sizeof(float));
    for (int c = 0; c < k; c++) {
        double mean[512] = {0};
        for (int j = 0; j < t; j++) {
            char *prompt = mmt_zeroshot_prompt(tpl[j], names[c]);
            const char *pp = prompt;
            CHECK_OK(mmt_clip_embed_texts(m, &pp, 1, e));
            double n2 = 0;
            for (int64_t d = 0; d < P; d++) n2 += (double)e[d] * e[d];
            for (int64_t d = 0; d < P; d++) mean[d] += e[d] / sqrt(n2) / t;
            mmt_free(prompt);
        }
        double n2 = 0;
        for (int64_t d = 0; d < P; d++) n2 += mean[d] * mean[d];
        for (int64_t d = 0; d < P; d++) out[c * P + d] = (float)(mean[d] / sqrt(n2));
    }
    free(e);
}

static void test_ensembling_matches_direct(void) {
    mmt_clip *m = NULL;
    CHECK_OK(mmt_clip_load(MODEL, &m));
    if (!m) return;
    int64_t P = mmt_clip_embed_dim(m);
    CHECK(P <= 512);
    const char *names[] = {"cat", "rocket", "cup of coffee"};
    const char *tpl[] = {"a photo of a {}.", "a {} in the wild.", "art of the {}"};
    /* the library's ensembling of the same prompt embeddings, un-normalised on input (the
     * function must normalise each prompt itself) */
    float *pe = malloc((size_t)(9 * P) * sizeof(float)), *ce = malloc((size_t)(3 * P) * sizeof(float)),
          *want = malloc((size_t)(3 * P) * sizeof(float));
    for (int c = 0; c < 3; c++)
        for (int j = 0; j < 3; j++) {
            char *prompt = mmt_zeroshot_prompt(tpl[j], names[c]);
            const char *pp = prompt;
            CHECK_OK(mmt_clip_embed_texts(m, &pp, 1, pe + (c * 3 + j) * P));
            for (int64_t d = 0; d < P; d++) pe[(c * 3 + j) * P + d] *= (float)(j + 2); /* scale: must not matter */
            mmt_free(prompt);
        }
    CHECK_OK(mmt_zeroshot_class_embeddings(pe, 3, 3, P, ce));
    direct_class_embeddings(m, names, 3, tpl, 3, want);
    double worst = 0;
    for (int64_t i = 0; i < 3 * P; i++) worst = fmax(worst, fabs(ce[i] - want[i]));
    CHECK_NEAR(worst, 0, 1e-6);
    /* one template: the class embedding is that prompt's normalised embedding */
    CHECK_OK(mmt_zeroshot_class_embeddings(pe, 1, 1, P, ce));
    double n2 = 0;
    for (int64_t d = 0; d < P; d++) n2 += (double)pe[d] * pe[d];
    for (int64_t d = 0; d < P; d++) CHECK_NEAR(ce[d], pe[d] / sqrt(n2), 1e-7);
    free(pe);
    free(ce);
    free(want);
    mmt_clip_free(m);
}

/* Hand-checkable: two images, two classes whose single "template" is "{}" and whose names are
 * texts; with the image embedding set to the class embedding itself, each image must go to its
 * own class with similarity 1, and swapping labels gives accuracy 0. */
static void test_evaluate_exact(void) {
    mmt_clip *m = NULL;
    CHECK_OK(mmt_clip_load(MODEL, &m));
    if (!m) return;
    int64_t P = mmt_clip_embed_dim(m);
    const char *texts[] = {"a cat on a chair", "a rocket on the pad"};
    float *te = malloc((size_t)(2 * P) * sizeof(float)), *ce = malloc((size_t)(2 * P) * sizeof(float));
    CHECK_OK(mmt_clip_embed_texts(m, texts, 2, te));
    CHECK_OK(mmt_zeroshot_class_embeddings(te, 2, 1, P, ce));
    int64_t labels[2] = {0, 1};
    mmt_zeroshot_metrics r;
    CHECK_OK(mmt_zeroshot_evaluate(ce, labels, 2, ce, 2, P, &r));
    CHECK(r.correct == 2 && r.accuracy == 1.0 && r.predicted[0] == 0 && r.predicted[1] == 1);
    CHECK(r.class_total[0] == 1 && r.class_accuracy[1] == 1.0);
    mmt_zeroshot_metrics_free(&r);
    int64_t swapped[2] = {1, 0};
    CHECK_OK(mmt_zeroshot_evaluate(ce, swapped, 2, ce, 2, P, &r));
    CHECK(r.correct == 0 && r.accuracy == 0.0);
    mmt_zeroshot_metrics_free(&r);
    /* a class with no image has accuracy NAN; a label out of range is an error */
    int64_t one[1] = {0};
    CHECK_OK(mmt_zeroshot_evaluate(ce, one, 1, ce, 2, P, &r));
    CHECK(r.accuracy == 1.0 && isnan(r.class_accuracy[1]));
    mmt_zeroshot_metrics_free(&r);
    int64_t bad[1] = {2};
    CHECK_FAILS(mmt_zeroshot_evaluate(ce, bad, 1, ce, 2, P, &r), MMT_STATUS_INVALID_ARGUMENT, "class 2");
    free(te);
    free(ce);
    mmt_clip_free(m);
}

/* The CLI's zero_shot_accuracy against a direct computation from the library's embeddings. */
static void test_cli_matches_direct(void) {
    char data[320], tpl_path[320];
    snprintf(data, sizeof data, "%s/labelled.jsonl", tmp);
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 5; i++) fprintf(f, "{\"image_path\": \"%s\", \"text\": \"%s\", \"label\": \"%s\"}\n", IMGS[i], LABELS[i], LABELS[i]);
    fclose(f);
    snprintf(tpl_path, sizeof tpl_path, "%s/tpl.txt", tmp);
    write_file(tpl_path, "a photo of a {}.\na blurry picture of the {}\n");
    const char *names[] = {"cat", "cup", "person", "rocket"}; /* byte order */
    const int64_t lab[] = {0, 2, 2, 1, 3};
    const char *file_tpl[] = {"a photo of a {}.", "a blurry picture of the {}"};
    mmt_zeroshot_templates def;
    CHECK_OK(mmt_zeroshot_templates_default(&def));
    mmt_clip *m = NULL;
    CHECK_OK(mmt_clip_load(MODEL, &m));
    if (!m) return;
    int64_t P = mmt_clip_embed_dim(m);
    float *img = malloc((size_t)(5 * P) * sizeof(float)), *ce = malloc((size_t)(4 * P) * sizeof(float));
    CHECK_OK(mmt_clip_embed_image_files(m, IMGS, 5, img));
    for (int variant = 0; variant < 2; variant++) {
        if (variant == 0) direct_class_embeddings(m, names, 4, (const char *const *)def.items, (int)def.n, ce);
        else direct_class_embeddings(m, names, 4, file_tpl, 2, ce);
        int correct = 0, per_correct[4] = {0}, per_total[4] = {0};
        for (int i = 0; i < 5; i++) {
            int best = 0;
            double best_sim = -1e300;
            for (int c = 0; c < 4; c++) {
                double s = 0;
                for (int64_t d = 0; d < P; d++) s += (double)img[i * P + d] * ce[c * P + d];
                if (s > best_sim) best_sim = s, best = c;
            }
            per_total[lab[i]]++;
            if (best == lab[i]) correct++, per_correct[lab[i]]++;
        }
        int rc = variant == 0 ? run("eval --model %s --data %s --zero-shot", MODEL, data)
                              : run("eval --model %s --data %s --zero-shot --templates %s", MODEL, data, tpl_path);
        CHECK_MSG(rc == 0, "%s", err_text);
        mmt_json_doc *doc = NULL;
        CHECK_OK(mmt_json_parse(out_text ? out_text : "", out_text ? strlen(out_text) : 0, "stdout", &doc));
        if (!doc) continue;
        const mmt_json *root = mmt_json_root(doc), *per = mmt_json_get(root, "zero_shot_per_class");
        CHECK_NEAR(mmt_json_get(root, "zero_shot_accuracy")->number, correct / 5.0, 1e-6);
        CHECK(mmt_json_get(root, "zero_shot_templates")->integer == (variant == 0 ? def.n : 2));
        CHECK(mmt_json_get(root, "zero_shot_classes")->integer == 4);
        CHECK(mmt_json_get(root, "i2t_recall_at_1") != NULL); /* retrieval metrics still there */
        for (int c = 0; c < 4 && per; c++)
            CHECK_NEAR(mmt_json_get(per, names[c])->number, (double)per_correct[c] / per_total[c], 1e-6);
        mmt_json_free(doc);
    }
    /* with an adapter, and the usage errors */
    CHECK(run("train --model %s --data %s --out %s/run --steps 2 --batch-size 2 --quiet", MODEL, data, tmp) == 0);
    CHECK(run("eval --model %s --data %s --adapter %s/run/adapter --zero-shot --out %s/z.json", MODEL, data, tmp, tmp) == 0);
    CHECK(out_text && strstr(out_text, "\"zero_shot_accuracy\"") && exists("%s/z.json", tmp));
    CHECK(run("eval --model %s --data %s --templates %s", MODEL, data, tpl_path) == 2);
    /* class-level retrieval: never below pair-level, and says which it is */
    double pair_r1 = -1, label_r1 = -1;
    for (int by_label = 0; by_label < 2; by_label++) {
        CHECK(run("eval --model %s --data %s --match %s", MODEL, data, by_label ? "label" : "pair") == 0);
        mmt_json_doc *doc = NULL;
        CHECK_OK(mmt_json_parse(out_text ? out_text : "", out_text ? strlen(out_text) : 0, "stdout", &doc));
        if (!doc) continue;
        const mmt_json *match = mmt_json_get(mmt_json_root(doc), "match");
        CHECK(match && !strcmp(match->string, by_label ? "label" : "pair"));
        *(by_label ? &label_r1 : &pair_r1) = mmt_json_get(mmt_json_root(doc), "i2t_recall_at_1")->number;
        mmt_json_free(doc);
    }
    CHECK(pair_r1 >= 0 && label_r1 >= pair_r1);
    CHECK(run("eval --model %s --data %s --match class", MODEL, data) == 2 && strstr(err_text, "pair or label"));
    CHECK(run("eval --model %s --data %s --zero-shot --classes cat,cup", MODEL, data) == 1 && strstr(err_text, "\"person\""));
    free(img);
    free(ce);
    mmt_zeroshot_templates_free(&def);
    mmt_clip_free(m);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mmt_zeroshot_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    cli_run_setup(tmp);
    RUN(test_templates);
    RUN(test_classes);
    RUN(test_ensembling_matches_direct);
    RUN(test_evaluate_exact);
    RUN(test_cli_matches_direct);
    cli_run_cleanup();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return check_summary();
}
