/*
 * bpe_train.h — trains a CLIP-compatible byte-level BPE vocabulary on a caption corpus.
 *
 * The words counted are exactly the pre-tokens mmt_tokenizer_encode sees (the fast mode's
 * NFC, whitespace folding, lower-casing and CLIP regex, via mmt_tokenizer_pretokenize), each
 * spelled in byte-level symbols with "</w>" on its last one. Training starts from CLIP's
 * alphabet and repeatedly merges the most frequent adjacent pair, so the files it writes load
 * in data/tokenizer.h and in transformers' CLIPTokenizer.from_pretrained(DIR) alike.
 *
 * Id layout (CLIP's, tokenization_clip.py / open_clip): 0..255 the byte symbols in
 * bytes_to_unicode order, 256..511 the same + "</w>", then one id per new merged token in
 * merge order, then <|startoftext|>, <|endoftext|>.
 *
 * Tie-break: among pairs of equal count the one with the smaller (left id, right id), compared
 * left first, is merged first. Ids are assigned in merge order, so the whole run depends only
 * on the corpus (its order included only through which words exist) and the settings: the
 * same input gives byte-identical files.
 *
 * A merge whose joined string already exists (the same token reached by another split) is
 * recorded in merges.txt but adds no vocabulary entry, as HF tokenizers' trainer does.
 *
 * Usage:
 *   mmt_bpe_params p; mmt_bpe_params_default(&p); p.vocab_size = 4096;
 *   mmt_bpe_vocab *v;
 *   MMT_TRY(mmt_bpe_train_file("captions.txt", &p, &v));   // or mmt_bpe_train(texts, n, ...)
 *   MMT_TRY(mmt_bpe_vocab_write(v, "out/"));               // vocab.json, merges.txt, configs
 *   mmt_bpe_vocab_free(v);
 */
#ifndef MMT_DATA_BPE_TRAIN_H
#define MMT_DATA_BPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* 256 byte symbols, their 256 "</w>" forms and the two specials. */
#define MMT_BPE_BASE_VOCAB 514

typedef struct mmt_bpe_params {
    int64_t vocab_size;    /* entries in vocab.json, specials included; >= MMT_BPE_BASE_VOCAB */
    int64_t min_frequency; /* stop when the best pair occurs fewer times (default 2) */
} mmt_bpe_params;

typedef struct mmt_bpe_vocab mmt_bpe_vocab;

void mmt_bpe_params_default(mmt_bpe_params *p); /* vocab_size 8192, min_frequency 2 */

/* Trains on n UTF-8 texts. Fails with a one-line message when the settings are out of range
 * or the texts hold no word. Training may stop below vocab_size when no pair reaches
 * min_frequency; mmt_bpe_vocab_size tells how many entries were made. */
mmt_status mmt_bpe_train(const char *const *texts, int64_t n, const mmt_bpe_params *p,
                         mmt_bpe_vocab **out);

/* Reads the corpus from a file and trains on it: a path ending in .jsonl is read as pairs
 * (data/pairs.h; the "text" fields, image files are not checked), anything else as plain
 * text with one caption per line (blank lines skipped). */
mmt_status mmt_bpe_train_file(const char *path, const mmt_bpe_params *p, mmt_bpe_vocab **out);

/* Writes vocab.json, merges.txt ("#version: 0.2" header), tokenizer_config.json and
 * special_tokens_map.json into dir (created if missing; those files are replaced). */
mmt_status mmt_bpe_vocab_write(const mmt_bpe_vocab *v, const char *dir);

int64_t mmt_bpe_vocab_size(const mmt_bpe_vocab *v);  /* entries, specials included */
int64_t mmt_bpe_merge_count(const mmt_bpe_vocab *v); /* lines after the merges.txt header */
int64_t mmt_bpe_word_count(const mmt_bpe_vocab *v);  /* distinct words trained on */
void mmt_bpe_vocab_free(mmt_bpe_vocab *v);           /* accepts NULL */

#endif
