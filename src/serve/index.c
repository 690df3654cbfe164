/*
 * index.c — opening a search index and searching it (see index.h); writing is in
 * index_write.c, filters in search_filter.c.
 *
 * Opening checks everything a search relies on, so that a corrupt or mismatched index gives
 * one clear error at start-up instead of wrong results later: index.json's fields, each .npy
 * file's header against the shape it should have (which also catches truncation), and the
 * SQLite table's row count. If a writer publishes a new generation while we open, the old
 * files may vanish between reading index.json and opening them; then index.json is read
 * again and the open retried.
 */
#include "serve/index.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/npy.h"
#include "serve/index_internal.h"
#include "serve/search_filter.h"
#include "train/fingerprint.h"

#define OPEN_TRIES 3

void index_file_names(int64_t generation, index_files *f) {
    long long g = (long long)generation;
    snprintf(f->vectors, sizeof f->vectors, "vectors.g%lld.npy", g);
    snprintf(f->vectors_int8, sizeof f->vectors_int8, "vectors_int8.g%lld.npy", g);
    snprintf(f->scales, sizeof f->scales, "scales.g%lld.npy", g);
    snprintf(f->items, sizeof f->items, "items.g%lld.sqlite", g);
}

mmt_status index_sqlite_fail(mmt_status code, const char *path, sqlite3 *db) {
    return mmt_fail(code, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
}

/* A string member copied into out (cap bytes); "" when null and allow_null. */
static mmt_status info_string(const mmt_json *obj, const char *key, char *out, size_t cap, const char *what,
                              const char *path) {
    const char *v = NULL;
    MMT_TRY(mmt_json_get_string(obj, key, NULL, &v, what, path));
    if (!v) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s%s%s is missing", what, path, path[0] ? "." : "", key);
    if (strlen(v) >= cap) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s%s%s is too long", what, path, path[0] ? "." : "", key);
    snprintf(out, cap, "%s", v);
    return MMT_OK;
}

static mmt_status parse_info(const mmt_json *root, const char *what, mmt_index_info *info, index_files *files) {
    memset(info, 0, sizeof *info);
    char format[32];
    int64_t version = 0;
    if (root->type != MMT_JSON_OBJECT) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: not a JSON object", what);
    MMT_TRY(info_string(root, "format", format, sizeof format, what, ""));
    if (strcmp(format, INDEX_FORMAT) != 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: format is \"%s\", expected \"%s\"", what, format, INDEX_FORMAT);
    MMT_TRY(mmt_json_get_int(root, "version", 0, &version, what, ""));
    if (version != INDEX_VERSION)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: index version %lld, this mmtune reads version %d (rebuild the "
                        "index)", what, (long long)version, INDEX_VERSION);
    MMT_TRY(mmt_json_get_int(root, "dim", 0, &info->dim, what, ""));
    MMT_TRY(mmt_json_get_int(root, "count", -1, &info->count, what, ""));
    MMT_TRY(mmt_json_get_int(root, "generation", 0, &info->generation, what, ""));
    if (info->dim <= 0 || info->dim > 65536) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: dim must be in 1..65536", what);
    if (info->count < 0 || info->count > ((int64_t)1 << 40)) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: bad count", what);
    if (info->generation < 1 || info->generation > ((int64_t)1 << 50))
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: generation must be a positive integer", what);
    const mmt_json *model = mmt_json_get(root, "model"), *adapter = mmt_json_get(root, "adapter");
    if (!model || model->type != MMT_JSON_OBJECT) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: model is missing", what);
    MMT_TRY(info_string(model, "dir", info->model_dir, sizeof info->model_dir, what, "model"));
    MMT_TRY(info_string(model, "fingerprint", info->model_fingerprint, sizeof info->model_fingerprint, what, "model"));
    if (adapter && adapter->type == MMT_JSON_OBJECT) {
        MMT_TRY(info_string(adapter, "dir", info->adapter_dir, sizeof info->adapter_dir, what, "adapter"));
        MMT_TRY(info_string(adapter, "fingerprint", info->adapter_fingerprint, sizeof info->adapter_fingerprint, what,
                            "adapter"));
    } else if (adapter && adapter->type != MMT_JSON_NULL) {
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: adapter must be null or an object", what);
    }
    MMT_TRY(info_string(root, "embed", info->embed, sizeof info->embed, what, ""));
    if (strcmp(info->embed, "image") && strcmp(info->embed, "title") && strcmp(info->embed, "both"))
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: embed is \"%s\", expected image, title or both", what, info->embed);
    /* the file names are derived from the generation, never taken from the file, so a
     * tampered index.json cannot point outside the folder; "files" is there for people */
    index_file_names(info->generation, files);
    return MMT_OK;
}

mmt_status index_read_info(const char *dir, mmt_index_info *info, index_files *files, int *exists) {
    *exists = 0;
    char *path = mmt_path_join(dir, "index.json");
    if (!path) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = MMT_OK;
    if (mmt_file_exists(path)) {
        *exists = 1;
        mmt_json_doc *doc = NULL;
        s = mmt_json_parse_file(path, &doc);
        if (s == MMT_OK) s = parse_info(mmt_json_root(doc), path, info, files);
        mmt_json_free(doc);
    }
    mmt_free(path);
    return s;
}

/* Maps dir/name and checks it is an .npy array of dtype and shape (rows, cols; cols < 0:
 * 1-D). */
static mmt_status map_array(const char *dir, const char *name, mmt_npy_dtype dtype, int64_t rows, int64_t cols,
                            mmt_file_map *map, const void **data) {
    char *path = mmt_path_join(dir, name);
    if (!path) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_npy_array a;
    mmt_status s = mmt_file_map_open(path, map);
    if (s == MMT_OK) s = mmt_npy_parse(path, map->data, map->size, &a);
    if (s == MMT_OK && (a.dtype != dtype || a.ndim != (cols < 0 ? 1 : 2) || a.shape[0] != rows ||
                        (cols >= 0 && a.shape[1] != cols))) {
        if (cols < 0)
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected %s (%lld,) as index.json says, got another dtype or "
                         "shape (%lld, %lld)", path, dtype == MMT_NPY_F32 ? "float32" : "int8", (long long)rows,
                         (long long)a.shape[0], (long long)a.shape[1]);
        else
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected %s (%lld, %lld) as index.json says, got another dtype "
                         "or shape (%lld, %lld)", path, dtype == MMT_NPY_F32 ? "float32" : "int8", (long long)rows,
                         (long long)cols, (long long)a.shape[0], (long long)a.shape[1]);
    }
    if (s == MMT_OK) *data = a.data;
    else mmt_file_map_close(map);
    mmt_free(path);
    return s;
}

static mmt_status open_items(mmt_index *ix) {
    char *path = mmt_path_join(ix->dir, ix->files.items);
    if (!path) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = MMT_OK;
    if (!mmt_file_exists(path)) {
        s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: missing", path);
    } else if (sqlite3_open_v2(path, &ix->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        s = index_sqlite_fail(MMT_STATUS_IO, path, ix->db);
    } else {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(ix->db, "SELECT count(*), max(row) FROM items", -1, &st, NULL);
        if (rc == SQLITE_OK) rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            s = index_sqlite_fail(MMT_STATUS_BAD_FORMAT, path, ix->db);
        } else {
            int64_t count = sqlite3_column_int64(st, 0), max_row = sqlite3_column_int64(st, 1);
            if (count != ix->info.count || (count > 0 && max_row != count - 1))
                s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: holds %lld items (rows to %lld), index.json says %lld", path,
                             (long long)count, (long long)max_row, (long long)ix->info.count);
        }
        sqlite3_finalize(st);
    }
    mmt_free(path);
    return s;
}

/* Everything but the folder name and lock: the maps and the connection. */
static void release_files(mmt_index *ix) {
    mmt_file_map_close(&ix->vectors_map);
    mmt_file_map_close(&ix->int8_map);
    mmt_file_map_close(&ix->scales_map);
    if (ix->db) sqlite3_close(ix->db);
    ix->db = NULL;
}

static mmt_status open_files(mmt_index *ix) {
    int exists = 0;
    MMT_TRY(index_read_info(ix->dir, &ix->info, &ix->files, &exists));
    if (!exists) return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: no index here (no index.json; make one with mmtune index)",
                                 ix->dir);
    const mmt_index_info *in = &ix->info;
    const void *v = NULL, *q = NULL, *sc = NULL;
    mmt_status s = map_array(ix->dir, ix->files.vectors, MMT_NPY_F32, in->count, in->dim, &ix->vectors_map, &v);
    if (s == MMT_OK) s = map_array(ix->dir, ix->files.vectors_int8, MMT_NPY_I8, in->count, in->dim, &ix->int8_map, &q);
    if (s == MMT_OK) s = map_array(ix->dir, ix->files.scales, MMT_NPY_F32, in->count, -1, &ix->scales_map, &sc);
    if (s == MMT_OK) s = open_items(ix);
    ix->vectors = v;
    ix->vectors_int8 = q;
    ix->scales = sc;
    return s;
}

mmt_status mmt_index_open(const char *dir, mmt_index **out) {
    *out = NULL;
    mmt_index *ix = mmt_calloc(1, sizeof *ix);
    if (!ix) return MMT_STATUS_OUT_OF_MEMORY;
    if (!(ix->dir = mmt_strdup(dir))) {
        mmt_free(ix);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    pthread_mutex_init(&ix->db_lock, NULL);
    ix->scan = mmt_scan_best();
    mmt_status s = MMT_OK;
    for (int attempt = 0; attempt < OPEN_TRIES; attempt++) {
        s = open_files(ix);
        if (s == MMT_OK) break;
        release_files(ix);
        /* a missing file: a writer may have published a newer generation meanwhile */
        if (s != MMT_STATUS_NOT_FOUND) break;
    }
    if (s != MMT_OK) {
        mmt_index_close(ix);
        return s;
    }
    *out = ix;
    return MMT_OK;
}

void mmt_index_close(mmt_index *ix) {
    if (!ix) return;
    release_files(ix);
    pthread_mutex_destroy(&ix->db_lock);
    mmt_free(ix->dir);
    mmt_free(ix);
}

const mmt_index_info *mmt_index_info_of(const mmt_index *ix) { return &ix->info; }
const float *mmt_index_vectors(const mmt_index *ix) { return ix->vectors; }

mmt_status mmt_index_check_model(const mmt_index *ix, const char *model_dir, const char *adapter_dir) {
    char hex[17];
    int64_t files = 0;
    const mmt_index_info *in = &ix->info;
    MMT_TRY(mmt_fingerprint_model(model_dir, hex, &files));
    if (strcmp(hex, in->model_fingerprint) != 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s was built with another model (%s, fingerprint %s); --model %s "
                        "has fingerprint %s", ix->dir, in->model_dir, in->model_fingerprint, model_dir, hex);
    if (!adapter_dir && in->adapter_fingerprint[0])
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s was built with the adapter %s: give it with --adapter", ix->dir,
                        in->adapter_dir);
    if (adapter_dir) {
        if (!in->adapter_fingerprint[0])
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s was built without an adapter; --adapter %s would not match "
                            "its vectors", ix->dir, adapter_dir);
        MMT_TRY(mmt_fingerprint_model(adapter_dir, hex, &files));
        if (strcmp(hex, in->adapter_fingerprint) != 0)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s was built with another adapter (%s, fingerprint %s); "
                            "--adapter %s has fingerprint %s", ix->dir, in->adapter_dir, in->adapter_fingerprint,
                            adapter_dir, hex);
    }
    return MMT_OK;
}

/* ---- search ------------------------------------------------------------------------- */

void mmt_search_options_default(mmt_search_options *o) {
    memset(o, 0, sizeof *o);
    o->top_k = 10;
    o->rescore = 4096;
}

void mmt_search_result_free(mmt_search_result *r) {
    if (!r) return;
    for (int64_t i = 0; i < r->n; i++) {
        mmt_free(r->hits[i].id);
        mmt_free(r->hits[i].title);
        mmt_free(r->hits[i].image_path);
        mmt_free(r->hits[i].meta);
    }
    mmt_free(r->hits);
    memset(r, 0, sizeof *r);
}

static int by_row(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* rows[0..n) (NULL: all rows) scored against the query; hit rows (k) best first. The int8
 * path picks candidates by the int8 score and orders them by row, so that the float32
 * rescoring breaks ties by row exactly as the float32 scan does. */
static mmt_status scan_rows(mmt_index *ix, const float *query, const mmt_search_options *o, const int64_t *rows,
                            int64_t n, int64_t k, int64_t *hit_rows) {
    const mmt_scan_ops *scan = ix->scan;
    int64_t D = ix->info.dim;
    float *scores = mmt_malloc((size_t)n * sizeof(float));
    int64_t *best = mmt_malloc((size_t)n * sizeof(int64_t));
    int64_t *cand = NULL;
    int8_t *q8 = NULL;
    mmt_status s = MMT_OK;
    if (!scores || !best) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    if (!o->int8) {
        scan->dot_f32(scores, ix->vectors, query, rows, n, D);
        scan->top_k(best, scores, n, k);
        for (int64_t i = 0; i < k; i++) hit_rows[i] = rows ? rows[best[i]] : best[i];
        goto done;
    }
    int64_t c = o->rescore > k ? o->rescore : k;
    if (c > n) c = n;
    float q_scale = 0;
    if (!(q8 = mmt_malloc((size_t)D)) || !(cand = mmt_malloc((size_t)c * sizeof(int64_t)))) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    scan->quantize_i8(q8, &q_scale, query, 1, D);
    scan->dot_i8(scores, ix->vectors_int8, ix->scales, q8, q_scale, rows, n, D);
    scan->top_k(best, scores, n, c);
    for (int64_t i = 0; i < c; i++) cand[i] = rows ? rows[best[i]] : best[i];
    qsort(cand, (size_t)c, sizeof *cand, by_row);
    scan->dot_f32(scores, ix->vectors, query, cand, c, D);
    scan->top_k(best, scores, c, k);
    for (int64_t i = 0; i < k; i++) hit_rows[i] = cand[best[i]];
done:
    mmt_free(scores);
    mmt_free(best);
    mmt_free(cand);
    mmt_free(q8);
    return s;
}

static char *column_text(sqlite3_stmt *st, int col) {
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? mmt_strdup((const char *)t) : NULL;
}

/* The items of the hits from SQLite (under the lock). */
static mmt_status fetch_hits(mmt_index *ix, mmt_search_result *r) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ix->db, "SELECT id, title, image_path, meta FROM items WHERE row = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return index_sqlite_fail(MMT_STATUS_IO, ix->files.items, ix->db);
    mmt_status s = MMT_OK;
    for (int64_t i = 0; i < r->n && s == MMT_OK; i++) {
        mmt_search_hit *h = &r->hits[i];
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, h->row);
        if (sqlite3_step(st) != SQLITE_ROW) {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s/%s: no item in row %lld", ix->dir, ix->files.items, (long long)h->row);
            break;
        }
        h->id = column_text(st, 0);
        h->title = column_text(st, 1);
        h->image_path = column_text(st, 2);
        h->meta = column_text(st, 3);
        if (!h->id || !h->meta) s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "out of memory reading search hits");
    }
    sqlite3_finalize(st);
    return s;
}

mmt_status mmt_index_search(mmt_index *ix, const float *query, const mmt_search_options *o, mmt_search_result *out) {
    memset(out, 0, sizeof *out);
    mmt_search_options defaults;
    if (!o) {
        mmt_search_options_default(&defaults);
        o = &defaults;
    }
    if (o->top_k < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "search: top-k must be at least 1");
    int64_t *rows = NULL, n = ix->info.count;
    double t0 = mmt_now_seconds();
    mmt_status s = MMT_OK;
    if (o->n_filters > 0) {
        pthread_mutex_lock(&ix->db_lock);
        s = search_filter_rows(ix->db, ix->files.items, o->filters, o->n_filters, &rows, &n);
        pthread_mutex_unlock(&ix->db_lock);
    }
    double t1 = mmt_now_seconds();
    int64_t k = o->top_k < n ? o->top_k : n;
    int64_t *hit_rows = NULL;
    if (s == MMT_OK && k > 0) {
        if (!(hit_rows = mmt_malloc((size_t)k * sizeof *hit_rows)) ||
            !(out->hits = mmt_calloc((size_t)k, sizeof *out->hits)))
            s = MMT_STATUS_OUT_OF_MEMORY;
    }
    if (s == MMT_OK && k > 0) s = scan_rows(ix, query, o, rows, n, k, hit_rows);
    double t2 = mmt_now_seconds();
    if (s == MMT_OK && k > 0) {
        const mmt_scan_ops *scan = ix->scan;
        out->n = k;
        double qq = 0;
        for (int64_t d = 0; d < ix->info.dim; d++) qq += (double)query[d] * query[d];
        const double most = sqrt(qq) * 1.001 + 1e-6; /* the rows are unit vectors: |score| <= |query| */
        for (int64_t i = 0; i < k && s == MMT_OK; i++) {
            out->hits[i].row = hit_rows[i];
            /* the score the ranking used, again through the scan kernel */
            scan->dot_f32(&out->hits[i].score, ix->vectors, query, &hit_rows[i], 1, ix->info.dim);
            /* a damaged vectors file (not a unit row, inf, NaN) would rank wrongly and print
             * "inf": refused here, at the cost of k checks, instead of reading every row at open */
            if (!(fabs(out->hits[i].score) <= most))
                s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s/%s: row %lld is not a unit vector (score %g): the file is damaged; "
                             "rebuild the index", ix->dir, ix->files.vectors, (long long)hit_rows[i], out->hits[i].score);
        }
    }
    if (s == MMT_OK && k > 0) {
        pthread_mutex_lock(&ix->db_lock);
        s = fetch_hits(ix, out);
        pthread_mutex_unlock(&ix->db_lock);
    }
    out->scanned = n;
    out->filter_s = t1 - t0;
    out->scan_s = t2 - t1;
    out->fetch_s = mmt_now_seconds() - t2;
    mmt_free(rows);
    mmt_free(hit_rows);
    if (s != MMT_OK) mmt_search_result_free(out);
    return s;
}

void mmt_search_hit_json(mmt_strbuf *b, const mmt_search_hit *h, int64_t rank) {
    mmt_strbuf_printf(b, "{\"rank\":%lld,\"id\":", (long long)rank);
    mmt_strbuf_json_string(b, h->id, strlen(h->id));
    mmt_strbuf_append(b, ",\"title\":", 9);
    if (h->title) mmt_strbuf_json_string(b, h->title, strlen(h->title));
    else mmt_strbuf_append(b, "null", 4);
    mmt_strbuf_append(b, ",\"image_path\":", 14);
    if (h->image_path) mmt_strbuf_json_string(b, h->image_path, strlen(h->image_path));
    else mmt_strbuf_append(b, "null", 4);
    mmt_strbuf_printf(b, ",\"score\":%.9g,\"metadata\":", h->score);
    mmt_strbuf_append(b, h->meta, strlen(h->meta));
    mmt_strbuf_append(b, "}", 1);
}
