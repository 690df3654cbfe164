/* weights.c — single-file or sharded safetensors checkpoints as one name -> tensor map. */
#include "core/weights.h"

#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"

static mmt_status add_file(mmt_weights *w, const char *path) {
    mmt_safetensors *st;
    MMT_TRY(mmt_safetensors_open(path, &st));
    mmt_safetensors **grown = mmt_realloc(w->files, (size_t)(w->n_files + 1) * sizeof *grown);
    if (!grown) {
        mmt_safetensors_close(st);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    w->files = grown;
    w->files[w->n_files++] = st;
    return MMT_OK;
}

static mmt_status open_index(mmt_weights *w, const char *index_path) {
    mmt_json_doc *doc;
    MMT_TRY(mmt_json_parse_file(index_path, &doc));
    mmt_status s = MMT_OK;
    const mmt_json *map = mmt_json_get(mmt_json_root(doc), "weight_map");
    if (!map || map->type != MMT_JSON_OBJECT || map->len == 0) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: missing or empty \"weight_map\" object", index_path);
        goto done;
    }
    for (size_t i = 0; i < map->len && s == MMT_OK; i++) {
        const mmt_json *f = &map->items[i];
        if (f->type != MMT_JSON_STRING || strchr(f->string, '/') || f->string[0] == '.') {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: weight_map[\"%s\"] is not a plain file name",
                         index_path, map->keys[i]);
            break;
        }
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) seen = strcmp(map->items[j].string, f->string) == 0;
        if (seen) continue;
        char *path = mmt_path_join(w->dir, f->string);
        s = path ? add_file(w, path) : MMT_STATUS_OUT_OF_MEMORY;
        mmt_free(path);
    }
done:
    mmt_json_free(doc);
    return s;
}

mmt_status mmt_weights_open(const char *dir, mmt_weights **out) {
    *out = NULL;
    mmt_weights *w = mmt_calloc(1, sizeof *w);
    if (!w) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = MMT_OK;
    char *single = NULL, *index = NULL;
    w->dir = mmt_strdup(dir);
    single = mmt_path_join(dir, "model.safetensors");
    index = mmt_path_join(dir, "model.safetensors.index.json");
    if (!w->dir || !single || !index) {
        s = MMT_STATUS_OUT_OF_MEMORY;
    } else if (mmt_file_exists(single)) {
        s = add_file(w, single);
    } else if (mmt_file_exists(index)) {
        s = open_index(w, index);
    } else {
        s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
    }
    mmt_free(single);
    mmt_free(index);
    if (s != MMT_OK) {
        mmt_weights_free(w);
        return s;
    }
    *out = w;
    return MMT_OK;
}

void mmt_weights_free(mmt_weights *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_files; i++) mmt_safetensors_close(w->files[i]);
    mmt_free(w->files);
    mmt_free(w->dir);
    mmt_free(w);
}

const mmt_st_tensor *mmt_weights_find(const mmt_weights *w, const char *name,
                                      const mmt_safetensors **file) {
    for (int64_t i = 0; i < w->n_files; i++) {
        const mmt_st_tensor *t = mmt_safetensors_find(w->files[i], name);
        if (t) {
            if (file) *file = w->files[i];
            return t;
        }
    }
    return NULL;
}

mmt_status mmt_weights_f32(mmt_weights *w, mmt_arena *arena, const char *name, int ndim,
                           const int64_t *shape, const float **out) {
    const mmt_safetensors *file;
    const mmt_st_tensor *t = mmt_weights_find(w, name, &file);
    if (!t) return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: missing tensor \"%s\"", w->dir, name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char got[128], want[128];
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor \"%s\" has shape %s, the config implies %s",
                        file->path, name, mmt_shape_str(t->shape, t->ndim, got, sizeof got),
                        mmt_shape_str(shape, ndim, want, sizeof want));
    }
    if (t->dtype == MMT_DTYPE_F32 && ((uintptr_t)t->data & 3) == 0) {
        mmt_status s = mmt_st_check_finite(name, t->data, t->numel); /* mapped as it is: checked here */
        if (s != MMT_OK) return mmt_error_prefix(s, "%s: ", file->path);
        *out = t->data;
        return MMT_OK;
    }
    float *copy = mmt_arena_alloc(arena, (size_t)t->numel * sizeof(float), 64);
    if (!copy) return mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", name);
    mmt_status s = mmt_st_tensor_to_f32_finite(t, copy);
    if (s != MMT_OK) return mmt_error_prefix(s, "%s: ", file->path);
    w->converted_bytes += t->numel * (int64_t)sizeof(float);
    *out = copy;
    return MMT_OK;
}

int64_t mmt_weights_param_count(const mmt_weights *w) {
    int64_t n = 0;
    for (int64_t f = 0; f < w->n_files; f++)
        for (int64_t i = 0; i < w->files[f]->n_tensors; i++) {
            const mmt_st_tensor *t = &w->files[f]->tensors[i];
            size_t len = strlen(t->name);
            if (len >= 13 && strcmp(t->name + len - 13, ".position_ids") == 0) continue;
            n += t->numel;
        }
    return n;
}

mmt_status mmt_copy_files(const char *from_dir, const char *to_dir, const char *const *names,
                          size_t n) {
    mmt_status s = MMT_OK;
    for (size_t i = 0; i < n && s == MMT_OK; i++) {
        char *src = mmt_path_join(from_dir, names[i]), *dst = mmt_path_join(to_dir, names[i]);
        char *data = NULL;
        size_t len = 0;
        if (!src || !dst) s = MMT_STATUS_OUT_OF_MEMORY;
        else if (mmt_file_exists(src) && (s = mmt_file_read_all(src, (size_t)1 << 30, &data, &len)) == MMT_OK)
            s = mmt_file_write_atomic(dst, data, len);
        mmt_free(data);
        mmt_free(src);
        mmt_free(dst);
    }
    return s;
}

mmt_status mmt_snapshot_copy_files(const char *from_dir, const char *to_dir) {
    static const char *const files[] = {"config.json", "vocab.json", "merges.txt", "tokenizer.json",
                                        "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json"};
    return mmt_copy_files(from_dir, to_dir, files, sizeof files / sizeof files[0]);
}
