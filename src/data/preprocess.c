/*
 * preprocess.c — CLIPImageProcessor (PIL backend) in C: settings from
 * preprocessor_config.json, then resize, center crop, rescale and normalize to CHW float32.
 *
 * The arithmetic follows transformers' image_transforms.py: get_resize_output_image_size
 * (int() truncation of S * long / short, a correctly rounded double division as in Python),
 * center_crop (floor division for the offset, zero padding), rescale
 * (image.astype(float64) * scale, then astype(float32)) and normalize (float32 subtract and
 * divide by float32 mean/std). Every 8-bit value maps to one float per channel, so a
 * 256-entry table per channel is computed with exactly those operations and looked up.
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json.h"
#include "data/preprocess.h"

/* transformers.image_utils OPENAI_CLIP_MEAN / OPENAI_CLIP_STD. */
static const double clip_mean[3] = {0.48145466, 0.4578275, 0.40821073};
static const double clip_std[3] = {0.26862954, 0.26130258, 0.27577711};
/* CLIPImageProcessor's class default size, which use_square_size turns into height/width. */
#define CLIP_DEFAULT_EDGE 224

void mmt_image_processor_default(mmt_image_processor *p) {
    memset(p, 0, sizeof *p);
    p->do_resize = p->do_center_crop = p->do_rescale = p->do_normalize = p->do_convert_rgb = 1;
    p->shortest_edge = CLIP_DEFAULT_EDGE;
    p->crop_height = p->crop_width = CLIP_DEFAULT_EDGE;
    p->rescale_factor = 1.0 / 255.0; /* HF writes 0.00392156862745098, the same double */
    for (int c = 0; c < 3; c++) {
        p->mean[c] = (float)clip_mean[c];
        p->std[c] = (float)clip_std[c];
    }
    p->resample = MMT_RESAMPLE_BICUBIC;
}

/* A positive integer JSON value (size edges). */
static mmt_status json_positive_int(const mmt_json *v, const char *path, const char *field,
                                    int64_t *out) {
    if (!v || v->type != MMT_JSON_NUMBER || !v->is_integer)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: expected an integer, got %s", path,
                        field, v ? mmt_json_type_name(v->type) : "nothing");
    if (v->integer <= 0 || v->integer > 1000000)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: %lld is not a usable size", path, field,
                        (long long)v->integer);
    *out = v->integer;
    return MMT_OK;
}

/* `size`: N, [H, W], {"shortest_edge": N} or {"height": H, "width": W}. HF's PIL backend tries
 * shortest_edge (+longest_edge) first, then height/width. */
static mmt_status processor_read_size(const mmt_json *v, const char *path,
                                      mmt_image_processor *p) {
    if (!v || v->type == MMT_JSON_NULL) return MMT_OK;
    if (v->type == MMT_JSON_NUMBER) {
        MMT_TRY(json_positive_int(v, path, "size", &p->shortest_edge));
        p->size_height = p->size_width = 0;
        return MMT_OK;
    }
    if (v->type == MMT_JSON_ARRAY && v->len == 2) {
        MMT_TRY(json_positive_int(&v->items[0], path, "size[0]", &p->size_height));
        return json_positive_int(&v->items[1], path, "size[1]", &p->size_width);
    }
    if (v->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: size: expected an integer or an object, "
                        "got %s", path, mmt_json_type_name(v->type));
    const mmt_json *edge = mmt_json_get(v, "shortest_edge");
    const mmt_json *longest = mmt_json_get(v, "longest_edge");
    if (longest && longest->type != MMT_JSON_NULL)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: size.longest_edge is not supported "
                        "(only shortest_edge or height/width)", path);
    if (edge && edge->type != MMT_JSON_NULL) {
        MMT_TRY(json_positive_int(edge, path, "size.shortest_edge", &p->shortest_edge));
        p->size_height = p->size_width = 0;
        return MMT_OK;
    }
    const mmt_json *h = mmt_json_get(v, "height"), *w = mmt_json_get(v, "width");
    if (h && w) {
        MMT_TRY(json_positive_int(h, path, "size.height", &p->size_height));
        return json_positive_int(w, path, "size.width", &p->size_width);
    }
    return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: size: expected shortest_edge or height and "
                    "width", path);
}

/* `crop_size`: N, [H, W] or {"height": H, "width": W}. */
static mmt_status processor_read_crop(const mmt_json *v, const char *path,
                                      mmt_image_processor *p) {
    if (!v || v->type == MMT_JSON_NULL) return MMT_OK;
    if (v->type == MMT_JSON_NUMBER) {
        MMT_TRY(json_positive_int(v, path, "crop_size", &p->crop_height));
        p->crop_width = p->crop_height;
        return MMT_OK;
    }
    if (v->type == MMT_JSON_ARRAY && v->len == 2) {
        MMT_TRY(json_positive_int(&v->items[0], path, "crop_size[0]", &p->crop_height));
        return json_positive_int(&v->items[1], path, "crop_size[1]", &p->crop_width);
    }
    if (v->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: crop_size: expected an integer or an "
                        "object, got %s", path, mmt_json_type_name(v->type));
    MMT_TRY(json_positive_int(mmt_json_get(v, "height"), path, "crop_size.height",
                              &p->crop_height));
    return json_positive_int(mmt_json_get(v, "width"), path, "crop_size.width", &p->crop_width);
}

/* `image_mean` / `image_std`: three numbers, or one used for every channel. */
static mmt_status processor_read_triple(const mmt_json *v, const char *path, const char *field,
                                        float out[3]) {
    if (!v || v->type == MMT_JSON_NULL) return MMT_OK;
    if (v->type == MMT_JSON_NUMBER) {
        out[0] = out[1] = out[2] = (float)v->number;
        return MMT_OK;
    }
    if (v->type != MMT_JSON_ARRAY || v->len != 3)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s: expected 3 numbers (one per RGB "
                        "channel)", path, field);
    for (int c = 0; c < 3; c++) {
        if (v->items[c].type != MMT_JSON_NUMBER)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s[%d]: expected a number, got %s", path,
                            field, c, mmt_json_type_name(v->items[c].type));
        out[c] = (float)v->items[c].number; /* numpy: np.array(mean, dtype=float32) */
    }
    return MMT_OK;
}

static mmt_status processor_read(const mmt_json *root, const char *path,
                                 mmt_image_processor *p) {
    if (!root || root->type != MMT_JSON_OBJECT)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected a JSON object", path);
    MMT_TRY(mmt_json_get_bool(root, "do_resize", p->do_resize, &p->do_resize, path, ""));
    MMT_TRY(mmt_json_get_bool(root, "do_center_crop", p->do_center_crop, &p->do_center_crop,
                              path, ""));
    MMT_TRY(mmt_json_get_bool(root, "do_rescale", p->do_rescale, &p->do_rescale, path, ""));
    MMT_TRY(mmt_json_get_bool(root, "do_normalize", p->do_normalize, &p->do_normalize, path,
                              ""));
    MMT_TRY(mmt_json_get_bool(root, "do_convert_rgb", p->do_convert_rgb, &p->do_convert_rgb,
                              path, ""));
    MMT_TRY(mmt_json_get_double(root, "rescale_factor", p->rescale_factor, &p->rescale_factor,
                                path, ""));
    int64_t resample = p->resample;
    MMT_TRY(mmt_json_get_int(root, "resample", resample, &resample, path, ""));
    if (resample < MMT_RESAMPLE_LANCZOS || resample > MMT_RESAMPLE_HAMMING)
        return mmt_fail(MMT_STATUS_UNSUPPORTED,
                        "%s: resample: %lld is not supported (%s1 LANCZOS, 2 BILINEAR, "
                        "3 BICUBIC, 4 BOX, 5 HAMMING are)", path, (long long)resample,
                        resample == 0 ? "0 is NEAREST; " : "");
    p->resample = (int)resample;
    MMT_TRY(processor_read_size(mmt_json_get(root, "size"), path, p));
    int use_square_size = 0;
    MMT_TRY(mmt_json_get_bool(root, "use_square_size", 0, &use_square_size, path, ""));
    if (use_square_size) /* CLIPImageProcessor.__init__ (Kosmos-2): the class default edge */
        p->size_height = p->size_width = CLIP_DEFAULT_EDGE;
    MMT_TRY(processor_read_crop(mmt_json_get(root, "crop_size"), path, p));
    MMT_TRY(processor_read_triple(mmt_json_get(root, "image_mean"), path, "image_mean", p->mean));
    MMT_TRY(processor_read_triple(mmt_json_get(root, "image_std"), path, "image_std", p->std));
    return MMT_OK;
}

/* The numbers become a 256-entry float table per channel (mmt_image_preprocess): a zero,
 * negative or non-finite scale or std would fill it with inf/NaN or flip the image's sign
 * without any error later. Only steps that are switched on are checked, as HF only uses
 * those. */
mmt_status mmt_image_processor_validate(const mmt_image_processor *p, const char *path) {
    if (p->do_rescale && !(isfinite(p->rescale_factor) && p->rescale_factor > 0))
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: rescale_factor: must be > 0 and finite, got %g",
                        path, p->rescale_factor);
    for (int c = 0; p->do_normalize && c < 3; c++) {
        if (!isfinite(p->mean[c]))
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: image_mean[%d]: must be finite, got %g", path, c,
                            (double)p->mean[c]);
        if (!(isfinite(p->std[c]) && p->std[c] > 0))
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: image_std[%d]: must be > 0 and finite, got %g", path,
                            c, (double)p->std[c]);
    }
    /* Each edge is at most 1,000,000 (json_positive_int); the areas must fit an image. */
    if (p->do_center_crop && p->crop_height * p->crop_width > MMT_IMAGE_MAX_PIXELS)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: crop_size: %lld x %lld is more than %lld pixels", path,
                        (long long)p->crop_height, (long long)p->crop_width, (long long)MMT_IMAGE_MAX_PIXELS);
    if (p->do_resize && p->size_height > 0 && p->size_height * p->size_width > MMT_IMAGE_MAX_PIXELS)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: size: %lld x %lld is more than %lld pixels", path,
                        (long long)p->size_height, (long long)p->size_width, (long long)MMT_IMAGE_MAX_PIXELS);
    return MMT_OK;
}

mmt_status mmt_image_processor_parse(const mmt_json *root, const char *what, mmt_image_processor *p) {
    mmt_image_processor_default(p);
    MMT_TRY(processor_read(root, what, p));
    return mmt_image_processor_validate(p, what);
}

mmt_status mmt_image_processor_load(const char *path, mmt_image_processor *p) {
    mmt_image_processor_default(p);
    mmt_json_doc *doc = NULL;
    MMT_TRY(mmt_json_parse_file(path, &doc));
    mmt_status status = mmt_image_processor_parse(mmt_json_root(doc), path, p);
    mmt_json_free(doc);
    return status;
}

/* The size resize() produces, transformers' get_resize_output_image_size with
 * default_to_square=False, or the fixed height/width. */
static void processor_resize_size(const mmt_image_processor *p, int64_t w, int64_t h,
                                  int64_t *rw, int64_t *rh) {
    if (!p->do_resize) {
        *rw = w;
        *rh = h;
    } else if (p->size_height > 0 && p->size_width > 0) {
        *rw = p->size_width;
        *rh = p->size_height;
    } else {
        int64_t s = p->shortest_edge, shorter = w <= h ? w : h, longer = w <= h ? h : w;
        /* Python: int(s * long / short); both operands are exact doubles below 2^53. */
        int64_t new_long = (int64_t)((double)(s * longer) / (double)shorter);
        *rw = w <= h ? s : new_long;
        *rh = w <= h ? new_long : s;
    }
}

mmt_status mmt_image_processor_output_size(const mmt_image_processor *p, int64_t in_width,
                                           int64_t in_height, int64_t *out_width,
                                           int64_t *out_height) {
    if (in_width <= 0 || in_height <= 0 || in_width > MMT_IMAGE_MAX_PIXELS ||
        in_height > MMT_IMAGE_MAX_PIXELS)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "preprocess: bad input size %lld x %lld",
                        (long long)in_width, (long long)in_height);
    if (p->do_resize && p->size_height <= 0 && (p->shortest_edge <= 0 ||
                                                p->shortest_edge > 1000000))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "preprocess: shortest_edge %lld is not "
                        "usable", (long long)p->shortest_edge);
    processor_resize_size(p, in_width, in_height, out_width, out_height);
    if (p->do_center_crop) {
        if (p->crop_width <= 0 || p->crop_height <= 0 ||
            p->crop_width * p->crop_height > MMT_IMAGE_MAX_PIXELS)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "preprocess: bad crop size %lld x %lld",
                            (long long)p->crop_width, (long long)p->crop_height);
        *out_width = p->crop_width;
        *out_height = p->crop_height;
    }
    return MMT_OK;
}

mmt_status mmt_image_processor_resize(const mmt_image *img, const mmt_image_processor *p,
                                      mmt_image *out) {
    memset(out, 0, sizeof *out);
    if (!img || !img->pixels || !p)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "preprocess: missing image");
    int64_t ow, oh, rw, rh;
    MMT_TRY(mmt_image_processor_output_size(p, img->width, img->height, &ow, &oh));
    processor_resize_size(p, img->width, img->height, &rw, &rh);
    return mmt_image_resize(img, rw, rh, (mmt_resample)p->resample, out);
}

/* Python's a // 2 for possibly negative a. */
static int64_t floor_half(int64_t a) { return a >= 0 ? a / 2 : -((1 - a) / 2); }

mmt_status mmt_image_preprocess(const mmt_image *img, const mmt_image_processor *p, float *out) {
    if (!img || !img->pixels || !p || !out)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "preprocess: missing image or output");
    int64_t out_w, out_h, rw, rh;
    MMT_TRY(mmt_image_processor_output_size(p, img->width, img->height, &out_w, &out_h));
    processor_resize_size(p, img->width, img->height, &rw, &rh);

    /* Per channel, the float every 8-bit value becomes (rescale in double, normalize in float). */
    float table[3][256];
    for (int c = 0; c < 3; c++) {
        for (int v = 0; v < 256; v++) {
            float x = p->do_rescale ? (float)((double)v * p->rescale_factor) : (float)v;
            if (p->do_normalize) x = (x - p->mean[c]) / p->std[c];
            table[c][v] = x;
        }
    }

    mmt_image resized = {0};
    const mmt_image *src = img;
    if (rw != img->width || rh != img->height) {
        MMT_TRY(mmt_image_resize(img, rw, rh, (mmt_resample)p->resample, &resized));
        src = &resized;
    }
    /* Center crop: output (x, y) reads source (left + x, top + y), zero outside the image. */
    int64_t top = p->do_center_crop ? floor_half(src->height - out_h) : 0;
    int64_t left = p->do_center_crop ? floor_half(src->width - out_w) : 0;
    int64_t plane = out_w * out_h;
    for (int64_t y = 0; y < out_h; y++) {
        int64_t sy = top + y;
        for (int64_t x = 0; x < out_w; x++) {
            int64_t sx = left + x;
            int inside = sy >= 0 && sy < src->height && sx >= 0 && sx < src->width;
            const uint8_t *px = inside ? src->pixels + (sy * src->width + sx) * 3 : NULL;
            for (int c = 0; c < 3; c++) out[c * plane + y * out_w + x] = table[c][px ? px[c] : 0];
        }
    }
    mmt_image_free(&resized);
    return MMT_OK;
}
