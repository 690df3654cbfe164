/*
 * dicom_write.c — a greyscale image as a DICOM Part 10 file (dicom_write.h).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/rng.h"
#include "data/dicom_write.h"

#define TS_EXPLICIT "1.2.840.10008.1.2.1"
#define TS_IMPLICIT "1.2.840.10008.1.2"

typedef struct dbuf {
    uint8_t *data;
    size_t len, cap;
    int failed;
} dbuf;

static void put(dbuf *b, const void *v, size_t n) {
    if (b->failed) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = mmt_realloc(b->data, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, v, n);
    b->len += n;
}

static void put16(dbuf *b, uint32_t v) { put(b, (uint8_t[]){(uint8_t)v, (uint8_t)(v >> 8)}, 2); }
static void put32(dbuf *b, uint32_t v) {
    put(b, (uint8_t[]){(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)}, 4);
}

/* One element; value already even-length. OB/OW carry a 4-byte length in explicit VR. */
static void element(dbuf *b, int explicit_vr, uint16_t g, uint16_t e, const char *vr, const void *v, uint32_t n) {
    put16(b, g);
    put16(b, e);
    if (explicit_vr) {
        put(b, vr, 2);
        if (!strcmp(vr, "OB") || !strcmp(vr, "OW")) {
            put16(b, 0);
            put32(b, n);
        } else put16(b, n);
    } else put32(b, n);
    put(b, v, n);
}

static void el_text(dbuf *b, int explicit_vr, uint16_t g, uint16_t e, const char *vr, const char *s) {
    char v[80];
    size_t n = strlen(s);
    memcpy(v, s, n);
    if (n & 1) v[n++] = strcmp(vr, "UI") ? ' ' : '\0';
    element(b, explicit_vr, g, e, vr, v, (uint32_t)n);
}

static void el_us(dbuf *b, int explicit_vr, uint16_t e, int value) {
    uint8_t v[2] = {(uint8_t)value, (uint8_t)(value >> 8)};
    element(b, explicit_vr, 0x0028, e, "US", v, 2);
}

/* A Decimal String (at most 16 characters): the fewest significant digits that fit. */
static void el_ds(dbuf *b, int explicit_vr, uint16_t e, double x) {
    char s[40];
    for (int digits = 12; digits >= 1; digits--) {
        snprintf(s, sizeof s, "%.*g", digits, x);
        if (strlen(s) <= 16) break;
    }
    el_text(b, explicit_vr, 0x0028, e, "DS", s);
}

static void uid(char *out, size_t cap, uint64_t seed, uint64_t kind) {
    snprintf(out, cap, "2.25.%llu", (unsigned long long)mmt_splitmix64_mix(seed * 8 + kind));
}

static const char *sop_class(const char *modality) {
    if (!strcmp(modality, "CR")) return "1.2.840.10008.5.1.4.1.1.1";
    if (!strcmp(modality, "DX")) return "1.2.840.10008.5.1.4.1.1.1.1";
    if (!strcmp(modality, "CT")) return "1.2.840.10008.5.1.4.1.1.2";
    if (!strcmp(modality, "MR")) return "1.2.840.10008.5.1.4.1.1.4";
    return "1.2.840.10008.5.1.4.1.1.7"; /* Secondary Capture */
}

void mmt_dicom_write_spec_default(mmt_dicom_write_spec *w) {
    memset(w, 0, sizeof *w);
    w->explicit_vr = 1;
    w->bits_stored = 16;
    w->slope = 1;
    w->modality = "OT";
    w->patient_id = "ANONYMOUS";
}

/* Text for a CS/LO/PN value: printable ASCII without backslash, at most `max` characters. */
static mmt_status check_text(const char *what, const char *s, size_t max) {
    size_t n = strlen(s);
    if (n > max) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "dicom write: %s '%s' is longer than %zu characters", what, s, max);
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '\\')
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "dicom write: %s has a character DICOM text cannot hold", what);
    return MMT_OK;
}

static mmt_status check_spec(const mmt_dicom_write_spec *w) {
    if (w->rows < 1 || w->rows > 65535 || w->cols < 1 || w->cols > 65535)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "dicom write: %lld x %lld pixels is outside 1..65535 a side",
                        (long long)w->rows, (long long)w->cols);
    if (!w->pixels) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "dicom write: no pixels");
    if (w->bits_stored < 1 || w->bits_stored > 16)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "dicom write: bits stored %d is outside 1..16", w->bits_stored);
    if (!isfinite(w->slope) || w->slope == 0 || !isfinite(w->intercept))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "dicom write: rescale slope %g / intercept %g", w->slope, w->intercept);
    if (w->has_window && (!isfinite(w->window_center) || !isfinite(w->window_width) || w->window_width < 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "dicom write: window %g,%g (the width must be at least 1)",
                        w->window_center, w->window_width);
    MMT_TRY(check_text("modality", w->modality ? w->modality : "", 16));
    MMT_TRY(check_text("patient id", w->patient_id ? w->patient_id : "", 64));
    if (w->description) MMT_TRY(check_text("study description", w->description, 64));
    /* the bits above bits_stored must be the sign extension (signed) or zero (unsigned) */
    uint16_t high = w->bits_stored == 16 ? 0 : (uint16_t)(0xFFFFu << w->bits_stored);
    int64_t n = w->rows * w->cols;
    for (int64_t i = 0; i < n; i++) {
        uint16_t v = w->pixels[i], top = (uint16_t)(v & high);
        int negative = w->is_signed && w->bits_stored < 16 && (v >> (w->bits_stored - 1) & 1);
        if (top != (negative ? high : 0))
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "dicom write: pixel %lld (%u) does not fit %d %s bits",
                            (long long)i, (unsigned)v, w->bits_stored, w->is_signed ? "signed" : "unsigned");
    }
    return MMT_OK;
}

mmt_status mmt_dicom_encode(const mmt_dicom_write_spec *w, uint8_t **data, size_t *len) {
    *data = NULL;
    *len = 0;
    MMT_TRY(check_spec(w));
    const char *modality = w->modality ? w->modality : "", *sop = sop_class(modality);
    const char *ts = w->explicit_vr ? TS_EXPLICIT : TS_IMPLICIT;
    char instance[64], series[64], study[64], impl[64];
    uid(instance, sizeof instance, w->uid_seed, 1);
    uid(series, sizeof series, w->uid_seed, 2);
    uid(study, sizeof study, w->uid_seed, 3);
    uid(impl, sizeof impl, 0x6d6d74756e65ull /* "mmtune" */, 0);

    /* the meta group without its group length, to measure it */
    dbuf meta = {0}, b = {0};
    element(&meta, 1, 0x0002, 0x0001, "OB", (uint8_t[]){0, 1}, 2);
    el_text(&meta, 1, 0x0002, 0x0002, "UI", sop);
    el_text(&meta, 1, 0x0002, 0x0003, "UI", instance);
    el_text(&meta, 1, 0x0002, 0x0010, "UI", ts);
    el_text(&meta, 1, 0x0002, 0x0012, "UI", impl);
    el_text(&meta, 1, 0x0002, 0x0013, "SH", "MMTUNE");

    static const uint8_t preamble[128];
    put(&b, preamble, sizeof preamble);
    put(&b, "DICM", 4);
    uint8_t group_len[4] = {(uint8_t)meta.len, (uint8_t)(meta.len >> 8), (uint8_t)(meta.len >> 16),
                            (uint8_t)(meta.len >> 24)};
    element(&b, 1, 0x0002, 0x0000, "UL", group_len, 4);
    put(&b, meta.data, meta.len);
    mmt_free(meta.data);
    int failed = meta.failed;

    int x = w->explicit_vr;
    el_text(&b, x, 0x0008, 0x0016, "UI", sop);
    el_text(&b, x, 0x0008, 0x0018, "UI", instance);
    el_text(&b, x, 0x0008, 0x0060, "CS", modality);
    if (w->description) el_text(&b, x, 0x0008, 0x1030, "LO", w->description);
    el_text(&b, x, 0x0010, 0x0010, "PN", w->patient_id ? w->patient_id : "");
    el_text(&b, x, 0x0010, 0x0020, "LO", w->patient_id ? w->patient_id : "");
    el_text(&b, x, 0x0020, 0x000D, "UI", study);
    el_text(&b, x, 0x0020, 0x000E, "UI", series);
    el_us(&b, x, 0x0002, 1);
    el_text(&b, x, 0x0028, 0x0004, "CS", w->monochrome1 ? "MONOCHROME1" : "MONOCHROME2");
    el_us(&b, x, 0x0010, (int)w->rows);
    el_us(&b, x, 0x0011, (int)w->cols);
    el_us(&b, x, 0x0100, 16);
    el_us(&b, x, 0x0101, w->bits_stored);
    el_us(&b, x, 0x0102, w->bits_stored - 1);
    el_us(&b, x, 0x0103, w->is_signed ? 1 : 0);
    if (w->has_window) {
        el_ds(&b, x, 0x1050, w->window_center);
        el_ds(&b, x, 0x1051, w->window_width);
    }
    if (w->slope != 1 || w->intercept != 0) {
        el_ds(&b, x, 0x1052, w->intercept);
        el_ds(&b, x, 0x1053, w->slope);
    }
    /* Pixel Data: little endian 16-bit words, an even length by construction */
    int64_t n = w->rows * w->cols;
    uint64_t bytes = (uint64_t)n * 2;
    if (bytes > 0xFFFFFFF0u) {
        mmt_free(b.data);
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "dicom write: %lld pixels do not fit one Pixel Data element", (long long)n);
    }
    put16(&b, 0x7FE0);
    put16(&b, 0x0010);
    if (x) {
        put(&b, "OW", 2);
        put16(&b, 0);
    }
    put32(&b, (uint32_t)bytes);
    for (int64_t i = 0; i < n; i++) put16(&b, w->pixels[i]);

    if (failed || b.failed) {
        mmt_free(b.data);
        return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "dicom write: out of memory for %lld pixels", (long long)n);
    }
    *data = b.data;
    *len = b.len;
    return MMT_OK;
}

mmt_status mmt_dicom_write_file(const char *path, const mmt_dicom_write_spec *w) {
    uint8_t *data;
    size_t len;
    mmt_status s = mmt_dicom_encode(w, &data, &len);
    if (s != MMT_OK) return mmt_error_prefix(s, "%s: ", path);
    s = mmt_file_write_atomic(path, data, len);
    mmt_free(data);
    return s;
}
