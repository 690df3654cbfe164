/*
 * image_write.c — PNG and JPEG encoding into memory, then one atomic file write.
 *
 * Both libraries report errors by calling a function that must not return; as in the
 * decoders (image_png.c, image_jpeg.c) that function longjmps back to the encoder, which
 * frees what it holds and returns a status, so no error unwinds through the caller.
 * Encoding into memory first keeps a half-written image from ever reaching the target path.
 */
#include "data/image_write.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h> /* after stdio.h: it uses FILE */
#include <png.h>

#include "core/alloc.h"
#include "core/file.h"

static mmt_status check_image(const mmt_image *img, const char *format) {
    if (!img || !img->pixels || img->width < 1 || img->height < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s encoder: empty image", format);
    /* Both formats store dimensions in (at most) 16 bits for JPEG, 31 for PNG. */
    if (img->width > 65500 || img->height > 65500 || img->width * img->height > MMT_IMAGE_MAX_PIXELS)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s encoder: image of %lldx%lld is too large", format,
                        (long long)img->width, (long long)img->height);
    return MMT_OK;
}

/* ---- PNG ---- */

typedef struct png_writer {
    uint8_t *data; /* growing output buffer; owned until handed over */
    size_t len, cap;
    int out_of_memory;
    char message[200];
} png_writer;

static void png_write_error(png_structp png, png_const_charp message) {
    png_writer *w = png_get_error_ptr(png);
    snprintf(w->message, sizeof w->message, "%s", message);
    png_longjmp(png, 1);
}

static void png_write_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static void png_write_bytes(png_structp png, png_bytep bytes, png_size_t n) {
    png_writer *w = png_get_io_ptr(png);
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n) cap *= 2;
        uint8_t *grown = mmt_realloc(w->data, cap);
        if (!grown) {
            w->out_of_memory = 1;
            png_error(png, "out of memory");
        }
        w->data = grown;
        w->cap = cap;
    }
    memcpy(w->data + w->len, bytes, n);
    w->len += n;
}

static void png_flush_nothing(png_structp png) { (void)png; }

mmt_status mmt_image_encode_png(const mmt_image *img, uint8_t **data, size_t *len) {
    *data = NULL;
    *len = 0;
    MMT_TRY(check_image(img, "PNG"));
    /* volatile: modified between setjmp and a possible longjmp. */
    png_writer *volatile w = mmt_calloc(1, sizeof *w);
    if (!w) return MMT_STATUS_OUT_OF_MEMORY;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, w, png_write_error, png_write_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        mmt_free(w);
        return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "PNG encoder: out of memory");
    }
    if (setjmp(png_jmpbuf(png))) {
        mmt_status code = w->out_of_memory ? MMT_STATUS_OUT_OF_MEMORY : MMT_STATUS_INTERNAL;
        mmt_fail(code, "PNG encoder: %s", w->message);
        png_destroy_write_struct(&png, &info);
        mmt_free(w->data);
        mmt_free(w);
        return code;
    }
    png_set_write_fn(png, w, png_write_bytes, png_flush_nothing);
    png_set_compression_level(png, 6);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int64_t y = 0; y < img->height; y++)
        png_write_row(png, (png_const_bytep)(img->pixels + (size_t)(y * img->width * 3)));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    *data = w->data;
    *len = w->len;
    mmt_free(w);
    return MMT_OK;
}

/* ---- JPEG ---- */

typedef struct jpeg_writer {
    struct jpeg_error_mgr err; /* first: libjpeg's err pointer is cast back to this */
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_writer;

static void jpeg_write_error(j_common_ptr cinfo) {
    jpeg_writer *w = (jpeg_writer *)cinfo->err;
    w->err.format_message(cinfo, w->message);
    longjmp(w->jump, 1);
}

static void jpeg_write_warning(j_common_ptr cinfo, int level) {
    (void)cinfo;
    (void)level;
}

mmt_status mmt_image_encode_jpeg(const mmt_image *img, int quality, uint8_t **data, size_t *len) {
    *data = NULL;
    *len = 0;
    MMT_TRY(check_image(img, "JPEG"));
    if (quality < 1 || quality > 100)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "JPEG encoder: quality %d is outside 1..100", quality);
    struct jpeg_compress_struct cinfo;
    jpeg_writer w;
    memset(&cinfo, 0, sizeof cinfo);
    memset(&w, 0, sizeof w);
    /* jpeg_mem_dest allocates with malloc and grows the buffer itself; it is copied into an
     * mmt_malloc'd buffer at the end so the caller frees with mmt_free like everything else. */
    unsigned char *volatile out = NULL;
    unsigned long out_len = 0;
    cinfo.err = jpeg_std_error(&w.err);
    w.err.error_exit = jpeg_write_error;
    w.err.emit_message = jpeg_write_warning;
    if (setjmp(w.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(out);
        return mmt_fail(MMT_STATUS_INTERNAL, "JPEG encoder: %s", w.message);
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, (unsigned char **)&out, &out_len);
    cinfo.image_width = (JDIMENSION)img->width;
    cinfo.image_height = (JDIMENSION)img->height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    cinfo.dct_method = JDCT_ISLOW;
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(img->pixels + (size_t)cinfo.next_scanline * (size_t)img->width * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    uint8_t *copy = mmt_malloc(out_len ? out_len : 1);
    if (!copy) {
        free(out);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    memcpy(copy, out, out_len);
    free(out);
    *data = copy;
    *len = out_len;
    return MMT_OK;
}

/* ---- files ---- */

static mmt_status write_encoded(const char *path, mmt_status encoded, uint8_t *data, size_t len) {
    if (encoded != MMT_OK) return mmt_error_prefix(encoded, "%s: ", path);
    mmt_status s = mmt_file_write_atomic(path, data, len);
    mmt_free(data);
    return s;
}

mmt_status mmt_image_write_png(const char *path, const mmt_image *img) {
    uint8_t *data;
    size_t len;
    mmt_status s = mmt_image_encode_png(img, &data, &len);
    return write_encoded(path, s, data, len);
}

mmt_status mmt_image_write_jpeg(const char *path, const mmt_image *img, int quality) {
    uint8_t *data;
    size_t len;
    mmt_status s = mmt_image_encode_jpeg(img, quality, &data, &len);
    return write_encoded(path, s, data, len);
}
