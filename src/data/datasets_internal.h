/* datasets_internal.h — helpers the dataset readers (dataset_*.c) share; not public. */
#ifndef MMT_DATA_DATASETS_INTERNAL_H
#define MMT_DATA_DATASETS_INTERNAL_H

#include <stdint.h>

#include "data/datasets.h"

/* A fresh, empty list whose source is `source` (NULL on allocation failure). */
mmt_pairs *datasets_new(const char *source);
/* Appends a pair, taking ownership of the three strings (label may be NULL) whether or not it
 * succeeds; MMT_STATUS_OUT_OF_MEMORY when a string is NULL or the list cannot grow. */
mmt_status datasets_append(mmt_pairs *p, int64_t *cap, char *image_path, char *text, char *label);
/* The folder part of path ("." when it has none); NULL on allocation failure. */
char *datasets_folder_of(const char *path);
/* name as is when absolute, else folder/name; NULL on allocation failure. */
char *datasets_resolve(const char *folder, const char *name);
/* Under skip_bad a BAD_FORMAT/NOT_FOUND record failure is logged and counted and MMT_OK
 * returned; otherwise s passes through. */
mmt_status datasets_record_failed(mmt_pairs *p, const mmt_pairs_options *o, mmt_status s);
/* An error when the list is empty: "SOURCE: no image-text pairs" (+ how many were skipped). */
mmt_status datasets_check_nonempty(const mmt_pairs *p);

#endif
