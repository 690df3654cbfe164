/*
 * test_examples.c — the public adapters-over-one-base API (mmtune.h: mmt_clip_adapter,
 * mmt_clip_run) and the example program that uses it.
 *   - a call whose rows mix adapters A, B and the base gives each row what a call with that
 *     adapter alone gives (bitwise: rows of one adapter are computed together either way),
 *     for texts and for image files, and A, B and the base differ;
 *   - a bad adapter folder fails to open with one line naming it; an adapter opened on another
 *     base is refused by a run context;
 *   - mmtune embed / classify with --adapter NAME=DIR ... --use NAME: every line equals the
 *     same input through a single --adapter DIR (or no adapter for base) within 1e-6, and
 *     carries its adapter's name; unknown names and a --truncate with names are usage errors;
 *   - examples/two_adapters.c, built against include/mmtune.h alone, runs two threads over
 *     one base with two adapters and exits 0 (its results equal one thread's);
 *   - examples/train_adapter.c trains a LoRA adapter on the embedded default model through
 *     mmt_clip_train_adapter_on_pairs, opens it and exits 0 (its loss went down and the
 *     adapter moved the embeddings); it takes about half a second in a release build.
 * Adapters are made through the library (adapter_fixture.h) on tests/fixtures/clip/tiny-a.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "adapter_fixture.h"
#include "check.h"
#include "mmtune.h"

#define MODEL_DIR MMT_FIXTURE_DIR "/clip/tiny-a"
#define IMAGES MMT_FIXTURE_DIR "/clip/images"

static char root[] = "/tmp/mmt_examples_XXXXXX";
static char dir_a[300], dir_b[300];
static mmt_clip *base;

static void test_mixed_rows_equal_single_adapter_calls(void) {
    mmt_clip_adapter *a = NULL, *b = NULL;
    CHECK_OK(mmt_clip_adapter_open(base, dir_a, &a));
    CHECK_OK(mmt_clip_adapter_open(base, dir_b, &b));
    mmt_clip_run *run = NULL;
    CHECK_OK(mmt_clip_run_create(base, &run));
    if (!a || !b || !run) return;
    int64_t P = mmt_clip_embed_dim(base);
    const char *texts[5] = {"a photo of a cat", "a red car", "two dogs in snow", "a cup of coffee", "a rocket"};
    mmt_clip_adapter *mixed[5] = {a, b, NULL, b, a};
    const char *images[5] = {IMAGES "/chelsea.jpg", IMAGES "/astronaut.png", IMAGES "/rocket_rgba.png",
                             IMAGES "/camera_gray.png", IMAGES "/coffee_portrait.jpg"};
    for (int kind = 0; kind < 2; kind++) {
        const char *const *in = kind ? images : texts;
        float got[5 * 512], alone[3][5 * 512];
        CHECK(P <= 512);
        mmt_clip_adapter *all[3][5] = {{a, a, a, a, a}, {b, b, b, b, b}, {NULL, NULL, NULL, NULL, NULL}};
        mmt_status s = kind ? mmt_clip_run_embed_image_files(run, in, mixed, 5, got) : mmt_clip_run_embed_texts(run, in, mixed, 5, got);
        CHECK_MSG(s == MMT_OK, "%s", mmt_last_error());
        for (int k = 0; k < 3; k++) {
            /* a fresh run context each time: nothing carries over between calls */
            mmt_clip_run *solo = NULL;
            CHECK_OK(mmt_clip_run_create(base, &solo));
            s = kind ? mmt_clip_run_embed_image_files(solo, in, all[k], 5, alone[k])
                     : mmt_clip_run_embed_texts(solo, in, k == 2 ? NULL : all[k], 5, alone[k]);
            CHECK_MSG(s == MMT_OK, "%s", mmt_last_error());
            mmt_clip_run_free(solo);
        }
        for (int i = 0; i < 5; i++) {
            int k = mixed[i] == a ? 0 : mixed[i] == b ? 1 : 2;
            CHECK_MSG(memcmp(got + i * P, alone[k] + i * P, (size_t)P * sizeof(float)) == 0, "%s row %d differs",
                      kind ? "image" : "text", i);
        }
        CHECK(memcmp(alone[0], alone[1], (size_t)P * sizeof(float)) != 0);
        CHECK(memcmp(alone[0], alone[2], (size_t)P * sizeof(float)) != 0);
    }
    mmt_clip_run_free(run);
    mmt_clip_adapter_close(a);
    mmt_clip_adapter_close(b);
}

static void test_bad_adapters(void) {
    mmt_clip_adapter *x = NULL;
    char missing[400];
    snprintf(missing, sizeof missing, "%s/nowhere", root);
    mmt_status s = mmt_clip_adapter_open(base, missing, &x);
    CHECK(s != MMT_OK && x == NULL && strstr(mmt_last_error(), missing) && !strchr(mmt_last_error(), '\n'));
    mmt_clip *other = NULL;
    CHECK_OK(mmt_clip_load(MODEL_DIR, &other));
    mmt_clip_adapter *foreign = NULL;
    if (other) CHECK_OK(mmt_clip_adapter_open(other, dir_a, &foreign));
    mmt_clip_run *run = NULL;
    CHECK_OK(mmt_clip_run_create(base, &run));
    const char *t[1] = {"a cat"};
    float out[512];
    mmt_clip_adapter *rows[1] = {foreign};
    s = mmt_clip_run_embed_texts(run, t, rows, 1, out);
    CHECK(s == MMT_STATUS_INVALID_ARGUMENT && strstr(mmt_last_error(), "another base model"));
    mmt_clip_run_free(run);
    mmt_clip_adapter_close(foreign);
    mmt_clip_free(other);
}

/* Runs `mmtune ARGS`, stdout into root/NAME; returns the exit code and the text (malloc'd). */
static int mmtune(const char *name, char **text, const char *args) {
    char cmd[2400], path[400];
    snprintf(path, sizeof path, "%s/%s", root, name);
    snprintf(cmd, sizeof cmd, "%s %s > %s 2>&1", MMT_BINARY, args, path);
    int st = system(cmd);
    *text = check_read_file(path, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The floats after `key":[` in the n-th line of text holding it (up to cap); the count. */
static int64_t floats_of(const char *text, const char *key, int nth, float *v, int64_t cap) {
    const char *p = text;
    for (int k = 0; p && k <= nth; k++) {
        p = strstr(p, key);
        if (p && k < nth) p += strlen(key);
    }
    if (!p) return 0;
    p = strchr(p, '[');
    int64_t n = 0;
    while (p && *p != ']' && n < cap) {
        char *end;
        v[n++] = strtof(p + 1, &end);
        p = end;
    }
    return n;
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void test_cli_named_adapters(void) {
    char args[2000], *mixed = NULL, *one = NULL;
    snprintf(args, sizeof args, "embed --model %s --adapter A=%s --adapter B=%s --text 'a cat' --use A --text 'a cat' "
             "--image %s/chelsea.jpg --use B --text 'a cat' --use base --image %s/chelsea.jpg", MODEL_DIR, dir_a, dir_b,
             IMAGES, IMAGES);
    int rc = mmtune("mixed.out", &mixed, args);
    CHECK_MSG(rc == 0 && mixed, "%s", mixed ? mixed : "");
    /* images first: chelsea with A, chelsea with base; then texts: base, A, B */
    const char *who[5] = {"A", "base", "base", "A", "B"};
    const char *single[5] = {dir_a, NULL, NULL, dir_a, dir_b};
    for (int i = 0; mixed && rc == 0 && i < 5; i++) {
        float got[512], want[512];
        int64_t n = floats_of(mixed, "\"embedding\"", i, got, 512);
        char tag[64];
        snprintf(tag, sizeof tag, "\"adapter\":\"%s\"", who[i]);
        const char *line = mixed;
        for (int k = 0; k < i && line; k++) line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL;
        CHECK_MSG(line && strstr(line, tag) && strstr(line, tag) < (strchr(line, '\n') ? strchr(line, '\n') : line + strlen(line)),
                  "line %d lacks %s", i, tag);
        if (single[i]) snprintf(args, sizeof args, "embed --model %s --adapter %s %s", MODEL_DIR, single[i],
                                i < 2 ? "--image " IMAGES "/chelsea.jpg" : "--text 'a cat'");
        else snprintf(args, sizeof args, "embed --model %s %s", MODEL_DIR, i < 2 ? "--image " IMAGES "/chelsea.jpg" : "--text 'a cat'");
        CHECK(mmtune("one.out", &one, args) == 0);
        int64_t m = one ? floats_of(one, "\"embedding\"", 0, want, 512) : 0;
        CHECK_MSG(n > 0 && n == m && max_diff(got, want, n) <= 1e-6, "row %d (%s): %lld vs %lld values, max diff %g", i,
                  who[i], (long long)n, (long long)m, n == m ? max_diff(got, want, n) : -1.0);
        free(one);
        one = NULL;
    }
    free(mixed);
    snprintf(args, sizeof args, "classify --model %s --adapter A=%s --labels cat,rocket --use A --image %s/chelsea.jpg "
             "--use base --image %s/rocket_rgba.png", MODEL_DIR, dir_a, IMAGES, IMAGES);
    rc = mmtune("classify.out", &mixed, args);
    CHECK_MSG(rc == 0 && mixed && strstr(mixed, "\"adapter\":\"A\"") && strstr(mixed, "\"adapter\":\"base\""), "%s",
              mixed ? mixed : "");
    /* the A line, without its adapter key, is the single-adapter run's line to the printed digit */
    char first[2048] = "";
    if (mixed && strchr(mixed, '\n') && (size_t)(strchr(mixed, '\n') - mixed) < sizeof first) {
        memcpy(first, mixed, (size_t)(strchr(mixed, '\n') - mixed));
        char *key = strstr(first, ",\"adapter\":\"A\"");
        if (key) memmove(key, key + 14, strlen(key + 14) + 1);
    }
    free(mixed);
    snprintf(args, sizeof args, "classify --model %s --adapter %s --labels cat,rocket --image %s/chelsea.jpg", MODEL_DIR,
             dir_a, IMAGES);
    CHECK(mmtune("classify1.out", &one, args) == 0);
    CHECK_MSG(one && first[0] && strncmp(one, first, strlen(first)) == 0, "named: %s\nsingle: %s", first, one ? one : "");
    free(one);
    snprintf(args, sizeof args, "embed --model %s --adapter A=%s --use C --text x", MODEL_DIR, dir_a);
    CHECK(mmtune("bad.out", &one, args) == 2 && strstr(one, "--use C"));
    free(one);
    snprintf(args, sizeof args, "embed --model %s --adapter A=%s --truncate --text x", MODEL_DIR, dir_a);
    CHECK(mmtune("bad.out", &one, args) == 2 && strstr(one, "--truncate"));
    free(one);
    snprintf(args, sizeof args, "embed --model %s --adapter A=%s --adapter %s --text x", MODEL_DIR, dir_a, dir_b);
    CHECK(mmtune("bad.out", &one, args) == 2);
    free(one);
}

static void test_example_program(void) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s %s %s %s > %s/example.out 2>&1", MMT_EXAMPLE_TWO_ADAPTERS, MODEL_DIR, dir_a, dir_b, root);
    int st = system(cmd);
    char path[400];
    snprintf(path, sizeof path, "%s/example.out", root);
    char *text = check_read_file(path, NULL);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "example failed: %s", text ? text : "");
    CHECK(text && strstr(text, "identical to one thread"));
    free(text);
}

static void test_train_example(void) {
    /* examples are built beside the tests, in the build folder */
    char cmd[1400], path[400];
    snprintf(cmd, sizeof cmd, "%s/example_train_adapter %s/models/mmtune-clip-tiny %s %s/trained > %s/train_example.out 2>&1",
             MMT_BUILD_DIR, MMT_SOURCE_DIR, IMAGES, root, root);
    int st = system(cmd);
    snprintf(path, sizeof path, "%s/train_example.out", root);
    char *text = check_read_file(path, NULL);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "example failed: %s", text ? text : "");
    CHECK(text && strstr(text, "step 20/20") && strstr(text, "train_adapter: ok"));
    free(text);
    mmt_clip_adapter *a = NULL;
    snprintf(path, sizeof path, "%s/trained/adapter", root);
    mmt_clip *tiny = NULL;
    CHECK_OK(mmt_clip_load(MMT_SOURCE_DIR "/models/mmtune-clip-tiny", &tiny));
    if (tiny) CHECK_OK(mmt_clip_adapter_open(tiny, path, &a));
    mmt_clip_adapter_close(a);
    mmt_clip_free(tiny);
}

int main(void) {
    if (!mkdtemp(root) || mmt_clip_load(MODEL_DIR, &base) != MMT_OK) return 1;
    const char *qv[] = {"q_proj", "v_proj"}, *kf[] = {"k_proj", "fc1"};
    mmt_peft_config cfg;
    snprintf(dir_a, sizeof dir_a, "%s/a", root);
    snprintf(dir_b, sizeof dir_b, "%s/b", root);
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_LORA));
    cfg.r = 4;
    CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, qv, 2));
    adapter_fixture_save(base, &cfg, dir_a, 0.03f);
    mmt_peft_config_free(&cfg);
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_LORA));
    cfg.r = 2;
    CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, kf, 2));
    adapter_fixture_save(base, &cfg, dir_b, -0.02f);
    mmt_peft_config_free(&cfg);
    RUN(test_mixed_rows_equal_single_adapter_calls);
    RUN(test_bad_adapters);
    RUN(test_cli_named_adapters);
    RUN(test_example_program);
    RUN(test_train_example);
    mmt_clip_free(base);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) return 1;
    return check_summary();
}
