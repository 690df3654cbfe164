/*
 * sgemm_v3_packed.c — version 3: the packed 6x16 kernel that ships in the library.
 *
 * Not a copy: this is src/ops/cpu/sgemm_avx2.c itself, compiled by the Makefile with the block
 * sizes given as SGEMM_KC / SGEMM_MC / SGEMM_NC (tune.sh sweeps them) and exposed here under
 * the lab's signature.
 */
#include "ops/cpu/cpu_ops.h"
#include "sgemm_versions.h"

void sgemm_v3(float *y, const float *x, const float *w, const float *bias, int64_t M, int64_t K,
              int64_t N) {
    matmul_fwd_avx2(y, x, w, bias, M, K, N);
}
