/*
 * qgemm_avxvnni.c — the int8 GEMM microkernel for AVX-VNNI (the VEX-encoded 256-bit
 * vpdpbusd of Alder Lake and later, and Zen 5), plugged into the driver of qgemm_avx2.c.
 * Built with -mavxvnni; the "avx2" table uses it only where cpuid reports AVX-VNNI.
 *
 * vpdpbusd sums four u8 x s8 products into each int32 lane without saturation, so x is fed
 * as x + 128 (the driver packs it so) and the tile store subtracts 128 * rowsum(W). The tile
 * is 6 rows x 16 columns: 12 accumulators, the two ymm of a W group and one broadcast row of
 * x use 15 of the 16 registers; one vpdpbusd does what the sign trick needs four
 * instructions for.
 */
#include <immintrin.h>
#include <string.h>

#include "ops/cpu/cpu_ops.h"

#define MR 6
#define NV 1
#define MB 96   /* 96 rows x 1024 k = 96 KiB of packed x, in L2 */
#define KGB 256 /* 1024 k per block: a 16-column panel slice is 16 KiB, in L1 */
_Static_assert(MR <= QGEMM_MR_MAX && NV <= QGEMM_NV_MAX && MB % MR == 0, "tile limits");
_Static_assert(MB * KGB * 4 <= QGEMM_PACK_A_BYTES, "the packed x block fits the stack buffer");

static inline int32_t load4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __attribute__((always_inline)) void tile_rows(int64_t kg, const uint8_t *ap,
                                                            const int8_t *bp, int32_t *out,
                                                            const int rows) {
    /* __v8si, the builtin's own type (qgemm_avx512vnni.c says why) */
    __v8si acc[MR][2];
    for (int i = 0; i < rows; i++) acc[i][0] = acc[i][1] = (__v8si)_mm256_setzero_si256();
    for (int64_t g = 0; g < kg; g++) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(bp + g * 64));
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(bp + g * 64 + 32));
        for (int i = 0; i < rows; i++) {
            const __m256i x = _mm256_set1_epi32(load4(ap + g * MR * 4 + i * 4));
            acc[i][0] = (__v8si)_mm256_dpbusd_avx_epi32((__m256i)acc[i][0], x, b0);
            acc[i][1] = (__v8si)_mm256_dpbusd_avx_epi32((__m256i)acc[i][1], x, b1);
        }
    }
    for (int i = 0; i < rows; i++) {
        _mm256_storeu_si256((__m256i *)(out + i * 16 * NV), (__m256i)acc[i][0]);
        _mm256_storeu_si256((__m256i *)(out + i * 16 * NV + 8), (__m256i)acc[i][1]);
    }
}

static void tile_avxvnni(int64_t kg, const uint8_t *ap, const int8_t *bp, int64_t panel_stride,
                         int rows, int np, int32_t *acc) {
    (void)panel_stride, (void)np; /* one panel per tile */
    switch (rows) {
    case 1: tile_rows(kg, ap, bp, acc, 1); break;
    case 2: tile_rows(kg, ap, bp, acc, 2); break;
    case 3: tile_rows(kg, ap, bp, acc, 3); break;
    case 4: tile_rows(kg, ap, bp, acc, 4); break;
    case 5: tile_rows(kg, ap, bp, acc, 5); break;
    default: tile_rows(kg, ap, bp, acc, 6); break;
    }
}

const qgemm_kernel qgemm_kernel_avxvnni = {
    .name = "avxvnni",
    .mr = MR, .nv = NV, .a_u8 = 1,
    .mb = MB, .kgb = KGB,
    .tile = tile_avxvnni,
    .store = qgemm_store_avx2,
};
