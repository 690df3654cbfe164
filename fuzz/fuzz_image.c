/*
 * fuzz_image.c — libFuzzer target for image decoding (JPEG, PNG, EXIF/XMP orientation, DICOM).
 *
 * Any input must either decode or fail with a message; with the sanitizers this finds
 * out-of-bounds reads in the marker/chunk/EXIF parsing and in DICOM's element and sequence
 * walk, leaks on error paths and crashes in the libjpeg/libpng error handling. Odd-sized
 * inputs are decoded with a DICOM window override derived from the input, so the windowing
 * sees arbitrary centers and widths. A decoded image is also run through a small resize so
 * the resampler sees odd shapes. Seeds: fuzz/seeds/fuzz_image/ (dicom_*.dcm from
 * tools/fixtures/make_dicom_fixtures.py).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "data/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mmt_image img = {0};
    mmt_dicom_options window = {1, (double)(size % 4096) - 1024.5, 1 + (double)(size % 3001) / 3};
    mmt_status status = mmt_image_decode_memory_ex(data, size, "fuzz input", size % 2 ? &window : NULL, &img);
    if (status != MMT_OK) {
        /* A failure always leaves a message and no pixels. */
        if (img.pixels != NULL || mmt_last_error()[0] == '\0') __builtin_trap();
        return 0;
    }
    if (img.width <= 0 || img.height <= 0 || img.pixels == NULL) __builtin_trap();
    /* Keep big inputs cheap: resize only small images, to a size derived from the input. */
    if (img.width * img.height <= 256 * 256) {
        mmt_image small = {0};
        int64_t w = 1 + (int64_t)(size % 61), h = 1 + (int64_t)(size % 47);
        if (mmt_image_resize(&img, w, h, (mmt_resample)(1 + size % 5), &small) == MMT_OK)
            mmt_image_free(&small);
    }
    mmt_image_free(&img);
    return 0;
}
