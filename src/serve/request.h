/*
 * request.h — the JSON bodies of POST /v1/embeddings and /v1/classify, parsed and checked
 * before anything is queued (the fuzz target fuzz_serve_request drives this alone).
 *
 *   /v1/embeddings  {"input": TEXT | [INPUT...], "model": NAME?, "encoding_format": "float"|"base64"?,
 *                   "user": KEY?}
 *                   INPUT: a text, {"text": T}, {"image": BASE64} or
 *                   {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}
 *   /v1/classify    {"images": [IMAGE...], "labels": [LABEL...], "template": "a photo of a {}."?,
 *                   "model": NAME?, "user": KEY?}; IMAGE: a base64 string, {"image": ...} or the image_url form
 *   "user" (1-1024 bytes; "" is as absent) keys the sticky draw of an A/B route (ab_route.h).
 *
 * Base64 is decoded here (standard or URL-safe, padding optional, data URIs); images are
 * decoded later, by the batch worker.
 */
#ifndef MMT_SERVE_REQUEST_H
#define MMT_SERVE_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct mmt_serve_input {
    int image;       /* an image (bytes) or a text */
    char *text;      /* owned */
    uint8_t *bytes;  /* owned: the encoded image */
    size_t n_bytes;
} mmt_serve_input;

typedef struct mmt_clip_request {
    char *model;             /* the "model" field (NULL when absent) */
    char *user;              /* the "user" field, OpenAI's end-user id: an A/B route's client key (NULL: absent or "") */
    mmt_serve_input *inputs; /* embeddings: the inputs; classify: the images, then one prompt per label */
    int64_t n_inputs;
    char **labels;           /* classify: the label names */
    int64_t n_labels;
    int base64_out;          /* encoding_format "base64" */
} mmt_clip_request;

/* Parses body into *out (zeroed first). Returns 0, or the HTTP status of the error (400 bad
 * request, 413 over max_inputs, 500 out of memory) with its one-line message in err. *out
 * is freed on error. */
int mmt_serve_parse_clip(const char *body, size_t len, int classify, int64_t max_inputs, mmt_clip_request *out, char *err,
                         size_t err_size);
void mmt_clip_request_free(mmt_clip_request *r);

/* An adapter name a client may use: 1-63 of A-Z a-z 0-9 _ - . and not "base". */
int mmt_serve_valid_name(const char *name);

/* Base64 (standard or URL-safe alphabet, padding optional; a "data:...;base64," prefix is
 * skipped) into *out (mmt_malloc'ed). BAD_FORMAT naming the offset of a bad character, or
 * saying that a URL (http://, file:// ...) is not fetched. */
mmt_status mmt_base64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len);

#endif
