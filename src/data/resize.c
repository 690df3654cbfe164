/*
 * resize.c — Pillow's convolution resampling on RGB8 images, bit for bit.
 *
 * This is src/libImaging/Resample.c (Pillow, commit 01f132f) for 8-bit images and a box of
 * (0, 0, in_w, in_h), which is what Image.resize(size, filter) with reducing_gap=None runs:
 *   - per output index: scale = in/out, filterscale = max(scale, 1), support = filter
 *     support * filterscale, center = (i + 0.5) * scale,
 *     xmin = max(0, (int)(center - support + 0.5)), xmax = min(in, (int)(center + support + 0.5)),
 *     w[x] = filter((x + xmin - center + 0.5) / filterscale), normalised to sum 1 in double;
 *   - weights are quantised to int with PRECISION_BITS = 22, rounding half away from zero;
 *   - a pixel is clip8((1 << 21) + sum(px * w) >> 22), the shift being arithmetic;
 *   - two passes (each only if that side changes) with an 8-bit intermediate. Pillow up to 12
 *     always ran the horizontal pass first; Pillow 13 (PR #9549, "if height is scaled down
 *     significantly more than width, resize vertically first") runs the vertical pass first
 *     when out_h < in_h and in_h - out_h > 2 * (in_w - out_w). The order changes the rounding
 *     of the intermediate, so it is part of the result; mmtune follows Pillow 13 (checked on
 *     481 random size pairs against Pillow 13.0.0). For CLIP's aspect-preserving resize the
 *     two orders differ only for downscaled images more than twice as tall as wide.
 * The double arithmetic is written in Pillow's operation order; the library is built without
 * -ffast-math or FMA contraction, so the weights come out identical. Pillow accumulates in
 * int; the sums here fit in int32 as well, int64 only keeps overflow out of question.
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "data/image.h"

#define RESIZE_PRECISION_BITS (32 - 8 - 2)
#ifndef M_PI
#define M_PI 3.14159265358979323846 /* the same double as glibc's */
#endif

typedef struct resize_filter {
    double (*fn)(double x);
    double support;
} resize_filter;

static double filter_box(double x) { return x > -0.5 && x <= 0.5 ? 1.0 : 0.0; }

static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double filter_hamming(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    return sin(x) / x * (0.54f + 0.46f * cos(x)); /* float constants, as in Pillow */
}

/* Keys' cubic with a = -0.5. */
static double filter_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double filter_lanczos(double x) {
    return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0;
}

/* Integer weights of one pass: for output index i, `count[i]` taps starting at input index
 * `first[i]`, weights at weights[i * taps_max ...]. All three arrays are owned. */
typedef struct resize_coeffs {
    int64_t taps_max;
    int64_t *first, *count;
    int32_t *weights;
} resize_coeffs;

static void resize_coeffs_free(resize_coeffs *c) {
    mmt_free(c->first);
    mmt_free(c->count);
    mmt_free(c->weights);
    memset(c, 0, sizeof *c);
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for in_size -> out_size. */
static mmt_status resize_coeffs_compute(int64_t in_size, int64_t out_size,
                                        const resize_filter *filter, resize_coeffs *c) {
    memset(c, 0, sizeof *c);
    /* Pillow passes the box edges as float; in_size < 2^24 is exact, larger sizes would be
     * rounded there as well. */
    double scale = (double)((float)in_size - 0.0f) / (double)out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = filter->support * filterscale;
    c->taps_max = (int64_t)ceil(support) * 2 + 1;
    double *k = mmt_calloc((size_t)c->taps_max, sizeof *k);
    c->first = mmt_calloc((size_t)out_size, sizeof *c->first);
    c->count = mmt_calloc((size_t)out_size, sizeof *c->count);
    c->weights = mmt_calloc((size_t)(out_size * c->taps_max), sizeof *c->weights);
    if (!k || !c->first || !c->count || !c->weights) {
        mmt_free(k);
        resize_coeffs_free(c);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    for (int64_t xx = 0; xx < out_size; xx++) {
        double center = 0.0f + (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int64_t xmin = (int64_t)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int64_t xmax = (int64_t)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int64_t x = 0; x < xmax; x++) {
            double w = filter->fn((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        int32_t *out = c->weights + xx * c->taps_max;
        for (int64_t x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? k[x] / ww : k[x];
            /* 1 << PRECISION_BITS is an int in Pillow; the product is double. */
            out[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << RESIZE_PRECISION_BITS))
                           : (int32_t)(0.5 + v * (1 << RESIZE_PRECISION_BITS));
        }
        c->first[xx] = xmin;
        c->count[xx] = xmax;
    }
    mmt_free(k);
    return MMT_OK;
}

static uint8_t resize_clip8(int64_t sum) {
    int64_t v = sum >> RESIZE_PRECISION_BITS; /* floor, like Pillow's arithmetic shift */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Horizontal pass over rows [row0, row0 + rows) of `in` into `out` (rows x c->out width). */
static void resize_horizontal(const mmt_image *in, int64_t row0, int64_t rows,
                              const resize_coeffs *c, int64_t out_w, uint8_t *out) {
    for (int64_t y = 0; y < rows; y++) {
        const uint8_t *src = in->pixels + (row0 + y) * in->width * 3;
        uint8_t *dst = out + y * out_w * 3;
        for (int64_t xx = 0; xx < out_w; xx++) {
            const int32_t *k = c->weights + xx * c->taps_max;
            const uint8_t *p = src + c->first[xx] * 3;
            int64_t s0 = 1 << (RESIZE_PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int64_t x = 0; x < c->count[xx]; x++) {
                s0 += (int64_t)p[3 * x] * k[x];
                s1 += (int64_t)p[3 * x + 1] * k[x];
                s2 += (int64_t)p[3 * x + 2] * k[x];
            }
            dst[3 * xx] = resize_clip8(s0);
            dst[3 * xx + 1] = resize_clip8(s1);
            dst[3 * xx + 2] = resize_clip8(s2);
        }
    }
}

/* Vertical pass: `in` holds rows starting at source row `row0`; out is out_h x width. */
static void resize_vertical(const uint8_t *in, int64_t row0, int64_t width,
                            const resize_coeffs *c, int64_t out_h, uint8_t *out) {
    int64_t stride = width * 3;
    for (int64_t yy = 0; yy < out_h; yy++) {
        const int32_t *k = c->weights + yy * c->taps_max;
        const uint8_t *src = in + (c->first[yy] - row0) * stride;
        uint8_t *dst = out + yy * stride;
        for (int64_t i = 0; i < stride; i++) {
            int64_t s = 1 << (RESIZE_PRECISION_BITS - 1);
            for (int64_t y = 0; y < c->count[yy]; y++) s += (int64_t)src[y * stride + i] * k[y];
            dst[i] = resize_clip8(s);
        }
    }
}

static const resize_filter *resize_filter_for(mmt_resample filter) {
    static const resize_filter box = {filter_box, 0.5}, bilinear = {filter_bilinear, 1.0},
                               hamming = {filter_hamming, 1.0}, bicubic = {filter_bicubic, 2.0},
                               lanczos = {filter_lanczos, 3.0};
    switch (filter) {
    case MMT_RESAMPLE_BOX: return &box;
    case MMT_RESAMPLE_BILINEAR: return &bilinear;
    case MMT_RESAMPLE_HAMMING: return &hamming;
    case MMT_RESAMPLE_BICUBIC: return &bicubic;
    case MMT_RESAMPLE_LANCZOS: return &lanczos;
    default: return NULL;
    }
}

mmt_status mmt_image_resize(const mmt_image *in, int64_t out_w, int64_t out_h,
                            mmt_resample filter, mmt_image *out) {
    memset(out, 0, sizeof *out);
    const resize_filter *f = resize_filter_for(filter);
    if (!f)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "resize: resampling filter %d is not supported "
                        "(1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING)", (int)filter);
    if (!in || !in->pixels || in->width <= 0 || in->height <= 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "resize: empty input image");
    MMT_TRY(mmt_image_alloc(out_w, out_h, out));

    int need_horizontal = out_w != in->width, need_vertical = out_h != in->height;
    resize_coeffs horiz = {0}, vert = {0};
    uint8_t *temp = NULL;
    mmt_status status = MMT_OK;
    if (need_vertical) {
        status = resize_coeffs_compute(in->height, out_h, f, &vert);
        if (status != MMT_OK) goto done;
    }
    if (need_horizontal) {
        status = resize_coeffs_compute(in->width, out_w, f, &horiz);
        if (status != MMT_OK) goto done;
    }
    int vertical_first = out_h < in->height && in->height - out_h > 2 * (in->width - out_w);
    if (need_horizontal && need_vertical && vertical_first) {
        temp = mmt_malloc((size_t)(in->width * out_h * 3));
        if (!temp) {
            status = MMT_STATUS_OUT_OF_MEMORY;
            goto done;
        }
        resize_vertical(in->pixels, 0, in->width, &vert, out_h, temp);
        mmt_image mid = {in->width, out_h, temp};
        resize_horizontal(&mid, 0, out_h, &horiz, out_w, out->pixels);
    } else if (need_horizontal && need_vertical) {
        /* Only the source rows the vertical pass reads go through the horizontal pass. */
        int64_t first = vert.first[0];
        int64_t last = vert.first[out_h - 1] + vert.count[out_h - 1];
        temp = mmt_malloc((size_t)((last - first) * out_w * 3));
        if (!temp) {
            status = MMT_STATUS_OUT_OF_MEMORY;
            goto done;
        }
        resize_horizontal(in, first, last - first, &horiz, out_w, temp);
        resize_vertical(temp, first, out_w, &vert, out_h, out->pixels);
    } else if (need_horizontal) {
        resize_horizontal(in, 0, in->height, &horiz, out_w, out->pixels);
    } else if (need_vertical) {
        resize_vertical(in->pixels, 0, in->width, &vert, out_h, out->pixels);
    } else {
        memcpy(out->pixels, in->pixels, (size_t)(in->width * in->height * 3));
    }

done:
    mmt_free(temp);
    resize_coeffs_free(&horiz);
    resize_coeffs_free(&vert);
    if (status != MMT_OK) mmt_image_free(out);
    return status;
}

mmt_status mmt_image_resize_bicubic(const mmt_image *in, int64_t out_w, int64_t out_h,
                                    mmt_image *out) {
    return mmt_image_resize(in, out_w, out_h, MMT_RESAMPLE_BICUBIC, out);
}
