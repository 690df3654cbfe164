/*
 * model_load.c — loading models for the commands, with the process-wide quantization and
 * DICOM window flags.
 *
 * `--int8` (and `--quantize-base int8|nf4` spelled for any command) may stand anywhere on the
 * command line of every command that loads a model; main() takes it out before the command
 * parses its own options (cli_load_flags), and every load below applies it, so embed,
 * classify, caption, eval, index, serve and the benchmarks all honour it the same way (train
 * has its own --quantize, recorded in the run). `search`
 * keeps its own --int8 (scan the index's int8 copy); --quantize-base still applies there.
 *
 * `--no-prepack` is taken out the same way: the inference loads below then leave the fp32
 * linears unpacked (mmt_clip_prepack: less memory, the GEMMs pack per call; same results).
 *
 * `--window CENTER,WIDTH` is taken out the same way: every model loaded below renders DICOM
 * image files with that linear VOI window instead of each file's own (its Window
 * Center/Width, else min-max; docs/data.md "DICOM"), so embed, classify, caption, eval and
 * index read DICOM alike; serve passes it on to the images uploaded to it (cli_load_dicom).
 */
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "models/clip.h"
#include "models/clip_internal.h"
#include "models/git.h"

static mmt_quant_type load_quant = MMT_QUANT_NONE;
static mmt_dicom_options load_dicom; /* --window; zero = each DICOM file's own rule */
static int load_prepack = 1;          /* --no-prepack clears it */

mmt_quant_type cli_load_quant(void) { return load_quant; }
const mmt_dicom_options *cli_load_dicom(void) { return &load_dicom; }
int cli_load_prepack(void) { return load_prepack; }

int cli_load_flags(int *argc, char **argv, int keep_int8) {
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        if (!keep_int8 && !strcmp(argv[i], "--int8")) {
            load_quant = MMT_QUANT_INT8;
            continue;
        }
        if (!strcmp(argv[i], "--no-prepack")) {
            load_prepack = 0;
            continue;
        }
        if (!strcmp(argv[i], "--window")) {
            if (i + 1 >= *argc) return cli_usage_error("--window takes CENTER,WIDTH (e.g. 40,400)");
            if (mmt_dicom_window_parse(argv[i + 1], "--window", &load_dicom) != MMT_OK)
                return cli_usage_error("%s", mmt_last_error());
            i++;
            continue;
        }
        if (!strcmp(argv[i], "--quantize-base")) {
            if (i + 1 >= *argc || mmt_quant_type_parse(argv[i + 1], &load_quant) != MMT_OK)
                return cli_usage_error("--quantize-base takes int8 or nf4");
            i++;
            continue;
        }
        argv[out++] = argv[i];
    }
    *argc = out;
    return 0;
}

mmt_status cli_clip_load_as(const char *dir, mmt_quant_type type, mmt_clip **out) {
    mmt_quant_options o;
    mmt_quant_options_default(&o, type);
    MMT_TRY(mmt_clip_load_quantized(dir, type == MMT_QUANT_NONE ? NULL : &o, out));
    mmt_clip_set_dicom_options(*out, &load_dicom);
    return MMT_OK;
}

mmt_status cli_clip_load(const char *dir, mmt_clip **out) { return cli_clip_load_as(dir, load_quant, out); }

mmt_status cli_clip_load_inference(const char *dir, mmt_clip **out) {
    MMT_TRY(cli_clip_load(dir, out));
    mmt_status s = load_prepack ? mmt_clip_prepack(*out) : MMT_OK;
    if (s != MMT_OK) {
        mmt_clip_free(*out);
        *out = NULL;
    }
    return s;
}

mmt_status cli_clip_random(const mmt_clip_config *cfg, uint64_t seed, mmt_quant_type type, mmt_clip **out) {
    mmt_quant_options o;
    mmt_quant_options_default(&o, type);
    MMT_TRY(mmt_clip_create_random_quantized(cfg, seed, type == MMT_QUANT_NONE ? NULL : &o, out));
    mmt_clip_set_dicom_options(*out, &load_dicom);
    return MMT_OK;
}

mmt_status cli_git_load(const char *dir, mmt_git **out) {
    MMT_TRY(mmt_git_load(dir, out));
    mmt_git_set_dicom_options(*out, &load_dicom);
    if (load_quant == MMT_QUANT_NONE) return MMT_OK;
    mmt_quant_options o;
    mmt_quant_options_default(&o, load_quant);
    mmt_status s = mmt_git_quantize(*out, &o);
    if (s != MMT_OK) {
        mmt_git_free(*out);
        *out = NULL;
    }
    return s;
}

mmt_status cli_git_load_inference(const char *dir, mmt_git **out) {
    MMT_TRY(cli_git_load(dir, out));
    mmt_status s = load_prepack ? mmt_git_prepack(*out) : MMT_OK;
    if (s != MMT_OK) {
        mmt_git_free(*out);
        *out = NULL;
    }
    return s;
}
