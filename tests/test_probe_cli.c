/*
 * test_probe_cli.c — `mmtune train --method linear-probe` with its defaults on a small real
 * task, as a user runs it: 20 Fashion-MNIST images per class for training and 20 others per
 * class for testing (`mmtune fashion-mnist`, Debian's dataset-fashion-mnist; skipped without
 * it), the default model models/mmtune-clip-tiny:
 *   - no epochs or learning rate given, the fitted head scores at least 0.5 top-1 on the test
 *     images with eval --head (chance 0.1; measured 0.72; the AdamW head the defaults trained
 *     before stayed at loss ln 10);
 *   - the JSON line keeps train's keys and adds C and heldout_accuracy; the log shows one line
 *     per C of the sweep (13 decades + 6 refinements); head_config.json records the fit;
 *   - a second run into the same folder replaces OUT/adapter whole (no .tmp or .old left);
 *   - --resume is a usage error (exit 2); --steps is ignored with a warning.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "data/fashion_mnist.h"

#define MODEL MMT_SOURCE_DIR "/models/mmtune-clip-tiny"

static char tmp[256];

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void test_default_probe_learns(void) {
    int rc = run("fashion-mnist --out %s/fm --split train --count-per-class 20 --seed 1", tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    rc = run("fashion-mnist --out %s/fm --split test --count-per-class 20 --seed 2", tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    rc = run("train --model %s --data %s/fm/train.jsonl --method linear-probe --out %s/run --progress log", MODEL, tmp, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    CHECK_MSG(out_text && strstr(out_text, "\"steps\": ") && strstr(out_text, "\"final_loss\": ") &&
                  strstr(out_text, "\"adapter\": \"") && strstr(out_text, "\"C\": ") && strstr(out_text, "\"heldout_accuracy\": 0."),
              "%s", out_text);
    CHECK_MSG(count(err_text, "), loss ") == 19 && strstr(err_text, "linear probe: chose C"), "%s", err_text);
    size_t len;
    char *cfg = read_rel("%s/run/adapter/head_config.json", tmp, &len);
    CHECK(cfg && strstr(cfg, "\"fit\": {") && strstr(cfg, "\"solver\": \"lbfgs\"") && strstr(cfg, "\"heldout_examples\": 40"));
    free(cfg);
    rc = run("eval --model %s --data %s/fm/test.jsonl --head %s/run/adapter", MODEL, tmp, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    const char *acc = out_text ? strstr(out_text, "\"accuracy\": ") : NULL;
    double a = acc ? atof(acc + 12) : 0;
    printf("     test accuracy %.3f (200 images, 10 classes)\n", a);
    CHECK_MSG(a >= 0.5, "test accuracy %.3f: %s", a, out_text);
    /* again into the same folder (5 images per class, to be quick), with trainer settings that
     * do not apply */
    rc = run("fashion-mnist --out %s/fm5 --split train --count-per-class 5 --seed 3", tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    rc = run("train --model %s --data %s/fm5/train.jsonl --method linear-probe --out %s/run --quiet --steps 5 --overwrite",
             MODEL, tmp, tmp);
    CHECK_MSG(rc == 0, "%s", err_text);
    CHECK(err_text && strstr(err_text, "--steps, --epochs and --lr do not apply"));
    char ls[600];
    snprintf(ls, sizeof ls, "ls -a %s/run | grep -q -e '\\.tmp' -e '\\.old'", tmp);
    CHECK(exists("%s/run/adapter/head.safetensors", tmp) && system(ls) != 0); /* no temporary left */
    CHECK(run("train --model %s --data %s/fm/train.jsonl --method linear-probe --out %s/run --resume %s/run", MODEL, tmp, tmp,
              tmp) == 2);
    CHECK(err_text && strstr(err_text, "nothing to --resume"));
}

int main(void) {
    char idx[512];
    snprintf(idx, sizeof idx, "%s/train-images-idx3-ubyte.gz", MMT_FASHION_MNIST_DIR);
    if (access(idx, R_OK) != 0) check_skip("Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)");
    snprintf(tmp, sizeof tmp, "/tmp/mmt_probe_cli_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    cli_run_setup(tmp);
    RUN(test_default_probe_learns);
    cli_run_cleanup();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) return 1;
    return check_summary();
}
