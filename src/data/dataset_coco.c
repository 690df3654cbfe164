/*
 * dataset_coco.c — image–caption pairs from a COCO captions file (see datasets.h).
 *
 * The layout is the one of captions_train2017.json: "images" lists {"id", "file_name", ...},
 * "annotations" lists {"image_id", "caption", ...}; other keys are ignored. Images are indexed
 * by id (sorted, then binary search), so 600k annotations over 120k images stay fast. An
 * image's file is checked when the first annotation uses it, so unused entries cost nothing.
 * Messages name the JSON path of the bad value: "FILE: annotations[3].image_id: ...".
 * The document is read whole, so --max-file-bytes bounds it; a caption over --max-text-bytes
 * makes its annotation bad before the caption is copied.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "data/datasets.h"
#include "data/datasets_internal.h"

typedef struct coco_image {
    int64_t id;
    int64_t index;        /* position in "images" */
    const char *file_name; /* into the document; NULL when the entry was bad */
    char *path;           /* resolved, once the first annotation needs it; owned */
    int state;            /* 0 unchecked, 1 present, 2 missing */
} coco_image;

static int image_cmp(const void *a, const void *b) {
    const coco_image *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static coco_image *image_find(coco_image *images, int64_t n, int64_t id) {
    int64_t lo = 0, hi = n;
    while (lo < hi) { /* the first entry with this id: duplicates sort after it */
        int64_t mid = lo + (hi - lo) / 2;
        if (images[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && images[lo].id == id ? &images[lo] : NULL;
}

/* Reads images[i] into *img (file_name NULL when bad); an error names images[i]. Returns
 * has_id = 0 when even the id is unusable (the entry then cannot be indexed). */
static mmt_status coco_image_entry(const mmt_json *e, int64_t i, const char *source, coco_image *img, int *has_id) {
    *has_id = 0;
    img->index = i;
    img->file_name = NULL;
    if (e->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: images[%lld]: expected an object, got %s", source, (long long)i,
                        mmt_json_type_name(e->type));
    const mmt_json *id = mmt_json_get(e, "id");
    if (!id || id->type != MMT_JSON_NUMBER || !id->is_integer)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: images[%lld].id: expected an integer, got %s", source,
                        (long long)i, id ? mmt_json_type_name(id->type) : "nothing");
    img->id = id->integer;
    *has_id = 1;
    const mmt_json *name = mmt_json_get(e, "file_name");
    if (!name || name->type != MMT_JSON_STRING || !name->string[0] || strlen(name->string) != name->len)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: images[%lld].file_name: expected a file name, got %s", source,
                        (long long)i, name ? mmt_json_type_name(name->type) : "nothing");
    img->file_name = name->string;
    return MMT_OK;
}

/* Indexes "images": *out sorted by id, duplicates reported (the first one is kept). */
static mmt_status coco_index(const mmt_json *list, const char *source, const mmt_pairs_options *o, mmt_pairs *p,
                             coco_image **out, int64_t *n_out) {
    coco_image *images = mmt_calloc(list->len ? list->len : 1, sizeof *images);
    if (!images) return MMT_STATUS_OUT_OF_MEMORY;
    int64_t n = 0;
    mmt_status s = MMT_OK;
    for (size_t i = 0; s == MMT_OK && i < list->len; i++) {
        int has_id;
        s = coco_image_entry(&list->items[i], (int64_t)i, source, &images[n], &has_id);
        if (has_id) n++; /* bad entries with an id stay, so annotations of them say why */
        if (s != MMT_OK) s = datasets_record_failed(p, o, s);
    }
    if (s == MMT_OK) qsort(images, (size_t)n, sizeof *images, image_cmp);
    for (int64_t i = 1; s == MMT_OK && i < n; i++) {
        if (images[i].id != images[i - 1].id) continue;
        int64_t first = image_find(images, n, images[i].id)->index;
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: images[%lld].id: duplicate id %lld (also images[%lld])", source,
                     (long long)images[i].index, (long long)images[i].id, (long long)first);
        s = datasets_record_failed(p, o, s);
    }
    if (s != MMT_OK) {
        mmt_free(images);
        return s;
    }
    *out = images;
    *n_out = n;
    return MMT_OK;
}

/* annotations[i] as a pair. */
static mmt_status coco_annotation(const mmt_json *e, int64_t i, const char *source, const char *folder,
                                  const mmt_pairs_options *o, coco_image *images, int64_t n_images, mmt_pairs *p,
                                  int64_t *cap) {
    long long k = (long long)i;
    if (e->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: annotations[%lld]: expected an object, got %s", source, k,
                        mmt_json_type_name(e->type));
    const mmt_json *id = mmt_json_get(e, "image_id"), *caption = mmt_json_get(e, "caption");
    if (!id || id->type != MMT_JSON_NUMBER || !id->is_integer)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: annotations[%lld].image_id: expected an integer, got %s", source,
                        k, id ? mmt_json_type_name(id->type) : "nothing");
    if (!caption || caption->type != MMT_JSON_STRING)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: annotations[%lld].caption: expected a string, got %s", source, k,
                        caption ? mmt_json_type_name(caption->type) : "nothing");
    /* COCO captions often end in a space or newline; those are not part of the text. */
    const char *text = caption->string;
    size_t len = caption->len;
    while (len && (*text == ' ' || *text == '\n' || *text == '\t' || *text == '\r')) text++, len--;
    while (len && (text[len - 1] == ' ' || text[len - 1] == '\n' || text[len - 1] == '\t' || text[len - 1] == '\r'))
        len--;
    if (!len || memchr(text, '\0', len))
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: annotations[%lld].caption: empty caption", source, k);
    if (len > datasets_max_text_bytes(o)) {
        char where[600];
        snprintf(where, sizeof where, "%s: annotations[%lld].caption", source, k);
        return datasets_text_too_long(where, len, datasets_max_text_bytes(o));
    }
    coco_image *img = image_find(images, n_images, id->integer);
    if (!img)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: annotations[%lld].image_id: no image has id %lld", source, k,
                        (long long)id->integer);
    if (!img->file_name)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: annotations[%lld].image_id: image %lld (images[%lld]) is bad",
                        source, k, (long long)id->integer, (long long)img->index);
    if (!img->path && !(img->path = datasets_resolve(folder, img->file_name))) return MMT_STATUS_OUT_OF_MEMORY;
    if (img->state == 0) img->state = !o->check_files || !datasets_image_problem(img->path) ? 1 : 2;
    if (img->state == 2)
        return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: images[%lld].file_name: image not found: %s (used by "
                        "annotations[%lld])", source, (long long)img->index, img->path, k);
    return datasets_append(p, cap, mmt_strdup(img->path), mmt_strndup(text, len), NULL);
}

static const mmt_json *coco_list(const mmt_json *root, const char *key, const char *source, mmt_status *s) {
    const mmt_json *list = mmt_json_get(root, key);
    if (!list || list->type != MMT_JSON_ARRAY) {
        *s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: expected an array, got %s (is this a COCO captions file?)",
                      source, key, list ? mmt_json_type_name(list->type) : "nothing");
        return NULL;
    }
    return list;
}

mmt_status mmt_pairs_parse_coco(const char *text, size_t len, const char *source, const char *folder,
                                const mmt_pairs_options *o, mmt_pairs **out) {
    *out = NULL;
    mmt_pairs_options defaults;
    if (!o) {
        mmt_pairs_options_default(&defaults);
        o = &defaults;
    }
    mmt_json_doc *doc = NULL;
    coco_image *images = NULL;
    int64_t n_images = 0, cap = 0;
    const mmt_json *image_list = NULL, *annotations = NULL;
    mmt_pairs *p = datasets_new(source);
    mmt_status s = p ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK && len > datasets_max_file_bytes(o))
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: file is %zu bytes, over the limit of %zu (--max-file-bytes)", source,
                     len, datasets_max_file_bytes(o));
    if (s == MMT_OK) s = mmt_json_parse(text, len, source, &doc);
    if (s != MMT_OK) goto done;
    const mmt_json *root = mmt_json_root(doc);
    if (root->type != MMT_JSON_OBJECT) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected a JSON object with \"images\" and \"annotations\", got %s",
                     source, mmt_json_type_name(root->type));
        goto done;
    }
    if (!(image_list = coco_list(root, "images", source, &s)) || !(annotations = coco_list(root, "annotations", source, &s)))
        goto done;
    if ((s = coco_index(image_list, source, o, p, &images, &n_images)) != MMT_OK) goto done;
    for (size_t i = 0; s == MMT_OK && i < annotations->len; i++) {
        s = coco_annotation(&annotations->items[i], (int64_t)i, source, folder, o, images, n_images, p, &cap);
        if (s != MMT_OK) s = datasets_record_failed(p, o, s);
    }
    if (s == MMT_OK) s = datasets_check_nonempty(p);
done:
    for (int64_t i = 0; i < n_images; i++) mmt_free(images[i].path);
    mmt_free(images);
    mmt_json_free(doc);
    if (s != MMT_OK) {
        mmt_pairs_free(p);
        return s;
    }
    *out = p;
    return MMT_OK;
}

mmt_status mmt_pairs_load_coco(const char *path, const mmt_pairs_options *o, mmt_pairs **out) {
    *out = NULL;
    char *data = NULL, *folder = NULL;
    size_t len = 0;
    /* COCO is one JSON document, read whole: the size is checked before a byte is read. */
    size_t max_bytes = datasets_max_file_bytes(o);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > max_bytes)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: file is %lld bytes, over the limit of %zu (--max-file-bytes)", path,
                        (long long)st.st_size, max_bytes);
    MMT_TRY(mmt_file_read_all(path, max_bytes, &data, &len));
    if (o && o->image_root) folder = mmt_strdup(o->image_root);
    else folder = datasets_folder_of(path);
    mmt_status s = folder ? mmt_pairs_parse_coco(data, len, path, folder, o, out) : MMT_STATUS_OUT_OF_MEMORY;
    mmt_free(data);
    mmt_free(folder);
    return s;
}
