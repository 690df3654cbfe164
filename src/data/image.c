/*
 * image.c — the image decoding entry points: read the file, recognise the format, call the
 * JPEG, PNG or DICOM decoder (image_jpeg.c, image_png.c, image_dicom.c), then apply the EXIF
 * orientation.
 *
 * Orientation follows PIL.ImageOps.exif_transpose (used by transformers' load_image):
 *   2 FLIP_LEFT_RIGHT  3 ROTATE_180  4 FLIP_TOP_BOTTOM  5 TRANSPOSE
 *   6 ROTATE_270       7 TRANSVERSE  8 ROTATE_90        (ROTATE_n is counter-clockwise)
 * Pillow transposes before convert("RGB"); both are per-pixel maps, so the order does not
 * change the result and mmtune converts first.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "data/image_internal.h"

/* mmt_image_decode_memory_limit's max_pixels while it runs on this thread; 0 outside it. */
static _Thread_local int64_t caller_pixel_limit;

mmt_status image_check_dimensions(int64_t width, int64_t height, const char *what,
                                  const char *format) {
    if (width <= 0 || height <= 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s header gives an empty image (%lld x %lld)",
                        what, format, (long long)width, (long long)height);
    if (caller_pixel_limit > 0 && (width > caller_pixel_limit || height > caller_pixel_limit ||
                                   width * height > caller_pixel_limit))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: %s of %lld x %lld pixels, over the limit of %lld",
                        what, format, (long long)width, (long long)height, (long long)caller_pixel_limit);
    /* Both sides are below 2^31 for JPEG and PNG, so the product cannot overflow int64. */
    if (width > INT64_C(0x7fffffff) || height > INT64_C(0x7fffffff) ||
        width * height > MMT_IMAGE_MAX_PIXELS)
        return mmt_fail(MMT_STATUS_BAD_FORMAT,
                        "%s: %s is %lld x %lld pixels, more than the %lld allowed "
                        "(decompression-bomb limit)",
                        what, format, (long long)width, (long long)height,
                        (long long)MMT_IMAGE_MAX_PIXELS);
    return MMT_OK;
}

mmt_status mmt_image_alloc(int64_t width, int64_t height, mmt_image *out) {
    memset(out, 0, sizeof *out);
    if (width <= 0 || height <= 0 || width > MMT_IMAGE_MAX_PIXELS ||
        height > MMT_IMAGE_MAX_PIXELS || width * height > MMT_IMAGE_MAX_PIXELS)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "image size %lld x %lld is empty or above the %lld-pixel limit",
                        (long long)width, (long long)height, (long long)MMT_IMAGE_MAX_PIXELS);
    out->pixels = mmt_malloc((size_t)(width * height * 3));
    if (!out->pixels) return MMT_STATUS_OUT_OF_MEMORY;
    out->width = width;
    out->height = height;
    return MMT_OK;
}

void mmt_image_free(mmt_image *img) {
    if (!img) return;
    mmt_free(img->pixels);
    memset(img, 0, sizeof *img);
}

/* Applies an EXIF orientation (2..8) by building the transposed copy. For each output pixel
 * (x, y) of an output W' x H' image, the source pixel is (sx, sy) as below, with W x H the
 * stored size; these match numpy.fliplr/rot90 of Pillow's Image.transpose results. */
static mmt_status image_apply_orientation(mmt_image *img, int orientation, const char *what) {
    if (orientation < 2 || orientation > 8) return MMT_OK;
    int64_t w = img->width, h = img->height;
    int swap = orientation >= 5; /* TRANSPOSE, ROTATE_270, TRANSVERSE, ROTATE_90 */
    mmt_image out;
    mmt_status status = mmt_image_alloc(swap ? h : w, swap ? w : h, &out);
    if (status != MMT_OK) return mmt_error_prefix(status, "%s: ", what);
    for (int64_t y = 0; y < out.height; y++) {
        for (int64_t x = 0; x < out.width; x++) {
            int64_t sx, sy;
            switch (orientation) {
            case 2: sx = w - 1 - x; sy = y; break;           /* FLIP_LEFT_RIGHT */
            case 3: sx = w - 1 - x; sy = h - 1 - y; break;   /* ROTATE_180 */
            case 4: sx = x; sy = h - 1 - y; break;           /* FLIP_TOP_BOTTOM */
            case 5: sx = y; sy = x; break;                   /* TRANSPOSE */
            case 6: sx = y; sy = h - 1 - x; break;           /* ROTATE_270 (clockwise) */
            case 7: sx = w - 1 - y; sy = h - 1 - x; break;   /* TRANSVERSE */
            default: sx = w - 1 - y; sy = x; break;          /* 8: ROTATE_90 */
            }
            memcpy(out.pixels + (y * out.width + x) * 3, img->pixels + (sy * w + sx) * 3, 3);
        }
    }
    mmt_image_free(img);
    *img = out;
    return MMT_OK;
}

/* Names the formats Pillow would open but mmtune does not, so the message says what to do. */
static const char *image_other_format(const uint8_t *p, size_t len) {
    if (len >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0)) return "GIF";
    if (len >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0) return "WebP";
    if (len >= 2 && memcmp(p, "BM", 2) == 0) return "BMP";
    if (len >= 4 && (memcmp(p, "II*\0", 4) == 0 || memcmp(p, "MM\0*", 4) == 0)) return "TIFF";
    if (len >= 12 && memcmp(p + 4, "ftyp", 4) == 0) return "HEIF/AVIF";
    return NULL;
}

mmt_status mmt_dicom_window_parse(const char *text, const char *what, mmt_dicom_options *out) {
    memset(out, 0, sizeof *out);
    char *end = NULL;
    double center = strtod(text, &end);
    int ok = end != text && *end == ',';
    double width = ok ? strtod(end + 1, &end) : 0;
    ok = ok && *end == '\0' && end[-1] != ',' && isfinite(center) && isfinite(width);
    if (!ok)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "%s takes CENTER,WIDTH (two numbers, e.g. 40,400), not \"%s\"", what, text);
    if (width < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: window width %g is below 1 (\"%s\")",
                        what, width, text);
    out->use_window = 1;
    out->window_center = center;
    out->window_width = width;
    return MMT_OK;
}

mmt_status mmt_image_decode_memory_ex(const void *data, size_t len, const char *what,
                                      const mmt_dicom_options *dicom, mmt_image *out) {
    static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memset(out, 0, sizeof *out);
    if (!what) what = "image";
    const uint8_t *p = data;
    if (len == 0 || !p) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: empty file, not an image", what);
    int orientation = 1;
    mmt_status status;
    if (len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) {
        status = image_decode_jpeg(p, len, what, out, &orientation);
    } else if (len >= 8 && memcmp(p, png_signature, 8) == 0) {
        status = image_decode_png(p, len, what, out, &orientation);
    } else if (image_dicom_sniff(p, len)) {
        /* before the other formats: a DICOM preamble may hold a TIFF header */
        status = image_decode_dicom(p, len, what, dicom, out);
    } else {
        const char *other = image_other_format(p, len);
        if (other)
            return mmt_fail(MMT_STATUS_UNSUPPORTED,
                            "%s: %s images are not supported (convert to PNG or JPEG)", what,
                            other);
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: not an image (neither JPEG, PNG nor DICOM)",
                        what);
    }
    if (status != MMT_OK) return status;
    status = image_apply_orientation(out, orientation, what);
    if (status != MMT_OK) mmt_image_free(out);
    return status;
}

mmt_status mmt_image_decode_memory_limit(const void *data, size_t len, const char *what,
                                         const mmt_dicom_options *dicom, int64_t max_pixels,
                                         mmt_image *out) {
    caller_pixel_limit = max_pixels < MMT_IMAGE_MAX_PIXELS && max_pixels > 0 ? max_pixels : MMT_IMAGE_MAX_PIXELS;
    mmt_status status = mmt_image_decode_memory_ex(data, len, what, dicom, out);
    caller_pixel_limit = 0;
    return status;
}

mmt_status mmt_image_decode_memory(const void *data, size_t len, const char *what,
                                   mmt_image *out) {
    return mmt_image_decode_memory_ex(data, len, what, NULL, out);
}

mmt_status mmt_image_decode_file_ex(const char *path, const mmt_dicom_options *dicom,
                                    mmt_image *out) {
    memset(out, 0, sizeof *out);
    char *data = NULL;
    size_t len = 0;
    MMT_TRY(mmt_file_read_all(path, MMT_IMAGE_MAX_FILE_BYTES, &data, &len));
    mmt_status status = mmt_image_decode_memory_ex(data, len, path, dicom, out);
    mmt_free(data);
    return status;
}

mmt_status mmt_image_decode_file(const char *path, mmt_image *out) {
    return mmt_image_decode_file_ex(path, NULL, out);
}
