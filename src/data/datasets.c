/* datasets.c — the one entry point that detects a dataset's layout, and the helpers its readers
 * share (see datasets.h). */
#include "data/datasets.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "core/log.h"
#include "data/datasets_internal.h"

void mmt_pairs_options_default(mmt_pairs_options *o) {
    memset(o, 0, sizeof *o);
    o->check_files = 1;
    o->max_text_bytes = MMT_PAIRS_DEFAULT_MAX_TEXT_BYTES;
    o->max_file_bytes = MMT_PAIRS_DEFAULT_MAX_FILE_BYTES;
}

static int has_extension(const char *path, const char *ext) {
    size_t n = strlen(path), e = strlen(ext);
    return n > e && strcasecmp(path + n - e, ext) == 0;
}

/* A .json file whose first line is a whole JSONL pair ({"image_path"/"text": ...}) is JSONL
 * under the wrong extension; anything else (COCO is one object, usually one long line) is not.
 * Only the first 64 KiB are looked at. */
static int json_is_jsonl(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    static const size_t cap = 64 * 1024;
    char *buf = mmt_malloc(cap);
    size_t n = buf ? fread(buf, 1, cap, f) : 0;
    fclose(f);
    const char *nl = buf ? memchr(buf, '\n', n) : NULL;
    int yes = 0;
    mmt_json_doc *doc = NULL;
    if (nl && mmt_json_parse(buf, (size_t)(nl - buf), path, &doc) == MMT_OK) {
        const mmt_json *root = mmt_json_root(doc);
        yes = root->type == MMT_JSON_OBJECT && (mmt_json_get(root, "image_path") || mmt_json_get(root, "text"));
    }
    mmt_clear_error();
    mmt_json_free(doc);
    mmt_free(buf);
    return yes;
}

mmt_status mmt_pairs_load(const char *path, const mmt_pairs_options *o, mmt_pairs **out) {
    *out = NULL;
    mmt_pairs_options defaults;
    if (!o) {
        mmt_pairs_options_default(&defaults);
        o = &defaults;
    }
    struct stat st;
    if (stat(path, &st) != 0) return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: no such file or folder", path);
    if (S_ISDIR(st.st_mode)) return mmt_pairs_load_image_folder(path, o, out);
    if (has_extension(path, ".jsonl")) return mmt_pairs_load_jsonl_with_options(path, o, out);
    if (has_extension(path, ".json") && !json_is_jsonl(path)) return mmt_pairs_load_coco(path, o, out);
    if (has_extension(path, ".json")) return mmt_pairs_load_jsonl_with_options(path, o, out);
    if (has_extension(path, ".csv")) return mmt_pairs_load_csv(path, o, out);
    return mmt_fail(MMT_STATUS_UNSUPPORTED,
                    "%s: unknown dataset layout (expected .jsonl pairs, .json COCO captions, .csv or an "
                    "image folder)", path);
}

mmt_pairs *datasets_new(const char *source) {
    mmt_pairs *p = mmt_calloc(1, sizeof *p);
    if (p && !(p->source = mmt_strdup(source))) {
        mmt_free(p);
        p = NULL;
    }
    return p;
}

mmt_status datasets_append(mmt_pairs *p, int64_t *cap, char *image_path, char *text, char *label) {
    if (!image_path || !text || p->n == *cap) {
        int64_t grown = *cap ? *cap * 2 : 256;
        mmt_pair *items = image_path && text ? mmt_realloc(p->items, (size_t)grown * sizeof *items) : NULL;
        if (!items) {
            mmt_free(image_path);
            mmt_free(text);
            mmt_free(label);
            return MMT_STATUS_OUT_OF_MEMORY;
        }
        p->items = items;
        *cap = grown;
    }
    p->items[p->n++] = (mmt_pair){image_path, text, label};
    return MMT_OK;
}

char *datasets_folder_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return mmt_strdup(".");
    if (slash == path) return mmt_strdup("/");
    return mmt_strndup(path, (size_t)(slash - path));
}

mmt_status datasets_load_stream(const char *path, const mmt_pairs_options *o, datasets_stream_reader read,
                                mmt_pairs **out) {
    *out = NULL;
    datasets_stream in;
    MMT_TRY(datasets_stream_open(&in, path, datasets_max_file_bytes(o)));
    char *folder = datasets_folder_of(path);
    mmt_status s = folder ? read(&in, folder, o, out) : MMT_STATUS_OUT_OF_MEMORY;
    mmt_free(folder);
    datasets_stream_close(&in);
    return s;
}

char *datasets_resolve(const char *folder, const char *name) {
    return name[0] == '/' ? mmt_strdup(name) : mmt_path_join(folder, name);
}

mmt_status datasets_record_failed(mmt_pairs *p, const mmt_pairs_options *o, mmt_status s) {
    if (!o->skip_bad || (s != MMT_STATUS_BAD_FORMAT && s != MMT_STATUS_NOT_FOUND)) return s;
    mmt_log_warn("skipped: %s", mmt_last_error());
    p->skipped++;
    return MMT_OK;
}

mmt_status datasets_check_nonempty(const mmt_pairs *p) {
    if (p->n > 0) return MMT_OK;
    if (p->skipped)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: no image-text pairs (all %lld records were bad)", p->source,
                        (long long)p->skipped);
    return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: no image-text pairs", p->source);
}

size_t datasets_max_text_bytes(const mmt_pairs_options *o) {
    return o && o->max_text_bytes ? o->max_text_bytes : MMT_PAIRS_DEFAULT_MAX_TEXT_BYTES;
}

size_t datasets_max_file_bytes(const mmt_pairs_options *o) {
    return o && o->max_file_bytes ? o->max_file_bytes : MMT_PAIRS_DEFAULT_MAX_FILE_BYTES;
}

mmt_status datasets_text_too_long(const char *where, uint64_t n, size_t limit) {
    return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: text is %llu bytes, over the limit of %zu (--max-text-bytes)", where,
                    (unsigned long long)n, limit);
}

const char *datasets_image_problem(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return "not found";
    return S_ISREG(st.st_mode) ? NULL : "not a regular file";
}
