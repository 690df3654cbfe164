/* image_source.c — training images on loader workers, with a pixel cache (see image_source.h). */
#include "train/image_source.h"

#include <string.h>

#include "core/alloc.h"
#include "data/image.h"
#include "data/loader.h"

struct mmt_image_source {
    const mmt_pairs *pairs;   /* borrowed */
    mmt_image_source_options opt;
    mmt_loader *loader;       /* owned; (re)made for the largest batch so far */
    int64_t loader_batch;
    int64_t position;         /* stream position of the next batch nobody announced */
    /* owned: per example, NULL until decoded (NULL array: no cache); entries are set once
     * with an atomic compare-and-swap, since loader workers fill it concurrently */
    float **cache;
};

/* Example k's preprocessed pixels, un-augmented, from the cache or decoded (and then
 * cached). Thread-safe: cache entries are published by CAS. */
static mmt_status cached_pixels(mmt_image_source *s, int64_t k, float *dst) {
    size_t per = (size_t)(3 * s->opt.size * s->opt.size);
    float *cached = s->cache ? __atomic_load_n(&s->cache[k], __ATOMIC_ACQUIRE) : NULL;
    if (cached) {
        memcpy(dst, cached, per * sizeof(float));
        return MMT_OK;
    }
    mmt_image img = {0};
    mmt_status st = mmt_image_decode_file_ex(s->pairs->items[k].image_path, &s->opt.dicom, &img);
    if (st == MMT_OK) st = mmt_image_preprocess(&img, s->opt.processor, dst);
    mmt_image_free(&img);
    MMT_TRY(st);
    float *copy = s->cache ? mmt_malloc(per * sizeof(float)) : NULL;
    if (copy) {
        memcpy(copy, dst, per * sizeof(float));
        float *expected = NULL;
        if (!__atomic_compare_exchange_n(&s->cache[k], &expected, copy, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            mmt_free(copy); /* another worker cached it first */
    }
    mmt_clear_error(); /* a failed cache allocation is not an error */
    return MMT_OK;
}

/* One example into dst, on a loader worker: decode, preprocess, augment. Thread-safe: the
 * processor and the pairs are read-only, and cache entries are published by CAS. */
static mmt_status example(void *ctx, int64_t k, int64_t position, float *dst) {
    mmt_image_source *s = ctx;
    const mmt_augment *aug = &s->opt.augment;
    const char *path = s->pairs->items[k].image_path;
    int64_t S = s->opt.size;
    mmt_image img = {0};
    if (mmt_augment_needs_image(aug)) {
        mmt_status st = mmt_image_decode_file_ex(path, &s->opt.dicom, &img);
        if (st == MMT_OK) st = mmt_augment_preprocess(&img, s->opt.processor, aug, s->opt.seed, position, dst);
        mmt_image_free(&img);
        return st;
    }
    MMT_TRY(cached_pixels(s, k, dst));
    mmt_augment_flip_only(aug, s->opt.seed, position, dst, S, S);
    return MMT_OK;
}

/* The loader, (re)made for batches of up to n examples while nothing is in flight. */
static mmt_status loader_ready(mmt_image_source *s, int64_t n) {
    if (s->loader && (n <= s->loader_batch || mmt_loader_pending(s->loader) > 0)) return MMT_OK;
    mmt_loader_free(s->loader);
    s->loader = NULL;
    mmt_loader_options lo = {s->opt.workers, s->opt.prefetch_batches > 0 ? s->opt.prefetch_batches : 1,
                             3 * s->opt.size * s->opt.size, n};
    MMT_TRY(mmt_loader_create(&lo, example, s, &s->loader));
    s->loader_batch = n;
    return MMT_OK;
}

mmt_status mmt_image_source_create(const mmt_pairs *pairs, const mmt_image_source_options *o, mmt_image_source **out) {
    *out = NULL;
    MMT_TRY(mmt_augment_check(&o->augment));
    mmt_image_source *s = mmt_calloc(1, sizeof *s);
    if (!s) return MMT_STATUS_OUT_OF_MEMORY;
    s->pairs = pairs;
    s->opt = *o;
    size_t per = (size_t)(3 * o->size * o->size) * sizeof(float);
    if (o->cache_bytes > 0 && pairs->n > 0 && (size_t)pairs->n * per <= o->cache_bytes &&
        !(s->cache = mmt_calloc((size_t)pairs->n, sizeof *s->cache))) {
        mmt_free(s);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    *out = s;
    return MMT_OK;
}

void mmt_image_source_free(mmt_image_source *s) {
    if (!s) return;
    mmt_loader_free(s->loader); /* first: its workers read the cache and the pairs */
    if (s->cache)
        for (int64_t i = 0; i < s->pairs->n; i++) mmt_free(s->cache[i]);
    mmt_free(s->cache);
    mmt_free(s);
}

mmt_status mmt_image_source_prefetch(mmt_image_source *s, int64_t position, const int64_t *indices, int64_t n) {
    MMT_TRY(loader_ready(s, n));
    MMT_TRY(mmt_loader_submit(s->loader, position, indices, n));
    s->position = position + n;
    return MMT_OK;
}

mmt_status mmt_image_source_next(mmt_image_source *s, const int64_t *indices, int64_t n, const float **pixels) {
    /* a caller that did not announce the batch (not the trainer) gets it loaded now */
    if (!s->loader || mmt_loader_pending(s->loader) == 0) MMT_TRY(mmt_image_source_prefetch(s, s->position, indices, n));
    return mmt_loader_next(s->loader, indices, n, pixels);
}

mmt_status mmt_image_source_plain(mmt_image_source *s, int64_t k, float *dst) {
    if (!mmt_augment_needs_image(&s->opt.augment)) return cached_pixels(s, k, dst);
    /* with crop or jitter the workers never read the cache: decode without filling it */
    mmt_image img = {0};
    mmt_status st = mmt_image_decode_file_ex(s->pairs->items[k].image_path, &s->opt.dicom, &img);
    if (st == MMT_OK) st = mmt_image_preprocess(&img, s->opt.processor, dst);
    mmt_image_free(&img);
    return st;
}

int64_t mmt_image_source_ahead(const mmt_image_source *s) {
    return s->opt.workers > 0 ? (s->opt.prefetch_batches > 0 ? s->opt.prefetch_batches : 1) : 0;
}
