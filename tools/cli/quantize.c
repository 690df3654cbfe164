/*
 * quantize.c — `mmtune quantize`: a Hugging Face snapshot (CLIP or GIT) rewritten with its
 * linear weights in int8 (LLM.int8 rows) or NF4, in the layout transformers + bitsandbytes
 * save (models/quant_snapshot.h). Every mmtune command loads the result quantized; so does
 * transformers with bitsandbytes installed.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "models/clip_internal.h"
#include "models/git_config.h"
#include "models/git_internal.h"
#include "models/quant_snapshot.h"

static const char *QUANTIZE_HELP =
    "usage: mmtune quantize --model DIR --to int8|nf4 --out DIR [--overwrite]\n"
    "\n"
    "  --model DIR   a Hugging Face CLIP or GIT snapshot (float32/16 weights)\n"
    "  --to T        int8: one int8 row and one scale per output feature (bitsandbytes'\n"
    "                LLM.int8, what load_in_8bit saves); nf4: 4-bit NormalFloat in blocks\n"
    "                of 64 with double-quantized scales (load_in_4bit, QLoRA's base)\n"
    "  --out DIR     the new snapshot (written whole or not at all)\n"
    "  --overwrite   replace a non-empty --out\n"
    "\n"
    "Every linear layer is quantized except the model's last module (CLIP's text_projection,\n"
    "GIT's output head), which transformers keeps in full precision too. The snapshot loads\n"
    "in every mmtune command (embed, classify, caption, eval, serve, train --method lora:\n"
    "QLoRA) and in transformers with BitsAndBytesConfig.\n";

int cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *to = NULL, *out = NULL;
    int overwrite = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(QUANTIZE_HELP, stdout);
            return 0;
        }
        if (!strcmp(a, "--overwrite")) {
            overwrite = 1;
            continue;
        }
        const char **slot = !strcmp(a, "--model") ? &model : !strcmp(a, "--to") ? &to : !strcmp(a, "--out") ? &out : NULL;
        if (!slot) return cli_usage_error("quantize: unknown option '%s' (see --help)", a);
        if (i + 1 >= argc) return cli_usage_error("%s needs a value", a);
        *slot = argv[++i];
    }
    if (!model || !to || !out) return cli_usage_error("quantize: --model, --to and --out are required (see --help)");
    mmt_quant_type type;
    if (mmt_quant_type_parse(to, &type) != MMT_OK) return cli_usage_error("--to takes int8 or nf4");
    int is_git = 0;
    if (mmt_snapshot_is_git(model, &is_git) != MMT_OK) return cli_runtime_error();
    mmt_clip *clip = NULL;
    mmt_git *git = NULL;
    if ((is_git ? mmt_git_load(model, &git) : mmt_clip_load(model, &clip)) != MMT_OK) return cli_runtime_error();
    const mmt_qlinears *sets[2];
    int64_t n_sets = 0, n = 0;
    mmt_weights *weights;
    if (git) {
        sets[n_sets++] = &git->qlinears;
        sets[n_sets++] = &git->vision->qlinears;
        weights = git->weights;
    } else {
        sets[n_sets++] = &clip->qlinears;
        weights = clip->weights;
    }
    char *tmp = NULL;
    int rc = cli_out_begin("quantize", out, overwrite, &tmp);
    if (rc == 0 && mmt_quant_snapshot_write(weights, sets, n_sets, model, tmp, type, &n) != MMT_OK)
        rc = cli_runtime_error();
    rc = cli_out_finish(tmp, out, rc);
    if (rc == 0) printf("{\"model\": \"%s\", \"to\": \"%s\", \"linears\": %lld, \"out\": \"%s\"}\n", model, to, (long long)n, out);
    mmt_git_free(git);
    mmt_clip_free(clip);
    return rc;
}
