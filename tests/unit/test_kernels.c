/* test_kernels.c — kernel properties checked in C, without torch:
 * finite-difference gradients, backward accumulation (+=), NULL gradients
 * skipped, bitwise determinism, attention rows that see no key, and
 * cross-entropy computed in place. The comparison with PyTorch itself is
 * tests/reference/test_kernels.py. Sizes are small so this runs fast under ASan. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "kernels/kernels.h"

static lm_rng g_rng;

static float *randn(int64_t n, float scale) {
  float *p = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; i++) p[i] = lm_rng_normal(&g_rng) * scale;
  return p;
}
static float *zeros(int64_t n) { return calloc((size_t)n, sizeof(float)); }
static float *copy(const float *x, int64_t n) {
  float *p = malloc((size_t)n * sizeof(float));
  memcpy(p, x, (size_t)n * sizeof(float));
  return p;
}
static float *fill(int64_t n, float v) {
  float *p = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; i++) p[i] = v;
  return p;
}
static double dot(const float *a, const float *b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}
static float maxdiff(const float *a, const float *b, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
  return m;
}

static void setup(void) { lm_rng_seed(&g_rng, 42); }
TestSuite(kernels, .init = setup);

/* ---------------------------------------------------------------- finite differences
 * Scalar objective L(x) = sum(f(x) * R) with R fixed, so dL/dx is backward(dout = R).
 * Compared at a handful of coordinates with central differences (evaluated in double). */

typedef double (*objective)(void *ctx);

static void fd_check(const char *what, objective L, void *ctx, float *x, const float *grad, int64_t n,
                     int probes, float h, float tol) {
  for (int k = 0; k < probes; k++) {
    int64_t i = (int64_t)lm_rng_below(&g_rng, (uint32_t)n);
    float x0 = x[i];
    x[i] = x0 + h; double lp = L(ctx);
    x[i] = x0 - h; double lm = L(ctx);
    x[i] = x0;
    double fd = (lp - lm) / (2.0 * h);
    cr_expect(fabs(fd - grad[i]) <= tol * (1.0 + fabs(fd)),
              "%s: d/dx[%lld] finite difference %.6g vs backward %.6g", what, (long long)i, fd, grad[i]);
  }
}

struct ln_ctx { float *inp, *w, *b, *R, *out, *mean, *rstd; int64_t N, C; int rms; };
static double ln_obj(void *p) {
  struct ln_ctx *c = p;
  if (c->rms) rmsnorm_forward(c->out, c->rstd, c->inp, c->w, c->N, c->C, 1e-5f);
  else layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, 1e-5f);
  return dot(c->out, c->R, c->N * c->C);
}

Test(kernels, fd_layernorm_rmsnorm) {
  for (int rms = 0; rms <= 1; rms++) {
    int64_t N = 5, C = 37;
    struct ln_ctx c = {randn(N * C, 1.5f), randn(C, 1.0f), randn(C, 1.0f), randn(N * C, 1.0f),
                       zeros(N * C), zeros(N), zeros(N), N, C, rms};
    float *dinp = zeros(N * C), *dw = zeros(C), *db = zeros(C);
    ln_obj(&c);
    if (rms) rmsnorm_backward(dinp, dw, c.R, c.inp, c.w, c.rstd, N, C);
    else layernorm_backward(dinp, dw, db, c.R, c.inp, c.w, c.mean, c.rstd, N, C);
    const char *nm = rms ? "rmsnorm" : "layernorm";
    fd_check(nm, ln_obj, &c, c.inp, dinp, N * C, 20, 1e-2f, 2e-2f);
    fd_check(nm, ln_obj, &c, c.w, dw, C, 10, 1e-2f, 2e-2f);
    if (!rms) fd_check(nm, ln_obj, &c, c.b, db, C, 10, 1e-2f, 2e-2f);
    free(c.inp); free(c.w); free(c.b); free(c.R); free(c.out); free(c.mean); free(c.rstd);
    free(dinp); free(dw); free(db);
  }
}

/* self-attention over a packed qkv (B,T,3C) with a key mask; dqkv receives all three gradients */
static lm_attn self_attn(const float *qkv, const uint8_t *mask, int64_t B, int64_t T, int64_t C, int64_t NH, int causal) {
  lm_attn a = lm_attn_self(qkv, B, T, NH, NH, C / NH, causal);
  a.key_mask = mask;
  return a;
}
static void self_attn_backward(const lm_attn *a, float *dqkv, const float *out, const float *lse, const float *dout) {
  attention_backward(a, dqkv, dqkv ? dqkv + (a->k - a->q) : NULL, dqkv ? dqkv + (a->v - a->q) : NULL, NULL, out, lse, dout);
}

struct att_ctx { float *qkv, *R, *out, *lse; const uint8_t *mask; int64_t B, T, C, NH; int causal; };
static double att_obj(void *p) {
  struct att_ctx *c = p;
  lm_attn a = self_attn(c->qkv, c->mask, c->B, c->T, c->C, c->NH, c->causal);
  attention_forward(&a, c->out, c->lse);
  return dot(c->out, c->R, c->B * c->T * c->C);
}

Test(kernels, fd_attention) {
  int64_t B = 2, T = 7, C = 12, NH = 3;
  uint8_t mask[14] = {1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 1, 1};
  for (int causal = 0; causal <= 1; causal++) {
    struct att_ctx c = {randn(B * T * 3 * C, 1.0f), randn(B * T * C, 1.0f), zeros(B * T * C),
                        zeros(B * NH * T), mask, B, T, C, NH, causal};
    float *dqkv = zeros(B * T * 3 * C);
    att_obj(&c);
    lm_attn a = self_attn(c.qkv, mask, B, T, C, NH, causal);
    self_attn_backward(&a, dqkv, c.out, c.lse, c.R);
    fd_check(causal ? "attention causal" : "attention masked", att_obj, &c, c.qkv, dqkv,
             B * T * 3 * C, 40, 1e-2f, 2e-2f);
    free(c.qkv); free(c.R); free(c.out); free(c.lse); free(dqkv);
  }
}

struct ce_ctx { float *logits, *losses, *dl; int32_t *targets; int64_t N, V; };
static double ce_obj(void *p) {
  struct ce_ctx *c = p;
  crossentropy_forward(c->losses, c->logits, c->targets, c->N, c->V, NULL);
  return dot(c->losses, c->dl, c->N);
}

Test(kernels, fd_crossentropy) {
  int64_t N = 4, V = 50;
  int32_t targets[4] = {3, -1, 49, 0};
  struct ce_ctx c = {randn(N * V, 2.0f), zeros(N), randn(N, 1.0f), targets, N, V};
  float *dlogits = zeros(N * V);
  crossentropy_backward(dlogits, c.logits, targets, c.dl, N, V, NULL);
  for (int64_t i = 0; i < V; i++) cr_expect_eq(dlogits[V + i], 0.0f, "ignored row must get zero gradient");
  fd_check("crossentropy", ce_obj, &c, c.logits, dlogits, N * V, 30, 1e-2f, 2e-2f);
  free(c.logits); free(c.losses); free(c.dl); free(dlogits);
}

struct act_ctx { float *x, *out, *R; int64_t n; lm_act_kind kind; };
static double act_obj(void *p) {
  struct act_ctx *c = p;
  act_forward(c->out, c->x, c->n, c->kind);
  return dot(c->out, c->R, c->n);
}

Test(kernels, fd_activations_and_matmul) {
  int64_t n = 200;
  for (int kind = LM_ACT_GELU_TANH; kind <= LM_ACT_GELU_ERF; kind++) {
    struct act_ctx c = {randn(n, 3.0f), zeros(n), randn(n, 1.0f), n, (lm_act_kind)kind};
    float *dx = zeros(n);
    act_backward(dx, c.x, c.R, n, (lm_act_kind)kind);
    fd_check(kind == LM_ACT_GELU_TANH ? "gelu tanh" : "gelu erf", act_obj, &c, c.x, dx, n, 30, 1e-2f, 1e-2f);
    free(c.x); free(c.out); free(c.R); free(dx);
  }
  // matmul is bilinear, so the finite difference is exact up to rounding
  int64_t N = 6, C = 9, OC = 5;
  float *x = randn(N * C, 1), *w = randn(OC * C, 1), *b = randn(OC, 1), *R = randn(N * OC, 1);
  float *out = zeros(N * OC), *dx = zeros(N * C), *dw = zeros(OC * C), *db = zeros(OC);
  matmul_backward(dx, dw, db, R, x, w, N, C, OC);
  for (int which = 0; which < 3; which++) {
    float *p = which == 0 ? x : which == 1 ? w : b, *g = which == 0 ? dx : which == 1 ? dw : db;
    int64_t m = which == 0 ? N * C : which == 1 ? OC * C : OC;
    for (int64_t i = 0; i < m; i += 3) {
      float p0 = p[i];
      p[i] = p0 + 0.5f; matmul_forward(out, x, w, b, N, C, OC); double lp = dot(out, R, N * OC);
      p[i] = p0 - 0.5f; matmul_forward(out, x, w, b, N, C, OC); double lm = dot(out, R, N * OC);
      p[i] = p0;
      cr_expect(fabs((lp - lm) - g[i]) <= 1e-4 * (1 + fabs(g[i])), "matmul grad %d[%lld]", which, (long long)i);
    }
  }
  free(x); free(w); free(b); free(R); free(out); free(dx); free(dw); free(db);
}

/* ---------------------------------------------------------------- accumulation and NULL grads
 * Backward twice from zero must equal 2x; backward onto a prefilled buffer must add to it. */

#define EXPECT_ACC(name, fresh, acc, n, base)                                                   \
  do {                                                                                          \
    for (int64_t i_ = 0; i_ < (n); i_++)                                                        \
      cr_expect(fabsf((acc)[i_] - ((base) + (fresh)[i_])) <= 1e-5f * (1 + fabsf((fresh)[i_])), \
                "%s[%lld]: %g != %g + %g", name, (long long)i_, (acc)[i_], (base), (fresh)[i_]); \
  } while (0)

Test(kernels, backward_accumulates) {
  int64_t N = 16, C = 24, OC = 20;
  float *x = randn(N * C, 1), *w = randn(OC * C, 1), *dout = randn(N * OC, 1);
  float *dx0 = zeros(N * C), *dw0 = zeros(OC * C), *db0 = zeros(OC);
  float *dx1 = fill(N * C, 1), *dw1 = fill(OC * C, 1), *db1 = fill(OC, 1);
  matmul_backward(dx0, dw0, db0, dout, x, w, N, C, OC);
  matmul_backward(dx1, dw1, db1, dout, x, w, N, C, OC);
  EXPECT_ACC("matmul dinp", dx0, dx1, N * C, 1.0f);
  EXPECT_ACC("matmul dweight", dw0, dw1, OC * C, 1.0f);
  EXPECT_ACC("matmul dbias", db0, db1, OC, 1.0f);

  float *g = randn(N * C, 1), *lw = randn(C, 1), *lb = randn(C, 1), *out = zeros(N * C), *mean = zeros(N),
        *rstd = zeros(N);
  layernorm_forward(out, mean, rstd, x, lw, lb, N, C, 1e-5f);
  float *a0 = zeros(N * C), *w0 = zeros(C), *b0 = zeros(C), *a1 = fill(N * C, 1), *w1 = fill(C, 1), *b1 = fill(C, 1);
  layernorm_backward(a0, w0, b0, g, x, lw, mean, rstd, N, C);
  layernorm_backward(a1, w1, b1, g, x, lw, mean, rstd, N, C);
  EXPECT_ACC("layernorm dinp", a0, a1, N * C, 1.0f);
  EXPECT_ACC("layernorm dweight", w0, w1, C, 1.0f);
  EXPECT_ACC("layernorm dbias", b0, b1, C, 1.0f);

  rmsnorm_forward(out, rstd, x, lw, N, C, 1e-5f);
  memset(a0, 0, N * C * 4); memset(w0, 0, C * 4);
  for (int64_t i = 0; i < N * C; i++) a1[i] = 1;
  for (int64_t i = 0; i < C; i++) w1[i] = 1;
  rmsnorm_backward(a0, w0, g, x, lw, rstd, N, C);
  rmsnorm_backward(a1, w1, g, x, lw, rstd, N, C);
  EXPECT_ACC("rmsnorm dinp", a0, a1, N * C, 1.0f);
  EXPECT_ACC("rmsnorm dweight", w0, w1, C, 1.0f);

  for (int kind = 0; kind < 3; kind++) {
    memset(a0, 0, N * C * 4);
    for (int64_t i = 0; i < N * C; i++) a1[i] = 1;
    act_backward(a0, x, g, N * C, (lm_act_kind)kind);
    act_backward(a1, x, g, N * C, (lm_act_kind)kind);
    EXPECT_ACC("act dinp", a0, a1, N * C, 1.0f);
  }

  float *ra = fill(N * C, 1), *rb = fill(N * C, 2);
  residual_backward(ra, rb, g, N * C);
  float *zero = zeros(N * C);
  EXPECT_ACC("residual da", g, ra, N * C, 1.0f);
  EXPECT_ACC("residual db", g, rb, N * C, 2.0f);

  int32_t ids[16] = {1, 3, 1, 1, 0, 2, 3, 3, 1, 0, 0, 2, 1, 3, 2, 1};
  float *t0 = zeros(4 * C), *t1 = fill(4 * C, 1);
  embedding_backward(t0, g, ids, N, C);
  embedding_backward(t1, g, ids, N, C);
  EXPECT_ACC("embedding dtable", t0, t1, 4 * C, 1.0f);

  int64_t B = 2, T = 5, AC = 8, NH = 2;
  float *qkv = randn(B * T * 3 * AC, 1), *adout = randn(B * T * AC, 1), *aout = zeros(B * T * AC),
        *att = zeros(B * NH * T);
  float *q0 = zeros(B * T * 3 * AC), *q1 = fill(B * T * 3 * AC, 1);
  lm_attn at = self_attn(qkv, NULL, B, T, AC, NH, 1);
  attention_forward(&at, aout, att);
  self_attn_backward(&at, q0, aout, att, adout);
  self_attn_backward(&at, q1, aout, att, adout);
  EXPECT_ACC("attention dqkv", q0, q1, B * T * 3 * AC, 1.0f);

  free(x); free(w); free(dout); free(dx0); free(dw0); free(db0); free(dx1); free(dw1); free(db1);
  free(g); free(lw); free(lb); free(out); free(mean); free(rstd); free(a0); free(w0); free(b0);
  free(a1); free(w1); free(b1); free(ra); free(rb); free(zero); free(t0); free(t1);
  free(qkv); free(adout); free(aout); free(att); free(q0); free(q1);
}

Test(kernels, null_grads_skipped) {
  int64_t N = 8, C = 16, OC = 12;
  float *x = randn(N * C, 1), *w = randn(OC * C, 1), *dout = randn(N * OC, 1);
  float *dx = zeros(N * C), *dw = zeros(OC * C), *db = zeros(OC);
  matmul_backward(dx, dw, db, dout, x, w, N, C, OC);
  float *dx2 = zeros(N * C), *dw2 = zeros(OC * C), *db2 = zeros(OC);
  matmul_backward(dx2, NULL, NULL, dout, x, w, N, C, OC);
  matmul_backward(NULL, dw2, NULL, dout, x, w, N, C, OC);
  matmul_backward(NULL, NULL, db2, dout, x, w, N, C, OC);
  matmul_backward(NULL, NULL, NULL, dout, x, w, N, C, OC);
  cr_expect(maxdiff(dx, dx2, N * C) == 0 && maxdiff(dw, dw2, OC * C) == 0 && maxdiff(db, db2, OC) == 0);

  float *lw = randn(C, 1), *g = randn(N * C, 1), *out = zeros(N * C), *mean = zeros(N), *rstd = zeros(N);
  layernorm_forward(out, mean, rstd, x, lw, NULL, N, C, 1e-5f);
  float *a = zeros(N * C), *wg = zeros(C), *a2 = zeros(N * C), *wg2 = zeros(C);
  layernorm_backward(a, wg, NULL, g, x, lw, mean, rstd, N, C);
  layernorm_backward(a2, NULL, NULL, g, x, lw, mean, rstd, N, C);
  layernorm_backward(NULL, wg2, NULL, g, x, lw, mean, rstd, N, C);
  cr_expect(maxdiff(a, a2, N * C) == 0 && maxdiff(wg, wg2, C) == 0);
  rmsnorm_forward(out, rstd, x, lw, N, C, 1e-5f);
  rmsnorm_backward(NULL, wg2, g, x, lw, rstd, N, C);
  rmsnorm_backward(a2, NULL, g, x, lw, rstd, N, C);
  rmsnorm_backward(NULL, NULL, g, x, lw, rstd, N, C);

  act_backward(NULL, x, g, N * C, LM_ACT_GELU_TANH);
  residual_backward(NULL, a2, g, N * C);
  residual_backward(a2, NULL, g, N * C);
  embedding_backward(NULL, g, (int32_t[8]){0}, N, C);
  float *att = zeros(N), *qkv = randn(N * 3 * C, 1), *ao = zeros(N * C);
  lm_attn at = self_attn(qkv, NULL, 1, N, C, 1, 1);
  attention_forward(&at, ao, att);
  self_attn_backward(&at, NULL, ao, att, g);
  free(x); free(w); free(dout); free(dx); free(dw); free(db); free(dx2); free(dw2); free(db2);
  free(lw); free(g); free(out); free(mean); free(rstd); free(a); free(wg); free(a2); free(wg2);
  free(att); free(qkv); free(ao);
}

/* ---------------------------------------------------------------- determinism */

Test(kernels, deterministic_repeats) {
  int64_t B = 2, T = 70, C = 32, NH = 2, N = B * T;
  float *qkv = randn(N * 3 * C, 1), *dout = randn(N * C, 1);
  float *o1 = zeros(N * C), *o2 = zeros(N * C), *at1 = zeros(B * NH * T), *at2 = zeros(B * NH * T);
  float *d1 = zeros(N * 3 * C), *d2 = zeros(N * 3 * C);
  lm_attn at = self_attn(qkv, NULL, B, T, C, NH, 1);
  attention_forward(&at, o1, at1);
  self_attn_backward(&at, d1, o1, at1, dout);
  attention_forward(&at, o2, at2);
  self_attn_backward(&at, d2, o2, at2, dout);
  cr_expect(memcmp(o1, o2, N * C * 4) == 0 && memcmp(at1, at2, B * NH * T * 4) == 0);
  cr_expect(memcmp(d1, d2, N * 3 * C * 4) == 0, "attention backward not bitwise repeatable");

  int64_t V = 3000;
  float *logits = randn(N * V, 3), *l1 = zeros(N), *l2 = zeros(N), *g1 = zeros(N * V), *g2 = zeros(N * V);
  float *dl = fill(N, 1.0f / N);
  int32_t *tg = malloc(N * sizeof(int32_t));
  for (int64_t i = 0; i < N; i++) tg[i] = (int32_t)lm_rng_below(&g_rng, (uint32_t)V);
  crossentropy_forward(l1, logits, tg, N, V, NULL);
  crossentropy_forward(l2, logits, tg, N, V, NULL);
  crossentropy_backward(g1, logits, tg, dl, N, V, NULL);
  crossentropy_backward(g2, logits, tg, dl, N, V, NULL);
  cr_expect(memcmp(l1, l2, N * 4) == 0 && memcmp(g1, g2, N * V * 4) == 0);
  /* the forward's kept row max and sum give the backward's bits in one pass; ignored rows stay 0 */
  double *st = calloc(2 * (size_t)N, sizeof(double));
  float *g3 = zeros(N * V);
  tg[1] = -1;
  crossentropy_backward(g1, logits, tg, dl, N, V, NULL);
  crossentropy_forward(l2, logits, tg, N, V, st);
  crossentropy_backward(g3, logits, tg, dl, N, V, st);
  cr_expect(memcmp(g1, g3, N * V * 4) == 0, "cross-entropy backward from the forward's stats differs");
  free(st); free(g3);

  float *lw = randn(C, 1), *lb = randn(C, 1), *mean = zeros(N), *rstd = zeros(N), *lo = zeros(N * C);
  float *w1 = zeros(C), *w2 = zeros(C), *b1 = zeros(C), *b2 = zeros(C);
  layernorm_forward(lo, mean, rstd, qkv, lw, lb, N, C, 1e-5f);
  layernorm_backward(NULL, w1, b1, dout, qkv, lw, mean, rstd, N, C);
  layernorm_backward(NULL, w2, b2, dout, qkv, lw, mean, rstd, N, C);
  cr_expect(memcmp(w1, w2, C * 4) == 0 && memcmp(b1, b2, C * 4) == 0);

  // the global norm does not depend on the thread count at all
  int64_t n = 1 << 20;
  float *big = randn(n, 1);
  int nt = omp_get_max_threads();
  double n1 = global_norm(big, n);
  omp_set_num_threads(1);
  double n2 = global_norm(big, n);
  omp_set_num_threads(3);
  double n3 = global_norm(big, n);
  omp_set_num_threads(nt);
  cr_expect(n1 == n2 && n1 == n3, "global_norm %.17g %.17g %.17g", n1, n2, n3);
  cr_expect(fabs(global_norm((float[4]){3, 4, 0, 0}, 4) - 5.0) < 1e-12);
  cr_expect(global_norm(big, 0) == 0.0);

  free(qkv); free(dout); free(o1); free(o2); free(at1); free(at2); free(d1); free(d2);
  free(logits); free(l1); free(l2); free(g1); free(g2); free(dl); free(tg);
  free(lw); free(lb); free(mean); free(rstd); free(lo); free(w1); free(w2); free(b1); free(b2); free(big);
}

/* ---------------------------------------------------------------- edge cases */

Test(kernels, attention_query_without_keys_is_zero) {
  int64_t B = 2, T = 6, C = 8, NH = 2;
  uint8_t mask[12] = {0, 1, 1, 1, 0, 0,   /* causal: query 0 sees no key */
                      0, 0, 0, 0, 0, 0};  /* sequence 1: nothing visible */
  float *qkv = randn(B * T * 3 * C, 1), *dout = randn(B * T * C, 1);
  float *out = fill(B * T * C, 7), *lse = fill(B * NH * T, 7);
  float *dqkv = zeros(B * T * 3 * C);
  lm_attn at = self_attn(qkv, mask, B, T, C, NH, 1);
  attention_forward(&at, out, lse);
  self_attn_backward(&at, dqkv, out, lse, dout);
  for (int64_t c = 0; c < C; c++) cr_expect_eq(out[c], 0.0f, "query 0 must output 0");
  for (int64_t i = T * C; i < 2 * T * C; i++) cr_expect_eq(out[i], 0.0f, "fully masked sequence must output 0");
  for (int64_t i = T * 3 * C; i < 2 * T * 3 * C; i++) cr_expect_eq(dqkv[i], 0.0f);
  for (int64_t c = 0; c < C; c++) cr_expect_eq(dqkv[c], 0.0f, "query 0 gets no gradient");
  for (int64_t i = 0; i < B * T * C; i++) cr_expect(isfinite(out[i]));
  // a row that sees no key has lse = +inf; the others a finite log-sum-exp
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++)
      for (int64_t t = 0; t < T; t++) {
        float l = lse[(b * NH + h) * T + t];
        if (b == 1 || t == 0) cr_expect(l == INFINITY);
        else cr_expect(isfinite(l));
      }
  free(qkv); free(dout); free(out); free(lse); free(dqkv);

  /* bidirectional: fully masked sequence, finite and zero */
  float *qkv2 = randn(T * 3 * C, 1), *o2 = fill(T * C, 3), *l2 = zeros(NH * T);
  lm_attn a2 = self_attn(qkv2, mask + T, 1, T, C, NH, 0);
  attention_forward(&a2, o2, l2);
  for (int64_t i = 0; i < T * C; i++) cr_expect_eq(o2[i], 0.0f);
  free(qkv2); free(o2); free(l2);
}

/* Results do not depend on the thread count (each (sequence, head) is one thread's work, its tiles in a
 * fixed order), nor does attention dropout on anything but its mask bits. */
Test(kernels, attention_thread_count_and_dropout) {
  int64_t B = 2, T = 300, C = 32, NH = 4, N = B * T, n = B * NH * T * T;
  float *qkv = randn(N * 3 * C, 1), *dout = randn(N * C, 1);
  uint64_t *bits = calloc((size_t)(n + 63) / 64, sizeof(uint64_t));
  lm_rng r;
  lm_rng_seed(&r, 7);
  dropout_mask(bits, n, 0.2f, &r);
  float *o[2], *l[2], *d[2];
  int nt = omp_get_max_threads();
  for (int k = 0; k < 2; k++) {
    omp_set_num_threads(k ? 3 : 1);
    o[k] = zeros(N * C); l[k] = zeros(B * NH * T); d[k] = zeros(N * 3 * C);
    lm_attn a = self_attn(qkv, NULL, B, T, C, NH, 1);
    a.drop = bits; a.drop_p = 0.2f;
    attention_forward(&a, o[k], l[k]);
    self_attn_backward(&a, d[k], o[k], l[k], dout);
  }
  omp_set_num_threads(nt);
  cr_expect(memcmp(o[0], o[1], N * C * 4) == 0 && memcmp(l[0], l[1], B * NH * T * 4) == 0);
  cr_expect(memcmp(d[0], d[1], N * 3 * C * 4) == 0, "attention backward depends on the thread count");
  for (int k = 0; k < 2; k++) { free(o[k]); free(l[k]); free(d[k]); }
  free(qkv); free(dout); free(bits);
}

Test(kernels, crossentropy_in_place_and_stable) {
  int64_t N = 5, V = 777;
  float *logits = randn(N * V, 4), *copyl, *sep = zeros(N * V), *losses = zeros(N);
  int32_t tg[5] = {0, 776, -1, 5, 100};
  float dl[5] = {0.25f, 0.25f, 0.0f, 0.25f, 0.25f};
  copyl = copy(logits, N * V);
  crossentropy_backward(sep, logits, tg, dl, N, V, NULL);
  crossentropy_backward(copyl, copyl, tg, dl, N, V, NULL);   // dlogits == logits
  cr_expect(memcmp(sep, copyl, N * V * 4) == 0, "in-place backward differs from out-of-place");
  for (int64_t n = 0; n < N; n++) {
    double s = 0;
    for (int64_t i = 0; i < V; i++) s += sep[n * V + i];
    cr_expect(fabs(s) < 1e-6, "row %lld of dlogits sums to %g", (long long)n, s);
  }
  crossentropy_forward(losses, logits, tg, N, V, NULL);
  cr_expect_eq(losses[2], 0.0f, "ignored target has zero loss");
  // huge logits do not overflow: loss of [1000, 0, 0] with target 1 is 1000
  float big[3] = {1000.0f, 0.0f, 0.0f}, l;
  crossentropy_forward(&l, big, (int32_t[1]){1}, 1, 3, NULL);
  cr_expect(fabsf(l - 1000.0f) < 1e-3f, "loss %g", l);
  free(logits); free(copyl); free(sep); free(losses);
}

Test(kernels, adamw_first_step_by_hand) {
  // step 1 with bias correction: m_hat = g, v_hat = g^2, so p -= lr * (wd*p + g/(|g|+eps))
  float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, -3.0f}, m[2] = {0}, v[2] = {0};
  adamw_update(p, g, m, v, 2, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, 1.0f);
  cr_expect(fabsf(p[0] - (1.0f * (1 - 0.001f) - 0.1f)) < 1e-6f, "p0 %g", p[0]);
  cr_expect(fabsf(p[1] - (-2.0f * (1 - 0.001f) + 0.1f)) < 1e-6f, "p1 %g", p[1]);
  float x[3] = {1, 2, 3};
  scale_inplace(x, 3, 0.5f);
  cr_expect(x[0] == 0.5f && x[1] == 1.0f && x[2] == 1.5f);
}

/* The clipping factor applied inside the AdamW pass gives the bits of scaling the gradients first and
 * stepping with factor 1 (the two passes the trainer used to make), over steps, with and without decay;
 * and the gradients are left as they were. */
Test(kernels, adamw_fused_clip_equals_scale_then_step) {
  int64_t n = 100003;   /* parallel and vector loops with a remainder */
  float *p1 = randn(n, 0.02f), *p2 = copy(p1, n), *m1 = zeros(n), *m2 = zeros(n), *v1 = zeros(n), *v2 = zeros(n);
  for (int t = 1; t <= 3; t++) {
    float *g = randn(n, 1.0f), *gs = copy(g, n), *g0 = copy(g, n), clip = 0.37f / (float)t;
    scale_inplace(gs, n, clip);
    adamw_update(p1, gs, m1, v1, n, 6e-4f, 0.9f, 0.95f, 1e-8f, t == 2 ? 0.0f : 0.1f, t, 1.0f);
    adamw_update(p2, g, m2, v2, n, 6e-4f, 0.9f, 0.95f, 1e-8f, t == 2 ? 0.0f : 0.1f, t, clip);
    cr_expect(memcmp(p1, p2, n * 4) == 0 && memcmp(m1, m2, n * 4) == 0 && memcmp(v1, v2, n * 4) == 0,
              "step %d: fused clipping differs from scaling first", t);
    cr_expect(memcmp(g, g0, n * 4) == 0, "the gradients must be left as they were");
    free(g); free(gs); free(g0);
  }
  free(p1); free(p2); free(m1); free(m2); free(v1); free(v2);
}
