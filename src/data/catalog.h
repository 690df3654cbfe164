/*
 * catalog.h — a product catalogue to index for search (serve/index.h, `mmtune index`): one
 * item per JSONL line or CSV record, each with an id, a title and/or an image, and free
 * metadata that search filters can test.
 *
 * JSONL: one object per line. "id" is a string or an integer (kept as its decimal text);
 * "title" a string; "image" or "image_path" a path relative to the file's folder (or
 * absolute); null or absent where an item has none. Every other key is metadata, kept as
 * the JSON object of those keys in file order with their values as given (nested objects,
 * arrays, booleans included).
 *
 * CSV (RFC 4180, data/dataset_csv.c's reader): a header row naming the columns; "id" is
 * required, "title" and "image" (or "image_path") optional, every other column a metadata
 * field of that name. A value that is a JSON number (e.g. 12, -3.5, 1e3 — but not 007, +1,
 * inf or 0x10) and finite is stored as a number, any other text as a string; an empty value
 * leaves the field out of that item.
 *
 * An item needs a non-empty id and a title or an image. Ids must be unique in the file.
 * Errors name "FILE:LINE: ..." (the line a record starts on); blank lines are skipped.
 * Limits bound memory whatever the file holds: a line or field over max_field_bytes and a
 * file over max_file_bytes are refused. With check_files (the default) every image is
 * stat()ed while reading, so a missing one is reported with its line.
 *
 * Usage:
 *     mmt_catalog *c = NULL;
 *     MMT_TRY(mmt_catalog_load("products.jsonl", NULL, &c));  // c->items[i].id / title / ...
 *     mmt_catalog_free(c);
 */
#ifndef MMT_DATA_CATALOG_H
#define MMT_DATA_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct mmt_catalog_item {
    char *id;          /* owned; a number id as its decimal text */
    char *title;       /* owned; NULL when the item has none */
    char *image_path;  /* owned; resolved against the file's folder; NULL when none */
    char *meta;        /* owned; the metadata as compact JSON object text ("{}" when none) */
    int64_t line;      /* the line of the file it starts on */
} mmt_catalog_item;

typedef struct mmt_catalog {
    mmt_catalog_item *items; /* owned */
    int64_t n;
    char *source;            /* owned; the file it came from */
} mmt_catalog;

typedef struct mmt_catalog_options {
    int check_files;         /* stat() every image while reading (default 1) */
    size_t max_field_bytes;  /* a longer JSONL line or CSV field is refused (0: 1 MiB) */
    size_t max_file_bytes;   /* a larger file is refused (0: 2 GiB) */
} mmt_catalog_options;

void mmt_catalog_options_default(mmt_catalog_options *o);

/* Reads a catalogue: CSV when the name ends in .csv (any case), JSONL otherwise. o may be
 * NULL (defaults). */
mmt_status mmt_catalog_load(const char *path, const mmt_catalog_options *o, mmt_catalog **out);
/* The same on bytes in memory (tests, fuzzing); images resolve against folder. */
mmt_status mmt_catalog_parse(const char *text, size_t len, const char *source, int is_csv, const char *folder,
                             const mmt_catalog_options *o, mmt_catalog **out);
void mmt_catalog_free(mmt_catalog *c);

#endif
