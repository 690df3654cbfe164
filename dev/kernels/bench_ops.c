/*
 * bench_ops.c — times every op of the "ref" and "avx2" tables at CLIP ViT-B/32 batch-32
 * shapes (vision tower: T = 50, C = 768, 12 heads; text tower: T = 77, C = 512, 8 heads,
 * causal), forward and backward, so a slow non-GEMM op shows up before it shows up in a
 * profile. The backward kernels accumulate, so repeated runs just keep adding.
 *
 *   make bench_ops && ./bench_ops [threads] [filter]   (filter: run ops whose name has it)
 *
 * Each op runs until 0.3 s have passed (at least 2 runs); the best time is printed.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
static float *x, *y, *w, *bias, *att, *img, *g1, *g2, *g3, *datt, *mean, *rstd;
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
/* LoRA's low-rank products at r = 16: x @ A^T, and the A gradient dA = dz^T @ x. */
static void run_gemm_lora(const mmt_ops *o) { o->gemm(0, 1, B * T, 16, C, 1.0f, x, C, w, C, 0.0f, y, 16); }
static void run_gemm_lora_grad(const mmt_ops *o) { o->gemm(1, 0, 16, C, B * T, 1.0f, x, 16, w, C, 1.0f, y, C); }
static void run_matmul_bwd(const mmt_ops *o) { o->matmul_bwd(g1, g2, g3, x, y, w, B * T, C, C); }
static void run_matmul_bwd_dx(const mmt_ops *o) { o->matmul_bwd(g1, NULL, NULL, x, y, w, B * T, C, C); }
static void run_layernorm_bwd(const mmt_ops *o) { o->layernorm_bwd(g1, g2, g3, y, x, mean, rstd, w, B * T, C); }
static void run_softmax_bwd(const mmt_ops *o) { o->softmax_bwd(g1, x, y, B * H * T, T); }
static void run_gelu_bwd(const mmt_ops *o) { o->gelu_bwd(g1, y, x, B * T * 4 * C); }
static void run_quick_gelu_bwd(const mmt_ops *o) { o->quick_gelu_bwd(g1, y, x, B * T * 4 * C); }
static void run_attention_bwd(const mmt_ops *o) {
    o->attention_bwd(g1, g2, g3, datt, y, x, w, bias, att, B, T, H, C / H, 0);
}
static void run_attention_text_bwd(const mmt_ops *o) {
    o->attention_bwd(g1, g2, g3, datt, y, x, w, bias, att, B, TT, HT, CT / HT, 1);
}
static void run_embedding_bwd(const mmt_ops *o) { o->embedding_bwd(w, y, ids, B * TT, CT); }
static void run_patchify_bwd(const mmt_ops *o) { o->patchify_bwd(img, y, B, 3, 224, 224, 32); }

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
    {"gemm 1600x768 @ (16x768)^T", run_gemm_lora},
    {"gemm (1600x16)^T @ 1600x768", run_gemm_lora_grad},
    {"matmul_bwd 1600x768x768", run_matmul_bwd},
    {"matmul_bwd dx only", run_matmul_bwd_dx},
    {"layernorm_bwd 1600x768", run_layernorm_bwd},
    {"softmax_bwd 19200x50", run_softmax_bwd},
    {"gelu_bwd 1600x3072", run_gelu_bwd},
    {"quick_gelu_bwd 1600x3072", run_quick_gelu_bwd},
    {"attention_bwd 32x50x12x64", run_attention_bwd},
    {"attention_bwd causal 32x77x8x64", run_attention_text_bwd},
    {"embedding_bwd 2464x512", run_embedding_bwd},
    {"patchify_bwd 32x3x224x224/32", run_patchify_bwd},
};

int main(int argc, char **argv) {
    if (argc > 1) omp_set_num_threads(atoi(argv[1]));
    const char *filter = argc > 2 ? argv[2] : "";
    const int64_t big = (int64_t)B * T * 4 * C; /* largest operand: the MLP activation */
    x = randoms(big), y = randoms(big), bias = randoms(big);
    w = randoms((int64_t)V * CT > big ? (int64_t)V * CT : big);
    att = randoms((int64_t)B * H * TT * TT);
    img = randoms((int64_t)B * 3 * 224 * 224);
    g1 = randoms(big), g2 = randoms(big), g3 = randoms(big);
    datt = randoms((int64_t)B * H * TT * TT);
    mean = randoms(B * T), rstd = randoms(B * T);
    ids = malloc(B * TT * sizeof(int32_t));
    for (int i = 0; i < B * TT; i++) ids[i] = rand() % V;
    const mmt_ops *tables[2] = {mmt_ops_ref(), mmt_ops_cpu_named("avx2")};
    printf("%-34s %10s %10s %8s   (threads: %d)\n", "op", "ref ms", "avx2 ms", "speedup",
           omp_get_max_threads());
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (!strstr(cases[c].name, filter)) continue;
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
        printf("%-34s %10.3f %10.3f %7.1fx\n", cases[c].name, best[0] * 1e3, best[1] * 1e3,
               best[0] / best[1]);
    }
    return 0;
}
