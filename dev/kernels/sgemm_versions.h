/* sgemm_versions.h — the lab's sgemm versions, all y (M,N) = x (M,K) @ w (N,K)^T + bias (N). */
#ifndef MMT_DEV_SGEMM_VERSIONS_H
#define MMT_DEV_SGEMM_VERSIONS_H

#include <stdint.h>

typedef void (*sgemm_fn)(float *y, const float *x, const float *w, const float *bias, int64_t M,
                         int64_t K, int64_t N);

void sgemm_v1(float *y, const float *x, const float *w, const float *bias, int64_t M, int64_t K,
              int64_t N);
void sgemm_v2(float *y, const float *x, const float *w, const float *bias, int64_t M, int64_t K,
              int64_t N);
void sgemm_v3(float *y, const float *x, const float *w, const float *bias, int64_t M, int64_t K,
              int64_t N);

void sgemm_v4(float *y, const float *x, const float *w, const float *bias, int64_t M, int64_t K,
              int64_t N);

#endif
