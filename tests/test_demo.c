/*
 * test_demo.c — scripts/demo.sh (`make demo`) end to end at toy size, so the main job cannot
 * rot between runs: a few Fashion-MNIST photos per class, two LoRA steps on the embedded
 * default model and two on the default captioner, then summary.json must hold `before` and
 * `after` with recall_at_1, recall_at_5 and zero_shot_accuracy as fractions, `captioning` with
 * CIDEr-D, BLEU-4 and ROUGE-L before and after, and report.html must hold both parts. The real sizes
 * (and the +20 points the issue asks for) are measured by `make demo` itself, not here.
 * Skips (77) when Debian's dataset-fashion-mnist is not installed.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/json.h"

static void test_demo_script(void) {
    struct stat st;
    if (stat("/usr/share/datasets/fashion-mnist", &st) != 0) {
        check_skip("dataset-fashion-mnist is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    char out[512], cmd[2048], path[600];
    snprintf(out, sizeof out, "%s/demo_smoke", MMT_BUILD_DIR);
    snprintf(cmd, sizeof cmd,
             "BIN=%s OUT=%s TRAIN_PER_CLASS=4 TEST_PER_CLASS=3 STEPS=2 BATCH=8 CAP_STEPS=2 CAP_BATCH=8 bash %s/scripts/demo.sh >%s.log 2>&1",
             MMT_BINARY, out, MMT_SOURCE_DIR, out);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "demo.sh failed (%d); see %s.log", rc, out);
    snprintf(path, sizeof path, "%s/summary.json", out);
    mmt_json_doc *doc = NULL;
    CHECK_OK(mmt_json_parse_file(path, &doc));
    if (!doc) return;
    const mmt_json *root = mmt_json_root(doc);
    static const char *sides[] = {"before", "after"};
    static const char *keys[] = {"recall_at_1", "recall_at_5", "zero_shot_accuracy"};
    for (int s = 0; s < 2; s++) {
        const mmt_json *side = mmt_json_get(root, sides[s]);
        CHECK_MSG(side && side->type == MMT_JSON_OBJECT, "summary.json: no \"%s\" object", sides[s]);
        for (int k = 0; k < 3 && side; k++) {
            const mmt_json *v = mmt_json_get(side, keys[k]);
            CHECK_MSG(v && v->type == MMT_JSON_NUMBER && v->number >= 0 && v->number <= 1,
                      "summary.json: %s.%s is not a fraction", sides[s], keys[k]);
        }
    }
    const mmt_json *n = mmt_json_get(root, "test_pairs");
    CHECK(n && n->integer == 30);
    const mmt_json *cap = mmt_json_get(root, "captioning");
    CHECK_MSG(cap && cap->type == MMT_JSON_OBJECT, "summary.json: no \"captioning\" object");
    n = mmt_json_get(cap, "test_images");
    CHECK(n && n->integer == 30);
    static const char *cap_keys[] = {"cider_d", "bleu_4", "rouge_l"};
    for (int s = 0; s < 2 && cap; s++) {
        const mmt_json *side = mmt_json_get(cap, sides[s]);
        CHECK_MSG(side && side->type == MMT_JSON_OBJECT, "summary.json: no captioning.%s", sides[s]);
        for (int k = 0; k < 3 && side; k++) {
            const mmt_json *v = mmt_json_get(side, cap_keys[k]);
            CHECK_MSG(v && v->type == MMT_JSON_NUMBER && v->number >= 0 && v->number <= 10,
                      "summary.json: captioning.%s.%s is not a score", sides[s], cap_keys[k]);
        }
    }
    mmt_json_free(doc);
    snprintf(path, sizeof path, "%s/report.html", out);
    CHECK_MSG(stat(path, &st) == 0 && st.st_size > 1000, "no report at %s", path);
    char *html = check_read_file(path, NULL);
    CHECK_MSG(html && strstr(html, "<h2>Captioning</h2>") && strstr(html, "class=\"cap after\""),
              "report.html has no captioning part");
    free(html);
    snprintf(path, sizeof path, "%s/caption_run/adapter/adapter_config.json", out);
    CHECK(stat(path, &st) == 0);
    snprintf(path, sizeof path, "%s/run/adapter/adapter_config.json", out);
    CHECK(stat(path, &st) == 0);
}

int main(void) {
    RUN(test_demo_script);
    return check_summary();
}
