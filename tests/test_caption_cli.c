/*
 * test_caption_cli.c — the captioner from the command line, on tests/fixtures/git/tiny-cap
 * (a whole GIT snapshot made by transformers) and five photos with captions:
 *   - `train` tells a captioner by its config.json and trains LoRA, IA3, prefix tuning or the
 *     whole model; each adapter loads back through the PEFT reader (a full run writes a
 *     snapshot that loads as a GIT model), and LoRA lowers the caption loss;
 *   - methods a captioner does not take, a bad --max-caption-tokens and a caption file with
 *     a missing image are refused with a one-line error and exit code 2 or 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cli_run.h"
#include "models/git.h"
#include "peft/adapter.h"
#include "peft/adapter_folder.h"
#include "peft/prompt.h"

#define CAP MMT_FIXTURE_DIR "/git/tiny-cap"
#define IMAGES MMT_FIXTURE_DIR "/clip/images"

static char root[] = "/tmp/mmt_capcli_XXXXXX";
static char data[400];

static void write_data(void) {
    static const char *lines[5][2] = {{"chelsea.jpg", "a gray cat"},
                                      {"rocket_rgba.png", "a rocket in space"},
                                      {"coffee_portrait.jpg", "a cup of coffee"},
                                      {"camera_gray.png", "a man with a camera"},
                                      {"astronaut.png", "an astronaut with a star"}};
    snprintf(data, sizeof data, "%s/captions.jsonl", root);
    FILE *f = fopen(data, "w");
    for (int i = 0; f && i < 5; i++)
        fprintf(f, "{\"image_path\": \"%s/%s\", \"text\": \"%s\"}\n", IMAGES, lines[i][0], lines[i][1]);
    if (f) fclose(f);
}

static double json_number(const char *text, const char *key) {
    const char *p = text ? strstr(text, key) : NULL;
    return p ? atof(p + strlen(key) + 1) : -1; /* after the colon */
}

static void test_train_methods(void) {
    static const char *methods[4] = {"lora", "ia3", "prefix", "full"};
    for (int i = 0; i < 4; i++) {
        CHECK_MSG(run("train --model %s --data %s --method %s --steps 30 --batch-size 5 --lr 3e-2 --out %s/%s --quiet", CAP,
                      data, methods[i], root, methods[i]) == 0,
                  "%s: %s", methods[i], err_text ? err_text : "");
        mmt_git *m = NULL;
        mmt_git_run *r = NULL;
        char dir[500];
        snprintf(dir, sizeof dir, "%s/%s/adapter", root, methods[i]);
        if (i == 3) { /* a snapshot */
            CHECK_OK(mmt_git_load(dir, &m));
            mmt_git_free(m);
            continue;
        }
        CHECK_OK(mmt_git_load(CAP, &m));
        if (m) CHECK_OK(mmt_git_run_create(m, &r));
        mmt_adapter *ad = NULL;
        mmt_prompt *pr = NULL;
        if (r) CHECK_OK(mmt_adapter_folders_load(mmt_git_run_iface(r), dir, 0, &ad, &pr));
        CHECK(ad || pr);
        mmt_prompt_free(pr);
        mmt_adapter_free(ad);
        mmt_git_run_free(r);
        mmt_git_free(m);
    }
    /* LoRA learns the five captions: the loss of its last step well below the first's */
    char *metrics = NULL;
    char path[500];
    snprintf(path, sizeof path, "%s/lora/metrics.jsonl", root);
    metrics = check_read_file(path, NULL);
    double first = json_number(metrics, "\"loss\""), last = -1;
    for (const char *p = metrics; p && (p = strstr(p, "\"loss\"")); p++) last = json_number(p, "\"loss\"");
    CHECK_MSG(first > 0 && last > 0 && last < first / 2, "LoRA loss %.3f -> %.3f", first, last);
    free(metrics);
}

static void test_refusals(void) {
    CHECK(run("train --model %s --data %s --method adapter --out %s/x", CAP, data, root) == 2);
    CHECK(err_text && strstr(err_text, "GIT captioner") && strstr(err_text, "lora, ia3, prefix or full"));
    CHECK(run("train --model %s --data %s --method prompt --out %s/x", CAP, data, root) == 2);
    CHECK(run("train --model %s --data %s --max-caption-tokens 2 --out %s/x", CAP, data, root) == 2);
    CHECK(err_text && strstr(err_text, "--max-caption-tokens"));
    CHECK(run("train --model %s --data %s --label-smoothing 1.5 --out %s/x", CAP, data, root) == 2);
    char bad[450];
    snprintf(bad, sizeof bad, "%s/missing.jsonl", root);
    FILE *f = fopen(bad, "w");
    if (f) fprintf(f, "{\"image_path\": \"%s/no-such.png\", \"text\": \"a cat\"}\n", root), fclose(f);
    CHECK(run("train --model %s --data %s --out %s/y --quiet", CAP, bad, root) == 1);
    CHECK(err_text && strstr(err_text, "no-such.png") && count_lines(err_text) == 1);
}

int main(void) {
    if (!mkdtemp(root)) return 1;
    cli_run_setup(root);
    write_data();
    RUN(test_train_methods);
    RUN(test_refusals);
    cli_run_cleanup();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) return 1;
    return check_summary();
}
