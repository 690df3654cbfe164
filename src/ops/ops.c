/*
 * ops.c — the CPU op tables and the run-time choice between them.
 *
 * "ref" (src/ops/ref/) runs anywhere and is the oracle the tests compare against; "avx2"
 * (the *_avx2.c files of src/ops/cpu, built with -mavx2 -mfma) is used where cpuid reports AVX2 + FMA with
 * OS support. There is no AVX-512 table yet, so "avx512" is never available and an AVX-512
 * machine runs the AVX2 table. mmt_ops_cpu() decides once per process (pthread_once, so
 * concurrent first calls are safe); MMT_KERNELS=ref|avx2|avx512 overrides the choice, and an
 * unknown or unavailable name falls back to the automatic one with a warning in the log.
 */
#include "ops/ops.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "core/log.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ref/ops_ref.h"

static const mmt_ops ops_ref = {
    .name = "ref",
    .matmul_fwd = matmul_fwd_ref,
    .layernorm_fwd = layernorm_fwd_ref,
    .softmax_fwd = softmax_fwd_ref,
    .gelu_fwd = gelu_fwd_ref,
    .quick_gelu_fwd = quick_gelu_fwd_ref,
    .add_fwd = add_fwd_ref,
    .attention_fwd = attention_fwd_ref,
    .embedding_fwd = embedding_fwd_ref,
    .patchify_fwd = patchify_fwd_ref,
    .gemm = gemm_ref,
    .matmul_bwd = matmul_bwd_ref,
    .layernorm_bwd = layernorm_bwd_ref,
    .softmax_bwd = softmax_bwd_ref,
    .gelu_bwd = gelu_bwd_ref,
    .quick_gelu_bwd = quick_gelu_bwd_ref,
    .attention_bwd = attention_bwd_ref,
    .embedding_bwd = embedding_bwd_ref,
    .patchify_bwd = patchify_bwd_ref,
    .attention_kv_fwd = attention_kv_fwd_ref,
    .attention_kv_bwd = attention_kv_bwd_ref,
};

static const mmt_ops ops_avx2 = {
    .name = "avx2",
    .matmul_fwd = matmul_fwd_avx2,
    .layernorm_fwd = layernorm_fwd_avx2,
    .softmax_fwd = softmax_fwd_avx2,
    .gelu_fwd = gelu_fwd_avx2,
    .quick_gelu_fwd = quick_gelu_fwd_avx2,
    .add_fwd = add_fwd_avx2,
    .attention_fwd = attention_fwd_avx2,
    .embedding_fwd = embedding_fwd_cpu,
    .patchify_fwd = patchify_fwd_cpu,
    .gemm = gemm_avx2,
    .matmul_bwd = matmul_bwd_avx2,
    .layernorm_bwd = layernorm_bwd_avx2,
    .softmax_bwd = softmax_bwd_avx2,
    .gelu_bwd = gelu_bwd_avx2,
    .quick_gelu_bwd = quick_gelu_bwd_avx2,
    .attention_bwd = attention_bwd_avx2,
    .embedding_bwd = embedding_bwd_cpu,
    .patchify_bwd = patchify_bwd_cpu,
    .attention_kv_fwd = attention_kv_fwd_avx2,
    .attention_kv_bwd = attention_kv_bwd_avx2,
};

const mmt_ops *mmt_ops_ref(void) { return &ops_ref; }

const mmt_ops *mmt_ops_cpu_named(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "ref") == 0) return &ops_ref;
    if (strcmp(name, "avx2") == 0) return mmt_cpu_detect().avx2 ? &ops_avx2 : NULL;
    return NULL; /* "avx512" and anything else: not built */
}

static pthread_once_t ops_cpu_once = PTHREAD_ONCE_INIT;
static const mmt_ops *ops_cpu_chosen;

static void ops_cpu_choose(void) {
    const mmt_ops *best = mmt_cpu_detect().avx2 ? &ops_avx2 : &ops_ref;
    const char *forced = getenv("MMT_KERNELS");
    ops_cpu_chosen = best;
    if (forced && forced[0]) {
        const mmt_ops *table = mmt_ops_cpu_named(forced);
        if (table)
            ops_cpu_chosen = table;
        else
            mmt_log_warn("MMT_KERNELS=%s is not available on this CPU or build; using %s",
                         forced, best->name);
    }
    mmt_log_debug("CPU kernels: %s", ops_cpu_chosen->name);
}

const mmt_ops *mmt_ops_cpu(void) {
    pthread_once(&ops_cpu_once, ops_cpu_choose);
    return ops_cpu_chosen;
}
