/* pairs.c — JSONL image–text pairs (see pairs.h). */
#include "data/pairs.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "core/log.h"

#define PAIRS_MAX_FILE_BYTES ((size_t)1 << 30)

/* The folder part of path ("." when it has none); caller frees. */
static char *folder_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return mmt_strdup(".");
    if (slash == path) return mmt_strdup("/");
    return mmt_strndup(path, (size_t)(slash - path));
}

/* One line into *pair; an error message names FILE:LINE. */
static mmt_status parse_line(const char *path, int64_t lineno, const char *line, size_t len,
                             const char *folder, int check_files, mmt_pair *pair) {
    char what[600];
    snprintf(what, sizeof what, "%s:%lld", path, (long long)lineno);
    mmt_json_doc *doc = NULL;
    mmt_status s = mmt_json_parse(line, len, what, &doc);
    if (s != MMT_OK) return s;
    const mmt_json *root = mmt_json_root(doc);
    const char *image = NULL, *text = NULL, *label = NULL;
    if (root->type != MMT_JSON_OBJECT) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected a JSON object, got %s", what, mmt_json_type_name(root->type));
        goto done;
    }
    if ((s = mmt_json_get_string(root, "image_path", NULL, &image, what, "")) != MMT_OK) goto done;
    if ((s = mmt_json_get_string(root, "text", NULL, &text, what, "")) != MMT_OK) goto done;
    if ((s = mmt_json_get_string(root, "label", NULL, &label, what, "")) != MMT_OK) goto done;
    if (!image || !image[0]) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: missing \"image_path\"", what);
        goto done;
    }
    if (!text || !text[0]) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: missing or empty \"text\"", what);
        goto done;
    }
    if (label && !label[0]) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: empty \"label\"", what);
        goto done;
    }
    pair->image_path = image[0] == '/' ? mmt_strdup(image) : mmt_path_join(folder, image);
    if (check_files && pair->image_path && !mmt_file_exists(pair->image_path)) {
        s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: image not found: %s", what, pair->image_path);
        mmt_free(pair->image_path);
        goto done;
    }
    pair->text = mmt_strdup(text);
    pair->label = label ? mmt_strdup(label) : NULL;
    if (!pair->image_path || !pair->text || (label && !pair->label)) {
        mmt_free(pair->image_path);
        mmt_free(pair->text);
        mmt_free(pair->label);
        s = MMT_STATUS_OUT_OF_MEMORY;
    }
done:
    mmt_json_free(doc);
    return s;
}

mmt_status mmt_pairs_load_jsonl(const char *path, int skip_bad, mmt_pairs **out) {
    return mmt_pairs_load_jsonl_checked(path, skip_bad, 0, out);
}

mmt_status mmt_pairs_load_jsonl_checked(const char *path, int skip_bad, int check_files, mmt_pairs **out) {
    *out = NULL;
    char *data = NULL, *folder = NULL;
    size_t len = 0;
    mmt_status s = mmt_file_read_all(path, PAIRS_MAX_FILE_BYTES, &data, &len);
    if (s != MMT_OK) return s;
    mmt_pairs *p = mmt_calloc(1, sizeof *p);
    folder = folder_of(path);
    if (!p || !folder || !(p->source = mmt_strdup(path))) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    int64_t cap = 0, lineno = 0;
    for (size_t at = 0; at < len;) {
        const char *line = data + at;
        const char *nl = memchr(line, '\n', len - at);
        size_t n = nl ? (size_t)(nl - line) : len - at;
        at += n + 1;
        lineno++;
        size_t k = 0;
        while (k < n && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == n) continue;
        if (p->n == cap) {
            cap = cap ? cap * 2 : 256;
            mmt_pair *items = mmt_realloc(p->items, (size_t)cap * sizeof *items);
            if (!items) {
                s = MMT_STATUS_OUT_OF_MEMORY;
                goto done;
            }
            p->items = items;
        }
        s = parse_line(path, lineno, line, n, folder, check_files, &p->items[p->n]);
        if (s == MMT_OK) {
            p->n++;
        } else if (skip_bad && (s == MMT_STATUS_BAD_FORMAT || s == MMT_STATUS_NOT_FOUND)) {
            mmt_log_warn("skipped: %s", mmt_last_error());
            p->skipped++;
            s = MMT_OK;
        } else {
            goto done;
        }
    }
    if (p->n == 0) s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: no image-text pairs", path);
done:
    mmt_free(data);
    mmt_free(folder);
    if (s != MMT_OK) {
        mmt_pairs_free(p);
        return s;
    }
    *out = p;
    return MMT_OK;
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
