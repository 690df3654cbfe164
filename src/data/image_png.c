/*
 * image_png.c — PNG decoding through libpng, reproducing what Pillow's own PNG reader
 * (PngImagePlugin.py, its _MODES table, and Convert.c/Unpack.c) followed by convert("RGB")
 * gives:
 *
 *   colour type, depth  Pillow mode (rawmode)   RGB8 result
 *   gray 1/2/4          1 / L (L;2, L;4)        value * 255 / 85 / 17 (bit replication)
 *   gray 8              L                       g, g, g
 *   gray 16             I;16 (I;16B)            v > 255 ? 255 : v  (I16_RGB clips, no shift)
 *   RGB 8/16            RGB (RGB;16B)           8 bits / high byte of each sample
 *   palette 1..8        P                       PLTE entry; indices past PLTE are black
 *   gray+alpha 8        LA                      g, g, g (alpha dropped)
 *   gray+alpha 16       RGBA (LA;16B)           high byte of g, three times
 *   RGBA 8/16           RGBA (RGBA;16B)         8 bits / high byte, alpha dropped
 * tRNS, gAMA, iCCP and the like change nothing. libpng is asked for raw samples (only
 * png_set_packing and interlace handling) and the table above is applied here, so nothing
 * depends on libpng's own colour transforms.
 *
 * Pillow stops at the end of the image data and ignores a missing IEND or damage after it;
 * so chunks after the last row are read with errors ignored. Orientation comes from the eXIf
 * chunk, else an ImageMagick "Raw profile type exif" text, with an XMP packet
 * ("XML:com.adobe.xmp" text) as fallback, as Image.getexif() does.
 */
#include <setjmp.h>
#include <string.h>

#include <png.h>

#include "core/alloc.h"
#include "data/image_internal.h"

typedef struct png_context {
    png_structp png;
    png_infop info;
    const uint8_t *data;
    size_t len, pos;
    char message[256];
    int truncated;
    int out_of_memory;
    size_t alloc_limit;      /* libpng's own allocations larger than this are refused */
    size_t refused;          /* the size of the last refused one (0: none) */
    mmt_status status;
    uint8_t *raw;            /* one row, or the whole image when interlaced; owned */
    png_bytep *rows;         /* row pointers into raw when interlaced; owned */
    uint8_t *exif_from_text; /* decoded "Raw profile type exif"; owned */
    mmt_image image;         /* owned until handed to the caller */
} png_context;

static void png_on_error(png_structp png, png_const_charp message) {
    png_context *ctx = png_get_error_ptr(png);
    snprintf(ctx->message, sizeof ctx->message, "%s", message);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

/* libpng allocates an ancillary chunk (text, ICC profile, EXIF) at its declared length
 * before reading it, and with benign errors on (as Pillow decodes) its own length check only
 * warns: a few bytes declaring 2 GB would allocate 2 GB. Its other allocations are rows and
 * zlib state, so anything over alloc_limit (16 MiB, or a few rows of this image) is refused:
 * libpng then skips that chunk, as it does when memory runs out. */
static png_voidp png_on_malloc(png_structp png, png_alloc_size_t size) {
    png_context *ctx = png_get_mem_ptr(png);
    if (ctx->alloc_limit && size > ctx->alloc_limit) {
        ctx->refused = size;
        return NULL;
    }
    void *p = mmt_malloc(size);
    if (!p) ctx->out_of_memory = 1;
    return p;
}

static void png_on_free(png_structp png, png_voidp p) {
    (void)png;
    mmt_free(p);
}

static void png_on_read(png_structp png, png_bytep out, size_t n) {
    png_context *ctx = png_get_io_ptr(png);
    if (n > ctx->len - ctx->pos) {
        ctx->truncated = 1;
        png_error(png, "unexpected end of data");
    }
    memcpy(out, ctx->data + ctx->pos, n);
    ctx->pos += n;
}

static mmt_status png_error_status(png_context *ctx, const char *what) {
    if (ctx->status != MMT_OK) return ctx->status;
    if (ctx->out_of_memory) return mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", what);
    if (ctx->refused)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: bad PNG: a chunk declares %zu bytes, far more than the file holds", what,
                        ctx->refused);
    if (ctx->truncated)
        return mmt_fail(MMT_STATUS_BAD_FORMAT,
                        "%s: truncated PNG: the data ends before the image is complete", what);
    return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: bad PNG: %s", what, ctx->message);
}

/* One row of raw libpng samples (packed depths already widened to a byte each) to RGB8,
 * following the table at the top of this file. */
static void png_row_to_rgb(const uint8_t *in, int color_type, int depth, int64_t width,
                           const uint8_t palette[256][3], uint8_t *out) {
    int wide = depth == 16;
    for (int64_t x = 0; x < width; x++, out += 3) {
        uint8_t r, g, b;
        switch (color_type) {
        case PNG_COLOR_TYPE_GRAY:
            if (depth == 16) {
                r = in[2 * x] ? 255 : in[2 * x + 1];
            } else {
                static const uint8_t scale[9] = {0, 255, 85, 0, 17, 0, 0, 0, 1};
                r = (uint8_t)(in[x] * scale[depth]);
            }
            g = b = r;
            break;
        case PNG_COLOR_TYPE_PALETTE:
            r = palette[in[x]][0];
            g = palette[in[x]][1];
            b = palette[in[x]][2];
            break;
        case PNG_COLOR_TYPE_GRAY_ALPHA:
            r = g = b = in[(2 * x) << wide];
            break;
        case PNG_COLOR_TYPE_RGB:
            r = in[(3 * x) << wide];
            g = in[(3 * x + 1) << wide];
            b = in[(3 * x + 2) << wide];
            break;
        default: /* PNG_COLOR_TYPE_RGB_ALPHA */
            r = in[(4 * x) << wide];
            g = in[(4 * x + 1) << wide];
            b = in[(4 * x + 2) << wide];
            break;
        }
        out[0] = r;
        out[1] = g;
        out[2] = b;
    }
}

static int hex_value(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int is_ascii_space(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* ImageMagick's "Raw profile type exif": Pillow drops the first three lines, joins the rest
 * and calls bytes.fromhex (whitespace allowed between byte pairs). Returns the byte count,
 * 0 when the text is not valid (Pillow raises there), or -1 when out of memory. */
static int64_t png_raw_profile_exif(png_context *ctx, const char *text, size_t len) {
    size_t at = 0;
    for (int lines = 0; lines < 3; lines++) {
        while (at < len && text[at] != '\n') at++;
        if (at == len) return 0;
        at++;
    }
    ctx->exif_from_text = mmt_malloc((len - at) / 2 + 1);
    if (!ctx->exif_from_text) return -1;
    int64_t n = 0;
    int high = -1;
    for (; at < len; at++) {
        uint8_t c = (uint8_t)text[at];
        if (c == '\n') continue; /* removed by the join, even inside a byte pair */
        if (high < 0 && is_ascii_space(c)) continue;
        int v = hex_value(c);
        if (v < 0) return 0;
        if (high < 0) {
            high = v;
        } else {
            ctx->exif_from_text[n++] = (uint8_t)(high << 4 | v);
            high = -1;
        }
    }
    return high < 0 ? n : 0;
}

/* Returns the orientation (1..8) or -1 when out of memory. */
static int png_orientation(png_context *ctx) {
    png_textp texts = NULL;
    int text_count = png_get_text(ctx->png, ctx->info, &texts, NULL);
    const png_text *raw_profile = NULL, *xmp = NULL;
    for (int i = 0; i < text_count; i++) {
        if (strcmp(texts[i].key, "Raw profile type exif") == 0) raw_profile = &texts[i];
        if (strcmp(texts[i].key, "XML:com.adobe.xmp") == 0) xmp = &texts[i];
    }
    png_uint_32 exif_len = 0;
    png_bytep exif = NULL;
    int present = 0, orientation = 1;
    if (png_get_eXIf_1(ctx->png, ctx->info, &exif_len, &exif) != 0 && exif_len > 0) {
        orientation = image_exif_orientation(exif, exif_len, &present);
    } else if (raw_profile) {
        size_t len = raw_profile->compression >= PNG_ITXT_COMPRESSION_NONE
                         ? raw_profile->itxt_length : raw_profile->text_length;
        int64_t n = png_raw_profile_exif(ctx, raw_profile->text, len);
        if (n < 0) return -1;
        present = 1; /* Pillow raises on a bad hex dump; mmtune keeps the image as stored */
        if (n > 0) orientation = image_exif_orientation(ctx->exif_from_text, (size_t)n, &present);
    }
    if (!present && xmp) {
        size_t len = xmp->compression >= PNG_ITXT_COMPRESSION_NONE ? xmp->itxt_length
                                                                   : xmp->text_length;
        int v = image_xmp_orientation((const uint8_t *)xmp->text, len);
        if (v >= 2 && v <= 8) orientation = v;
    }
    return orientation;
}

mmt_status image_decode_png(const uint8_t *data, size_t len, const char *what, mmt_image *out,
                            int *orientation) {
    png_context *ctx = mmt_calloc(1, sizeof *ctx);
    if (!ctx) return mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", what);
    ctx->data = data;
    ctx->len = len;
    ctx->alloc_limit = (size_t)16 << 20;
    ctx->png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, ctx, png_on_error,
                                        png_on_warning, ctx, png_on_malloc, png_on_free);
    if (ctx->png) ctx->info = png_create_info_struct(ctx->png);
    if (!ctx->png || !ctx->info) {
        ctx->status = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "%s: cannot create a PNG decoder", what);
        goto done;
    }
    if (setjmp(png_jmpbuf(ctx->png))) {
        ctx->status = png_error_status(ctx, what);
        goto done;
    }
    png_set_read_fn(ctx->png, ctx, png_on_read);
    /* Pillow has no per-side limit, only the pixel count, which we check ourselves. */
    png_set_user_limits(ctx->png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_set_benign_errors(ctx->png, 1);
    png_read_info(ctx->png, ctx->info);

    png_uint_32 w32, h32;
    int depth, color_type, interlace;
    png_get_IHDR(ctx->png, ctx->info, &w32, &h32, &depth, &color_type, &interlace, NULL, NULL);
    ctx->status = image_check_dimensions(w32, h32, what, "PNG");
    if (ctx->status != MMT_OK) goto done;
    int64_t width = w32, height = h32;
    size_t widest_row = (size_t)width * 8 + 64; /* 4 channels of 16 bits */
    if (4 * widest_row > ctx->alloc_limit) ctx->alloc_limit = 4 * widest_row;
    if (depth < 8) png_set_packing(ctx->png);
    int passes = interlace != PNG_INTERLACE_NONE ? png_set_interlace_handling(ctx->png) : 1;
    png_read_update_info(ctx->png, ctx->info);
    size_t row_bytes = png_get_rowbytes(ctx->png, ctx->info);
    size_t channels = png_get_channels(ctx->png, ctx->info);
    if (row_bytes != (size_t)width * channels * (depth == 16 ? 2 : 1)) {
        ctx->status = mmt_fail(MMT_STATUS_INTERNAL, "%s: unexpected PNG row layout", what);
        goto done;
    }

    uint8_t palette[256][3];
    memset(palette, 0, sizeof palette);
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_colorp entries = NULL;
        int count = 0;
        if (!png_get_PLTE(ctx->png, ctx->info, &entries, &count)) {
            ctx->status = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: bad PNG: palette image without "
                                   "a PLTE chunk", what);
            goto done;
        }
        for (int i = 0; i < count && i < 256; i++) {
            palette[i][0] = entries[i].red;
            palette[i][1] = entries[i].green;
            palette[i][2] = entries[i].blue;
        }
    }

    ctx->status = mmt_image_alloc(width, height, &ctx->image);
    if (ctx->status != MMT_OK) {
        ctx->status = mmt_error_prefix(ctx->status, "%s: ", what);
        goto done;
    }
    /* Interlaced rows are filled over seven passes, so those need the whole raw image. */
    size_t raw_rows = passes > 1 ? (size_t)height : 1;
    ctx->raw = mmt_calloc(raw_rows, row_bytes);
    if (passes > 1 && ctx->raw) ctx->rows = mmt_calloc(raw_rows, sizeof *ctx->rows);
    if (!ctx->raw || (passes > 1 && !ctx->rows)) {
        ctx->status = mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", what);
        goto done;
    }
    if (passes > 1) {
        for (int64_t y = 0; y < height; y++) ctx->rows[y] = ctx->raw + (size_t)y * row_bytes;
        png_read_image(ctx->png, ctx->rows);
    }
    for (int64_t y = 0; y < height; y++) {
        const uint8_t *row = passes > 1 ? ctx->rows[y] : ctx->raw;
        if (passes == 1) png_read_row(ctx->png, ctx->raw, NULL);
        png_row_to_rgb(row, color_type, depth, width, (const uint8_t(*)[3])palette,
                       ctx->image.pixels + y * width * 3);
    }

    /* Chunks after the image (a late eXIf, text): read them, but as Pillow does, accept a file
     * that is cut or damaged after the pixel data. */
    if (setjmp(png_jmpbuf(ctx->png)) == 0) png_read_end(ctx->png, ctx->info);
    if (ctx->out_of_memory) {
        ctx->status = mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", what);
        goto done;
    }
    int orient = png_orientation(ctx);
    if (orient < 0) {
        ctx->status = mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", what);
        goto done;
    }
    *orientation = orient;

done:;
    mmt_status status = ctx->status;
    if (ctx->png) png_destroy_read_struct(&ctx->png, ctx->info ? &ctx->info : NULL, NULL);
    mmt_free(ctx->raw);
    mmt_free(ctx->rows);
    mmt_free(ctx->exif_from_text);
    if (status == MMT_OK) *out = ctx->image;
    else mmt_image_free(&ctx->image);
    mmt_free(ctx);
    return status;
}
