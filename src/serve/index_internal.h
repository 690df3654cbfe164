/* index_internal.h — what index.c (reading, searching) and index_write.c share; not public. */
#ifndef MMT_SERVE_INDEX_INTERNAL_H
#define MMT_SERVE_INDEX_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

#include "core/file.h"
#include "ops/scan.h"
#include "serve/index.h"

#define INDEX_FORMAT "mmtune-index"
#define INDEX_VERSION 1

/* The names of one generation's files inside the index folder. */
typedef struct index_files {
    char vectors[64], vectors_int8[64], scales[64], items[64];
} index_files;

void index_file_names(int64_t generation, index_files *f);

struct mmt_index {
    char *dir;                 /* owned */
    mmt_index_info info;
    index_files files;
    mmt_file_map vectors_map, int8_map, scales_map; /* owned mappings */
    const float *vectors;      /* (count, dim), inside vectors_map */
    const int8_t *vectors_int8; /* (count, dim), inside int8_map */
    const float *scales;       /* (count), inside scales_map */
    sqlite3 *db;               /* owned; read-only */
    pthread_mutex_t db_lock;   /* serialises use of db */
    const mmt_scan_ops *scan;
};

/* Reads and validates dir/index.json; *exists = 0 (and MMT_OK) when there is none. */
mmt_status index_read_info(const char *dir, mmt_index_info *info, index_files *files, int *exists);

/* "path: sqlite message" as a failure of the given code. */
mmt_status index_sqlite_fail(mmt_status code, const char *path, sqlite3 *db);

#endif
