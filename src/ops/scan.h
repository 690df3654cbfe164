/*
 * scan.h — the kernels of an exact vector search: one query against many stored rows.
 *
 * A search index (serve/index.h) keeps its vectors twice: float32 rows, and an int8 copy
 * quantized symmetrically per row (scale = max |x| / 127, q = round(x / scale)). A search
 * scores every row, or the rows a metadata filter selected, and keeps the best k. These
 * kernels are that inner loop; they sit beside the op table (ops.h) rather than in it because
 * they work on memory-mapped rows that never live in a backend's buffers, and they have their
 * own small table with the same rules: a plain C reference (ops/ref/scan_ref.c) that is the
 * oracle, and an AVX2 version (ops/cpu/scan_avx2.c) tested against it — bit for bit for the
 * int8 scan, whose integer sums are exact in any order.
 *
 * Rows are addressed through `which`: NULL scans rows 0..n-1, otherwise which[i] (ascending,
 * all < the row count) is the row scored into scores[i]. Nothing allocates or fails.
 *
 * Shape letters: N rows stored, n rows scanned, D the vector width.
 */
#ifndef MMT_OPS_SCAN_H
#define MMT_OPS_SCAN_H

#include <stdint.h>

typedef struct mmt_scan_ops {
    const char *name; /* "ref", "avx2" */

    /* scores (n) = rows[r] (D) . q (D) in float32, r as described above; rows (N, D). */
    void (*dot_f32)(float *scores, const float *rows, const float *q, const int64_t *which, int64_t n, int64_t D);

    /* scores (n) = (float)(sum of rows[r][j] * q[j] in int32) * scales[r] * q_scale, the two
     * products in that order in float32; rows (N, D) int8, scales (N). Exact integer sums
     * for any int8 values while D <= 2^17. */
    void (*dot_i8)(float *scores, const int8_t *rows, const float *scales, const int8_t *q, float q_scale,
                   const int64_t *which, int64_t n, int64_t D);

    /* q (N, D) int8 and scales (N): scale = max |x| / 127 per row, q = x * (127 / max |x|)
     * rounded to nearest (ties to even); a row of zeros gets scale 0 and zeros. */
    void (*quantize_i8)(int8_t *q, float *scales, const float *x, int64_t N, int64_t D);

    /* best (k) = the positions in 0..n-1 of the k highest scores, best first, equal scores
     * by lower position; NaN ranks below everything. k <= n. */
    void (*top_k)(int64_t *best, const float *scores, int64_t n, int64_t k);
} mmt_scan_ops;

/* The plain C reference table. */
const mmt_scan_ops *mmt_scan_ref(void);
/* The AVX2 table, or NULL where this CPU lacks AVX2 + FMA. */
const mmt_scan_ops *mmt_scan_avx2(void);
/* The fastest table for this CPU; MMT_KERNELS=ref forces the reference, as for ops.h. */
const mmt_scan_ops *mmt_scan_best(void);

#endif
