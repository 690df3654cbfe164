/*
 * dataset_csv.c — image–caption pairs from a CSV file with a header (see datasets.h).
 *
 * A small RFC 4180 reader: fields separated by commas, records by LF or CRLF; a field that
 * starts with a quote runs to the matching quote, "" inside it is one quote, and it may span
 * lines. A quote inside an unquoted field, or text after a closing quote, is an error rather
 * than a guess, since either usually means a row was cut or mis-exported. Messages name the
 * line the record starts on.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/file.h"
#include "data/datasets.h"
#include "data/datasets_internal.h"

#define CSV_MAX_FILE_BYTES ((size_t)1 << 30)
#define CSV_MAX_FIELDS 256

typedef struct csv_reader {
    const char *text;
    size_t len, at;
    int64_t line;          /* line of text[at], from 1 */
    const char *source;
    char *scratch;         /* the record's fields, unquoted, each NUL-terminated; owned */
    size_t scratch_len, scratch_cap;
    size_t field[CSV_MAX_FIELDS]; /* offsets into scratch */
    int64_t n_fields;
    int64_t record_line;   /* where the current record starts */
    int blank;             /* the record was an empty line */
} csv_reader;

static int csv_put(csv_reader *r, char c) {
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

/* After an error inside a record: continue at the next line. */
static void csv_skip_line(csv_reader *r) {
    const char *nl = memchr(r->text + r->at, '\n', r->len - r->at);
    if (!nl) {
        r->at = r->len;
        return;
    }
    r->at = (size_t)(nl - r->text) + 1;
    r->line++;
}

static int csv_at_record_end(const csv_reader *r) {
    if (r->at >= r->len || r->text[r->at] == '\n') return 1;
    return r->text[r->at] == '\r' && r->at + 1 < r->len && r->text[r->at + 1] == '\n';
}

/* Reads one record starting at r->at into r->field / r->scratch. */
static mmt_status csv_record(csv_reader *r) {
    r->record_line = r->line;
    r->n_fields = 0;
    r->scratch_len = 0;
    size_t start = r->at;
    for (;;) {
        if (r->n_fields == CSV_MAX_FIELDS) {
            csv_skip_line(r);
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: more than %d fields", r->source,
                            (long long)r->record_line, CSV_MAX_FIELDS);
        }
        r->field[r->n_fields++] = r->scratch_len;
        if (r->at < r->len && r->text[r->at] == '"') {
            int64_t quote_line = r->line;
            r->at++;
            for (;;) {
                if (r->at >= r->len)
                    return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: field %lld: quote opened here is never closed",
                                    r->source, (long long)quote_line, (long long)r->n_fields);
                char c = r->text[r->at++];
                if (c == '"') {
                    if (r->at < r->len && r->text[r->at] == '"') {
                        r->at++;
                    } else {
                        break;
                    }
                }
                if (c == '\n') r->line++;
                if (!csv_put(r, c)) return MMT_STATUS_OUT_OF_MEMORY;
            }
            if (!csv_at_record_end(r) && r->text[r->at] != ',') {
                int64_t at_line = r->line;
                csv_skip_line(r);
                return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: field %lld: text after the closing quote",
                                r->source, (long long)at_line, (long long)r->n_fields);
            }
        } else {
            while (!csv_at_record_end(r) && r->text[r->at] != ',') {
                char c = r->text[r->at++];
                if (c == '"') {
                    csv_skip_line(r);
                    return mmt_fail(MMT_STATUS_BAD_FORMAT,
                                    "%s:%lld: field %lld: a quote inside an unquoted field (quote the whole field "
                                    "and double the quote)", r->source, (long long)r->record_line,
                                    (long long)r->n_fields);
                }
                if (!csv_put(r, c)) return MMT_STATUS_OUT_OF_MEMORY;
            }
        }
        if (!csv_put(r, '\0')) return MMT_STATUS_OUT_OF_MEMORY;
        if (r->at < r->len && r->text[r->at] == ',') {
            r->at++;
            continue;
        }
        r->blank = r->at == start;
        if (r->at < r->len && r->text[r->at] == '\r') r->at++;
        if (r->at < r->len) {
            r->at++; /* the '\n' */
            r->line++;
        }
        return MMT_OK;
    }
}

static const char *csv_get(const csv_reader *r, int64_t i) { return r->scratch + r->field[i]; }

/* Column index of the first header name in `names` (NULL-terminated), or -1. */
static int64_t csv_column(const csv_reader *r, const char *const *names) {
    for (int64_t i = 0; i < r->n_fields; i++) {
        const char *h = csv_get(r, i);
        while (*h == ' ') h++;
        size_t n = strlen(h);
        while (n && h[n - 1] == ' ') n--;
        for (const char *const *name = names; *name; name++)
            if (strlen(*name) == n && strncasecmp(h, *name, n) == 0) return i;
    }
    return -1;
}

static const char *const IMAGE_NAMES[] = {"image", "image_path", "file_name", NULL};
static const char *const CAPTION_NAMES[] = {"caption", "text", NULL};
static const char *const LABEL_NAMES[] = {"label", NULL};

/* Finds the header's columns; the header must be the first non-blank record. */
static mmt_status csv_header(csv_reader *r, int64_t *image, int64_t *caption, int64_t *label) {
    do {
        if (r->at >= r->len) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: empty file (expected a header row "
                                             "\"image,caption\")", r->source);
        MMT_TRY(csv_record(r));
    } while (r->blank);
    *image = csv_column(r, IMAGE_NAMES);
    *caption = csv_column(r, CAPTION_NAMES);
    *label = csv_column(r, LABEL_NAMES);
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
    if (r->n_fields != n_columns)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: expected %lld fields as in the header, got %lld", r->source,
                        line, (long long)n_columns, (long long)r->n_fields);
    const char *image = csv_get(r, image_col), *caption = csv_get(r, caption_col);
    const char *label = label_col >= 0 ? csv_get(r, label_col) : NULL;
    if (!image[0]) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: empty image", r->source, line);
    if (!caption[0]) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: empty caption", r->source, line);
    if (label && !label[0]) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: empty label", r->source, line);
    char *path = datasets_resolve(folder, image);
    if (path && o->check_files && !mmt_file_exists(path)) {
        mmt_status s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s:%lld: image not found: %s", r->source, line, path);
        mmt_free(path);
        return s;
    }
    return datasets_append(p, cap, path, mmt_strdup(caption), label ? mmt_strdup(label) : NULL);
}

mmt_status mmt_pairs_parse_csv(const char *text, size_t len, const char *source, const char *folder,
                               const mmt_pairs_options *o, mmt_pairs **out) {
    *out = NULL;
    mmt_pairs_options defaults;
    if (!o) {
        mmt_pairs_options_default(&defaults);
        o = &defaults;
    }
    csv_reader r = {.text = text, .len = len, .line = 1, .source = source};
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) r.at = 3;
    int64_t cap = 0, image_col = -1, caption_col = -1, label_col = -1;
    mmt_pairs *p = datasets_new(source);
    mmt_status s = p ? csv_header(&r, &image_col, &caption_col, &label_col) : MMT_STATUS_OUT_OF_MEMORY;
    int64_t n_columns = r.n_fields;
    while (s == MMT_OK && r.at < r.len) {
        s = csv_record(&r);
        if (s == MMT_OK && r.blank) continue;
        if (s == MMT_OK) s = csv_pair(&r, folder, o, n_columns, image_col, caption_col, label_col, p, &cap);
        if (s != MMT_OK) s = datasets_record_failed(p, o, s);
    }
    if (s == MMT_OK) s = datasets_check_nonempty(p);
    mmt_free(r.scratch);
    if (s != MMT_OK) {
        mmt_pairs_free(p);
        return s;
    }
    *out = p;
    return MMT_OK;
}

mmt_status mmt_pairs_load_csv(const char *path, const mmt_pairs_options *o, mmt_pairs **out) {
    *out = NULL;
    char *data = NULL, *folder = NULL;
    size_t len = 0;
    MMT_TRY(mmt_file_read_all(path, CSV_MAX_FILE_BYTES, &data, &len));
    mmt_status s = (folder = datasets_folder_of(path)) ? mmt_pairs_parse_csv(data, len, path, folder, o, out)
                                                       : MMT_STATUS_OUT_OF_MEMORY;
    mmt_free(data);
    mmt_free(folder);
    return s;
}
