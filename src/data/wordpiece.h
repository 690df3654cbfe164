/*
 * wordpiece.h — BERT's WordPiece tokenizer from a Hugging Face tokenizer.json, id for id
 * equal to transformers 5 (BertTokenizer) and the tokenizers library.
 *
 * This is the tokenizer of BERT-vocabulary models such as Microsoft's GIT captioners
 * (bert-base-uncased, model_max_length 512). The pipeline, each step as tokenizers does it:
 *   added tokens  split off first: "normalized": false ones ([CLS], [SEP], [PAD], [MASK],
 *                 [UNK]) in the raw text, "normalized": true ones in the normalised text;
 *                 lstrip / rstrip take the whitespace beside them along;
 *   normalizer    BertNormalizer (clean_text: drop NUL, U+FFFD and control/format/private
 *                 characters, whitespace -> " "; handle_chinese_chars: spaces around CJK
 *                 ideographs; strip_accents (null: follows lowercase): NFD, drop nonspacing
 *                 marks; lowercase: char::to_lowercase) or none;
 *   pre_tokenizer BertPreTokenizer (split on whitespace, isolate punctuation) or none;
 *   model         WordPiece: greedy longest match first, continuing pieces prefixed "##", a
 *                 word longer than max_input_chars_per_word (or with no match) -> [UNK];
 *   post          the post-processor's frame, [CLS] ... [SEP] for BERT;
 *   decode        WordPiece decoder ("##" pieces joined, others after a space, its per-token
 *                 clean-up), then transformers' clean_up_tokenization when
 *                 tokenizer_config.json sets clean_up_tokenization_spaces (transformers 5's
 *                 default is false).
 * With a tokenizer_config.json whose tokenizer_class is BertTokenizer(Fast), the settings
 * transformers 5 takes from it win over tokenizer.json's, as BertTokenizer.__init__ rebuilds
 * the pipeline from them: do_lower_case (default true), strip_accents (default null),
 * tokenize_chinese_chars (default true), unk_token (default [UNK]), "##" with 100 characters
 * per word, and a WordPiece decoder with clean-up. Added tokens and the post-processor come
 * from tokenizer.json. Any other component type fails with one line naming the file and the
 * component. See docs/tokenizers.md.
 *
 * Usage:
 *   mmt_wordpiece *wp;
 *   MMT_TRY(mmt_wordpiece_load_dir("models/git-base", &wp));   // tokenizer.json (+ config)
 *   int32_t ids[512]; int64_t n;
 *   MMT_TRY(mmt_wordpiece_encode(wp, text, strlen(text), 1, ids, 512, &n));
 *   // [CLS] ... [SEP]; min(n, 512) ids written, n > 512 means truncated ([SEP] stays last)
 *   char out[1024]; size_t len;
 *   MMT_TRY(mmt_wordpiece_decode(wp, ids, n < 512 ? n : 512, 1, out, sizeof out, &len));
 *   mmt_wordpiece_free(wp);
 *
 * Thread safety: a loaded tokenizer is read-only; encode and decode may run concurrently.
 */
#ifndef MMT_DATA_WORDPIECE_H
#define MMT_DATA_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "data/tokenizer.h" /* mmt_pretoken_fn */

typedef struct mmt_wordpiece mmt_wordpiece;

typedef struct mmt_wordpiece_info {
    int64_t vocab_size;       /* largest id + 1 (model vocabulary and added tokens) */
    int64_t model_max_length; /* tokenizer_config.json's (512 for BERT); 0 when not given */
    int32_t cls, sep;         /* the frame's first and last id; -1 when it has none */
    int32_t pad, unk, mask;   /* pad_token / unk_token / mask_token ([PAD], [UNK], [MASK]
                                 by default); -1 where the vocabulary lacks them */
    int64_t n_prefix, n_suffix; /* ids the frame puts before / after the text (1 and 1) */
    int clean_up_tokenization_spaces; /* tokenizer_config.json's, default false */
} mmt_wordpiece_info;

/* Reads tokenizer.json and, when tokenizer_config_path is not NULL, tokenizer_config.json
 * (model_max_length, clean_up_tokenization_spaces, special token names, and BertTokenizer's
 * settings as above). Errors name the file and the component or field. */
mmt_status mmt_wordpiece_load_json(const char *tokenizer_json_path, const char *tokenizer_config_path,
                                   mmt_wordpiece **out);
/* dir/tokenizer.json, with dir/tokenizer_config.json when it exists. */
mmt_status mmt_wordpiece_load_dir(const char *dir, mmt_wordpiece **out);
/* From parsed documents (config may be NULL); `what` names tokenizer.json in messages and
 * `config_what` the config. The tokenizer copies what it keeps. */
struct mmt_json;
mmt_status mmt_wordpiece_from_json(const struct mmt_json *root, const char *what,
                                   const struct mmt_json *config, const char *config_what,
                                   mmt_wordpiece **out);
void mmt_wordpiece_free(mmt_wordpiece *t); /* accepts NULL */

const mmt_wordpiece_info *mmt_wordpiece_info_of(const mmt_wordpiece *t);

/* Encodes len bytes of UTF-8 text; with add_special, framed by the post-processor
 * ([CLS] ids [SEP]). Writes at most `capacity` ids. A longer sequence is truncated like
 * transformers' truncation=True, max_length=capacity: the text's ids are cut so that the
 * frame still fits, the frame is kept. *n_total receives the untruncated length, so
 * n_total > capacity signals truncation. capacity 0 (ids may be NULL) only counts; with
 * add_special, a capacity below the frame's size is refused. Invalid UTF-8 fails with
 * MMT_STATUS_BAD_FORMAT naming the offset. */
mmt_status mmt_wordpiece_encode(const mmt_wordpiece *t, const char *text, size_t len, int add_special,
                                int32_t *ids, int64_t capacity, int64_t *n_total);

/* A list of words (or phrases) as generation's word sequences (gen/words.h): each encoded
 * alone without special tokens, back to back in *ids (mmt_malloc'd) with *lengths
 * (mmt_malloc'd, *count of them). Trailing spaces and CRs are ignored; words that encode to
 * nothing (empty, only spaces) are skipped, and none left is BAD_FORMAT. Errors name the
 * word's index. */
mmt_status mmt_wordpiece_word_sequences(const mmt_wordpiece *t, const char *const *words, int64_t n, int32_t **ids,
                                        int64_t **lengths, int64_t *count);
/* For allowed words (captions made only of them): an error naming the first of the n
 * sequences (ids, lengths, as mmt_wordpiece_word_sequences gives them) that holds [UNK] or a
 * frame or padding token ([CLS], [SEP], [PAD], [MASK]): a caption could never write it, and
 * a list of only such words would leave nothing but the end of the caption. */
mmt_status mmt_wordpiece_check_writable(const mmt_wordpiece *t, const int32_t *ids, const int64_t *lengths, int64_t n);

/* Ids back to text as transformers' decode(ids, skip_special_tokens=skip_special) does.
 * Writes a NUL-terminated string of at most capacity bytes (cut at a character boundary);
 * *len receives the full length (excluding the NUL). An id that is neither in the vocabulary
 * nor an added token fails with MMT_STATUS_INVALID_ARGUMENT (tokenizers would drop it). */
mmt_status mmt_wordpiece_decode(const mmt_wordpiece *t, const int32_t *ids, int64_t n, int skip_special,
                                char *out, size_t capacity, size_t *len);

/* The id of a vocabulary or added token (exact bytes), or -1. */
int32_t mmt_wordpiece_token_to_id(const mmt_wordpiece *t, const char *token, size_t len);
/* The token of an id, or NULL: an added token's text first (its content, or for a
 * "normalized" one its normalised form, as tokenizers 0.23's id_to_token gives), else the
 * vocabulary string. */
const char *mmt_wordpiece_id_to_token(const mmt_wordpiece *t, int32_t id);

/* Runs encode's front half: added tokens are split off (and skipped), the rest normalised and
 * pre-tokenised; fn(ctx, word, len) gets each word's UTF-8 bytes, in order, before WordPiece
 * cuts it. An error from fn stops the walk and is returned. */
mmt_status mmt_wordpiece_pretokenize(const mmt_wordpiece *t, const char *text, size_t len,
                                     mmt_pretoken_fn fn, void *ctx);

/* ---- generated tables (wordpiece_tables.c) ---- */
/* Character classes of BertNormalizer / BertPreTokenizer, probed from tokenizers. */
enum {
    MMT_WP_REMOVE = 1 << 0,   /* clean_text drops it (NUL, U+FFFD, Cc/Cf/Co but \t \n \r) */
    MMT_WP_TO_SPACE = 1 << 1, /* clean_text turns it into " " (whitespace but " ") */
    MMT_WP_MARK = 1 << 2,     /* a nonspacing mark that strip_accents drops (after NFD) */
    MMT_WP_CJK = 1 << 3,      /* handle_chinese_chars puts spaces around it */
    MMT_WP_PUNCT = 1 << 4,    /* BertPreTokenizer isolates it (ASCII or Unicode punctuation) */
    MMT_WP_SPACE = 1 << 5     /* BertPreTokenizer splits on it (char::is_whitespace) */
};
extern const uint32_t mmt_wordpiece_class_table[]; /* (first cp << 8) | flags, sorted */
extern const int64_t mmt_wordpiece_class_count;

#endif
