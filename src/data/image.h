/*
 * image.h — decoding JPEG/PNG/DICOM files into RGB8 pixels, and Pillow-exact resampling.
 *
 * The reference is what Python feeds CLIPImageProcessor: `transformers.image_utils.load_image`
 * = PIL.Image.open + PIL.ImageOps.exif_transpose + .convert("RGB"). So:
 *   - JPEG is decoded by libjpeg(-turbo) with Pillow's settings (ISLOW DCT, fancy upsampling,
 *     block smoothing; 1/3/4 components as Pillow's L/RGB/CMYK modes, CMYK inverted as Adobe
 *     writes it, then Pillow's cmyk2rgb).
 *   - PNG is decoded by libpng, reproducing Pillow's modes: 1/2/4-bit gray scaled to 0..255,
 *     16-bit colour reduced to its high byte, 16-bit gray (Pillow mode I;16) clipped to 255,
 *     palette indices outside PLTE mapped to black, alpha and tRNS dropped (no compositing:
 *     convert("RGB") just discards alpha).
 *   - the EXIF Orientation tag (JPEG APP1, PNG eXIf / "Raw profile type exif" text) and, when
 *     EXIF has none, an XMP tiff:Orientation, are applied as exif_transpose does.
 * DICOM (uncompressed little endian, MONOCHROME1/2 8/16-bit and 8-bit RGB, first frame) is
 * rendered as DCMTK's dcm2pnm renders it with +Wi 1 (the file's window) or, without one, +Wm
 * (min-max window): image_dicom.c and docs/data.md "DICOM"; mmt_dicom_options overrides the
 * window.
 * Images above MMT_IMAGE_MAX_PIXELS are refused before any pixel memory is allocated.
 *
 * Usage:
 *     mmt_image img = {0};
 *     MMT_TRY(mmt_image_decode_file("cat.jpg", &img));      // img.pixels: (H, W, 3) uint8
 *     mmt_image small = {0};
 *     MMT_TRY(mmt_image_resize_bicubic(&img, 224, 168, &small));
 *     mmt_image_free(&img); mmt_image_free(&small);
 */
#ifndef MMT_DATA_IMAGE_H
#define MMT_DATA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Pillow's Image.MAX_IMAGE_PIXELS (1024*1024*1024 // 4 // 3). Pillow warns above it and
 * refuses above twice it; mmtune refuses above it. */
#define MMT_IMAGE_MAX_PIXELS INT64_C(89478485)
/* Encoded files larger than this are refused before reading (no real photo comes close). */
#define MMT_IMAGE_MAX_FILE_BYTES ((size_t)1 << 30)

typedef struct mmt_image {
    int64_t width, height;
    uint8_t *pixels; /* (height, width, 3) RGB8, row-major; owned, mmt_malloc'd */
} mmt_image;

/* How DICOM input is rendered to 8 bits; other formats ignore it. Zeroed (or a NULL pointer
 * where one is taken) = the file's rule: its first Window Center/Width, else min-max. */
typedef struct mmt_dicom_options {
    int use_window;       /* 1: this linear VOI window replaces the file's and the min-max one */
    double window_center; /* in rescaled units (after Rescale Slope/Intercept), e.g. HU for CT */
    double window_width;  /* >= 1 (PS3.3 C.11.2.1.2) */
} mmt_dicom_options;

/* Parses "C,W" (two numbers, e.g. "40,400") into a window override; the width must be >= 1.
 * `what` names the source in the message ("--window"). */
mmt_status mmt_dicom_window_parse(const char *text, const char *what, mmt_dicom_options *out);

/* Decodes a JPEG, PNG or DICOM file. On failure *out is zeroed and the message names the
 * path. */
mmt_status mmt_image_decode_file(const char *path, mmt_image *out);
/* Decodes len bytes of an encoded JPEG, PNG or DICOM; `what` names the source in error
 * messages (NULL reads "image"). */
mmt_status mmt_image_decode_memory(const void *data, size_t len, const char *what,
                                   mmt_image *out);
/* The same two with DICOM options (NULL: the file's rule, as above). */
mmt_status mmt_image_decode_file_ex(const char *path, const mmt_dicom_options *dicom,
                                    mmt_image *out);
mmt_status mmt_image_decode_memory_ex(const void *data, size_t len, const char *what,
                                      const mmt_dicom_options *dicom, mmt_image *out);
/* mmt_image_decode_memory_ex for servers: an image of more than max_pixels pixels (or more
 * than MMT_IMAGE_MAX_PIXELS) is refused from its header, before any pixel is decoded, with
 * MMT_STATUS_INVALID_ARGUMENT ("WHAT: PNG of W x H pixels, over the limit of N"); other
 * failures are mmt_image_decode_memory_ex's. */
mmt_status mmt_image_decode_memory_limit(const void *data, size_t len, const char *what,
                                         const mmt_dicom_options *dicom, int64_t max_pixels,
                                         mmt_image *out);
/* Allocates an uninitialised width x height image (both >= 1, within the pixel limit). */
mmt_status mmt_image_alloc(int64_t width, int64_t height, mmt_image *out);
/* Frees the pixels and zeroes *img; accepts NULL and a zeroed image. */
void mmt_image_free(mmt_image *img);

/* Resampling filters, numbered as PIL.Image.Resampling (and HF's "resample" field). */
typedef enum mmt_resample {
    MMT_RESAMPLE_NEAREST = 0, /* not implemented: resize refuses it */
    MMT_RESAMPLE_LANCZOS = 1,
    MMT_RESAMPLE_BILINEAR = 2,
    MMT_RESAMPLE_BICUBIC = 3,
    MMT_RESAMPLE_BOX = 4,
    MMT_RESAMPLE_HAMMING = 5
} mmt_resample;

/* Exactly PIL Image.resize((out_w, out_h), filter, reducing_gap=None) on an RGB image:
 * separable convolution, horizontal pass first into an 8-bit intermediate, 22-bit fixed-point
 * weights (Pillow src/libImaging/Resample.c). *out is allocated. */
mmt_status mmt_image_resize(const mmt_image *in, int64_t out_w, int64_t out_h,
                            mmt_resample filter, mmt_image *out);
mmt_status mmt_image_resize_bicubic(const mmt_image *in, int64_t out_w, int64_t out_h,
                                    mmt_image *out);

#endif
