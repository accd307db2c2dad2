/* test_quant.c — the quantized matrix-vector kernels (src/kernels/quant.c).
 *
 * For Q8_0 and Q4_0 weights (blocks made by the GGUF quantizer, lm_gguf_quantize, then packed into
 * panels as the loader packs them: lm_qmat_pack keeps every block, lm_qmat_block gives it back)
 * times Q8_0 activations: the portable path equals the definition written out here (quant.h: per
 * output, acc = fma((float)dot_b, dw_b * dx_b, acc) over the blocks in order, dot_b the block's
 * exact integer dot product) bit for bit; the AVX2 and AVX-512 VNNI paths, when this CPU has them,
 * equal the portable path bit for bit; and the product is within a stated bound of the f32 product
 * of the dequantized weights and the unquantized activations: each activation moves by at most
 * d_x / 2 when quantized, so
 *   |y - y_f32| <= sum over blocks of (d_x / 2) * sum |w|   (+ 1e-5 relative for float rounding). */
/* the scale multiply is rounded before the fma on every path */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "kernels/quant.h"
#include "model/gguf.h"

/* the GGUF blocks wq (rows x cols of wt) as the panels the kernels read */
static lm_qmat packed(lm_qweight wt, const uint8_t *wq, int64_t rows, int64_t cols) {
  lm_qmat raw = {wt, rows, cols, (uint8_t *)wq, 0}, W = {wt, rows, cols, malloc(lm_qmat_packed_bytes(wt, rows, cols)), 1};
  lm_qmat_pack(&raw, W.data);
  return W;
}

static void run_case(lm_qweight wt, int64_t rows, int64_t cols, uint64_t seed) {
  int gt = wt == LM_QW_Q8_0 ? LM_GGML_Q8_0 : LM_GGML_Q4_0;
  size_t bb = lm_ggml_block_bytes(gt);
  int64_t nb = cols / 32;
  lm_rng r;
  lm_rng_seed(&r, seed);
  float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * cols), *wd = malloc(sizeof(float) * rows * cols);
  uint8_t *wq = malloc(bb * rows * nb), *xq = malloc(34 * nb);
  float *y = malloc(sizeof(float) * rows), *y2 = malloc(sizeof(float) * rows);
  for (int64_t i = 0; i < rows * cols; i++) w[i] = lm_rng_normal(&r) * (i % 97 == 0 ? 8.0f : 1.0f);
  for (int64_t i = 0; i < cols; i++) x[i] = lm_rng_normal(&r) * (i % 61 == 0 ? 10.0f : 1.0f);
  for (int64_t i = 0; i < 32; i++) x[i] = 0;   /* a zero activation block: d = 0 */
  cr_assert_eq(lm_gguf_quantize(gt, w, rows * cols, wq), LM_OK);
  cr_assert_eq(lm_gguf_dequantize(gt, wq, bb * rows * nb, wd, rows * cols), LM_OK);
  lm_quant_act_q8(x, cols, xq);
  lm_qmat W = packed(wt, wq, rows, cols);
  /* the packed panels hold every block as it was */
  for (int64_t i = 0; i < rows; i++)
    for (int64_t b = 0; b < nb; b++) {
      uint8_t blk[LM_QMAX_BYTES];
      lm_qmat_block(&W, i, b, blk);
      cr_assert(memcmp(blk, wq + (i * nb + b) * bb, bb) == 0, "row %lld block %lld changed in the panels", (long long)i, (long long)b);
    }

  /* the definition, written out */
  lm_qmatvec(&W, xq, y, LM_QPATH_PORTABLE);
  for (int64_t i = 0; i < rows; i++) {
    float acc = 0;
    for (int64_t b = 0; b < nb; b++) {
      const uint8_t *wb = wq + (i * nb + b) * bb, *xb = xq + b * 34;
      float dw = lm_f16_to_f32((uint16_t)(wb[0] | wb[1] << 8)), dx = lm_f16_to_f32((uint16_t)(xb[0] | xb[1] << 8));
      int32_t dot = 0;
      for (int j = 0; j < 32; j++) {
        int qw = wt == LM_QW_Q8_0 ? (int8_t)wb[2 + j] : j < 16 ? (wb[2 + j] & 15) - 8 : (wb[2 + j - 16] >> 4) - 8;
        dot += qw * (int8_t)xb[2 + j];
      }
      acc = fmaf((float)dot, dw * dx, acc);
    }
    cr_assert(memcmp(&acc, &y[i], 4) == 0, "row %lld: portable %.9g, definition %.9g", (long long)i, (double)y[i], (double)acc);
    /* the f32 product, and the bound */
    double exact = 0, bound = 0, mag = 0;
    for (int64_t b = 0; b < nb; b++) {
      const uint8_t *xb = xq + b * 34;
      double dx = lm_f16_to_f32((uint16_t)(xb[0] | xb[1] << 8)), aw = 0;
      for (int j = 0; j < 32; j++) {
        double wv = wd[i * cols + b * 32 + j];
        exact += wv * x[b * 32 + j];
        mag += fabs(wv * x[b * 32 + j]);
        aw += fabs(wv);
      }
      bound += dx / 2 * aw * 1.001;   /* d_x is the f16 of amax / 127: a hair off the true step */
    }
    cr_assert(fabs(y[i] - exact) <= bound + 1e-5 * mag, "row %lld: %.9g vs f32 %.9g, bound %.3g", (long long)i, (double)y[i],
              exact, bound);
  }
  /* every path this CPU has gives the same bits */
  for (int p = 1; p < LM_QPATH_COUNT; p++) {
    if (!lm_qpath_available((lm_qpath)p)) { cr_log_info("path %s not available here", lm_qpath_name((lm_qpath)p)); continue; }
    lm_qmatvec(&W, xq, y2, (lm_qpath)p);
    cr_assert(memcmp(y, y2, sizeof(float) * rows) == 0, "%s differs from portable", lm_qpath_name((lm_qpath)p));
  }
  free(w); free(x); free(wd); free(wq); free(xq); free(y); free(y2); free(W.data);
}

Test(quant, q8_0_paths_agree_and_bound) {
  run_case(LM_QW_Q8_0, 37, 32 * 13, 1);
  run_case(LM_QW_Q8_0, 300, 4096, 2);   /* large enough to run rows in parallel */
}

Test(quant, q4_0_paths_agree_and_bound) {
  run_case(LM_QW_Q4_0, 37, 32 * 13, 3);
  run_case(LM_QW_Q4_0, 300, 4096, 4);
}

Test(quant, extreme_blocks) {
  /* the extremes of the integer sums, where the SIMD paths could overflow: Q8_0 weights of -128 (a
   * GGUF file may hold them) and +-127, Q4_0 nibbles 0 and 15 (-8 and 7), against activations of
   * +-127 (d = 1 everywhere: each output an exact integer). 17 rows: a whole panel and one row of a
   * padded one. */
  int64_t rows = 17, nb = 2, cols = 64;
  uint8_t x[68];
  for (int64_t b = 0; b < nb; b++) {
    x[b * 34] = 0x00; x[b * 34 + 1] = 0x3c;
    for (int j = 0; j < 32; j++) x[b * 34 + 2 + j] = (uint8_t)(int8_t)((j + b) % 3 ? 127 : -127);
  }
  for (int t = 0; t < 2; t++) {
    lm_qweight wt = t ? LM_QW_Q4_0 : LM_QW_Q8_0;
    size_t bb = lm_qweight_block_bytes(wt);
    uint8_t *wq = malloc(rows * nb * bb);
    float want[17], y[17];
    for (int64_t o = 0; o < rows; o++) {
      double s = 0;
      for (int64_t b = 0; b < nb; b++) {
        uint8_t *p = wq + (o * nb + b) * bb;
        p[0] = 0x00; p[1] = 0x3c;
        for (int j = 0; j < (t ? 16 : 32); j++)
          p[2 + j] = t ? ((o + j) % 3 == 0 ? 0x00 : (o + j) % 3 == 1 ? 0xff : 0x0f)
                       : (uint8_t)(int8_t)((o + j) % 3 == 0 ? -128 : o % 2 ? 127 : -127);
        for (int j = 0; j < 32; j++) {
          int v = t ? (j < 16 ? (p[2 + j] & 15) - 8 : (p[2 + j - 16] >> 4) - 8) : (int8_t)p[2 + j];
          s += (double)v * (int8_t)x[b * 34 + 2 + j];
        }
      }
      want[o] = (float)s;
    }
    lm_qmat W = packed(wt, wq, rows, cols);
    for (int p = 0; p < LM_QPATH_COUNT; p++) {
      if (!lm_qpath_available((lm_qpath)p)) continue;
      lm_qmatvec(&W, x, y, (lm_qpath)p);
      for (int64_t o = 0; o < rows; o++)
        cr_assert_eq(y[o], want[o], "%s %s row %lld: %g vs %g", lm_qpath_name((lm_qpath)p), t ? "q4_0" : "q8_0", (long long)o,
                     (double)y[o], (double)want[o]);
    }
    free(wq); free(W.data);
  }
}

/* lm_qmatmul: n rows at once (each panel against up to 8 activation rows at a time) give each row's
 * lm_qmatvec bit for bit, plus the bias, on every path this CPU has */
static void matmul_case(lm_qweight wt, int64_t rows, int64_t cols, int64_t n, uint64_t seed) {
  int gt = wt == LM_QW_Q8_0 ? LM_GGML_Q8_0 : LM_GGML_Q4_0;
  int64_t nb = cols / 32;
  lm_rng r;
  lm_rng_seed(&r, seed);
  float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * n * cols), *bias = malloc(sizeof(float) * rows);
  float *y = malloc(sizeof(float) * n * rows), *y1 = malloc(sizeof(float) * rows);
  uint8_t *wq = malloc(lm_ggml_block_bytes(gt) * rows * nb), *xq = malloc(34 * nb);
  void *scratch = malloc(lm_qmatmul_scratch(n, cols));
  for (int64_t i = 0; i < rows * cols; i++) w[i] = lm_rng_normal(&r);
  for (int64_t i = 0; i < n * cols; i++) x[i] = lm_rng_normal(&r) * (i % 37 == 0 ? 6.0f : 1.0f);
  for (int64_t i = 0; i < rows; i++) bias[i] = lm_rng_normal(&r);
  cr_assert_eq(lm_gguf_quantize(gt, w, rows * cols, wq), LM_OK);
  lm_qmat W = packed(wt, wq, rows, cols);
  for (int p = 0; p < LM_QPATH_COUNT; p++) {
    if (!lm_qpath_available((lm_qpath)p)) continue;
    lm_qmatmul(&W, x, n, bias, y, scratch, (lm_qpath)p);
    for (int64_t i = 0; i < n; i++) {
      lm_quant_act_q8(x + i * cols, cols, xq);
      lm_qmatvec(&W, xq, y1, LM_QPATH_PORTABLE);
      for (int64_t o = 0; o < rows; o++) {
        float want = y1[o] + bias[o];
        cr_assert(memcmp(&want, &y[i * rows + o], 4) == 0, "%s row %lld out %lld: %.9g vs %.9g", lm_qpath_name((lm_qpath)p),
                  (long long)i, (long long)o, (double)y[i * rows + o], (double)want);
      }
    }
  }
  free(w); free(x); free(bias); free(y); free(y1); free(W.data); free(wq); free(xq); free(scratch);
}

Test(quant, matmul_rows_equal_matvec) {
  matmul_case(LM_QW_Q8_0, 45, 32 * 5, 7, 5);   /* rows not a multiple of the panel */
  matmul_case(LM_QW_Q4_0, 45, 32 * 5, 7, 6);
  matmul_case(LM_QW_Q4_0, 200, 1024, 19, 7);   /* in parallel; n: two groups of 8 rows and 3 */
  matmul_case(LM_QW_Q8_0, 200, 1024, 19, 8);
}

/* lm_quant_act_q8 (AVX-512 where the CPU has it) equals ggml's quantize_row_q8_0_ref written out
 * here, byte for byte: random blocks over many magnitudes, values that land exactly on halves
 * (x / d = k + 0.5, rounded away from zero), a zero block, and NaNs (ignored by the maximum) */
Test(quant, activation_blocks_equal_the_definition) {
  int64_t nb = 200, n = nb * 32;
  lm_rng r;
  lm_rng_seed(&r, 31);
  float *x = malloc(sizeof(float) * n);
  uint8_t *got = malloc(34 * nb), *want = malloc(34 * nb);
  for (int64_t i = 0; i < n; i++) x[i] = lm_rng_normal(&r) * ldexpf(1.0f, (int)(i / 32 % 40) - 20);
  for (int j = 0; j < 32; j++) x[32 + j] = 0;
  for (int j = 0; j < 32; j++) x[64 + j] = j == 0 ? 127.0f : (float)(j - 16) + (j % 2 ? 0.5f : -0.5f);   /* d = 1: halves */
  for (int j = 0; j < 32; j++) x[96 + j] = j == 0 ? -127.0f : (float)(j % 5) * 0.5f * (j % 2 ? 1 : -1);
  x[130] = NAN; x[160 + 7] = NAN;
  lm_quant_act_q8(x, n, got);
  for (int64_t b = 0; b < nb; b++) {
    const float *v = x + b * 32;
    uint8_t *o = want + b * 34;
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(v[j]));
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    uint16_t h = lm_f32_to_f16(d);
    o[0] = (uint8_t)h; o[1] = (uint8_t)(h >> 8);
    for (int j = 0; j < 32; j++) o[2 + j] = isnan(v[j]) ? 0 : (uint8_t)(int8_t)roundf(v[j] * id);
  }
  for (int64_t b = 0; b < nb; b++)
    for (int j = 0; j < 34; j++)
      cr_assert_eq(got[b * 34 + j], want[b * 34 + j], "block %lld byte %d: %d vs %d", (long long)b, j, got[b * 34 + j], want[b * 34 + j]);
  free(x); free(got); free(want);
}
