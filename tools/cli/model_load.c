/*
 * model_load.c — loading models for the commands, with the process-wide quantization flag.
 *
 * `--int8` (and `--quantize-base int8|nf4` spelled for any command) may stand anywhere on the
 * command line of every command that loads a model; main() takes it out before the command
 * parses its own options (cli_load_flags), and every load below applies it, so embed,
 * classify, caption, eval, index, serve and the benchmarks all honour it the same way (train
 * has its own --quantize, recorded in the run). `search`
 * keeps its own --int8 (scan the index's int8 copy); --quantize-base still applies there.
 */
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "models/clip.h"
#include "models/clip_internal.h"
#include "models/git.h"

static mmt_quant_type load_quant = MMT_QUANT_NONE;

mmt_quant_type cli_load_quant(void) { return load_quant; }

int cli_load_flags(int *argc, char **argv, int keep_int8) {
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        if (!keep_int8 && !strcmp(argv[i], "--int8")) {
            load_quant = MMT_QUANT_INT8;
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
    return mmt_clip_load_quantized(dir, type == MMT_QUANT_NONE ? NULL : &o, out);
}

mmt_status cli_clip_load(const char *dir, mmt_clip **out) { return cli_clip_load_as(dir, load_quant, out); }

mmt_status cli_clip_random(const mmt_clip_config *cfg, uint64_t seed, mmt_quant_type type, mmt_clip **out) {
    mmt_quant_options o;
    mmt_quant_options_default(&o, type);
    return mmt_clip_create_random_quantized(cfg, seed, type == MMT_QUANT_NONE ? NULL : &o, out);
}

mmt_status cli_git_load(const char *dir, mmt_git **out) {
    MMT_TRY(mmt_git_load(dir, out));
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
