/*
 * tokenizer_json.h — reading Hugging Face tokenizer.json, the `tokenizers` library's
 * serialisation (what transformers 5 saves instead of vocab.json / merges.txt / vocab.txt).
 *
 * A tokenizer.json holds a pipeline of components, each an object with a "type":
 *   added_tokens    strings matched in the raw (or normalised) text before anything else
 *   normalizer      e.g. BertNormalizer, Sequence[NFC, Replace, Lowercase]
 *   pre_tokenizer   e.g. BertPreTokenizer, Sequence[Split, ByteLevel]
 *   model           WordPiece, BPE (vocab, merges), ...
 *   post_processor  the special tokens around a sequence (TemplateProcessing, BertProcessing,
 *                   RobertaProcessing)
 *   decoder         ids back to text (WordPiece, ByteLevel)
 * This file turns the components the two mmtune tokenizers share into plain C values and
 * refuses anything else with a one-line message naming the file and the component; the
 * tokenizers themselves (data/tokenizer.h: CLIP's byte-level BPE, data/wordpiece.h: BERT's
 * WordPiece) read their own model and check their own pipeline with these helpers. Nothing
 * here allocates except mmt_tokenizer_json_added_tokens; strings point into the document.
 *
 * Usage:
 *   mmt_json_doc *doc;
 *   MMT_TRY(mmt_tokenizer_json_open("tokenizer.json", &doc));
 *   const mmt_json *model;
 *   MMT_TRY(mmt_tokenizer_json_model(mmt_json_root(doc), path, "WordPiece", &model));
 */
#ifndef MMT_DATA_TOKENIZER_JSON_H
#define MMT_DATA_TOKENIZER_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "core/json.h"
#include "core/status.h"

/* Ids index dense arrays: a hostile file must not make us allocate gigabytes. */
#define MMT_TOKENIZER_JSON_MAX_ID (1 << 24)
/* Special tokens a post-processor may put before or after one sequence. */
#define MMT_TOKENIZER_JSON_MAX_FRAME 8

/* One entry of "added_tokens". */
typedef struct mmt_tokenizer_json_added {
    const char *content; /* into the document; may hold NULs (use len) */
    size_t len;
    int32_t id;
    int special;     /* skipped by decode(skip_special_tokens=True) */
    int normalized;  /* matched in the normalised text instead of the raw text */
    int lstrip, rstrip, single_word;
} mmt_tokenizer_json_added;

/* What the post-processor puts around a single sequence: prefix ids, the text, suffix ids. */
typedef struct mmt_tokenizer_json_frame {
    int64_t n_prefix, n_suffix;
    int32_t prefix[MMT_TOKENIZER_JSON_MAX_FRAME];
    int32_t suffix[MMT_TOKENIZER_JSON_MAX_FRAME];
} mmt_tokenizer_json_frame;

/* Parses a tokenizer.json (at most 1 GiB); the root must be an object with a "model" object. */
mmt_status mmt_tokenizer_json_open(const char *path, mmt_json_doc **doc);
/* The same checks on an already parsed document; `what` names it in messages. */
mmt_status mmt_tokenizer_json_check_root(const mmt_json *root, const char *what);

/* root[key] as a component: *component NULL and *type NULL when absent or null; otherwise
 * an object with a string "type" (an error names the component). */
mmt_status mmt_tokenizer_json_component(const mmt_json *root, const char *key, const char *what,
                                        const mmt_json **component, const char **type);

/* "model", which must be of type want ("WordPiece", "BPE"). Files written by old tokenizers
 * versions have no "type": a WordPiece model is then recognised by max_input_chars_per_word
 * and a BPE one by merges. */
mmt_status mmt_tokenizer_json_model(const mmt_json *root, const char *what, const char *want,
                                    const mmt_json **model);

/* Checks a {token: id} vocabulary object (model.vocab): ids integers in
 * [0, MMT_TOKENIZER_JSON_MAX_ID); *max_id gets the largest. */
mmt_status mmt_tokenizer_json_vocab(const mmt_json *model, const char *what, const mmt_json **vocab,
                                    int64_t *max_id);

/* "added_tokens" (absent = none). *out is mmt_malloc'd (NULL when none; the caller frees it),
 * contents point into the document. Empty contents and ids out of range are refused. */
mmt_status mmt_tokenizer_json_added_tokens(const mmt_json *root, const char *what,
                                           mmt_tokenizer_json_added **out, int64_t *n);

/* The frame "post_processor" gives a single sequence: TemplateProcessing (its "single"
 * template: special tokens, then exactly one $A sequence, then special tokens),
 * BertProcessing and RobertaProcessing ([cls] $A [sep]), or null (nothing). Other types are
 * refused. */
mmt_status mmt_tokenizer_json_frame_of(const mmt_json *root, const char *what,
                                       mmt_tokenizer_json_frame *frame);

/* CLIP's pipeline as transformers 5 CLIPTokenizer builds it (tokenization_clip.py), which is
 * what data/tokenizer.c implements: normalizer Sequence[NFC, Replace(\s+ -> " "), Lowercase],
 * pre_tokenizer Sequence[Split(the CLIP regex, Removed, inverted), ByteLevel(no prefix
 * space, use_regex)], decoder ByteLevel or null, and a BPE model with end_of_word_suffix
 * "</w>", no continuing_subword_prefix, no dropout, byte_fallback and ignore_merges off.
 * Anything else is refused, naming the component. */
mmt_status mmt_tokenizer_json_check_clip(const mmt_json *root, const char *what);

/* At most 40 bytes of s for a message, control characters shown as '?'. */
const char *mmt_tokenizer_json_shown(const char *s, size_t n, char out[44]);

#endif
