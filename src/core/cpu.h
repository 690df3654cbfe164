/* cpu.h — run-time CPU feature detection used to pick kernels. */
#ifndef MMT_CORE_CPU_H
#define MMT_CORE_CPU_H

typedef struct mmt_cpu_features {
    int avx2;    /* AVX2 + FMA, with OS support for YMM state */
    int avx512;  /* AVX-512 F/BW/DQ/VL, with OS support for ZMM state */
} mmt_cpu_features;

mmt_cpu_features mmt_cpu_detect(void);

#endif
