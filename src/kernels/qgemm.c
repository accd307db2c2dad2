/* qgemm.c — prompt-sized products on quantized or f16 weights: dequantized panels times cblas_sgemm (qgemm.h).
 *
 * The weight's rows are cut into panels of PANEL rows; a thread takes a panel, writes its values as
 * f32 into its own scratch ((PANEL, cols): 1-3 MB, in L2/L3 while sgemm reads it) and multiplies
 * the n activation rows by it with one cblas_sgemm into y's columns of that panel. OpenBLAS runs
 * single-threaded inside our parallel region (and at one thread), so the threads share the panels
 * instead of splitting each sgemm, and each output is the same single-threaded sgemm's at any
 * thread count. Dequantizing is exact (a Q8_0 value is an int8 times an f16 scale, a Q4_0 value an
 * int in -8..7 times one: at most 19 significant bits), so the result is the f32 product of the
 * dequantized weight as sgemm computes it; weights kept as f16 (LM_QW_F16) take the same route.
 * Dequantizing costs about one pass over the weight per call, which the arithmetic of a prompt's
 * rows (more than 32) hides. */
#include "kernels/qgemm.h"
#include <cblas.h>
#include <omp.h>
#include <string.h>

#define PANEL 128   /* weight rows per sgemm: wide enough that sgemm's packing of x is paid off */

size_t lm_qmat_row_bytes(const lm_qmat *W) { return (size_t)(W->cols / LM_QK) * lm_qweight_block_bytes(W->type); }

static inline float scale_at(const uint8_t *p) { return lm_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* one row of nb blocks -> f32 (loops of 16/32 the compiler vectorises) */
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

typedef void (*deq_row)(const uint8_t *w, int64_t nb, float *out);
static const deq_row DEQ[LM_QW_COUNT] = {[LM_QW_Q8_0] = deq_q8_0, [LM_QW_Q4_0] = deq_q4_0, [LM_QW_F16] = deq_f16};

void lm_qmat_dequantize(const lm_qmat *W, int64_t r0, int64_t nr, float *out) {
  size_t rb = lm_qmat_row_bytes(W);
  int64_t nb = W->cols / LM_QK;
  for (int64_t r = 0; r < nr; r++) DEQ[W->type](W->data + (size_t)(r0 + r) * rb, nb, out + r * W->cols);
}

#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

size_t lm_qgemm_scratch(int64_t cols, int threads) {
  return (size_t)threads * ALIGN64((size_t)PANEL * (size_t)cols * sizeof(float)) + 64;
}

void lm_qgemm(const lm_qmat *W, const float *x, int64_t n, const float *bias, float *y, void *scratch, int threads) {
  int64_t rows = W->rows, cols = W->cols, panels = (rows + PANEL - 1) / PANEL;
  size_t per = ALIGN64((size_t)PANEL * (size_t)cols * sizeof(float));
  uint8_t *base = (uint8_t *)ALIGN64((uintptr_t)scratch);
  /* dynamic: a thread whose core is busy with another job takes fewer panels */
  #pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t p = 0; p < panels; p++) {
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
