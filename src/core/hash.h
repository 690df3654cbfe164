/*
 * hash.h — a fast non-cryptographic 64-bit checksum for files and records.
 *
 * Used for run identities (model and data fingerprints) and checkpoint manifests: it must
 * catch truncation, torn writes and swapped files, not an attacker. Four independent lanes
 * of multiply-rotate over 32-byte blocks keep it at memory speed on one core; the lanes,
 * the tail and the length are folded together at the end. Incremental use (init / update /
 * final) gives the same value as one call over the concatenated bytes.
 */
#ifndef MMT_CORE_HASH_H
#define MMT_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct mmt_hash {
    uint64_t lane[4];
    uint64_t total;            /* bytes seen */
    unsigned char block[32];   /* a partial block */
    size_t fill;
} mmt_hash;

void mmt_hash_init(mmt_hash *h, uint64_t seed);
void mmt_hash_update(mmt_hash *h, const void *data, size_t len);
uint64_t mmt_hash_final(const mmt_hash *h);
uint64_t mmt_hash64(const void *data, size_t len, uint64_t seed);

/* The checksum of a whole file (read in chunks); *size gets its length. */
mmt_status mmt_hash_file(const char *path, uint64_t *hash, uint64_t *size);

/* 16 lowercase hex digits and a NUL. */
void mmt_hash_hex(uint64_t h, char out[17]);

#endif
