/* idx.c — IDX files, plain or gzip'd (see idx.h). */
#include "data/idx.h"

#include <errno.h>
#include <string.h>
#include <zlib.h>

#include "core/alloc.h"

/* Reads up to n bytes; *got is how many came. An error names the path and zlib's reason. */
static mmt_status read_bytes(gzFile f, const char *path, void *buf, size_t n, size_t *got) {
    *got = 0;
    while (*got < n) {
        size_t chunk = n - *got > ((size_t)1 << 30) ? (size_t)1 << 30 : n - *got;
        int r = gzread(f, (char *)buf + *got, (unsigned)chunk);
        if (r < 0) {
            int errnum = 0;
            const char *why = gzerror(f, &errnum);
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: cannot read: %s", path,
                            errnum == Z_ERRNO ? strerror(errno) : why);
        }
        if (r == 0) break;
        *got += (size_t)r;
    }
    return MMT_OK;
}

static mmt_status read_header(gzFile f, const char *path, mmt_idx *out) {
    uint8_t magic[4];
    size_t got;
    MMT_TRY(read_bytes(f, path, magic, 4, &got));
    if (got < 4) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: truncated: %zu bytes, too short for an IDX header", path, got);
    if (magic[0] != 0 || magic[1] != 0)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: not an IDX file (magic %02x %02x %02x %02x)", path, magic[0],
                        magic[1], magic[2], magic[3]);
    if (magic[2] != 0x08)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: IDX element type 0x%02x (only unsigned bytes, 0x08, are read)",
                        path, magic[2]);
    if (magic[3] < 1 || magic[3] > MMT_IDX_MAX_DIMS)
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %u IDX dimensions (expected 1 to %d)", path, magic[3],
                        MMT_IDX_MAX_DIMS);
    out->n_dims = magic[3];
    uint8_t dims[4 * MMT_IDX_MAX_DIMS];
    MMT_TRY(read_bytes(f, path, dims, (size_t)(4 * out->n_dims), &got));
    if (got < (size_t)(4 * out->n_dims))
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: truncated in the IDX header (%lld dimensions)", path,
                        (long long)out->n_dims);
    size_t size = 1;
    for (int64_t d = 0; d < out->n_dims; d++) {
        const uint8_t *b = dims + 4 * d;
        out->dims[d] = (int64_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
        if (out->dims[d] == 0) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: IDX dimension %lld is 0", path, (long long)d);
        if ((size_t)out->dims[d] > MMT_IDX_MAX_BYTES / size)
            return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: IDX data larger than %zu bytes", path, MMT_IDX_MAX_BYTES);
        size *= (size_t)out->dims[d];
    }
    out->size = size;
    return MMT_OK;
}

mmt_status mmt_idx_read(const char *path, mmt_idx *out) {
    memset(out, 0, sizeof *out);
    gzFile f = gzopen(path, "rb");
    if (!f) return mmt_fail(errno == ENOENT ? MMT_STATUS_NOT_FOUND : MMT_STATUS_IO, "%s: cannot open: %s", path,
                            errno ? strerror(errno) : "out of memory");
    size_t got = 0;
    uint8_t extra;
    mmt_status s = read_header(f, path, out);
    if (s == MMT_OK && !(out->data = mmt_malloc(out->size))) s = MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = read_bytes(f, path, out->data, out->size, &got);
    if (s == MMT_OK && got < out->size)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: truncated: %zu of %zu data bytes", path, got, out->size);
    if (s == MMT_OK) s = read_bytes(f, path, &extra, 1, &got);
    if (s == MMT_OK && got)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: data continues past the %zu bytes the IDX dimensions give", path,
                     out->size);
    gzclose(f);
    if (s != MMT_OK) mmt_idx_free(out);
    return s;
}

void mmt_idx_free(mmt_idx *idx) {
    if (!idx) return;
    mmt_free(idx->data);
    memset(idx, 0, sizeof *idx);
}
