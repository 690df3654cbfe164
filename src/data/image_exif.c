/*
 * image_exif.c — the EXIF Orientation tag, read the way Pillow reads it for exif_transpose.
 *
 * Pillow (Image.Exif.load, TiffImagePlugin.ImageFileDirectory_v2.load) strips one or two
 * leading "Exif\0\0", reads the 8-byte TIFF header (II or MM, either magic byte order), seeks
 * to IFD0 and reads 12-byte entries. It stops quietly at the first read that runs past the
 * end (entries read so far are kept), skips entries of unknown type, entries whose
 * out-of-line data would exceed the block size in total, and repeated tags (the first wins).
 * exif_transpose then looks the value up in {2..8}: integer types and rationals/floats equal
 * to an integer match, BYTE/ASCII/UNDEFINED values never do. Every read here is bounds-checked
 * against len; nothing is trusted from the block.
 */
#include <math.h>
#include <string.h>

#include "data/image_internal.h"

#define EXIF_TAG_ORIENTATION 0x0112

static uint32_t read_u16(const uint8_t *p, int big_endian) {
    return big_endian ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

static uint32_t read_u32(const uint8_t *p, int big_endian) {
    return big_endian ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                      : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* Bytes per value of each TIFF type Pillow can load (0 = unknown, entry skipped). */
static uint64_t exif_type_size(uint32_t type) {
    switch (type) {
    case 1: case 2: case 6: case 7: return 1;     /* BYTE ASCII SBYTE UNDEFINED */
    case 3: case 8: return 2;                     /* SHORT SSHORT */
    case 4: case 9: case 11: case 13: return 4;   /* LONG SLONG FLOAT IFD */
    case 5: case 10: case 12: case 16: return 8;  /* RATIONAL SRATIONAL DOUBLE LONG8 */
    default: return 0;
    }
}

/* The first value of an Orientation entry as exif_transpose sees it: an integer 2..8 that
 * dict.get() would match, else 1. */
static int orientation_value(uint32_t type, const uint8_t *v, int big_endian) {
    int64_t value;
    switch (type) {
    case 3: value = read_u16(v, big_endian); break;
    case 8: value = (int16_t)read_u16(v, big_endian); break;
    case 4: case 13: value = read_u32(v, big_endian); break;
    case 9: value = (int32_t)read_u32(v, big_endian); break;
    case 6: value = (int8_t)v[0]; break;
    case 16: {
        uint64_t hi = read_u32(v + (big_endian ? 0 : 4), big_endian);
        uint64_t lo = read_u32(v + (big_endian ? 4 : 0), big_endian);
        uint64_t u = hi << 32 | lo;
        value = u > 8 ? 0 : (int64_t)u;
        break;
    }
    case 5: case 10: { /* IFDRational(num, den) equals k when den != 0 and num == k * den */
        int64_t num = type == 5 ? (int64_t)read_u32(v, big_endian)
                                : (int64_t)(int32_t)read_u32(v, big_endian);
        int64_t den = type == 5 ? (int64_t)read_u32(v + 4, big_endian)
                                : (int64_t)(int32_t)read_u32(v + 4, big_endian);
        if (den == 0 || num % den != 0) return 1;
        value = num / den;
        break;
    }
    case 11: case 12: {
        double d;
        if (type == 11) {
            uint32_t bits = read_u32(v, big_endian);
            float f;
            memcpy(&f, &bits, sizeof f);
            d = f;
        } else {
            uint64_t hi = read_u32(v + (big_endian ? 0 : 4), big_endian);
            uint64_t lo = read_u32(v + (big_endian ? 4 : 0), big_endian);
            uint64_t bits = hi << 32 | lo;
            memcpy(&d, &bits, sizeof d);
        }
        if (!(d >= 2.0 && d <= 8.0) || d != floor(d)) return 1;
        value = (int64_t)d;
        break;
    }
    default: return 1; /* BYTE, ASCII, UNDEFINED: bytes or str, never equal to an int */
    }
    return value >= 2 && value <= 8 ? (int)value : 1;
}

int image_exif_orientation(const uint8_t *data, size_t len, int *present) {
    *present = 0;
    for (int i = 0; i < 2 && len >= 6 && memcmp(data, "Exif\0\0", 6) == 0; i++) {
        data += 6;
        len -= 6;
    }
    if (len == 0) return 1;
    /* From here on Pillow raises for a bad header; mmtune keeps the image upright as stored
     * and does not fall back to XMP. */
    *present = 1;
    if (len < 8) return 1;
    int big_endian;
    if (memcmp(data, "MM\0*", 4) == 0 || memcmp(data, "MM*\0", 4) == 0) big_endian = 1;
    else if (memcmp(data, "II*\0", 4) == 0 || memcmp(data, "II\0*", 4) == 0) big_endian = 0;
    else return 1; /* not TIFF, or BigTIFF (whose 16-byte header Pillow cannot read here) */
    *present = 0;

    uint64_t pos = read_u32(data + 4, big_endian);
    if (pos + 2 > len) return 1;
    uint32_t count = read_u16(data + pos, big_endian);
    pos += 2;
    uint64_t total_out_of_line = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (pos + 12 > len) break;
        const uint8_t *entry = data + pos;
        pos += 12;
        uint32_t tag = read_u16(entry, big_endian);
        uint32_t type = read_u16(entry + 2, big_endian);
        uint64_t n = read_u32(entry + 4, big_endian);
        uint64_t unit = exif_type_size(type);
        if (unit == 0) continue;
        uint64_t size = n * unit; /* <= 2^32 * 8: no overflow */
        const uint8_t *value = entry + 8;
        if (size > 4) {
            uint64_t offset = read_u32(entry + 8, big_endian);
            total_out_of_line += size;
            if (total_out_of_line > len) continue; /* "Tag data larger than file" */
            if (offset + size > len) break;        /* truncated read ends the IFD */
            value = data + offset;
        }
        if (size == 0) continue;
        if (tag != EXIF_TAG_ORIENTATION) continue;
        /* The first Orientation entry wins; later duplicates are ignored. */
        *present = 1;
        return orientation_value(type, value, big_endian);
    }
    return 1;
}

int image_xmp_orientation(const uint8_t *data, size_t len) {
    static const char key[] = "tiff:Orientation";
    const size_t key_len = sizeof key - 1;
    for (size_t i = 0; i + key_len < len; i++) {
        if (data[i] != 't' || memcmp(data + i, key, key_len) != 0) continue;
        size_t j = i + key_len;
        if (j + 2 < len && data[j] == '=' && data[j + 1] == '"' && data[j + 2] >= '0' &&
            data[j + 2] <= '9')
            return data[j + 2] - '0';
        if (j + 1 < len && data[j] == '>' && data[j + 1] >= '0' && data[j + 1] <= '9')
            return data[j + 1] - '0';
    }
    return -1;
}
