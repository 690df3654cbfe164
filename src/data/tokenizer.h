/*
 * tokenizer.h — the CLIP byte-level BPE tokenizer, id-for-id equal to Hugging Face's.
 *
 * Loads a CLIP vocab.json + merges.txt (the files of any HF CLIP snapshot), or the
 * tokenizer.json transformers 5 writes instead, and turns UTF-8 text into [BOS] + ids + [EOS]. Two modes reproduce the two reference tokenizers:
 *   MMT_TOKENIZER_FAST (default): transformers CLIPTokenizerFast, i.e. what AutoTokenizer and
 *     CLIPProcessor load (HF tokenizers: NFC, \s+ -> " ", lowercase, split regex, byte-level
 *     BPE with </w>). Checked against transformers 5.x.
 *   MMT_TOKENIZER_SLOW: the Python CLIPTokenizer of transformers 4.x when ftfy is NOT
 *     installed (BERT BasicTokenizer cleaning: drops control/format/unassigned characters,
 *     spaces out CJK ideographs, NFC, whitespace split, str.lower; then the same regex/BPE).
 * The two differ only on unusual text (zero-width characters, CJK runs, final sigma, ...);
 * plain ASCII gives the same ids.
 *
 * Usage:
 *   mmt_tokenizer *tok;
 *   MMT_TRY(mmt_tokenizer_load("vocab.json", "merges.txt", &tok));
 *   int32_t ids[77]; int64_t n;
 *   MMT_TRY(mmt_tokenizer_encode(tok, text, strlen(text), ids, 77, &n));
 *   // min(n, 77) ids written; n > 77 means the text was truncated (EOS is still last)
 *   mmt_tokenizer_free(tok);
 *
 * Thread safety: encode and decode may run concurrently on one tokenizer (the BPE cache is
 * guarded by a mutex). set_mode must not race with encode.
 */
#ifndef MMT_DATA_TOKENIZER_H
#define MMT_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* The CLIP text context length (PRETRAINED_POSITIONAL_EMBEDDINGS_SIZES in transformers). */
#define MMT_CLIP_CONTEXT_LENGTH 77

typedef struct mmt_tokenizer mmt_tokenizer;

typedef enum mmt_tokenizer_mode {
    MMT_TOKENIZER_FAST = 0,
    MMT_TOKENIZER_SLOW = 1
} mmt_tokenizer_mode;

/* Reads vocab.json ({token: id}) and merges.txt ("#version" header, then "left right" per
 * line, rank = order). Both specials <|startoftext|> and <|endoftext|> and all 512 byte
 * tokens (with and without </w>) must be in the vocabulary; every merge's parts and result
 * must be too; two tokens may not share an id. A merges.txt whose line 1 is not "#version"
 * loads with a warning (mmt_log): fast mode keeps that merge as transformers 5 does, slow
 * mode drops it as transformers 4 does. Errors name the file (and line for merges.txt). */
mmt_status mmt_tokenizer_load(const char *vocab_json_path, const char *merges_txt_path,
                              mmt_tokenizer **out);

/* The same tokenizer from a CLIP tokenizer.json alone (what transformers 5 saves; a snapshot
 * may carry it instead of vocab.json + merges.txt): model.vocab and model.merges ("left
 * right" strings or [left, right] pairs), with the vocabulary and merge rules above. The
 * pipeline must be CLIPTokenizer's (data/tokenizer_json.h, mmt_tokenizer_json_check_clip);
 * the added tokens may only be the two specials, with the ids model.vocab gives them; the
 * post-processor must be BOS ... EOS or null. Anything else fails with one line naming the
 * file and the component (MMT_STATUS_UNSUPPORTED for a valid but different pipeline,
 * MMT_STATUS_BAD_FORMAT for a broken file). Encodes exactly as the vocab.json + merges.txt
 * of the same tokenizer do, in both modes; slow mode keeps every merge (there is no
 * header line to lose). */
mmt_status mmt_tokenizer_load_json(const char *tokenizer_json_path, mmt_tokenizer **out);
/* From a parsed tokenizer.json; `what` names it in messages. */
struct mmt_json;
mmt_status mmt_tokenizer_from_json(const struct mmt_json *root, const char *what, mmt_tokenizer **out);

void mmt_tokenizer_free(mmt_tokenizer *t); /* accepts NULL */

void mmt_tokenizer_set_mode(mmt_tokenizer *t, mmt_tokenizer_mode mode);
mmt_tokenizer_mode mmt_tokenizer_mode_of(const mmt_tokenizer *t);

int32_t mmt_tokenizer_bos(const mmt_tokenizer *t); /* <|startoftext|>, 49406 for CLIP */
int32_t mmt_tokenizer_eos(const mmt_tokenizer *t); /* <|endoftext|>, 49407; also HF's pad */
/* Largest id + 1, i.e. the rows an embedding table needs (49408 for CLIP). */
int64_t mmt_tokenizer_vocab_size(const mmt_tokenizer *t);
/* Number of merges loaded. */
int64_t mmt_tokenizer_merge_count(const mmt_tokenizer *t);

/* Encodes len bytes of UTF-8 text as [BOS] + ids + [EOS].
 * Writes at most `capacity` ids to `ids`. When the whole sequence is longer, it is truncated
 * like HF truncation=True, max_length=capacity: the content is cut to capacity - 2 ids and
 * EOS stays last. *n_total receives the untruncated length (content + 2), so n_total >
 * capacity signals truncation. capacity 0 (ids may be NULL) only counts; capacity 1 is
 * rejected. Text containing the literal "<|startoftext|>" / "<|endoftext|>" gets those
 * special ids, as in HF. Invalid UTF-8 fails with MMT_STATUS_BAD_FORMAT naming the offset. */
mmt_status mmt_tokenizer_encode(mmt_tokenizer *t, const char *text, size_t len, int32_t *ids,
                                int64_t capacity, int64_t *n_total);

/* mmt_tokenizer_encode for texts that will be refused when too long: once the content is
 * certain to be longer than limit ids (limit > 0), the rest is not tokenized, *n_total is
 * some value above limit + 2 (not the exact length) and ids are not the text's (truncate
 * with mmt_tokenizer_encode instead). When *n_total <= limit + 2, ids and *n_total are
 * exactly mmt_tokenizer_encode's. A multi-megabyte text then costs a pass over its bytes,
 * not BPE of all of it. limit 0: no limit. */
mmt_status mmt_tokenizer_encode_limit(mmt_tokenizer *t, const char *text, size_t len, int32_t *ids,
                                      int64_t capacity, int64_t limit, int64_t *n_total);

/* Turns ids back into text the way HF decode does: byte-level tokens to bytes, "</w>" to a
 * space, surrounding spaces stripped; invalid UTF-8 becomes U+FFFD. With skip_special, BOS
 * and EOS are left out. Writes a NUL-terminated string of at most capacity bytes (cut at a
 * character boundary); *len receives the full length (excluding the NUL). Unknown ids fail
 * with MMT_STATUS_INVALID_ARGUMENT. */
mmt_status mmt_tokenizer_decode(const mmt_tokenizer *t, const int32_t *ids, int64_t n,
                                int skip_special, char *out, size_t capacity, size_t *len);

/* Runs the encoder's front half without a vocabulary: splits off literal special tokens
 * (which are dropped), normalises and cuts the text with the CLIP regex exactly as encode
 * does in `mode`, and calls fn(ctx, word, len) with each pre-token's UTF-8 bytes (never
 * empty), in order. An error from fn stops the walk and is returned. This is what the BPE
 * trainer (data/bpe_train.h) counts, so its words are the ones encode will see. */
typedef mmt_status (*mmt_pretoken_fn)(void *ctx, const char *word, size_t len);
mmt_status mmt_tokenizer_pretokenize(const char *text, size_t len, mmt_tokenizer_mode mode,
                                     mmt_pretoken_fn fn, void *ctx);

/* GPT-2/CLIP bytes_to_unicode(): the code point standing for each byte in byte-level
 * tokens. The vocabulary lists these in id order: printable bytes first, ascending, then
 * the others (mapped to U+0100..U+0143), ascending. */
void mmt_bytes_to_unicode(uint32_t map[256]);

/* The token string of an id (byte-level form, e.g. "cat</w>"), or NULL if unknown. */
const char *mmt_tokenizer_id_to_token(const mmt_tokenizer *t, int32_t id);

#endif
