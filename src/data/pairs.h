/*
 * pairs.h — image–text pairs from a JSONL file, the training and evaluation input.
 *
 * One JSON object per line: {"image_path": "...", "text": "...", "task_type": "..."}, with
 * image_path relative to the file's folder (or absolute). An optional "label" string names the
 * pair's class for classification (linear probing); it must not be empty when present. Blank lines are skipped; any other
 * problem (not JSON, not an object, a missing or non-string field, an empty text) is an error
 * "FILE:LINE: ..." — or, with skip_bad, counted and the line left out. Image files are not
 * opened here (the loader reports a bad image with its path when it meets it); with
 * check_files their existence is checked ("FILE:LINE: image not found: PATH"). A text over
 * the default limit of data/datasets.h (64 KiB) makes its line bad too; the file is read line
 * by line, never whole. The other layouts (COCO, CSV, image folders), the entry point and
 * the options (limits included: mmt_pairs_load_jsonl_with_options) are in data/datasets.h.
 */
#ifndef MMT_DATA_PAIRS_H
#define MMT_DATA_PAIRS_H

#include <stdint.h>

#include "core/status.h"

typedef struct mmt_pair {
    char *image_path; /* resolved against the file's folder */
    char *text;
    char *label;      /* the "label" field, or NULL when the line has none */
} mmt_pair;

typedef struct mmt_pairs {
    mmt_pair *items;
    int64_t n;
    int64_t skipped;  /* bad lines left out under skip_bad */
    char *source;     /* the file it came from */
} mmt_pairs;

mmt_status mmt_pairs_load_jsonl(const char *path, int skip_bad, mmt_pairs **out);
mmt_status mmt_pairs_load_jsonl_checked(const char *path, int skip_bad, int check_files, mmt_pairs **out);
void mmt_pairs_free(mmt_pairs *p);

#endif
