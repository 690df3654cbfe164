/*
 * test_dicom.c — DICOM decoding (src/data/image_dicom.c) against DCMTK's dcm2pnm.
 *
 * Reference: tests/fixtures/dicom/manifest.txt (tools/fixtures/make_dicom_fixtures.py): each
 * file rendered by dcm2pnm 3.6.7 with the options that state mmtune's rule (+Wi 1 for the
 * file's window, +Wm for min-max, +Ww C W for an override; -O, first frame).
 * Tolerance: exact. Every grey level (and RGB byte) must equal dcm2pnm's, for every fixture
 * and photometric case. Exactness is possible because the decoder evaluates the window with
 * DCMTK's own expression and truncates rescaled values as DCMTK does; the textbook
 * expression with rounding would be off by one grey level in up to half of the pixels.
 *
 * A loaded CLIP or GIT model carries a window override to its image-file path (what the
 * CLI's `--window` sets). Then files built here byte by byte: hand-computed windows;
 * refusals (compressed transfer syntaxes by UID and name, photometric interpretations, bit
 * depths, Modality LUT Sequence);
 * malformed structure (lengths past the end, unknown VRs, undefined lengths where none may
 * be, item tags out of place, unterminated and too deeply nested sequences, absurd sizes);
 * every prefix of a few files, random byte flips and failed allocations. Those must fail with
 * one line naming the file and leave no pixels; run under MMT_SANITIZE (ASan/UBSan) for the
 * memory side.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/alloc.h"
#include "data/image.h"
#include "data/preprocess.h"
#include "models/clip.h"
#include "models/git.h"

/* ---------------------------------------------------------------------------------------- */
/* fixtures rendered by dcm2pnm                                                              */

static const char *dicom_path(const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/dicom/%s", MMT_FIXTURE_DIR, name);
    return path;
}

/* Reads a binary PGM (P5) or PPM (P6) with maxval 255; *channels 1 or 3. malloc'd. */
static uint8_t *read_pnm(const char *path, int64_t *w, int64_t *h, int *channels) {
    size_t len = 0;
    char *data = check_read_file(path, &len);
    if (!data) return NULL;
    int maxval = 0, used = 0;
    char magic[3] = "";
    long long ww = 0, hh = 0;
    if (sscanf(data, "%2s %lld %lld %d%n", magic, &ww, &hh, &maxval, &used) != 4 || maxval != 255 ||
        (strcmp(magic, "P5") != 0 && strcmp(magic, "P6") != 0)) {
        free(data);
        return NULL;
    }
    *channels = magic[1] == '5' ? 1 : 3;
    *w = ww;
    *h = hh;
    size_t start = (size_t)used + 1, need = (size_t)(ww * hh * *channels);
    if (start + need > len) {
        free(data);
        return NULL;
    }
    uint8_t *px = malloc(need);
    memcpy(px, data + start, need);
    free(data);
    return px;
}

/* How many pixels of img differ from the reference (grey replicated, or RGB). */
static int64_t count_differences(const mmt_image *img, const uint8_t *ref, int channels) {
    int64_t n = img->width * img->height, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *p = img->pixels + 3 * i, *r = ref + channels * i;
        int same = channels == 1 ? p[0] == r[0] && p[1] == r[0] && p[2] == r[0]
                                 : memcmp(p, r, 3) == 0;
        bad += !same;
    }
    return bad;
}

/* Every `render FILE EXPECTED [C,W]` line of SUBDIR/manifest.txt (file names relative to it). */
typedef struct manifest_counts {
    int cases, rgb, overrides;
} manifest_counts;

static void check_manifest(const char *subdir, manifest_counts *n) {
    char name[512];
    snprintf(name, sizeof name, "%s%smanifest.txt", subdir, subdir[0] ? "/" : "");
    FILE *f = fopen(dicom_path(name), "r");
    CHECK_MSG(f != NULL, "cannot open %s", dicom_path(name));
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char file[256], expected[256], window[64] = "", file_path[600], expected_path[600];
        if (line[0] == '#' || sscanf(line, "render %255s %255s %63s", file, expected, window) < 2) continue;
        snprintf(file_path, sizeof file_path, "%s%s%s", subdir, subdir[0] ? "/" : "", file);
        snprintf(expected_path, sizeof expected_path, "%s%s%s", subdir, subdir[0] ? "/" : "", expected);
        mmt_dicom_options o = {0};
        if (window[0]) CHECK_OK(mmt_dicom_window_parse(window, "manifest", &o));
        mmt_image img = {0};
        mmt_status s = mmt_image_decode_file_ex(dicom_path(file_path), window[0] ? &o : NULL, &img);
        CHECK_MSG(s == MMT_OK, "%s: %s", file, mmt_last_error());
        int64_t w = 0, h = 0;
        int channels = 0;
        uint8_t *ref = read_pnm(dicom_path(expected_path), &w, &h, &channels);
        CHECK_MSG(ref != NULL, "cannot read %s", expected);
        if (s == MMT_OK && ref) {
            CHECK_MSG(img.width == w && img.height == h, "%s: %lld x %lld, dcm2pnm %lld x %lld", file,
                      (long long)img.width, (long long)img.height, (long long)w, (long long)h);
            if (img.width == w && img.height == h) {
                int64_t bad = count_differences(&img, ref, channels);
                CHECK_MSG(bad == 0, "%s %s: %lld of %lld pixels differ from %s", file, window,
                          (long long)bad, (long long)(w * h), expected);
            }
        }
        n->rgb += channels == 3;
        n->overrides += window[0] != 0;
        n->cases++;
        free(ref);
        mmt_image_free(&img);
    }
    fclose(f);
}

static void test_fixtures_match_dcm2pnm(void) {
    manifest_counts n = {0}, xray = {0};
    check_manifest("", &n);
    CHECK_MSG(n.cases >= 20 && n.rgb >= 3 && n.overrides >= 2, "only %d cases (%d RGB, %d overrides)", n.cases,
              n.rgb, n.overrides);
    /* files mmtune wrote itself (synth --domain xray, tools/fixtures/make_xray_fixtures.py) */
    check_manifest("xray", &xray);
    CHECK_MSG(xray.cases == 4, "xray/manifest.txt: %d cases, 4 expected", xray.cases);
}

/* The in-memory entry point (what serve uses) gives what the file one gives. */
static void test_memory_equals_file(void) {
    static const char *names[] = {"MR_small.dcm", "gen_bare_implicit.dcm", "SC_rgb.dcm"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t len = 0;
        void *data = check_read_file(dicom_path(names[i]), &len);
        CHECK(data != NULL);
        if (!data) continue;
        mmt_image a = {0}, b = {0};
        CHECK_OK(mmt_image_decode_file(dicom_path(names[i]), &a));
        CHECK_OK(mmt_image_decode_memory(data, len, names[i], &b));
        CHECK(a.width == b.width && a.height == b.height && a.pixels && b.pixels &&
              memcmp(a.pixels, b.pixels, (size_t)(a.width * a.height * 3)) == 0);
        mmt_image_free(&a);
        mmt_image_free(&b);
        free(data);
    }
}

/* A loaded model carries the override (what `--window` sets): its image-file path renders
 * DICOM with it, exactly as decode + preprocess with the same options does. */
static void test_models_carry_the_override(void) {
    mmt_clip *clip = NULL;
    CHECK_OK(mmt_clip_load(MMT_SOURCE_DIR "/models/mmtune-clip-tiny", &clip));
    if (!clip) return;
    const mmt_image_processor *p = mmt_clip_processor(clip);
    size_t n = (size_t)(3 * p->crop_height * p->crop_width);
    float *own = malloc(n * sizeof(float)), *windowed = malloc(n * sizeof(float)),
          *want = malloc(n * sizeof(float));
    mmt_dicom_options o;
    CHECK_OK(mmt_dicom_window_parse("40,400", "test", &o));
    CHECK_OK(mmt_clip_image_file_pixels(clip, dicom_path("CT_small.dcm"), own));
    mmt_clip_set_dicom_options(clip, &o);
    CHECK_OK(mmt_clip_image_file_pixels(clip, dicom_path("CT_small.dcm"), windowed));
    mmt_image img = {0};
    CHECK_OK(mmt_image_decode_file_ex(dicom_path("CT_small.dcm"), &o, &img));
    CHECK_OK(mmt_image_preprocess(&img, p, want));
    CHECK(memcmp(windowed, want, n * sizeof(float)) == 0);
    CHECK(memcmp(windowed, own, n * sizeof(float)) != 0);
    mmt_clip_set_dicom_options(clip, NULL); /* back to the file's rule */
    CHECK_OK(mmt_clip_image_file_pixels(clip, dicom_path("CT_small.dcm"), windowed));
    CHECK(memcmp(windowed, own, n * sizeof(float)) == 0);
    mmt_image_free(&img);
    free(own);
    free(windowed);
    free(want);
    mmt_clip_free(clip);

    mmt_git *git = NULL;
    CHECK_OK(mmt_git_load(MMT_SOURCE_DIR "/models/mmtune-git-tiny", &git));
    if (!git) return;
    CHECK(mmt_git_dicom_options(git)->use_window == 0);
    mmt_git_set_dicom_options(git, &o);
    CHECK(mmt_git_dicom_options(git)->use_window == 1 && mmt_git_dicom_options(git)->window_width == 400);
    mmt_git_set_dicom_options(git, NULL);
    CHECK(mmt_git_dicom_options(git)->use_window == 0);
    mmt_git_free(git);
}

/* ---------------------------------------------------------------------------------------- */
/* files built byte by byte                                                                  */

typedef struct dbuf {
    uint8_t *p;
    size_t len, cap;
} dbuf;

static void put(dbuf *b, const void *v, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->len, v, n);
    b->len += n;
}
static void put16(dbuf *b, uint32_t v) { put(b, (uint8_t[]){(uint8_t)v, (uint8_t)(v >> 8)}, 2); }
static void put32(dbuf *b, uint32_t v) {
    put(b, (uint8_t[]){(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)}, 4);
}

#define UNDEFINED 0xFFFFFFFFu

/* One element header (and value, when v is given): explicit VR when vr is not NULL. */
static void element(dbuf *b, uint16_t g, uint16_t e, const char *vr, const void *v, uint32_t len) {
    put16(b, g);
    put16(b, e);
    if (vr) {
        put(b, vr, 2);
        static const char *long_vrs = "OBODOFOLOVOWSQSVUCUNURUTUV";
        int is_long = 0;
        for (const char *l = long_vrs; *l; l += 2) is_long |= l[0] == vr[0] && l[1] == vr[1];
        if (is_long) {
            put16(b, 0);
            put32(b, len);
        } else {
            put16(b, len);
        }
    } else {
        put32(b, len);
    }
    if (v && len != UNDEFINED) put(b, v, len);
}

static void el_us(dbuf *b, int explicit_vr, uint16_t e, int value) {
    if (value < 0) return; /* absent */
    uint8_t v[2] = {(uint8_t)value, (uint8_t)(value >> 8)};
    element(b, 0x0028, e, explicit_vr ? "US" : NULL, v, 2);
}

/* A string value padded to even length (UI with NUL, others with a space). */
static void el_str(dbuf *b, int explicit_vr, uint16_t g, uint16_t e, const char *vr, const char *s) {
    if (!s) return;
    char v[256];
    size_t n = strlen(s);
    memcpy(v, s, n);
    if (n % 2) v[n++] = strcmp(vr, "UI") == 0 ? '\0' : ' ';
    element(b, g, e, explicit_vr ? vr : NULL, v, (uint32_t)n);
}

/* What a built file holds; -1 / NULL leave an element out. */
typedef struct spec {
    const char *transfer_syntax; /* NULL: a bare data set (no preamble, no meta group) */
    int explicit_vr;
    int rows, columns, samples, bits_allocated, bits_stored, high_bit, pixel_rep, planar;
    const char *photometric, *window_center, *window_width, *slope, *intercept;
    int modality_lut;                         /* a (0028,3000) sequence */
    void (*extra)(dbuf *b, int explicit_vr); /* elements written before the Pixel Data */
    int64_t pixel_bytes;                      /* -1: one frame; -2: undefined length */
    const uint8_t *pixels;                    /* NULL: a ramp */
} spec;

static spec spec_default(void) {
    spec s = {"1.2.840.10008.1.2.1", 1, 4, 4, 1, 16, 12, 11, 0, -1,
              "MONOCHROME2", NULL, NULL, NULL, NULL, 0, NULL, -1, NULL};
    return s;
}

static void build(dbuf *b, const spec *s) {
    b->len = 0;
    int x = s->explicit_vr;
    if (s->transfer_syntax) {
        uint8_t preamble[128] = {0};
        put(b, preamble, 128);
        put(b, "DICM", 4);
        el_str(b, 1, 0x0002, 0x0001, "OB", "\1");
        el_str(b, 1, 0x0002, 0x0010, "UI", s->transfer_syntax);
    }
    el_str(b, x, 0x0008, 0x0060, "CS", "OT");
    el_us(b, x, 0x0002, s->samples);
    el_str(b, x, 0x0028, 0x0004, "CS", s->photometric);
    el_us(b, x, 0x0006, s->planar);
    el_us(b, x, 0x0010, s->rows);
    el_us(b, x, 0x0011, s->columns);
    el_us(b, x, 0x0100, s->bits_allocated);
    el_us(b, x, 0x0101, s->bits_stored);
    el_us(b, x, 0x0102, s->high_bit);
    el_us(b, x, 0x0103, s->pixel_rep);
    el_str(b, x, 0x0028, 0x1050, "DS", s->window_center);
    el_str(b, x, 0x0028, 0x1051, "DS", s->window_width);
    el_str(b, x, 0x0028, 0x1052, "DS", s->intercept);
    el_str(b, x, 0x0028, 0x1053, "DS", s->slope);
    if (s->modality_lut) {
        element(b, 0x0028, 0x3000, x ? "SQ" : NULL, NULL, UNDEFINED);
        element(b, 0xFFFE, 0xE0DD, NULL, NULL, 0);
    }
    if (s->extra) s->extra(b, x);
    int64_t bytes = s->pixel_bytes;
    if (bytes == -1) {
        int samples = s->samples < 0 ? 1 : s->samples;
        bytes = (int64_t)(s->rows < 0 ? 0 : s->rows) * (s->columns < 0 ? 0 : s->columns) * samples *
                (s->bits_allocated / 8);
    }
    if (bytes == -2) {
        element(b, 0x7FE0, 0x0010, x ? "OB" : NULL, NULL, UNDEFINED);
        element(b, 0xFFFE, 0xE000, NULL, NULL, 0);
        element(b, 0xFFFE, 0xE0DD, NULL, NULL, 0);
        return;
    }
    element(b, 0x7FE0, 0x0010, x ? "OW" : NULL, NULL, (uint32_t)bytes);
    for (int64_t i = 0; i < bytes; i++) {
        uint8_t v = s->pixels ? s->pixels[i] : (uint8_t)(i * 37 + 11);
        put(b, &v, 1);
    }
}

static mmt_status decode_spec(const spec *s, const mmt_dicom_options *o, mmt_image *img) {
    dbuf b = {0};
    build(&b, s);
    mmt_clear_error();
    mmt_status st = mmt_image_decode_memory_ex(b.p, b.len, "built.dcm", o, img);
    free(b.p);
    return st;
}

/* expect a failure with `status`, a message naming the file and containing needle, one line */
static void expect_failure(const spec *s, mmt_status status, const char *needle) {
    mmt_image img = {0};
    mmt_status st = decode_spec(s, NULL, &img);
    const char *msg = mmt_last_error();
    CHECK_MSG(st == status && strstr(msg, needle) && strstr(msg, "built.dcm") && !strchr(msg, '\n'),
              "got %s \"%s\", want %s containing \"%s\"", mmt_status_name(st), msg,
              mmt_status_name(status), needle);
    CHECK(img.pixels == NULL);
    mmt_image_free(&img);
}

/* PS3.3 C.11.2.1.2 by hand: window 128/256 maps 0..255 onto itself; MONOCHROME1 inverts. */
static void test_hand_computed_window(void) {
    static const uint8_t px[4] = {0, 100, 200, 255};
    for (int mono1 = 0; mono1 < 2; mono1++) {
        for (int bare = 0; bare < 2; bare++) {
            spec s = spec_default();
            s.transfer_syntax = bare ? NULL : "1.2.840.10008.1.2";
            s.explicit_vr = 0;
            s.rows = 2, s.columns = 2, s.bits_allocated = 8, s.bits_stored = 8, s.high_bit = 7;
            s.photometric = mono1 ? "MONOCHROME1" : "MONOCHROME2";
            s.window_center = "128";
            s.window_width = "256\\10";
            s.pixels = px;
            mmt_image img = {0};
            CHECK_OK(decode_spec(&s, NULL, &img));
            for (int i = 0; i < 4 && img.pixels; i++) {
                int want = mono1 ? 255 - px[i] : px[i];
                CHECK_MSG(img.pixels[3 * i] == want && img.pixels[3 * i + 1] == want &&
                              img.pixels[3 * i + 2] == want,
                          "mono1 %d bare %d pixel %d: %d, want %d", mono1, bare, i, img.pixels[3 * i], want);
            }
            mmt_image_free(&img);
        }
    }
    /* The override replaces the file's window: 0..255 at center 64, width 128 saturates 200. */
    spec s = spec_default();
    s.rows = 2, s.columns = 2, s.bits_allocated = 8, s.bits_stored = 8, s.high_bit = 7;
    s.window_center = "128", s.window_width = "256", s.pixels = px;
    mmt_dicom_options o;
    CHECK_OK(mmt_dicom_window_parse("64,128", "--window", &o));
    mmt_image img = {0};
    CHECK_OK(decode_spec(&s, &o, &img));
    CHECK(img.pixels && img.pixels[0] == 0 && img.pixels[6] == 255 && img.pixels[9] == 255);
    mmt_image_free(&img);
    o.window_width = 0.5; /* set directly, past the parser */
    CHECK_FAILS(decode_spec(&s, &o, &img), MMT_STATUS_INVALID_ARGUMENT, "width at least 1");
}

static void test_window_parse(void) {
    mmt_dicom_options o;
    CHECK_OK(mmt_dicom_window_parse("40,400", "--window", &o));
    CHECK(o.use_window == 1 && o.window_center == 40 && o.window_width == 400);
    CHECK_OK(mmt_dicom_window_parse("-600,1500", "--window", &o));
    CHECK(o.window_center == -600 && o.window_width == 1500);
    CHECK_OK(mmt_dicom_window_parse("1e3, 2.5e2", "--window", &o));
    CHECK(o.window_center == 1000 && o.window_width == 250);
    CHECK_OK(mmt_dicom_window_parse("0,1", "--window", &o));
    static const char *bad[] = {"40", "40,", ",400", "40,400x", "a,b", "nan,400", "40,inf", "", "40;400"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_FAILS(mmt_dicom_window_parse(bad[i], "--window", &o), MMT_STATUS_INVALID_ARGUMENT,
                    "--window takes CENTER,WIDTH");
        CHECK(o.use_window == 0);
    }
    CHECK_FAILS(mmt_dicom_window_parse("40,0.5", "--window", &o), MMT_STATUS_INVALID_ARGUMENT, "below 1");
}

static void test_compressed_transfer_syntaxes_refused(void) {
    static const char *cases[][2] = {
        {"1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)"},
        {"1.2.840.10008.1.2.4.57", "JPEG Lossless, Non-Hierarchical (Process 14)"},
        {"1.2.840.10008.1.2.4.70", "JPEG Lossless, Non-Hierarchical, First-Order Prediction"},
        {"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless Image Compression"},
        {"1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless)"},
        {"1.2.840.10008.1.2.4.90", "JPEG 2000 Image Compression (Lossless Only)"},
        {"1.2.840.10008.1.2.4.91", "JPEG 2000 Image Compression"},
        {"1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000"},
        {"1.2.840.10008.1.2.5", "RLE Lossless"},
        {"1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian"},
        {"1.2.840.10008.1.2.2", "Explicit VR Big Endian"},
        {"1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264"},
        {"1.2.3.4.5", "unknown transfer syntax"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        spec s = spec_default();
        s.transfer_syntax = cases[i][0];
        s.pixel_bytes = -2; /* encapsulated, as such files are */
        char needle[160];
        snprintf(needle, sizeof needle, "transfer syntax %s (%s", cases[i][0], cases[i][1]);
        expect_failure(&s, MMT_STATUS_UNSUPPORTED, needle);
    }
    /* Encapsulated pixels under an uncompressed transfer syntax are a broken file. */
    spec s = spec_default();
    s.pixel_bytes = -2;
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "encapsulated");
}

static void test_unsupported_images_refused(void) {
    spec s = spec_default();
    s.photometric = "PALETTE COLOR";
    expect_failure(&s, MMT_STATUS_UNSUPPORTED, "Photometric Interpretation PALETTE COLOR");
    s = spec_default();
    s.photometric = "YBR_FULL", s.samples = 3, s.bits_allocated = 8, s.bits_stored = 8, s.high_bit = 7;
    expect_failure(&s, MMT_STATUS_UNSUPPORTED, "YBR_FULL");
    s = spec_default();
    s.bits_allocated = 32, s.bits_stored = 32, s.high_bit = 31;
    expect_failure(&s, MMT_STATUS_UNSUPPORTED, "Bits Allocated (0028,0100) 32");
    s = spec_default();
    s.bits_allocated = 1, s.bits_stored = 1, s.high_bit = 0;
    expect_failure(&s, MMT_STATUS_UNSUPPORTED, "Bits Allocated (0028,0100) 1");
    s = spec_default();
    s.photometric = "RGB", s.samples = 3;
    expect_failure(&s, MMT_STATUS_UNSUPPORTED, "RGB with 12 of 16 bits");
    s = spec_default();
    s.modality_lut = 1;
    expect_failure(&s, MMT_STATUS_UNSUPPORTED, "Modality LUT Sequence");
}

static void test_bad_descriptions_refused(void) {
    spec s = spec_default();
    s.rows = -1;
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "no Rows (0028,0010)");
    s = spec_default();
    s.photometric = NULL;
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "no Photometric Interpretation");
    s = spec_default();
    s.bits_allocated = -1;
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "no Bits Allocated");
    s = spec_default();
    s.rows = 0;
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "empty image");
    s = spec_default();
    s.rows = 65535, s.columns = 65535, s.pixel_bytes = 16;
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "decompression-bomb");
    s = spec_default();
    s.bits_stored = 17;
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "does not fit");
    s = spec_default();
    s.high_bit = 9; /* 12 bits cannot end at bit 9 */
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "does not fit");
    s = spec_default();
    s.pixel_rep = 2;
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "Pixel Representation 2");
    s = spec_default();
    s.samples = 3;
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "MONOCHROME2 with Samples per Pixel 3");
    s = spec_default();
    s.pixel_bytes = 31; /* one frame needs 32 */
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "Pixel Data holds 31 bytes");
    s = spec_default();
    s.window_center = "abc", s.window_width = "10";
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "Window Center (0028,1050) is \"abc\"");
    s = spec_default();
    s.slope = "1e999";
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "Rescale Slope");
}

/* Structure: what goes in front of the Pixel Data (spec.extra). */
static void extra_unknown_vr(dbuf *b, int x) { element(b, 0x0029, 0x0010, "Q!", "ab", 2); }
static void extra_undefined_ob(dbuf *b, int x) { element(b, 0x0029, 0x1010, "OB", NULL, UNDEFINED); }
static void extra_stray_item(dbuf *b, int x) { element(b, 0xFFFE, 0xE000, NULL, NULL, 0); }
static void extra_long_claim(dbuf *b, int x) { element(b, 0x0029, 0x1010, x ? "OB" : NULL, NULL, 0x7FFFFFF0u); }
static void extra_open_sequence(dbuf *b, int x) {
    element(b, 0x0008, 0x1140, x ? "SQ" : NULL, NULL, UNDEFINED);
    element(b, 0xFFFE, 0xE000, NULL, NULL, UNDEFINED);
    element(b, 0x0008, 0x1150, x ? "UI" : NULL, "1.2", 4);
    /* neither item nor sequence is closed: the Pixel Data becomes part of the item */
}
static void extra_junk_in_sequence(dbuf *b, int x) {
    element(b, 0x0008, 0x1140, x ? "SQ" : NULL, NULL, UNDEFINED);
    element(b, 0x0008, 0x1150, x ? "UI" : NULL, "1.2", 4); /* not an item */
}
static void extra_deep_sequences(dbuf *b, int x) {
    for (int i = 0; i < 200; i++) {
        element(b, 0x0008, 0x1140, x ? "SQ" : NULL, NULL, UNDEFINED);
        element(b, 0xFFFE, 0xE000, NULL, NULL, UNDEFINED);
    }
}
/* Every kind of sequence the parser must step over, then icon Rows/Pixel Data inside one. */
static void extra_good_sequences(dbuf *b, int x) {
    element(b, 0x0008, 0x1140, x ? "SQ" : NULL, NULL, UNDEFINED); /* undefined, two items */
    element(b, 0xFFFE, 0xE000, NULL, NULL, UNDEFINED);
    element(b, 0x0008, 0x1150, x ? "UI" : NULL, "1.2", 4);
    element(b, 0x0008, 0x1155, x ? "SQ" : NULL, NULL, 0); /* empty defined-length sequence */
    element(b, 0xFFFE, 0xE00D, NULL, NULL, 0);
    element(b, 0xFFFE, 0xE000, NULL, NULL, 4); /* defined-length item */
    put(b, "ABCD", 4);
    element(b, 0xFFFE, 0xE0DD, NULL, NULL, 0);
    element(b, 0x0088, 0x0200, x ? "SQ" : NULL, NULL, UNDEFINED); /* icon */
    element(b, 0xFFFE, 0xE000, NULL, NULL, UNDEFINED);
    element(b, 0x0028, 0x0010, x ? "US" : NULL, "\x02\x00", 2);
    element(b, 0x0028, 0x0011, x ? "US" : NULL, "\x02\x00", 2);
    element(b, 0x7FE0, 0x0010, x ? "OW" : NULL, "\1\2\3\4\5\6\7\10", 8);
    element(b, 0xFFFE, 0xE00D, NULL, NULL, 0);
    element(b, 0xFFFE, 0xE0DD, NULL, NULL, 0);
    if (x) { /* UN of undefined length: its items are implicit VR */
        element(b, 0x0029, 0x1010, "UN", NULL, UNDEFINED);
        element(b, 0xFFFE, 0xE000, NULL, NULL, UNDEFINED);
        element(b, 0x0029, 0x1011, NULL, "wxyz", 4);
        element(b, 0xFFFE, 0xE00D, NULL, NULL, 0);
        element(b, 0xFFFE, 0xE0DD, NULL, NULL, 0);
    }
}

static void test_structure(void) {
    for (int x = 0; x < 2; x++) {
        spec s = spec_default();
        s.explicit_vr = x;
        s.transfer_syntax = x ? "1.2.840.10008.1.2.1" : "1.2.840.10008.1.2";
        s.extra = extra_good_sequences;
        mmt_image img = {0};
        CHECK_OK(decode_spec(&s, NULL, &img));
        CHECK_MSG(img.width == 4 && img.height == 4, "explicit %d: %lld x %lld (the icon's size?)", x,
                  (long long)img.width, (long long)img.height);
        mmt_image_free(&img);
        s.extra = extra_long_claim;
        expect_failure(&s, MMT_STATUS_BAD_FORMAT, "claims 2147483632 bytes");
        s.extra = extra_stray_item;
        expect_failure(&s, MMT_STATUS_BAD_FORMAT, "outside a sequence");
        s.extra = extra_open_sequence;
        expect_failure(&s, MMT_STATUS_BAD_FORMAT, "truncated DICOM");
        s.extra = extra_junk_in_sequence;
        expect_failure(&s, MMT_STATUS_BAD_FORMAT, "inside a sequence");
        s.extra = extra_deep_sequences;
        expect_failure(&s, MMT_STATUS_BAD_FORMAT, "nested more than");
    }
    spec s = spec_default();
    s.extra = extra_unknown_vr;
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "unknown VR (bytes 0x51 0x21)");
    s.extra = extra_undefined_ob;
    expect_failure(&s, MMT_STATUS_BAD_FORMAT, "VR OB with an undefined length");
    s = spec_default();
    s.pixel_bytes = 0;
    s.rows = -1;
    dbuf b = {0};
    build(&b, &s);
    b.len -= 12; /* drop the Pixel Data header */
    mmt_image img = {0};
    CHECK_FAILS(mmt_image_decode_memory(b.p, b.len, "built.dcm", &img), MMT_STATUS_BAD_FORMAT,
                "no Pixel Data");
    free(b.p);
}

/* ---------------------------------------------------------------------------------------- */
/* damage: every prefix, random flips, failed allocations                                    */

static void expect_clean(mmt_status s, const mmt_image *img, const char *what, size_t at) {
    CHECK_MSG(s == MMT_OK || (mmt_last_error()[0] && img->pixels == NULL &&
                              !strchr(mmt_last_error(), '\n')),
              "%s (%zu): %s without a one-line message or with pixels", what, at, mmt_status_name(s));
    if (s == MMT_OK) CHECK(img->pixels && img->width > 0 && img->height > 0);
}

static void test_every_truncation(void) {
    static const char *names[] = {"MR_small.dcm", "gen_sequences_explicit.dcm", "gen_sequences_implicit.dcm",
                                  "CR_6154.dcm", "gen_bare_implicit.dcm", "SC_rgb_small_odd.dcm"};
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
        size_t len = 0;
        uint8_t *data = check_read_file(dicom_path(names[f]), &len);
        CHECK(data != NULL);
        if (!data) continue;
        int whole_ok = 0;
        for (size_t cut = 0; cut <= len; cut++) {
            /* a copy of exactly cut bytes, so ASan sees any read past the end */
            uint8_t *copy = malloc(cut ? cut : 1);
            memcpy(copy, data, cut);
            mmt_image img = {0};
            mmt_clear_error();
            mmt_status s = mmt_image_decode_memory(copy, cut, names[f], &img);
            expect_clean(s, &img, names[f], cut);
            if (cut == len) whole_ok = s == MMT_OK;
            mmt_image_free(&img);
            free(copy);
        }
        CHECK_MSG(whole_ok, "%s does not decode whole", names[f]);
        free(data);
    }
}

static void test_random_byte_flips(void) {
    static const char *names[] = {"MR_small.dcm", "gen_sequences_explicit.dcm", "gen_sequences_implicit.dcm",
                                  "CR_6154.dcm", "gen_mono1_implicit8.dcm", "gen_bare_explicit.dcm"};
    uint64_t rng = 12345;
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
        size_t len = 0;
        uint8_t *data = check_read_file(dicom_path(names[f]), &len);
        CHECK(data != NULL);
        if (!data) continue;
        uint8_t *copy = malloc(len);
        for (int round = 0; round < 1500; round++) {
            memcpy(copy, data, len);
            /* most rounds hit the header, where the structure is */
            size_t span = round % 4 == 0 || len < 1024 ? len : 1024;
            for (int k = 0; k < 1 + round % 4; k++) {
                rng = rng * 6364136223846793005u + 1442695040888963407u;
                size_t at = (size_t)(rng >> 33) % span;
                copy[at] = round % 3 == 0 ? (uint8_t)(copy[at] ^ (1u << ((rng >> 20) & 7))) : (uint8_t)(rng >> 17);
            }
            mmt_image img = {0};
            mmt_clear_error();
            mmt_dicom_options o = {1, (double)(round % 500) - 100, 1 + round % 700};
            mmt_status s = mmt_image_decode_memory_ex(copy, len, names[f], round % 2 ? &o : NULL, &img);
            expect_clean(s, &img, names[f], (size_t)round);
            mmt_image_free(&img);
        }
        free(copy);
        free(data);
    }
}

static void test_allocation_failures(void) {
    static const char *names[] = {"MR_small.dcm", "SC_rgb_small_odd.dcm"};
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
        int succeeded = 0;
        for (long n = 1; n < 20 && !succeeded; n++) {
            mmt_image img = {0};
            mmt_alloc_fail_after(n);
            mmt_status s = mmt_image_decode_file(dicom_path(names[f]), &img);
            mmt_alloc_fail_after(0);
            CHECK_MSG(s == MMT_OK || s == MMT_STATUS_OUT_OF_MEMORY, "%s, failing allocation %ld: %s: %s",
                      names[f], n, mmt_status_name(s), mmt_last_error());
            CHECK(s == MMT_OK || img.pixels == NULL);
            succeeded = s == MMT_OK;
            mmt_image_free(&img);
        }
        CHECK_MSG(succeeded, "%s never succeeded", names[f]);
    }
}

/* Data that only starts like a bare data set is still "not an image". */
static void test_sniffing(void) {
    mmt_image img = {0};
    static const uint8_t not_dicom[12] = {0x08, 0x00, 0x05, 0x00, 0xF0, 0xFF, 0xFF, 0x7F, 1, 2, 3, 4};
    CHECK_FAILS(mmt_image_decode_memory(not_dicom, sizeof not_dicom, "x.bin", &img), MMT_STATUS_BAD_FORMAT,
                "not an image");
    /* A TIFF header in the preamble does not hide the DICOM file behind it. */
    spec s = spec_default();
    dbuf b = {0};
    build(&b, &s);
    memcpy(b.p, "II*\0", 4);
    CHECK_OK(mmt_image_decode_memory(b.p, b.len, "tiff_preamble.dcm", &img));
    mmt_image_free(&img);
    free(b.p);
}

int main(void) {
    RUN(test_fixtures_match_dcm2pnm);
    RUN(test_memory_equals_file);
    RUN(test_models_carry_the_override);
    RUN(test_hand_computed_window);
    RUN(test_window_parse);
    RUN(test_compressed_transfer_syntaxes_refused);
    RUN(test_unsupported_images_refused);
    RUN(test_bad_descriptions_refused);
    RUN(test_structure);
    RUN(test_every_truncation);
    RUN(test_random_byte_flips);
    RUN(test_allocation_failures);
    RUN(test_sniffing);
    return check_summary();
}
