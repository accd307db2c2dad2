/* quant_matvec.c — micro-benchmark of the quantized matrix-vector kernels (src/kernels/quant.c).
 *
 *   bench_quant_matvec [ROWS COLS] [THREADS]        default 5632 x 2048 (TinyLlama's FFN up), all cores
 *
 * For Q8_0, Q4_0 and A8 weights (K-quants as lmkit keeps them; here made from the Q4_0 blocks) and each path this CPU has (portable, AVX2, AVX-512 VNNI), the median
 * of 21 products (after 3 warm-ups): microseconds, GB/s of weight bytes read, and the share of
 * the machine's read bandwidth measured in the same run (a matvec reads each weight once, so
 * bandwidth / weight bytes bounds it). The peer in the same run is OpenBLAS's f32 cblas_sgemv on
 * the same matrix (4 bytes a weight): what lmkit decodes with today. Also prints the load. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include "bench_util.h"
#include "kernels/quant.h"
#include "model/gguf.h"

#define RUNS 21

static double median_us(void (*fn)(void *), void *arg) {
  double t[RUNS];
  for (int r = 0; r < 3; r++) fn(arg);
  for (int r = 0; r < RUNS; r++) {
    double t0 = lm_time_sec();
    fn(arg);
    t[r] = (lm_time_sec() - t0) * 1e6;
  }
  return bench_median(t, RUNS);
}

typedef struct { lm_qmat W; int64_t rows, cols; const uint8_t *xq; float *y; lm_qpath p; const float *wf, *x; } job;
static void run_q(void *a) { job *j = a; lm_qmatvec(&j->W, j->xq, j->y, j->p); }
static void run_f32(void *a) {
  job *j = a;
  cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)j->rows, (int)j->cols, 1.0f, j->wf, (int)j->cols, j->x, 1, 0.0f, j->y, 1);
}

int main(int argc, char **argv) {
  int64_t rows = argc > 2 ? atoll(argv[1]) : 5632, cols = argc > 2 ? atoll(argv[2]) : 2048;
  int threads = argc > 3 ? atoi(argv[3]) : argc == 2 ? atoi(argv[1]) : 0;
  if (rows < 1 || cols < 32 || cols % 32) { fprintf(stderr, "usage: bench_quant_matvec [ROWS COLS(multiple of 32)] [THREADS]\n"); return 2; }
  lm_set_threads(threads);
  double bw = bench_read_bandwidth();
  float *wf = lm_alloc(sizeof(float) * rows * cols), *x = lm_alloc(sizeof(float) * cols), *y = lm_alloc(sizeof(float) * rows);
  uint8_t *wq = lm_alloc(34 * rows * cols / 32), *xq = lm_alloc(34 * cols / 32), *wa = lm_alloc(LM_A8_BYTES * rows * cols / 32);
  uint8_t *wp = lm_alloc(lm_qmat_packed_bytes(LM_QW_A8, rows, cols));   /* the largest type's panels */
  lm_rng r;
  lm_rng_seed(&r, 1);
  for (int64_t i = 0; i < rows * cols; i++) wf[i] = lm_rng_normal(&r);
  for (int64_t i = 0; i < cols; i++) x[i] = lm_rng_normal(&r);
  lm_quant_act_q8(x, cols, xq);
  double load[3] = {0};
  FILE *la = fopen("/proc/loadavg", "r");
  if (la) { if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1; fclose(la); }
  printf("quantized matvec %lld x %lld, %d threads, read bandwidth %.2f GB/s, load %.2f %.2f %.2f\n", (long long)rows,
         (long long)cols, lm_get_threads(), bw / 1e9, load[0], load[1], load[2]);
  job j = {{LM_QW_Q8_0, rows, cols, wp, 1}, rows, cols, xq, y, 0, wf, x};
  double us = median_us(run_f32, &j), bytes = 4.0 * rows * cols;
  printf("  %-6s %-12s %9.1f us  %7.2f GB/s  %.2f of the bandwidth limit   (peer: OpenBLAS cblas_sgemv)\n", "f32", "sgemv", us,
         bytes / us / 1e3, bytes / us / 1e3 / (bw / 1e9));
  const lm_qweight types[] = {LM_QW_Q8_0, LM_QW_Q4_0, LM_QW_A8};   /* the integer kernels (LM_QW_F16 has none) */
  for (int k = 0; k < 3; k++) {
    int wt = types[k], gt = wt == LM_QW_Q8_0 ? LM_GGML_Q8_0 : LM_GGML_Q4_0;   /* A8: made from Q4_0 blocks, as K-quants are kept */
    lm_gguf_quantize(gt, wf, rows * cols, wq);
    if (wt == LM_QW_A8) lm_gguf_to_a8(gt, wq, 34 * (size_t)rows * cols / 32, wa, rows * cols);
    lm_qmat_pack(&(lm_qmat){(lm_qweight)wt, rows, cols, wt == LM_QW_A8 ? wa : wq, 0}, wp);   /* the panels the model keeps */
    bytes = (double)lm_qweight_block_bytes((lm_qweight)wt) * rows * cols / 32;
    const char *name = wt == LM_QW_A8 ? "A8" : lm_ggml_type_name(gt);
    for (int p = 0; p < LM_QPATH_COUNT; p++) {
      if (!lm_qpath_available((lm_qpath)p)) { printf("  %-6s %-12s not available on this CPU\n", name, lm_qpath_name((lm_qpath)p)); continue; }
      j.W.type = (lm_qweight)wt; j.p = (lm_qpath)p;
      us = median_us(run_q, &j);
      printf("  %-6s %-12s %9.1f us  %7.2f GB/s  %.2f of the bandwidth limit\n", name, lm_qpath_name((lm_qpath)p),
             us, bytes / us / 1e3, bytes / us / 1e3 / (bw / 1e9));
    }
  }
  lm_free(wf); lm_free(x); lm_free(y); lm_free(wq); lm_free(wa); lm_free(wp); lm_free(xq);
  return 0;
}
