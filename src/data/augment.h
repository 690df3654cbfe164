/*
 * augment.h — training-time image augmentations, deterministic per (seed, example position).
 *
 * Each is off by default (evaluation never augments):
 *   - random resized crop, as torchvision's RandomResizedCrop.get_params: up to 10 tries of an
 *     area fraction in [scale_min, scale_max] and a log-uniform aspect ratio in
 *     [ratio_min, ratio_max], w = round(sqrt(area * ratio)), h = round(sqrt(area / ratio)),
 *     a uniform offset; else the centred crop clamped to the ratio range. The crop is resized
 *     straight to the processor's crop size with the processor's Pillow-exact filter, then
 *     rescaled and normalized as mmt_image_preprocess does (which it replaces: no
 *     shortest-edge resize or centre crop). On a square image with scale = ratio = (1, 1) it
 *     equals the plain preprocessing.
 *   - colour jitter (brightness, contrast, saturation, in that fixed order): factors uniform
 *     in [max(0, 1 - s), 1 + s], applied as Pillow's ImageEnhance does on the RGB8 image
 *     (Image.blend with a black, mean-grey or greyscale image; float arithmetic, truncation).
 *   - horizontal flip with probability flip_p: the output tensor mirrored left to right.
 * Random numbers come from a splitmix64 stream seeded by (seed, position), drawn in the
 * order crop, flip, jitter, so the same seed and position always give the same pixels.
 */
#ifndef MMT_DATA_AUGMENT_H
#define MMT_DATA_AUGMENT_H

#include <stdint.h>

#include "data/image.h"
#include "data/preprocess.h"

typedef struct mmt_augment {
    int crop;                            /* random resized crop */
    double scale_min, scale_max;         /* area fraction (0.08, 1) */
    double ratio_min, ratio_max;         /* aspect w/h (3/4, 4/3) */
    int flip;                            /* horizontal flip */
    double flip_p;                       /* 0.5 */
    double brightness, contrast, saturation; /* jitter strengths; 0: off */
} mmt_augment;

/* Everything off, with torchvision's default ranges ready for when crop / flip are switched on. */
void mmt_augment_default(mmt_augment *a);
/* Whether any augmentation is on; whether one needs the decoded image (crop, jitter). */
int mmt_augment_any(const mmt_augment *a);
int mmt_augment_needs_image(const mmt_augment *a);
mmt_status mmt_augment_check(const mmt_augment *a);

/* Preprocesses img with p and the augmentations a for the example at `position` of the
 * stream of a run seeded `seed`; out: (3, crop_height, crop_width), or the processor's output
 * size when crop is off. */
mmt_status mmt_augment_preprocess(const mmt_image *img, const mmt_image_processor *p,
                                  const mmt_augment *a, uint64_t seed, int64_t position,
                                  float *out);
/* The flip alone, on already preprocessed pixels (3, height, width), as the same stream
 * decides it: for pixels that came from a cache when crop and jitter are off. */
void mmt_augment_flip_only(const mmt_augment *a, uint64_t seed, int64_t position, float *pixels,
                           int64_t width, int64_t height);

#endif
