/*
 * dicom_write.h — writing a greyscale image as a DICOM Part 10 file: the uncompressed little
 * endian encodings that src/data/image_dicom.c reads (explicit or implicit VR), 16 bits
 * allocated, MONOCHROME1 or MONOCHROME2, unsigned or signed stored values, an optional
 * modality rescale and VOI window. Used by `mmtune synth --domain xray` to make study files
 * with the variety real archives have (docs/data.md).
 *
 * The file holds a 128-byte zero preamble, "DICM", the meta group (explicit VR, with its
 * group length) and the data set elements in ascending tag order, every value padded to an
 * even length (UI with NUL, text with a space). No dates or random UIDs: the same arguments
 * give the same bytes. UIDs are 2.25.N (PS3.5 B.2, an integer UID) with N made from
 * `uid_seed`.
 *
 * Usage:
 *     mmt_dicom_write_spec w;
 *     mmt_dicom_write_spec_default(&w);
 *     w.rows = w.cols = 64; w.pixels = stored;   // stored values, rows x cols, row-major
 *     w.has_window = 1; w.window_center = 2048; w.window_width = 4096;
 *     MMT_TRY(mmt_dicom_write_file("study.dcm", &w));
 */
#ifndef MMT_DATA_DICOM_WRITE_H
#define MMT_DATA_DICOM_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct mmt_dicom_write_spec {
    int64_t rows, cols;         /* 1..65535 each */
    const uint16_t *pixels;     /* rows x cols stored values (two's complement when signed) */
    int explicit_vr;            /* 1: 1.2.840.10008.1.2.1, 0: 1.2.840.10008.1.2 */
    int monochrome1;            /* 1: MONOCHROME1 (high values dark), 0: MONOCHROME2 */
    int bits_stored;            /* 1..16; High Bit is bits_stored - 1 */
    int is_signed;              /* Pixel Representation */
    double slope, intercept;    /* Rescale Slope / Intercept (written when not 1 / 0) */
    int has_window;
    double window_center, window_width;
    const char *modality;       /* e.g. "DX", "CR", "CT"; at most 16 characters */
    const char *patient_id;     /* at most 64 characters; also the patient name */
    const char *description;    /* Study Description, at most 64 characters, or NULL */
    uint64_t uid_seed;          /* study, series and instance UIDs derive from it */
} mmt_dicom_write_spec;

/* Explicit VR, MONOCHROME2, 16 unsigned bits, no rescale, no window, modality "OT". */
void mmt_dicom_write_spec_default(mmt_dicom_write_spec *w);

/* The file's bytes: *data (mmt_malloc'd, owned by the caller), *len. Checks the spec (sizes,
 * stored values within bits_stored, text lengths and characters). */
mmt_status mmt_dicom_encode(const mmt_dicom_write_spec *w, uint8_t **data, size_t *len);
/* Encode + atomic write (core/file.h). Errors name the path. */
mmt_status mmt_dicom_write_file(const char *path, const mmt_dicom_write_spec *w);

#endif
