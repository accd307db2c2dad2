/* loss.c — softmax cross-entropy over V classes (the LM head's loss).
 *
 * For GPT-2 V = 50257, so this is a large, exp-bound pass over the logits.
 * Rows are independent (OpenMP over rows); inside a row we make vectorised
 * passes: max, then exp(x - max) and its sum, with vexp (our vectorisable
 * exp, ~1-2 ulp; libm's expf does not vectorise without -ffast-math). The sum
 * is float within blocks and double across them, so its accuracy does not
 * hinge on the vector width over 50k terms.
 * Backward recomputes the softmax rather than storing it: it writes
 * exp(x - max) straight into dlogits, then rescales and subtracts the one-hot.
 * Forward may keep each row's max and sum (stats, 2 doubles a row); backward
 * then skips both of its reductions and makes one pass, exp(x - max) * k,
 * with the same bits (the same max, sum and products): over an LM's (N,V)
 * logits that saves two reads and a write of the largest activation.
 * Every element is read before it is written at the same index, so dlogits
 * may alias logits. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "kernels/kernels.h"
#include "kernels/vexp.h"


static float row_max(const float *x, int64_t V) {
  float mx = -INFINITY;
  #pragma omp simd reduction(max:mx)
  for (int64_t i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
  return mx;
}

/* sum of exp(x[i] - mx), optionally storing each term in y (y may equal x).
 * Float partial sums over blocks of SUM_BLOCK (vectorised), blocks added in
 * double: accurate over 50k terms whether or not the compiler vectorises. */
#define SUM_BLOCK 1024
static double exp_sum(float *y, const float *x, float mx, int64_t V) {
  double total = 0.0;
  for (int64_t i0 = 0; i0 < V; i0 += SUM_BLOCK) {
    int64_t i1 = i0 + SUM_BLOCK < V ? i0 + SUM_BLOCK : V;
    float s = 0.0f;
    if (y) {
      #pragma omp simd reduction(+:s)
      for (int64_t i = i0; i < i1; i++) { float e = vexp(x[i] - mx); y[i] = e; s += e; }
    } else {
      #pragma omp simd reduction(+:s)
      for (int64_t i = i0; i < i1; i++) s += vexp(x[i] - mx);
    }
    total += s;
  }
  return total;
}

void crossentropy_forward(float *losses,          // (N)
                          const float *logits,    // (N,V)
                          const int32_t *targets, // (N)
                          int64_t N, int64_t V,
                          double *stats) {        // (N,2) max, sum; or NULL
  #pragma omp parallel for schedule(static) if (N * V > 32768)
  for (int64_t n = 0; n < N; n++) {
    int32_t t = targets[n];
    if (t < 0) { losses[n] = 0.0f; continue; }
    if (t >= V) { losses[n] = NAN; continue; }   // a bad target must not pass silently
    const float *x = logits + n * V;
    float mx = row_max(x, V);
    double sum = exp_sum(NULL, x, mx, V);
    losses[n] = (float)log(sum) + mx - x[t];
    if (stats) stats[2 * n] = mx, stats[2 * n + 1] = sum;
  }
}

void crossentropy_backward(float *dlogits,         // (N,V), may alias logits
                           const float *logits,    // (N,V)
                           const int32_t *targets, // (N)
                           const float *dlosses,   // (N)
                           int64_t N, int64_t V,
                           const double *stats)   // (N,2) from forward, or NULL
{
  #pragma omp parallel for schedule(static) if (N * V > 32768)
  for (int64_t n = 0; n < N; n++) {
    int32_t t = targets[n];
    const float *x = logits + n * V;
    float *d = dlogits + n * V;
    float dl = dlosses[n];
    if (t < 0 || t >= V || dl == 0.0f) {
      memset(d, 0, (size_t)V * sizeof(float));
      continue;
    }
    if (stats) {   /* one pass: the same e = vexp(x - mx) and e * k as below */
      float mx = (float)stats[2 * n];
      float k = (float)((double)dl / stats[2 * n + 1]);
      #pragma omp simd
      for (int64_t i = 0; i < V; i++) d[i] = vexp(x[i] - mx) * k;
    } else {
      float mx = row_max(x, V);
      double sum = exp_sum(d, x, mx, V);
      float k = (float)((double)dl / sum);
      #pragma omp simd
      for (int64_t i = 0; i < V; i++) d[i] *= k;
    }
    d[t] -= dl;
  }
}
