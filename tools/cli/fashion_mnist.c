/*
 * fashion_mnist.c — `mmtune fashion-mnist`: Fashion-MNIST's IDX files as PNG images plus a
 * JSONL of captions (data/fashion_mnist.h), the input of `mmtune train/eval`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/fashion_mnist.h"

static const char *FASHION_MNIST_HELP =
    "usage: mmtune fashion-mnist --out DIR [--split train|test] [--classes LIST] [--count-per-class N]\n"
    "                            [--seed N] [--captions N] [--idx-dir DIR]\n"
    "\n"
    "Writes Fashion-MNIST images as DIR/images/SPLIT-NNNNN.png (NNNNN: the index in the IDX file)\n"
    "and DIR/SPLIT.jsonl with one {\"image_path\", \"text\", \"label\"} line per image; the caption is\n"
    "the class name in one of 12 wordings (\"a photo of a coat.\", \"product photo: sandal\").\n"
    "With --captions N, also DIR/SPLIT_coco.json (COCO captions) with N distinct wordings of each\n"
    "image, the JSONL's first: references for captioning metrics (mmtune eval on a captioner).\n"
    "\n"
    "options:\n"
    "  --out DIR              output folder (required)\n"
    "  --split S              train (60,000 images) or test (10,000) (default train)\n"
    "  --classes LIST         comma-separated class names or digits 0-9 (default all ten):\n"
    "                         T-shirt/top, trouser, pullover, dress, coat, sandal, shirt,\n"
    "                         sneaker, bag, ankle boot (\"ankle_boot\" and \"t-shirt\" work too)\n"
    "  --count-per-class N    images of each class, a seeded choice (default 0: all)\n"
    "  --seed N               which images, their order and caption wordings (default 0)\n"
    "  --captions N           wordings per image in DIR/SPLIT_coco.json, 1..12 (default 0: no file)\n"
    "  --idx-dir DIR          folder of the IDX files (default " MMT_FASHION_MNIST_DIR ",\n"
    "                         from Debian's dataset-fashion-mnist package)\n";

/* "coat,3,ankle boot" into a class bit mask; 0 on a name that is no class. */
static uint32_t parse_classes(const char *list, char *bad, size_t bad_size) {
    uint32_t mask = 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        size_t n = strlen(tok);
        while (n && tok[n - 1] == ' ') tok[--n] = '\0';
        int c = mmt_fashion_mnist_class_index(tok);
        if (c < 0) {
            snprintf(bad, bad_size, "%s", tok);
            return 0;
        }
        mask |= 1u << c;
    }
    if (!mask) snprintf(bad, bad_size, "%s", list);
    return mask;
}

static int parse_int(const char *v, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || n < lo || n > hi) return 0;
    *out = n;
    return 1;
}

int cmd_fashion_mnist(int argc, char **argv) {
    mmt_fashion_mnist_export_params p = {.split = "train"};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(FASHION_MNIST_HELP, stdout), 0;
        if (i + 1 >= argc) return cli_usage_error("fashion-mnist: %s needs a value", a);
        const char *v = argv[++i];
        int64_t n;
        char bad[512];
        if (!strcmp(a, "--out")) p.out_dir = v;
        else if (!strcmp(a, "--idx-dir")) p.idx_dir = v;
        else if (!strcmp(a, "--split")) {
            if (strcmp(v, "train") && strcmp(v, "test")) return cli_usage_error("--split takes train or test");
            p.split = v;
        } else if (!strcmp(a, "--classes")) {
            if (!(p.classes = parse_classes(v, bad, sizeof bad)))
                return cli_usage_error("--classes: '%s' is not a Fashion-MNIST class", bad);
        } else if (!strcmp(a, "--count-per-class")) {
            if (!parse_int(v, 0, INT64_C(1) << 40, &n)) return cli_usage_error("--count-per-class needs a count >= 0");
            p.count_per_class = n;
        } else if (!strcmp(a, "--seed")) {
            if (!parse_int(v, 0, INT64_MAX, &n)) return cli_usage_error("--seed needs a number >= 0");
            p.seed = (uint64_t)n;
        } else if (!strcmp(a, "--captions")) {
            if (!parse_int(v, 1, MMT_FASHION_MNIST_TEMPLATES, &n))
                return cli_usage_error("--captions needs a number from 1 to %d", MMT_FASHION_MNIST_TEMPLATES);
            p.captions = (int)n;
        } else return cli_usage_error("fashion-mnist: unknown option '%s'", a);
    }
    if (!p.out_dir) return cli_usage_error("fashion-mnist: --out is required");
    int64_t written = 0;
    if (mmt_fashion_mnist_export(&p, &written) != MMT_OK) return cli_runtime_error();
    fprintf(stderr, "mmtune: wrote %lld %s images and %s/%s.jsonl", (long long)written, p.split, p.out_dir, p.split);
    if (p.captions) fprintf(stderr, " and %s/%s_coco.json", p.out_dir, p.split);
    fputc('\n', stderr);
    return 0;
}
