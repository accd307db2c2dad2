/* act.c — elementwise ops: GELU (tanh and erf forms), ReLU, SiLU, the gated
 * linear unit of Llama's SwiGLU FFN, the residual add, and the zeroing and
 * copying of activation-sized buffers (on all threads: a memset or memcpy of
 * one runs on one core while the others wait for the next parallel loop).
 *
 * All loops are OpenMP-parallel and written so gcc vectorises them. libm's
 * tanhf has no vector variant without -ffast-math, so GELU-tanh is written
 * with e = exp(2u) only: 0.5*(1 + tanh u) = e/(e+1) and 1 - tanh^2 u =
 * 4e/(e+1)^2, products with no cancellation near tanh = +-1. The exp is our
 * own vexp (range reduction to [-ln2/2, ln2/2] and a degree-7 polynomial,
 * ~1-2 ulp), which the compiler vectorises. GELU-erf (BERT) uses libm's
 * erff/expf for accuracy. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "kernels/kernels.h"
#include "kernels/vexp.h"

#define PAR_MIN 32768   /* below this many elements a thread fork costs more than it saves */


#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
#define GELU_A 0.044715f
#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT2PI 0.3989422804014327f

/* SiLU x * sigmoid(x) and its derivative s (1 + x (1 - s)); vexp saturates, so no NaN at +-inf */
static inline float silu(float x) { return x / (1.0f + vexp(-x)); }
static inline float silu_grad(float x) {
  float s = 1.0f / (1.0f + vexp(-x));
  return s * (1.0f + x * (1.0f - s));
}

void act_forward(float *out, const float *inp, int64_t n, lm_act_kind kind) {
  switch (kind) {
  case LM_ACT_GELU_TANH:
    #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
      float x = inp[i];
      float e = vexp(2.0f * GELU_K * (x + GELU_A * x * x * x));
      out[i] = x * (e / (e + 1.0f));              // 0.5 * (1 + tanh u) = e/(e+1)
    }
    break;
  case LM_ACT_GELU_ERF:
    #pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
      float x = inp[i];
      out[i] = 0.5f * x * (1.0f + erff(x * INV_SQRT2));
    }
    break;
  case LM_ACT_SILU:
    #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = silu(inp[i]);
    break;
  case LM_ACT_RELU:
  default:
    #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
    break;
  }
}

void act_backward(float *dinp, const float *inp, const float *dout, int64_t n, lm_act_kind kind) {
  if (!dinp) return;
  switch (kind) {
  case LM_ACT_GELU_TANH:
    #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
      float x = inp[i];
      float e = vexp(2.0f * GELU_K * (x + GELU_A * x * x * x));
      float s = 1.0f / (e + 1.0f);
      float es = e * s;                             // 0.5 * (1 + tanh u)
      float du = GELU_K * (1.0f + 3.0f * GELU_A * x * x);
      float g = es + 2.0f * x * (es * s) * du;      // 0.5 * x * (1 - tanh^2 u) = 2 x e s^2
      dinp[i] += g * dout[i];
    }
    break;
  case LM_ACT_GELU_ERF:
    #pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
      float x = inp[i];
      float cdf = 0.5f * (1.0f + erff(x * INV_SQRT2));
      float pdf = INV_SQRT2PI * expf(-0.5f * x * x);
      dinp[i] += (cdf + x * pdf) * dout[i];
    }
    break;
  case LM_ACT_SILU:
    #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) dinp[i] += silu_grad(inp[i]) * dout[i];
    break;
  case LM_ACT_RELU:
  default:
    #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
    break;
  }
}

/* Gated linear unit: each row of inp holds [gate (F) | up (F)], as the rows of Llama's fused
 * gate_proj/up_proj weight are ordered; out = silu(gate) * up. */
void glu_forward(float *out, const float *inp, int64_t N, int64_t F) {
  #pragma omp parallel for schedule(static) if (N * F > PAR_MIN)
  for (int64_t r = 0; r < N; r++) {
    const float *g = inp + r * 2 * F, *u = g + F;
    float *o = out + r * F;
    #pragma omp simd
    for (int64_t j = 0; j < F; j++) o[j] = silu(g[j]) * u[j];
  }
}

void glu_backward(float *dinp, const float *inp, const float *dout, int64_t N, int64_t F) {
  #pragma omp parallel for schedule(static) if (N * F > PAR_MIN)
  for (int64_t r = 0; r < N; r++) {
    const float *g = inp + r * 2 * F, *u = g + F, *d = dout + r * F;
    float *dg = dinp + r * 2 * F, *du = dg + F;
    #pragma omp simd
    for (int64_t j = 0; j < F; j++) {
      dg[j] += silu_grad(g[j]) * u[j] * d[j];
      du[j] += silu(g[j]) * d[j];
    }
  }
}

/* act(gate) * up with any activation, a row at a time through act_forward/act_backward; SiLU takes
 * the fused loops above */
void glu_act_forward(float *out, const float *inp, int64_t N, int64_t F, lm_act_kind kind) {
  if (kind == LM_ACT_SILU) { glu_forward(out, inp, N, F); return; }
  #pragma omp parallel for schedule(static) if (N * F > PAR_MIN)
  for (int64_t r = 0; r < N; r++) {
    const float *u = inp + r * 2 * F + F;
    float *o = out + r * F;
    act_forward(o, inp + r * 2 * F, F, kind);
    for (int64_t j = 0; j < F; j++) o[j] *= u[j];
  }
}

/* d gate += act'(gate) * up * d,  d up += act(gate) * d; through act_backward/act_forward on chunks of
 * a row held on the stack */
void glu_act_backward(float *dinp, const float *inp, const float *dout, int64_t N, int64_t F, lm_act_kind kind) {
  if (kind == LM_ACT_SILU) { glu_backward(dinp, inp, dout, N, F); return; }
  #pragma omp parallel for schedule(static) if (N * F > PAR_MIN)
  for (int64_t r = 0; r < N; r++) {
    const float *g = inp + r * 2 * F, *u = g + F, *d = dout + r * F;
    float *dg = dinp + r * 2 * F, *du = dg + F, tmp[256];
    for (int64_t j0 = 0; j0 < F; j0 += 256) {
      int64_t n = F - j0 < 256 ? F - j0 : 256;
      for (int64_t j = 0; j < n; j++) tmp[j] = u[j0 + j] * d[j0 + j];
      act_backward(dg + j0, g + j0, tmp, n, kind);
      act_forward(tmp, g + j0, n, kind);
      for (int64_t j = 0; j < n; j++) du[j0 + j] += tmp[j] * d[j0 + j];
    }
  }
}

void floats_zero(float *x, int64_t n) {
  #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (int64_t i = 0; i < n; i++) x[i] = 0.0f;
}

void floats_copy(float *dst, const float *src, int64_t n) {
  #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (int64_t i = 0; i < n; i++) dst[i] = src[i];
}

void residual_forward(float *out, const float *a, const float *b, int64_t n) {
  #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void residual_backward(float *da, float *db, const float *dout, int64_t n) {
  if (da) {
    #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) da[i] += dout[i];
  }
  if (db) {
    #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) db[i] += dout[i];
  }
}
