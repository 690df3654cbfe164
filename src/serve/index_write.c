/*
 * index_write.c — writing a search index as a new generation (see index.h for the layout and
 * why it is crash-safe).
 *
 * The order is what makes it safe: the new generation's files are written under names that
 * nothing refers to yet and fsync'd; index.json is then replaced atomically (core/file.h),
 * which is the moment the new index exists; only after that are the old generation's files
 * removed. The folder's lock file keeps a second writer out; the leftovers of a writer that
 * died (files of a generation index.json does not name) are removed at the next write, under
 * the same lock.
 *
 * Appending copies the old rows (the mapped .npy data, and the SQLite table through ATTACH)
 * and adds the new ones; a replaced item is written over its old row. Only the new vectors
 * are quantized; the old int8 rows and scales are copied as they are.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/dir.h"
#include "core/npy.h"
#include "serve/index_internal.h"

/* ---- checks ------------------------------------------------------------------------- */

static int by_id(const void *a, const void *b) {
    return strcmp((*(const mmt_index_item *const *)a)->id, (*(const mmt_index_item *const *)b)->id);
}

static mmt_status check_items(const mmt_index_item *items, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!items[i].id || !items[i].id[0])
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "index: item %lld has no id", (long long)i + 1);
    if (n < 2) return MMT_OK;
    const mmt_index_item **order = mmt_malloc((size_t)n * sizeof *order);
    if (!order) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; i < n; i++) order[i] = &items[i];
    qsort(order, (size_t)n, sizeof *order, by_id);
    mmt_status s = MMT_OK;
    for (int64_t i = 1; i < n && s == MMT_OK; i++)
        if (!strcmp(order[i]->id, order[i - 1]->id))
            s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "index: id \"%s\" appears twice among the new items", order[i]->id);
    mmt_free(order);
    return s;
}

/* An existing index (info) that an append must match. */
static mmt_status check_compatible(const char *dir, const mmt_index_info *in, const mmt_index_build *b) {
    if (strcmp(in->model_fingerprint, b->model_fingerprint) != 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s was built with another model (%s, fingerprint %s), not %s "
                        "(fingerprint %s): appending would mix embeddings; rebuild it with --overwrite", dir,
                        in->model_dir, in->model_fingerprint, b->model_dir, b->model_fingerprint);
    const char *afp = b->adapter_fingerprint ? b->adapter_fingerprint : "";
    if (strcmp(in->adapter_fingerprint, afp) != 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s was built %s%s, not %s%s: appending would mix embeddings", dir,
                        in->adapter_fingerprint[0] ? "with the adapter " : "without an adapter", in->adapter_dir,
                        afp[0] ? "with the adapter " : "without an adapter", afp[0] ? b->adapter_dir : "");
    if (strcmp(in->embed, b->embed) != 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s embeds items by %s, not %s (--embed): appending would mix "
                        "embeddings", dir, in->embed, b->embed);
    if (in->dim != b->dim)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s holds %lld-wide vectors, not %lld", dir, (long long)in->dim,
                        (long long)b->dim);
    return MMT_OK;
}

/* rows[i] = the row of items[i].id in the index, or -1 when it is new; an id already there
 * is an error unless replace. */
static mmt_status find_rows(mmt_index *old, const mmt_index_item *items, int64_t n, int replace, int64_t *rows) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(old->db, "SELECT row FROM items WHERE id = ?1", -1, &st, NULL) != SQLITE_OK)
        return index_sqlite_fail(MMT_STATUS_IO, old->files.items, old->db);
    mmt_status s = MMT_OK;
    for (int64_t i = 0; i < n && s == MMT_OK; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, items[i].id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        rows[i] = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) s = index_sqlite_fail(MMT_STATUS_IO, old->files.items, old->db);
        else if (rows[i] >= 0 && !replace)
            s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s already holds id \"%s\" (--replace replaces such items)",
                         old->dir, items[i].id);
    }
    sqlite3_finalize(st);
    return s;
}

static mmt_status check_build(const mmt_index_build *b) {
    if (b->dim <= 0 || !b->model_dir || !b->model_fingerprint || !b->embed ||
        (strcmp(b->embed, "image") && strcmp(b->embed, "title") && strcmp(b->embed, "both")))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "index: incomplete build settings (dim, model, embed)");
    if (strlen(b->model_dir) >= MMT_INDEX_PATH_MAX || (b->adapter_dir && strlen(b->adapter_dir) >= MMT_INDEX_PATH_MAX))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "index: model or adapter path too long");
    return MMT_OK;
}

/* The checks shared by mmt_index_check_write and mmt_index_write. *old is the opened index
 * for an append to an existing one (else NULL); rows (n, may be NULL) as find_rows. */
static mmt_status check_write(const char *dir, const mmt_index_build *b, const mmt_index_item *items, int64_t n,
                              mmt_index **old, int64_t *rows) {
    *old = NULL;
    MMT_TRY(check_build(b));
    MMT_TRY(check_items(items, n));
    mmt_index_info info;
    index_files files;
    int exists = 0;
    mmt_status s = index_read_info(dir, &info, &files, &exists);
    if (b->mode == MMT_INDEX_OVERWRITE) return MMT_OK; /* whatever is there is replaced */
    if (s != MMT_OK) return s;
    if (exists && b->mode == MMT_INDEX_CREATE)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s already holds an index (%lld items): --append adds items, "
                        "--overwrite rebuilds it", dir, (long long)info.count);
    if (!exists) return MMT_OK;
    MMT_TRY(check_compatible(dir, &info, b));
    MMT_TRY(mmt_index_open(dir, old));
    int64_t *found = rows ? rows : mmt_malloc((size_t)(n ? n : 1) * sizeof *found);
    s = found ? find_rows(*old, items, n, b->mode == MMT_INDEX_APPEND_REPLACE, found) : MMT_STATUS_OUT_OF_MEMORY;
    if (!rows) mmt_free(found);
    if (s != MMT_OK) {
        mmt_index_close(*old);
        *old = NULL;
    }
    return s;
}

mmt_status mmt_index_check_write(const char *dir, const mmt_index_build *b, const mmt_index_item *items, int64_t n) {
    mmt_index *old = NULL;
    mmt_status s = check_write(dir, b, items, n, &old, NULL);
    mmt_index_close(old);
    return s;
}

/* ---- generations -------------------------------------------------------------------- */

/* The generation in a file name of ours ("vectors.g12.npy", "items.g3.sqlite-journal"), or
 * -1 for any other name. */
static int64_t name_generation(const char *name) {
    static const char *const PREFIXES[] = {"vectors.g", "vectors_int8.g", "scales.g", "items.g", NULL};
    for (const char *const *p = PREFIXES; *p; p++) {
        size_t n = strlen(*p);
        if (strncmp(name, *p, n) != 0) continue;
        char *end;
        long long g = strtoll(name + n, &end, 10);
        if (end == name + n || g < 0) return -1;
        if (!strcmp(end, ".npy") || !strncmp(end, ".sqlite", 7)) return g;
    }
    return -1;
}

/* Removes our files of every generation but keep (-1: none kept) and stray index.json temp
 * files; *max_generation gets the highest generation seen. */
static mmt_status remove_generations(const char *dir, int64_t keep, int64_t *max_generation) {
    char **names = NULL;
    size_t n = 0;
    MMT_TRY(mmt_dir_list(dir, NULL, &names, &n));
    mmt_status s = MMT_OK;
    for (size_t i = 0; i < n && s == MMT_OK; i++) {
        int64_t g = name_generation(names[i]);
        int stray_temp = !strncmp(names[i], "index.json.tmp.", 15);
        if (g > *max_generation) *max_generation = g;
        if ((g < 0 || g == keep) && !stray_temp) continue;
        char *p = mmt_path_join(dir, names[i]);
        if (!p) s = MMT_STATUS_OUT_OF_MEMORY;
        else if (unlink(p) != 0 && errno != ENOENT) s = mmt_fail(MMT_STATUS_IO, "%s: cannot remove: %s", p, strerror(errno));
        mmt_free(p);
    }
    mmt_dir_list_free(names, n);
    return s;
}

/* ---- files -------------------------------------------------------------------------- */

static mmt_status write_all(int fd, const char *path, const void *data, size_t len, off_t at) {
    const char *p = data;
    while (len > 0) {
        ssize_t w = at >= 0 ? pwrite(fd, p, len, at) : write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return mmt_fail(MMT_STATUS_IO, "%s: write failed: %s", path, strerror(w < 0 ? errno : ENOSPC));
        p += w;
        len -= (size_t)w;
        if (at >= 0) at += w;
    }
    return MMT_OK;
}

/* One .npy array of the new generation: the old rows (old_bytes of them), then the new
 * items' rows in order, and the replaced items' rows written over their old place.
 * fresh is (n, row_bytes), item_rows[i] the row of item i or -1 when it is new. */
static mmt_status write_npy(const char *dir, const char *name, mmt_npy_dtype dtype, int64_t count, int64_t cols,
                            const void *old, size_t old_bytes, const void *fresh, size_t row_bytes,
                            const int64_t *item_rows, int64_t n) {
    char *path = mmt_path_join(dir, name);
    if (!path) return MMT_STATUS_OUT_OF_MEMORY;
    char head[MMT_NPY_MAX_HEADER];
    size_t head_len;
    mmt_npy_header(dtype, count, cols, head, &head_len);
    mmt_status s = MMT_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) s = mmt_fail(MMT_STATUS_IO, "%s: cannot create: %s", path, strerror(errno));
    if (s == MMT_OK) s = write_all(fd, path, head, head_len, -1);
    if (s == MMT_OK && old_bytes) s = write_all(fd, path, old, old_bytes, -1);
    const char *rows = fresh;
    for (int64_t i = 0; i < n && s == MMT_OK; i++)
        if (item_rows[i] < 0) s = write_all(fd, path, rows + (size_t)i * row_bytes, row_bytes, -1);
    for (int64_t i = 0; i < n && s == MMT_OK; i++)
        if (item_rows[i] >= 0)
            s = write_all(fd, path, rows + (size_t)i * row_bytes, row_bytes,
                          (off_t)(head_len + (size_t)item_rows[i] * row_bytes));
    if (s == MMT_OK && fsync(fd) != 0) s = mmt_fail(MMT_STATUS_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (fd >= 0 && close(fd) != 0 && s == MMT_OK) s = mmt_fail(MMT_STATUS_IO, "%s: close failed: %s", path, strerror(errno));
    mmt_free(path);
    return s;
}

static mmt_status exec_sql(sqlite3 *db, const char *path, const char *sql) {
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) return index_sqlite_fail(MMT_STATUS_IO, path, db);
    return MMT_OK;
}

static mmt_status fsync_file(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mmt_fail(MMT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    return rc == 0 ? MMT_OK : mmt_fail(MMT_STATUS_IO, "%s: fsync failed: %s", path, strerror(e));
}

/* The error of a failed insert or update of item: a duplicate id, metadata that is not an
 * object, or SQLite's own message. */
static mmt_status item_fail(sqlite3 *db, const char *path, const mmt_index_item *item) {
    int ext = sqlite3_extended_errcode(db);
    if (ext == SQLITE_CONSTRAINT_UNIQUE)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: duplicate id \"%s\"", path, item->id);
    if (ext == SQLITE_CONSTRAINT_CHECK)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "item \"%s\": metadata is not a JSON object", item->id);
    return index_sqlite_fail(MMT_STATUS_IO, path, db);
}

static mmt_status write_items(const char *dir, const char *name, const mmt_index *old, const mmt_index_item *items,
                              const int64_t *item_rows, int64_t n) {
    char *path = mmt_path_join(dir, name);
    if (!path) return MMT_STATUS_OUT_OF_MEMORY;
    char *old_path = old ? mmt_path_join(old->dir, old->files.items) : NULL;
    sqlite3 *db = NULL;
    sqlite3_stmt *insert = NULL, *update = NULL;
    mmt_status s = MMT_OK;
    unlink(path);
    if (old && !old_path) s = MMT_STATUS_OUT_OF_MEMORY;
    else if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        s = index_sqlite_fail(MMT_STATUS_IO, path, db);
    /* no journal: a failed build is thrown away whole, so rollback is never needed */
    if (s == MMT_OK) s = exec_sql(db, path, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                                            "CREATE TABLE items(row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
                                            "title TEXT, image_path TEXT, meta TEXT NOT NULL "
                                            "CHECK (json_valid(meta) AND json_type(meta) = 'object'))");
    if (s == MMT_OK && old) {
        sqlite3_stmt *attach = NULL;
        if (sqlite3_prepare_v2(db, "ATTACH DATABASE ?1 AS old", -1, &attach, NULL) != SQLITE_OK)
            s = index_sqlite_fail(MMT_STATUS_IO, path, db);
        if (s == MMT_OK) {
            sqlite3_bind_text(attach, 1, old_path, -1, SQLITE_STATIC);
            if (sqlite3_step(attach) != SQLITE_DONE) s = index_sqlite_fail(MMT_STATUS_IO, old_path, db);
        }
        sqlite3_finalize(attach);
        if (s == MMT_OK) s = exec_sql(db, path, "INSERT INTO main.items SELECT row, id, title, image_path, meta FROM old.items");
        if (s == MMT_OK) s = exec_sql(db, path, "DETACH DATABASE old");
    }
    if (s == MMT_OK) s = exec_sql(db, path, "BEGIN");
    if (s == MMT_OK &&
        (sqlite3_prepare_v2(db, "INSERT INTO items(row, id, title, image_path, meta) VALUES (?1, ?2, ?3, ?4, ?5)", -1,
                            &insert, NULL) != SQLITE_OK ||
         sqlite3_prepare_v2(db, "UPDATE items SET title = ?3, image_path = ?4, meta = ?5 WHERE row = ?1 AND id = ?2",
                            -1, &update, NULL) != SQLITE_OK))
        s = index_sqlite_fail(MMT_STATUS_IO, path, db);
    int64_t next = old ? old->info.count : 0;
    for (int64_t i = 0; i < n && s == MMT_OK; i++) {
        const mmt_index_item *it = &items[i];
        sqlite3_stmt *st = item_rows[i] >= 0 ? update : insert;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, item_rows[i] >= 0 ? item_rows[i] : next++);
        sqlite3_bind_text(st, 2, it->id, -1, SQLITE_STATIC);
        if (it->title) sqlite3_bind_text(st, 3, it->title, -1, SQLITE_STATIC);
        else sqlite3_bind_null(st, 3);
        if (it->image_path) sqlite3_bind_text(st, 4, it->image_path, -1, SQLITE_STATIC);
        else sqlite3_bind_null(st, 4);
        sqlite3_bind_text(st, 5, it->meta ? it->meta : "{}", -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) s = item_fail(db, path, it);
    }
    if (s == MMT_OK) s = exec_sql(db, path, "COMMIT");
    sqlite3_finalize(insert);
    sqlite3_finalize(update);
    if (db && sqlite3_close(db) != SQLITE_OK && s == MMT_OK) s = mmt_fail(MMT_STATUS_IO, "%s: close failed", path);
    if (s == MMT_OK) s = fsync_file(path);
    mmt_free(old_path);
    mmt_free(path);
    return s;
}

static mmt_status write_info(const char *dir, const mmt_index_build *b, int64_t count, int64_t generation,
                             const index_files *f) {
    mmt_strbuf j = {0};
    mmt_strbuf_printf(&j, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n  \"dim\": %lld,\n  \"count\": %lld,\n"
                      "  \"generation\": %lld,\n  \"model\": {\"dir\": ", INDEX_FORMAT, INDEX_VERSION,
                      (long long)b->dim, (long long)count, (long long)generation);
    mmt_strbuf_json_string(&j, b->model_dir, strlen(b->model_dir));
    mmt_strbuf_printf(&j, ", \"fingerprint\": \"%s\"},\n  \"adapter\": ", b->model_fingerprint);
    if (b->adapter_dir) {
        mmt_strbuf_append(&j, "{\"dir\": ", 8);
        mmt_strbuf_json_string(&j, b->adapter_dir, strlen(b->adapter_dir));
        mmt_strbuf_printf(&j, ", \"fingerprint\": \"%s\"}", b->adapter_fingerprint ? b->adapter_fingerprint : "");
    } else {
        mmt_strbuf_append(&j, "null", 4);
    }
    mmt_strbuf_printf(&j, ",\n  \"embed\": \"%s\",\n  \"files\": {\"vectors\": \"%s\", \"vectors_int8\": \"%s\", "
                      "\"scales\": \"%s\", \"items\": \"%s\"}\n}\n", b->embed, f->vectors, f->vectors_int8, f->scales,
                      f->items);
    char *path = mmt_path_join(dir, "index.json");
    mmt_status s = j.failed || !path ? MMT_STATUS_OUT_OF_MEMORY : mmt_file_write_atomic(path, j.data, j.len);
    mmt_free(path);
    mmt_strbuf_free(&j);
    return s;
}

/* The new generation's four files; on failure the caller removes what was written. */
static mmt_status write_generation(const char *dir, const mmt_index_build *b, const mmt_index *old,
                                   const mmt_index_item *items, const float *vectors, const int64_t *item_rows,
                                   int64_t n, int64_t count, const index_files *f) {
    int64_t D = b->dim, old_count = old ? old->info.count : 0;
    MMT_TRY(write_items(dir, f->items, old, items, item_rows, n));
    MMT_TRY(write_npy(dir, f->vectors, MMT_NPY_F32, count, D, old ? old->vectors : NULL,
                      (size_t)old_count * (size_t)D * sizeof(float), vectors, (size_t)D * sizeof(float), item_rows, n));
    int8_t *q = mmt_malloc((size_t)(n ? n : 1) * (size_t)D);
    float *scales = mmt_malloc((size_t)(n ? n : 1) * sizeof(float));
    mmt_status s = q && scales ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) {
        mmt_scan_best()->quantize_i8(q, scales, vectors, n, D);
        s = write_npy(dir, f->vectors_int8, MMT_NPY_I8, count, D, old ? old->vectors_int8 : NULL,
                      (size_t)old_count * (size_t)D, q, (size_t)D, item_rows, n);
    }
    if (s == MMT_OK)
        s = write_npy(dir, f->scales, MMT_NPY_F32, count, -1, old ? old->scales : NULL,
                      (size_t)old_count * sizeof(float), scales, sizeof(float), item_rows, n);
    mmt_free(q);
    mmt_free(scales);
    return s;
}

mmt_status mmt_index_write(const char *dir, const mmt_index_build *b, const mmt_index_item *items,
                           const float *vectors, int64_t n) {
    mmt_dir_lock lock = {.fd = -1};
    mmt_index *old = NULL;
    int64_t *item_rows = NULL;
    int wrote = 0;
    index_files f;
    MMT_TRY(mmt_dir_lock_acquire(dir, ".lock", &lock));
    mmt_status s = (item_rows = mmt_malloc((size_t)(n ? n : 1) * sizeof *item_rows)) ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = check_write(dir, b, items, n, &old, item_rows);
    if (s == MMT_OK && !old)
        for (int64_t i = 0; i < n; i++) item_rows[i] = -1;
    int64_t current = old ? old->info.generation : -1, newest = 0, count = old ? old->info.count : 0;
    for (int64_t i = 0; i < n; i++) count += s == MMT_OK && item_rows[i] < 0;
    if (s == MMT_OK && b->mode == MMT_INDEX_OVERWRITE) {
        /* keep the generation readers may still use until the new one is published */
        mmt_index_info info;
        int exists = 0;
        if (index_read_info(dir, &info, &f, &exists) == MMT_OK && exists) current = info.generation;
        mmt_clear_error();
    }
    if (s == MMT_OK) s = remove_generations(dir, current, &newest);
    int64_t generation = (newest > current ? newest : current) + 1;
    if (generation < 1) generation = 1;
    index_file_names(generation, &f);
    if (s == MMT_OK) {
        wrote = 1;
        s = write_generation(dir, b, old, items, vectors, item_rows, n, count, &f);
    }
    mmt_dir_fsync(dir);
    if (s == MMT_OK) {
        s = write_info(dir, b, count, generation, &f);
        /* renamed but the folder's fsync failed: the new index is what readers see now */
        mmt_index_info now;
        index_files now_files;
        int exists = 0;
        if (s != MMT_OK && index_read_info(dir, &now, &now_files, &exists) == MMT_OK && exists &&
            now.generation == generation)
            s = MMT_OK;
    }
    mmt_index_close(old);
    if (s == MMT_OK) {
        int64_t ignored = 0;
        s = remove_generations(dir, generation, &ignored);
        mmt_dir_fsync(dir);
    } else if (wrote) {
        int64_t ignored = 0;
        mmt_status failed = s;
        char message[1024];
        snprintf(message, sizeof message, "%s", mmt_last_error());
        remove_generations(dir, current, &ignored); /* the new generation's partial files */
        s = mmt_fail(failed, "%s", message);
    }
    mmt_dir_lock_release(&lock);
    mmt_free(item_rows);
    return s;
}
