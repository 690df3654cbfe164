/*
 * synth.c — `mmtune synth`: writes a synthetic image–caption dataset (src/data/synth.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/synth.h"

static const char *HELP =
    "usage: mmtune synth --out DIR [--domain base|shift|xray] [--seed N] [--count N | --split-sizes A,B,C]\n"
    "                    [--size PX] [--format png|jpg] [--quality Q] [--captions N]\n"
    "                    [--label-by shape|colour]\n"
    "\n"
    "Draws scenes of one to three anti-aliased shapes (colour, size, position, count and\n"
    "relations such as \"a small red circle left of a blue square\") on plain or textured\n"
    "backgrounds, with varied captions. The same seed gives the same files on any machine.\n"
    "  --out DIR          output folder (created; files in it are replaced)\n"
    "  --domain D         base (default) or shift: new shapes (hexagon, cross, ring), colours\n"
    "                     (pink, brown, cyan) and wording the base never uses (docs/data.md);\n"
    "                     or xray: chest radiographs as DICOM files with short reports\n"
    "                     (nodule, effusion, cardiomegaly, normal; docs/medical.md), labelled\n"
    "                     by finding, and vocabulary.txt, the reports' words\n"
    "  --seed N           random seed (default 0)\n"
    "  --count N          images in all, split 80/10/10 into train/val/test (default 1000)\n"
    "  --split-sizes A,B,C  train, val and test counts instead (0 skips a split)\n"
    "  --size PX          image side, 16..1024 (default 64)\n"
    "  --format F         png (default) or jpg\n"
    "  --quality Q        JPEG quality 1..100 (default 95)\n"
    "  --captions N       captions per image in the COCO files, 1..5 (default 3)\n"
    "  --label-by L       classification label: shape (default) or colour\n"
    "\n"
    "Writes images/SPLIT/NNNNNN.png, SPLIT.jsonl (image_path, text, task_type, label),\n"
    "SPLIT_coco.json (images + annotations), SPLIT_labels.jsonl (scenes whose objects share\n"
    "one shape or colour, labelled with it) and synth.json (settings and vocabulary).\n";

/* A whole decimal number in [lo, hi], or -1 with nothing set. */
static int parse_count(const char *text, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cmd_synth(int argc, char **argv) {
    mmt_synth_params p;
    mmt_synth_params_default(&p);
    long long count = -1, v;
    int have_splits = 0, format_given = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), 0;
        if (strncmp(a, "--", 2)) return cli_usage_error("synth: unexpected argument '%s'", a);
        static const char *const TAKES_VALUE[] = {"--out", "--domain", "--seed", "--count", "--split-sizes", "--size",
                                                  "--format", "--quality", "--captions", "--label-by"};
        int known = 0;
        for (size_t k = 0; k < sizeof TAKES_VALUE / sizeof *TAKES_VALUE; k++) known |= !strcmp(a, TAKES_VALUE[k]);
        if (!known) return cli_usage_error("synth: unknown option '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("synth: %s needs a value", a);
        const char *val = argv[++i];
        if (!strcmp(a, "--out")) {
            if (!val[0]) return cli_usage_error("synth: --out is empty");
            p.out_dir = val;
        } else if (!strcmp(a, "--domain")) {
            if (!strcmp(val, "base")) p.domain = MMT_SYNTH_BASE;
            else if (!strcmp(val, "shift")) p.domain = MMT_SYNTH_SHIFT;
            else if (!strcmp(val, "xray")) p.domain = MMT_SYNTH_XRAY;
            else return cli_usage_error("synth: --domain takes base, shift or xray, not '%s'", val);
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long seed = strtoull(val, &end, 10);
            if (errno || end == val || *end || val[0] == '-') return cli_usage_error("synth: --seed '%s' is not a whole number >= 0", val);
            p.seed = seed;
        } else if (!strcmp(a, "--count")) {
            if (parse_count(val, 1, 10000000, &count)) return cli_usage_error("synth: --count '%s' is not in 1..10000000", val);
        } else if (!strcmp(a, "--split-sizes")) {
            long long c[3];
            char extra;
            if (sscanf(val, "%lld,%lld,%lld%c", &c[0], &c[1], &c[2], &extra) != 3 || c[0] < 0 || c[1] < 0 ||
                c[2] < 0 || c[0] > 10000000 || c[1] > 10000000 || c[2] > 10000000 || c[0] + c[1] + c[2] == 0)
                return cli_usage_error("synth: --split-sizes '%s' is not three counts TRAIN,VAL,TEST (0..10000000, not all 0)", val);
            for (int s = 0; s < 3; s++) p.counts[s] = c[s];
            have_splits = 1;
        } else if (!strcmp(a, "--size")) {
            if (parse_count(val, 16, 1024, &v)) return cli_usage_error("synth: --size '%s' is not in 16..1024", val);
            p.size = v;
        } else if (!strcmp(a, "--format")) {
            format_given = 1;
            if (!strcmp(val, "png")) p.jpeg = 0;
            else if (!strcmp(val, "jpg") || !strcmp(val, "jpeg")) p.jpeg = 1;
            else return cli_usage_error("synth: --format takes png or jpg, not '%s'", val);
        } else if (!strcmp(a, "--quality")) {
            if (parse_count(val, 1, 100, &v)) return cli_usage_error("synth: --quality '%s' is not in 1..100", val);
            p.jpeg_quality = (int)v;
        } else if (!strcmp(a, "--captions")) {
            if (parse_count(val, 1, 5, &v)) return cli_usage_error("synth: --captions '%s' is not in 1..5", val);
            p.captions_per_image = (int)v;
        } else {
            if (!strcmp(val, "shape")) p.label_by = MMT_SYNTH_LABEL_SHAPE;
            else if (!strcmp(val, "colour") || !strcmp(val, "color")) p.label_by = MMT_SYNTH_LABEL_COLOUR;
            else return cli_usage_error("synth: --label-by takes shape or colour, not '%s'", val);
        }
    }
    if (!p.out_dir) return cli_usage_error("synth: --out DIR is required");
    if (p.domain == MMT_SYNTH_XRAY && format_given)
        return cli_usage_error("synth: --domain xray writes DICOM files (.dcm); --format is for the shape domains");
    if (count >= 0 && have_splits) return cli_usage_error("synth: give --count or --split-sizes, not both");
    if (count >= 0) {
        p.counts[MMT_SYNTH_VAL] = p.counts[MMT_SYNTH_TEST] = count / 10;
        p.counts[MMT_SYNTH_TRAIN] = count - 2 * (count / 10);
    }
    if (mmt_synth_write(&p) != MMT_OK) return cli_runtime_error();
    printf("wrote %lld train, %lld val, %lld test images (%s domain, %lldx%lld %s, seed %llu) to %s\n",
           (long long)p.counts[0], (long long)p.counts[1], (long long)p.counts[2], mmt_synth_domain_name(p.domain),
           (long long)p.size, (long long)p.size, p.domain == MMT_SYNTH_XRAY ? "DICOM" : p.jpeg ? "jpg" : "png", (unsigned long long)p.seed, p.out_dir);
    return 0;
}
