/*
 * scan_ref.c — the reference search-scan kernels (see ops/scan.h): plain loops, the oracle
 * for scan_avx2.c. quantize_i8 and top_k have no faster twin; the AVX2 table uses these.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/scan.h"

/* Shared with the AVX2 table (ops/scan.c). */
void scan_quantize_i8_ref(int8_t *q, float *scales, const float *x, int64_t N, int64_t D);
void scan_top_k_ref(int64_t *best, const float *scores, int64_t n, int64_t k);

/* The float dot is accumulated in float32, in order, as the simplest statement of the op;
 * the AVX2 version sums in another order and is compared with a tolerance. */
static void dot_f32_ref(float *scores, const float *rows, const float *q, const int64_t *which, int64_t n,
                        int64_t D) {
    for (int64_t i = 0; i < n; i++) {
        const float *row = rows + (which ? which[i] : i) * D; // (D)
        float sum = 0.0f;
        for (int64_t j = 0; j < D; j++) sum += row[j] * q[j];
        scores[i] = sum;
    }
}

static void dot_i8_ref(float *scores, const int8_t *rows, const float *scales, const int8_t *q, float q_scale,
                       const int64_t *which, int64_t n, int64_t D) {
    for (int64_t i = 0; i < n; i++) {
        int64_t r = which ? which[i] : i;
        const int8_t *row = rows + r * D; // (D)
        int32_t sum = 0;
        for (int64_t j = 0; j < D; j++) sum += (int32_t)row[j] * (int32_t)q[j];
        scores[i] = (float)sum * scales[r] * q_scale;
    }
}

void scan_quantize_i8_ref(int8_t *q, float *scales, const float *x, int64_t N, int64_t D) {
    for (int64_t r = 0; r < N; r++) {
        const float *row = x + r * D; // (D)
        float max = 0.0f;
        for (int64_t j = 0; j < D; j++) max = fmaxf(max, fabsf(row[j]));
        scales[r] = max / 127.0f;
        float inv = max > 0.0f ? 127.0f / max : 0.0f;
        for (int64_t j = 0; j < D; j++) {
            float v = nearbyintf(row[j] * inv);
            q[r * D + j] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
        }
    }
}

/* Whether (score a, position pa) ranks below (score b, position pb). */
static int ranks_below(float a, int64_t pa, float b, int64_t pb) {
    if (isnan(a) || isnan(b)) return isnan(a) && (!isnan(b) || pa > pb);
    return a < b || (a == b && pa > pb);
}

/* A binary heap of k positions whose root is the worst kept, so a new score is compared
 * with one value and the whole pass costs O(n log k) at worst, O(n) in practice. */
static void sift_down(int64_t *heap, int64_t k, int64_t at, const float *scores) {
    for (;;) {
        int64_t worst = at, l = 2 * at + 1, r = l + 1;
        if (l < k && ranks_below(scores[heap[l]], heap[l], scores[heap[worst]], heap[worst])) worst = l;
        if (r < k && ranks_below(scores[heap[r]], heap[r], scores[heap[worst]], heap[worst])) worst = r;
        if (worst == at) return;
        int64_t t = heap[at];
        heap[at] = heap[worst];
        heap[worst] = t;
        at = worst;
    }
}

void scan_top_k_ref(int64_t *best, const float *scores, int64_t n, int64_t k) {
    if (k <= 0) return;
    for (int64_t i = 0; i < k; i++) best[i] = i;
    for (int64_t i = k / 2 - 1; i >= 0; i--) sift_down(best, k, i, scores);
    for (int64_t i = k; i < n; i++) {
        if (!ranks_below(scores[best[0]], best[0], scores[i], i)) continue;
        best[0] = i;
        sift_down(best, k, 0, scores);
    }
    /* heap sort: move the worst to the end each time, leaving best first */
    for (int64_t end = k - 1; end > 0; end--) {
        int64_t t = best[0];
        best[0] = best[end];
        best[end] = t;
        sift_down(best, end, 0, scores);
    }
}

static const mmt_scan_ops SCAN_REF = {
    .name = "ref",
    .dot_f32 = dot_f32_ref,
    .dot_i8 = dot_i8_ref,
    .quantize_i8 = scan_quantize_i8_ref,
    .top_k = scan_top_k_ref,
};

const mmt_scan_ops *mmt_scan_ref(void) { return &SCAN_REF; }
