/*
 * caption_request.h — the JSON body of POST /v1/caption, parsed and checked on the polling
 * thread before anything is queued (serve/caption_service.h answers it):
 *
 *   {"images": [IMAGE...], "prompt": TEXT?, "model": ADAPTER?,
 *    "max_new_tokens": N?, "min_new_tokens": N?, "num_beams": N?, "do_sample": BOOL?,
 *    "temperature": X?, "top_k": N?, "top_p": X?, "seed": N?, "no_repeat_ngram_size": N?,
 *    "repetition_penalty": X?, "length_penalty": X?, "early_stopping": true|false|"never"?,
 *    "allowed_words": [TEXT...]?, "bad_words": [TEXT...]?}
 *
 * IMAGE is what /v1/classify takes: a base64 string (standard or URL-safe, padding optional,
 * a data URI), {"image": BASE64} or {"type": "image_url", "image_url": {"url": DATA_URI}}.
 * allowed_words / bad_words are `mmtune caption --allowed-words / --bad-words` as lists (at
 * most MMT_CAPTION_MAX_WORDS words of at most 100 bytes each; not both).
 * Absent or null settings are `mmtune caption`'s defaults (max_new_tokens 30, or the
 * server's limit when lower; greedy search).
 * Unknown fields are refused, so a misspelt setting is not silently ignored. The settings'
 * own ranges are checked later against the model (mmt_gen_settings_check); here only their
 * types, the images' base64 and the server's limits.
 */
#ifndef MMT_SERVE_CAPTION_REQUEST_H
#define MMT_SERVE_CAPTION_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "gen/generate.h"
#include "serve/request.h"

#define MMT_CAPTION_MAX_WORDS 10000

typedef struct mmt_caption_request {
    char *model;             /* owned; NULL when absent */
    char *prompt;            /* owned; NULL when absent or empty */
    mmt_serve_input *images; /* owned: encoded images (n_images) */
    int64_t n_images;
    mmt_gen_settings gen;    /* the settings given; token ids are the model's, set later */
    char **words;            /* owned: allowed_words or bad_words as given (n_words) */
    int64_t n_words;
    int words_allowed;       /* 1: words are the allowed words; 0: bad words */
} mmt_caption_request;

/* Parses body into *out (zeroed first). Returns 0, or the HTTP status of the error (400 bad
 * request, 413 more than max_images images, 500 out of memory) with its one-line message in
 * err; *out is freed on error. max_new_tokens must be 1..max_new_tokens_limit (400). */
int mmt_serve_parse_caption(const char *body, size_t len, int64_t max_images, int64_t max_new_tokens_limit,
                            mmt_caption_request *out, char *err, size_t err_size);
void mmt_caption_request_free(mmt_caption_request *r);

#endif
