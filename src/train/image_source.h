/*
 * image_source.h — the images of a training set, batch by batch: decoded, preprocessed with
 * a model's image processor and augmented on background loader workers (data/loader.h), one
 * or more micro-batches ahead of the trainer, and, while the preprocessed pixels of the whole
 * set fit the cache budget (and no augmentation needs the decoded image), kept after their
 * first use. Shared by the training tasks (CLIP's contrastive one, GIT's captioning one).
 *
 * Every example is a pure function of (index, stream position, seed): the pixels are the same
 * whatever the number of workers, and after a resume.
 */
#ifndef MMT_TRAIN_IMAGE_SOURCE_H
#define MMT_TRAIN_IMAGE_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "data/augment.h"
#include "data/pairs.h"
#include "data/preprocess.h"

typedef struct mmt_image_source mmt_image_source;

typedef struct mmt_image_source_options {
    const mmt_image_processor *processor; /* borrowed; its crop is S x S */
    int64_t size;                         /* S */
    uint64_t seed;                        /* augmentation */
    size_t cache_bytes;                   /* pixel cache budget; 0: no cache */
    int64_t workers, prefetch_batches;    /* loader threads (0: synchronous), batches ahead */
    mmt_augment augment;                  /* all off when zeroed */
    mmt_dicom_options dicom;              /* DICOM rendering; zeroed: each file's own window */
} mmt_image_source_options;

/* pairs and the processor are borrowed and must outlive the source. */
mmt_status mmt_image_source_create(const mmt_pairs *pairs, const mmt_image_source_options *o, mmt_image_source **out);
void mmt_image_source_free(mmt_image_source *s);

/* Announces the examples indices[0..n) at stream position `position` (the trainer's
 * prefetch hook). */
mmt_status mmt_image_source_prefetch(mmt_image_source *s, int64_t position, const int64_t *indices, int64_t n);
/* The pixels (n, 3, S, S) of the next announced batch, which must be indices[0..n); a batch
 * nobody announced is loaded now. Valid until the next call. */
mmt_status mmt_image_source_next(mmt_image_source *s, const int64_t *indices, int64_t n, const float **pixels);
/* The un-augmented pixels (3, S, S) of example k into dst, as evaluation sees it (from the
 * cache when it holds them; stored there when the cache is in use). For whoever needs every
 * example under the current model, e.g. hard-example mining; safe beside the workers. */
mmt_status mmt_image_source_plain(mmt_image_source *s, int64_t k, float *dst);
/* Micro-batches the trainer should announce ahead (0: synchronous). */
int64_t mmt_image_source_ahead(const mmt_image_source *s);

#endif
