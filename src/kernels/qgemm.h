/* qgemm.h — many activation rows times a weight kept quantized (Q8_0, Q4_0) or as f16 (qgemm.c).
 *
 * A prompt of n rows multiplies every weight n times: the product is bound by arithmetic, not by
 * reading the weights. Q8_0 and Q4_0 weights run an integer GEMM: the activations quantized once
 * to Q8_0 blocks (as decode's are), each block's dot products exact in int32 (AVX-512 VNNI
 * vpdpbusd, AVX2 vpmaddubsw, or portable C: the same bits), scaled and summed in f32. f16 weights
 * are converted panel by panel into a thread's scratch and multiplied by cblas_sgemm. Decode
 * steps of a few rows keep quant.c's kernels, which read each weight once (session.c switches
 * above 32 rows). */
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
/* y (n, W->rows) = x (n, W->cols) W^T + bias (NULL: none) on `threads` threads, with the integer
 * kernels of `path` (one lm_qpath_available says this CPU has; f16 weights ignore it). Q8_0/Q4_0:
 * per output, acc = fma((float)dot_b, dx_b * dw_b, acc) over the blocks b in order, where dot_b is
 * the exact integer dot product of the weight's block and the activation's Q8_0 block
 * (lm_quant_act_q8) and dx_b, dw_b their scales; y = acc + bias. f16: one single-threaded sgemm
 * per panel of the weight converted to f32. Either way the same bits at any thread count. */
void lm_qgemm(const lm_qmat *W, const float *x, int64_t n, const float *bias, float *y, void *scratch, int threads, lm_qpath path);
/* y as lm_qgemm, for any weight type, by the f16 route: panels of W dequantized (exactly) to f32,
 * each multiplied by a single-threaded cblas_sgemm (the f32 product of the dequantized weight;
 * lm_qgemm's for f16, bench/qgemm.c's comparison for Q8_0/Q4_0) */
void lm_qgemm_sgemm(const lm_qmat *W, const float *x, int64_t n, const float *bias, float *y, void *scratch, int threads);

#endif
