/*
 * fashion_mnist.c — Fashion-MNIST as PNG files + JSONL pairs (see fashion_mnist.h).
 *
 * The PNGs are written here with libpng as 8-bit grey, not through data/image_write.h: the
 * pictures are grey (RGB would triple the bytes for nothing) and a split has up to 60,000 of
 * them, where image_write's atomic write (fsync per file) would cost minutes. A half-written
 * export is redone by running the command again; the JSONL, written last and atomically, only
 * exists once every image it names does.
 */
#include "data/fashion_mnist.h"

#include <ctype.h>
#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"

const char *const mmt_fashion_mnist_class_names[MMT_FASHION_MNIST_CLASSES] = {
    "T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"};

/* Caption wordings; "{a}" is the name with its article ("a coat", "an ankle boot"). */
static const char *const TEMPLATES[] = {
    "a photo of {a}.",
    "product photo: {}",
    "{a} on a plain background",
    "a black and white photo of {a}.",
    "a catalogue image of {a}",
    "a low resolution photo of {a}.",
    "{}",
    "a small grey picture of {a}",
    "shop listing: {}",
    "a close-up photo of {a}.",
    "{a} for sale",
    "a product shot of {a}, centred",
};
#define N_TEMPLATES (sizeof TEMPLATES / sizeof *TEMPLATES)
_Static_assert(N_TEMPLATES == MMT_FASHION_MNIST_TEMPLATES, "MMT_FASHION_MNIST_TEMPLATES");

int mmt_fashion_mnist_class_index(const char *name) {
    if (name[0] >= '0' && name[0] <= '9' && name[1] == '\0') return name[0] - '0';
    if (!strcasecmp(name, "t-shirt") || !strcasecmp(name, "top") || !strcasecmp(name, "tshirt")) return 0;
    for (int c = 0; c < MMT_FASHION_MNIST_CLASSES; c++) {
        const char *a = mmt_fashion_mnist_class_names[c], *b = name;
        while (*a && *b && (tolower((unsigned char)*a) == tolower((unsigned char)*b) || (*a == ' ' && *b == '_'))) a++, b++;
        if (!*a && !*b) return c;
    }
    return -1;
}

static mmt_status split_file(const char *dir, const char *split, const char *kind, char **out) {
    const char *prefix = strcmp(split, "test") == 0 ? "t10k" : "train";
    char name[64];
    *out = NULL;
    for (int gz = 1; gz >= 0; gz--) {
        snprintf(name, sizeof name, "%s-%s-ubyte%s", prefix, kind, gz ? ".gz" : "");
        char *path = mmt_path_join(dir, name);
        if (!path) return MMT_STATUS_OUT_OF_MEMORY;
        if (mmt_file_exists(path) || !gz) {
            *out = path;
            return MMT_OK;
        }
        mmt_free(path);
    }
    return MMT_STATUS_INTERNAL;
}

mmt_status mmt_fashion_mnist_load(const char *idx_dir, const char *split, mmt_fashion_mnist *out) {
    memset(out, 0, sizeof *out);
    if (strcmp(split, "train") && strcmp(split, "test"))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "Fashion-MNIST split \"%s\" (expected train or test)", split);
    if (!idx_dir) idx_dir = MMT_FASHION_MNIST_DIR;
    char *images = NULL, *labels = NULL;
    mmt_status s = split_file(idx_dir, split, "images-idx3", &images);
    if (s == MMT_OK) s = split_file(idx_dir, split, "labels-idx1", &labels);
    if (s == MMT_OK && !mmt_file_exists(images))
        s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: not found (install Debian's dataset-fashion-mnist, or point "
                     "--idx-dir at a folder of Fashion-MNIST IDX files)", images);
    if (s == MMT_OK) s = mmt_idx_read(images, &out->images);
    if (s == MMT_OK) s = mmt_idx_read(labels, &out->labels);
    if (s == MMT_OK && (out->images.n_dims != 3 || out->images.dims[1] != MMT_FASHION_MNIST_SIDE ||
                        out->images.dims[2] != MMT_FASHION_MNIST_SIDE))
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected images of shape (N, 28, 28), got %lld dimensions (%lld, ...)",
                     images, (long long)out->images.n_dims, (long long)out->images.dims[0]);
    if (s == MMT_OK && (out->labels.n_dims != 1 || out->labels.dims[0] != out->images.dims[0]))
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected %lld labels (one per image), got shape (%lld%s)", labels,
                     (long long)out->images.dims[0], (long long)out->labels.dims[0],
                     out->labels.n_dims != 1 ? ", ..." : "");
    for (int64_t i = 0; s == MMT_OK && i < out->labels.dims[0]; i++)
        if (out->labels.data[i] >= MMT_FASHION_MNIST_CLASSES)
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: label %u of image %lld is not a class 0..9", labels,
                         out->labels.data[i], (long long)i);
    if (s == MMT_OK) out->n = out->images.dims[0];
    mmt_free(images);
    mmt_free(labels);
    if (s != MMT_OK) mmt_fashion_mnist_free(out);
    return s;
}

void mmt_fashion_mnist_free(mmt_fashion_mnist *fm) {
    if (!fm) return;
    mmt_idx_free(&fm->images);
    mmt_idx_free(&fm->labels);
    fm->n = 0;
}

/* splitmix64: a small, well-mixed generator that needs no state beyond one word. */
static uint64_t next_random(uint64_t *state) {
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Unbiased enough for n far below 2^64 (the modulo bias is below 1e-14 here). */
static void shuffle(int64_t *v, int64_t n, uint64_t *state) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(next_random(state) % (uint64_t)(i + 1));
        int64_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

typedef struct png_sink {
    char message[200];
} png_sink;

static void png_on_error(png_structp png, png_const_charp message) {
    png_sink *sink = png_get_error_ptr(png);
    snprintf(sink->message, sizeof sink->message, "%s", message);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp message) { (void)png, (void)message; }

/* One 8-bit grey PNG (fixed settings, so the same pixels give the same bytes). */
static mmt_status write_grey_png(const char *path, const uint8_t *pixels, int64_t width, int64_t height) {
    FILE *volatile f = fopen(path, "wb");
    if (!f) return mmt_fail(MMT_STATUS_IO, "%s: cannot create: %s", path, strerror(errno));
    png_sink sink = {{0}};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        fclose(f);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return mmt_fail(MMT_STATUS_IO, "%s: cannot write PNG: %s", path, sink.message);
    }
    png_init_io(png, f);
    png_set_compression_level(png, 6);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int64_t y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(pixels + y * width));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    if (fclose(f) != 0) return mmt_fail(MMT_STATUS_IO, "%s: cannot write: %s", path, strerror(errno));
    return MMT_OK;
}

/* The caption for class c with template t. */
static void caption(char *out, size_t size, size_t t, int c) {
    const char *name = mmt_fashion_mnist_class_names[c];
    const char *article = strchr("aeiouAEIOU", name[0]) ? "an" : "a";
    size_t w = 0;
    for (const char *s = TEMPLATES[t]; *s && w + 1 < size; s++) {
        int n = 0;
        if (!strncmp(s, "{a}", 3)) n = snprintf(out + w, size - w, "%s %s", article, name), s += 2;
        else if (!strncmp(s, "{}", 2)) n = snprintf(out + w, size - w, "%s", name), s += 1;
        else out[w] = *s, n = 1;
        w += (size_t)n < size - w ? (size_t)n : size - w - 1;
    }
    out[w] = '\0';
}

/* Image i's "images" entry (id i) and its n caption annotations (ids i*n .. i*n+n-1): the
 * wording `first` (the JSONL's), then n-1 other distinct wordings drawn from a stream keyed
 * by the seed and i. */
static void coco_image(mmt_strbuf *images, mmt_strbuf *annotations, int64_t i, const char *file, uint64_t seed,
                       size_t first, int c, int n) {
    size_t order[N_TEMPLATES];
    for (size_t k = 0; k < N_TEMPLATES; k++) order[k] = k;
    order[first] = 0, order[0] = first;
    uint64_t rng = seed ^ (0xA0761D6478BD642Full * (uint64_t)(i + 1));
    for (size_t k = 1; k + 1 < N_TEMPLATES; k++) { /* Fisher-Yates over the others */
        size_t j = k + (size_t)(next_random(&rng) % (N_TEMPLATES - k)), t = order[k];
        order[k] = order[j], order[j] = t;
    }
    mmt_strbuf_printf(images, "%s\n  {\"id\": %lld, \"file_name\": \"images/%s\", \"width\": %d, \"height\": %d}",
                      i ? "," : "", (long long)i, file, MMT_FASHION_MNIST_SIDE, MMT_FASHION_MNIST_SIDE);
    char text[160];
    for (int k = 0; k < n; k++) {
        caption(text, sizeof text, order[k], c);
        mmt_strbuf_printf(annotations, "%s\n  {\"id\": %lld, \"image_id\": %lld, \"caption\": ", i || k ? "," : "",
                          (long long)(i * n + k), (long long)i);
        mmt_strbuf_json_string(annotations, text, strlen(text));
        mmt_strbuf_append(annotations, "}", 1);
    }
}

/* The picks: count_per_class of each chosen class, then all shuffled together. */
static mmt_status choose(const mmt_fashion_mnist *fm, const mmt_fashion_mnist_export_params *p, uint64_t *rng,
                         int64_t **picks, int64_t *n_picks) {
    uint32_t classes = p->classes ? p->classes : (1u << MMT_FASHION_MNIST_CLASSES) - 1;
    int64_t *order = mmt_malloc((size_t)fm->n * sizeof *order), *out = mmt_malloc((size_t)fm->n * sizeof *out);
    if (!order || !out) {
        mmt_free(order);
        mmt_free(out);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    int64_t n = 0;
    for (int c = 0; c < MMT_FASHION_MNIST_CLASSES; c++) {
        if (!(classes & (1u << c))) continue;
        int64_t k = 0;
        for (int64_t i = 0; i < fm->n; i++)
            if (fm->labels.data[i] == c) order[k++] = i;
        shuffle(order, k, rng);
        if (p->count_per_class > 0 && k > p->count_per_class) k = p->count_per_class;
        memcpy(out + n, order, (size_t)k * sizeof *out);
        n += k;
    }
    mmt_free(order);
    shuffle(out, n, rng);
    *picks = out;
    *n_picks = n;
    return MMT_OK;
}

mmt_status mmt_fashion_mnist_export(const mmt_fashion_mnist_export_params *p, int64_t *written) {
    if (written) *written = 0;
    const char *split = p->split ? p->split : "train";
    mmt_fashion_mnist fm;
    MMT_TRY(mmt_fashion_mnist_load(p->idx_dir, split, &fm));
    char *image_dir = mmt_path_join(p->out_dir, "images"), *path = NULL;
    int64_t *picks = NULL, n = 0;
    uint64_t rng = p->seed;
    mmt_strbuf jsonl = {0}, coco = {0}, annotations = {0};
    char file[64], text[160];
    if (p->captions < 0 || p->captions > (int)N_TEMPLATES) {
        mmt_free(image_dir);
        mmt_fashion_mnist_free(&fm);
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "Fashion-MNIST: captions per image must be 0..%d, got %d",
                        (int)N_TEMPLATES, p->captions);
    }
    mmt_strbuf_printf(&coco, "{\"info\": {\"description\": \"mmtune fashion-mnist, split %s, seed %llu\"},\n \"images\": [",
                      split, (unsigned long long)p->seed);
    mmt_status s = image_dir ? mmt_mkdirs(image_dir) : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = choose(&fm, p, &rng, &picks, &n);
    if (s == MMT_OK && n == 0) s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "Fashion-MNIST %s: no images chosen", split);
    for (int64_t i = 0; s == MMT_OK && i < n; i++) {
        int64_t k = picks[i];
        int c = fm.labels.data[k];
        snprintf(file, sizeof file, "%s-%05lld.png", split, (long long)k);
        mmt_free(path);
        if (!(path = mmt_path_join(image_dir, file))) {
            s = MMT_STATUS_OUT_OF_MEMORY;
            break;
        }
        s = write_grey_png(path, fm.images.data + k * MMT_FASHION_MNIST_SIDE * MMT_FASHION_MNIST_SIDE,
                           MMT_FASHION_MNIST_SIDE, MMT_FASHION_MNIST_SIDE);
        size_t t = (size_t)(next_random(&rng) % N_TEMPLATES);
        caption(text, sizeof text, t, c);
        if (p->captions) coco_image(&coco, &annotations, i, file, p->seed, t, c, p->captions);
        mmt_strbuf_printf(&jsonl, "{\"image_path\": \"images/%s\", \"text\": ", file);
        mmt_strbuf_json_string(&jsonl, text, strlen(text));
        mmt_strbuf_append(&jsonl, ", \"label\": ", 11);
        mmt_strbuf_json_string(&jsonl, mmt_fashion_mnist_class_names[c], strlen(mmt_fashion_mnist_class_names[c]));
        mmt_strbuf_append(&jsonl, "}\n", 2);
    }
    mmt_strbuf_printf(&coco, "],\n \"annotations\": [");
    mmt_strbuf_append(&coco, annotations.data ? annotations.data : "", annotations.len);
    mmt_strbuf_printf(&coco, "]}\n");
    if (s == MMT_OK && (jsonl.failed || coco.failed || annotations.failed)) s = MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) {
        snprintf(file, sizeof file, "%s.jsonl", split);
        mmt_free(path);
        if (!(path = mmt_path_join(p->out_dir, file))) s = MMT_STATUS_OUT_OF_MEMORY;
        else s = mmt_file_write_atomic(path, jsonl.data, jsonl.len);
    }
    if (s == MMT_OK && p->captions) {
        snprintf(file, sizeof file, "%s_coco.json", split);
        mmt_free(path);
        if (!(path = mmt_path_join(p->out_dir, file))) s = MMT_STATUS_OUT_OF_MEMORY;
        else s = mmt_file_write_atomic(path, coco.data, coco.len);
    }
    if (s == MMT_OK && written) *written = n;
    mmt_strbuf_free(&jsonl);
    mmt_strbuf_free(&coco);
    mmt_strbuf_free(&annotations);
    mmt_free(path);
    mmt_free(picks);
    mmt_free(image_dir);
    mmt_fashion_mnist_free(&fm);
    return s;
}
