/*
 * wordpiece.c — `mmtune wordpiece`: a BERT-style WordPiece vocabulary from captions
 * (src/data/wordpiece_build.h), written as the tokenizer.json + tokenizer_config.json that
 * transformers' BertTokenizer saves, for `mmtune init --family git`.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "data/wordpiece_build.h"

static const char *HELP =
    "usage: mmtune wordpiece --input captions.txt|pairs.jsonl --out DIR [--min-frequency N]\n"
    "                        [--model-max-length N] [--overwrite]\n"
    "\n"
    "Builds a BERT-style WordPiece vocabulary from the words mmtune's BERT tokenizer cuts the\n"
    "captions into (lower-cased, accents stripped, punctuation split off): [PAD] [UNK] [CLS]\n"
    "[SEP] [MASK] as ids 0..4, every word seen at least N times (most frequent first), then\n"
    "single characters and their ## continuations, so that any lower-case ASCII word and every\n"
    "word of the captions can be tokenized. The same captions give identical files.\n"
    "  --input PATH           one caption per line, or a .jsonl of pairs (its \"text\" fields)\n"
    "  --out DIR              output folder for tokenizer.json and tokenizer_config.json (written\n"
    "                         whole, then renamed into place)\n"
    "  --overwrite            replace an existing non-empty --out folder (otherwise refused)\n"
    "  --min-frequency N      occurrences a word needs to become a token (default 2)\n"
    "  --model-max-length N   tokenizer_config.json's model_max_length (default 512)\n";

int cmd_wordpiece(int argc, char **argv) {
    mmt_wordpiece_build_params p;
    mmt_wordpiece_build_params_default(&p);
    const char *input = NULL, *out = NULL;
    int overwrite = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), 0;
        if (!strcmp(a, "--overwrite")) {
            overwrite = 1;
            continue;
        }
        if (strcmp(a, "--input") && strcmp(a, "--out") && strcmp(a, "--min-frequency") &&
            strcmp(a, "--model-max-length"))
            return cli_usage_error("wordpiece: unknown option '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("wordpiece: %s needs a value", a);
        const char *val = argv[++i];
        if (!strcmp(a, "--input")) {
            input = val;
        } else if (!strcmp(a, "--out")) {
            out = val;
        } else {
            char *end;
            errno = 0;
            long long v = strtoll(val, &end, 10);
            if (errno || end == val || *end || v < 1)
                return cli_usage_error("wordpiece: %s '%s' is not a whole number >= 1", a, val);
            if (!strcmp(a, "--min-frequency")) p.min_frequency = v;
            else p.model_max_length = v;
        }
    }
    if (!input || !input[0]) return cli_usage_error("wordpiece: --input PATH is required");
    if (!out || !out[0]) return cli_usage_error("wordpiece: --out DIR is required");
    double t0 = mmt_now_seconds();
    mmt_wordpiece_vocab *v = NULL;
    if (mmt_wordpiece_build_file(input, &p, &v) != MMT_OK) return cli_runtime_error();
    char *tmp = NULL;
    int rc = cli_out_begin("wordpiece", out, overwrite, &tmp);
    if (rc == 0 && mmt_wordpiece_vocab_write(v, tmp) != MMT_OK) rc = cli_runtime_error();
    if ((rc = cli_out_finish(tmp, out, rc)) == 0)
        printf("wrote %lld tokens (%lld of %lld distinct words seen >= %lld times) to %s in %.2f s\n",
               (long long)mmt_wordpiece_vocab_size(v), (long long)mmt_wordpiece_vocab_word_tokens(v),
               (long long)mmt_wordpiece_vocab_distinct_words(v), (long long)p.min_frequency, out,
               mmt_now_seconds() - t0);
    mmt_wordpiece_vocab_free(v);
    return rc;
}
