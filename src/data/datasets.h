/*
 * datasets.h — every on-disk dataset layout mmtune reads, behind one entry point that gives
 * the same mmt_pairs (data/pairs.h) whatever the layout.
 *
 * mmt_pairs_load picks the reader from the path:
 *   - a folder                an image-folder classification layout: ROOT/CLASS/IMAGE.{jpg,jpeg,png,dcm}.
 *                             One pair per image; label = the folder name, text = the caption
 *                             template with "{}" replaced by the name (underscores read as
 *                             spaces: "ankle_boot" -> "a photo of a ankle boot."). Classes and
 *                             files are taken in byte order of their names; hidden entries and
 *                             files with other extensions are left out.
 *   - *.jsonl                 JSONL pairs (data/pairs.h).
 *   - *.json                  (JSONL when its first line is a pair object: {"image_path", ...})
 *                             COCO captions: {"images": [{"id", "file_name"}...],
 *                             "annotations": [{"image_id", "caption"}...]}; one pair per
 *                             annotation, in file order, file_name relative to image_root (or
 *                             the JSON's folder). Errors name the JSON path:
 *                             "captions.json: annotations[3].image_id: no image has id 42".
 *   - *.csv                   a header row naming the columns "image" (or "image_path",
 *                             "file_name"), "caption" (or "text") and optionally "label", then one
 *                             record per pair. Fields follow RFC 4180: quoted fields may hold
 *                             commas, doubled quotes and line breaks; CRLF or LF line ends; a
 *                             UTF-8 byte-order mark is ignored. Errors name FILE:LINE (the line a
 *                             record starts on).
 * With check_files (the default) each image's existence is checked with stat() while reading,
 * so a missing file is reported with its line (or JSON path) before training starts; the
 * image's contents are still only decoded by the loader.
 *
 * skip_bad: a bad record (malformed row, missing image, unknown image_id, duplicate image id,
 * a text over max_text_bytes, …) is logged as a warning, counted in mmt_pairs.skipped and left
 * out. Problems with the file as a whole (unreadable, over max_file_bytes, not JSON, no header,
 * no pairs at all) are errors either way.
 *
 * Limits keep memory bounded whatever the file holds. max_text_bytes bounds a record's text
 * ("FILE:LINE: text is N bytes, over the limit of M (--max-text-bytes)"); CSV applies it to
 * every field, and a JSONL line may take 8 x max_text_bytes + 4 KiB (room for \u escapes,
 * the image path and other keys) before it is refused without being held whole. JSONL and CSV
 * are read through a fixed-size window, so an overlong line costs no more memory than a short
 * one. max_file_bytes bounds the file (COCO is one JSON document, read whole).
 *
 * Usage:
 *     mmt_pairs_options o;
 *     mmt_pairs_options_default(&o);
 *     o.skip_bad = 1;
 *     mmt_pairs *p = NULL;
 *     MMT_TRY(mmt_pairs_load("captions.csv", &o, &p));   // p->items[i].image_path / text / label
 *     mmt_pairs_free(p);
 */
#ifndef MMT_DATA_DATASETS_H
#define MMT_DATA_DATASETS_H

#include <stddef.h>

#include "data/pairs.h"

typedef struct mmt_pairs_options {
    int skip_bad;               /* count and leave out bad records instead of failing */
    int check_files;            /* stat() every image while reading (default 1) */
    const char *image_root;     /* COCO: folder file_name is relative to (NULL: the JSON's folder) */
    const char *caption_template; /* image folder: caption with "{}" for the class (NULL: default) */
    size_t max_text_bytes;      /* a longer text makes its record bad (0: the default) */
    size_t max_file_bytes;      /* a larger data file is refused (0: the default) */
} mmt_pairs_options;

#define MMT_PAIRS_DEFAULT_TEMPLATE "a photo of a {}."
/* CLIP reads 77 tokens (a few hundred bytes); 64 KiB leaves room for long texts cut later. */
#define MMT_PAIRS_DEFAULT_MAX_TEXT_BYTES ((size_t)64 << 10)
#define MMT_PAIRS_DEFAULT_MAX_FILE_BYTES ((size_t)2 << 30)

void mmt_pairs_options_default(mmt_pairs_options *o);

/* Detects the layout (see above) and reads it. o may be NULL (defaults). */
mmt_status mmt_pairs_load(const char *path, const mmt_pairs_options *o, mmt_pairs **out);

mmt_status mmt_pairs_load_jsonl_with_options(const char *path, const mmt_pairs_options *o, mmt_pairs **out);
mmt_status mmt_pairs_load_csv(const char *path, const mmt_pairs_options *o, mmt_pairs **out);
mmt_status mmt_pairs_load_coco(const char *path, const mmt_pairs_options *o, mmt_pairs **out);
mmt_status mmt_pairs_load_image_folder(const char *path, const mmt_pairs_options *o, mmt_pairs **out);

/* The parsers on bytes in memory (what the fuzzer calls; the file readers share their code):
 * `source` names the input in messages, relative image paths are joined to `folder`. */
mmt_status mmt_pairs_parse_jsonl(const char *text, size_t len, const char *source, const char *folder,
                                 const mmt_pairs_options *o, mmt_pairs **out);
mmt_status mmt_pairs_parse_csv(const char *text, size_t len, const char *source, const char *folder,
                               const mmt_pairs_options *o, mmt_pairs **out);
mmt_status mmt_pairs_parse_coco(const char *text, size_t len, const char *source, const char *folder,
                                const mmt_pairs_options *o, mmt_pairs **out);

#endif
