/*
 * bpe.c — `mmtune bpe`: trains a CLIP byte-level BPE vocabulary on captions
 * (src/data/bpe_train.h) and writes files that mmtune and transformers both load.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "data/bpe_train.h"

static const char *HELP =
    "usage: mmtune bpe --input captions.txt|pairs.jsonl --vocab-size N --out DIR [--min-frequency K]\n"
    "\n"
    "Trains a byte-level BPE vocabulary the way CLIP's is laid out (256 byte symbols, the same\n"
    "with </w>, one token per merge, <|startoftext|>, <|endoftext|>) on the words mmtune's\n"
    "tokenizer cuts the captions into. The same corpus and settings give identical files.\n"
    "  --input PATH         one caption per line, or a .jsonl of pairs (its \"text\" fields)\n"
    "  --vocab-size N       entries in vocab.json, specials included (>= 514)\n"
    "  --overwrite          replace an existing non-empty --out folder (otherwise refused)\n"
    "  --out DIR            output folder for vocab.json, merges.txt, tokenizer_config.json and\n"
    "                       special_tokens_map.json (written whole, then renamed into place)\n"
    "  --min-frequency K    stop early when the best pair occurs fewer than K times (default 2)\n";

int cmd_bpe(int argc, char **argv) {
    mmt_bpe_params p;
    mmt_bpe_params_default(&p);
    const char *input = NULL, *out = NULL;
    int have_size = 0, overwrite = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), 0;
        if (!strcmp(a, "--overwrite")) {
            overwrite = 1;
            continue;
        }
        if (strcmp(a, "--input") && strcmp(a, "--vocab-size") && strcmp(a, "--out") &&
            strcmp(a, "--min-frequency"))
            return cli_usage_error("bpe: unknown option '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("bpe: %s needs a value", a);
        const char *val = argv[++i];
        if (!strcmp(a, "--input")) {
            input = val;
        } else if (!strcmp(a, "--out")) {
            out = val;
        } else {
            char *end;
            errno = 0;
            long long v = strtoll(val, &end, 10);
            if (errno || end == val || *end || v < 0)
                return cli_usage_error("bpe: %s '%s' is not a whole number >= 0", a, val);
            if (!strcmp(a, "--vocab-size")) p.vocab_size = v, have_size = 1;
            else p.min_frequency = v;
        }
    }
    if (!input || !input[0]) return cli_usage_error("bpe: --input PATH is required");
    if (!out || !out[0]) return cli_usage_error("bpe: --out DIR is required");
    if (!have_size) return cli_usage_error("bpe: --vocab-size N is required");
    double t0 = mmt_now_seconds();
    mmt_bpe_vocab *v = NULL;
    if (mmt_bpe_train_file(input, &p, &v) != MMT_OK) return cli_runtime_error();
    char *tmp = NULL;
    int rc = cli_out_begin("bpe", out, overwrite, &tmp);
    if (rc == 0 && mmt_bpe_vocab_write(v, tmp) != MMT_OK) rc = cli_runtime_error();
    if ((rc = cli_out_finish(tmp, out, rc)) != 0) {
        mmt_bpe_vocab_free(v);
        return rc;
    }
    double secs = mmt_now_seconds() - t0;
    printf("wrote %lld tokens (%lld merges, %lld distinct words) to %s in %.2f s%s\n",
           (long long)mmt_bpe_vocab_size(v), (long long)mmt_bpe_merge_count(v),
           (long long)mmt_bpe_word_count(v), out, secs,
           mmt_bpe_vocab_size(v) < p.vocab_size ? " (no pair left at --min-frequency)" : "");
    mmt_bpe_vocab_free(v);
    return 0;
}
