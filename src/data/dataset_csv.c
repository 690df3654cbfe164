/*
 * dataset_csv.c — image–caption pairs from a CSV file with a header (see datasets.h).
 *
 * A small RFC 4180 reader: fields separated by commas, records by LF or CRLF; a field that
 * starts with a quote runs to the matching quote, "" inside it is one quote, and it may span
 * lines. A quote inside an unquoted field, or text after a closing quote, is an error rather
 * than a guess, since either usually means a row was cut or mis-exported. Messages name the
 * line the record starts on.
 *
 * The file streams through a fixed-size window (dataset_stream.c) and a field is kept only up
 * to its limit (--max-text-bytes, at least 64 KiB for fields other than the caption); beyond
 * that it is measured, not stored, and its record refused, so a 250 MiB field (or an unclosed
 * quote swallowing the rest of the file) costs no memory.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/file.h"
#include "data/datasets.h"
#include "data/datasets_internal.h"

#define CSV_MAX_FIELDS 256
/* Fields other than the caption (image paths, labels) may take this much even under a lower
 * --max-text-bytes. */
#define CSV_MIN_FIELD_BYTES ((size_t)64 << 10)

typedef struct csv_reader {
    datasets_stream *in;
    int64_t line;          /* line of the next unread byte, from 1 */
    const char *source;
    size_t max_text;       /* --max-text-bytes: the caption's limit */
    size_t max_field;      /* any field's limit, and the bytes kept of it; longer ones are measured */
    char *scratch;         /* the record's fields, unquoted, each NUL-terminated; owned */
    size_t scratch_len, scratch_cap;
    size_t field[CSV_MAX_FIELDS]; /* offsets into scratch */
    uint64_t field_bytes[CSV_MAX_FIELDS]; /* each field's whole length */
    int64_t n_fields;
    int64_t record_line;   /* where the current record starts */
    int blank;             /* the record was an empty line */
} csv_reader;

static int csv_peek(csv_reader *r, size_t k) { return datasets_stream_peek(r->in, k); }

/* How many of the n bytes at p are plain field text: up to a quote or line feed inside
 * quotes, and also a comma or carriage return outside them. */
static size_t plain_run(const char *p, size_t n, int quoted) {
    size_t k = 0;
    if (quoted)
        while (k < n && p[k] != '"' && p[k] != '\n') k++;
    else
        while (k < n && p[k] != '"' && p[k] != '\n' && p[k] != ',' && p[k] != '\r') k++;
    return k;
}

static int csv_push(csv_reader *r, char c) {
    if (r->scratch_len == r->scratch_cap) {
        size_t cap = r->scratch_cap ? r->scratch_cap * 2 : 1024;
        char *s = mmt_realloc(r->scratch, cap);
        if (!s) return 0;
        r->scratch = s;
        r->scratch_cap = cap;
    }
    r->scratch[r->scratch_len++] = c;
    return 1;
}

/* Appends n bytes to the current field; past max_field bytes the field is only counted, so
 * that a huge field costs no memory (its record is refused for it). */
static int csv_put(csv_reader *r, const char *p, size_t n) {
    uint64_t *bytes = &r->field_bytes[r->n_fields - 1];
    uint64_t room = *bytes < r->max_field ? r->max_field - *bytes : 0;
    size_t keep = room < n ? (size_t)room : n;
    *bytes += n;
    if (keep == 0) return 1;
    if (r->scratch_len + keep > r->scratch_cap) {
        size_t cap = r->scratch_cap ? r->scratch_cap : 1024;
        while (cap < r->scratch_len + keep) cap *= 2;
        char *s = mmt_realloc(r->scratch, cap);
        if (!s) return 0;
        r->scratch = s;
        r->scratch_cap = cap;
    }
    memcpy(r->scratch + r->scratch_len, p, keep);
    r->scratch_len += keep;
    return 1;
}

/* Appends the plain text (plain_run) from the next unread byte on; 0 when out of memory. Long
 * fields go by a window at a time. */
static int csv_put_run(csv_reader *r, int quoted) {
    datasets_stream *in = r->in;
    while (datasets_stream_peek(in, 0) >= 0) {
        const char *p = in->buf + in->at;
        size_t n = in->len - in->at, k = plain_run(p, n, quoted);
        if (!csv_put(r, p, k)) return 0;
        in->at += k;
        if (k < n) break;
    }
    return 1;
}

/* After an error inside a record: continue at the next line. */
static void csv_skip_line(csv_reader *r) {
    datasets_stream *in = r->in;
    while (datasets_stream_peek(in, 0) >= 0) {
        const char *nl = memchr(in->buf + in->at, '\n', in->len - in->at);
        if (nl) {
            in->at = (size_t)(nl - in->buf) + 1;
            r->line++;
            return;
        }
        in->at = in->len;
    }
}

static int csv_at_record_end(csv_reader *r) {
    int c = csv_peek(r, 0);
    if (c < 0 || c == '\n') return 1;
    return c == '\r' && csv_peek(r, 1) == '\n';
}

/* Reads one record starting at the next unread byte into r->field / r->scratch. */
static mmt_status csv_record(csv_reader *r) {
    datasets_stream *in = r->in;
    r->record_line = r->line;
    r->n_fields = 0;
    r->scratch_len = 0;
    uint64_t start = datasets_stream_position(in);
    for (;;) {
        if (r->n_fields == CSV_MAX_FIELDS) {
            csv_skip_line(r);
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: more than %d fields", r->source,
                            (long long)r->record_line, CSV_MAX_FIELDS);
        }
        r->field[r->n_fields] = r->scratch_len;
        r->field_bytes[r->n_fields++] = 0;
        if (csv_peek(r, 0) == '"') {
            int64_t quote_line = r->line;
            in->at++;
            for (;;) {
                if (!csv_put_run(r, 1)) return MMT_STATUS_OUT_OF_MEMORY;
                int c = csv_peek(r, 0);
                if (c < 0)
                    return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: field %lld: quote opened here is never closed",
                                    r->source, (long long)quote_line, (long long)r->n_fields);
                in->at++;
                if (c == '"') {
                    if (csv_peek(r, 0) == '"') {
                        in->at++;
                    } else {
                        break;
                    }
                }
                if (c == '\n') r->line++;
                char byte = (char)c;
                if (!csv_put(r, &byte, 1)) return MMT_STATUS_OUT_OF_MEMORY;
            }
            if (!csv_at_record_end(r) && csv_peek(r, 0) != ',') {
                int64_t at_line = r->line;
                csv_skip_line(r);
                return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: field %lld: text after the closing quote",
                                r->source, (long long)at_line, (long long)r->n_fields);
            }
        } else {
            for (;;) {
                if (!csv_put_run(r, 0)) return MMT_STATUS_OUT_OF_MEMORY;
                if (csv_at_record_end(r) || csv_peek(r, 0) == ',') break;
                char c = (char)csv_peek(r, 0); /* a quote, or a '\r' inside the field */
                in->at++;
                if (c == '"') {
                    csv_skip_line(r);
                    return mmt_fail(MMT_STATUS_BAD_FORMAT,
                                    "%s:%lld: field %lld: a quote inside an unquoted field (quote the whole field "
                                    "and double the quote)", r->source, (long long)r->record_line,
                                    (long long)r->n_fields);
                }
                if (!csv_put(r, &c, 1)) return MMT_STATUS_OUT_OF_MEMORY;
            }
        }
        if (!csv_push(r, '\0')) return MMT_STATUS_OUT_OF_MEMORY;
        int c = csv_peek(r, 0);
        if (c == ',') {
            in->at++;
            continue;
        }
        r->blank = datasets_stream_position(in) == start;
        if (c == '\r') in->at++;
        if (csv_peek(r, 0) >= 0) {
            in->at++; /* the '\n' */
            r->line++;
        }
        /* a NUL byte would cut the field short wherever it is read as a C string */
        for (int64_t i = 0; i < r->n_fields; i++) {
            size_t end = i + 1 < r->n_fields ? r->field[i + 1] : r->scratch_len;
            if (memchr(r->scratch + r->field[i], '\0', end - r->field[i] - 1))
                return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: field %lld holds a NUL byte", r->source,
                                (long long)r->record_line, (long long)i + 1);
        }
        return MMT_OK;
    }
}

static const char *csv_get(const csv_reader *r, int64_t i) { return r->scratch + r->field[i]; }

/* Column index of the header name in `names` (NULL-terminated), or -1; -2 when two columns
 * match (image and file_name, caption and text, a name twice): which one is meant is unknown,
 * and silently taking one could train on the wrong column. */
static int64_t csv_column(const csv_reader *r, const char *const *names) {
    int64_t found = -1;
    for (int64_t i = 0; i < r->n_fields; i++) {
        const char *h = csv_get(r, i);
        while (*h == ' ') h++;
        size_t n = strlen(h);
        while (n && h[n - 1] == ' ') n--;
        for (const char *const *name = names; *name; name++)
            if (strlen(*name) == n && strncasecmp(h, *name, n) == 0) {
                if (found >= 0) return -2;
                found = i;
            }
    }
    return found;
}

static const char *const IMAGE_NAMES[] = {"image", "image_path", "file_name", NULL};
static const char *const CAPTION_NAMES[] = {"caption", "text", NULL};
static const char *const LABEL_NAMES[] = {"label", NULL};

/* The caption over max_text ("text is N bytes ..."), or another field over max_field ("field K
 * is N bytes ..."); MMT_OK when all fit. */
static mmt_status csv_check_lengths(const csv_reader *r, int64_t caption_col) {
    char where[600];
    snprintf(where, sizeof where, "%s:%lld", r->source, (long long)r->record_line);
    if (caption_col >= 0 && caption_col < r->n_fields && r->field_bytes[caption_col] > r->max_text)
        return datasets_text_too_long(where, r->field_bytes[caption_col], r->max_text);
    for (int64_t i = 0; i < r->n_fields; i++)
        if (r->field_bytes[i] > r->max_field)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: field %lld is %llu bytes, over the limit of %zu for a field "
                            "(--max-text-bytes, at least 64 KiB)", where, (long long)i + 1,
                            (unsigned long long)r->field_bytes[i], r->max_field);
    return MMT_OK;
}

/* Finds the header's columns; the header must be the first non-blank record. */
static mmt_status csv_header(csv_reader *r, int64_t *image, int64_t *caption, int64_t *label) {
    do {
        if (csv_peek(r, 0) < 0) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: empty file (expected a header row "
                                                "\"image,caption\")", r->source);
        MMT_TRY(csv_record(r));
    } while (r->blank);
    MMT_TRY(csv_check_lengths(r, -1));
    *image = csv_column(r, IMAGE_NAMES);
    *caption = csv_column(r, CAPTION_NAMES);
    *label = csv_column(r, LABEL_NAMES);
    if (*image == -2 || *caption == -2 || *label == -2)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: two columns name the %s (%s): keep one", r->source,
                        (long long)r->record_line, *image == -2 ? "image" : *caption == -2 ? "caption" : "label",
                        *image == -2 ? "image, image_path, file_name" : *caption == -2 ? "caption, text" : "label");
    if (*image < 0 || *caption < 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: the header has no \"%s\" column (the first row must name "
                        "the columns, e.g. \"image,caption\")", r->source, (long long)r->record_line,
                        *image < 0 ? "image" : "caption");
    return MMT_OK;
}

/* The current record as a pair (or a FILE:LINE error). */
static mmt_status csv_pair(csv_reader *r, const char *folder, const mmt_pairs_options *o, int64_t n_columns,
                           int64_t image_col, int64_t caption_col, int64_t label_col, mmt_pairs *p, int64_t *cap) {
    long long line = (long long)r->record_line;
    MMT_TRY(csv_check_lengths(r, caption_col));
    if (r->n_fields != n_columns)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: expected %lld fields as in the header, got %lld", r->source,
                        line, (long long)n_columns, (long long)r->n_fields);
    const char *image = csv_get(r, image_col), *caption = csv_get(r, caption_col);
    const char *label = label_col >= 0 ? csv_get(r, label_col) : NULL;
    if (!image[0]) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: empty image", r->source, line);
    if (!caption[strspn(caption, " \t\r\n\f\v")]) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: empty caption", r->source, line);
    if (label && !label[0]) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: empty label", r->source, line);
    char *path = datasets_resolve(folder, image);
    const char *why = path && o->check_files ? datasets_image_problem(path) : NULL;
    if (why) {
        mmt_status s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s:%lld: image %s: %s", r->source, line, why, path);
        mmt_free(path);
        return s;
    }
    return datasets_append(p, cap, path, mmt_strdup(caption), label ? mmt_strdup(label) : NULL);
}

/* Every record of `in` as pairs; the input's own failure (read error, --max-file-bytes) ends it
 * with its error rather than counting as a bad record. */
static mmt_status csv_read(datasets_stream *in, const char *folder, const mmt_pairs_options *o, mmt_pairs **out) {
    *out = NULL;
    mmt_pairs_options defaults;
    if (!o) {
        mmt_pairs_options_default(&defaults);
        o = &defaults;
    }
    size_t max_text = datasets_max_text_bytes(o);
    csv_reader r = {.in = in, .line = 1, .source = in->source, .max_text = max_text,
                    .max_field = max_text > CSV_MIN_FIELD_BYTES ? max_text : CSV_MIN_FIELD_BYTES};
    if (csv_peek(&r, 0) == 0xEF && csv_peek(&r, 1) == 0xBB && csv_peek(&r, 2) == 0xBF) in->at += 3;
    int64_t cap = 0, image_col = -1, caption_col = -1, label_col = -1;
    mmt_pairs *p = datasets_new(in->source);
    mmt_status s = p ? csv_header(&r, &image_col, &caption_col, &label_col) : MMT_STATUS_OUT_OF_MEMORY;
    int64_t n_columns = r.n_fields;
    while (s == MMT_OK && csv_peek(&r, 0) >= 0) {
        s = csv_record(&r);
        if (in->status != MMT_OK) break;
        if (s == MMT_OK && r.blank) continue;
        if (s == MMT_OK) s = csv_pair(&r, folder, o, n_columns, image_col, caption_col, label_col, p, &cap);
        if (s != MMT_OK) s = datasets_record_failed(p, o, s);
    }
    if (in->status != MMT_OK && s != MMT_STATUS_OUT_OF_MEMORY) s = datasets_stream_error(in);
    if (s == MMT_OK) s = datasets_check_nonempty(p);
    mmt_free(r.scratch);
    if (s != MMT_OK) {
        mmt_pairs_free(p);
        return s;
    }
    *out = p;
    return MMT_OK;
}

mmt_status mmt_pairs_parse_csv(const char *text, size_t len, const char *source, const char *folder,
                               const mmt_pairs_options *o, mmt_pairs **out) {
    datasets_stream in;
    datasets_stream_memory(&in, text, len, source);
    return csv_read(&in, folder, o, out);
}

mmt_status mmt_pairs_load_csv(const char *path, const mmt_pairs_options *o, mmt_pairs **out) {
    return datasets_load_stream(path, o, csv_read, out);
}

/* ---- the record reader for other layouts (datasets_internal.h) --------------------- */

struct datasets_csv {
    csv_reader r;
};

mmt_status datasets_csv_open(datasets_stream *in, size_t max_field, datasets_csv **out) {
    *out = NULL;
    datasets_csv *c = mmt_calloc(1, sizeof *c);
    if (!c) return MMT_STATUS_OUT_OF_MEMORY;
    c->r = (csv_reader){.in = in, .line = 1, .source = in->source, .max_text = max_field, .max_field = max_field};
    if (csv_peek(&c->r, 0) == 0xEF && csv_peek(&c->r, 1) == 0xBB && csv_peek(&c->r, 2) == 0xBF) in->at += 3;
    *out = c;
    return MMT_OK;
}

void datasets_csv_close(datasets_csv *c) {
    if (!c) return;
    mmt_free(c->r.scratch);
    mmt_free(c);
}

mmt_status datasets_csv_next(datasets_csv *c, int *got) {
    *got = 0;
    while (csv_peek(&c->r, 0) >= 0) {
        mmt_status s = csv_record(&c->r);
        if (c->r.in->status != MMT_OK) break;
        MMT_TRY(s);
        if (c->r.blank) continue;
        for (int64_t i = 0; i < c->r.n_fields; i++)
            if (c->r.field_bytes[i] > c->r.max_field)
                return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: field %lld is %llu bytes, over the limit of %zu",
                                c->r.source, (long long)c->r.record_line, (long long)i + 1,
                                (unsigned long long)c->r.field_bytes[i], c->r.max_field);
        *got = 1;
        return MMT_OK;
    }
    return c->r.in->status != MMT_OK ? datasets_stream_error(c->r.in) : MMT_OK;
}

int64_t datasets_csv_count(const datasets_csv *c) { return c->r.n_fields; }
const char *datasets_csv_field(const datasets_csv *c, int64_t i) { return csv_get(&c->r, i); }
int64_t datasets_csv_line(const datasets_csv *c) { return c->r.record_line; }
