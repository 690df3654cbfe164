/* hash.c — the 64-bit checksum of hash.h. */
#include "core/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"

#define P1 0x9e3779b97f4a7c15ull
#define P2 0xc2b2ae3d27d4eb4full
#define P3 0x165667b19e3779f9ull

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t load64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* the checksum is defined on little-endian words (x86-64, the only target) */
}

static uint64_t round_lane(uint64_t acc, uint64_t word) {
    acc += word * P2;
    acc = rotl(acc, 31);
    return acc * P1;
}

static uint64_t avalanche(uint64_t z) {
    z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdull;
    z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53ull;
    return z ^ (z >> 33);
}

void mmt_hash_init(mmt_hash *h, uint64_t seed) {
    memset(h, 0, sizeof *h);
    h->lane[0] = seed + P1 + P2;
    h->lane[1] = seed + P2;
    h->lane[2] = seed;
    h->lane[3] = seed - P1;
}

static void blocks(mmt_hash *h, const unsigned char *p, size_t n_blocks) {
    uint64_t a = h->lane[0], b = h->lane[1], c = h->lane[2], d = h->lane[3];
    for (size_t i = 0; i < n_blocks; i++, p += 32) {
        a = round_lane(a, load64(p));
        b = round_lane(b, load64(p + 8));
        c = round_lane(c, load64(p + 16));
        d = round_lane(d, load64(p + 24));
    }
    h->lane[0] = a;
    h->lane[1] = b;
    h->lane[2] = c;
    h->lane[3] = d;
}

void mmt_hash_update(mmt_hash *h, const void *data, size_t len) {
    const unsigned char *p = data;
    h->total += len;
    if (h->fill) {
        size_t take = 32 - h->fill < len ? 32 - h->fill : len;
        memcpy(h->block + h->fill, p, take);
        h->fill += take;
        p += take;
        len -= take;
        if (h->fill < 32) return;
        blocks(h, h->block, 1);
        h->fill = 0;
    }
    blocks(h, p, len / 32);
    p += len / 32 * 32;
    len %= 32;
    memcpy(h->block, p, len);
    h->fill = len;
}

uint64_t mmt_hash_final(const mmt_hash *h) {
    uint64_t acc = rotl(h->lane[0], 1) + rotl(h->lane[1], 7) + rotl(h->lane[2], 12) + rotl(h->lane[3], 18);
    for (int i = 0; i < 4; i++) acc = (acc ^ round_lane(0, h->lane[i])) * P1 + P3;
    acc += h->total;
    for (size_t i = 0; i < h->fill; i++) acc = rotl(acc ^ ((uint64_t)h->block[i] * P3), 11) * P1;
    return avalanche(acc);
}

uint64_t mmt_hash64(const void *data, size_t len, uint64_t seed) {
    mmt_hash h;
    mmt_hash_init(&h, seed);
    mmt_hash_update(&h, data, len);
    return mmt_hash_final(&h);
}

mmt_status mmt_hash_file(const char *path, uint64_t *hash, uint64_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mmt_fail(errno == ENOENT ? MMT_STATUS_NOT_FOUND : MMT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = mmt_malloc(CHUNK);
    if (!buf) {
        close(fd);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    mmt_hash h;
    mmt_hash_init(&h, 0);
    mmt_status s = MMT_OK;
    for (;;) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            s = mmt_fail(MMT_STATUS_IO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (r == 0) break;
        mmt_hash_update(&h, buf, (size_t)r);
    }
    close(fd);
    mmt_free(buf);
    if (s == MMT_OK) {
        *hash = mmt_hash_final(&h);
        *size = h.total;
    }
    return s;
}

void mmt_hash_hex(uint64_t h, char out[17]) { snprintf(out, 17, "%016llx", (unsigned long long)h); }
