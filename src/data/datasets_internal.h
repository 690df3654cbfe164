/* datasets_internal.h — helpers the dataset readers (dataset_*.c) share; not public. */
#ifndef MMT_DATA_DATASETS_INTERNAL_H
#define MMT_DATA_DATASETS_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

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
/* Why an image cannot be read from path: "not found", or "not a regular file" (a folder, FIFO
 * or device); NULL when it is a regular file. */
const char *datasets_image_problem(const char *path);

/* The limits of o, the defaults standing in for 0. */
size_t datasets_max_text_bytes(const mmt_pairs_options *o);
size_t datasets_max_file_bytes(const mmt_pairs_options *o);
/* "SOURCE:LINE: text is N bytes, over the limit of M (--max-text-bytes)" (BAD_FORMAT); `where`
 * is "FILE:LINE" or a JSON path. */
mmt_status datasets_text_too_long(const char *where, uint64_t n, size_t limit);

/*
 * A data file read through a fixed-size window (dataset_stream.c), or bytes already in memory.
 * Bytes [at, len) of buf are unread; datasets_stream_peek(s, k) makes byte at + k available
 * when the input has it. A read error or the file outgrowing max_file_bytes ends the input
 * (peek returns -1) and is kept in status/message for datasets_stream_error.
 */
typedef struct datasets_stream {
    FILE *file;            /* NULL: memory only */
    const char *source;    /* for messages; not owned */
    char *window;          /* owned; buf points at it when reading a file */
    const char *buf;
    size_t len, at;
    uint64_t total;        /* bytes taken in so far (all of them, for memory) */
    size_t max_file_bytes;
    int eof;
    mmt_status status;     /* MMT_OK, or why the input ended early */
    char message[512];     /* its message */
} datasets_stream;

/* Opens path; a regular file over max_file_bytes is refused before anything is read:
 * "FILE: file is N bytes, over the limit of M (--max-file-bytes)". */
mmt_status datasets_stream_open(datasets_stream *s, const char *path, size_t max_file_bytes);
void datasets_stream_memory(datasets_stream *s, const char *data, size_t len, const char *source);
void datasets_stream_close(datasets_stream *s);
/* A line-oriented layout's reader: the records of `in`, image paths relative to folder. */
typedef mmt_status (*datasets_stream_reader)(datasets_stream *in, const char *folder, const mmt_pairs_options *o,
                                             mmt_pairs **out);
/* Opens path as a stream (bounded by the file limit) and runs read over it with the file's
 * folder. */
mmt_status datasets_load_stream(const char *path, const mmt_pairs_options *o, datasets_stream_reader read,
                                mmt_pairs **out);
/* The byte at at + k as 0..255, or -1 when the input ends before it (k must be well under the
 * 64 KiB window; the readers look one byte ahead at most). */
int datasets_stream_peek(datasets_stream *s, size_t k);
/* How many bytes of the input come before the next unread one. */
static inline uint64_t datasets_stream_position(const datasets_stream *s) { return s->total - (s->len - s->at); }
/* Sets the last error again to why the input ended early and returns its code. */
mmt_status datasets_stream_error(const datasets_stream *s);

/*
 * The RFC 4180 record reader of dataset_csv.c for other CSV layouts (data/catalog.c): each
 * call gives the next non-blank record's fields, unquoted. A field over max_field bytes is
 * measured, not held, and makes its record an error; errors name "SOURCE:LINE" (the line the
 * record starts on). A UTF-8 byte-order mark at the start is skipped.
 */
typedef struct datasets_csv datasets_csv;
mmt_status datasets_csv_open(datasets_stream *in, size_t max_field, datasets_csv **out);
void datasets_csv_close(datasets_csv *c);
/* The next record into c (*got = 1), or *got = 0 at the end of the input (whose own failure,
 * a read error or the file limit, is returned as the error). */
mmt_status datasets_csv_next(datasets_csv *c, int *got);
int64_t datasets_csv_count(const datasets_csv *c);                /* fields of the record */
const char *datasets_csv_field(const datasets_csv *c, int64_t i); /* NUL-terminated */
int64_t datasets_csv_line(const datasets_csv *c);                 /* where the record starts */

#endif
