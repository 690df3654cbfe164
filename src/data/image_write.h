/*
 * image_write.h — encoding RGB8 pixels as PNG (libpng) or JPEG (libjpeg-turbo), in memory or
 * to a file written atomically (core/file.h: temp file, fsync, rename).
 *
 * The encoders use fixed settings so the same pixels give the same bytes with the same
 * libraries: PNG 8-bit RGB, no interlace, no time or text chunks, zlib level 6 with libpng's
 * default filter choice; JPEG baseline, 4:2:0, ISLOW DCT, no JFIF timestamps, the quality
 * asked for. libjpeg-turbo documents ISLOW output as identical with and without SIMD.
 *
 * Usage:
 *     MMT_TRY(mmt_image_write_png("out.png", &img));
 *     MMT_TRY(mmt_image_write_jpeg("out.jpg", &img, 90));
 */
#ifndef MMT_DATA_IMAGE_WRITE_H
#define MMT_DATA_IMAGE_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "data/image.h"

/* Encodes img; *data (mmt_malloc'd, owned by the caller) gets *len bytes. */
mmt_status mmt_image_encode_png(const mmt_image *img, uint8_t **data, size_t *len);
/* quality 1..100 (Pillow's default is 75, a common training-set choice is 90..95). */
mmt_status mmt_image_encode_jpeg(const mmt_image *img, int quality, uint8_t **data, size_t *len);

/* Encode + atomic write. Errors name the path. */
mmt_status mmt_image_write_png(const char *path, const mmt_image *img);
mmt_status mmt_image_write_jpeg(const char *path, const mmt_image *img, int quality);

#endif
