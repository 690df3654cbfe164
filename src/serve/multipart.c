/* multipart.c — multipart/form-data into the endpoints' JSON (see multipart.h). */
#include "serve/multipart.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "eval/report.h"

#define MAX_PARTS 1024

typedef struct part {
    char name[64];
    int file;          /* it has a filename, or is named image/images/file */
    const char *data;  /* into the body */
    size_t len;
} part;

static const char *find(const char *hay, size_t n, const char *needle, size_t m) {
    if (m == 0 || n < m) return NULL;
    for (size_t i = 0; i + m <= n; i++)
        if (hay[i] == needle[0] && !memcmp(hay + i, needle, m)) return hay + i;
    return NULL;
}

/* The value of attribute `key` (name, filename, boundary) in a header line [p, end), unquoted. */
static int attribute(const char *p, const char *end, const char *key, char *out, size_t size) {
    size_t k = strlen(key);
    for (const char *q = p; q + k + 1 <= end; q++) {
        if (strncasecmp(q, key, k) || q[k] != '=' || (q > p && q[-1] != ' ' && q[-1] != ';' && q[-1] != '\t')) continue;
        const char *v = q + k + 1, *e;
        if (v < end && *v == '"') {
            v++;
            for (e = v; e < end && *e != '"'; e++) {}
        } else {
            for (e = v; e < end && *e != ';' && *e != ' ' && *e != '\r' && *e != '\n'; e++) {}
        }
        size_t n = (size_t)(e - v);
        if (n >= size) n = size - 1;
        memcpy(out, v, n);
        out[n] = '\0';
        return 1;
    }
    return 0;
}

static mmt_status parse(const char *content_type, const char *body, size_t len, part *parts, int64_t *n_parts) {
    char boundary[200], delim[210];
    const char *ct_end = content_type + strlen(content_type);
    if (!attribute(content_type, ct_end, "boundary", boundary, sizeof boundary) || !boundary[0])
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "multipart body: no boundary in the Content-Type");
    size_t dl = (size_t)snprintf(delim, sizeof delim, "--%s", boundary);
    const char *p = find(body, len, delim, dl), *end = body + len;
    if (!p) return mmt_fail(MMT_STATUS_BAD_FORMAT, "multipart body: the boundary never occurs");
    *n_parts = 0;
    for (;;) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') return MMT_OK; /* the closing delimiter */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "multipart body: a delimiter not followed by a line end");
        p += 2;
        const char *headers_end = find(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!headers_end) return mmt_fail(MMT_STATUS_BAD_FORMAT, "multipart body: part %lld has no end of headers",
                                          (long long)*n_parts + 1);
        if (*n_parts == MAX_PARTS) return mmt_fail(MMT_STATUS_BAD_FORMAT, "multipart body: more than %d parts", MAX_PARTS);
        part *pt = &parts[*n_parts];
        memset(pt, 0, sizeof *pt);
        char filename[256] = "";
        int named = 0;
        for (const char *line = p; line < headers_end;) {
            const char *eol = find(line, (size_t)(headers_end - line), "\r\n", 2);
            if (!eol) eol = headers_end;
            if (eol - line >= 20 && !strncasecmp(line, "Content-Disposition:", 20)) { /* never past the body */
                named = attribute(line + 20, eol, "name", pt->name, sizeof pt->name);
                attribute(line + 20, eol, "filename", filename, sizeof filename);
            }
            line = eol + 2;
        }
        if (!named || !pt->name[0])
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "multipart body: part %lld has no name (Content-Disposition: form-data; "
                            "name=...)", (long long)*n_parts + 1);
        pt->file = filename[0] || !strcmp(pt->name, "image") || !strcmp(pt->name, "images") || !strcmp(pt->name, "file");
        pt->data = headers_end + 4;
        char next[214];
        size_t nl = (size_t)snprintf(next, sizeof next, "\r\n%s", delim);
        const char *stop = find(pt->data, (size_t)(end - pt->data), next, nl);
        if (!stop) return mmt_fail(MMT_STATUS_BAD_FORMAT, "multipart body: part '%s' is cut short (no closing boundary)", pt->name);
        pt->len = (size_t)(stop - pt->data);
        (*n_parts)++;
        p = stop + 2;
    }
}

static int is_one_of(const char *name, const char *const *names) {
    for (; *names; names++)
        if (!strcmp(name, *names)) return 1;
    return 0;
}

static const char *const INTEGERS[] = {"top_k", "seed", "max_new_tokens", "min_new_tokens", "num_beams",
                                       "no_repeat_ngram_size", NULL};
static const char *const REALS[] = {"temperature", "top_p", "repetition_penalty", "length_penalty", NULL};
static const char *const FLAGS[] = {"do_sample", "int8", "thumbnails", NULL};
/* Text parts that make a list, repeated or (but filters) comma-separated. */
static const char *const LISTS[] = {"labels", "filters", "allowed_words", "bad_words", NULL};

/* A text part's value as JSON: a number or flag when it reads as one, else a string. */
static void text_value(mmt_strbuf *j, const part *p) {
    char buf[64];
    int numeric = is_one_of(p->name, INTEGERS) || is_one_of(p->name, REALS), flag = is_one_of(p->name, FLAGS);
    if ((numeric || flag) && p->len > 0 && p->len < sizeof buf) {
        memcpy(buf, p->data, p->len);
        buf[p->len] = '\0';
        if ((numeric && mmt_json_is_number(buf)) || (flag && (!strcmp(buf, "true") || !strcmp(buf, "false")))) {
            mmt_strbuf_append(j, buf, p->len);
            return;
        }
    }
    mmt_strbuf_json_string(j, p->data, p->len);
}

static void file_value(mmt_strbuf *j, const part *p) {
    mmt_strbuf_printf(j, "{\"image\": \"");
    mmt_report_base64(j, (const uint8_t *)p->data, p->len);
    mmt_strbuf_printf(j, "\"}");
}

mmt_status mmt_multipart_to_json(const char *content_type, const char *body, size_t len, const char *path, mmt_strbuf *j) {
    part *parts = mmt_malloc(MAX_PARTS * sizeof *parts);
    if (!parts) return MMT_STATUS_OUT_OF_MEMORY;
    int64_t n = 0;
    mmt_status st = parse(content_type, body, len, parts, &n);
    if (st != MMT_OK) {
        mmt_free(parts);
        return st;
    }
    int embeddings = !strcmp(path, "/v1/embeddings"), search = !strcmp(path, "/v1/search");
    const char *list_key = embeddings ? "input" : search ? NULL : "images";
    int first = 1;
    mmt_strbuf_append(j, "{", 1);
    if (list_key) { /* the inputs or images, in part order */
        mmt_strbuf_printf(j, "\"%s\": [", list_key);
        int k = 0;
        for (int64_t i = 0; i < n; i++) {
            if (!parts[i].file && !(embeddings && !strcmp(parts[i].name, "input"))) continue;
            if (k++) mmt_strbuf_append(j, ", ", 2);
            if (parts[i].file) file_value(j, &parts[i]);
            else mmt_strbuf_json_string(j, parts[i].data, parts[i].len);
        }
        mmt_strbuf_append(j, "]", 1);
        first = 0;
    }
    for (const char *const *lk = LISTS; *lk; lk++) { /* repeated parts */
        int k = 0;
        for (int64_t i = 0; i < n; i++) {
            if (parts[i].file || strcmp(parts[i].name, *lk)) continue;
            if (!k++) mmt_strbuf_printf(j, "%s\"%s\": [", first ? "" : ", ", *lk), first = 0;
            else mmt_strbuf_append(j, ", ", 2);
            const char *s = parts[i].data, *e = s + parts[i].len;
            if (strcmp(*lk, "filters")) { /* one part with commas holds several (a filter may hold a comma) */
                for (const char *c = s; c <= e; c++) {
                    if (c < e && *c != ',') continue;
                    const char *a = s, *b = c;
                    while (a < b && *a == ' ') a++;
                    while (b > a && b[-1] == ' ') b--;
                    if (s != parts[i].data) mmt_strbuf_append(j, ", ", 2);
                    mmt_strbuf_json_string(j, a, (size_t)(b - a));
                    s = c + 1;
                }
            } else {
                mmt_strbuf_json_string(j, s, parts[i].len);
            }
        }
        if (k) mmt_strbuf_append(j, "]", 1);
    }
    for (int64_t i = 0; i < n; i++) { /* the rest, by name */
        const part *p = &parts[i];
        if (is_one_of(p->name, LISTS) || (list_key && (p->file || (embeddings && !strcmp(p->name, "input")))))
            continue;
        mmt_strbuf_printf(j, "%s", first ? "" : ", ");
        first = 0;
        mmt_strbuf_json_string(j, p->name, strlen(p->name));
        mmt_strbuf_append(j, ": ", 2);
        if (search && p->file) file_value(j, p);
        else text_value(j, p);
    }
    mmt_strbuf_append(j, "}", 1);
    mmt_free(parts);
    if (j->failed) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_json_doc *doc = NULL; /* text parts must be UTF-8 (JSON's strings are) */
    st = mmt_json_parse(j->data, j->len, "multipart body", &doc);
    mmt_json_free(doc);
    if (st == MMT_STATUS_OUT_OF_MEMORY) return st;
    return st == MMT_OK ? MMT_OK : mmt_fail(MMT_STATUS_BAD_FORMAT, "multipart body: a text part is not UTF-8 text");
}
