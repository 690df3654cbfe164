/*
 * bench_rows.c — the few-rows GEMM path (decoding) against the packed path, per kernel.
 *
 *   make bench_rows && ./bench_rows [threads] [max_m]
 *
 * y (M, N) = x (M, K) @ w (N, K)^T at the GIT decoder's shapes (768 -> 768, 768 -> 3072,
 * 3072 -> 768, the 768 -> 30522 logits) for M = 1..max_m, through sgemm_run with the avx2
 * and avx512 kernels, once as shipped (rows path for M <= rows_max_m) and once with the rows
 * path switched off (packed). As in a decoding step, each call reads weights no other call
 * read recently: the calls cycle through copies of w adding up to at least 256 MiB, so w
 * comes from memory (or the L3), never from L2. Each cell is the median of 15 calls after 2
 * warm-ups; GB/s counts w's bytes only.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu.h"
#include "ops/cpu/cpu_ops.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds of one call of kern on (M, K, N), cycling through the n_w copies of w. */
static double time_path(const sgemm_kernel *kern, float *y, const float *x, float **w, int n_w,
                        int64_t M, int64_t K, int64_t N, int threads) {
    enum { RUNS = 15, WARM = 2 };
    double t[RUNS];
    sgemm_store st = {1.0f, 0.0f, NULL};
    for (int r = 0; r < RUNS + WARM; r++) {
        sgemm_view a = {x, K, 1}, b = {w[r % n_w], 1, K};
        double t0 = now();
        sgemm_run(kern, M, N, K, a, b, y, N, st, threads);
        if (r >= WARM) t[r - WARM] = now() - t0;
    }
    qsort(t, RUNS, sizeof t[0], cmp_double);
    return t[RUNS / 2];
}

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 2;
    const int64_t max_m = argc > 2 ? atoll(argv[2]) : 16;
    static const int64_t shapes[][2] = {{768, 768}, {768, 3072}, {3072, 768}, {768, 30522}};
    const sgemm_kernel *kernels[2] = {&sgemm_kernel_avx2, &sgemm_kernel_avx512};
    const int n_kernels = mmt_cpu_detect().avx512 ? 2 : 1;
    omp_set_num_threads(threads);
    printf("threads %d; ms per call (GB/s of w), median of 15\n", threads);
    printf("%-12s %3s", "K x N", "M");
    for (int k = 0; k < n_kernels; k++) printf("  %10s-rows %13s-packed", kernels[k]->name, kernels[k]->name);
    printf("\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t K = shapes[s][0], N = shapes[s][1];
        const size_t bytes = (size_t)(N * K) * sizeof(float);
        int n_w = (int)((256u << 20) / bytes) + 1;
        float **w = malloc((size_t)n_w * sizeof *w);
        for (int i = 0; i < n_w; i++) {
            w[i] = malloc(bytes);
            for (int64_t j = 0; j < N * K; j++) w[i][j] = (float)((j * 7 + i) % 13) * 0.01f;
        }
        float *x = malloc((size_t)(max_m * K) * sizeof(float));
        float *y = malloc((size_t)(max_m * N) * sizeof(float));
        for (int64_t j = 0; j < max_m * K; j++) x[j] = (float)(j % 5) * 0.1f;
        for (int64_t M = 1; M <= max_m; M++) {
            printf("%5lldx%-6lld %3lld", (long long)K, (long long)N, (long long)M);
            for (int k = 0; k < n_kernels; k++) {
                sgemm_kernel packed = *kernels[k];
                packed.rows_max_m = 0;
                double tr = M <= kernels[k]->rows_max_m
                                ? time_path(kernels[k], y, x, w, n_w, M, K, N, threads) : 0.0;
                double tp = time_path(&packed, y, x, w, n_w, M, K, N, threads);
                if (tr > 0) printf("  %7.3f (%5.1f)", tr * 1e3, bytes / tr * 1e-9);
                else printf("  %15s", "-");
                printf("  %10.3f (%5.1f)", tp * 1e3, bytes / tp * 1e-9);
            }
            printf("\n");
            fflush(stdout);
        }
        for (int i = 0; i < n_w; i++) free(w[i]);
        free(w), free(x), free(y);
    }
    return 0;
}
