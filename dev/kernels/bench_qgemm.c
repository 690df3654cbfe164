/*
 * bench_qgemm.c — times the quantized-weight ops against the fp32 GEMM at CLIP ViT-B/32
 * batch-32 shapes (M = 50 tokens x 32 images = 1600 rows; K x N = 768 x 768, 768 x 3072 and
 * 3072 x 768), at decoding sizes (M = 1..8) and at M = 32, 64: per table ("avx2", "avx512") matmul_fwd
 * (fp32), s8_matmul_fwd (int8 weights and activations), s8_quantize_rows + s8_matmul_fwd
 * (what an int8 linear layer costs), qmat_matmul_fwd on int8 and NF4 weights (dequantized
 * panel by panel into the fp32 GEMM); and each int8 microkernel this CPU has through the
 * shared driver. Ratios are fp32 time / that op's time.
 *
 *   make bench_qgemm && ./bench_qgemm [threads] [big|small]   (big: M = 1600 only)
 *
 * Each op runs until 0.3 s have passed (at least 3 runs); the best time is printed. With one
 * thread the times are the thread's CPU time (steadier on a shared machine).
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"

/* With one thread the clock is the thread's CPU time, so time spent descheduled on a busy
 * machine does not count; with more, wall time. */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now(void) {
    struct timespec ts;
    clock_gettime(bench_clock, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float frand(void) { return (float)rand() / RAND_MAX * 2.0f - 1.0f; }

/* Everything one shape needs, made once. */
typedef struct bench_case {
    int64_t M, K, N;
    float *x, *y, *w, *bias, *xs;
    int8_t *xq;
    mmt_qmat s8, nf4;
} bench_case;

static const float nf4_code[16] = {-1.0f, -0.6962f, -0.5251f, -0.3949f, -0.2844f, -0.1848f,
                                   -0.0911f, 0.0f, 0.0796f, 0.1609f, 0.2461f, 0.3379f,
                                   0.4407f, 0.5626f, 0.7230f, 1.0f};

static bench_case make_case(int64_t M, int64_t K, int64_t N) {
    bench_case c = {.M = M, .K = K, .N = N};
    c.x = malloc((size_t)(M * K) * sizeof(float));
    c.y = malloc((size_t)(M * N) * sizeof(float));
    c.w = malloc((size_t)(N * K) * sizeof(float));
    c.bias = malloc((size_t)N * sizeof(float));
    c.xs = malloc((size_t)M * sizeof(float));
    c.xq = malloc((size_t)(M * K));
    for (int64_t i = 0; i < M * K; i++) c.x[i] = frand();
    for (int64_t i = 0; i < N * K; i++) c.w[i] = frand() * 0.05f;
    for (int64_t i = 0; i < N; i++) c.bias[i] = frand();
    int8_t *s8 = malloc((size_t)(N * K));
    float *scale = malloc((size_t)N * sizeof(float));
    mmt_ops_ref()->s8_quantize_rows(s8, scale, c.w, N, K);
    void *packed = aligned_alloc(64, (mmt_ops_ref()->s8_packed_bytes(N, K) + 63) / 64 * 64);
    mmt_ops_ref()->s8_pack(packed, s8, N, K);
    c.s8 = (mmt_qmat){.type = MMT_QMAT_S8, .rows = N, .cols = K, .s8 = s8, .scale = scale,
                      .s8_packed = packed};
    uint8_t *nf4 = malloc((size_t)(N * K / 2 + 1));
    for (int64_t i = 0; i < N * K / 2 + 1; i++) nf4[i] = (uint8_t)rand();
    float *absmax = malloc((size_t)(N * K / 64 + 1) * sizeof(float));
    for (int64_t i = 0; i < N * K / 64 + 1; i++) absmax[i] = 0.05f;
    c.nf4 = (mmt_qmat){.type = MMT_QMAT_NF4, .rows = N, .cols = K, .nf4 = nf4, .absmax = absmax,
                       .code = nf4_code, .blocksize = 64};
    mmt_ops_ref()->s8_quantize_rows(c.xq, c.xs, c.x, M, K);
    return c;
}

enum { OP_FP32, OP_S8, OP_Q_S8, OP_QMAT_S8, OP_QMAT_NF4, OP_KERNEL };

static void run(int op, const mmt_ops *o, const qgemm_kernel *k, bench_case *c) {
    switch (op) {
    case OP_FP32: o->matmul_fwd(c->y, c->x, c->w, c->bias, c->M, c->K, c->N); break;
    case OP_S8: o->s8_matmul_fwd(c->y, c->xq, c->xs, &c->s8, c->bias, c->M); break;
    case OP_Q_S8:
        o->s8_quantize_rows(c->xq, c->xs, c->x, c->M, c->K);
        o->s8_matmul_fwd(c->y, c->xq, c->xs, &c->s8, c->bias, c->M);
        break;
    case OP_QMAT_S8: o->qmat_matmul_fwd(c->y, c->x, &c->s8, c->bias, c->M); break;
    case OP_QMAT_NF4: o->qmat_matmul_fwd(c->y, c->x, &c->nf4, c->bias, c->M); break;
    default: qgemm_matmul(k, c->y, c->xq, c->xs, &c->s8, c->bias, c->M, omp_get_max_threads()); break;
    }
}

static double best_time(int op, const mmt_ops *o, const qgemm_kernel *k, bench_case *c) {
    double best = 1e30, start = now();
    for (int r = 0; r < 3 || now() - start < 0.3; r++) {
        double t0 = now();
        run(op, o, k, c);
        double t = now() - t0;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc > 1) omp_set_num_threads(atoi(argv[1]));
    if (omp_get_max_threads() == 1) bench_clock = CLOCK_THREAD_CPUTIME_ID;
    const mmt_cpu_features cpu = mmt_cpu_detect();
    const qgemm_kernel *kernels[3];
    int nk = 0;
    if (cpu.avx2) kernels[nk++] = &qgemm_kernel_avx2;
    if (cpu.avx_vnni) kernels[nk++] = &qgemm_kernel_avxvnni;
    if (cpu.avx512_vnni) kernels[nk++] = &qgemm_kernel_avx512vnni;
    static const int64_t shapes[][3] = {{1600, 768, 768}, {1600, 768, 3072}, {1600, 3072, 768},
                                        {1, 768, 768},    {2, 768, 768},     {4, 768, 768},
                                        {8, 768, 768},    {1, 768, 3072},    {8, 768, 3072},
                                        {32, 768, 768},   {64, 768, 3072}};
    printf("threads %d; times in ms (best of >= 0.3 s); x = fp32 matmul_fwd time / op time\n",
           omp_get_max_threads());
    const char *only = argc > 2 ? argv[2] : "";
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        if ((!strcmp(only, "big") && shapes[s][0] < 1600) || (!strcmp(only, "small") && shapes[s][0] >= 1600))
            continue;
        bench_case c = make_case(shapes[s][0], shapes[s][1], shapes[s][2]);
        printf("\nM=%lld K=%lld N=%lld\n", (long long)c.M, (long long)c.K, (long long)c.N);
        const char *tables[2] = {"avx2", "avx512"};
        for (int t = 0; t < 2; t++) {
            const mmt_ops *o = mmt_ops_cpu_named(tables[t]);
            if (!o) continue;
            const double f = best_time(OP_FP32, o, NULL, &c);
            const double s8 = best_time(OP_S8, o, NULL, &c), q = best_time(OP_Q_S8, o, NULL, &c);
            const double qs = best_time(OP_QMAT_S8, o, NULL, &c), qn = best_time(OP_QMAT_NF4, o, NULL, &c);
            printf("  %-6s fp32 %8.3f | s8 %8.3f (%4.2fx) | quant+s8 %8.3f (%4.2fx) | qmat s8 %8.3f "
                   "(%4.2fx) | qmat nf4 %8.3f (%4.2fx)\n",
                   tables[t], f * 1e3, s8 * 1e3, f / s8, q * 1e3, f / q, qs * 1e3, f / qs, qn * 1e3, f / qn);
        }
        const double f512 = best_time(OP_FP32, mmt_ops_cpu(), NULL, &c);
        for (int k = 0; k < nk; k++) {
            const double tk = best_time(OP_KERNEL, NULL, kernels[k], &c);
            const double gops = 2.0 * c.M * c.N * c.K / tk * 1e-9;
            printf("  kernel %-10s %8.3f ms  %7.1f Gop/s  (%4.2fx the %s fp32 GEMM)\n", kernels[k]->name,
                   tk * 1e3, gops, f512 / tk, mmt_ops_cpu()->name);
        }
    }
    return 0;
}
