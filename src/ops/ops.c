/*
 * ops.c — the CPU op tables and the run-time choice between them.
 *
 * "ref" (src/ops/ref/) runs anywhere and is the oracle the tests compare against; "avx2"
 * (the *_avx2.c files of src/ops/cpu, built with -mavx2 -mfma) is used where cpuid reports
 * AVX2 + FMA with OS support; "avx512" is the avx2 table with the GEMM entries (matmul_fwd,
 * matmul_bwd, gemm) from sgemm_avx512.c and the quantized ones (qmat_*, s8_*) from
 * qmat_avx512.c / qgemm_avx512.c, used where cpuid reports AVX-512 F/BW/DQ/VL with OS
 * support for the zmm state. Within a table the int8 GEMM takes the VNNI instructions
 * (AVX-VNNI in avx2, AVX512_VNNI in avx512) only where cpuid reports them. The other
 * entries stay AVX2: they are memory-bound or small (attention's per-head products), so
 * wider vectors would buy little. Both fast tables give
 * the same bits for the GEMM entries (cpu_ops.h). mmt_ops_cpu() decides once per process
 * (pthread_once, so concurrent first calls are safe); MMT_KERNELS=ref|avx2|avx512 overrides
 * the choice, and an unknown or unavailable name falls back to the automatic one with a
 * warning in the log.
 * mmt_ops_resolve completes another backend's table from the CPU one.
 */
#include "ops/ops.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "core/log.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/ref/ops_ref.h"

static const mmt_ops ops_ref = {
    .name = "ref",
    .buffer_alloc = buffer_alloc_ref,
    .buffer_free = buffer_free_ref,
    .buffer_upload = buffer_copy_ref,
    .buffer_download = buffer_copy_ref,
    .buffer_copy = buffer_copy_ref,
    .buffer_fill = buffer_fill_ref,
    .sync = sync_ref,
    .matmul_fwd = matmul_fwd_ref,
    .matmul_pack = matmul_pack_ref,
    .matmul_fwd_packed = matmul_fwd_packed_ref,
    .layernorm_fwd = layernorm_fwd_ref,
    .softmax_fwd = softmax_fwd_ref,
    .gelu_fwd = gelu_fwd_ref,
    .quick_gelu_fwd = quick_gelu_fwd_ref,
    .tanh_fwd = tanh_fwd_ref,
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
    .tanh_bwd = tanh_bwd_ref,
    .attention_bwd = attention_bwd_ref,
    .embedding_bwd = embedding_bwd_ref,
    .patchify_bwd = patchify_bwd_ref,
    .attention_kv_fwd = attention_kv_fwd_ref,
    .attention_kv_bwd = attention_kv_bwd_ref,
    .adamw_step = adamw_step_ref,
    .sum_squares = sum_squares_ref,
    .scale = scale_ref,
    .find_nonfinite = find_nonfinite_ref,
    .l2_normalize_fwd = l2_normalize_fwd_ref,
    .l2_normalize_bwd = l2_normalize_bwd_ref,
    .qmat_matmul_fwd = qmat_matmul_fwd_ref,
    .qmat_matmul_bwd_dx = qmat_matmul_bwd_dx_ref,
    .qmat_dequant_rows = qmat_dequant_rows_ref,
    .s8_quantize_rows = s8_quantize_rows_ref,
    .s8_packed_bytes = s8_packed_bytes_ref,
    .s8_pack = s8_pack_ref,
    .s8_matmul_fwd = s8_matmul_fwd_ref,
};

/* The CPU tables: the AVX2 kernels, with the GEMM-based entries (matmul_fwd, gemm, matmul_bwd,
 * the quantized-weight GEMMs and int8 entries) of one instruction set — the avx512 table
 * differs from the avx2 one only there (the file comment says why). */
#define CPU_OPS(NAME, GEMM)                                                                    \
    {                                                                                          \
    .name = NAME,                                                                              \
    .buffer_alloc = buffer_alloc_ref,                                                          \
    .buffer_free = buffer_free_ref,                                                            \
    .buffer_upload = buffer_copy_ref,                                                          \
    .buffer_download = buffer_copy_ref,                                                        \
    .buffer_copy = buffer_copy_ref,                                                            \
    .buffer_fill = buffer_fill_ref,                                                            \
    .sync = sync_ref,                                                                          \
    .matmul_fwd = matmul_fwd_##GEMM,                                                           \
    .matmul_pack = matmul_pack_##GEMM,                                                         \
    .matmul_fwd_packed = matmul_fwd_packed_##GEMM,                                             \
    .layernorm_fwd = layernorm_fwd_avx2,                                                       \
    .softmax_fwd = softmax_fwd_avx2,                                                           \
    .gelu_fwd = gelu_fwd_avx2,                                                                 \
    .quick_gelu_fwd = quick_gelu_fwd_avx2,                                                     \
    .tanh_fwd = tanh_fwd_ref, /* (V, E) once per step for the prefix MLP: not worth SIMD */    \
    .add_fwd = add_fwd_avx2,                                                                   \
    .attention_fwd = attention_fwd_avx2,                                                       \
    .embedding_fwd = embedding_fwd_cpu,                                                        \
    .patchify_fwd = patchify_fwd_cpu,                                                          \
    .gemm = gemm_##GEMM,                                                                       \
    .matmul_bwd = matmul_bwd_##GEMM,                                                           \
    .layernorm_bwd = layernorm_bwd_avx2,                                                       \
    .softmax_bwd = softmax_bwd_avx2,                                                           \
    .gelu_bwd = gelu_bwd_avx2,                                                                 \
    .quick_gelu_bwd = quick_gelu_bwd_avx2,                                                     \
    .tanh_bwd = tanh_bwd_ref,                                                                  \
    .attention_bwd = attention_bwd_avx2,                                                       \
    .embedding_bwd = embedding_bwd_cpu,                                                        \
    .patchify_bwd = patchify_bwd_cpu,                                                          \
    .attention_kv_fwd = attention_kv_fwd_avx2,                                                 \
    .attention_kv_bwd = attention_kv_bwd_avx2,                                                 \
    .adamw_step = adamw_step_avx2,                                                             \
    /* Not worth a SIMD version: the order of the double sum is part of its contract, and      \
     * the others are memory-bound loops on small (B, P) or parameter-sized data. */           \
    .sum_squares = sum_squares_ref,                                                            \
    .scale = scale_ref,                                                                        \
    .find_nonfinite = find_nonfinite_ref,                                                      \
    .l2_normalize_fwd = l2_normalize_fwd_ref,                                                  \
    .l2_normalize_bwd = l2_normalize_bwd_ref,                                                  \
    .qmat_matmul_fwd = qmat_matmul_fwd_##GEMM,                                                 \
    .qmat_matmul_bwd_dx = qmat_matmul_bwd_dx_##GEMM,                                           \
    .qmat_dequant_rows = qmat_dequant_rows_##GEMM,                                             \
    .s8_quantize_rows = s8_quantize_rows_##GEMM,                                               \
    /* One packed layout for every table (ops.h); packing runs once per weight at load. */     \
    .s8_packed_bytes = s8_packed_bytes_ref,                                                    \
    .s8_pack = s8_pack_ref,                                                                    \
    /* The VNNI kernels where cpuid has them (qgemm_avx2.c, qgemm_avx512.c choose). */         \
    .s8_matmul_fwd = s8_matmul_fwd_##GEMM,                                                     \
    }

static const mmt_ops ops_avx2 = CPU_OPS("avx2", avx2);
static const mmt_ops ops_avx512 = CPU_OPS("avx512", avx512);

const mmt_ops *mmt_ops_ref(void) { return &ops_ref; }

const mmt_ops *mmt_ops_cpu_named(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "ref") == 0) return &ops_ref;
    if (strcmp(name, "avx2") == 0) return mmt_cpu_detect().avx2 ? &ops_avx2 : NULL;
    if (strcmp(name, "avx512") == 0) return mmt_cpu_detect().avx512 ? &ops_avx512 : NULL;
    return NULL;
}

static pthread_once_t ops_cpu_once = PTHREAD_ONCE_INIT;
static const mmt_ops *ops_cpu_chosen;

static void ops_cpu_choose(void) {
    const mmt_cpu_features cpu = mmt_cpu_detect();
    const mmt_ops *best = cpu.avx512 ? &ops_avx512 : cpu.avx2 ? &ops_avx2 : &ops_ref;
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

/* ---- resolving a backend's table --------------------------------------------------- */

/* Every entry of mmt_ops after name, by name and place. The assertion below fails to compile
 * when a field is added to mmt_ops and not here. */
#define OPS_FIELD(f) {#f, offsetof(mmt_ops, f)}
static const struct {
    const char *name;
    size_t offset;
} ops_fields[] = {
    OPS_FIELD(buffer_alloc), OPS_FIELD(buffer_free), OPS_FIELD(buffer_upload),
    OPS_FIELD(buffer_download), OPS_FIELD(buffer_copy), OPS_FIELD(buffer_fill),
    OPS_FIELD(sync), OPS_FIELD(matmul_fwd), OPS_FIELD(matmul_pack), OPS_FIELD(matmul_fwd_packed),
    OPS_FIELD(layernorm_fwd), OPS_FIELD(softmax_fwd),
    OPS_FIELD(gelu_fwd), OPS_FIELD(quick_gelu_fwd), OPS_FIELD(tanh_fwd), OPS_FIELD(add_fwd),
    OPS_FIELD(attention_fwd), OPS_FIELD(embedding_fwd), OPS_FIELD(patchify_fwd),
    OPS_FIELD(gemm), OPS_FIELD(matmul_bwd), OPS_FIELD(layernorm_bwd), OPS_FIELD(softmax_bwd),
    OPS_FIELD(gelu_bwd), OPS_FIELD(quick_gelu_bwd), OPS_FIELD(tanh_bwd), OPS_FIELD(attention_bwd),
    OPS_FIELD(embedding_bwd), OPS_FIELD(patchify_bwd), OPS_FIELD(attention_kv_fwd),
    OPS_FIELD(attention_kv_bwd), OPS_FIELD(adamw_step), OPS_FIELD(sum_squares),
    OPS_FIELD(scale), OPS_FIELD(find_nonfinite), OPS_FIELD(l2_normalize_fwd),
    OPS_FIELD(l2_normalize_bwd), OPS_FIELD(qmat_matmul_fwd), OPS_FIELD(qmat_matmul_bwd_dx),
    OPS_FIELD(qmat_dequant_rows), OPS_FIELD(s8_quantize_rows), OPS_FIELD(s8_packed_bytes),
    OPS_FIELD(s8_pack), OPS_FIELD(s8_matmul_fwd),
};
#undef OPS_FIELD
#define OPS_N_FIELDS (sizeof ops_fields / sizeof ops_fields[0])

typedef void (*ops_entry)(void);
_Static_assert(sizeof(mmt_ops) == offsetof(mmt_ops, buffer_alloc) + OPS_N_FIELDS * sizeof(ops_entry),
               "ops_fields must list every entry of mmt_ops");

/* Function pointers of any type have one size and representation on the platforms we build
 * for (POSIX requires it), so an entry is read and written as an ops_entry through memcpy. */
static ops_entry ops_get(const mmt_ops *t, size_t i) {
    ops_entry e;
    memcpy(&e, (const char *)t + ops_fields[i].offset, sizeof e);
    return e;
}

const char *mmt_ops_first_missing(const mmt_ops *table) {
    for (size_t i = 0; i < OPS_N_FIELDS; i++)
        if (!ops_get(table, i)) return ops_fields[i].name;
    return NULL;
}

void mmt_ops_resolve(const mmt_ops *backend, mmt_ops *out) {
    const mmt_ops *cpu = mmt_ops_cpu();
    if (!backend) backend = cpu;
    *out = *backend;
    for (size_t i = 0; i < OPS_N_FIELDS; i++) {
        if (ops_get(backend, i)) continue;
        ops_entry e = ops_get(cpu, i);
        memcpy((char *)out + ops_fields[i].offset, &e, sizeof e);
        mmt_log_warn("ops: %s lacks %s; using the CPU", backend->name ? backend->name : "(unnamed)",
                     ops_fields[i].name);
    }
}
