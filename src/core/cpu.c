/* cpu.c — cpuid/xgetbv probing, so a kernel is only used where the CPU and OS allow it. */
#include "core/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long read_xcr0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

mmt_cpu_features mmt_cpu_detect(void) {
    mmt_cpu_features f = {0, 0, 0, 0};
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return f;
    unsigned long long xcr0 = read_xcr0();
    int ymm_ok = (xcr0 & 0x6) == 0x6;
    int zmm_ok = (xcr0 & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
        avx512vl = (b >> 31) & 1;
    f.avx2 = ymm_ok && avx2 && fma;
    f.avx512 = f.avx2 && zmm_ok && avx512f && avx512dq && avx512bw && avx512vl;
    f.avx512_vnni = f.avx512 && ((c >> 11) & 1);
    if (a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) /* leaf 7's max subleaf is in eax */
        f.avx_vnni = f.avx2 && ((a >> 4) & 1);
    return f;
}
#else
mmt_cpu_features mmt_cpu_detect(void) {
    mmt_cpu_features f = {0, 0, 0, 0};
    return f;
}
#endif
