/* quant.h — matrix products on quantized weights (DESIGN.md §5: kernels/quant).
 *
 * Weights are rows of ggml blocks of 32 values: Q8_0 (f16 scale d, 32 int8) or Q4_0 (f16 scale,
 * 32 4-bit values q, weight (q - 8) d). Activations are quantized to Q8_0 blocks too (one f16
 * scale per 32 values, round to nearest: lm_quant_act_q8), once per row, so each block's dot
 * product is integer arithmetic, scaled once, as ggml's vec_dot_q8_0_q8_0 / vec_dot_q4_0_q8_0.
 * The sum is kept in 8 lanes, as a SIMD register holds it: lane k of block b holds the exact
 * integer sum i_bk over the block's values 4k..4k+3, and
 *   acc_k += (float)i_bk * (d_w,b * d_x,b)      (block order; a multiply, then an add)
 *   y = ((acc_0 + acc_4) + (acc_2 + acc_6)) + ((acc_1 + acc_5) + (acc_3 + acc_7))   [+ bias]
 * The integer sums are exact on every path and the float steps are the same operations, so the
 * portable, AVX2 and AVX-512 VNNI paths give the same bits (tests/unit/test_quant.c). */
#ifndef LM_KERNELS_QUANT_H
#define LM_KERNELS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#define LM_QK 32                 /* values per block */
#define LM_Q8_0_BYTES 34         /* f16 d + 32 int8 */
#define LM_Q4_0_BYTES 18         /* f16 d + 16 bytes of two 4-bit values (j low, j + 16 high) */

/* LM_QW_F16: a weight kept as f16 values (blocks of 32, no scale), run by linear.c's
 * lm_linear_rows_f16 and qgemm.c, not by lm_qmatmul / lm_qmatvec */
typedef enum { LM_QW_Q8_0 = 0, LM_QW_Q4_0, LM_QW_F16, LM_QW_COUNT } lm_qweight;
typedef enum { LM_QPATH_PORTABLE = 0, LM_QPATH_AVX2, LM_QPATH_VNNI, LM_QPATH_COUNT } lm_qpath;

/* A weight matrix kept quantized: rows x (cols / 32) blocks of `type`, row after row (ggml's
 * layout, as in a GGUF file). data is lm_alloc'ed by whoever fills it. */
typedef struct lm_qmat {
  lm_qweight type;
  int64_t rows, cols;
  uint8_t *data;
} lm_qmat;

float lm_f16_to_f32(uint16_t h);
uint16_t lm_f32_to_f16(float f);   /* round to nearest even, as F16C's vcvtps2ph */
/* n values at a time (F16C where the build has it; the same bits as the scalar functions) */
void lm_f16_to_f32_row(const uint16_t *src, float *dst, int64_t n);
void lm_f32_to_f16_row(const float *src, uint16_t *dst, int64_t n);

/* 1 when this CPU (and this build) can run the path */
int lm_qpath_available(lm_qpath p);
lm_qpath lm_qpath_best(void);
const char *lm_qpath_name(lm_qpath p);
size_t lm_qweight_block_bytes(lm_qweight t);

/* n floats (a multiple of 32) -> n / 32 Q8_0 blocks at out (ggml's quantize_row_q8_0_ref). */
void lm_quant_act_q8(const float *x, int64_t n, uint8_t *out);

/* Bytes of scratch lm_qmatmul needs for n activation rows of cols values. */
size_t lm_qmatmul_scratch(int64_t n, int64_t cols);
/* y (n, W.rows) = x (n, W.cols) W^T + bias (NULL: none). Each row of x is quantized to Q8_0 once
 * (into scratch, lm_qmatmul_scratch bytes); weight rows run in parallel in tiles, each tile against
 * every activation row, so a weight block is read from memory once per call. */
void lm_qmatmul(const lm_qmat *W, const float *x, int64_t n, const float *bias, float *y, void *scratch, lm_qpath p);
/* lm_qmatmul in pieces, for a caller that shares the work among its own threads (session.c's
 * decode step): prepare each activation row i < n once, then any ranges r0..r1 of weight rows, on
 * one thread each. The same bits as lm_qmatmul. */
void lm_qmatmul_prepare_row(const float *x, int64_t n, int64_t cols, void *scratch, int64_t i);
void lm_qmatmul_part(const lm_qmat *W, int64_t n, const float *bias, float *y, void *scratch, int64_t r0, int64_t r1, lm_qpath p);
/* y (rows) = W x for x given as the Q8_0 blocks of lm_quant_act_q8 (tests and benchmarks). */
void lm_qmatvec(lm_qweight wt, const void *w, int64_t rows, int64_t cols, const uint8_t *xq, float *y, lm_qpath p);

#endif
