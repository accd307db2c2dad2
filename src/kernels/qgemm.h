/* qgemm.h — many activation rows times a weight kept quantized (Q8_0, Q4_0) or as f16 (qgemm.c).
 *
 * A prompt of n rows multiplies every weight n times: the product is bound by arithmetic, not by
 * reading the weights, and sgemm does that arithmetic better than integer dot products of
 * quantized activations. So the weight is dequantized panel by panel (PANEL rows at a time, into a
 * thread's scratch; every Q8_0/Q4_0/f16 value is exact in f32) and each panel multiplied by
 * cblas_sgemm: the result is the f32 product of the dequantized weights, at sgemm's speed, without
 * an f32 copy of the whole matrix. Decode steps of a few rows keep quant.c's kernels, which read
 * each weight once (bench/qgemm.c: lm_qgemm overtakes lm_qmatmul between 16 and 32 rows on Zen 4
 * at 2 threads; session.c switches above 32). */
#ifndef LM_KERNELS_QGEMM_H
#define LM_KERNELS_QGEMM_H

#include <stddef.h>
#include <stdint.h>
#include "kernels/quant.h"

/* bytes of one weight row of W */
size_t lm_qmat_row_bytes(const lm_qmat *W);
/* rows r0 .. r0+nr-1 of W as f32, (nr, W->cols) at out: exact */
void lm_qmat_dequantize(const lm_qmat *W, int64_t r0, int64_t nr, float *out);
/* Bytes of scratch lm_qgemm needs for weights of up to `cols` columns on `threads` threads. */
size_t lm_qgemm_scratch(int64_t cols, int threads);
/* y (n, W->rows) = x (n, W->cols) W^T + bias (NULL: none), through panels of W dequantized into
 * scratch (lm_qgemm_scratch(W->cols, threads) bytes) and cblas_sgemm, the panels shared among
 * `threads` threads (OpenMP's maximum, or 1 when that is 1). Each output is one single-threaded
 * sgemm's on fixed panels: the same bits at any thread count. */
void lm_qgemm(const lm_qmat *W, const float *x, int64_t n, const float *bias, float *y, void *scratch, int threads);

#endif
