/* test_linear.c — the decode step's linear kernel (src/infer/linear.c, lm_linear_rows):
 *   - within 1e-6 (relative to the sum of |x w| terms) of the product computed in double here,
 *     on shapes with a partial last vector (C % 16 != 0) and a partial last weight block
 *     (OC % 4 != 0), with and without a bias;
 *   - each row's outputs bit for bit equal to the row computed alone (n = 1), for every n from 1
 *     to 11 (full and partial blocks of input rows), and equal at 1 and 2 threads: a request's
 *     logits do not depend on the others in its step;
 *   - lm_linear_rows_f16 on f16 weights (packed in panels as the loader keeps them: C a multiple
 *     of 32) equals lm_linear_rows on those weights converted to f32, bit for bit (the same sums in
 *     the same order), for every n (n = 1 reads whole panels, more rows blocks of 4), with a
 *     partial last panel, at 2 threads. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "infer/linear.h"
#include "kernels/quant.h"

static float *randoms(size_t n, uint64_t seed) {
  lm_rng r;
  lm_rng_seed(&r, seed);
  float *p = malloc(n * sizeof *p);
  for (size_t i = 0; i < n; i++) p[i] = 2.0f * lm_rng_uniform(&r) - 1.0f;
  return p;
}

static void check(int64_t C, int64_t OC, int bias) {
  enum { NMAX = 11 };
  float *x = randoms((size_t)NMAX * C, 1 + C), *w = randoms((size_t)OC * C, 2 + OC), *b = bias ? randoms((size_t)OC, 3) : NULL;
  float *y = malloc((size_t)NMAX * OC * sizeof *y), *y1 = malloc((size_t)OC * sizeof *y1);
  float *yt = malloc((size_t)NMAX * OC * sizeof *yt), *wf = malloc((size_t)OC * C * sizeof *wf);
  uint16_t *wh = malloc((size_t)OC * C * sizeof *wh);
  lm_f32_to_f16_row(w, wh, OC * C);
  lm_f16_to_f32_row(wh, wf, OC * C);
  int f16 = C % LM_QK == 0;   /* the f16 panels' shapes */
  uint16_t *wp = f16 ? malloc(lm_qmat_packed_bytes(LM_QW_F16, OC, C)) : NULL;
  if (f16) lm_qmat_pack(&(lm_qmat){LM_QW_F16, OC, C, (uint8_t *)wh, 0}, (uint8_t *)wp);
  for (int64_t n = 1; n <= NMAX; n++) {
    lm_set_threads(1);
    lm_linear_rows(y, x, w, b, n, C, OC);
    lm_set_threads(2);
    lm_linear_rows(yt, x, w, b, n, C, OC);
    cr_assert(!memcmp(y, yt, (size_t)(n * OC) * sizeof *y), "C=%lld OC=%lld n=%lld: other bits at 2 threads", (long long)C,
              (long long)OC, (long long)n);
    float *yh = malloc((size_t)n * OC * sizeof *yh), *yf = malloc((size_t)n * OC * sizeof *yf);
    lm_linear_rows(yf, x, wf, b, n, C, OC);
    if (f16) {
      lm_linear_rows_f16(yh, x, wp, b, n, C, OC);
      cr_assert(!memcmp(yh, yf, (size_t)(n * OC) * sizeof *yh), "C=%lld OC=%lld n=%lld: f16 weights differ from their f32 values",
                (long long)C, (long long)OC, (long long)n);
    }
    free(yh); free(yf);
    for (int64_t i = 0; i < n; i++) {
      lm_linear_rows(y1, x + i * C, w, b, 1, C, OC);
      cr_assert(!memcmp(y1, y + i * OC, (size_t)OC * sizeof *y1), "C=%lld OC=%lld n=%lld: row %lld differs from the row alone",
                (long long)C, (long long)OC, (long long)n, (long long)i);
      for (int64_t o = 0; o < OC; o++) {
        double s = b ? b[o] : 0, mag = b ? fabs(b[o]) : 0;
        for (int64_t k = 0; k < C; k++) { s += (double)x[i * C + k] * w[o * C + k]; mag += fabs((double)x[i * C + k] * w[o * C + k]); }
        cr_assert(fabs(y[i * OC + o] - s) <= 1e-6 * mag, "C=%lld OC=%lld n=%lld: out[%lld][%lld] %.9g, want %.9g", (long long)C,
                  (long long)OC, (long long)n, (long long)i, (long long)o, y[i * OC + o], s);
      }
    }
  }
  free(x); free(w); free(b); free(y); free(y1); free(yt); free(wf); free(wh); free(wp);
}

Test(linear, odd_shapes) {
  check(37, 13, 1);   /* 2 full vectors + 5, 3 blocks + 1 row */
  check(5, 3, 0);     /* one partial vector, no full block */
  check(16, 4, 1);
  check(48, 22, 0);
  check(64, 37, 1);   /* f16: 2 panels + 5 rows */
  check(32, 3, 0);    /* f16: one partial panel */
}

/* large enough that the weight blocks are split across threads (OC * C >= 2^18) */
Test(linear, threaded_shape) {
  check(200, 1400, 1);
  check(256, 1030, 1);   /* f16 panels too */
}
