/*
 * image_internal.h — what the decoders under src/data/ share; not part of the image API.
 *
 * image.c sniffs the format and calls one decoder; the decoder returns RGB8 pixels in file
 * order plus the orientation (1..8, 1 = as stored) that image.c then applies, the way
 * PIL.ImageOps.exif_transpose does after Image.open.
 */
#ifndef MMT_DATA_IMAGE_INTERNAL_H
#define MMT_DATA_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "data/image.h"

/* Refuses empty or too large dimensions with a message naming `what` and the format. */
mmt_status image_check_dimensions(int64_t width, int64_t height, const char *what,
                                  const char *format);

mmt_status image_decode_jpeg(const uint8_t *data, size_t len, const char *what,
                             mmt_image *out, int *orientation);
mmt_status image_decode_png(const uint8_t *data, size_t len, const char *what, mmt_image *out,
                            int *orientation);
/* DICOM (image_dicom.c): sniff returns 1 for a PS3.10 file ("DICM" after the 128-byte
 * preamble), 2 for what looks like a bare data set (first element in group 0002 or 0008),
 * else 0. DICOM has no orientation to apply. */
int image_dicom_sniff(const uint8_t *data, size_t len);
mmt_status image_decode_dicom(const uint8_t *data, size_t len, const char *what,
                              const mmt_dicom_options *opts, mmt_image *out);

/* EXIF: `data` is an EXIF block as Pillow stores it in info["exif"] (optionally starting with
 * "Exif\0\0"), a TIFF header and IFD0. Returns the Orientation value when it is one Pillow's
 * exif_transpose acts on (2..8), else 1. *present is set when IFD0 holds an Orientation entry
 * at all (then Pillow does not look at XMP), or when the block is too broken to read (Pillow
 * raises there; mmtune keeps the image as stored). */
int image_exif_orientation(const uint8_t *data, size_t len, int *present);
/* XMP fallback: the digit after the first `tiff:Orientation="` or `tiff:Orientation>` in the
 * packet, or -1 when there is none. */
int image_xmp_orientation(const uint8_t *data, size_t len);

#endif
