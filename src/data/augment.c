/*
 * augment.c — random resized crop, colour jitter and horizontal flip (see augment.h).
 *
 * References: torchvision.transforms.RandomResizedCrop.get_params (crop box),
 * torchvision ColorJitter's factor ranges, Pillow's ImageEnhance (Brightness, Contrast,
 * Color) and Image.blend (src/libImaging/Blend.c: float in1 + alpha * (in2 - in1), clipped,
 * truncated to uint8), and Pillow's RGB -> L conversion (ITU-R 601-2 luma in 16-bit fixed point).
 */
#include "data/augment.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"

void mmt_augment_default(mmt_augment *a) {
    memset(a, 0, sizeof *a);
    a->scale_min = 0.08;
    a->scale_max = 1.0;
    a->ratio_min = 3.0 / 4.0;
    a->ratio_max = 4.0 / 3.0;
    a->flip_p = 0.5;
}

int mmt_augment_needs_image(const mmt_augment *a) {
    return a && (a->crop || a->brightness > 0 || a->contrast > 0 || a->saturation > 0);
}

int mmt_augment_any(const mmt_augment *a) { return a && (a->flip || mmt_augment_needs_image(a)); }

mmt_status mmt_augment_check(const mmt_augment *a) {
    if (a->crop && !(a->scale_min > 0 && a->scale_min <= a->scale_max && a->scale_max <= 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "augment: crop scale range %g..%g (needs 0 < min <= max <= 1)",
                        a->scale_min, a->scale_max);
    if (a->crop && !(a->ratio_min > 0 && a->ratio_min <= a->ratio_max && isfinite(a->ratio_max)))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "augment: crop ratio range %g..%g (needs 0 < min <= max)",
                        a->ratio_min, a->ratio_max);
    if (a->flip && !(a->flip_p >= 0 && a->flip_p <= 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "augment: flip probability %g (needs 0..1)", a->flip_p);
    if (!(a->brightness >= 0 && a->contrast >= 0 && a->saturation >= 0) || !isfinite(a->brightness) ||
        !isfinite(a->contrast) || !isfinite(a->saturation))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "augment: colour jitter strengths must be >= 0");
    return MMT_OK;
}

/* ---- the random stream ------------------------------------------------------------------- */

typedef struct rng {
    uint64_t state;
} rng;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static rng rng_for(uint64_t seed, int64_t position) {
    uint64_t s = seed ^ 0x61756d656e74ull; /* "augment": a stream apart from order and dropout */
    uint64_t a = splitmix(&s);
    rng r = {a ^ ((uint64_t)position * 0xd1342543de82ef95ull)};
    splitmix(&r.state);
    return r;
}

/* Uniform in [0, 1), 53 bits. */
static double rng_uniform(rng *r) { return (double)(splitmix(&r->state) >> 11) * 0x1.0p-53; }
static double rng_range(rng *r, double lo, double hi) { return lo + (hi - lo) * rng_uniform(r); }
/* Uniform integer in [0, n]. */
static int64_t rng_upto(rng *r, int64_t n) { return (int64_t)(splitmix(&r->state) % (uint64_t)(n + 1)); }

/* ---- random resized crop box (torchvision RandomResizedCrop.get_params) -------------------- */

typedef struct box {
    int64_t top, left, height, width;
} box;

static box crop_box(rng *r, const mmt_augment *a, int64_t W, int64_t H) {
    double area = (double)W * (double)H;
    double log_lo = log(a->ratio_min), log_hi = log(a->ratio_max);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * rng_range(r, a->scale_min, a->scale_max);
        double ratio = exp(rng_range(r, log_lo, log_hi));
        int64_t w = (int64_t)llround(sqrt(target * ratio));
        int64_t h = (int64_t)llround(sqrt(target / ratio));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            box b = {rng_upto(r, H - h), 0, h, w};
            b.left = rng_upto(r, W - w);
            return b;
        }
    }
    /* fallback: the whole image, narrowed to the ratio range, centred */
    double in_ratio = (double)W / (double)H;
    int64_t w = W, h = H;
    if (in_ratio < a->ratio_min) h = (int64_t)llround((double)W / a->ratio_min);
    else if (in_ratio > a->ratio_max) w = (int64_t)llround((double)H * a->ratio_max);
    if (h < 1) h = 1;
    if (w < 1) w = 1;
    box b = {(H - h) / 2, (W - w) / 2, h, w};
    return b;
}

static mmt_status crop_copy(const mmt_image *in, box b, mmt_image *out) {
    MMT_TRY(mmt_image_alloc(b.width, b.height, out));
    for (int64_t y = 0; y < b.height; y++)
        memcpy(out->pixels + (size_t)(y * b.width * 3), in->pixels + (size_t)(((b.top + y) * in->width + b.left) * 3),
               (size_t)(b.width * 3));
    return MMT_OK;
}

/* ---- colour jitter (Pillow ImageEnhance) ---------------------------------------------------- */

static uint8_t blend8(float degenerate, float value, float factor) {
    float t = degenerate + factor * (value - degenerate);
    return t <= 0.0f ? 0 : t >= 255.0f ? 255 : (uint8_t)t;
}

static int luma(const uint8_t *px) { /* Pillow's L = R*299/1000 + G*587/1000 + B*114/1000 */
    return (px[0] * 19595 + px[1] * 38470 + px[2] * 7471 + 0x8000) >> 16;
}

static void jitter(mmt_image *img, float brightness, float contrast, float saturation) {
    size_t n = (size_t)(img->width * img->height);
    uint8_t *p = img->pixels;
    if (brightness != 1.0f)
        for (size_t i = 0; i < 3 * n; i++) p[i] = blend8(0.0f, p[i], brightness);
    if (contrast != 1.0f) {
        double sum = 0;
        for (size_t i = 0; i < n; i++) sum += luma(p + 3 * i);
        float mean = (float)(int)(sum / (double)n + 0.5);
        for (size_t i = 0; i < 3 * n; i++) p[i] = blend8(mean, p[i], contrast);
    }
    if (saturation != 1.0f)
        for (size_t i = 0; i < n; i++) {
            float grey = (float)luma(p + 3 * i);
            for (int c = 0; c < 3; c++) p[3 * i + c] = blend8(grey, p[3 * i + c], saturation);
        }
}

static float jitter_factor(rng *r, double strength) {
    if (strength <= 0) return 1.0f;
    double lo = 1 - strength > 0 ? 1 - strength : 0;
    return (float)rng_range(r, lo, 1 + strength);
}

/* ---- the whole pipeline ----------------------------------------------------------------------- */

static void mirror(float *px, int64_t width, int64_t height) {
    for (int64_t row = 0; row < 3 * height; row++) {
        float *line = px + row * width;
        for (int64_t x = 0; x < width / 2; x++) {
            float t = line[x];
            line[x] = line[width - 1 - x];
            line[width - 1 - x] = t;
        }
    }
}

mmt_status mmt_augment_preprocess(const mmt_image *img, const mmt_image_processor *p,
                                  const mmt_augment *a, uint64_t seed, int64_t position,
                                  float *out) {
    if (!img || !img->pixels || img->width < 1 || img->height < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "augment: missing image");
    rng r = rng_for(seed, position);
    mmt_image work = {0}, cropped = {0};
    mmt_image_processor q = *p;
    mmt_status s = MMT_OK;
    int64_t out_w, out_h;
    if (a->crop) {
        box b = crop_box(&r, a, img->width, img->height);
        s = crop_copy(img, b, &cropped);
        if (s == MMT_OK) s = mmt_image_resize(&cropped, p->crop_width, p->crop_height, (mmt_resample)p->resample, &work);
        q.do_resize = 0; /* already at the crop size: the centre crop below is the identity */
        q.do_center_crop = 1;
        out_w = p->crop_width;
        out_h = p->crop_height;
    } else {
        s = mmt_image_alloc(img->width, img->height, &work);
        if (s == MMT_OK) memcpy(work.pixels, img->pixels, (size_t)(img->width * img->height * 3));
        if (s == MMT_OK) s = mmt_image_processor_output_size(p, img->width, img->height, &out_w, &out_h);
    }
    int flip = a->flip && rng_uniform(&r) < a->flip_p;
    float fb = jitter_factor(&r, a->brightness), fc = jitter_factor(&r, a->contrast), fs = jitter_factor(&r, a->saturation);
    if (s == MMT_OK) {
        jitter(&work, fb, fc, fs);
        s = mmt_image_preprocess(&work, &q, out);
    }
    if (s == MMT_OK && flip) mirror(out, out_w, out_h);
    mmt_image_free(&work);
    mmt_image_free(&cropped);
    return s;
}

void mmt_augment_flip_only(const mmt_augment *a, uint64_t seed, int64_t position, float *pixels,
                           int64_t width, int64_t height) {
    if (!a->flip || mmt_augment_needs_image(a)) return;
    rng r = rng_for(seed, position);
    if (rng_uniform(&r) < a->flip_p) mirror(pixels, width, height);
}
