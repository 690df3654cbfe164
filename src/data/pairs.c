/*
 * pairs.c — JSONL image–text pairs (see pairs.h; the limits are described in datasets.h).
 *
 * Lines arrive through a fixed-size window (dataset_stream.c). A line is held only up to the
 * longest that a record within --max-text-bytes can need; past that, the rest of it streams
 * through a small meter that measures the top-level "text" string, so that the error can give
 * the text's length without the line ever being held in memory.
 */
#include "data/pairs.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "data/datasets.h"
#include "data/datasets_internal.h"

/* Room in a line beside its text: the image path, the label and other keys. */
#define LINE_SLACK_BYTES ((size_t)4 << 10)

/* The longest line a record with a text of max_text bytes can need: a \u escape takes six
 * bytes for one decoded byte, and the other keys need room too. */
static size_t line_limit(size_t max_text) {
    return max_text > (SIZE_MAX - LINE_SLACK_BYTES) / 8 ? SIZE_MAX : 8 * max_text + LINE_SLACK_BYTES;
}

/* Follows a JSON object fed in pieces just far enough to measure its top-level "text" string
 * in decoded bytes (the longest one, should the key repeat). On input that is not JSON the
 * count means nothing, which is harmless: it only picks between two messages for a line that
 * is refused either way. */
typedef struct text_meter {
    int64_t depth;         /* nesting, outside strings */
    int in_string;
    int escape;            /* 0; 1 after a backslash; 2..5 on the hex digits of \uXXXX */
    unsigned code;         /* the \u code unit being read */
    int is_key;            /* the current string is a key of the top-level object */
    int expect_key;        /* the next top-level string is a key */
    int key_is_text;       /* the last top-level key was "text" */
    int counting;          /* the current string is the value of "text" */
    char key[5];
    size_t key_len;
    uint64_t count, longest;
} text_meter;

/* Decoded UTF-8 bytes of a \u code unit (a high surrogate stands for the pair's four). */
static uint64_t utf8_bytes(unsigned u) {
    if (u < 0x80) return 1;
    if (u < 0x800) return 2;
    if (u >= 0xD800 && u < 0xDC00) return 4;
    if (u >= 0xDC00 && u < 0xE000) return 0;
    return 3;
}

static void meter_feed(text_meter *m, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!m->in_string) {
            if (c == '"') {
                m->in_string = 1;
                m->is_key = m->depth == 1 && m->expect_key;
                m->counting = m->depth == 1 && !m->is_key && m->key_is_text;
                m->key_len = 0;
                m->count = 0;
            } else if (c == '{' || c == '[') {
                m->depth++;
                m->expect_key = m->depth == 1 && c == '{';
            } else if (c == '}' || c == ']') {
                m->depth--;
            } else if (c == ',' && m->depth == 1) {
                m->expect_key = 1;
                m->key_is_text = 0;
            }
            continue;
        }
        uint64_t bytes = 1;
        char key_char = (char)c;
        if (m->escape == 1) {
            m->escape = c == 'u' ? 2 : 0;
            m->code = 0;
            if (m->escape) continue;
            key_char = 0; /* an escaped key is never taken for "text" */
        } else if (m->escape >= 2) {
            m->code = m->code * 16 + (c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10)) % 16;
            if (m->escape++ < 5) continue;
            m->escape = 0;
            bytes = utf8_bytes(m->code);
            key_char = 0;
        } else if (c == '\\') {
            m->escape = 1;
            continue;
        } else if (c == '"') {
            m->in_string = 0;
            if (m->is_key) {
                m->key_is_text = m->key_len == 4 && memcmp(m->key, "text", 4) == 0;
                m->expect_key = 0;
            }
            if (m->counting && m->count > m->longest) m->longest = m->count;
            continue;
        }
        if (m->is_key && m->key_len < sizeof m->key) m->key[m->key_len++] = key_char;
        if (m->counting) m->count += bytes;
    }
}

/* One line of the input: its first bytes up to `limit`; past that, its length and the meter. */
typedef struct jsonl_line {
    char *data;          /* owned */
    size_t len, cap;     /* bytes held; bytes allocated */
    size_t limit;        /* the most bytes held (line_limit) */
    uint64_t full_len;   /* the whole line's length */
    text_meter meter;    /* fed from the moment the line passes limit */
} jsonl_line;

static mmt_status line_add(jsonl_line *l, const char *p, size_t n) {
    if (l->full_len + n > l->limit) {
        if (l->full_len <= l->limit) meter_feed(&l->meter, l->data, l->len); /* the held start, once */
        meter_feed(&l->meter, p, n);
    } else {
        if (l->len + n > l->cap) {
            size_t cap = l->cap ? l->cap : 4096;
            while (cap < l->len + n) cap = cap > l->limit / 2 ? l->limit : cap * 2;
            char *data = mmt_realloc(l->data, cap);
            if (!data) return MMT_STATUS_OUT_OF_MEMORY;
            l->data = data;
            l->cap = cap;
        }
        memcpy(l->data + l->len, p, n);
        l->len += n;
    }
    l->full_len += n;
    return MMT_OK;
}

/* Reads the next line (its '\n' consumed, not kept) into *l; *got = 0 at the end of the input. */
static mmt_status jsonl_next_line(datasets_stream *in, jsonl_line *l, int *got) {
    l->len = 0;
    l->full_len = 0;
    memset(&l->meter, 0, sizeof l->meter);
    *got = 0;
    while (datasets_stream_peek(in, 0) >= 0) {
        const char *p = in->buf + in->at;
        size_t n = in->len - in->at;
        const char *nl = memchr(p, '\n', n);
        size_t piece = nl ? (size_t)(nl - p) : n;
        *got = 1;
        MMT_TRY(line_add(l, p, piece));
        in->at += piece + (nl != NULL);
        if (nl) break;
    }
    return MMT_OK;
}

static int line_is_blank(const jsonl_line *l) {
    if (l->full_len > l->limit) return 0;
    for (size_t k = 0; k < l->len; k++)
        if (l->data[k] != ' ' && l->data[k] != '\t' && l->data[k] != '\r') return 0;
    return 1;
}

/* A line too long to hold: its text is over the limit, or something else in it is. */
static mmt_status line_too_long(const jsonl_line *l, const char *where, size_t max_text) {
    if (l->meter.longest > max_text) return datasets_text_too_long(where, l->meter.longest, max_text);
    return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: the line is %llu bytes, over the limit of %zu for one record "
                    "(8 x --max-text-bytes + 4 KiB)", where, (unsigned long long)l->full_len, l->limit);
}

/* One held line as a pair appended to p; an error message names `where` (FILE:LINE). */
static mmt_status jsonl_record(const jsonl_line *l, const char *where, const char *folder, const mmt_pairs_options *o,
                               mmt_pairs *p, int64_t *cap) {
    size_t max_text = datasets_max_text_bytes(o);
    if (l->full_len > l->limit) return line_too_long(l, where, max_text);
    mmt_json_doc *doc = NULL;
    mmt_status s = mmt_json_parse(l->data, l->len, where, &doc);
    if (s != MMT_OK) return s;
    const mmt_json *root = mmt_json_root(doc);
    const char *image = NULL, *text = NULL, *label = NULL;
    char *path = NULL;
    if (root->type != MMT_JSON_OBJECT) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected a JSON object, got %s", where, mmt_json_type_name(root->type));
        goto done;
    }
    if ((s = mmt_json_get_string(root, "image_path", NULL, &image, where, "")) != MMT_OK) goto done;
    if ((s = mmt_json_get_string(root, "text", NULL, &text, where, "")) != MMT_OK) goto done;
    if ((s = mmt_json_get_string(root, "label", NULL, &label, where, "")) != MMT_OK) goto done;
    if (!image || !image[0]) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: missing \"image_path\"", where);
        goto done;
    }
    if (!text || !text[strspn(text, " \t\r\n\f\v")]) { /* only spaces: empty once the tokenizer cleans it */
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: missing or empty \"text\"", where);
        goto done;
    }
    size_t text_len = mmt_json_get(root, "text")->len;
    if (strlen(text) != text_len) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: \"text\" holds a NUL character", where);
        goto done;
    }
    if (label && !label[0]) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: empty \"label\"", where);
        goto done;
    }
    if (text_len > max_text) {
        s = datasets_text_too_long(where, text_len, max_text);
        goto done;
    }
    if (!(path = datasets_resolve(folder, image))) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    const char *why = o->check_files ? datasets_image_problem(path) : NULL;
    if (why) {
        s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: image %s: %s", where, why, path);
        mmt_free(path);
        goto done;
    }
    s = datasets_append(p, cap, path, mmt_strdup(text), label ? mmt_strdup(label) : NULL);
done:
    mmt_json_free(doc);
    return s;
}

/* Every line of `in` as pairs (see pairs.h); the input's own failure ends it with its error. */
static mmt_status jsonl_read(datasets_stream *in, const char *folder, const mmt_pairs_options *o, mmt_pairs **out) {
    *out = NULL;
    mmt_pairs_options defaults;
    if (!o) {
        mmt_pairs_options_default(&defaults);
        o = &defaults;
    }
    jsonl_line line = {.limit = line_limit(datasets_max_text_bytes(o))};
    mmt_pairs *p = datasets_new(in->source);
    mmt_status s = p ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    int64_t cap = 0, lineno = 0;
    char where[600];
    while (s == MMT_OK) {
        int got = 0;
        if ((s = jsonl_next_line(in, &line, &got)) != MMT_OK) break;
        if (in->status != MMT_OK) {
            s = datasets_stream_error(in);
            break;
        }
        if (!got) break;
        lineno++;
        if (line_is_blank(&line)) continue;
        snprintf(where, sizeof where, "%s:%lld", in->source, (long long)lineno);
        s = jsonl_record(&line, where, folder, o, p, &cap);
        if (s != MMT_OK) s = datasets_record_failed(p, o, s);
    }
    if (s == MMT_OK) s = datasets_check_nonempty(p);
    mmt_free(line.data);
    if (s != MMT_OK) {
        mmt_pairs_free(p);
        return s;
    }
    *out = p;
    return MMT_OK;
}

mmt_status mmt_pairs_parse_jsonl(const char *text, size_t len, const char *source, const char *folder,
                                 const mmt_pairs_options *o, mmt_pairs **out) {
    datasets_stream in;
    datasets_stream_memory(&in, text, len, source);
    return jsonl_read(&in, folder, o, out);
}

mmt_status mmt_pairs_load_jsonl_with_options(const char *path, const mmt_pairs_options *o, mmt_pairs **out) {
    return datasets_load_stream(path, o, jsonl_read, out);
}

mmt_status mmt_pairs_load_jsonl(const char *path, int skip_bad, mmt_pairs **out) {
    return mmt_pairs_load_jsonl_checked(path, skip_bad, 0, out);
}

mmt_status mmt_pairs_load_jsonl_checked(const char *path, int skip_bad, int check_files, mmt_pairs **out) {
    mmt_pairs_options o;
    mmt_pairs_options_default(&o);
    o.skip_bad = skip_bad;
    o.check_files = check_files;
    return mmt_pairs_load_jsonl_with_options(path, &o, out);
}

void mmt_pairs_free(mmt_pairs *p) {
    if (!p) return;
    for (int64_t i = 0; i < p->n; i++) {
        mmt_free(p->items[i].image_path);
        mmt_free(p->items[i].text);
        mmt_free(p->items[i].label);
    }
    mmt_free(p->items);
    mmt_free(p->source);
    mmt_free(p);
}
