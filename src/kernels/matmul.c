/* matmul.c — the linear layer, out = inp @ W^T + b, in PyTorch's nn.Linear layout.
 *
 * All three products go to cblas_sgemm (OpenBLAS, OpenMP build), which is where
 * nearly all of a training step's FLOPs are spent. The bias is folded into the
 * forward GEMM by pre-filling the output and using beta = 1. The bias gradient
 * is a column sum of dout: we split the columns into fixed blocks, one thread
 * per block, and each block sums the rows in order, so the result does not
 * depend on the thread count or schedule (no atomics, no partial buffers).
 * At 2 threads the backward's two products (input and weight gradients) run side by side, one
 * thread each, rather than one after the other on both: OpenBLAS splits a product's rows or
 * columns between its threads, less evenly at a step's few rows, while two equal products (both
 * 2*N*C*OC flops) keep both cores busy. Inside a parallel region OpenBLAS (OpenMP build) runs
 * single-threaded, so each gradient then has the bits a 1-thread run gives it. */
#include <string.h>
#include <omp.h>
#include <cblas.h>
#include "kernels/kernels.h"

#define COL_BLOCK 64

void matmul_forward(float *out,            // (N,OC)
                    const float *inp,      // (N,C)
                    const float *weight,   // (OC,C)
                    const float *bias,     // (OC) or NULL
                    int64_t N, int64_t C, int64_t OC) {
  if (N <= 0 || OC <= 0) return;
  float beta = 0.0f;
  if (bias) {
    #pragma omp parallel for schedule(static) if (N * OC > 65536)
    for (int64_t n = 0; n < N; n++) memcpy(out + n * OC, bias, (size_t)OC * sizeof(float));
    beta = 1.0f;
  }
  if (C <= 0) { if (!bias) memset(out, 0, (size_t)(N * OC) * sizeof(float)); return; }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)OC, (int)C,
              1.0f, inp, (int)C, weight, (int)C, beta, out, (int)OC);
}

void matmul_forward_add(float *out,        // (N,OC), accumulated into
                        const float *inp,  // (N,C)
                        const float *weight, // (OC,C)
                        int64_t N, int64_t C, int64_t OC) {
  if (N <= 0 || OC <= 0 || C <= 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)OC, (int)C,
              1.0f, inp, (int)C, weight, (int)C, 1.0f, out, (int)OC);
}

static void d_input(float *dinp, const float *dout, const float *weight, int64_t N, int64_t C, int64_t OC) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)C, (int)OC,
              1.0f, dout, (int)OC, weight, (int)C, 1.0f, dinp, (int)C);
}

static void d_weight(float *dweight, const float *dout, const float *inp, int64_t N, int64_t C, int64_t OC) {
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)OC, (int)C, (int)N,
              1.0f, dout, (int)OC, inp, (int)C, 1.0f, dweight, (int)C);
}

void matmul_backward(float *dinp,          // (N,C) or NULL
                     float *dweight,       // (OC,C) or NULL
                     float *dbias,         // (OC) or NULL
                     const float *dout,    // (N,OC)
                     const float *inp,     // (N,C)
                     const float *weight,  // (OC,C)
                     int64_t N, int64_t C, int64_t OC) {
  if (N <= 0 || OC <= 0) return;
  if (C > 0 && dinp && dweight && omp_get_max_threads() == 2 && !omp_in_parallel()) {
    #pragma omp parallel sections num_threads(2)
    {
      #pragma omp section
      d_input(dinp, dout, weight, N, C, OC);
      #pragma omp section
      d_weight(dweight, dout, inp, N, C, OC);
    }
  } else {
    if (C > 0 && dinp) d_input(dinp, dout, weight, N, C, OC);
    if (C > 0 && dweight) d_weight(dweight, dout, inp, N, C, OC);
  }
  if (dbias) {
    int64_t nblocks = (OC + COL_BLOCK - 1) / COL_BLOCK;
    #pragma omp parallel for schedule(static) if (N * OC > 65536)
    for (int64_t blk = 0; blk < nblocks; blk++) {
      int64_t c0 = blk * COL_BLOCK;
      int64_t nc = OC - c0 < COL_BLOCK ? OC - c0 : COL_BLOCK;
      float acc[COL_BLOCK] = {0};
      for (int64_t n = 0; n < N; n++) {
        const float *row = dout + n * OC + c0;
        for (int64_t j = 0; j < nc; j++) acc[j] += row[j];
      }
      for (int64_t j = 0; j < nc; j++) dbias[c0 + j] += acc[j];
    }
  }
}
