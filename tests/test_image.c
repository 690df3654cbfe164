/*
 * test_image.c — image decoding, Pillow-exact resizing and CLIP preprocessing against the
 * Python reference in tests/fixtures/images/manifest.txt (tools/fixtures/make_image_fixtures.py:
 * transformers' load_image, PIL Image.resize, CLIPImageProcessorPil).
 *
 * Tolerances: decoded and resized RGB8 arrays must be identical (64-bit FNV-1a of all bytes);
 * pixel_values are expected bit-identical (hash) and are also checked element-wise within
 * 1e-6 where the full array is stored. Error cases must fail with the stated status and a
 * message naming the file; damaged and truncated variants and failed allocations must fail
 * cleanly (run under MMT_SANITIZE for the memory side).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/alloc.h"
#include "data/image.h"
#include "data/image_internal.h"
#include "data/preprocess.h"

/* ---------------------------------------------------------------------------------------- */
/* manifest helpers                                                                          */

static uint64_t fnv1a64(const void *data, size_t len) {
    const uint8_t *p = data;
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

#define MAX_FIELDS 32

typedef struct manifest_line {
    char buf[2048];
    char *field[MAX_FIELDS];
    int count;
} manifest_line;

/* Calls fn for every manifest line whose first word is `kind`. */
static int manifest_each(const char *kind, void (*fn)(manifest_line *line)) {
    FILE *f = fopen(fixture("images/manifest.txt"), "r");
    CHECK_MSG(f != NULL, "cannot open %s", fixture("images/manifest.txt"));
    if (!f) return 0;
    int n = 0;
    manifest_line line;
    while (fgets(line.buf, sizeof line.buf, f)) {
        if (line.buf[0] == '#') continue;
        line.count = 0;
        for (char *tok = strtok(line.buf, " \n"); tok && line.count < MAX_FIELDS;
             tok = strtok(NULL, " \n"))
            line.field[line.count++] = tok;
        if (line.count == 0 || strcmp(line.field[0], kind) != 0) continue;
        fn(&line);
        n++;
    }
    fclose(f);
    return n;
}

static char *image_path(const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/images/%s", MMT_FIXTURE_DIR, name);
    return path;
}

/* Fields from `at`: W H HASH then eight "x,y,r,g,b". Reports the samples that differ. */
static void check_rgb(const mmt_image *img, manifest_line *line, int at, const char *what) {
    long long w = atoll(line->field[at]), h = atoll(line->field[at + 1]);
    CHECK_MSG(img->width == w && img->height == h, "%s: size %lldx%lld, Pillow %lldx%lld", what,
              (long long)img->width, (long long)img->height, w, h);
    if (img->width != w || img->height != h) return;
    uint64_t want = strtoull(line->field[at + 2], NULL, 16);
    uint64_t got = fnv1a64(img->pixels, (size_t)(w * h * 3));
    CHECK_MSG(got == want, "%s: RGB8 differs from Pillow (hash %016llx, want %016llx)", what,
              (unsigned long long)got, (unsigned long long)want);
    for (int i = at + 3; i < line->count; i++) {
        long long x, y;
        int r, g, b;
        if (sscanf(line->field[i], "%lld,%lld,%d,%d,%d", &x, &y, &r, &g, &b) != 5) continue;
        const uint8_t *p = img->pixels + (y * w + x) * 3;
        CHECK_MSG(p[0] == r && p[1] == g && p[2] == b, "%s: pixel (%lld,%lld) = %d,%d,%d, "
                  "Pillow %d,%d,%d", what, x, y, p[0], p[1], p[2], r, g, b);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* decoding                                                                                  */

static void check_decode_line(manifest_line *line) {
    mmt_image img = {0};
    mmt_status s = mmt_image_decode_file(image_path(line->field[1]), &img);
    CHECK_MSG(s == MMT_OK, "%s: %s", line->field[1], mmt_last_error());
    if (s == MMT_OK) check_rgb(&img, line, 2, line->field[1]);
    mmt_image_free(&img);
}

static void test_decode_matches_pillow(void) {
    int n = manifest_each("decode", check_decode_line);
    CHECK_MSG(n >= 30, "only %d decode cases", n);
}

/* decode_memory gives the same pixels as decode_file, and errors name `what`. */
static void test_decode_memory(void) {
    size_t len = 0;
    void *data = check_read_file(image_path("photo_420.jpg"), &len);
    CHECK(data != NULL);
    if (!data) return;
    mmt_image a = {0}, b = {0};
    CHECK_OK(mmt_image_decode_memory(data, len, "upload #3", &a));
    CHECK_OK(mmt_image_decode_file(image_path("photo_420.jpg"), &b));
    CHECK(a.width == b.width && a.height == b.height && a.pixels && b.pixels &&
          memcmp(a.pixels, b.pixels, (size_t)(a.width * a.height * 3)) == 0);
    mmt_image_free(&a);
    CHECK_FAILS(mmt_image_decode_memory(data, len / 2, "upload #3", &a), MMT_STATUS_BAD_FORMAT,
                "upload #3: truncated JPEG");
    CHECK(a.pixels == NULL && a.width == 0);
    CHECK_FAILS(mmt_image_decode_memory(data, 2, NULL, &a), MMT_STATUS_BAD_FORMAT, "image:");
    CHECK_FAILS(mmt_image_decode_file(image_path("no_such_file.png"), &a), MMT_STATUS_NOT_FOUND,
                "no_such_file.png");
    mmt_image_free(&a);
    /* a caller's pixel limit: within it the same image; below it, refused from the header
     * (INVALID_ARGUMENT, the size named); and on the same thread afterwards, no limit left */
    int64_t px = b.width * b.height;
    CHECK_OK(mmt_image_decode_memory_limit(data, len, "upload #4", NULL, px, &a));
    CHECK(a.pixels && a.width == b.width && memcmp(a.pixels, b.pixels, (size_t)(px * 3)) == 0);
    mmt_image_free(&a);
    char want[120];
    snprintf(want, sizeof want, "upload #4: JPEG of %lld x %lld pixels, over the limit of %lld", (long long)b.width,
             (long long)b.height, (long long)(px - 1));
    CHECK_FAILS(mmt_image_decode_memory_limit(data, len, "upload #4", NULL, px - 1, &a), MMT_STATUS_INVALID_ARGUMENT, want);
    CHECK(a.pixels == NULL);
    CHECK_OK(mmt_image_decode_memory(data, len, "upload #5", &a));
    mmt_image_free(&a);
    size_t hl = 0;
    void *huge = check_read_file(image_path("huge.jpg"), &hl); /* 60000 x 60000 in its header */
    if (huge) {
        CHECK_FAILS(mmt_image_decode_memory_limit(huge, hl, "big", NULL, INT64_C(1) << 40, &a), MMT_STATUS_INVALID_ARGUMENT,
                    "big: JPEG of 60000 x 60000 pixels, over the limit of 89478485");
        CHECK_FAILS(mmt_image_decode_memory(huge, hl, "big", &a), MMT_STATUS_BAD_FORMAT, "decompression-bomb");
    }
    free(huge);
    mmt_image_free(&b);
    mmt_image_free(NULL);
    mmt_image zero = {0};
    mmt_image_free(&zero);
    free(data);
}

static void check_error_line(manifest_line *line) {
    static const struct { const char *name; mmt_status status; } statuses[] = {
        {"MMT_STATUS_BAD_FORMAT", MMT_STATUS_BAD_FORMAT},
        {"MMT_STATUS_UNSUPPORTED", MMT_STATUS_UNSUPPORTED},
    };
    mmt_status want = MMT_STATUS_INTERNAL;
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
        if (strcmp(line->field[2], statuses[i].name) == 0) want = statuses[i].status;
    /* The needle may be several words: rejoin the rest of the line. */
    char needle[256] = "";
    for (int i = 3; i < line->count; i++) {
        if (i > 3) strncat(needle, " ", sizeof needle - strlen(needle) - 1);
        strncat(needle, line->field[i], sizeof needle - strlen(needle) - 1);
    }
    mmt_image img = {0};
    mmt_clear_error();
    mmt_status s = mmt_image_decode_file(image_path(line->field[1]), &img);
    const char *msg = mmt_last_error();
    CHECK_MSG(s == want && strstr(msg, needle) && strstr(msg, line->field[1]),
              "%s: got %s \"%s\", want %s containing \"%s\"", line->field[1], mmt_status_name(s),
              msg, mmt_status_name(want), needle);
    CHECK_MSG(strchr(msg, '\n') == NULL, "%s: message is not one line", line->field[1]);
    CHECK(img.pixels == NULL);
    mmt_image_free(&img);
}

static void test_bad_files_fail_cleanly(void) {
    int n = manifest_each("error", check_error_line);
    CHECK_MSG(n >= 8, "only %d error cases", n);
}

/* Every prefix of a few files (and a stream of damaged copies) must either decode or fail
 * with a message; under ASan/UBSan this also proves no out-of-bounds access or leak. */
static void test_truncated_and_damaged_never_crash(void) {
    static const char *names[] = {"photo_420.jpg", "progressive.jpg", "cmyk.jpg", "rgb.png",
                                  "interlaced_palette4.png", "exif_orient6.png", "gray16.png",
                                  "exif_orient6.jpg"};
    uint64_t rng = 0x9e3779b97f4a7c15u;
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
        size_t len = 0;
        uint8_t *data = check_read_file(image_path(names[f]), &len);
        CHECK(data != NULL);
        if (!data) continue;
        size_t step = len / 61 + 1;
        for (size_t cut = 0; cut < len; cut += step) {
            mmt_image img = {0};
            mmt_clear_error();
            mmt_status s = mmt_image_decode_memory(data, cut, names[f], &img);
            CHECK_MSG(s == MMT_OK || (strlen(mmt_last_error()) > 0 && img.pixels == NULL),
                      "%s cut at %zu: status %d without a message", names[f], cut, (int)s);
            mmt_image_free(&img);
        }
        uint8_t *copy = malloc(len);
        for (int round = 0; round < 40 && copy; round++) {
            memcpy(copy, data, len);
            for (int k = 0; k < 1 + round % 4; k++) {
                rng = rng * 6364136223846793005u + 1442695040888963407u;
                size_t at = (size_t)(rng >> 33) % len;
                copy[at] = (uint8_t)(rng >> 17);
            }
            mmt_image img = {0};
            mmt_clear_error();
            mmt_status s = mmt_image_decode_memory(copy, len, names[f], &img);
            CHECK_MSG(s == MMT_OK || strlen(mmt_last_error()) > 0, "%s damaged: no message",
                      names[f]);
            mmt_image_free(&img);
        }
        free(copy);
        free(data);
    }
}

/* Each allocation the decoder and the processor make may fail: the call must return
 * OUT_OF_MEMORY (or, for libpng's optional work, still succeed) and leak nothing. */
static void test_allocation_failures(void) {
    static const char *names[] = {"photo_420.jpg", "interlaced_rgb.png", "rawprofile_orient8.png",
                                  "exif_orient6.jpg"};
    mmt_image_processor p;
    mmt_image_processor_default(&p);
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
        int succeeded = 0;
        for (long n = 1; n < 200 && !succeeded; n++) {
            mmt_image img = {0};
            mmt_alloc_fail_after(n);
            mmt_status s = mmt_image_decode_file(image_path(names[f]), &img);
            float *out = NULL;
            if (s == MMT_OK) {
                out = mmt_malloc(3 * 224 * 224 * sizeof(float));
                s = out ? mmt_image_preprocess(&img, &p, out) : MMT_STATUS_OUT_OF_MEMORY;
            }
            mmt_alloc_fail_after(0);
            CHECK_MSG(s == MMT_OK || s == MMT_STATUS_OUT_OF_MEMORY, "%s, failing allocation %ld: "
                      "%s: %s", names[f], n, mmt_status_name(s), mmt_last_error());
            succeeded = s == MMT_OK;
            mmt_free(out);
            mmt_image_free(&img);
        }
        CHECK_MSG(succeeded, "%s never succeeded", names[f]);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* EXIF parsing on hand-made blocks (byte orders, types, damage)                             */

static size_t put_uint(uint8_t *b, size_t n, uint32_t v, int bytes, int big) {
    for (int i = 0; i < bytes; i++) b[n + i] = (uint8_t)(v >> (8 * (big ? bytes - 1 - i : i)));
    return n + (size_t)bytes;
}

/* "Exif\0\0" + TIFF header + IFD0 with `entries_before` SHORT entries and then the
 * Orientation entry (type, count, 4 raw value bytes). */
static size_t exif_block(uint8_t *b, int big, uint32_t type, uint32_t count,
                         const uint8_t value[4], int entries_before) {
    memcpy(b, "Exif\0\0", 6);
    memcpy(b + 6, big ? "MM\0*" : "II*\0", 4);
    size_t n = put_uint(b, 10, 8, 4, big);
    n = put_uint(b, n, (uint32_t)entries_before + 1, 2, big);
    for (int i = 0; i < entries_before; i++) {
        n = put_uint(b, n, 0x0100u + (uint32_t)i, 2, big);
        n = put_uint(b, n, 3, 2, big);
        n = put_uint(b, n, 1, 4, big);
        n = put_uint(b, n, 0, 4, big);
    }
    n = put_uint(b, n, 0x0112, 2, big);
    n = put_uint(b, n, type, 2, big);
    n = put_uint(b, n, count, 4, big);
    memcpy(b + n, value, 4);
    return put_uint(b, n + 4, 0, 4, big);
}

static void test_exif_orientation_parser(void) {
    uint8_t b[256];
    int present;
    const uint8_t le6[4] = {6, 0, 0, 0}, be6[4] = {0, 6, 0, 0}, be8_long[4] = {0, 0, 0, 8};
    size_t n = exif_block(b, 0, 3, 1, le6, 2);
    CHECK(image_exif_orientation(b, n, &present) == 6 && present);
    n = exif_block(b, 1, 3, 1, be6, 0);
    CHECK(image_exif_orientation(b, n, &present) == 6 && present);
    CHECK(image_exif_orientation(b + 6, n - 6, &present) == 6); /* without "Exif\0\0" */
    n = exif_block(b, 1, 4, 1, be8_long, 1);
    CHECK(image_exif_orientation(b, n, &present) == 8);
    n = exif_block(b, 0, 3, 2, le6, 0); /* count 2: Pillow takes the first value */
    CHECK(image_exif_orientation(b, n, &present) == 6);
    n = exif_block(b, 0, 1, 1, le6, 0); /* BYTE: a bytes value never matches, but is present */
    CHECK(image_exif_orientation(b, n, &present) == 1 && present);
    n = exif_block(b, 0, 99, 1, le6, 0); /* unknown type: skipped, so absent (XMP may apply) */
    CHECK(image_exif_orientation(b, n, &present) == 1 && !present);
    n = exif_block(b, 0, 3, 0, le6, 0); /* count 0: no data, skipped */
    CHECK(image_exif_orientation(b, n, &present) == 1 && !present);
    n = exif_block(b, 0, 3, 1, le6, 3);
    CHECK(image_exif_orientation(b, n - 20, &present) == 1 && !present); /* cut in the IFD */
    const uint8_t far[4] = {0xff, 0xff, 0, 0};
    n = exif_block(b, 0, 5, 1, far, 0); /* RATIONAL stored beyond the block: read stops */
    CHECK(image_exif_orientation(b, n, &present) == 1 && !present);
    uint8_t bad[16] = "Exif\0\0XX*\0\0\0\0\0";
    CHECK(image_exif_orientation(bad, sizeof bad, &present) == 1 && present);
    CHECK(image_exif_orientation(bad, 6, &present) == 1 && !present);
    CHECK(image_exif_orientation(bad, 3, &present) == 1);
    const char *xmp = "<x tiff:Orientation=\"7\"/>";
    CHECK(image_xmp_orientation((const uint8_t *)xmp, strlen(xmp)) == 7);
    xmp = "<tiff:Orientation>3</tiff:Orientation>";
    CHECK(image_xmp_orientation((const uint8_t *)xmp, strlen(xmp)) == 3);
    xmp = "tiff:Orientation";
    CHECK(image_xmp_orientation((const uint8_t *)xmp, strlen(xmp)) == -1);
    CHECK(image_xmp_orientation((const uint8_t *)xmp, 0) == -1);
}

/* ---------------------------------------------------------------------------------------- */
/* resizing                                                                                  */

static void check_resize_line(manifest_line *line) {
    mmt_image src = {0}, out = {0};
    CHECK_OK(mmt_image_decode_file(image_path(line->field[1]), &src));
    int64_t w = atoll(line->field[2]), h = atoll(line->field[3]);
    int filter = atoi(line->field[4]);
    char what[128];
    snprintf(what, sizeof what, "%s -> %lldx%lld filter %d", line->field[1], (long long)w,
             (long long)h, filter);
    mmt_status s = src.pixels ? mmt_image_resize(&src, w, h, (mmt_resample)filter, &out)
                              : MMT_STATUS_INTERNAL;
    CHECK_MSG(s == MMT_OK, "%s: %s", what, mmt_last_error());
    if (s == MMT_OK) check_rgb(&out, line, 5, what);
    mmt_image_free(&src);
    mmt_image_free(&out);
}

static void test_resize_matches_pillow(void) {
    int n = manifest_each("resize", check_resize_line);
    CHECK_MSG(n >= 15, "only %d resize cases", n);
}

static void test_resize_rejects_bad_arguments(void) {
    uint8_t px[3 * 4] = {0};
    mmt_image src = {2, 2, px}, out = {0};
    CHECK_FAILS(mmt_image_resize(&src, 2, 2, MMT_RESAMPLE_NEAREST, &out), MMT_STATUS_UNSUPPORTED,
                "filter 0");
    CHECK_FAILS(mmt_image_resize_bicubic(&src, 0, 5, &out), MMT_STATUS_INVALID_ARGUMENT, "0 x 5");
    CHECK_FAILS(mmt_image_resize_bicubic(&src, 100000, 100000, &out),
                MMT_STATUS_INVALID_ARGUMENT, "limit");
    CHECK(out.pixels == NULL);
    CHECK_OK(mmt_image_resize_bicubic(&src, 2, 2, &out)); /* same size: a copy */
    mmt_image_free(&out);
}

/* ---------------------------------------------------------------------------------------- */
/* CLIP preprocessing                                                                        */

static int load_case(manifest_line *line, mmt_image *img, mmt_image_processor *p) {
    mmt_status s = mmt_image_decode_file(image_path(line->field[1]), img);
    CHECK_MSG(s == MMT_OK, "%s: %s", line->field[1], mmt_last_error());
    if (s != MMT_OK) return 0;
    s = mmt_image_processor_load(image_path(line->field[2]), p);
    CHECK_MSG(s == MMT_OK, "%s: %s", line->field[2], mmt_last_error());
    return s == MMT_OK;
}

static void check_procresize_line(manifest_line *line) {
    mmt_image img = {0}, resized = {0};
    mmt_image_processor p;
    char what[160];
    snprintf(what, sizeof what, "%s with %s", line->field[1], line->field[2]);
    if (load_case(line, &img, &p)) {
        mmt_status s = mmt_image_processor_resize(&img, &p, &resized);
        CHECK_MSG(s == MMT_OK, "%s: %s", what, mmt_last_error());
        if (s == MMT_OK) check_rgb(&resized, line, 3, what);
    }
    mmt_image_free(&img);
    mmt_image_free(&resized);
}

static void test_processor_resize_matches_pillow(void) {
    int n = manifest_each("procresize", check_procresize_line);
    CHECK_MSG(n >= 10, "only %d processor resize cases", n);
}

static void check_pixels_line(manifest_line *line) {
    mmt_image img = {0};
    mmt_image_processor p;
    char what[160];
    snprintf(what, sizeof what, "%s with %s", line->field[1], line->field[2]);
    if (!load_case(line, &img, &p)) {
        mmt_image_free(&img);
        return;
    }
    int64_t h = atoll(line->field[3]), w = atoll(line->field[4]), ow = 0, oh = 0;
    CHECK_OK(mmt_image_processor_output_size(&p, img.width, img.height, &ow, &oh));
    CHECK_MSG(ow == w && oh == h, "%s: output %lldx%lld, HF %lldx%lld", what, (long long)ow,
              (long long)oh, (long long)w, (long long)h);
    size_t count = (size_t)(3 * w * h);
    float *out = malloc(count * sizeof(float));
    mmt_status s = ow == w && oh == h ? mmt_image_preprocess(&img, &p, out) : MMT_STATUS_INTERNAL;
    CHECK_MSG(s == MMT_OK, "%s: %s", what, mmt_last_error());
    if (s == MMT_OK) {
        uint64_t want = strtoull(line->field[5], NULL, 16);
        CHECK_MSG(fnv1a64(out, count * sizeof(float)) == want,
                  "%s: pixel_values not bit-identical to HF", what);
        int last = line->count;
        const char *dump = NULL;
        if (strchr(line->field[line->count - 1], ',') == NULL) dump = line->field[--last];
        for (int i = 6; i < last; i++) {
            int c;
            long long x, y;
            char num[64];
            if (sscanf(line->field[i], "%d,%lld,%lld,%63s", &c, &x, &y, num) != 4) continue;
            double v = strtod(num, NULL);
            CHECK_NEAR(out[(size_t)c * (size_t)(w * h) + (size_t)(y * w + x)], v, 1e-6);
        }
        if (dump) {
            size_t len = 0;
            float *ref = check_read_file(image_path(dump), &len);
            CHECK_MSG(ref && len == count * sizeof(float), "%s: bad dump %s", what, dump);
            double worst = 0;
            for (size_t i = 0; ref && len == count * sizeof(float) && i < count; i++) {
                double d = fabs((double)out[i] - (double)ref[i]);
                if (d > worst) worst = d;
            }
            CHECK_MSG(worst <= 1e-6, "%s: max |diff| %.3g > 1e-6", what, worst);
            free(ref);
        }
    }
    free(out);
    mmt_image_free(&img);
}

static void test_pixel_values_match_transformers(void) {
    int n = manifest_each("pixels", check_pixels_line);
    CHECK_MSG(n >= 12, "only %d pixel_values cases", n);
}

static void test_processor_config(void) {
    mmt_image_processor d, p;
    mmt_image_processor_default(&d);
    CHECK(d.do_resize && d.do_center_crop && d.do_rescale && d.do_normalize && d.do_convert_rgb);
    CHECK(d.shortest_edge == 224 && d.crop_height == 224 && d.crop_width == 224);
    CHECK(d.rescale_factor == 0.00392156862745098 && d.resample == MMT_RESAMPLE_BICUBIC);
    CHECK(d.mean[0] == 0.48145466f && d.std[2] == 0.27577711f);
    CHECK(d.size_height == 0 && d.size_width == 0);
    /* The published openai config, with integer size/crop_size, equals the defaults. */
    CHECK_OK(mmt_image_processor_load(image_path("clip_openai.json"), &p));
    CHECK(memcmp(&p, &d, sizeof p) == 0);
    CHECK_OK(mmt_image_processor_load(image_path("pad_bilinear.json"), &p));
    CHECK(p.shortest_edge == 40 && p.crop_height == 48 && p.crop_width == 36);
    CHECK(p.resample == MMT_RESAMPLE_BILINEAR && p.mean[1] == 0.5f && p.std[2] == 0.5f);
    CHECK_OK(mmt_image_processor_load(image_path("fixed_lanczos.json"), &p));
    CHECK(p.size_height == 64 && p.size_width == 48 && !p.do_center_crop);
    CHECK(p.mean[0] == 0.45f && p.mean[2] == 0.45f && p.std[1] == 0.25f);
    int64_t ow, oh;
    CHECK_OK(mmt_image_processor_output_size(&p, 1000, 10, &ow, &oh));
    CHECK(ow == 48 && oh == 64);
    /* shortest edge with int() truncation: 224 * 333 / 200 = 372.96 -> 372 */
    CHECK_OK(mmt_image_processor_load(image_path("clip_openai.json"), &p));
    p.do_center_crop = 0;
    CHECK_OK(mmt_image_processor_output_size(&p, 200, 333, &ow, &oh));
    CHECK(ow == 224 && oh == 372);
    CHECK_OK(mmt_image_processor_output_size(&p, 333, 200, &ow, &oh));
    CHECK(ow == 372 && oh == 224);
    CHECK_FAILS(mmt_image_processor_load(image_path("missing.json"), &p), MMT_STATUS_NOT_FOUND,
                "missing.json");
}

static void check_config_error_line(manifest_line *line) {
    mmt_image_processor p;
    mmt_status want = strcmp(line->field[2], "MMT_STATUS_UNSUPPORTED") == 0
                          ? MMT_STATUS_UNSUPPORTED : MMT_STATUS_BAD_FORMAT;
    mmt_status s = mmt_image_processor_load(image_path(line->field[1]), &p);
    CHECK_MSG(s == want && strstr(mmt_last_error(), line->field[3]) &&
              strstr(mmt_last_error(), line->field[1]),
              "%s: got %s \"%s\"", line->field[1], mmt_status_name(s), mmt_last_error());
}

static void test_processor_config_errors(void) {
    int n = manifest_each("configerror", check_config_error_line);
    CHECK_MSG(n >= 3, "only %d config error cases", n);
}

/* Padding: an image smaller than the crop is centred on zeros, which normalise to -mean/std. */
static void test_center_crop_pads_with_zeros(void) {
    uint8_t px[3 * 2 * 3];
    for (int i = 0; i < 18; i++) px[i] = 255;
    mmt_image img = {3, 2, px}; /* 3 wide, 2 high */
    mmt_image_processor p;
    mmt_image_processor_default(&p);
    p.do_resize = 0;
    p.crop_width = 6;
    p.crop_height = 5;
    float out[3 * 5 * 6];
    CHECK_OK(mmt_image_preprocess(&img, &p, out));
    /* HF: top = (2 - 5) // 2 = -2, left = (3 - 6) // 2 = -2: the image sits at rows 2..3,
     * columns 2..4. */
    float zero = (0.0f - p.mean[0]) / p.std[0];
    float one = ((float)(255 * p.rescale_factor) - p.mean[0]) / p.std[0];
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 6; x++) {
            int inside = y >= 2 && y <= 3 && x >= 2 && x <= 4;
            CHECK(out[y * 6 + x] == (inside ? one : zero));
        }
}

/* A PNG whose iTXt chunk declares 2 GB in a 1 KB file (found by fuzz_image): libpng would
 * allocate the declared length before reading it. Decoding must stay small: the chunk is
 * skipped (the pixels still decode) or the file refused, never a 2 GB allocation. */
static void test_png_chunk_length_bomb(void) {
    size_t len = 0;
    char *data = check_read_file(MMT_SOURCE_DIR "/fuzz/seeds/fuzz_image/png_chunk_declares_2gb.png", &len);
    CHECK(data != NULL);
    if (!data) return;
    size_t before = mmt_alloc_peak_bytes();
    mmt_image img = {0};
    mmt_status s = mmt_image_decode_memory(data, len, "bomb.png", &img);
    CHECK_MSG(mmt_alloc_peak_bytes() - before < ((size_t)64 << 20), "decoding allocated %zu bytes at its peak",
              mmt_alloc_peak_bytes() - before);
    CHECK(s == MMT_OK || s == MMT_STATUS_BAD_FORMAT);
    if (s == MMT_OK) mmt_image_free(&img);
    free(data);
}

int main(void) {
    RUN(test_decode_matches_pillow);
    RUN(test_decode_memory);
    RUN(test_bad_files_fail_cleanly);
    RUN(test_truncated_and_damaged_never_crash);
    RUN(test_png_chunk_length_bomb);
    RUN(test_allocation_failures);
    RUN(test_exif_orientation_parser);
    RUN(test_resize_matches_pillow);
    RUN(test_resize_rejects_bad_arguments);
    RUN(test_processor_resize_matches_pillow);
    RUN(test_pixel_values_match_transformers);
    RUN(test_processor_config);
    RUN(test_processor_config_errors);
    RUN(test_center_crop_pads_with_zeros);
    return check_summary();
}
