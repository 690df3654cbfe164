/* cpu.h — run-time CPU feature detection used to pick kernels. */
#ifndef MMT_CORE_CPU_H
#define MMT_CORE_CPU_H

typedef struct mmt_cpu_features {
    int avx2;    /* AVX2 + FMA, with OS support for YMM state */
    int avx512;  /* AVX-512 F/BW/DQ/VL, with OS support for ZMM state */
    int avx512_vnni; /* avx512 and AVX512_VNNI (512-bit vpdpbusd) */
    int avx_vnni;    /* avx2 and AVX-VNNI (the VEX-encoded 256-bit vpdpbusd) */
} mmt_cpu_features;

mmt_cpu_features mmt_cpu_detect(void);

#endif
