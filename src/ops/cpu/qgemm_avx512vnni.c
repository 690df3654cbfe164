/*
 * qgemm_avx512vnni.c — the int8 GEMM microkernel for AVX512_VNNI (512-bit vpdpbusd),
 * plugged into the driver of qgemm_avx2.c; built with -mavx512vnni and used by the "avx512"
 * table only where cpuid reports AVX512_VNNI (qgemm_avx512.c chooses).
 *
 * One zmm of W is one 64-byte group of a packed panel (16 rows x 4 k); x is fed as x + 128
 * and the tile store subtracts 128 * rowsum(W) (qgemm_avx2.c's file comment says why that is
 * exact). The tile is MR rows x NV panels (8 x 3: 24 accumulators, 3 vectors of W and one
 * broadcast row of x in 28 of the 32 zmm; 11 loads per 24 vpdpbusd), 64 multiply-adds per
 * vpdpbusd against 16 per fp32 FMA. Measured with dev/kernels/bench_qgemm on a Sapphire
 * Rapids core at the ViT-B/32 shapes: 730-820 Gop/s, 4.3-4.7x the avx512 table's fp32 GEMM;
 * 6 x 4 tiles were 10-15% slower, a 192-row block of x no better (dev/kernels/README.md).
 */
#include <immintrin.h>
#include <string.h>

#include "ops/cpu/cpu_ops.h"

#ifndef QGEMM512_MR
#define QGEMM512_MR 8
#endif
#ifndef QGEMM512_NV
#define QGEMM512_NV 3
#endif
#define MR QGEMM512_MR
#define NV QGEMM512_NV
#ifndef QGEMM512_MB
#define QGEMM512_MB 96 /* 96 rows x 1024 k = 96 KiB of packed x, in L2 */
#endif
#ifndef QGEMM512_KGB
#define QGEMM512_KGB 256 /* 1024 k per block */
#endif
#define MB QGEMM512_MB
#define KGB QGEMM512_KGB
_Static_assert(MR <= QGEMM_MR_MAX && NV <= QGEMM_NV_MAX && MB % MR == 0, "tile limits");
_Static_assert(MB * KGB * 4 <= QGEMM_PACK_A_BYTES, "the packed x block fits the stack buffer");

static inline int32_t load4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __attribute__((always_inline)) void tile_body(int64_t kg, const uint8_t *ap,
                                                            const int8_t *bp, int64_t ps,
                                                            int32_t *out, const int rows,
                                                            const int np) {
    /* __v16si, the builtin's own type: with __m512i (long long lanes) every update converts
     * between vector types and GCC 12 then keeps the array in memory, storing it each
     * iteration (twice the instructions, seen in objdump). */
    __v16si acc[MR][NV];
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < np; j++) acc[i][j] = (__v16si)_mm512_setzero_si512();
    for (int64_t g = 0; g < kg; g++) {
        __m512i b[NV];
        for (int j = 0; j < np; j++) b[j] = _mm512_loadu_si512(bp + j * ps + g * 64);
        for (int i = 0; i < rows; i++) {
            const __m512i x = _mm512_set1_epi32(load4(ap + g * MR * 4 + i * 4));
            for (int j = 0; j < np; j++)
                acc[i][j] = (__v16si)_mm512_dpbusd_epi32((__m512i)acc[i][j], x, b[j]);
        }
    }
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < np; j++)
            _mm512_storeu_si512(out + i * 16 * NV + j * 16, (__m512i)acc[i][j]);
}

/* Specializations for every (rows, np), so the loops above unroll into registers. */
static inline __attribute__((always_inline)) void tile_np(int64_t kg, const uint8_t *ap,
                                                          const int8_t *bp, int64_t ps,
                                                          int32_t *out, const int rows, int np) {
    switch (np) {
    case 1: tile_body(kg, ap, bp, ps, out, rows, 1); break;
#if NV >= 2
    case 2: tile_body(kg, ap, bp, ps, out, rows, 2); break;
#endif
#if NV >= 3
    case 3: tile_body(kg, ap, bp, ps, out, rows, 3); break;
#endif
#if NV >= 4
    case 4: tile_body(kg, ap, bp, ps, out, rows, 4); break;
#endif
    default: break;
    }
}

static void tile_avx512vnni(int64_t kg, const uint8_t *ap, const int8_t *bp, int64_t ps, int rows,
                            int np, int32_t *acc) {
    if (rows == MR && np == NV) { /* the common case first */
        tile_body(kg, ap, bp, ps, acc, MR, NV);
        return;
    }
    switch (rows) {
    case 1: tile_np(kg, ap, bp, ps, acc, 1, np); break;
    case 2: tile_np(kg, ap, bp, ps, acc, 2, np); break;
    case 3: tile_np(kg, ap, bp, ps, acc, 3, np); break;
    case 4: tile_np(kg, ap, bp, ps, acc, 4, np); break;
#if MR >= 5
    case 5: tile_np(kg, ap, bp, ps, acc, 5, np); break;
#endif
#if MR >= 6
    case 6: tile_np(kg, ap, bp, ps, acc, 6, np); break;
#endif
#if MR >= 7
    case 7: tile_np(kg, ap, bp, ps, acc, 7, np); break;
#endif
#if MR >= 8
    case 8: tile_np(kg, ap, bp, ps, acc, 8, np); break;
#endif
    default: break;
    }
}

const qgemm_kernel qgemm_kernel_avx512vnni = {
    .name = "avx512vnni",
    .mr = MR, .nv = NV, .a_u8 = 1,
    .mb = MB, .kgb = KGB,
    .tile = tile_avx512vnni,
    .store = qgemm_store_avx512,
};
