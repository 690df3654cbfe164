/*
 * sgemm_v4_avx512.c — version 4: the library's AVX-512 kernel (14x32 zmm microkernel on the
 * shared packed driver), src/ops/cpu/sgemm_avx512.c compiled by the Makefile with the block
 * sizes given as SGEMM512_MC / SGEMM512_NC, under the lab's signature.
 */
#include "ops/cpu/cpu_ops.h"
#include "sgemm_versions.h"

void sgemm_v4(float *y, const float *x, const float *w, const float *bias, int64_t M, int64_t K,
              int64_t N) {
    matmul_fwd_avx512(y, x, w, bias, M, K, N);
}
