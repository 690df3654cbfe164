/*
 * image_jpeg.c — JPEG decoding through libjpeg(-turbo), set up as Pillow sets it up.
 *
 * Pillow (JpegImagePlugin.py, src/libImaging/JpegDecode.c) keeps libjpeg's defaults: ISLOW
 * DCT, fancy upsampling, block smoothing, the colour space libjpeg guesses from JFIF/Adobe
 * markers. It picks the output from the number of components: 1 -> L (JCS_GRAYSCALE),
 * 3 -> RGB (JCS_RGB), 4 -> CMYK (JCS_CMYK, unpacked as "CMYK;I", i.e. inverted, assuming the
 * Adobe convention); other counts and non-8-bit data are refused. convert("RGB") then copies
 * gray to all three channels and turns CMYK into RGB with cmyk2rgb (Convert.c):
 *     nk = 255 - k;  r = clip(nk - MULDIV255(c, nk))   with MULDIV255(a,b) = (t + (t>>8)) >> 8,
 *                                                        t = a*b + 128.
 * libjpeg warnings (corrupt-but-decodable data) are ignored, as Pillow ignores them; errors
 * and reading past the end of the data fail with a one-line message. libjpeg's error handling
 * longjmps back here from our error_exit, so nothing unwinds through the caller and nothing
 * is printed. libjpeg allocates its own working memory (it has no allocator hook); the pixels
 * come from mmt_malloc.
 */
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "core/alloc.h"
#include "data/image_internal.h"

/* Real progressive files have about ten scans; a hostile one can have millions, each a pass
 * over the whole coefficient buffer. Refuse beyond this many. */
#define JPEG_MAX_SCANS 1000

typedef struct jpeg_context {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr err;
    struct jpeg_source_mgr source;
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    int too_many_scans;
    int created;
    mmt_status status;
    uint8_t *row;        /* one decoded scanline, owned */
    uint8_t *exif;       /* APP1 Exif segments joined as Pillow joins them, owned */
    mmt_image image;     /* owned until handed to the caller */
} jpeg_context;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_context *ctx = cinfo->client_data;
    (*cinfo->err->format_message)(cinfo, ctx->message);
    longjmp(ctx->jump, 1);
}

/* Warnings and trace messages are dropped: library code never prints. */
static void jpeg_on_message(j_common_ptr cinfo) { (void)cinfo; }

static void jpeg_on_progress(j_common_ptr cinfo) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        ((jpeg_context *)cinfo->client_data)->too_many_scans = 1;
        ERREXIT(cinfo, JERR_NOT_COMPILED); /* any code: the flag above carries the reason */
    }
}

static void source_init(j_decompress_ptr cinfo) { (void)cinfo; }
static void source_term(j_decompress_ptr cinfo) { (void)cinfo; }

/* The whole file is in the buffer from the start, so asking for more means it is truncated. */
static boolean source_fill(j_decompress_ptr cinfo) {
    ERREXIT(cinfo, JERR_INPUT_EOF);
    return FALSE;
}

static void source_skip(j_decompress_ptr cinfo, long count) {
    struct jpeg_source_mgr *src = cinfo->src;
    if (count <= 0) return;
    if ((unsigned long)count > src->bytes_in_buffer) ERREXIT(cinfo, JERR_INPUT_EOF);
    src->next_input_byte += count;
    src->bytes_in_buffer -= (size_t)count;
}

static mmt_status jpeg_error_status(jpeg_context *ctx, const char *what) {
    if (ctx->status != MMT_OK) return ctx->status; /* set by us before an error_exit */
    if (ctx->too_many_scans)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: JPEG has more than %d progressive scans",
                        what, JPEG_MAX_SCANS);
    switch (ctx->err.msg_code) {
    case JERR_INPUT_EOF:
        return mmt_fail(MMT_STATUS_BAD_FORMAT,
                        "%s: truncated JPEG: the data ends before the image is complete", what);
    case JERR_OUT_OF_MEMORY:
        return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "%s: JPEG decoder: %s", what, ctx->message);
    default:
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: bad JPEG: %s", what, ctx->message);
    }
}

/* Orientation from the markers libjpeg saved before the first scan (the ones Pillow's
 * JpegImagePlugin parses): Exif APP1 segments are joined (the first whole, later ones without
 * their "Exif\0\0"), the last XMP APP1 is the fallback. */
static int jpeg_orientation(jpeg_context *ctx) {
    static const char xmp_id[] = "http://ns.adobe.com/xap/1.0/";
    size_t exif_len = 0;
    const uint8_t *xmp = NULL;
    size_t xmp_len = 0;
    for (jpeg_saved_marker_ptr m = ctx->cinfo.marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1) continue;
        if (m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
            exif_len += exif_len ? m->data_length - 6 : m->data_length;
        } else if (m->data_length >= sizeof xmp_id &&
                   memcmp(m->data, xmp_id, sizeof xmp_id) == 0) {
            xmp = m->data + sizeof xmp_id; /* after the NUL that ends the identifier */
            xmp_len = m->data_length - sizeof xmp_id;
        }
    }
    int present = 0, orientation = 1;
    if (exif_len > 0) {
        ctx->exif = mmt_malloc(exif_len);
        if (!ctx->exif) return -1;
        size_t at = 0;
        for (jpeg_saved_marker_ptr m = ctx->cinfo.marker_list; m; m = m->next) {
            if (m->marker != JPEG_APP0 + 1 || m->data_length < 6 ||
                memcmp(m->data, "Exif\0\0", 6) != 0)
                continue;
            size_t skip = at ? 6 : 0;
            memcpy(ctx->exif + at, m->data + skip, m->data_length - skip);
            at += m->data_length - skip;
        }
        orientation = image_exif_orientation(ctx->exif, exif_len, &present);
    }
    if (!present && xmp) {
        int v = image_xmp_orientation(xmp, xmp_len);
        if (v >= 2 && v <= 8) orientation = v;
    }
    return orientation;
}

/* One scanline of libjpeg output (gray, RGB or Adobe-inverted CMYK) to RGB8. */
static void jpeg_row_to_rgb(const uint8_t *in, int components, int64_t width, uint8_t *out) {
    if (components == 3) {
        memcpy(out, in, (size_t)width * 3);
    } else if (components == 1) {
        for (int64_t x = 0; x < width; x++) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = in[x];
    } else {
        for (int64_t x = 0; x < width; x++) {
            const uint8_t *p = in + 4 * x;
            int nk = p[3]; /* 255 - (255 - k): "CMYK;I" inverts, cmyk2rgb uses 255 - k */
            for (int c = 0; c < 3; c++) {
                int t = (255 - p[c]) * nk + 128;
                int v = nk - (((t >> 8) + t) >> 8);
                out[3 * x + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
}

mmt_status image_decode_jpeg(const uint8_t *data, size_t len, const char *what,
                             mmt_image *out, int *orientation) {
    jpeg_context *ctx = mmt_calloc(1, sizeof *ctx);
    if (!ctx) return mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", what);
    ctx->cinfo.err = jpeg_std_error(&ctx->err);
    ctx->err.error_exit = jpeg_on_error;
    ctx->err.output_message = jpeg_on_message;
    ctx->cinfo.client_data = ctx;
    if (setjmp(ctx->jump)) {
        ctx->status = jpeg_error_status(ctx, what);
        goto done;
    }
    /* Destroying a partly created decompressor is safe (the struct starts zeroed), so mark it
     * first: an allocation failure inside jpeg_create_decompress still gets cleaned up. */
    ctx->created = 1;
    jpeg_create_decompress(&ctx->cinfo);
    ctx->source.init_source = source_init;
    ctx->source.fill_input_buffer = source_fill;
    ctx->source.skip_input_data = source_skip;
    ctx->source.resync_to_restart = jpeg_resync_to_restart;
    ctx->source.term_source = source_term;
    ctx->source.next_input_byte = data;
    ctx->source.bytes_in_buffer = len;
    ctx->cinfo.src = &ctx->source;
    ctx->progress.progress_monitor = jpeg_on_progress;
    ctx->cinfo.progress = &ctx->progress;
    jpeg_save_markers(&ctx->cinfo, JPEG_APP0 + 1, 0xFFFF);

    jpeg_read_header(&ctx->cinfo, TRUE);
    int components = ctx->cinfo.num_components;
    if (components == 1) {
        ctx->cinfo.out_color_space = JCS_GRAYSCALE;
    } else if (components == 3) {
        ctx->cinfo.out_color_space = JCS_RGB;
    } else if (components == 4) {
        ctx->cinfo.out_color_space = JCS_CMYK;
    } else {
        ctx->status = mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: JPEG with %d components is not "
                               "supported (1, 3 or 4)", what, components);
        goto done;
    }
    ctx->status = image_check_dimensions(ctx->cinfo.image_width, ctx->cinfo.image_height,
                                         what, "JPEG");
    if (ctx->status != MMT_OK) goto done;
    int orient = jpeg_orientation(ctx);
    if (orient < 0) {
        ctx->status = mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", what);
        goto done;
    }

    jpeg_start_decompress(&ctx->cinfo);
    int64_t width = ctx->cinfo.output_width, height = ctx->cinfo.output_height;
    if (ctx->cinfo.output_components != components || width != ctx->cinfo.image_width ||
        height != ctx->cinfo.image_height) {
        ctx->status = mmt_fail(MMT_STATUS_INTERNAL, "%s: libjpeg output shape differs from "
                               "the header", what);
        goto done;
    }
    ctx->status = mmt_image_alloc(width, height, &ctx->image);
    if (ctx->status != MMT_OK) {
        ctx->status = mmt_error_prefix(ctx->status, "%s: ", what);
        goto done;
    }
    ctx->row = mmt_malloc((size_t)width * (size_t)components);
    if (!ctx->row) {
        ctx->status = mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", what);
        goto done;
    }
    for (int64_t y = 0; y < height; y++) {
        JSAMPROW rows[1] = {ctx->row};
        if (jpeg_read_scanlines(&ctx->cinfo, rows, 1) != 1) {
            ctx->status = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: truncated JPEG: row %lld of "
                                   "%lld missing", what, (long long)y, (long long)height);
            goto done;
        }
        jpeg_row_to_rgb(ctx->row, components, width, ctx->image.pixels + y * width * 3);
    }
    /* jpeg_finish_decompress is not called: once every row is out Pillow stops reading too,
     * so a file that lacks only its EOI marker still decodes. */
    *orientation = orient;

done:;
    mmt_status status = ctx->status;
    if (ctx->created) jpeg_destroy_decompress(&ctx->cinfo);
    mmt_free(ctx->row);
    mmt_free(ctx->exif);
    if (status == MMT_OK) *out = ctx->image;
    else mmt_image_free(&ctx->image);
    mmt_free(ctx);
    return status;
}
