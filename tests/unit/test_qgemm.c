/* test_qgemm.c — prompt-sized products on quantized or f16 weights (src/kernels/qgemm.c).
 *
 * lm_qmat_dequantize equals the GGUF reader's dequantization (lm_gguf_dequantize, written apart in
 * gguf.c) bit for bit (A8, the K-quants as the loader keeps them: the same values). For Q8_0, Q4_0
 * and A8, lm_qgemm's portable path equals the definition written out here bit for bit (qgemm.h:
 * per output, acc = fma((float)dot_b, dx_b * dw_b, acc) over the blocks, dot_b the exact integer
 * dot product of the weight's block and the activation's Q8_0 block from lm_quant_act_q8, then
 * + bias); the AVX2 and AVX-512 VNNI paths, when this CPU has them, equal it bit for bit; and the
 * product is within a stated bound of the f32 product of the dequantized weights and the
 * unquantized activations: quantizing x = q d_h (d = amax / 127, q = round(x / d), d_h = f16(d))
 * moves each value by at most d / 2 + 127 |d - d_h| <= d_h (1/2 + 127 / 2^11) (1 + 2^-11), so
 *   |y - y_f32| <= sum over blocks of 0.5625 d_h,b sum_b |w|   + 1e-5 sum |x w| for float rounding.
 * Weight rows and activation rows that do not fill the kernels' tiles, with and without bias, and
 * the same bits at 1, 2 and 3 threads, on the packed panels a loaded model keeps (lm_qgemm runs
 * quant.c's panel kernel for them: a prompt's products are a decode step's, bit for bit). The
 * dequantization of the panels and of the GGUF layout equal the GGUF reader's. f16 weights (converted panels x sgemm) equal the double
 * product to sgemm's tolerance, and their bits do not depend on the thread count either (OpenBLAS
 * would thread itself inside a team of one). */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "kernels/qgemm.h"
#include "model/gguf.h"

/* W (rows, cols) from weights w: blocks of `gt` as lm_gguf_quantize makes them, in the GGUF layout */
static lm_qmat make(lm_qweight wt, int gt, const float *w, int64_t rows, int64_t cols) {
  lm_qmat W = {wt, rows, cols, malloc((size_t)rows * cols / 32 * lm_qweight_block_bytes(wt)), 0};
  cr_assert_eq(lm_gguf_quantize(gt, w, rows * cols, W.data), LM_OK);
  return W;
}

/* R packed into the panels the loader keeps (quant.h lm_qmat_pack) */
static lm_qmat pack(const lm_qmat *R) {
  lm_qmat W = {R->type, R->rows, R->cols, malloc(lm_qmat_packed_bytes(R->type, R->rows, R->cols)), 1};
  lm_qmat_pack(R, W.data);
  return W;
}

static float f16at(const uint8_t *p) { return lm_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* weight value k of row o's block b (R: the GGUF layout) */
static int wval(const lm_qmat *R, int64_t o, int64_t b, int k) {
  const uint8_t *wb = R->data + o * lm_qmat_row_bytes(R) + b * lm_qweight_block_bytes(R->type);
  if (R->type == LM_QW_Q8_0) return (int8_t)wb[2 + k];
  return k < 16 ? (wb[2 + k] & 15) - 8 : (wb[2 + k - 16] >> 4) - 8;
}

/* the GGUF blocks an A8 matrix was made from (check() compares with their values), or NULL */
static const uint8_t *R_GGUF;
static size_t R_GGUF_BYTES;

/* R in the GGUF layout (A8: unpacked, from R_GGUF); the products run on its packed panels (as a
 * loaded model's) */
static void check(const lm_qmat *R, int gt, int64_t n, uint64_t seed) {
  lm_qmat P = pack(R);
  const lm_qmat *W = &P;
  int64_t rows = W->rows, cols = W->cols, nb = cols / 32;
  lm_rng r;
  lm_rng_seed(&r, seed);
  float *wd = malloc(sizeof(float) * rows * cols), *wd2 = malloc(sizeof(float) * rows * cols);
  float *x = malloc(sizeof(float) * n * cols), *bias = malloc(sizeof(float) * rows);
  float *y1 = malloc(sizeof(float) * n * rows), *y2 = malloc(sizeof(float) * n * rows);
  uint8_t *xq = malloc((size_t)n * nb * 34);
  for (int64_t i = 0; i < n * cols; i++) x[i] = lm_rng_normal(&r) * (i % 61 == 0 ? 10.0f : 1.0f);
  for (int64_t i = 0; i < 32; i++) x[cols + i] = 0;   /* a zero activation block (row 1): d = 0 */
  for (int64_t i = 0; i < rows; i++) bias[i] = lm_rng_normal(&r);
  if (R_GGUF) cr_assert_eq(lm_gguf_dequantize(gt, R_GGUF, R_GGUF_BYTES, wd, rows * cols), LM_OK);
  else cr_assert_eq(lm_gguf_dequantize(gt, R->data, (size_t)rows * lm_qmat_row_bytes(R), wd, rows * cols), LM_OK);
  for (int layout = 0; layout < 2; layout++) {
    lm_qmat_dequantize(layout ? W : R, 0, rows, wd2);
    /* A8: the same values (a zero may come back as +0 where ggml's product gives -0) */
    int kept = R->type == LM_QW_A8 || R->type == LM_QW_A4;
    for (int64_t k = 0; kept && k < rows * cols; k++)
      cr_assert(wd[k] == wd2[k], "dequantized value %lld (%s): %.9g, the GGUF reader's %.9g", (long long)k,
                layout ? "panels" : "unpacked", (double)wd2[k], (double)wd[k]);
    cr_assert(kept || memcmp(wd, wd2, sizeof(float) * rows * cols) == 0,
              "dequantized values (%s) differ from the GGUF reader's", layout ? "panels" : "GGUF layout");
  }
  for (int64_t i = 0; i < n; i++) lm_quant_act_q8(x + i * cols, cols, xq + i * nb * 34);
  void *scratch = malloc(lm_qgemm_scratch(n, cols, 3));
  for (int with_bias = 0; with_bias < 2; with_bias++) {
    const float *b = with_bias ? bias : NULL;
    lm_qgemm(W, x, n, b, y1, scratch, 2, LM_QPATH_PORTABLE);
    for (int64_t i = 0; i < n; i++)
      for (int64_t o = 0; o < rows; o++) {
        /* the definition */
        float acc = 0;
        double bound = 0, exact = b ? b[o] : 0, mag = b ? fabs(b[o]) : 0;
        for (int64_t k = 0; k < nb; k++) {
          const uint8_t *xb = xq + (i * nb + k) * 34, *wb = R->data + o * lm_qmat_row_bytes(R) + k * lm_qweight_block_bytes(R->type);
          double sw = 0;
          for (int j = 0; j < 32; j++) sw += fabs(wd[o * cols + k * 32 + j]);
          if (R->type == LM_QW_A4) {   /* quant.h: one scale and one offset */
            float f[2], dx = f16at(xb);
            memcpy(f, wb, sizeof f);
            int32_t dot = 0, sx = 0;
            for (int j = 0; j < 32; j++) { dot += (j < 16 ? wb[8 + j] & 15 : wb[8 + j - 16] >> 4) * (int8_t)xb[2 + j]; sx += (int8_t)xb[2 + j]; }
            float u = (float)dot * (f[0] * dx);
            u = fmaf((float)sx, f[1] * dx, u);
            acc += u;
          } else if (R->type == LM_QW_A8) {   /* quant.h: two halves, each a scale and an offset */
            float f[4], dx = f16at(xb);
            memcpy(f, wb, sizeof f);
            int32_t dot[2] = {0, 0}, sx[2] = {0, 0};
            for (int j = 0; j < 32; j++) { dot[j / 16] += wb[16 + j] * (int8_t)xb[2 + j]; sx[j / 16] += (int8_t)xb[2 + j]; }
            float u = (float)dot[0] * (f[0] * dx);
            u = fmaf((float)dot[1], f[1] * dx, u);
            u = fmaf((float)sx[0], f[2] * dx, u);
            u = fmaf((float)sx[1], f[3] * dx, u);
            acc += u;
          } else {
            int32_t dot = 0;
            for (int j = 0; j < 32; j++) dot += wval(R, o, k, j) * (int8_t)xb[2 + j];
            acc = fmaf((float)dot, f16at(xb) * f16at(wb), acc);
          }
          bound += 0.5625 * f16at(xb) * sw;
        }
        float want = b ? acc + b[o] : acc, got = y1[i * rows + o];
        cr_assert(memcmp(&want, &got, 4) == 0, "row %lld col %lld: portable %.9g, definition %.9g", (long long)i, (long long)o,
                  (double)got, (double)want);
        for (int64_t k = 0; k < cols; k++) { exact += (double)x[i * cols + k] * wd[o * cols + k]; mag += fabs((double)x[i * cols + k] * wd[o * cols + k]); }
        cr_assert(fabs(got - exact) <= bound + 1e-5 * mag, "row %lld col %lld: %.9g vs f32 product %.9g (bound %.3g)", (long long)i,
                  (long long)o, (double)got, exact, bound + 1e-5 * mag);
      }
    for (int p = LM_QPATH_PORTABLE; p < LM_QPATH_COUNT; p++) {
      if (!lm_qpath_available((lm_qpath)p)) { cr_log_info("path %s not available here", lm_qpath_name((lm_qpath)p)); continue; }
      for (int threads = 1; threads <= 3; threads++) {
        memset(y2, 0xff, sizeof(float) * n * rows);
        lm_qgemm(W, x, n, b, y2, scratch, threads, (lm_qpath)p);
        cr_assert(memcmp(y1, y2, sizeof(float) * n * rows) == 0, "%s at %d threads differs from portable at 2", lm_qpath_name((lm_qpath)p),
                  threads);
      }
    }
  }
  free(scratch); free(wd); free(wd2); free(x); free(bias); free(y1); free(y2); free(xq); free(P.data);
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

/* rows 37: chunks of 16 and tiles of 4 with remainders; n 5, 35, 50: one, three (a pair and one)
 * and four activation panels, the last partly filled */
Test(qgemm, q8_0) {
  run(LM_QW_Q8_0, LM_GGML_Q8_0, 37, 32 * 3, 5, 1);
  run(LM_QW_Q8_0, LM_GGML_Q8_0, 70, 256, 35, 2);
  run(LM_QW_Q8_0, LM_GGML_Q8_0, 19, 64, 50, 5);
}

Test(qgemm, q4_0) {
  run(LM_QW_Q4_0, LM_GGML_Q4_0, 37, 32 * 3, 5, 3);
  run(LM_QW_Q4_0, LM_GGML_Q4_0, 70, 256, 35, 4);
  run(LM_QW_Q4_0, LM_GGML_Q4_0, 19, 64, 50, 6);
}

/* the extremes of the integer sums: Q8_0 values -128 (a GGUF file may hold them) and 127 against
 * activations of +-127, where vpmaddubsw would saturate without the sign trick */
Test(qgemm, extreme_blocks) {
  int64_t rows = 5, cols = 64, n = 17, nb = cols / 32;
  lm_qmat R = {LM_QW_Q8_0, rows, cols, malloc((size_t)rows * nb * 34), 0};
  for (int64_t o = 0; o < rows; o++)
    for (int64_t b = 0; b < nb; b++) {
      uint8_t *p = R.data + (o * nb + b) * 34;
      uint16_t d = lm_f32_to_f16(1.0f);
      p[0] = (uint8_t)d; p[1] = (uint8_t)(d >> 8);
      for (int j = 0; j < 32; j++) p[2 + j] = (uint8_t)(int8_t)((o + j) % 3 == 0 ? -128 : o % 2 ? 127 : -127);
    }
  float *x = malloc(sizeof(float) * n * cols), *y = malloc(sizeof(float) * n * rows), *y2 = malloc(sizeof(float) * n * rows);
  for (int64_t i = 0; i < n * cols; i++) x[i] = (i / 3) % 2 ? 127.0f : -127.0f;   /* d = 1: q = +-127 */
  lm_qmat W = pack(&R);
  void *scratch = malloc(lm_qgemm_scratch(n, cols, 1));
  lm_qgemm(&W, x, n, NULL, y, scratch, 1, LM_QPATH_PORTABLE);
  for (int64_t i = 0; i < n; i++)
    for (int64_t o = 0; o < rows; o++) {
      double s = 0;
      for (int64_t k = 0; k < cols; k++) s += (double)x[i * cols + k] * (int8_t)R.data[(o * nb + k / 32) * 34 + 2 + k % 32];
      cr_assert_eq(y[i * rows + o], (float)s, "row %lld col %lld: %g vs %g", (long long)i, (long long)o, (double)y[i * rows + o], s);
    }
  for (int p = 1; p < LM_QPATH_COUNT; p++) {
    if (!lm_qpath_available((lm_qpath)p)) continue;
    lm_qgemm(&W, x, n, NULL, y2, scratch, 1, (lm_qpath)p);
    cr_assert(memcmp(y, y2, sizeof(float) * n * rows) == 0, "%s differs from portable", lm_qpath_name((lm_qpath)p));
  }
  free(W.data); free(R.data); free(x); free(y); free(y2); free(scratch);
}

/* K-quant and Q4_0 blocks (random bits with small f16 scales), as the loader keeps them: A8 blocks
 * (gguf.c lm_gguf_to_a8), and A4 for Q4_K and Q4_0 (lm_gguf_to_a4), holding the GGUF reader's values, and their products as quant.h defines
 * them (cols 512: two K-quant super-blocks a row; n 33: five kernel calls, the last of one row) */
Test(qgemm, k_quants_kept_as_a8_a4) {
  const int types[] = {LM_GGML_Q4_K, LM_GGML_Q5_K, LM_GGML_Q6_K, LM_GGML_Q4_0};
  int64_t rows = 40, cols = 512;
  lm_rng r;
  lm_rng_seed(&r, 7);
  for (int t = 0; t < 4; t++) {
    size_t bb = lm_ggml_block_bytes(types[t]);
    int64_t per = lm_ggml_block_elems(types[t]), nblk = rows * cols / per;
    uint8_t *blk = malloc(bb * nblk);
    for (size_t i = 0; i < bb * nblk; i++) blk[i] = (uint8_t)(lm_rng_u64(&r) >> 56);
    for (int64_t b = 0; b < nblk; b++) {   /* d (and dmin) small and finite */
      uint8_t *p = blk + b * bb;
      uint16_t d = lm_f32_to_f16(0.01f + 0.001f * (float)(b % 7)), dmin = lm_f32_to_f16(0.002f);
      if (types[t] == LM_GGML_Q6_K) { p[bb - 2] = (uint8_t)d; p[bb - 1] = (uint8_t)(d >> 8); }
      else if (types[t] == LM_GGML_Q4_0) { p[0] = (uint8_t)d; p[1] = (uint8_t)(d >> 8); }
      else { p[0] = (uint8_t)d; p[1] = (uint8_t)(d >> 8); p[2] = (uint8_t)dmin; p[3] = (uint8_t)(dmin >> 8); }
    }
    lm_qmat W = {LM_QW_A8, rows, cols, malloc((size_t)rows * cols / 32 * LM_A8_BYTES), 0};
    cr_assert(lm_gguf_a8_ok(types[t]));
    cr_assert_eq(lm_gguf_to_a8(types[t], blk, bb * nblk, W.data, rows * cols), LM_OK, "%s", lm_last_error());
    for (int64_t i = 0; i < rows * cols / 32; i++)   /* q below 128: the AVX2 path's bound */
      for (int j = 0; j < 32; j++) cr_assert(W.data[i * LM_A8_BYTES + 16 + j] < 128);
    /* check() compares with the GGUF reader's values of these blocks */
    R_GGUF = blk; R_GGUF_BYTES = bb * nblk;
    check(&W, types[t], 33, 10 + t);
    /* Q4_K and Q4_0 also as A4 */
    cr_assert_eq(lm_gguf_a4_ok(types[t]), types[t] == LM_GGML_Q4_K || types[t] == LM_GGML_Q4_0);
    if (lm_gguf_a4_ok(types[t])) {
      lm_qmat W4 = {LM_QW_A4, rows, cols, malloc((size_t)rows * cols / 32 * LM_A4_BYTES), 0};
      cr_assert_eq(lm_gguf_to_a4(types[t], blk, bb * nblk, W4.data, rows * cols), LM_OK, "%s", lm_last_error());
      check(&W4, types[t], 33, 20 + t);
      free(W4.data);
    }
    R_GGUF = NULL;
    free(W.data); free(blk);
  }
  cr_assert(!lm_gguf_a8_ok(LM_GGML_Q8_0) && !lm_gguf_a8_ok(LM_GGML_F16));
  cr_assert_eq(lm_gguf_to_a8(LM_GGML_Q8_0, NULL, 0, NULL, 32), LM_ERR_UNSUPPORTED);
  cr_assert_eq(lm_gguf_to_a4(LM_GGML_Q6_K, NULL, 0, NULL, 256), LM_ERR_UNSUPPORTED);
}

/* f16 weights: the double product within sgemm's tolerance, and the same bits at 1, 2 and 3
 * threads and packed in panels (as the loader keeps them; lm_qmat_dequantize gives every row back). 300 rows x 256 columns x 64 rows: large enough that OpenBLAS threads an sgemm it is
 * allowed to (a 128-row panel: 2M multiply-adds) */
Test(qgemm, f16_threads) {
  int64_t rows = 300, cols = 256, n = 64;
  lm_rng r;
  lm_rng_seed(&r, 21);
  lm_qmat W = {LM_QW_F16, rows, cols, malloc((size_t)rows * cols * 2), 0};
  float *wd = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * n * cols), *bias = malloc(sizeof(float) * rows);
  float *y1 = malloc(sizeof(float) * n * rows), *y2 = malloc(sizeof(float) * n * rows);
  uint16_t *wh = (uint16_t *)W.data;
  for (int64_t i = 0; i < rows * cols; i++) { wh[i] = lm_f32_to_f16(lm_rng_normal(&r)); wd[i] = lm_f16_to_f32(wh[i]); }
  for (int64_t i = 0; i < n * cols; i++) x[i] = lm_rng_normal(&r);
  for (int64_t i = 0; i < rows; i++) bias[i] = lm_rng_normal(&r);
  void *scratch = malloc(lm_qgemm_scratch(n, cols, 3));
  int outer = omp_get_max_threads();
  omp_set_num_threads(3);   /* what OpenBLAS would take inside a team of one */
  lm_qgemm(&W, x, n, bias, y1, scratch, 2, LM_QPATH_PORTABLE);
  for (int64_t i = 0; i < n; i++)
    for (int64_t o = 0; o < rows; o++) {
      double s = bias[o], mag = fabs(bias[o]);
      for (int64_t k = 0; k < cols; k++) { s += (double)x[i * cols + k] * wd[o * cols + k]; mag += fabs((double)x[i * cols + k] * wd[o * cols + k]); }
      cr_assert(fabs(y1[i * rows + o] - s) <= 1e-5 * mag, "row %lld col %lld: %.9g vs %.9g", (long long)i, (long long)o,
                (double)y1[i * rows + o], s);
    }
  for (int threads = 1; threads <= 3; threads++) {
    lm_qgemm(&W, x, n, bias, y2, scratch, threads, LM_QPATH_PORTABLE);
    cr_assert(memcmp(y1, y2, sizeof(float) * n * rows) == 0, "f16 at %d threads differs from 2", threads);
    cr_assert_eq(omp_get_max_threads(), 3, "lm_qgemm changed the caller's thread count");
  }
  lm_qmat P = {LM_QW_F16, rows, cols, malloc(lm_qmat_packed_bytes(LM_QW_F16, rows, cols)), 1};
  lm_qmat_pack(&W, P.data);
  float *back = malloc(sizeof(float) * rows * cols);
  lm_qmat_dequantize(&P, 0, rows, back);
  cr_assert(memcmp(back, wd, sizeof(float) * rows * cols) == 0, "packed f16 rows differ");
  lm_qgemm(&P, x, n, bias, y2, scratch, 2, LM_QPATH_PORTABLE);
  cr_assert(memcmp(y1, y2, sizeof(float) * n * rows) == 0, "packed f16 differs");
  omp_set_num_threads(outer);
  free(W.data); free(P.data); free(back); free(wd); free(x); free(bias); free(y1); free(y2); free(scratch);
}
