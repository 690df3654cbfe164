/*
 * multipart.h — multipart/form-data uploads (RFC 7578) turned into the JSON bodies of the
 * server's endpoints, so that `curl -F image=@shoe.jpg -F labels=boot,sandal URL` works
 * wherever a JSON body does and both go through one parser.
 *
 * Per endpoint, the parts become (files: parts with a filename, or named image/images/file):
 *   /v1/embeddings  "input": the text parts named input and the files, in order
 *   /v1/classify    "images": the files; "labels": each labels part (one with commas splits)
 *   /v1/caption     "images": the files; "allowed_words" / "bad_words": each such part
 *                   (one with commas splits)
 *   /v1/search      "query": the file, or the text part named query
 * Other text parts keep their names: numbers for the numeric settings (top_k, seed,
 * max_new_tokens, temperature, ...), true/false for the flags (do_sample, int8, thumbnails),
 * a list for filters (one per part), strings otherwise. Files are base64-encoded into the
 * JSON as {"image": ...}. Errors (no boundary, a part without a name, a body cut short) are
 * one line, BAD_FORMAT.
 */
#ifndef MMT_SERVE_MULTIPART_H
#define MMT_SERVE_MULTIPART_H

#include <stddef.h>

#include "core/json.h"
#include "core/status.h"

/* Appends to json the JSON body equivalent to the multipart body for the endpoint path. */
mmt_status mmt_multipart_to_json(const char *content_type, const char *body, size_t len, const char *path,
                                 mmt_strbuf *json);

#endif
