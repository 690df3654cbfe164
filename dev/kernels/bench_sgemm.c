/*
 * bench_sgemm.c — times the sgemm versions on the CLIP shapes, on 1 and 2 threads.
 *
 *   make && ./bench_sgemm [--threads 1,2] [--shapes vit|text|all|MxKxN] [v1 v2 v3 v4 openblas]
 *
 * v4 (AVX-512) needs an AVX-512 CPU: on others leave it off the command line.
 *
 * Every version is first checked against v1 on odd shapes (tails of every block); then each
 * (shape, threads, version) is run until 0.5 s have passed (at least 3 runs, after one
 * warm-up) and the best time is reported as GFLOP/s = 2 M K N / t; on one thread also per
 * second of the thread's CPU time (cpu-GF/s), which other load on the machine does not skew.
 * Before each (shape, threads) group the FMA ceiling for that many threads is measured
 * (peak_fma.c) and every result is also given as a percentage of it ("%peak"): the clock
 * and the load from other processes drift, the ratio much less. v1 is only timed on
 * the smallest shapes (it takes seconds per call). "openblas" is cblas_sgemm(RowMajor,
 * NoTrans, Trans) with bias added separately, present when built with OPENBLAS=1.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sgemm_versions.h"

double fma_peak_gflops(int threads, long iters);    /* peak_fma.c */
double fma_peak512_gflops(int threads, long iters); /* 0 without AVX-512 */

/* v4 is AVX-512 code: usable only where the CPU has it. */
static int version_runs(const char *name) {
    return strcmp(name, "v4") != 0 || __builtin_cpu_supports("avx512f");
}

#ifdef WITH_OPENBLAS
#include <cblas.h>
void openblas_set_num_threads(int);
static void sgemm_openblas(float *y, const float *x, const float *w, const float *bias,
                           int64_t M, int64_t K, int64_t N) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, x, (int)K,
                w, (int)K, 0.0f, y, (int)N);
    if (bias)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) y[i * N + j] += bias[j];
}
#endif

typedef struct version {
    const char *name;
    sgemm_fn fn;
    double max_flops; /* skip shapes bigger than this (v1) */
} version;

static const version versions[] = {
    {"v1", sgemm_v1, 2.0e9},
    {"v2", sgemm_v2, 1e30},
    {"v3", sgemm_v3, 1e30},
    {"v4", sgemm_v4, 1e30},
#ifdef WITH_OPENBLAS
    {"openblas", sgemm_openblas, 1e30},
#endif
};
#define NVERSIONS ((int)(sizeof versions / sizeof versions[0]))

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of the calling thread: on one thread it excludes time the thread was descheduled
 * (this machine is shared, so wall time can include other processes' turns). */
static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *randoms(int64_t n) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
    return p;
}

static void set_threads(int t) {
    omp_set_num_threads(t);
#ifdef WITH_OPENBLAS
    openblas_set_num_threads(t);
#endif
}

/* Max |y - y_v1| / (sqrt(K) eps sum|x w|) on an odd shape: must be small for every version. */
static int check_versions(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {37, 300, 53}, {130, 770, 35}};
    int ok = 1;
    for (int s = 0; s < 3; s++) {
        int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *x = randoms(M * K), *w = randoms(N * K), *b = randoms(N);
        float *y0 = malloc(M * N * sizeof(float)), *y = malloc(M * N * sizeof(float));
        sgemm_v1(y0, x, w, b, M, K, N);
        for (int v = 1; v < NVERSIONS; v++) {
            if (!version_runs(versions[v].name)) continue;
            versions[v].fn(y, x, w, b, M, K, N);
            double worst = 0;
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double mag = fabs(b[j]);
                    for (int64_t k = 0; k < K; k++) mag += fabs((double)x[i * K + k] * w[j * K + k]);
                    worst = fmax(worst, fabs(y[i * N + j] - y0[i * N + j]) / (mag * sqrt((double)K) * 1.19e-7));
                }
            if (worst > 2.0) {
                printf("MISMATCH %s at %lldx%lldx%lld: %.2f\n", versions[v].name, (long long)M,
                       (long long)K, (long long)N, worst);
                ok = 0;
            }
        }
        free(x), free(w), free(b), free(y0), free(y);
    }
    return ok;
}

/* Best wall time of the runs; *cpu gets the best thread CPU time (meaningful on 1 thread). */
static double time_one(sgemm_fn fn, float *y, const float *x, const float *w, const float *b,
                       int64_t M, int64_t K, int64_t N, double *cpu) {
    fn(y, x, w, b, M, K, N); /* warm-up */
    double best = 1e30, best_cpu = 1e30, start = now();
    for (int runs = 0; runs < 3 || now() - start < 0.5; runs++) {
        double t0 = now(), c0 = thread_cpu();
        fn(y, x, w, b, M, K, N);
        double t = now() - t0, c = thread_cpu() - c0;
        best = t < best ? t : best;
        best_cpu = c < best_cpu ? c : best_cpu;
    }
    *cpu = best_cpu;
    return best;
}

int main(int argc, char **argv) {
    static const int64_t vit[][3] = {{1600, 768, 768}, {1600, 768, 3072}, {1600, 3072, 768},
                                     {1600, 768, 512}};
    static const int64_t text[][3] = {{2464, 512, 512}, {2464, 512, 2048}, {2464, 2048, 512}};
    int64_t shapes[16][3];
    int nshapes = 0, threads[4] = {1, 2}, nthreads = 2, want[8], nwant = 0;
    const char *which = "all";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            nthreads = 0;
            for (char *t = strtok(argv[++i], ","); t && nthreads < 4; t = strtok(NULL, ","))
                threads[nthreads++] = atoi(t);
        } else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) {
            which = argv[++i];
        } else {
            for (int v = 0; v < NVERSIONS; v++)
                if (!strcmp(argv[i], versions[v].name) && nwant < 8) want[nwant++] = v;
        }
    }
    if (nwant == 0)
        for (int v = 0; v < NVERSIONS; v++) want[nwant++] = v;
    long long m, k, n;
    if (sscanf(which, "%lldx%lldx%lld", &m, &k, &n) == 3) {
        shapes[0][0] = m, shapes[0][1] = k, shapes[0][2] = n, nshapes = 1;
    }
    if (!strcmp(which, "vit") || !strcmp(which, "all"))
        for (int s = 0; s < 4; s++) memcpy(shapes[nshapes++], vit[s], sizeof vit[s]);
    if (!strcmp(which, "text") || !strcmp(which, "all"))
        for (int s = 0; s < 3; s++) memcpy(shapes[nshapes++], text[s], sizeof text[s]);

    set_threads(2);
    if (!check_versions()) return 1;
    printf("%-18s %-9s %7s %10s %9s %6s %9s\n", "M x K x N", "version", "threads", "ms",
           "GFLOP/s", "%peak", "cpu-GF/s");
    for (int s = 0; s < nshapes; s++) {
        int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        double flops = 2.0 * M * K * N;
        float *x = randoms(M * K), *w = randoms(N * K), *b = randoms(N);
        float *y = malloc(M * N * sizeof(float));
        char label[32];
        snprintf(label, sizeof label, "%lldx%lldx%lld", (long long)M, (long long)K, (long long)N);
        for (int t = 0; t < nthreads; t++) {
            set_threads(threads[t]);
            double peak = fma_peak_gflops(threads[t], 10000000);
            double peak512 = fma_peak512_gflops(threads[t], 5000000);
            printf("%-18s %-9s %7d %10s %9.1f\n", label, "fma-peak", threads[t], "", peak);
            if (peak512 > 0)
                printf("%-18s %-9s %7d %10s %9.1f\n", label, "fma-zmm", threads[t], "", peak512);
            for (int i = 0; i < nwant; i++) {
                const version *v = &versions[want[i]];
                if (flops > v->max_flops || !version_runs(v->name)) continue;
                double cpu, sec = time_one(v->fn, y, x, w, b, M, K, N, &cpu);
                double ceiling = strcmp(v->name, "v4") == 0 ? peak512 : peak; /* its own ISA's */
                printf("%-18s %-9s %7d %10.2f %9.1f %5.0f%%", label, v->name, threads[t],
                       sec * 1e3, flops / sec * 1e-9, 100.0 * flops / sec * 1e-9 / ceiling);
                if (threads[t] == 1) printf(" %9.1f", flops / cpu * 1e-9);
                printf("\n");
                fflush(stdout);
            }
        }
        free(x), free(w), free(b), free(y);
    }
    return 0;
}
