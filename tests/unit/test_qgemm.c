/* test_qgemm.c — prompt-sized products on quantized weights (src/kernels/qgemm.c).
 *
 * lm_qmat_dequantize equals the GGUF reader's dequantization (lm_gguf_dequantize, written apart in
 * gguf.c) bit for bit; lm_qgemm equals the f32 product of those dequantized weights, computed here
 * in double, to sgemm's tolerance (|y - y_ref| <= 1e-5 sum |x w|, + the bias), for Q8_0, Q4_0 and
 * the K-quants (Q4_K, Q5_K, Q6_K) as the loader keeps them (dequantized, requantized to Q8_0);
 * rows that are not a multiple of the panel, a few and many activation rows; and the bits do
 * not depend on the thread count. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "kernels/qgemm.h"
#include "model/gguf.h"

/* W (rows, cols) from weights w: blocks of `gt` as lm_gguf_quantize makes them */
static lm_qmat make(lm_qweight wt, int gt, const float *w, int64_t rows, int64_t cols) {
  lm_qmat W = {wt, rows, cols, malloc((size_t)rows * cols / 32 * lm_qweight_block_bytes(wt))};
  cr_assert_eq(lm_gguf_quantize(gt, w, rows * cols, W.data), LM_OK);
  return W;
}

static void check(const lm_qmat *W, int gt, int64_t n, uint64_t seed) {
  int64_t rows = W->rows, cols = W->cols;
  lm_rng r;
  lm_rng_seed(&r, seed);
  float *wd = malloc(sizeof(float) * rows * cols), *wd2 = malloc(sizeof(float) * rows * cols);
  float *x = malloc(sizeof(float) * n * cols), *bias = malloc(sizeof(float) * rows);
  float *y1 = malloc(sizeof(float) * n * rows), *y2 = malloc(sizeof(float) * n * rows);
  for (int64_t i = 0; i < n * cols; i++) x[i] = lm_rng_normal(&r) * (i % 61 == 0 ? 10.0f : 1.0f);
  for (int64_t i = 0; i < rows; i++) bias[i] = lm_rng_normal(&r);
  cr_assert_eq(lm_gguf_dequantize(gt, W->data, (size_t)rows * lm_qmat_row_bytes(W), wd, rows * cols), LM_OK);
  lm_qmat_dequantize(W, 0, rows, wd2);
  cr_assert(memcmp(wd, wd2, sizeof(float) * rows * cols) == 0, "dequantized values differ from the GGUF reader's");
  void *scratch = malloc(lm_qgemm_scratch(cols, 2));
  omp_set_num_threads(2);
  for (int with_bias = 0; with_bias < 2; with_bias++) {
    const float *b = with_bias ? bias : NULL;
    lm_qgemm(W, x, n, b, y1, scratch, 2);
    for (int64_t i = 0; i < n; i++)
      for (int64_t o = 0; o < rows; o++) {
        double s = 0, mag = 0;
        for (int64_t k = 0; k < cols; k++) { s += (double)x[i * cols + k] * wd[o * cols + k]; mag += fabs((double)x[i * cols + k] * wd[o * cols + k]); }
        if (b) { s += b[o]; mag += fabs(b[o]); }
        double got = y1[i * rows + o];
        cr_assert(fabs(got - s) <= 1e-5 * mag + 1e-30, "row %lld col %lld: %.9g vs %.9g (mag %.3g)", (long long)i, (long long)o, got, s, mag);
      }
    omp_set_num_threads(1);   /* one thread: the same panels, each by the same sgemm, so the same bits */
    lm_qgemm(W, x, n, b, y2, scratch, 1);
    omp_set_num_threads(2);
    cr_assert(memcmp(y1, y2, sizeof(float) * n * rows) == 0, "the result depends on the thread count");
  }
  free(scratch); free(wd); free(wd2); free(x); free(bias); free(y1); free(y2);
}

static void run(lm_qweight wt, int gt, int64_t rows, int64_t cols, int64_t n, uint64_t seed) {
  lm_rng r;
  lm_rng_seed(&r, seed);
  float *w = malloc(sizeof(float) * rows * cols);
  for (int64_t i = 0; i < rows * cols; i++) w[i] = lm_rng_normal(&r) * (i % 97 == 0 ? 8.0f : 1.0f);
  lm_qmat W = make(wt, gt, w, rows, cols);
  check(&W, gt, n, seed + 1);
  free(W.data); free(w);
}

Test(qgemm, q8_0) {
  run(LM_QW_Q8_0, LM_GGML_Q8_0, 37, 32 * 3, 5, 1);
  run(LM_QW_Q8_0, LM_GGML_Q8_0, 300, 256, 35, 2);   /* 300: panels and a partial one */
}

Test(qgemm, q4_0) {
  run(LM_QW_Q4_0, LM_GGML_Q4_0, 37, 32 * 3, 5, 3);
  run(LM_QW_Q4_0, LM_GGML_Q4_0, 300, 256, 35, 4);
}

/* K-quant blocks (random bits with small f16 scales), as the loader keeps them: their values
 * requantized to Q8_0 (gguf_model.c qlin_part) */
Test(qgemm, k_quants_requantized_to_q8_0) {
  const int types[] = {LM_GGML_Q4_K, LM_GGML_Q5_K, LM_GGML_Q6_K};
  int64_t rows = 150, cols = 512, nblk = rows * cols / 256;
  lm_rng r;
  lm_rng_seed(&r, 7);
  for (int t = 0; t < 3; t++) {
    size_t bb = lm_ggml_block_bytes(types[t]);
    uint8_t *blk = malloc(bb * nblk);
    for (size_t i = 0; i < bb * nblk; i++) blk[i] = (uint8_t)(lm_rng_u64(&r) >> 56);
    for (int64_t b = 0; b < nblk; b++) {   /* d (and dmin) small and finite */
      uint8_t *p = blk + b * bb;
      uint16_t d = lm_f32_to_f16(0.01f + 0.001f * (float)(b % 7)), dmin = lm_f32_to_f16(0.002f);
      if (types[t] == LM_GGML_Q6_K) { p[bb - 2] = (uint8_t)d; p[bb - 1] = (uint8_t)(d >> 8); }
      else { p[0] = (uint8_t)d; p[1] = (uint8_t)(d >> 8); p[2] = (uint8_t)dmin; p[3] = (uint8_t)(dmin >> 8); }
    }
    float *w = malloc(sizeof(float) * rows * cols);
    cr_assert_eq(lm_gguf_dequantize(types[t], blk, bb * nblk, w, rows * cols), LM_OK);
    for (int64_t i = 0; i < rows * cols; i++) cr_assert(isfinite(w[i]));
    lm_qmat W = make(LM_QW_Q8_0, LM_GGML_Q8_0, w, rows, cols);
    check(&W, LM_GGML_Q8_0, 40, 10 + t);
    free(W.data); free(w); free(blk);
  }
}
