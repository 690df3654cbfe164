/*
 * json.h — a strict JSON (RFC 8259) parser into a read-only tree.
 *
 * Used for config.json, vocab.json, tokenizer files, safetensors headers and PEFT adapter
 * configs. The whole tree lives in one allocation set owned by the mmt_json_doc. Strings are
 * decoded UTF-8 (escapes resolved, \u0000 allowed: use ->len), validated as UTF-8. Object keys
 * keep file order; duplicate keys are kept (mmt_json_get returns the last, as Python does).
 * Depth is limited (MMT_JSON_MAX_DEPTH) so hostile input cannot exhaust the stack.
 *
 * Errors name the source (`what`, usually a file path) and the byte offset.
 */
#ifndef MMT_CORE_JSON_H
#define MMT_CORE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define MMT_JSON_MAX_DEPTH 256

typedef enum mmt_json_type {
    MMT_JSON_NULL,
    MMT_JSON_BOOL,
    MMT_JSON_NUMBER,
    MMT_JSON_STRING,
    MMT_JSON_ARRAY,
    MMT_JSON_OBJECT
} mmt_json_type;

typedef struct mmt_json mmt_json;
struct mmt_json {
    mmt_json_type type;
    int boolean;          /* MMT_JSON_BOOL */
    int is_integer;       /* MMT_JSON_NUMBER written without fraction/exponent, fits int64 */
    int64_t integer;      /* valid when is_integer */
    double number;        /* MMT_JSON_NUMBER (always set) */
    const char *string;   /* MMT_JSON_STRING: NUL-terminated, may contain NULs (see len) */
    size_t len;           /* string bytes, or element count of an array/object */
    mmt_json *items;      /* array elements, or object values */
    const char **keys;    /* object keys (len of them), NUL-terminated */
    size_t *key_lens;     /* object key byte lengths */
};

typedef struct mmt_json_doc mmt_json_doc;

/* Parses len bytes of text; `what` names the source in error messages. */
mmt_status mmt_json_parse(const char *text, size_t len, const char *what, mmt_json_doc **out);
/* Reads and parses a file (error messages name the path). */
mmt_status mmt_json_parse_file(const char *path, mmt_json_doc **out);
const mmt_json *mmt_json_root(const mmt_json_doc *doc);
void mmt_json_free(mmt_json_doc *doc);

/* Member of an object by key (last occurrence), or NULL if obj is not an object or lacks it. */
const mmt_json *mmt_json_get(const mmt_json *obj, const char *key);

/* Typed getters for settings files. If the key is absent (or JSON null) *out = def and
 * MMT_OK. If present with the wrong type: MMT_STATUS_BAD_FORMAT with a message like
 * "config.json: text_config.hidden_size: expected an integer, got a string". `what` is the
 * source name and `path` the dotted prefix of obj ("" at the top level). */
mmt_status mmt_json_get_int(const mmt_json *obj, const char *key, int64_t def, int64_t *out,
                            const char *what, const char *path);
mmt_status mmt_json_get_double(const mmt_json *obj, const char *key, double def, double *out,
                               const char *what, const char *path);
mmt_status mmt_json_get_bool(const mmt_json *obj, const char *key, int def, int *out,
                             const char *what, const char *path);
/* *out points into the document (or is def). */
mmt_status mmt_json_get_string(const mmt_json *obj, const char *key, const char *def,
                               const char **out, const char *what, const char *path);

const char *mmt_json_type_name(mmt_json_type type); /* "an integer"-style names for messages */

/* Appends s as a JSON string literal (quotes, escapes) to a growable buffer. */
typedef struct mmt_strbuf {
    char *data; /* NUL-terminated, owned (mmt_malloc) */
    size_t len;
    size_t cap;
    int failed; /* set on allocation failure; later appends are ignored */
} mmt_strbuf;
void mmt_strbuf_append(mmt_strbuf *b, const char *s, size_t n);
void mmt_strbuf_printf(mmt_strbuf *b, const char *fmt, ...) MMT_PRINTF(2, 3);
void mmt_strbuf_json_string(mmt_strbuf *b, const char *s, size_t n);
void mmt_strbuf_free(mmt_strbuf *b);

/* Appends v as compact JSON text (no spaces): strings escaped as mmt_strbuf_json_string,
 * integers as written, other numbers with the fewest digits (15 to 17) that read back as
 * the same double, object keys in their order (duplicates kept). */
void mmt_json_write(mmt_strbuf *b, const mmt_json *v);

/* The first key of object obj that is none of the n names in known (for "unknown field"
 * errors), or NULL when every key is known or obj is not an object. */
const char *mmt_json_unknown_key(const mmt_json *obj, const char *const *known, size_t n);

/* 1 when the whole of s is a JSON number (RFC 8259: no leading '+' or zeros, no hex, inf or
 * nan) whose value is finite as a double; else 0. */
int mmt_json_is_number(const char *s);

#endif
