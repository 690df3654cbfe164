/*
 * image_dicom.c — DICOM images (PS3.10 files, and bare data sets without the preamble) into
 * RGB8, rendered the way DCMTK's dcm2pnm renders them.
 *
 * What is read: the file meta group (always explicit VR little endian) for the transfer
 * syntax, then the data set in explicit VR little endian (1.2.840.10008.1.2.1) or implicit VR
 * little endian (1.2.840.10008.1.2); every other transfer syntax (JPEG, JPEG-LS, JPEG 2000,
 * RLE, deflate, big endian, video) is refused with its UID and name. Only top-level elements
 * of group 0028 and the Pixel Data are looked at; sequences are skipped whole, including
 * undefined-length ones (items and delimiters walked, nested to MAX_DEPTH), so the Rows or
 * Pixel Data of an icon inside a sequence are never taken for the image's.
 *
 * Rendering (docs/data.md "DICOM"), first frame only:
 *   1. stored value: Bits Allocated 8 or 16 (little endian), the Bits Stored bits ending at
 *      High Bit, sign-extended when Pixel Representation is 1;
 *   2. modality LUT: Rescale Slope/Intercept, the result truncated toward zero to an integer
 *      (DCMTK keeps the rescaled image in an integer type: dimoipxt.h rescale());
 *   3. VOI LUT: the linear function of PS3.3 C.11.2.1.2 with, in this order, the caller's
 *      window (mmt_dicom_options), the file's first Window Center/Width (width >= 1), or a
 *      min-max window over the rescaled first frame, center (min + max + 1) / 2 and width
 *      max - min + 1 (DCMTK's getMinMaxWindow, dcm2pnm +Wm);
 *   4. MONOCHROME1 is inverted (DCMTK swaps the output range: 255 at the low end);
 *   5. the grey level is written to R, G and B.
 * Step 3 evaluates the window with DCMTK's own expression (dimoopxt.h, window(), "VOI LINEAR
 * #8": offset + value * gradient, truncated) so the output equals dcm2pnm's byte for byte;
 * the straightforward ((x - (c - 0.5)) / (w - 1) + 0.5) * 255 can differ by one grey level
 * where the two roundings fall on either side of an integer. This file is built without FMA
 * contraction (the baseline x86-64 flags have none), which the equality relies on.
 * RGB (Samples per Pixel 3, 8 bits, Planar Configuration 0 or 1) is copied as it is.
 *
 * Everything is bounds-checked against the buffer; a bad file is one line naming `what`,
 * the element and the byte offset. The only allocation is the output image.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image_internal.h"

#define DICOM_UNDEFINED 0xFFFFFFFFu
#define MAX_DEPTH 32 /* nested sequences; real files stay below 10 */

typedef struct dicom_reader {
    const uint8_t *p;
    size_t len, at;
    const char *what;
} dicom_reader;

typedef struct dicom_element {
    uint16_t group, element;
    char vr[3];       /* "" in implicit VR and for item/delimiter tags */
    uint32_t length;  /* DICOM_UNDEFINED for undefined length */
    size_t header_at; /* where the element starts (for messages) */
} dicom_element;

/* What the image needs from the data set (absent values are -1 / NaN / ""). */
typedef struct dicom_info {
    int64_t rows, columns, samples, planar, bits_allocated, bits_stored, high_bit, pixel_rep;
    char photometric[17];
    double window_center, window_width, slope, intercept;
    int has_window, has_modality_lut;
    const uint8_t *pixels;
    size_t pixel_len;
} dicom_info;

static uint16_t read_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t read_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* PS3.5 6.2: every VR; those in long_vrs have 2 reserved bytes and a 32-bit length. */
static int vr_known(const uint8_t *v) {
    static const char vrs[] = "AEASATCSDADSDTFDFLISLOLTOBODOFOLOVOWPNSHSLSQSSSTSVTMUCUIULUNURUSUTUV";
    for (size_t i = 0; i + 1 < sizeof vrs; i += 2)
        if (vrs[i] == (char)v[0] && vrs[i + 1] == (char)v[1]) return 1;
    return 0;
}
static int vr_long(const char *vr) {
    static const char *long_vrs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                     "SV", "UC", "UN", "UR", "UT", "UV"};
    for (size_t i = 0; i < sizeof long_vrs / sizeof long_vrs[0]; i++)
        if (memcmp(vr, long_vrs[i], 2) == 0) return 1;
    return 0;
}

/* Reads the header of the element at r->at (and moves past it). Item and delimiter tags
 * (group FFFE) have no VR in either encoding. A defined length must fit in what is left. */
static mmt_status dicom_read_header(dicom_reader *r, int explicit_vr, dicom_element *el) {
    size_t left = r->len - r->at;
    const uint8_t *h = r->p + r->at;
    memset(el, 0, sizeof *el);
    el->header_at = r->at;
    if (left < 8)
        return mmt_fail(MMT_STATUS_BAD_FORMAT,
                        "%s: truncated DICOM: an element header at byte %zu needs 8 bytes, %zu left",
                        r->what, r->at, left);
    el->group = read_u16(h);
    el->element = read_u16(h + 2);
    size_t header = 8;
    if (el->group == 0xFFFE || !explicit_vr) {
        el->length = read_u32(h + 4);
    } else {
        if (!vr_known(h + 4))
            return mmt_fail(MMT_STATUS_BAD_FORMAT,
                            "%s: bad DICOM: element (%04X,%04X) at byte %zu has an unknown VR "
                            "(bytes 0x%02X 0x%02X)",
                            r->what, el->group, el->element, r->at, h[4], h[5]);
        el->vr[0] = (char)h[4];
        el->vr[1] = (char)h[5];
        if (vr_long(el->vr)) {
            if (left < 12)
                return mmt_fail(MMT_STATUS_BAD_FORMAT,
                                "%s: truncated DICOM: the header of (%04X,%04X) at byte %zu needs "
                                "12 bytes, %zu left",
                                r->what, el->group, el->element, r->at, left);
            el->length = read_u32(h + 8);
            header = 12;
        } else {
            el->length = read_u16(h + 6);
        }
    }
    r->at += header;
    if (el->length != DICOM_UNDEFINED && el->length > r->len - r->at)
        return mmt_fail(MMT_STATUS_BAD_FORMAT,
                        "%s: truncated DICOM: element (%04X,%04X) at byte %zu claims %lu bytes, "
                        "only %zu follow",
                        r->what, el->group, el->element, el->header_at, (unsigned long)el->length,
                        r->len - r->at);
    return MMT_OK;
}

static mmt_status dicom_skip_value(dicom_reader *r, const dicom_element *el, int explicit_vr,
                                   int depth);

/* The elements of an undefined-length item, up to its Item Delimitation (FFFE,E00D). */
static mmt_status dicom_skip_item(dicom_reader *r, int explicit_vr, int depth) {
    for (;;) {
        dicom_element el;
        MMT_TRY(dicom_read_header(r, explicit_vr, &el));
        if (el.group == 0xFFFE && el.element == 0xE00D) return MMT_OK;
        if (el.group == 0xFFFE)
            return mmt_fail(MMT_STATUS_BAD_FORMAT,
                            "%s: bad DICOM: item tag (FFFE,%04X) at byte %zu inside an item",
                            r->what, el.element, el.header_at);
        MMT_TRY(dicom_skip_value(r, &el, explicit_vr, depth));
    }
}

/* The items of an undefined-length sequence, up to its Sequence Delimitation (FFFE,E0DD). */
static mmt_status dicom_skip_sequence(dicom_reader *r, int explicit_vr, int depth) {
    if (depth > MAX_DEPTH)
        return mmt_fail(MMT_STATUS_BAD_FORMAT,
                        "%s: bad DICOM: sequences nested more than %d deep at byte %zu", r->what,
                        MAX_DEPTH, r->at);
    for (;;) {
        /* the tag first: anything but an item or the delimiter is named as such, not as a
         * length that does not fit */
        if (r->len - r->at >= 4) {
            uint16_t group = read_u16(r->p + r->at), element = read_u16(r->p + r->at + 2);
            if (group != 0xFFFE || (element != 0xE000 && element != 0xE0DD))
                return mmt_fail(MMT_STATUS_BAD_FORMAT,
                                "%s: bad DICOM: (%04X,%04X) at byte %zu inside a sequence, where "
                                "an item (FFFE,E000) or the sequence delimiter (FFFE,E0DD) belongs",
                                r->what, group, element, r->at);
        }
        dicom_element item;
        MMT_TRY(dicom_read_header(r, 0, &item));
        if (item.element == 0xE0DD) return MMT_OK;
        if (item.length == DICOM_UNDEFINED)
            MMT_TRY(dicom_skip_item(r, explicit_vr, depth + 1));
        else
            r->at += item.length;
    }
}

/* Moves past an element's value. Undefined lengths: a sequence (SQ, or any element in
 * implicit VR), or UN, whose content is implicit VR little endian (PS3.5 6.2.2 note). */
static mmt_status dicom_skip_value(dicom_reader *r, const dicom_element *el, int explicit_vr,
                                   int depth) {
    if (el->length != DICOM_UNDEFINED) {
        r->at += el->length;
        return MMT_OK;
    }
    if (!explicit_vr || strcmp(el->vr, "SQ") == 0) return dicom_skip_sequence(r, explicit_vr, depth + 1);
    if (strcmp(el->vr, "UN") == 0) return dicom_skip_sequence(r, 0, depth + 1);
    return mmt_fail(MMT_STATUS_BAD_FORMAT,
                    "%s: bad DICOM: element (%04X,%04X) at byte %zu has VR %s with an undefined "
                    "length",
                    r->what, el->group, el->element, el->header_at, el->vr);
}

/* The first value of a string element (up to the first backslash), without the padding
 * spaces and NULs. */
static void dicom_string(const uint8_t *v, uint32_t length, char *out, size_t cap) {
    size_t n = 0, i = 0;
    while (i < length && (v[i] == ' ' || v[i] == 0)) i++;
    for (; i < length && v[i] != '\\' && n + 1 < cap; i++) out[n++] = (char)v[i];
    while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == 0)) n--;
    out[n] = '\0';
}

/* A DS or IS value (the first one) as a finite number; an empty value is absent (*present 0). */
static mmt_status dicom_number(const dicom_reader *r, const dicom_element *el, const char *name,
                               double *out, int *present) {
    char text[64];
    dicom_string(r->p + r->at, el->length, text, sizeof text);
    *present = text[0] != '\0';
    if (!*present) return MMT_OK;
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || !isfinite(v))
        return mmt_fail(MMT_STATUS_BAD_FORMAT,
                        "%s: bad DICOM: %s (%04X,%04X) is \"%s\", not a number", r->what, name,
                        el->group, el->element, text);
    *out = v;
    return MMT_OK;
}

/* Records the group 0028 values the image needs (r->at is at the element's value). */
static mmt_status dicom_note(const dicom_reader *r, const dicom_element *el, dicom_info *info) {
    const uint8_t *v = r->p + r->at;
    int64_t us = el->length >= 2 ? read_u16(v) : -1; /* an empty US counts as absent */
    int present;
    switch (el->element) {
    case 0x0002: info->samples = us; break;
    case 0x0004: dicom_string(v, el->length, info->photometric, sizeof info->photometric); break;
    case 0x0006: info->planar = us; break;
    case 0x0010: info->rows = us; break;
    case 0x0011: info->columns = us; break;
    case 0x0100: info->bits_allocated = us; break;
    case 0x0101: info->bits_stored = us; break;
    case 0x0102: info->high_bit = us; break;
    case 0x0103: info->pixel_rep = us; break;
    case 0x1050: MMT_TRY(dicom_number(r, el, "Window Center", &info->window_center, &info->has_window)); break;
    case 0x1051: {
        double w = NAN;
        MMT_TRY(dicom_number(r, el, "Window Width", &w, &present));
        info->window_width = present ? w : NAN;
        break;
    }
    case 0x1052: MMT_TRY(dicom_number(r, el, "Rescale Intercept", &info->intercept, &present)); break;
    case 0x1053: MMT_TRY(dicom_number(r, el, "Rescale Slope", &info->slope, &present)); break;
    default: break;
    }
    return MMT_OK;
}

/* PS3.6 Table A-1's transfer syntaxes other than the two read here, for the refusal. */
static const char *dicom_transfer_syntax_name(const char *uid) {
    static const struct { const char *uid, *name; } names[] = {
        {"1.2.840.10008.1.2.1.98", "Encapsulated Uncompressed Explicit VR Little Endian"},
        {"1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian"},
        {"1.2.840.10008.1.2.2", "Explicit VR Big Endian"},
        {"1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)"},
        {"1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 and 4)"},
        {"1.2.840.10008.1.2.4.52", "JPEG Extended (Process 3 and 5)"},
        {"1.2.840.10008.1.2.4.53", "JPEG Spectral Selection, Non-Hierarchical (Process 6 and 8)"},
        {"1.2.840.10008.1.2.4.54", "JPEG Spectral Selection, Non-Hierarchical (Process 7 and 9)"},
        {"1.2.840.10008.1.2.4.55", "JPEG Full Progression, Non-Hierarchical (Process 10 and 12)"},
        {"1.2.840.10008.1.2.4.56", "JPEG Full Progression, Non-Hierarchical (Process 11 and 13)"},
        {"1.2.840.10008.1.2.4.57", "JPEG Lossless, Non-Hierarchical (Process 14)"},
        {"1.2.840.10008.1.2.4.58", "JPEG Lossless, Non-Hierarchical (Process 15)"},
        {"1.2.840.10008.1.2.4.59", "JPEG Extended, Hierarchical (Process 16 and 18)"},
        {"1.2.840.10008.1.2.4.60", "JPEG Extended, Hierarchical (Process 17 and 19)"},
        {"1.2.840.10008.1.2.4.61", "JPEG Spectral Selection, Hierarchical (Process 20 and 22)"},
        {"1.2.840.10008.1.2.4.62", "JPEG Spectral Selection, Hierarchical (Process 21 and 23)"},
        {"1.2.840.10008.1.2.4.63", "JPEG Full Progression, Hierarchical (Process 24 and 26)"},
        {"1.2.840.10008.1.2.4.64", "JPEG Full Progression, Hierarchical (Process 25 and 27)"},
        {"1.2.840.10008.1.2.4.65", "JPEG Lossless, Hierarchical (Process 28)"},
        {"1.2.840.10008.1.2.4.66", "JPEG Lossless, Hierarchical (Process 29)"},
        {"1.2.840.10008.1.2.4.70", "JPEG Lossless, Non-Hierarchical, First-Order Prediction "
                                   "(Process 14 [Selection Value 1])"},
        {"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless Image Compression"},
        {"1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless) Image Compression"},
        {"1.2.840.10008.1.2.4.90", "JPEG 2000 Image Compression (Lossless Only)"},
        {"1.2.840.10008.1.2.4.91", "JPEG 2000 Image Compression"},
        {"1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)"},
        {"1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component Image Compression"},
        {"1.2.840.10008.1.2.4.94", "JPIP Referenced"},
        {"1.2.840.10008.1.2.4.95", "JPIP Referenced Deflate"},
        {"1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level"},
        {"1.2.840.10008.1.2.4.100.1", "Fragmentable MPEG2 Main Profile / Main Level"},
        {"1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level"},
        {"1.2.840.10008.1.2.4.101.1", "Fragmentable MPEG2 Main Profile / High Level"},
        {"1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1"},
        {"1.2.840.10008.1.2.4.102.1", "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.1"},
        {"1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1"},
        {"1.2.840.10008.1.2.4.103.1", "Fragmentable MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1"},
        {"1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video"},
        {"1.2.840.10008.1.2.4.104.1", "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video"},
        {"1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video"},
        {"1.2.840.10008.1.2.4.105.1", "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video"},
        {"1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2"},
        {"1.2.840.10008.1.2.4.106.1", "Fragmentable MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2"},
        {"1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1"},
        {"1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile / Level 5.1"},
        {"1.2.840.10008.1.2.4.110", "JPEG XL Lossless"},
        {"1.2.840.10008.1.2.4.111", "JPEG XL JPEG Recompression"},
        {"1.2.840.10008.1.2.4.112", "JPEG XL"},
        {"1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 Image Compression (Lossless Only)"},
        {"1.2.840.10008.1.2.4.202", "High-Throughput JPEG 2000 with RPCL Options Image Compression "
                                    "(Lossless Only)"},
        {"1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000 Image Compression"},
        {"1.2.840.10008.1.2.4.204", "JPIP HTJ2K Referenced"},
        {"1.2.840.10008.1.2.4.205", "JPIP HTJ2K Referenced Deflate"},
        {"1.2.840.10008.1.2.5", "RLE Lossless"},
        {"1.2.840.10008.1.2.6.1", "RFC 2557 MIME encapsulation"},
        {"1.2.840.10008.1.2.6.2", "XML Encoding"},
        {"1.2.840.10008.1.2.7.1", "SMPTE ST 2110-20 Uncompressed Progressive Active Video"},
        {"1.2.840.10008.1.2.7.2", "SMPTE ST 2110-20 Uncompressed Interlaced Active Video"},
        {"1.2.840.10008.1.2.7.3", "SMPTE ST 2110-30 PCM Digital Audio"},
        {"1.2.840.10008.1.2.8.1", "Deflated Image Frame Compression"},
        {"1.2.840.10008.1.20", "Papyrus 3 Implicit VR Little Endian"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(uid, names[i].uid) == 0) return names[i].name;
    return NULL;
}

/* Sets *explicit_vr from a Transfer Syntax UID, or refuses the ones not read here. */
static mmt_status dicom_transfer_syntax(const char *what, const char *uid, int *explicit_vr) {
    if (strcmp(uid, "1.2.840.10008.1.2.1") == 0) {
        *explicit_vr = 1;
        return MMT_OK;
    }
    if (strcmp(uid, "1.2.840.10008.1.2") == 0) {
        *explicit_vr = 0;
        return MMT_OK;
    }
    const char *name = dicom_transfer_syntax_name(uid);
    return mmt_fail(MMT_STATUS_UNSUPPORTED,
                    "%s: DICOM transfer syntax %s (%s) is not supported; only uncompressed "
                    "little endian is read (1.2.840.10008.1.2.1 explicit VR, 1.2.840.10008.1.2 "
                    "implicit VR): decompress first, e.g. dcmdjpeg, dcmdrle or gdcmconv --raw",
                    what, uid, name ? name : "unknown transfer syntax");
}

/* Guesses the encoding of a data set from its first element: explicit when bytes 4-5 are a
 * VR (PS3.5 Annex A's note: what readers do for data sets without meta information). */
static int dicom_looks_explicit(const uint8_t *p, size_t len) {
    return len >= 6 && vr_known(p + 4);
}

int image_dicom_sniff(const uint8_t *p, size_t len) {
    if (len >= 132 && memcmp(p + 128, "DICM", 4) == 0) return 1;
    /* A bare data set (or meta group) without the preamble: its first element is in group
     * 0002 or 0008, with a VR or a 32-bit length that fits. */
    if (len < 8) return 0;
    uint16_t group = read_u16(p);
    if (group != 0x0002 && group != 0x0008) return 0;
    if (dicom_looks_explicit(p, len)) return 2;
    return read_u32(p + 4) <= len - 8 ? 2 : 0;
}

/* Reads the meta group (if any) and the data set up to the Pixel Data. */
static mmt_status dicom_parse(dicom_reader *r, dicom_info *info) {
    int part10 = r->len >= 132 && memcmp(r->p + 128, "DICM", 4) == 0;
    r->at = part10 ? 132 : 0;
    char syntax[65] = "";
    /* The meta group (0002,xxxx) is explicit VR little endian whatever the data set is. */
    while (r->len - r->at >= 8 && read_u16(r->p + r->at) == 0x0002) {
        dicom_element el;
        MMT_TRY(dicom_read_header(r, 1, &el));
        if (el.length == DICOM_UNDEFINED)
            return mmt_fail(MMT_STATUS_BAD_FORMAT,
                            "%s: bad DICOM: meta element (0002,%04X) has an undefined length",
                            r->what, el.element);
        if (el.element == 0x0010) dicom_string(r->p + r->at, el.length, syntax, sizeof syntax);
        r->at += el.length;
    }
    int explicit_vr = 1;
    if (syntax[0]) MMT_TRY(dicom_transfer_syntax(r->what, syntax, &explicit_vr));
    else explicit_vr = dicom_looks_explicit(r->p + r->at, r->len - r->at);

    while (r->at < r->len) {
        dicom_element el;
        MMT_TRY(dicom_read_header(r, explicit_vr, &el));
        if (el.group == 0xFFFE)
            return mmt_fail(MMT_STATUS_BAD_FORMAT,
                            "%s: bad DICOM: item tag (FFFE,%04X) at byte %zu outside a sequence",
                            r->what, el.element, el.header_at);
        if (el.group == 0x7FE0 && el.element == 0x0010) {
            if (el.length == DICOM_UNDEFINED)
                return mmt_fail(MMT_STATUS_BAD_FORMAT,
                                "%s: bad DICOM: Pixel Data is encapsulated (compressed) but the "
                                "transfer syntax %s is uncompressed",
                                r->what, syntax[0] ? syntax : "(none given)");
            info->pixels = r->p + r->at;
            info->pixel_len = el.length;
            return MMT_OK;
        }
        if (el.group == 0x0028 && el.length != DICOM_UNDEFINED) MMT_TRY(dicom_note(r, &el, info));
        if (el.group == 0x0028 && el.element == 0x3000) info->has_modality_lut = 1;
        MMT_TRY(dicom_skip_value(r, &el, explicit_vr, 0));
    }
    return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: DICOM file has no Pixel Data (7FE0,0010)",
                    r->what);
}

/* Checks the pixel description and fills in the defaults DCMTK uses for absent values. */
static mmt_status dicom_check(const char *what, dicom_info *d) {
    if (d->rows < 0 || d->columns < 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: DICOM image has no %s", what,
                        d->rows < 0 ? "Rows (0028,0010)" : "Columns (0028,0011)");
    MMT_TRY(image_check_dimensions(d->columns, d->rows, what, "DICOM"));
    if (d->bits_allocated < 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: DICOM image has no Bits Allocated (0028,0100)",
                        what);
    if (d->bits_allocated != 8 && d->bits_allocated != 16)
        return mmt_fail(MMT_STATUS_UNSUPPORTED,
                        "%s: DICOM Bits Allocated (0028,0100) %lld is not supported (8 or 16)", what,
                        (long long)d->bits_allocated);
    if (d->bits_stored < 0) d->bits_stored = d->bits_allocated;
    if (d->high_bit < 0) d->high_bit = d->bits_stored - 1;
    if (d->bits_stored < 1 || d->bits_stored > d->bits_allocated || d->high_bit >= d->bits_allocated ||
        d->high_bit + 1 < d->bits_stored)
        return mmt_fail(MMT_STATUS_BAD_FORMAT,
                        "%s: bad DICOM: Bits Stored %lld with High Bit %lld does not fit Bits "
                        "Allocated %lld",
                        what, (long long)d->bits_stored, (long long)d->high_bit,
                        (long long)d->bits_allocated);
    if (d->pixel_rep < 0) d->pixel_rep = 0;
    if (d->pixel_rep > 1)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: bad DICOM: Pixel Representation %lld (0 or 1)",
                        what, (long long)d->pixel_rep);
    if (d->samples < 0) d->samples = 1;
    if (d->planar < 0) d->planar = 0;
    int mono = strcmp(d->photometric, "MONOCHROME1") == 0 || strcmp(d->photometric, "MONOCHROME2") == 0;
    int rgb = strcmp(d->photometric, "RGB") == 0;
    if (!d->photometric[0])
        return mmt_fail(MMT_STATUS_BAD_FORMAT,
                        "%s: DICOM image has no Photometric Interpretation (0028,0004)", what);
    if (!mono && !rgb)
        return mmt_fail(MMT_STATUS_UNSUPPORTED,
                        "%s: DICOM Photometric Interpretation %s is not supported (MONOCHROME1, "
                        "MONOCHROME2, RGB)",
                        what, d->photometric);
    if (d->samples != (mono ? 1 : 3))
        return mmt_fail(MMT_STATUS_BAD_FORMAT,
                        "%s: bad DICOM: %s with Samples per Pixel %lld", what, d->photometric,
                        (long long)d->samples);
    if (rgb && (d->bits_allocated != 8 || d->bits_stored != 8 || d->pixel_rep != 0))
        return mmt_fail(MMT_STATUS_UNSUPPORTED,
                        "%s: DICOM RGB with %lld of %lld bits%s is not supported (8-bit unsigned "
                        "only)",
                        what, (long long)d->bits_stored, (long long)d->bits_allocated,
                        d->pixel_rep ? " signed" : "");
    if (rgb && d->planar > 1)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: bad DICOM: Planar Configuration %lld (0 or 1)",
                        what, (long long)d->planar);
    if (mono && d->has_modality_lut)
        return mmt_fail(MMT_STATUS_UNSUPPORTED,
                        "%s: DICOM Modality LUT Sequence (0028,3000) is not supported (only Rescale "
                        "Slope/Intercept)",
                        what);
    size_t frame = (size_t)(d->rows * d->columns * d->samples * (d->bits_allocated / 8));
    if (d->pixel_len < frame)
        return mmt_fail(MMT_STATUS_BAD_FORMAT,
                        "%s: truncated DICOM: Pixel Data holds %zu bytes, one %lld x %lld frame of "
                        "%lld-bit samples needs %zu",
                        what, d->pixel_len, (long long)d->columns, (long long)d->rows,
                        (long long)d->bits_allocated, frame);
    return MMT_OK;
}

/* Step 1 and 2 of the rendering for pixel i: the stored value, then rescaled and truncated
 * as DCMTK's rescale() does (a double cast to its integer intermediate type). */
static double dicom_modality_value(const dicom_info *d, size_t i) {
    uint32_t raw = d->bits_allocated == 8 ? d->pixels[i] : read_u16(d->pixels + 2 * i);
    int shift = (int)(d->high_bit + 1 - d->bits_stored);
    uint32_t mask = (uint32_t)((1u << d->bits_stored) - 1);
    int64_t v = (int64_t)((raw >> shift) & mask);
    if (d->pixel_rep && (v >> (d->bits_stored - 1)) & 1) v -= (int64_t)1 << d->bits_stored;
    if (d->slope == 1.0 && d->intercept == 0.0) return (double)v;
    return trunc((double)v * d->slope + d->intercept);
}

static void dicom_render_mono(const dicom_info *d, const mmt_dicom_options *opts, mmt_image *out) {
    size_t n = (size_t)(d->rows * d->columns);
    double center, width;
    if (opts && opts->use_window) {
        center = opts->window_center;
        width = opts->window_width;
    } else if (d->has_window && isfinite(d->window_width) && d->window_width >= 1) {
        center = d->window_center;
        width = d->window_width;
    } else { /* DCMTK getMinMaxWindow over the (rescaled) first frame */
        double lo = dicom_modality_value(d, 0), hi = lo;
        for (size_t i = 1; i < n; i++) {
            double v = dicom_modality_value(d, i);
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        center = (lo + hi + 1) / 2;
        width = hi - lo + 1;
    }
    /* DCMTK dimoopxt.h window(), no presentation LUT, no display function; MONOCHROME1 swaps
     * the output range (low 255, high 0). */
    int inverse = strcmp(d->photometric, "MONOCHROME1") == 0;
    double low = inverse ? 255 : 0, high = inverse ? 0 : 255;
    double width_1 = width - 1;
    double left = center - 0.5 - width_1 / 2, right = center - 0.5 + width_1 / 2;
    double outrange = high - low;
    double offset = width_1 == 0 ? 0 : high - ((center - 0.5) / width_1 + 0.5) * outrange;
    double gradient = width_1 == 0 ? 0 : outrange / width_1;
    for (size_t i = 0; i < n; i++) {
        double v = dicom_modality_value(d, i), g;
        if (v <= left) g = low;
        else if (v > right) g = high;
        else g = offset + v * gradient;
        if (!(g >= 0)) g = 0; /* rounding just below an end; NaN cannot occur but is kept out */
        if (g > 255) g = 255;
        uint8_t grey = (uint8_t)g;
        out->pixels[3 * i] = out->pixels[3 * i + 1] = out->pixels[3 * i + 2] = grey;
    }
}

static void dicom_render_rgb(const dicom_info *d, mmt_image *out) {
    size_t n = (size_t)(d->rows * d->columns);
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++)
            out->pixels[3 * i + (size_t)c] =
                d->planar ? d->pixels[(size_t)c * n + i] : d->pixels[3 * i + (size_t)c];
}

mmt_status image_decode_dicom(const uint8_t *data, size_t len, const char *what,
                              const mmt_dicom_options *opts, mmt_image *out) {
    memset(out, 0, sizeof *out);
    if (opts && opts->use_window && !(isfinite(opts->window_center) && isfinite(opts->window_width) &&
                                      opts->window_width >= 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "%s: DICOM window override center %g width %g: both must be finite and the "
                        "width at least 1",
                        what, opts->window_center, opts->window_width);
    dicom_reader r = {data, len, 0, what};
    dicom_info info = {.rows = -1, .columns = -1, .samples = -1, .planar = -1, .bits_allocated = -1,
                       .bits_stored = -1, .high_bit = -1, .pixel_rep = -1, .window_center = NAN,
                       .window_width = NAN, .slope = 1.0, .intercept = 0.0};
    MMT_TRY(dicom_parse(&r, &info));
    MMT_TRY(dicom_check(what, &info));
    mmt_status s = mmt_image_alloc(info.columns, info.rows, out);
    if (s != MMT_OK) return mmt_error_prefix(s, "%s: ", what);
    if (info.samples == 3) dicom_render_rgb(&info, out);
    else dicom_render_mono(&info, opts, out);
    return MMT_OK;
}
