/* test_mm.c — the bf16 linear layer (src/kernels/mm.c) against fp32 and against its definition.
 *
 * On random shapes, odd ones included, for the forward product and both backward products:
 *   1. plumbing: the result equals the product of the bf16-rounded inputs, summed in double
 *      (so transposes, strides, bias and accumulation are right), within fp32 accumulation
 *      error: |y - y_ref| <= 1e-5 * sum_k |a_k b_k| + 1e-6 per element;
 *   2. bf16 tolerance: ||y_bf16 - y_fp32|| / ||y_fp32|| <= 1e-2 (Frobenius). Each input rounds
 *      with relative error <= 2^-9, a product term with <= ~2^-8; the K terms' errors are
 *      independent, so the sum's error is ~2^-8 of its norm (~4e-3), below 1e-2 for any K;
 *   3. the cache: a weight changed without lm_mm_invalidate still reads the old bf16 copy (the
 *      contract: one rounding per optimiser step), and after it the new one;
 *   4. the same call twice gives the same bits; a NULL engine is matmul.c bit for bit;
 *   5. the fused optimiser step: a claimed copy (lm_mm_weight_claim) is read as written, and
 *      adamw_update_bf16 is adamw_update bit for bit with the rounded new weights beside.
 * Skipped (said) when the CPU has no bf16 products. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/mm.h"

static float *rnd(lm_rng *r, int64_t n, float scale) {
  float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  for (int64_t i = 0; i < n; i++) x[i] = scale * lm_rng_normal(r);
  return x;
}

static float *rounded(const float *x, int64_t n) {   /* x through bf16 and back */
  uint16_t *b = malloc((size_t)(n > 0 ? n : 1) * sizeof(uint16_t));
  float *y = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  lm_f32_to_bf16(b, x, n);
  lm_bf16_to_f32(y, b, n);
  free(b);
  return y;
}

/* |y - ref| within fp32 accumulation error of the double sum (ref and its magnitude mag given) */
static void check_close(const char *what, const float *y, const double *ref, const double *mag, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    cr_assert(fabs(y[i] - ref[i]) <= 1e-5 * mag[i] + 1e-6, "%s[%lld]: %.9g vs %.9g", what, (long long)i, y[i], ref[i]);
}

/* ref(M,Nc) = c0 + A B in double (c0 (M,Nc), or a bias bias[j] per column, or 0), mag the same sum of
 * magnitudes; A(i,k) = a[i*ai + k*ak], B(k,j) = b[k*bk + j*bj] (strides: any transpose) */
static void ref_product(double *ref, double *mag, const float *c0, const float *bias, const float *a, int64_t ai,
                        int64_t ak, const float *b, int64_t bk, int64_t bj, int64_t M, int64_t Nc, int64_t K) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < Nc; j++) {
      double s = c0 ? c0[i * Nc + j] : bias ? bias[j] : 0, m = fabs(s);
      for (int64_t k = 0; k < K; k++) { double t = (double)a[i * ai + k * ak] * b[k * bk + j * bj]; s += t; m += fabs(t); }
      ref[i * Nc + j] = s; mag[i * Nc + j] = m;
    }
}

static double rel_err(const float *y, const float *x, int64_t n) {
  double d = 0, s = 0;
  for (int64_t i = 0; i < n; i++) { d += ((double)y[i] - x[i]) * ((double)y[i] - x[i]); s += (double)x[i] * x[i]; }
  return s > 0 ? sqrt(d / s) : sqrt(d);
}

static void run_shape(lm_mm *mm, int64_t N, int64_t C, int64_t OC, uint64_t seed) {
  lm_rng r;
  lm_rng_seed(&r, seed);
  float *x = rnd(&r, N * C, 1.0f), *W = rnd(&r, OC * C, 0.05f), *b = rnd(&r, OC, 0.1f), *dy = rnd(&r, N * OC, 0.01f);
  float *xr = rounded(x, N * C), *Wr = rounded(W, OC * C), *dyr = rounded(dy, N * OC);
  /* forward: y = x W^T + b */
  float *y = malloc(sizeof(float) * N * OC), *y32 = malloc(sizeof(float) * N * OC), *y2 = malloc(sizeof(float) * N * OC);
  lm_linear_forward(mm, y, x, W, b, N, C, OC);
  lm_linear_forward(NULL, y32, x, W, b, N, C, OC);
  int64_t most = N * (C > OC ? C : OC) > OC * C ? N * (C > OC ? C : OC) : OC * C;
  double *ref = calloc((size_t)most, sizeof(double)), *mag = calloc((size_t)most, sizeof(double));
  ref_product(ref, mag, NULL, b, xr, C, 1, Wr, 1, C, N, OC, C);                     // x W^T + b
  check_close("forward", y, ref, mag, N * OC);
  cr_assert(rel_err(y, y32, N * OC) <= 1e-2, "forward (%lld,%lld,%lld): rel err %.3g vs fp32", (long long)N,
            (long long)C, (long long)OC, rel_err(y, y32, N * OC));
  lm_linear_forward(mm, y2, x, W, b, N, C, OC);
  cr_assert(!memcmp(y, y2, sizeof(float) * N * OC), "forward: the same call gave other bits");
  lm_linear_forward(mm, y2, x, W, NULL, N, C, OC);   /* no bias: nothing added */
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < OC; o++) ref[n * OC + o] -= b[o];
  check_close("forward (no bias)", y2, ref, mag, N * OC);

  /* backward, accumulating onto what is there */
  float *dx = rnd(&r, N * C, 1.0f), *dW = rnd(&r, OC * C, 1.0f), *db = rnd(&r, OC, 1.0f);
  float *dx32 = malloc(sizeof(float) * N * C), *dW32 = malloc(sizeof(float) * OC * C), *db32 = malloc(sizeof(float) * OC);
  float *dx0 = malloc(sizeof(float) * N * C), *dW0 = malloc(sizeof(float) * OC * C);
  memcpy(dx32, dx, sizeof(float) * N * C); memcpy(dW32, dW, sizeof(float) * OC * C); memcpy(db32, db, sizeof(float) * OC);
  memcpy(dx0, dx, sizeof(float) * N * C); memcpy(dW0, dW, sizeof(float) * OC * C);
  lm_linear_backward(mm, dx, dW, db, dy, x, W, N, C, OC);
  lm_linear_backward(NULL, dx32, dW32, db32, dy, x, W, N, C, OC);
  ref_product(ref, mag, dx0, NULL, dyr, OC, 1, Wr, C, 1, N, C, OC);                 // dx0 + dy W
  check_close("d input", dx, ref, mag, N * C);
  ref_product(ref, mag, dW0, NULL, dyr, 1, OC, xr, C, 1, OC, C, N);                 // dW0 + dy^T x
  check_close("d weight", dW, ref, mag, OC * C);
  cr_assert(!memcmp(db, db32, sizeof(float) * OC), "d bias is matmul.c's fp32 column sum");
  /* the gradients alone, against fp32's (the accumulated start values would hide the error) */
  for (int64_t i = 0; i < N * C; i++) { dx[i] -= dx0[i]; dx32[i] -= dx0[i]; }
  for (int64_t i = 0; i < OC * C; i++) { dW[i] -= dW0[i]; dW32[i] -= dW0[i]; }
  cr_assert(rel_err(dx, dx32, N * C) <= 1e-2, "d input: rel err %.3g", rel_err(dx, dx32, N * C));
  cr_assert(rel_err(dW, dW32, OC * C) <= 1e-2, "d weight: rel err %.3g", rel_err(dW, dW32, OC * C));

  free(x); free(W); free(b); free(dy); free(xr); free(Wr); free(dyr); free(y); free(y32); free(y2); free(ref);
  free(mag); free(dx); free(dW); free(db); free(dx32); free(dW32); free(db32); free(dx0); free(dW0);
}

static lm_mm *engine_or_skip(void) {
  char isa[64];
  if (!lm_mm_bf16_native(isa, sizeof isa)) cr_skip_test("no bf16 matrix products on this CPU (oneDNN ISA %s)", isa);
  lm_mm *mm;
  cr_assert_eq(lm_mm_create(&mm), LM_OK, "%s", lm_last_error());
  return mm;
}

Test(mm, bf16_products_on_random_shapes) {
  lm_mm *mm = engine_or_skip();
  static const int64_t shapes[][3] = {{1, 1, 1}, {1, 7, 3}, {3, 5, 7}, {17, 33, 65}, {64, 48, 192}, {31, 127, 129},
                                      {256, 64, 50}, {5, 300, 2},
                                      {1100, 24, 40}, {9, 16, 1030}};   /* >= PACK_ROWS rows: blocked weights */
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
    run_shape(mm, shapes[i][0], shapes[i][1], shapes[i][2], 1000 + i);
  lm_rng r;
  lm_rng_seed(&r, 7);
  for (int i = 0; i < 6; i++)   /* random shapes; each seen twice: the cached primitive and weights */
    run_shape(mm, 1 + (int64_t)(lm_rng_uniform(&r) * 70), 1 + (int64_t)(lm_rng_uniform(&r) * 90),
              1 + (int64_t)(lm_rng_uniform(&r) * 110), 2000 + i);
  cr_assert_eq(lm_mm_fallbacks(mm), 0);
  lm_mm_free(mm);
}

Test(mm, weights_are_rounded_once_per_version) {
  lm_mm *mm = engine_or_skip();
  int64_t N = 4, C = 8, OC = 6;
  lm_rng r;
  lm_rng_seed(&r, 3);
  float *x = rnd(&r, N * C, 1.0f), *W = rnd(&r, OC * C, 1.0f), *y1 = malloc(sizeof(float) * N * OC),
        *y2 = malloc(sizeof(float) * N * OC), *y3 = malloc(sizeof(float) * N * OC);
  lm_linear_forward(mm, y1, x, W, NULL, N, C, OC);
  for (int64_t i = 0; i < OC * C; i++) W[i] *= 2.0f;
  lm_linear_forward(mm, y2, x, W, NULL, N, C, OC);   /* same version: the cached copy */
  cr_assert(!memcmp(y1, y2, sizeof(float) * N * OC), "a weight was rounded again within one version");
  lm_mm_invalidate(mm);
  lm_linear_forward(mm, y3, x, W, NULL, N, C, OC);
  for (int64_t i = 0; i < N * OC; i++) cr_assert_eq(y3[i], 2.0f * y1[i], "after invalidate: the new weights");
  free(x); free(W); free(y1); free(y2); free(y3);
  lm_mm_free(mm);
}

/* the trainer's step: invalidate, then AdamW writes each claimed copy; the next product reads the
 * claimed copy as written (no second rounding), an unclaimed weight is rounded by its product */
Test(mm, claimed_weights_are_used_as_written) {
  lm_mm *mm = engine_or_skip();
  int64_t N = 4, C = 8, OC = 6;
  lm_rng r;
  lm_rng_seed(&r, 4);
  float *x = rnd(&r, N * C, 1.0f), *W = rnd(&r, OC * C, 1.0f), *W2 = rnd(&r, OC * C, 1.0f);
  float *y1 = malloc(sizeof(float) * N * OC), *y2 = malloc(sizeof(float) * N * OC);
  cr_assert_null(lm_mm_weight_claim(NULL, W, OC * C), "a NULL engine has no copies");
  cr_assert_null(lm_mm_weight_claim(mm, W, OC * C), "no product has used W yet");
  lm_linear_forward(mm, y1, x, W, NULL, N, C, OC);
  lm_linear_forward(mm, y1, x, W2, NULL, N, C, OC);
  cr_assert_null(lm_mm_weight_claim(mm, W, OC * C - 1), "a claim names the whole weight (W, n)");
  lm_mm_invalidate(mm);
  uint16_t *bf = lm_mm_weight_claim(mm, W, OC * C);
  cr_assert_not_null(bf);
  for (int64_t i = 0; i < OC * C; i++) { W[i] *= 2.0f; W2[i] *= 2.0f; }
  lm_f32_to_bf16(bf, W2, OC * C);   /* a claimed copy is what the claimer wrote, here W2's bits */
  lm_linear_forward(mm, y1, x, W, NULL, N, C, OC);
  lm_linear_forward(mm, y2, x, W2, NULL, N, C, OC);   /* unclaimed: rounded again after invalidate */
  cr_assert(!memcmp(y1, y2, sizeof(float) * N * OC), "the product did not read the claimed copy");
  free(x); free(W); free(W2); free(y1); free(y2);
  lm_mm_free(mm);
}

/* adamw_update_bf16 is adamw_update bit for bit, and its bf16 output is lm_f32_to_bf16 of the new
 * parameters (so a fused step leaves the engine exactly as invalidate + a later rounding did);
 * adamw_update_zero is adamw_update_bf16 bit for bit and leaves every gradient 0 */
Test(mm, adamw_writes_the_rounded_weights) {
  int64_t n = 70001;   /* above optim.c's parallel threshold, and not a multiple of a vector */
  lm_rng r;
  lm_rng_seed(&r, 6);
  float *p1 = rnd(&r, n, 1.0f), *g = rnd(&r, n, 0.1f), *m1 = rnd(&r, n, 0.01f), *v1 = malloc(sizeof(float) * n);
  for (int64_t i = 0; i < n; i++) v1[i] = 1e-4f * fabsf(lm_rng_normal(&r));
  p1[0] = NAN; p1[1] = 1e-40f; p1[2] = -0.0f;
  float *p2 = malloc(sizeof(float) * n), *m2 = malloc(sizeof(float) * n), *v2 = malloc(sizeof(float) * n);
  memcpy(p2, p1, sizeof(float) * n); memcpy(m2, m1, sizeof(float) * n); memcpy(v2, v1, sizeof(float) * n);
  uint16_t *bf = malloc(sizeof(uint16_t) * n), *want = malloc(sizeof(uint16_t) * n), *bf3 = malloc(sizeof(uint16_t) * n);
  float *p3 = malloc(sizeof(float) * n), *m3 = malloc(sizeof(float) * n), *v3 = malloc(sizeof(float) * n);
  float *g3 = malloc(sizeof(float) * n), *p4 = malloc(sizeof(float) * n), *m4 = malloc(sizeof(float) * n);
  float *v4 = malloc(sizeof(float) * n), *g4 = malloc(sizeof(float) * n);
  memcpy(p3, p1, sizeof(float) * n); memcpy(m3, m1, sizeof(float) * n); memcpy(v3, v1, sizeof(float) * n);
  memcpy(p4, p1, sizeof(float) * n); memcpy(m4, m1, sizeof(float) * n); memcpy(v4, v1, sizeof(float) * n);
  for (int64_t t = 1; t <= 3; t++) {
    adamw_update(p1, g, m1, v1, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t, 0.5f);
    adamw_update_bf16(p2, g, m2, v2, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t, 0.5f, bf);
    cr_assert(!memcmp(p1, p2, sizeof(float) * n) && !memcmp(m1, m2, sizeof(float) * n) &&
              !memcmp(v1, v2, sizeof(float) * n), "step %lld: not adamw_update's bits", (long long)t);
    lm_f32_to_bf16(want, p2, n);
    cr_assert(!memcmp(bf, want, sizeof(uint16_t) * n), "step %lld: bf16 copy is not the rounded weights", (long long)t);
    memcpy(g3, g, sizeof(float) * n); memcpy(g4, g, sizeof(float) * n);
    adamw_update_zero(p3, g3, m3, v3, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t, 0.5f, bf3);
    adamw_update_zero(p4, g4, m4, v4, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t, 0.5f, NULL);
    cr_assert(!memcmp(p1, p3, sizeof(float) * n) && !memcmp(m1, m3, sizeof(float) * n) &&
              !memcmp(v1, v3, sizeof(float) * n) && !memcmp(bf, bf3, sizeof(uint16_t) * n) &&
              !memcmp(p1, p4, sizeof(float) * n) && !memcmp(m1, m4, sizeof(float) * n) &&
              !memcmp(v1, v4, sizeof(float) * n), "step %lld: adamw_update_zero is not adamw_update_bf16", (long long)t);
    for (int64_t i = 0; i < n; i++) cr_assert(g3[i] == 0.0f && g4[i] == 0.0f && !signbit(g3[i]));
  }
  free(p1); free(g); free(m1); free(v1); free(p2); free(m2); free(v2); free(bf); free(want);
  free(bf3); free(p3); free(m3); free(v3); free(g3); free(p4); free(m4); free(v4); free(g4);
}

Test(mm, null_engine_is_fp32) {
  int64_t N = 9, C = 13, OC = 11;
  lm_rng r;
  lm_rng_seed(&r, 5);
  float *x = rnd(&r, N * C, 1.0f), *W = rnd(&r, OC * C, 1.0f), *b = rnd(&r, OC, 1.0f), *dy = rnd(&r, N * OC, 1.0f);
  float *y = malloc(sizeof(float) * N * OC), *y32 = malloc(sizeof(float) * N * OC);
  float *g = calloc((size_t)(N * C + OC * C + OC), sizeof(float)), *g32 = calloc((size_t)(N * C + OC * C + OC), sizeof(float));
  lm_linear_forward(NULL, y, x, W, b, N, C, OC);
  matmul_forward(y32, x, W, b, N, C, OC);
  cr_assert(!memcmp(y, y32, sizeof(float) * N * OC));
  lm_linear_backward(NULL, g, g + N * C, g + N * C + OC * C, dy, x, W, N, C, OC);
  matmul_backward(g32, g32 + N * C, g32 + N * C + OC * C, dy, x, W, N, C, OC);
  cr_assert(!memcmp(g, g32, sizeof(float) * (N * C + OC * C + OC)));
  free(x); free(W); free(b); free(dy); free(y); free(y32); free(g); free(g32);
}

Test(mm, rounding_is_nearest_even) {
  float in[] = {1.0f, 1.00390625f /* 1 + 2^-8: a tie, to even (1) */, 1.01171875f /* 1 + 3*2^-8: tie, up */,
                -2.5f, 0.0f, INFINITY, NAN, 1e-40f};
  uint16_t out[8];
  lm_f32_to_bf16(out, in, 8);
  cr_assert_eq(out[0], 0x3f80);
  cr_assert_eq(out[1], 0x3f80);
  cr_assert_eq(out[2], 0x3f82);
  cr_assert_eq(out[3], 0xc020);
  cr_assert_eq(out[4], 0x0000);
  cr_assert_eq(out[5], 0x7f80);
  cr_assert((out[6] & 0x7f80) == 0x7f80 && (out[6] & 0x7f), "NaN stays NaN");
  float back[8];
  lm_bf16_to_f32(back, out, 8);
  cr_assert_eq(back[3], -2.5f);
}
