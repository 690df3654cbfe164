/*
 * bench_ops.c — times every op of the "ref" and "avx2" tables at CLIP ViT-B/32 batch-32
 * shapes (vision tower: T = 50, C = 768, 12 heads; text tower: T = 77, C = 512, 8 heads,
 * causal), so a slow non-GEMM op shows up before it shows up in a profile.
 *
 *   make bench_ops && ./bench_ops [threads]
 *
 * Each op runs until 0.3 s have passed (at least 2 runs); the best time is printed.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ops/ops.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *randoms(int64_t n) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
    return p;
}

enum { B = 32, T = 50, C = 768, H = 12, TT = 77, CT = 512, HT = 8, V = 49408 };
static float *x, *y, *w, *bias, *att, *img;
static int32_t *ids;

typedef struct op_case {
    const char *name;
    void (*run)(const mmt_ops *ops);
} op_case;

static void run_matmul(const mmt_ops *o) { o->matmul_fwd(y, x, w, bias, B * T, C, C); }
static void run_layernorm(const mmt_ops *o) { o->layernorm_fwd(y, NULL, NULL, x, w, bias, B * T, C, 1e-5f); }
static void run_softmax(const mmt_ops *o) { o->softmax_fwd(y, x, B * H * T, T); }
static void run_gelu(const mmt_ops *o) { o->gelu_fwd(y, x, B * T * 4 * C); }
static void run_quick_gelu(const mmt_ops *o) { o->quick_gelu_fwd(y, x, B * T * 4 * C); }
static void run_add(const mmt_ops *o) { o->add_fwd(y, x, w, B * T * C); }
static void run_attention(const mmt_ops *o) { o->attention_fwd(y, att, x, w, bias, B, T, H, C / H, 0); }
static void run_attention_text(const mmt_ops *o) { o->attention_fwd(y, att, x, w, bias, B, TT, HT, CT / HT, 1); }
static void run_embedding(const mmt_ops *o) { o->embedding_fwd(y, ids, w, B * TT, CT); }
static void run_patchify(const mmt_ops *o) { o->patchify_fwd(y, img, B, 3, 224, 224, 32); }

static const op_case cases[] = {
    {"matmul 1600x768x768", run_matmul},
    {"layernorm 1600x768", run_layernorm},
    {"softmax 19200x50", run_softmax},
    {"gelu 1600x3072", run_gelu},
    {"quick_gelu 1600x3072", run_quick_gelu},
    {"add 1600x768", run_add},
    {"attention 32x50x12x64", run_attention},
    {"attention causal 32x77x8x64", run_attention_text},
    {"embedding 2464x512", run_embedding},
    {"patchify 32x3x224x224/32", run_patchify},
};

int main(int argc, char **argv) {
    if (argc > 1) omp_set_num_threads(atoi(argv[1]));
    const int64_t big = (int64_t)B * T * 4 * C; /* largest operand: the MLP activation */
    x = randoms(big), y = randoms(big), bias = randoms(big);
    w = randoms((int64_t)V * CT > big ? (int64_t)V * CT : big);
    att = randoms((int64_t)B * H * TT * TT);
    img = randoms((int64_t)B * 3 * 224 * 224);
    ids = malloc(B * TT * sizeof(int32_t));
    for (int i = 0; i < B * TT; i++) ids[i] = rand() % V;
    const mmt_ops *tables[2] = {mmt_ops_ref(), mmt_ops_cpu_named("avx2")};
    printf("%-30s %10s %10s %8s   (threads: %d)\n", "op", "ref ms", "avx2 ms", "speedup",
           omp_get_max_threads());
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double best[2] = {1e30, 1e30};
        for (int t = 0; t < 2 && tables[t]; t++) {
            cases[c].run(tables[t]);
            double start = now();
            for (int runs = 0; runs < 2 || now() - start < 0.3; runs++) {
                double t0 = now();
                cases[c].run(tables[t]);
                double s = now() - t0;
                best[t] = s < best[t] ? s : best[t];
            }
        }
        printf("%-30s %10.3f %10.3f %7.1fx\n", cases[c].name, best[0] * 1e3, best[1] * 1e3,
               best[0] / best[1]);
    }
    return 0;
}
