/*
 * fingerprint.h — checksums that say whether two runs used the same base model and data,
 * for the run identity record (train/run_dir.h).
 *
 * Model: every file of the snapshot folder that a loader reads (*.json, *.txt,
 * *.safetensors; other formats beside them are ignored), names and contents, in name order:
 * a copied or moved snapshot keeps its fingerprint, a retrained or edited one does not.
 * Data: the manifest of the pairs as loaded — each pair's text, label, image file name and
 * image file size — so the same data read from another folder or through another layout
 * (JSONL, CSV, COCO) keeps its fingerprint, while added, removed, reordered or re-captioned
 * pairs and replaced images change it.
 */
#ifndef MMT_TRAIN_FINGERPRINT_H
#define MMT_TRAIN_FINGERPRINT_H

#include <stdint.h>

#include "core/status.h"
#include "data/pairs.h"

/* hex gets 16 hex digits; *n_files the number of files hashed. */
mmt_status mmt_fingerprint_model(const char *dir, char hex[17], int64_t *n_files);
mmt_status mmt_fingerprint_pairs(const mmt_pairs *pairs, char hex[17]);

#endif
