/* qgemm.h — many activation rows times a weight kept quantized (Q8_0, Q4_0) or as f16 (qgemm.c),
 * and the exact dequantization of such a weight.
 *
 * A prompt of n rows multiplies every weight n times: the product is bound by arithmetic, not by
 * reading the weights. Q8_0 and Q4_0 weights (packed: quant.h) run quant.c's panel kernel, the
 * integer products decode runs, 8 activation rows a call; f16 weights are converted panel by panel
 * into a thread's scratch and multiplied by cblas_sgemm (decode steps of a few rows keep linear.c's
 * kernel, which reads each weight once; session.c switches above 32 rows). */
#ifndef LM_KERNELS_QGEMM_H
#define LM_KERNELS_QGEMM_H

#include <stddef.h>
#include <stdint.h>
#include "kernels/quant.h"

/* bytes of one weight row of W */
size_t lm_qmat_row_bytes(const lm_qmat *W);
/* rows r0 .. r0+nr-1 of W as f32, (nr, W->cols) at out: exact */
void lm_qmat_dequantize(const lm_qmat *W, int64_t r0, int64_t nr, float *out);
/* Bytes of scratch lm_qgemm needs for up to n activation rows of up to `cols` columns on `threads` threads. */
size_t lm_qgemm_scratch(int64_t n, int64_t cols, int threads);
/* y (n, W->rows) = x (n, W->cols) W^T + bias (NULL: none) on `threads` threads. Q8_0/Q4_0 (W
 * packed): lm_qmatmul with the kernels of `path` (one lm_qpath_available says this CPU has), per
 * output acc = fma((float)dot_b, dw_b * dx_b, acc) over the blocks in order (quant.h); f16 (path
 * ignored): one single-threaded sgemm per panel of the weight converted to f32. Either way the same
 * bits at any thread count. */
void lm_qgemm(const lm_qmat *W, const float *x, int64_t n, const float *bias, float *y, void *scratch, int threads, lm_qpath path);
/* y as lm_qgemm, for any weight type, by the f16 route: panels of W dequantized (exactly) to f32,
 * each multiplied by a single-threaded cblas_sgemm (the f32 product of the dequantized weight;
 * lm_qgemm's for f16, bench/qgemm.c's comparison for Q8_0/Q4_0) */
void lm_qgemm_sgemm(const lm_qmat *W, const float *x, int64_t n, const float *bias, float *y, void *scratch, int threads);

#endif
