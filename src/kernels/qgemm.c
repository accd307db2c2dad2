/* qgemm.c — prompt-sized products on f16 weights, and the exact dequantization of kept weights
 * (qgemm.h).
 *
 * f16 weights (LM_QW_F16) have no integer form: panels of PANEL rows are converted to f32 (exact)
 * into the thread's scratch and multiplied by cblas_sgemm. OpenBLAS (its OpenMP build) runs one
 * thread only inside an active parallel region; a region of one thread is not active, so each
 * thread first sets its own (task-local) OpenMP thread count to 1: every sgemm then runs
 * single-threaded and the bits do not depend on the thread count.
 *
 * Q8_0 and Q4_0 weights run quant.c's panel kernel for any number of rows (lm_qgemm passes them
 * on): its integer dot products on the packed panels, 8 activation rows a call, outran the integer
 * GEMM that was here (activations packed in panels of 16 rows, weight rows unpacked per call,
 * 4 x 2 panel microkernel; bench_qgemm, one thread, TinyLlama's layer at 256 rows: q8_0 467 vs
 * 397 GFLOP/s, q4_0 491 vs 461) and computes the same definition. */
#include "kernels/qgemm.h"
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define PANEL 128   /* f16: weight rows per sgemm, wide enough that sgemm's packing of x is paid off */

#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

size_t lm_qmat_row_bytes(const lm_qmat *W) { return (size_t)(W->cols / LM_QK) * lm_qweight_block_bytes(W->type); }

static inline float scale_at(const uint8_t *p) { return lm_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* ------------------------------------------------------------------ dequantizing (exact) */

static void deq_q8_0(const uint8_t *w, int64_t nb, float *out) {
  for (int64_t b = 0; b < nb; b++, w += LM_Q8_0_BYTES, out += LM_QK) {
    float d = scale_at(w);
    const int8_t *q = (const int8_t *)(w + 2);
    for (int j = 0; j < LM_QK; j++) out[j] = d * (float)q[j];
  }
}

static void deq_q4_0(const uint8_t *w, int64_t nb, float *out) {
  for (int64_t b = 0; b < nb; b++, w += LM_Q4_0_BYTES, out += LM_QK) {
    float d = scale_at(w);
    const uint8_t *q = w + 2;
    for (int j = 0; j < LM_QK / 2; j++) {
      out[j] = d * (float)((q[j] & 15) - 8);
      out[j + LM_QK / 2] = d * (float)((q[j] >> 4) - 8);
    }
  }
}

static void deq_f16(const uint8_t *w, int64_t nb, float *out) {
  uint16_t h[LM_QK];
  for (int64_t b = 0; b < nb; b++, w += 2 * LM_QK, out += LM_QK) {
    memcpy(h, w, sizeof h);   /* the row may sit at any byte offset */
    lm_f16_to_f32_row(h, out, LM_QK);
  }
}

/* A8: w = a_h q + c_h (quant.h); a_h q is exact, so this is the value ggml's dequantizer rounds */
static void deq_a8(const uint8_t *w, int64_t nb, float *out) {
  for (int64_t b = 0; b < nb; b++, w += LM_A8_BYTES, out += LM_QK) {
    float f[4];
    memcpy(f, w, sizeof f);
    for (int j = 0; j < LM_QK; j++) out[j] = f[j / 16] * (float)w[16 + j] + f[2 + j / 16];
  }
}

/* A4: w = a q + c */
static void deq_a4(const uint8_t *w, int64_t nb, float *out) {
  for (int64_t b = 0; b < nb; b++, w += LM_A4_BYTES, out += LM_QK) {
    float f[2];
    memcpy(f, w, sizeof f);
    for (int j = 0; j < LM_QK / 2; j++) {
      out[j] = f[0] * (float)(w[8 + j] & 15) + f[1];
      out[j + LM_QK / 2] = f[0] * (float)(w[8 + j] >> 4) + f[1];
    }
  }
}

typedef void (*deq_row)(const uint8_t *w, int64_t nb, float *out);
static const deq_row DEQ[LM_QW_COUNT] = {[LM_QW_Q8_0] = deq_q8_0, [LM_QW_Q4_0] = deq_q4_0, [LM_QW_F16] = deq_f16,
                                         [LM_QW_A8] = deq_a8, [LM_QW_A4] = deq_a4};

void lm_qmat_dequantize(const lm_qmat *W, int64_t r0, int64_t nr, float *out) {
  size_t rb = lm_qmat_row_bytes(W);
  int64_t nb = W->cols / LM_QK;
  uint8_t blk[LM_QMAX_BYTES];
  for (int64_t r = 0; r < nr; r++) {
    if (!W->packed) { DEQ[W->type](W->data + (size_t)(r0 + r) * rb, nb, out + r * W->cols); continue; }
    if (W->type == LM_QW_F16) {   /* a packed f16 row: 16 values in each of its panel's chunks (quant.h) */
      const uint8_t *p = W->data + (size_t)((r0 + r) / LM_HP) * LM_HP * rb + 32 * (size_t)((r0 + r) % LM_HP);
      uint16_t h[16];
      for (int64_t j = 0; j < W->cols / 16; j++) {
        memcpy(h, p + (size_t)j * 32 * LM_HP, sizeof h);
        lm_f16_to_f32_row(h, out + r * W->cols + 16 * j, 16);
      }
      continue;
    }
    for (int64_t b = 0; b < nb; b++) {   /* a packed row, block by block */
      lm_qmat_block(W, r0 + r, b, blk);
      DEQ[W->type](blk, 1, out + r * W->cols + b * LM_QK);
    }
  }
}

/* ------------------------------------------------------------------ the products */

size_t lm_qgemm_scratch(int64_t n, int64_t cols, int threads) {
  size_t f16 = (size_t)threads * ALIGN64((size_t)PANEL * (size_t)cols * sizeof(float)), q = lm_qmatmul_scratch(n, cols);
  return (f16 > q ? f16 : q) + 64;
}

void lm_qgemm_sgemm(const lm_qmat *W, const float *x, int64_t n, const float *bias, float *y, void *scratch, int threads) {
  int64_t rows = W->rows, cols = W->cols, np = (rows + PANEL - 1) / PANEL;
  uint8_t *base = (uint8_t *)ALIGN64((uintptr_t)scratch);
  size_t per = ALIGN64((size_t)PANEL * (size_t)cols * sizeof(float));
  #pragma omp parallel num_threads(threads)
  {
    omp_set_num_threads(1);   /* this thread's sgemm single-threaded, even in a team of one (see above) */
    /* dynamic: a thread whose core is busy with another job takes fewer panels */
    #pragma omp for schedule(dynamic, 1)
    for (int64_t p = 0; p < np; p++) {
      int64_t r0 = p * PANEL, nr = rows - r0 < PANEL ? rows - r0 : PANEL;
      float *wp = (float *)(base + (size_t)omp_get_thread_num() * per);
      lm_qmat_dequantize(W, r0, nr, wp);
      float beta = 0.0f;
      if (bias) {
        for (int64_t i = 0; i < n; i++) memcpy(y + i * rows + r0, bias + r0, (size_t)nr * sizeof(float));
        beta = 1.0f;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)nr, (int)cols, 1.0f, x, (int)cols, wp, (int)cols, beta,
                  y + r0, (int)rows);
    }
  }
}

void lm_qgemm(const lm_qmat *W, const float *x, int64_t n, const float *bias, float *y, void *scratch, int threads, lm_qpath path) {
  if (W->type == LM_QW_F16) { lm_qgemm_sgemm(W, x, n, bias, y, scratch, threads); return; }
  int outer = omp_get_max_threads();   /* quant.c's loops take the thread count in force */
  omp_set_num_threads(threads);
  lm_qmatmul(W, x, n, bias, y, scratch, path);
  omp_set_num_threads(outer);
}
