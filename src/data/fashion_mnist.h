/*
 * fashion_mnist.h — Fashion-MNIST (Zalando's 70,000 28x28 grey product photos in ten classes)
 * turned into an image–caption dataset: PNG files plus a JSONL file that data/pairs.h reads.
 *
 * The IDX files are the ones Debian's dataset-fashion-mnist package installs in
 * MMT_FASHION_MNIST_DIR ({train,t10k}-{images-idx3,labels-idx1}-ubyte.gz; unzipped files are
 * read too). A split is validated as a whole: images (N, 28, 28), labels (N) with values 0..9.
 *
 * Export picks count_per_class images of each chosen class (a seeded shuffle within the
 * class, so a different seed gives different images), shuffles the picks together, and
 * writes OUT/images/SPLIT-NNNNN.png (NNNNN = the index in the IDX file, so a file name says
 * which image it is) and OUT/SPLIT.jsonl with one {"image_path", "text", "label"} line per
 * image. The caption is one of MMT_FASHION_MNIST_TEMPLATES, chosen by the same seed; the
 * label is the class name. With captions > 0 it also writes OUT/SPLIT_coco.json (COCO
 * captions: "images" with id, file_name, width, height; "annotations" with id, image_id,
 * caption) holding that many distinct wordings of each image, the JSONL's first: references
 * for caption metrics. The extra wordings come from a stream of their own (seed and image
 * index), so the JSONL is the same with or without them. The same inputs and seed give the
 * same bytes.
 */
#ifndef MMT_DATA_FASHION_MNIST_H
#define MMT_DATA_FASHION_MNIST_H

#include <stdint.h>

#include "core/status.h"
#include "data/idx.h"

#define MMT_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define MMT_FASHION_MNIST_CLASSES 10
#define MMT_FASHION_MNIST_SIDE 28

/* "T-shirt/top", "trouser", …, "ankle boot", indexed by the IDX label. */
extern const char *const mmt_fashion_mnist_class_names[MMT_FASHION_MNIST_CLASSES];

/* Class index of a name (case-insensitive; "_" matches " "; "t-shirt" and "top" name class 0)
 * or of a digit 0..9; -1 when it names none. */
int mmt_fashion_mnist_class_index(const char *name);

typedef struct mmt_fashion_mnist {
    mmt_idx images; /* (N, 28, 28) */
    mmt_idx labels; /* (N) */
    int64_t n;
} mmt_fashion_mnist;

/* split: "train" or "test". Errors name the file. */
mmt_status mmt_fashion_mnist_load(const char *idx_dir, const char *split, mmt_fashion_mnist *out);
void mmt_fashion_mnist_free(mmt_fashion_mnist *fm);

typedef struct mmt_fashion_mnist_export_params {
    const char *idx_dir;      /* NULL: MMT_FASHION_MNIST_DIR */
    const char *out_dir;
    const char *split;        /* "train" (default) or "test" */
    uint32_t classes;         /* bit c set: class c is exported; 0: all ten */
    int64_t count_per_class;  /* 0: every image of the class */
    uint64_t seed;
    int captions;             /* 1..MMT_FASHION_MNIST_TEMPLATES: also OUT/SPLIT_coco.json; 0: not */
} mmt_fashion_mnist_export_params;

#define MMT_FASHION_MNIST_TEMPLATES 12 /* caption wordings */

/* Writes the images, OUT/SPLIT.jsonl and (captions > 0) OUT/SPLIT_coco.json; *written (may be NULL) gets the number of pairs. */
mmt_status mmt_fashion_mnist_export(const mmt_fashion_mnist_export_params *p, int64_t *written);

#endif
