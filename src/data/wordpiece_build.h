/*
 * wordpiece_build.h — a BERT-style WordPiece vocabulary made from a caption corpus
 * (`mmtune wordpiece`), written as the tokenizer.json and tokenizer_config.json that
 * transformers 5 saves for BertTokenizer(vocab=..., model_max_length=...), byte for byte.
 *
 * The words counted are exactly those data/wordpiece.h cuts a text into before WordPiece:
 * BertNormalizer (clean text, CJK spacing, lower case, accents stripped) and BertPreTokenizer
 * (split on whitespace, punctuation isolated), run by mmt_wordpiece_pretokenize on a tokenizer
 * of the same settings as the one written.
 *
 * Id layout (docs/default_captioner.md):
 *   0 [PAD]  1 [UNK]  2 [CLS]  3 [SEP]  4 [MASK]
 *   then every word seen at least min_frequency times (and at most 100 characters, BERT's
 *        max_input_chars_per_word), most frequent first, ties in byte order;
 *   then every single character not already there: the printable ASCII ones that survive
 *        lower-casing (! .. ~ without A-Z) and every character of every word seen, in code
 *        point order;
 *   then "##" + each of those characters that can continue a word (neither punctuation nor a
 *        CJK ideograph, which the pre-tokenizer always isolates), in code point order.
 * So every lower-case ASCII word, and every word of the corpus, tokenizes without [UNK].
 * The result depends only on the multiset of words and the settings: the same corpus gives
 * byte-identical files.
 *
 * Usage:
 *   mmt_wordpiece_build_params p; mmt_wordpiece_build_params_default(&p); p.min_frequency = 3;
 *   mmt_wordpiece_vocab *v;
 *   MMT_TRY(mmt_wordpiece_build_file("captions.jsonl", &p, &v));  // or mmt_wordpiece_build(texts, n, ...)
 *   MMT_TRY(mmt_wordpiece_vocab_write(v, "tok/"));               // tokenizer.json, tokenizer_config.json
 *   mmt_wordpiece_vocab_free(v);
 */
#ifndef MMT_DATA_WORDPIECE_BUILD_H
#define MMT_DATA_WORDPIECE_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* The special tokens' ids. */
enum {
    MMT_WORDPIECE_PAD_ID = 0,
    MMT_WORDPIECE_UNK_ID = 1,
    MMT_WORDPIECE_CLS_ID = 2,
    MMT_WORDPIECE_SEP_ID = 3,
    MMT_WORDPIECE_MASK_ID = 4,
    MMT_WORDPIECE_N_SPECIAL = 5
};

typedef struct mmt_wordpiece_build_params {
    int64_t min_frequency;    /* a word becomes a token when seen this often (>= 1; default 2) */
    int64_t model_max_length; /* tokenizer_config.json's (>= 1; default 512, BERT's and GIT's) */
} mmt_wordpiece_build_params;

typedef struct mmt_wordpiece_vocab mmt_wordpiece_vocab;

void mmt_wordpiece_build_params_default(mmt_wordpiece_build_params *p);

/* Builds the vocabulary of n UTF-8 texts. Fails with one line when a setting is out of range,
 * a text is not valid UTF-8 (naming its index) or the texts hold no word. */
mmt_status mmt_wordpiece_build(const char *const *texts, int64_t n, const mmt_wordpiece_build_params *p,
                               mmt_wordpiece_vocab **out);

/* The same from a file: a path ending in .jsonl is read as pairs (data/pairs.h; the "text"
 * fields, image files are not checked), anything else as one caption per line (blank lines
 * skipped). Errors name the file. */
mmt_status mmt_wordpiece_build_file(const char *path, const mmt_wordpiece_build_params *p,
                                    mmt_wordpiece_vocab **out);

/* Writes tokenizer.json and tokenizer_config.json into dir (created if missing; those two
 * files are replaced, each atomically). */
mmt_status mmt_wordpiece_vocab_write(const mmt_wordpiece_vocab *v, const char *dir);

int64_t mmt_wordpiece_vocab_size(const mmt_wordpiece_vocab *v);       /* tokens, specials included */
int64_t mmt_wordpiece_vocab_word_tokens(const mmt_wordpiece_vocab *v); /* corpus words that became tokens */
int64_t mmt_wordpiece_vocab_distinct_words(const mmt_wordpiece_vocab *v); /* distinct words seen */
/* The token of id (a NUL-terminated string owned by v), or NULL outside 0..size-1. */
const char *mmt_wordpiece_vocab_token(const mmt_wordpiece_vocab *v, int64_t id);
void mmt_wordpiece_vocab_free(mmt_wordpiece_vocab *v); /* accepts NULL */

#endif
