/*
 * test_synth_cli.c — `mmtune synth` as a user runs it: a small run writes the files it
 * promises and prints one summary line; --help exits 0; every bad argument is a usage error
 * (exit 2) on one stderr line; an unwritable --out is a runtime error (exit 1) on one line.
 */
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static char tmp[256], out_path[320], err_path[320];
static char *out_text, *err_text;

static int run(const char *fmt, ...) {
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s synth %s >%s 2>%s </dev/null", MMT_BINARY, args, out_path, err_path);
    int status = system(cmd);
    free(out_text);
    free(err_text);
    out_text = check_read_file(out_path, NULL);
    err_text = check_read_file(err_path, NULL);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int lines(const char *s) {
    int n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

static int exists(const char *name) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    struct stat st;
    return stat(p, &st) == 0;
}

static void test_writes_dataset(void) {
    CHECK(run("--out %s/d --domain shift --seed 5 --split-sizes 4,1,1 --size 32 --format jpg", tmp) == 0);
    CHECK(out_text && strstr(out_text, "wrote 4 train, 1 val, 1 test") && lines(out_text) == 1);
    CHECK(exists("d/train.jsonl") && exists("d/val_coco.json") && exists("d/test_labels.jsonl") && exists("d/synth.json"));
    CHECK(exists("d/images/train/000003.jpg") && !exists("d/images/train/000004.jpg"));
    CHECK(run("--out %s/x --domain xray --split-sizes 3,0,2 --size 32", tmp) == 0);
    CHECK(out_text && strstr(out_text, "wrote 3 train, 0 val, 2 test images (xray domain, 32x32 DICOM"));
    CHECK(exists("x/images/train/000002.dcm") && exists("x/images/test/000001.dcm") && exists("x/vocabulary.txt") &&
          exists("x/test_coco.json") && exists("x/train_labels.jsonl"));
    CHECK(run("--out %s/e --count 20", tmp) == 0);
    CHECK(out_text && strstr(out_text, "wrote 16 train, 2 val, 2 test"));
    CHECK(exists("e/images/val/000001.png"));
    CHECK(run("--help") == 0 && out_text && strstr(out_text, "--split-sizes"));
}

static void test_bad_arguments(void) {
    static const char *bad[][2] = {
        {"--count 5", "--out DIR is required"},
        {"--out %s/x --domain moon", "--domain takes base, shift or xray"},
        {"--out %s/x --domain xray --format png", "--domain xray writes DICOM files"},
        {"--out %s/x --size 8", "--size '8'"},
        {"--out %s/x --size 64px", "--size '64px'"},
        {"--out %s/x --format gif", "--format takes png or jpg"},
        {"--out %s/x --split-sizes 1,2", "--split-sizes '1,2'"},
        {"--out %s/x --split-sizes 0,0,0", "--split-sizes '0,0,0'"},
        {"--out %s/x --count 0", "--count '0'"},
        {"--out %s/x --seed -1", "--seed '-1'"},
        {"--out %s/x --count 5 --split-sizes 1,1,1", "not both"},
        {"--out %s/x --quality 101", "--quality '101'"},
        {"--out %s/x --label-by size", "--label-by takes shape or colour"},
        {"--out %s/x --colour red", "unknown option '--colour'"},
        {"--out", "--out needs a value"},
        {"stray", "unexpected argument 'stray'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = run(bad[i][0], tmp);
        CHECK_MSG(rc == 2, "'%s' exited %d", bad[i][0], rc);
        CHECK_MSG(err_text && strstr(err_text, bad[i][1]) && lines(err_text) == 1, "'%s' printed '%s'", bad[i][0],
                  err_text ? err_text : "");
    }
    char file[400];
    snprintf(file, sizeof file, "%s/a_file", tmp);
    FILE *f = fopen(file, "w");
    if (f) fclose(f);
    CHECK(run("--out %s/out --count 3", file) == 1);
    CHECK_MSG(err_text && !strncmp(err_text, "mmtune: error: ", 15) && strstr(err_text, "a_file") && lines(err_text) == 1,
              "'%s'", err_text ? err_text : "");
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mmt_test_synth_cli_XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    snprintf(out_path, sizeof out_path, "%s/stdout", tmp);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmp);
    RUN(test_writes_dataset);
    RUN(test_bad_arguments);
    free(out_text);
    free(err_text);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return check_summary();
}
