/*
 * catalog.c — catalogue items from JSONL or CSV (see catalog.h).
 *
 * Both layouts stream through the fixed-size window of dataset_stream.c; CSV records come
 * from dataset_csv.c's RFC 4180 reader. Each item's metadata is turned into compact JSON text
 * here, once, so that the index can store it as is and SQLite's json_extract can filter on it.
 */
#define _GNU_SOURCE /* qsort_r */
#include "data/catalog.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "data/datasets_internal.h"

#define CATALOG_DEFAULT_FIELD_BYTES ((size_t)1 << 20)
#define CATALOG_DEFAULT_FILE_BYTES ((size_t)2 << 30)

void mmt_catalog_options_default(mmt_catalog_options *o) {
    memset(o, 0, sizeof *o);
    o->check_files = 1;
    o->max_field_bytes = CATALOG_DEFAULT_FIELD_BYTES;
    o->max_file_bytes = CATALOG_DEFAULT_FILE_BYTES;
}

void mmt_catalog_free(mmt_catalog *c) {
    if (!c) return;
    for (int64_t i = 0; i < c->n; i++) {
        mmt_free(c->items[i].id);
        mmt_free(c->items[i].title);
        mmt_free(c->items[i].image_path);
        mmt_free(c->items[i].meta);
    }
    mmt_free(c->items);
    mmt_free(c->source);
    mmt_free(c);
}

/* What one reader pass shares: the options, the folder images resolve against, the output. */
typedef struct catalog_reader {
    const mmt_catalog_options *o;
    const char *folder;
    const char *source;
    mmt_catalog *c;
    int64_t cap;
} catalog_reader;

/* Checks an item's fields and appends it, taking ownership of the four strings whatever
 * happens; an error names source:line. */
static mmt_status catalog_append(catalog_reader *r, int64_t line, char *id, char *title, char *image, char *meta) {
    mmt_status s = MMT_OK;
    if (!id || !meta) s = MMT_STATUS_OUT_OF_MEMORY;
    else if (!id[0]) s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: empty id", r->source, (long long)line);
    else if (!title && !image)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: item \"%s\" has neither a title nor an image", r->source,
                     (long long)line, id);
    else if (image && r->o->check_files && !mmt_file_exists(image))
        s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s:%lld: image not found: %s", r->source, (long long)line, image);
    else s = mmt_grow((void **)&r->c->items, &r->cap, r->c->n + 1, sizeof *r->c->items);
    if (s != MMT_OK) {
        mmt_free(id);
        mmt_free(title);
        mmt_free(image);
        mmt_free(meta);
        return s;
    }
    r->c->items[r->c->n++] = (mmt_catalog_item){.id = id, .title = title, .image_path = image, .meta = meta,
                                                .line = line};
    return MMT_OK;
}

/* ---- JSONL -------------------------------------------------------------------------- */

static int is_reserved_key(const char *k) {
    return !strcmp(k, "id") || !strcmp(k, "title") || !strcmp(k, "image") || !strcmp(k, "image_path");
}

/* An optional string member: *out NULL when absent or null; an error for another type. */
static mmt_status optional_string(const mmt_json *obj, const char *key, const char *where, const char **out) {
    const mmt_json *v = mmt_json_get(obj, key);
    *out = NULL;
    if (!v || v->type == MMT_JSON_NULL) return MMT_OK;
    if (v->type != MMT_JSON_STRING)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: \"%s\" must be a string, got %s", where, key,
                        mmt_json_type_name(v->type));
    if (strlen(v->string) != v->len)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: \"%s\" holds a NUL character", where, key);
    *out = v->string;
    return MMT_OK;
}

static int by_key(const void *a, const void *b, void *obj) {
    const mmt_json *o = obj;
    size_t i = *(const size_t *)a, j = *(const size_t *)b, n = o->key_lens[i] < o->key_lens[j] ? o->key_lens[i] : o->key_lens[j];
    int c = memcmp(o->keys[i], o->keys[j], n);
    return c ? c : (o->key_lens[i] > o->key_lens[j]) - (o->key_lens[i] < o->key_lens[j]);
}

/* The first key found twice in v or an object inside it (JSON readers disagree on which of
 * the two counts: SQLite's filters take the first, Python the last), or NULL. */
static const char *duplicate_key(const mmt_json *v, mmt_status *s) {
    if (v->type == MMT_JSON_ARRAY || v->type == MMT_JSON_OBJECT)
        for (size_t i = 0; i < v->len; i++) {
            const char *d = duplicate_key(&v->items[i], s);
            if (d || *s != MMT_OK) return d;
        }
    if (v->type != MMT_JSON_OBJECT || v->len < 2) return NULL;
    size_t *order = mmt_malloc(v->len * sizeof *order);
    if (!order) {
        *s = MMT_STATUS_OUT_OF_MEMORY;
        return NULL;
    }
    for (size_t i = 0; i < v->len; i++) order[i] = i;
    qsort_r(order, v->len, sizeof *order, by_key, (void *)v);
    const char *d = NULL;
    for (size_t i = 1; i < v->len && !d; i++)
        if (!by_key(&order[i - 1], &order[i], (void *)v)) d = v->keys[order[i]];
    mmt_free(order);
    return d;
}

static mmt_status jsonl_item(catalog_reader *r, const char *text, size_t len, int64_t line) {
    char where[600];
    snprintf(where, sizeof where, "%s:%lld", r->source, (long long)line);
    mmt_json_doc *doc = NULL;
    MMT_TRY(mmt_json_parse(text, len, where, &doc));
    const mmt_json *root = mmt_json_root(doc);
    mmt_status s = MMT_OK;
    const char *title = NULL, *image = NULL, *image_path = NULL;
    char id[64] = "";
    const char *id_text = id;
    const mmt_json *idv = mmt_json_get(root, "id");
    const char *dup = NULL;
    if (root->type != MMT_JSON_OBJECT) s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: not a JSON object", where);
    else if ((dup = duplicate_key(root, &s)) || s != MMT_OK)
        s = s != MMT_OK ? s : mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: key \"%.100s\" appears twice", where, dup);
    else if (!idv || idv->type == MMT_JSON_NULL) s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: no \"id\"", where);
    else if (idv->type == MMT_JSON_NUMBER && idv->is_integer) snprintf(id, sizeof id, "%lld", (long long)idv->integer);
    else if (idv->type == MMT_JSON_STRING && strlen(idv->string) == idv->len) id_text = idv->string;
    else if (idv->type == MMT_JSON_STRING) s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: \"id\" holds a NUL character", where);
    else s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: \"id\" must be a string or an integer (within 64 bits, written without "
                      "a fraction or exponent), got %s", where, mmt_json_type_name(idv->type));
    if (s == MMT_OK) s = optional_string(root, "title", where, &title);
    if (s == MMT_OK) s = optional_string(root, "image", where, &image);
    if (s == MMT_OK) s = optional_string(root, "image_path", where, &image_path);
    if (s == MMT_OK && image && image_path)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: give \"image\" or \"image_path\", not both", where);
    if (s == MMT_OK && image_path) image = image_path;
    if (s == MMT_OK && image && !image[0]) s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: empty image path", where);
    if (s != MMT_OK) {
        mmt_json_free(doc);
        return s;
    }
    mmt_strbuf meta = {0};
    mmt_strbuf_append(&meta, "{", 1);
    int first = 1;
    for (size_t i = 0; i < root->len; i++) {
        if (is_reserved_key(root->keys[i])) continue;
        if (!first) mmt_strbuf_append(&meta, ",", 1);
        first = 0;
        mmt_strbuf_json_string(&meta, root->keys[i], root->key_lens[i]);
        mmt_strbuf_append(&meta, ":", 1);
        mmt_json_write(&meta, &root->items[i]);
    }
    mmt_strbuf_append(&meta, "}", 1);
    if (meta.failed) mmt_strbuf_free(&meta);
    s = catalog_append(r, line, mmt_strdup(id_text), title && title[0] ? mmt_strdup(title) : NULL,
                       image ? datasets_resolve(r->folder, image) : NULL, meta.data);
    mmt_json_free(doc);
    return s;
}

/* Reads the next line into *line (its '\n' consumed, not kept); a line over `limit` is read
 * to its end but not held and *too_long set. *got = 0 at the end of the input. */
static mmt_status jsonl_line(datasets_stream *in, char **line, size_t *len, size_t *cap, size_t limit,
                             int *too_long, int *got) {
    *len = 0;
    *too_long = 0;
    *got = 0;
    while (datasets_stream_peek(in, 0) >= 0) {
        const char *p = in->buf + in->at;
        size_t n = in->len - in->at;
        const char *nl = memchr(p, '\n', n);
        size_t piece = nl ? (size_t)(nl - p) : n;
        *got = 1;
        if (*too_long || *len + piece > limit) {
            *too_long = 1;
        } else {
            int64_t c = (int64_t)*cap;
            MMT_TRY(mmt_grow((void **)line, &c, (int64_t)(*len + piece + 1), 1));
            *cap = (size_t)c;
            memcpy(*line + *len, p, piece);
            *len += piece;
        }
        in->at += piece + (nl != NULL);
        if (nl) break;
    }
    return MMT_OK;
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

static mmt_status jsonl_read(catalog_reader *r, datasets_stream *in) {
    char *line = NULL;
    size_t len = 0, cap = 0;
    mmt_status s = MMT_OK;
    for (int64_t no = 1; s == MMT_OK; no++) {
        int too_long = 0, got = 0;
        s = jsonl_line(in, &line, &len, &cap, r->o->max_field_bytes, &too_long, &got);
        if (s != MMT_OK || !got) break;
        if (too_long)
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: the line is over the limit of %zu bytes", r->source,
                         (long long)no, r->o->max_field_bytes);
        else if (no == 1 && len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) /* a UTF-8 BOM, as CSV allows */
            s = is_blank(line + 3, len - 3) ? MMT_OK : jsonl_item(r, line + 3, len - 3, no);
        else if (!is_blank(line, len)) s = jsonl_item(r, line, len, no);
    }
    if (s == MMT_OK && in->status != MMT_OK) s = datasets_stream_error(in);
    mmt_free(line);
    return s;
}

/* ---- CSV ---------------------------------------------------------------------------- */

/* The header's columns: where id, title and image are (-1: absent), and every name. */
typedef struct csv_columns {
    int64_t id, title, image, n;
    char **names; /* owned: every column's trimmed header name */
} csv_columns;

static void columns_free(csv_columns *k) {
    for (int64_t i = 0; i < k->n; i++) mmt_free(k->names[i]);
    mmt_free(k->names);
}

static mmt_status csv_header(catalog_reader *r, datasets_csv *csv, csv_columns *k) {
    int got = 0;
    MMT_TRY(datasets_csv_next(csv, &got));
    if (!got)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: empty file (expected a header row such as \"id,title,image\")",
                        r->source);
    long long line = (long long)datasets_csv_line(csv);
    k->id = k->title = k->image = -1;
    k->n = datasets_csv_count(csv);
    if (!(k->names = mmt_calloc((size_t)k->n, sizeof *k->names))) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < k->n; i++) {
        const char *h = datasets_csv_field(csv, i);
        while (*h == ' ') h++;
        size_t n = strlen(h);
        while (n && h[n - 1] == ' ') n--;
        if (!(k->names[i] = mmt_strndup(h, n))) return MMT_STATUS_OUT_OF_MEMORY;
        const char *name = k->names[i];
        int64_t *slot = !strcasecmp(name, "id") ? &k->id : !strcasecmp(name, "title") ? &k->title
                      : !strcasecmp(name, "image") || !strcasecmp(name, "image_path") ? &k->image : NULL;
        if (!n) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: column %lld has no name", r->source, line, (long long)i + 1);
        for (int64_t j = 0; j < i; j++)
            if (!strcasecmp(k->names[j], name) || (slot && slot == &k->image && *slot >= 0))
                return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: column \"%s\" appears twice", r->source, line, name);
        if (slot) *slot = i;
    }
    if (k->id < 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: the header has no \"id\" column (the first row must name the "
                        "columns, e.g. \"id,title,image\")", r->source, line);
    return MMT_OK;
}

static mmt_status csv_item(catalog_reader *r, datasets_csv *csv, const csv_columns *k) {
    int64_t line = datasets_csv_line(csv);
    if (datasets_csv_count(csv) != k->n)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: expected %lld fields as in the header, got %lld", r->source,
                        (long long)line, (long long)k->n, (long long)datasets_csv_count(csv));
    mmt_strbuf meta = {0};
    mmt_strbuf_append(&meta, "{", 1);
    int first = 1;
    for (int64_t i = 0; i < k->n; i++) {
        const char *v = datasets_csv_field(csv, i);
        if (i == k->id || i == k->title || i == k->image || !v[0]) continue;
        if (!first) mmt_strbuf_append(&meta, ",", 1);
        first = 0;
        mmt_strbuf_json_string(&meta, k->names[i], strlen(k->names[i]));
        mmt_strbuf_append(&meta, ":", 1);
        if (mmt_json_is_number(v)) mmt_strbuf_append(&meta, v, strlen(v));
        else mmt_strbuf_json_string(&meta, v, strlen(v));
    }
    mmt_strbuf_append(&meta, "}", 1);
    if (meta.failed) mmt_strbuf_free(&meta);
    const char *title = k->title >= 0 ? datasets_csv_field(csv, k->title) : "";
    const char *image = k->image >= 0 ? datasets_csv_field(csv, k->image) : "";
    return catalog_append(r, line, mmt_strdup(datasets_csv_field(csv, k->id)), title[0] ? mmt_strdup(title) : NULL,
                          image[0] ? datasets_resolve(r->folder, image) : NULL, meta.data);
}

static mmt_status csv_read(catalog_reader *r, datasets_stream *in) {
    datasets_csv *csv = NULL;
    csv_columns k = {0};
    mmt_status s = datasets_csv_open(in, r->o->max_field_bytes, &csv);
    if (s == MMT_OK) s = csv_header(r, csv, &k);
    while (s == MMT_OK) {
        int got = 0;
        s = datasets_csv_next(csv, &got);
        if (s != MMT_OK || !got) break;
        s = csv_item(r, csv, &k);
    }
    columns_free(&k);
    datasets_csv_close(csv);
    return s;
}

/* ---- the whole file ------------------------------------------------------------------ */

static int by_id_then_line(const void *a, const void *b) {
    const mmt_catalog_item *x = *(const mmt_catalog_item *const *)a, *y = *(const mmt_catalog_item *const *)b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* A duplicate id is an error naming its second line and its first. */
static mmt_status check_unique_ids(const mmt_catalog *c) {
    if (c->n < 2) return MMT_OK;
    const mmt_catalog_item **order = mmt_malloc((size_t)c->n * sizeof *order);
    if (!order) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < c->n; i++) order[i] = &c->items[i];
    qsort(order, (size_t)c->n, sizeof *order, by_id_then_line);
    /* within an id, the items are in line order: a group's second item is its earliest
     * duplicate, and the one before it the first occurrence */
    const mmt_catalog_item *dup = NULL, *first = NULL;
    for (int64_t i = 1; i < c->n; i++) {
        int second = !strcmp(order[i]->id, order[i - 1]->id) && (i == 1 || strcmp(order[i - 1]->id, order[i - 2]->id));
        if (second && (!dup || order[i]->line < dup->line)) {
            dup = order[i];
            first = order[i - 1];
        }
    }
    mmt_status s = MMT_OK;
    if (dup)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s:%lld: duplicate id \"%s\" (first on line %lld)", c->source,
                     (long long)dup->line, dup->id, (long long)first->line);
    mmt_free(order);
    return s;
}

static mmt_status catalog_read(datasets_stream *in, int is_csv, const char *folder, const mmt_catalog_options *o,
                               mmt_catalog **out) {
    *out = NULL;
    mmt_catalog_options defaults;
    mmt_catalog_options_default(&defaults);
    if (!o) o = &defaults;
    mmt_catalog_options opts = *o;
    if (!opts.max_field_bytes) opts.max_field_bytes = CATALOG_DEFAULT_FIELD_BYTES;
    if (!opts.max_file_bytes) opts.max_file_bytes = CATALOG_DEFAULT_FILE_BYTES;
    mmt_catalog *c = mmt_calloc(1, sizeof *c);
    if (!c || !(c->source = mmt_strdup(in->source))) {
        mmt_catalog_free(c);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    catalog_reader r = {.o = &opts, .folder = folder, .source = in->source, .c = c};
    mmt_status s = is_csv ? csv_read(&r, in) : jsonl_read(&r, in);
    if (s == MMT_OK && c->n == 0) s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: no items", in->source);
    if (s == MMT_OK) s = check_unique_ids(c);
    if (s != MMT_OK) {
        mmt_catalog_free(c);
        return s;
    }
    *out = c;
    return MMT_OK;
}

mmt_status mmt_catalog_parse(const char *text, size_t len, const char *source, int is_csv, const char *folder,
                             const mmt_catalog_options *o, mmt_catalog **out) {
    datasets_stream in;
    datasets_stream_memory(&in, text, len, source);
    return catalog_read(&in, is_csv, folder, o, out);
}

mmt_status mmt_catalog_load(const char *path, const mmt_catalog_options *o, mmt_catalog **out) {
    *out = NULL;
    size_t n = strlen(path);
    int is_csv = n >= 4 && !strcasecmp(path + n - 4, ".csv");
    datasets_stream in;
    MMT_TRY(datasets_stream_open(&in, path, o && o->max_file_bytes ? o->max_file_bytes : CATALOG_DEFAULT_FILE_BYTES));
    char *folder = datasets_folder_of(path);
    mmt_status s = folder ? catalog_read(&in, is_csv, folder, o, out) : MMT_STATUS_OUT_OF_MEMORY;
    mmt_free(folder);
    datasets_stream_close(&in);
    return s;
}
