/* quant.h — matrix products on quantized weights (DESIGN.md §5: kernels/quant).
 *
 * Weights are ggml blocks of 32 values: Q8_0 (f16 scale d, 32 int8) or Q4_0 (f16 scale, 32 4-bit
 * values q, weight (q - 8) d). Activations are quantized to Q8_0 blocks too (one f16 scale per 32
 * values, round to nearest: lm_quant_act_q8), once per row, so each block's dot product is integer
 * arithmetic, scaled once, as ggml's vec_dot_q8_0_q8_0 / vec_dot_q4_0_q8_0.
 *
 * The kernels read the weights repacked once at load (lm_qmat_pack) into panels of 16 rows: per
 * block, the 16 rows' f16 scales, then their values interleaved 4 bytes a row, so one 64-byte load
 * is one 4-value group of all 16 rows (one int32 lane a row) and a product streams the panel's
 * memory front to back. Per output (weight row r, activation row i)
 *   acc = fma((float)dot_b, dw_b * dx_b, acc)      over the blocks b in order; y = acc [+ bias]
 * where dot_b is the block's exact integer dot product and dw_b, dx_b the two scales (the product
 * rounded first): the same for a prompt (qgemm.h passes Q8_0/Q4_0 prompts here), so a prompt's and a
 * decode step's products are the same bits. The integer sums are exact on every path and the float
 * operations the same, so the portable, AVX2 and AVX-512 VNNI paths give the same bits
 * (tests/unit/test_quant.c). */
#ifndef LM_KERNELS_QUANT_H
#define LM_KERNELS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#define LM_QK 32                 /* values per block */
#define LM_Q8_0_BYTES 34         /* f16 d + 32 int8 */
#define LM_Q4_0_BYTES 18         /* f16 d + 16 bytes of two 4-bit values (j low, j + 16 high) */
#define LM_QP 16                 /* weight rows per packed panel (lm_qmat_pack) */
#define LM_HP 4                  /* f16 weight rows per packed panel (lm_qmat_pack) */
#define LM_A8_BYTES 48           /* A8: f32 a0, a1, c0, c1 + 32 unsigned bytes q < 128 */
#define LM_QMAX_BYTES LM_A8_BYTES   /* the largest block of the integer types (lm_qmat_block) */
#define LM_A8_GROUP(g) (64 * (2 * ((g) % 4) + (g) / 4))   /* a packed A8 panel block's group g */
#define LM_A8_F(f) (512 + 64 * (f))                       /* its f32 row f: a_0, a_1, c_0, c_1 */
#define LM_A4_BYTES 24           /* A4: f32 a, c + 16 bytes of two 4-bit values (j low, j + 16 high) */
#define LM_A4_F(f) (256 + 64 * (f))                       /* a packed A4 panel block's f32 row f: a, c */

/* LM_QW_F16: a weight kept as f16 values (blocks of 32, no scale), run (packed) by linear.c's
 * lm_linear_rows_f16 and qgemm.c, not by lm_qmatmul / lm_qmatvec.
 * LM_QW_A8: ggml's K-quants (Q4_K, Q5_K, Q6_K) and linears whose parts mix them with Q4_0, kept
 * exactly: each half h of a block of 32 (values 16h..16h+15) is w = a_h q + c_h with q an unsigned
 * byte below 128 and a_h, c_h f32 (Q4_K/Q5_K: a = d sc, c = -dmin m of the 32-value sub-block;
 * Q6_K: a = d sc of the 16-value sub-block, c = -32 a; Q4_0: a = d, c = -8 d), the products
 * that ggml's dequantizers round. A block's product with an activation block x (Q8_0, scale dx):
 *   u = dot_0 (a_0 dx); u = fma(dot_1, a_1 dx, u); u = fma(sum_0, c_0 dx, u);
 *   u = fma(sum_1, c_1 dx, u); acc = acc + u
 * with dot_h the exact integer sum of q x over half h and sum_h the sum of x over it: ggml's own
 * way of applying a K-quant's scale and minimum (a block's terms first, so that consecutive blocks
 * overlap: four fmas in a row on acc ran at a quarter of Q8_0's speed). 12 bits a weight, against
 * requantizing to Q8_0's 8.5: no value of the file is changed.
 * LM_QW_A4: the same for linears whose parts are all Q4_K, or Q4_K and Q4_0 (the bulk of a Q4_K_M
 * file): one a and one c for the whole block (a Q4_K sub-block is 32 values) and 4-bit q, 6 bits a
 * weight: u = dot (a dx); u = fma(sum, c dx, u); acc = acc + u. */
typedef enum { LM_QW_Q8_0 = 0, LM_QW_Q4_0, LM_QW_F16, LM_QW_A8, LM_QW_A4, LM_QW_COUNT } lm_qweight;
typedef enum { LM_QPATH_PORTABLE = 0, LM_QPATH_AVX2, LM_QPATH_VNNI, LM_QPATH_COUNT } lm_qpath;

/* A weight matrix kept quantized: rows x (cols / 32) blocks of `type`. packed 0: row after row
 * (ggml's layout, as in a GGUF file); packed 1 (what the kernels read): panels of
 * LM_QP rows (the last padded with zero rows), panel after panel, each (cols / 32) panel blocks of
 * LM_QP x the block's bytes:
 *   - the 16 rows' f16 scales (32 bytes), then
 *   - Q8_0: 8 groups of 64 bytes, group g holding values 4g..4g+3 of row l at bytes 4l..4l+3, each
 *     as w + 128 (an unsigned byte: vpdpbusd's unsigned operand);
 *   - Q4_0: 4 groups of 64 bytes, group c holding bytes 4c..4c+3 of row l's 16 bytes at 4l..4l+3:
 *     the low nibbles are values 4c..4c+3 (q, unsigned), the high ones 16+4c..16+4c+3.
 *   - A8: the values as Q8_0's 8 groups (q as it is: already an unsigned byte) in the order the
 *     kernels read them, 0 4 1 5 2 6 3 7 (each half's sum takes one group of each pair), then the
 *     16 rows' a_0 (64 bytes of f32), a_1, c_0, c_1 (LM_A8_GROUP, LM_A8_F): read front to back;
 *   - A4: the values as Q4_0's 4 groups, then the 16 rows' a and c (LM_A4_F);
 *   - F16 (no scales): panels of LM_HP rows (not LM_QP), each (cols / 16) chunks of 32 LM_HP
 *     bytes, chunk j holding values 16j..16j+15 of row l at bytes 32l..32l+31: linear.c's blocks
 *     of LM_HP rows read a panel front to back as one stream (row-major, 4 streams 2 cols bytes
 *     apart, gave 0.86x the GB/s for one input row).
 * data is lm_alloc'ed by whoever fills it. */
typedef struct lm_qmat {
  lm_qweight type;
  int64_t rows, cols;
  uint8_t *data;
  int packed;
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

/* Bytes of a packed matrix of rows x cols. */
size_t lm_qmat_packed_bytes(lm_qweight t, int64_t rows, int64_t cols);
/* W (packed 0) in the packed layout at out (lm_qmat_packed_bytes): a copy of every byte,
 * rearranged (panels in parallel) */
void lm_qmat_pack(const lm_qmat *W, uint8_t *out);
/* row r's block b of W (Q8_0/Q4_0/A8/A4, either layout) as an unpacked block (Q8_0/Q4_0: the GGUF
 * block; lm_qweight_block_bytes(W->type) <= LM_QMAX_BYTES bytes at out) */
static inline void lm_qmat_block(const lm_qmat *W, int64_t r, int64_t b, uint8_t *out) {
  int64_t nb = W->cols / LM_QK;
  int q8 = W->type == LM_QW_Q8_0, a8 = W->type == LM_QW_A8, a4 = W->type == LM_QW_A4;
  size_t bb = a8 ? LM_A8_BYTES : a4 ? LM_A4_BYTES : q8 ? LM_Q8_0_BYTES : LM_Q4_0_BYTES;
  if (!W->packed) {
    for (size_t j = 0; j < bb; j++) out[j] = W->data[(size_t)(r * nb + b) * bb + j];
    return;
  }
  const uint8_t *pb = W->data + (size_t)((r / LM_QP) * nb + b) * LM_QP * bb;
  int64_t l = r % LM_QP;
  if (a8) {
    for (int f = 0; f < 4; f++)
      for (int k = 0; k < 4; k++) out[4 * f + k] = pb[LM_A8_F(f) + 4 * l + k];
    for (int g = 0; g < 8; g++)
      for (int k = 0; k < 4; k++) out[16 + 4 * g + k] = pb[LM_A8_GROUP(g) + 4 * l + k];
    return;
  }
  if (a4) {
    for (int f = 0; f < 2; f++)
      for (int k = 0; k < 4; k++) out[4 * f + k] = pb[LM_A4_F(f) + 4 * l + k];
    for (int g = 0; g < 4; g++)
      for (int k = 0; k < 4; k++) out[8 + 4 * g + k] = pb[64 * g + 4 * l + k];
    return;
  }
  out[0] = pb[2 * l]; out[1] = pb[2 * l + 1];
  for (int g = 0; g < (q8 ? 8 : 4); g++)
    for (int k = 0; k < 4; k++) out[2 + 4 * g + k] = (uint8_t)(pb[2 * LM_QP + 4 * LM_QP * g + 4 * l + k] ^ (q8 ? 0x80 : 0));
}

/* Bytes of scratch lm_qmatmul needs for n activation rows of cols values. */
size_t lm_qmatmul_scratch(int64_t n, int64_t cols);
/* y (n, W.rows) = x (n, W.cols) W^T + bias (NULL: none), W packed. Each row of x is quantized to
 * Q8_0 once (into scratch, lm_qmatmul_scratch bytes); panels of weight rows run in parallel, each
 * against every activation row, so a weight block is read from memory once per call. */
void lm_qmatmul(const lm_qmat *W, const float *x, int64_t n, const float *bias, float *y, void *scratch, lm_qpath p);
/* lm_qmatmul in pieces, for a caller that shares the work among its own threads (session.c's
 * decode step): prepare each activation row i < n once, then any ranges r0..r1 - 1 of weight rows
 * (r0 and r1 multiples of LM_QP, or r1 = W.rows), on one thread each. The same bits as lm_qmatmul. */
void lm_qmatmul_prepare_row(const float *x, int64_t n, int64_t cols, void *scratch, int64_t i);
/* ... or row i's columns c0..c1 - 1 (multiples of LM_QK), the row prepared once all its pieces are:
 * the same bits as the whole row at once */
void lm_qmatmul_prepare_cols(const float *x, int64_t n, int64_t cols, void *scratch, int64_t i, int64_t c0, int64_t c1);
void lm_qmatmul_part(const lm_qmat *W, int64_t n, const float *bias, float *y, void *scratch, int64_t r0, int64_t r1, lm_qpath p);
/* y (W.rows) = W x, W packed, for x given as the Q8_0 blocks of lm_quant_act_q8 (tests and benchmarks). */
void lm_qmatvec(const lm_qmat *W, const uint8_t *xq, float *y, lm_qpath p);

#endif
