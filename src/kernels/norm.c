/* norm.c — LayerNorm and RMSNorm over the last dimension.
 *
 * Forward: one row per loop iteration (OpenMP over rows), statistics in float
 * with vectorised reductions; mean/rstd are saved for backward.
 * Backward has two parts in one parallel region: dinp is row-local (parallel
 * over rows), while dweight/dbias are sums over rows. For those we split the
 * columns into fixed blocks and sum each block's rows in order, recomputing
 * the normalised input from the saved statistics, so the result is
 * deterministic regardless of thread count and needs no scratch memory. */
#include <math.h>
#include "kernels/kernels.h"

#define COL_BLOCK 64

void layernorm_forward(float *out,            // (N,C)
                       float *mean,           // (N)
                       float *rstd,           // (N)
                       const float *inp,      // (N,C)
                       const float *weight,   // (C)
                       const float *bias,     // (C) or NULL
                       int64_t N, int64_t C, float eps) {
  #pragma omp parallel for schedule(static) if (N * C > 16384)
  for (int64_t n = 0; n < N; n++) {
    const float *x = inp + n * C;
    float *o = out + n * C;
    float s = 0.0f;
    #pragma omp simd reduction(+:s)
    for (int64_t c = 0; c < C; c++) s += x[c];
    float m = s / (float)C;
    float v = 0.0f;
    #pragma omp simd reduction(+:v)
    for (int64_t c = 0; c < C; c++) { float d = x[c] - m; v += d * d; }
    float r = 1.0f / sqrtf(v / (float)C + eps);
    if (bias) {
      for (int64_t c = 0; c < C; c++) o[c] = (x[c] - m) * r * weight[c] + bias[c];
    } else {
      for (int64_t c = 0; c < C; c++) o[c] = (x[c] - m) * r * weight[c];
    }
    if (mean) mean[n] = m;
    if (rstd) rstd[n] = r;
  }
}

void layernorm_backward(float *dinp,          // (N,C) or NULL
                        float *dweight,       // (C) or NULL
                        float *dbias,         // (C) or NULL
                        const float *dout,    // (N,C)
                        const float *inp,     // (N,C)
                        const float *weight,  // (C)
                        const float *mean,    // (N)
                        const float *rstd,    // (N)
                        int64_t N, int64_t C) {
  int64_t nblocks = (C + COL_BLOCK - 1) / COL_BLOCK;
  #pragma omp parallel if (N * C > 16384)
  {
    if (dinp) {
      #pragma omp for schedule(static) nowait
      for (int64_t n = 0; n < N; n++) {
        const float *x = inp + n * C, *g = dout + n * C;
        float *dx = dinp + n * C;
        float m = mean[n], r = rstd[n];
        // dx = r * (dy*w - mean(dy*w) - xhat * mean(dy*w*xhat))
        float a = 0.0f, b = 0.0f;
        #pragma omp simd reduction(+:a, b)
        for (int64_t c = 0; c < C; c++) {
          float dn = g[c] * weight[c];
          a += dn;
          b += dn * (x[c] - m) * r;
        }
        a /= (float)C;
        b /= (float)C;
        for (int64_t c = 0; c < C; c++) {
          float xhat = (x[c] - m) * r;
          dx[c] += r * (g[c] * weight[c] - a - xhat * b);
        }
      }
    }
    if (dweight || dbias) {
      #pragma omp for schedule(static)
      for (int64_t blk = 0; blk < nblocks; blk++) {
        int64_t c0 = blk * COL_BLOCK;
        int64_t nc = C - c0 < COL_BLOCK ? C - c0 : COL_BLOCK;
        float aw[COL_BLOCK] = {0}, ab[COL_BLOCK] = {0};
        for (int64_t n = 0; n < N; n++) {
          const float *x = inp + n * C + c0, *g = dout + n * C + c0;
          float m = mean[n], r = rstd[n];
          for (int64_t j = 0; j < nc; j++) {
            aw[j] += g[j] * ((x[j] - m) * r);
            ab[j] += g[j];
          }
        }
        if (dweight) for (int64_t j = 0; j < nc; j++) dweight[c0 + j] += aw[j];
        if (dbias) for (int64_t j = 0; j < nc; j++) dbias[c0 + j] += ab[j];
      }
    }
  }
}

void rmsnorm_forward(float *out,            // (N,C)
                     float *rstd,           // (N)
                     const float *inp,      // (N,C)
                     const float *weight,   // (C)
                     int64_t N, int64_t C, float eps) {
  #pragma omp parallel for schedule(static) if (N * C > 16384)
  for (int64_t n = 0; n < N; n++) {
    const float *x = inp + n * C;
    float *o = out + n * C;
    float ss = 0.0f;
    #pragma omp simd reduction(+:ss)
    for (int64_t c = 0; c < C; c++) ss += x[c] * x[c];
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    for (int64_t c = 0; c < C; c++) o[c] = x[c] * r * weight[c];
    if (rstd) rstd[n] = r;
  }
}

void rmsnorm_backward(float *dinp,          // (N,C) or NULL
                      float *dweight,       // (C) or NULL
                      const float *dout,    // (N,C)
                      const float *inp,     // (N,C)
                      const float *weight,  // (C)
                      const float *rstd,    // (N)
                      int64_t N, int64_t C) {
  int64_t nblocks = (C + COL_BLOCK - 1) / COL_BLOCK;
  #pragma omp parallel if (N * C > 16384)
  {
    if (dinp) {
      #pragma omp for schedule(static) nowait
      for (int64_t n = 0; n < N; n++) {
        const float *x = inp + n * C, *g = dout + n * C;
        float *dx = dinp + n * C;
        float r = rstd[n];
        // dx = r * dy*w - x * r^3 * mean(dy*w*x)
        float b = 0.0f;
        #pragma omp simd reduction(+:b)
        for (int64_t c = 0; c < C; c++) b += g[c] * weight[c] * x[c];
        float k = b / (float)C * r * r * r;
        for (int64_t c = 0; c < C; c++) dx[c] += r * g[c] * weight[c] - x[c] * k;
      }
    }
    if (dweight) {
      #pragma omp for schedule(static)
      for (int64_t blk = 0; blk < nblocks; blk++) {
        int64_t c0 = blk * COL_BLOCK;
        int64_t nc = C - c0 < COL_BLOCK ? C - c0 : COL_BLOCK;
        float aw[COL_BLOCK] = {0};
        for (int64_t n = 0; n < N; n++) {
          const float *x = inp + n * C + c0, *g = dout + n * C + c0;
          float r = rstd[n];
          for (int64_t j = 0; j < nc; j++) aw[j] += g[j] * (x[j] * r);
        }
        for (int64_t j = 0; j < nc; j++) dweight[c0 + j] += aw[j];
      }
    }
  }
}
