/*
 * preprocess.h — CLIP image preprocessing, exactly as transformers' CLIPImageProcessor on
 * its PIL backend (CLIPImageProcessorPil, i.e. use_fast=False / backend="pil").
 *
 * Steps (transformers image_processing_backends.py PilBackend._preprocess and
 * image_transforms.py):
 *   1. resize: with size {"shortest_edge": S}, the short side becomes S and the long side
 *      int(S * long / short) (truncated); with size {"height", "width"} the image is resized
 *      to exactly that. PIL Image.resize(..., resample) on the RGB8 image.
 *   2. center crop to crop_height x crop_width: top = (H - ch) // 2 (floor), left likewise;
 *      where the image is smaller it is zero-padded first (ceil split), so pixels outside
 *      the image are 0.
 *   3. rescale: float32(double(u8) * rescale_factor).
 *   4. normalize in float32: (x - float32(mean_c)) / float32(std_c).
 * The result is CHW float32. Every step can be switched off by its do_* flag, as in HF.
 *
 * Usage:
 *     mmt_image_processor p;
 *     MMT_TRY(mmt_image_processor_load("snapshot/preprocessor_config.json", &p));
 *     float *x = mmt_malloc(3 * p.crop_height * p.crop_width * sizeof(float));
 *     MMT_TRY(mmt_image_preprocess(&img, &p, x));     // x: (3, crop_height, crop_width)
 */
#ifndef MMT_DATA_PREPROCESS_H
#define MMT_DATA_PREPROCESS_H

#include <stdint.h>

#include "data/image.h"

typedef struct mmt_image_processor {
    int do_resize, do_center_crop, do_rescale, do_normalize, do_convert_rgb;
    int64_t shortest_edge;           /* resize target of the short side (when size_height == 0) */
    int64_t crop_height, crop_width;
    double rescale_factor;
    float mean[3], std[3];
    int resample;                    /* mmt_resample (PIL numbering) */
    int64_t size_height, size_width; /* size {"height", "width"}: fixed resize; 0 = unused */
} mmt_image_processor;

/* CLIP defaults: shortest edge 224, crop 224 x 224, rescale 1/255, OpenAI mean/std, bicubic,
 * every step on. */
void mmt_image_processor_default(mmt_image_processor *p);

/* Reads a Hugging Face preprocessor_config.json on top of the defaults. Accepts `size` as
 * {"shortest_edge": N}, {"height": H, "width": W}, N or [H, W]; `crop_size` as
 * {"height": H, "width": W} or N; `image_mean`/`image_std` as 3 numbers or 1. Fields this
 * implementation cannot honour (NEAREST resampling, {"longest_edge"} sizes) give
 * MMT_STATUS_UNSUPPORTED naming the field. Unknown keys are ignored, as HF ignores them.
 * The result is validated (mmt_image_processor_validate). */
mmt_status mmt_image_processor_load(const char *path, mmt_image_processor *p);
/* The same from a parsed JSON document (`what` names its source in errors). */
struct mmt_json;
mmt_status mmt_image_processor_parse(const struct mmt_json *root, const char *what,
                                     mmt_image_processor *p);
/* What load and parse check after reading: for the steps switched on, rescale_factor and
 * image_std > 0 and finite, image_mean finite, crop and fixed resize areas at most
 * MMT_IMAGE_MAX_PIXELS. One line naming `path`, the field and the value. */
mmt_status mmt_image_processor_validate(const mmt_image_processor *p, const char *path);

/* Size of the processed image for an input of in_width x in_height (the crop size when
 * center-crop is on, else the resized or original size). */
mmt_status mmt_image_processor_output_size(const mmt_image_processor *p, int64_t in_width,
                                           int64_t in_height, int64_t *out_width,
                                           int64_t *out_height);

/* Step 1 alone: the RGB8 image the resize step hands to the crop (a copy when the size is
 * unchanged or do_resize is off). *out is allocated. */
mmt_status mmt_image_processor_resize(const mmt_image *img, const mmt_image_processor *p,
                                      mmt_image *out);

/* Preprocesses one RGB8 image into out, (3, out_height, out_width) float32 as given by
 * mmt_image_processor_output_size (with center-crop on: (3, crop_height, crop_width)). */
mmt_status mmt_image_preprocess(const mmt_image *img, const mmt_image_processor *p, float *out);

#endif
