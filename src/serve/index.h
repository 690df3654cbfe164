/*
 * index.h — a catalogue search index: the embeddings of a catalogue's items, an int8 copy of
 * them, the items themselves in SQLite, and exact top-k search by cosine with metadata
 * filters. `mmtune index` writes one, `mmtune search` and the server's /v1/search read it.
 *
 * An index is a folder:
 *   index.json               what the index is: {"format": "mmtune-index", "version": 1,
 *                            "dim", "count", "generation", "model": {"dir", "fingerprint"},
 *                            "adapter": null | {"dir", "fingerprint"}, "embed": "image" |
 *                            "title" | "both", "files": {"vectors", "vectors_int8", "scales",
 *                            "items"}}
 *   vectors.gG.npy           float32 (count, dim), unit rows, NumPy .npy v1 (core/npy.h)
 *   vectors_int8.gG.npy      int8 (count, dim): each row quantized symmetrically ...
 *   scales.gG.npy            float32 (count): ... with this scale (ops/scan.h)
 *   items.gG.sqlite          table items(row INTEGER PRIMARY KEY, id TEXT UNIQUE, title,
 *                            image_path, meta TEXT: a JSON object), row = the vector's row
 * G is the generation, counted from 1. A write (mmt_index_write) makes the files of
 * generation G+1 beside the old ones, fsyncs them, then replaces index.json (temp file,
 * fsync, rename, folder fsync) and only then removes generation G's files: a reader, or a
 * writer killed at any point, sees the old index or the new one, never a mix. Leftovers of a
 * killed writer are removed by the next write. Writers take the folder's lock file (.lock),
 * so two at once fail cleanly rather than interleave.
 *
 * Search is exact: the query's dot product with every row (the rows a filter selected), the
 * best k kept. With int8, the int8 copy is scanned first and the best `rescore` candidates
 * (at least k) are scored again in float32 with the same kernel as the float32 scan, so the
 * result equals the float32 one whenever the true top k are among the candidates.
 *
 * Filters test metadata fields and are compiled to parameterised SQL over json_extract (no
 * user text is ever pasted into the SQL): "FIELD OP VALUE", OP one of = != < <= > >=, FIELD
 * of letters, digits, '_' and '.' (a dot walks into nested objects). A VALUE that is a JSON
 * number compares with numeric fields as a number; true/false with booleans; any other
 * VALUE, or one in double quotes, with string fields by bytes. A field of another type, or
 * missing, never matches, not even with !=. Several filters are ANDed.
 *
 * Threads: an opened index is read-only; searches may run from several threads at once (the
 * SQLite connection is shared behind a mutex, the scans are not serialised).
 */
#ifndef MMT_SERVE_INDEX_H
#define MMT_SERVE_INDEX_H

#include <stdint.h>

#include "core/json.h"
#include "core/status.h"

#define MMT_INDEX_PATH_MAX 4096

/* What index.json says. */
typedef struct mmt_index_info {
    int64_t dim, count, generation;
    char model_dir[MMT_INDEX_PATH_MAX];
    char model_fingerprint[17];
    char adapter_dir[MMT_INDEX_PATH_MAX];  /* "" without an adapter */
    char adapter_fingerprint[17];          /* "" without an adapter */
    char embed[8];                         /* "image", "title" or "both" */
} mmt_index_info;

/* ---- reading and searching --------------------------------------------------------- */

typedef struct mmt_index mmt_index;

/* Opens the index in dir: reads index.json and checks every file against it (shapes, sizes,
 * item count); each problem is one error naming the file. */
mmt_status mmt_index_open(const char *dir, mmt_index **out);
void mmt_index_close(mmt_index *ix);
const mmt_index_info *mmt_index_info_of(const mmt_index *ix);
/* The float32 rows (count, dim), memory-mapped. */
const float *mmt_index_vectors(const mmt_index *ix);

/* An error unless the index was built with this model snapshot and adapter (adapter_dir
 * NULL: none), compared by their fingerprints (train/fingerprint.h), not by path. */
mmt_status mmt_index_check_model(const mmt_index *ix, const char *model_dir, const char *adapter_dir);

typedef enum mmt_filter_op {
    MMT_FILTER_EQ, MMT_FILTER_NE, MMT_FILTER_LT, MMT_FILTER_LE, MMT_FILTER_GT, MMT_FILTER_GE
} mmt_filter_op;

typedef enum mmt_filter_kind { MMT_FILTER_NUMBER, MMT_FILTER_STRING, MMT_FILTER_BOOL } mmt_filter_kind;

typedef struct mmt_search_filter {
    char path[260];        /* "$." + the field */
    mmt_filter_op op;
    mmt_filter_kind kind;
    double number;         /* MMT_FILTER_NUMBER; MMT_FILTER_BOOL: 1 or 0 */
    int is_integer;        /* MMT_FILTER_NUMBER written as an integer within int64: compared exactly */
    int64_t integer;
    char *text;            /* MMT_FILTER_STRING; owned (mmt_search_filter_free) */
} mmt_search_filter;

/* Parses "FIELD OP VALUE" (see above); an error quotes expr. */
mmt_status mmt_search_filter_parse(const char *expr, mmt_search_filter *out);
void mmt_search_filter_free(mmt_search_filter *f);

typedef struct mmt_search_options {
    int64_t top_k;                     /* default 10 */
    int int8;                          /* scan the int8 copy, then rescore in float32 */
    int64_t rescore;                   /* int8 candidates rescored (default 4096; at least top_k) */
    const mmt_search_filter *filters;  /* ANDed; not owned */
    int64_t n_filters;
} mmt_search_options;

void mmt_search_options_default(mmt_search_options *o);

typedef struct mmt_search_hit {
    int64_t row;
    float score;       /* cosine (the rows and the query are unit vectors) */
    char *id;          /* owned */
    char *title;       /* owned; NULL when the item has none */
    char *image_path;  /* owned; NULL when the item has none */
    char *meta;        /* owned; JSON object text */
} mmt_search_hit;

typedef struct mmt_search_result {
    mmt_search_hit *hits; /* owned; best first, equal scores by lower row */
    int64_t n;
    int64_t scanned;      /* rows scored (all, or those the filters kept) */
    double filter_s, scan_s, fetch_s; /* where the time went */
} mmt_search_result;

/* The top k items for query (dim), a unit vector from the index's model. */
mmt_status mmt_index_search(mmt_index *ix, const float *query, const mmt_search_options *o,
                            mmt_search_result *out);
void mmt_search_result_free(mmt_search_result *r);

/* {"rank":R,"id":..,"title":..,"image_path":..,"score":S,"metadata":{..}} appended to b. */
void mmt_search_hit_json(mmt_strbuf *b, const mmt_search_hit *h, int64_t rank);

/* ---- writing ----------------------------------------------------------------------- */

typedef enum mmt_index_mode {
    MMT_INDEX_CREATE,         /* dir must not hold an index yet */
    MMT_INDEX_OVERWRITE,      /* a new index replacing what dir holds (as a new generation) */
    MMT_INDEX_APPEND,         /* add items; an id already there is an error (no index: create) */
    MMT_INDEX_APPEND_REPLACE  /* add items; an id already there gets the new item in its row */
} mmt_index_mode;

typedef struct mmt_index_item {
    const char *id;          /* non-empty */
    const char *title;       /* NULL: none */
    const char *image_path;  /* NULL: none */
    const char *meta;        /* a JSON object's text; NULL: "{}" */
} mmt_index_item;

typedef struct mmt_index_build {
    mmt_index_mode mode;
    int64_t dim;
    const char *model_dir, *model_fingerprint;     /* as index.json records them */
    const char *adapter_dir, *adapter_fingerprint; /* NULL: no adapter */
    const char *embed;                             /* "image", "title" or "both" */
} mmt_index_build;

/* Checks, without writing, what mmt_index_write would refuse before writing: an index of
 * another model, adapter, embed mode or width (append), an existing index (create), ids
 * already there (append without replace), ids repeated among items. items may be NULL (n 0)
 * to check only the index. Lets a caller fail before the slow embedding. */
mmt_status mmt_index_check_write(const char *dir, const mmt_index_build *b, const mmt_index_item *items, int64_t n);

/* Writes items with their vectors (n, dim), unit rows, into dir as the next generation
 * (see above); on failure the previous index is left as it was. New items take the rows
 * after the existing ones, in order; a replaced item keeps its row. */
mmt_status mmt_index_write(const char *dir, const mmt_index_build *b, const mmt_index_item *items,
                           const float *vectors, int64_t n);

#endif
