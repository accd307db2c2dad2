/* optim.c — AdamW, the global gradient norm (for clipping) and in-place scaling.
 *
 * adamw_update is one fused, vectorised, OpenMP-parallel pass over the
 * parameters, following PyTorch's torch.optim.AdamW arithmetic step by step
 * (decay first, then moments, then p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps))
 * so trajectories match it closely. The clipping factor is applied to each
 * gradient as it is read (g * clip, the same product a separate scaling pass
 * wrote), so a clipped step reads the gradients once instead of reading and
 * writing them once more first. The pass is memory-bound (28 bytes per
 * parameter). This file is compiled without math-errno (CMakeLists.txt), so
 * sqrtf is the vector square root and the loop vectorises, and without
 * floating-point contraction: the fused multiply-adds are written out (fmaf)
 * where the compiler used to contract them, so the vector loop rounds exactly
 * as the scalar one did and optimizer states resume bit for bit.
 * adamw_update_bf16 also writes the new weights rounded to bf16 for a bf16
 * engine (mm.h) while they are in registers: 2 more bytes per parameter
 * instead of a later 6-byte rounding pass over them. adamw_update_zero also
 * writes 0 over each gradient it has read, so the next step needs no zeroing
 * pass: 4 more bytes in this pass instead of a (serial) memset over them all.
 * A step of a trainer is then two passes over the gradients (the norm, the
 * update), not three.
 * global_norm sums squares in double over a
 * fixed number of equal chunks, one partial per chunk reduced in chunk order,
 * so the result is bitwise identical for any thread count or schedule. */

#include <math.h>
#include "kernels/kernels.h"
#include "kernels/mm.h"

#define PAR_MIN 32768
#define NORM_CHUNKS 64

/* one AdamW step of parameter i, the new value in pn (the loop body of the passes below) */
#define ADAMW_STEP(i, pn)                                                                       \
  float g = grads[i] * clip;                                                                    \
  float p = params[i] * decay;                                                                  \
  float mi = fmaf(beta1, m[i], b1c * g);                                                        \
  float vi = fmaf(beta2, v[i], b2c * (g * g));                                                  \
  m[i] = mi;                                                                                    \
  v[i] = vi;                                                                                    \
  float denom = fmaf(sqrtf(vi), inv_bc2_sqrt, eps);                                             \
  float pn = fmaf(-step, mi / denom, p);   /* p - step * (mi / denom), fused */                 \
  params[i] = pn

/* the four loops: with or without the bf16 copy and the zeroing, each vectorised without a branch */
static void adamw_pass(float *params, float *grads, float *m, float *v, int64_t n, float lr, float beta1, float beta2,
                       float eps, float weight_decay, int64_t t, float clip, uint16_t *bf16, int zero) {
  if (t < 1) t = 1;
  const double bc1 = 1.0 - pow((double)beta1, (double)t);
  const double bc2 = 1.0 - pow((double)beta2, (double)t);
  const float step = (float)((double)lr / bc1);
  const float inv_bc2_sqrt = (float)(1.0 / sqrt(bc2));
  const float decay = 1.0f - lr * weight_decay;
  const float b1c = 1.0f - beta1, b2c = 1.0f - beta2;
  if (bf16 && zero) {
    #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
      ADAMW_STEP(i, pn);
      bf16[i] = lm_bf16_round(pn);   /* the same bits lm_f32_to_bf16 gives the new weight */
      grads[i] = 0.0f;
    }
  } else if (bf16) {
    #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
      ADAMW_STEP(i, pn);
      bf16[i] = lm_bf16_round(pn);
    }
  } else if (zero) {
    #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
      ADAMW_STEP(i, pn);
      grads[i] = 0.0f;
    }
  } else {
    #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
      ADAMW_STEP(i, pn);
    }
  }
}

void adamw_update_zero(float *params, float *grads, float *m, float *v, int64_t n, float lr, float beta1, float beta2,
                       float eps, float weight_decay, int64_t t, float clip, uint16_t *bf16) {
  adamw_pass(params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, t, clip, bf16, 1);
}

void adamw_update_bf16(float *params, const float *grads, float *m, float *v, int64_t n, float lr, float beta1,
                       float beta2, float eps, float weight_decay, int64_t t, float clip, uint16_t *bf16) {
  adamw_pass(params, (float *)grads, m, v, n, lr, beta1, beta2, eps, weight_decay, t, clip, bf16, 0);   /* not written */
}

void adamw_update(float *params, const float *grads, float *m, float *v, int64_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t t, float clip) {
  adamw_pass(params, (float *)grads, m, v, n, lr, beta1, beta2, eps, weight_decay, t, clip, NULL, 0);
}

double global_norm(const float *g, int64_t n) {
  double part[NORM_CHUNKS];
  const int64_t chunk = (n + NORM_CHUNKS - 1) / NORM_CHUNKS;
  #pragma omp parallel for schedule(static) if (n > PAR_MIN)
  for (int64_t c = 0; c < NORM_CHUNKS; c++) {
    int64_t lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
    double s = 0.0;
    #pragma omp simd reduction(+:s)
    for (int64_t i = lo; i < hi; i++) s += (double)g[i] * (double)g[i];
    part[c] = s;
  }
  double total = 0.0;
  for (int c = 0; c < NORM_CHUNKS; c++) total += part[c];
  return sqrt(total);
}

void scale_inplace(float *x, int64_t n, float s) {
  #pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (int64_t i = 0; i < n; i++) x[i] *= s;
}
