/*
 * int8_rows.h — the LLM.int8 weight format of bitsandbytes (Linear8bitLt, arXiv:2208.07339):
 * one int8 row per output feature and one float absmax per row, which bitsandbytes calls
 * SCB (row_stats). Bit for bit as bitsandbytes 0.50.2 on the CPU.
 *
 * Usage (w is (rows, cols), nn.Linear layout: rows = out features):
 *     int8_t q[rows * cols]; float scb[rows];
 *     mmt_int8_rows_quantize(q, scb, w, rows, cols);
 *     mmt_int8_rows_dequantize(w2, q, scb, rows, cols);
 *
 * Quantize = backends/default/ops.py "int8_vectorwise_quant" with threshold 0 (what
 * Int8Params._quantize calls; the CPU backend does not override it):
 *     row_stats = A.abs().max(dim=1)
 *     q = round(A * (127.0 / row_stats)).to(int8)
 * where `127.0 / t` is torch's __rtruediv__, reciprocal(t) * 127.0: so
 * q = rint(w * ((1 / scb) * 127)), three float roundings then round-half-to-even. A zero row
 * has scb 0: 1 / 0 = inf, 0 * inf = NaN, and torch turns NaN into int8 0, so q = 0. A NaN in
 * a row makes its scb NaN and the row 0 (torch's max propagates NaN).
 * Dequantize = _ops.py "int8_vectorwise_dequant": A * stats.view(-1, 1) * 7.874015718698502e-3,
 * i.e. w = ((float)q * scb) * 0.007874016f (the constant rounded to float), in that order.
 */
#ifndef MMT_QUANT_INT8_ROWS_H
#define MMT_QUANT_INT8_ROWS_H

#include <stdint.h>

/* w (rows, cols) -> q (rows, cols) and scb (rows). */
void mmt_int8_rows_quantize(int8_t *q, float *scb, const float *w, int64_t rows, int64_t cols);
/* w[r, c] = ((float)q[r, c] * scb[r]) * 0.007874016f. */
void mmt_int8_rows_dequantize(float *w, const int8_t *q, const float *scb, int64_t rows,
                              int64_t cols);

#endif
