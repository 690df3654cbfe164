/*
 * peak_fma.c — the machine's FMA throughput ceiling: 12 independent ymm FMA chains (enough
 * to cover latency x ports), no memory traffic.
 *
 * fma_peak_gflops() is also linked into bench_sgemm, which measures the ceiling right before
 * each timing: this machine's clock (and what other processes leave of the second core)
 * moves by +-20% from minute to minute, so "% of peak measured just now" is the comparable
 * number. Built alone (make peak_fma) it prints the ceiling for 1 and 2 threads.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float run(long iters) {
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    __m256 c0 = _mm256_set1_ps(0.f), c1 = _mm256_set1_ps(1.f), c2 = _mm256_set1_ps(2.f),
           c3 = _mm256_set1_ps(3.f), c4 = _mm256_set1_ps(4.f), c5 = _mm256_set1_ps(5.f),
           c6 = _mm256_set1_ps(6.f), c7 = _mm256_set1_ps(7.f), c8 = _mm256_set1_ps(8.f),
           c9 = _mm256_set1_ps(9.f), c10 = _mm256_set1_ps(10.f), c11 = _mm256_set1_ps(11.f);
    for (long it = 0; it < iters; it++) {
        c0 = _mm256_fmadd_ps(c0, a, b), c1 = _mm256_fmadd_ps(c1, a, b);
        c2 = _mm256_fmadd_ps(c2, a, b), c3 = _mm256_fmadd_ps(c3, a, b);
        c4 = _mm256_fmadd_ps(c4, a, b), c5 = _mm256_fmadd_ps(c5, a, b);
        c6 = _mm256_fmadd_ps(c6, a, b), c7 = _mm256_fmadd_ps(c7, a, b);
        c8 = _mm256_fmadd_ps(c8, a, b), c9 = _mm256_fmadd_ps(c9, a, b);
        c10 = _mm256_fmadd_ps(c10, a, b), c11 = _mm256_fmadd_ps(c11, a, b);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    return s[0];
}

/* Best of 3 runs of `iters` iterations on `threads` threads, in GFLOP/s for all of them. */
double fma_peak_gflops(int threads, long iters) {
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        sink += run(iters);
        double sec = now() - t0;
        double gf = 12.0 * 16.0 * (double)iters * threads / sec * 1e-9;
        best = gf > best ? gf : best;
        if (sink == 12345) printf(" "); /* keeps the result alive */
    }
    return best;
}

/* The same with 16 zmm chains, for the AVX-512 kernel (compiled for AVX-512 whatever the
 * file's flags; call only where the CPU has it). */
__attribute__((target("avx512f"))) static float run512(long iters) {
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    __m512 c[16];
    for (int i = 0; i < 16; i++) c[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 16; i++) c[i] = _mm512_fmadd_ps(c[i], a, b);
    for (int i = 1; i < 16; i++) c[0] = _mm512_add_ps(c[0], c[i]);
    return c[0][0];
}

/* Best of 3 runs, zmm FMAs; 0 where the CPU has no AVX-512. */
double fma_peak512_gflops(int threads, long iters) {
    if (!__builtin_cpu_supports("avx512f")) return 0.0;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        sink += run512(iters);
        double sec = now() - t0;
        double gf = 16.0 * 32.0 * (double)iters * threads / sec * 1e-9;
        best = gf > best ? gf : best;
        if (sink == 12345) printf(" ");
    }
    return best;
}

#ifdef PEAK_FMA_MAIN
int main(void) {
    for (int t = 1; t <= 2; t++) {
        printf("FMA peak, %d thread(s): %.1f GFLOP/s (ymm)", t, fma_peak_gflops(t, 200000000));
        double z = fma_peak512_gflops(t, 100000000);
        if (z > 0) printf(", %.1f GFLOP/s (zmm)", z);
        printf("\n");
    }
    return 0;
}
#endif
