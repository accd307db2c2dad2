/* quant.h — matrix-vector products on quantized weights (DESIGN.md §5: kernels/quant).
 *
 * Weights are rows of ggml blocks of 32 values: Q8_0 (f16 scale d, 32 int8) or Q4_0 (f16 scale,
 * 32 4-bit values q, weight (q - 8) d). Activations are quantized to Q8_0 blocks too (one f16
 * scale per 32 values, round to nearest: lm_quant_act_q8), so each block's dot product is an
 * integer sum of int8 products, scaled once: as ggml's vec_dot_q8_0_q8_0 / vec_dot_q4_0_q8_0,
 *   y[r] = sum over blocks b of (float)isum_b * (d_w,b * d_x,b),  accumulated in block order.
 * The integer sums are exact on every path, and the float part is the same scalar code, so the
 * portable, AVX2 and AVX-512 VNNI paths give the same bits (tests/unit/test_quant.c). */
#ifndef LM_KERNELS_QUANT_H
#define LM_KERNELS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#define LM_QK 32                 /* values per block */
#define LM_Q8_0_BYTES 34         /* f16 d + 32 int8 */
#define LM_Q4_0_BYTES 18         /* f16 d + 16 bytes of two 4-bit values (j low, j + 16 high) */

typedef enum { LM_QW_Q8_0 = 0, LM_QW_Q4_0, LM_QW_COUNT } lm_qweight;
typedef enum { LM_QPATH_PORTABLE = 0, LM_QPATH_AVX2, LM_QPATH_VNNI, LM_QPATH_COUNT } lm_qpath;

float lm_f16_to_f32(uint16_t h);
uint16_t lm_f32_to_f16(float f);   /* round to nearest even, as F16C's vcvtps2ph */

/* 1 when this CPU (and this build) can run the path */
int lm_qpath_available(lm_qpath p);
lm_qpath lm_qpath_best(void);
const char *lm_qpath_name(lm_qpath p);

/* n floats (a multiple of 32) -> n / 32 Q8_0 blocks at out (ggml's quantize_row_q8_0_ref). */
void lm_quant_act_q8(const float *x, int64_t n, uint8_t *out);
/* y (rows) = W (rows, cols; each row cols / 32 blocks of type wt) x, with x given as the Q8_0
 * blocks of lm_quant_act_q8; cols a multiple of 32. Rows run in parallel (OpenMP). */
void lm_qmatvec(lm_qweight wt, const void *w, int64_t rows, int64_t cols, const uint8_t *xq, float *y, lm_qpath p);

#endif
