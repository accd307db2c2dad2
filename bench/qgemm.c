/* qgemm.c — micro-benchmark of prompt-sized products on quantized weights (src/kernels/qgemm.c).
 *
 *   bench_qgemm [THREADS=2] [REPS=7] [ROWS="4 8 16 32 64 256 512"] [MODEL=tinyllama|gpt2]
 *
 * For Q8_0 and Q4_0 weights of one layer's linears (TinyLlama-1.1B: qkv 2560x2048, proj 2048x2048,
 * gate+up 11264x2048, down 2048x5632; GPT-2 124M: 2304x768, 768x768, 3072x768, 768x3072) and n
 * activation rows, the time of the whole layer by
 *   - lm_qgemm (quant.c's panel kernel: int8 activations x the packed panels of the weight, what
 *     decode and prefill run, on this CPU's best path),
 *   - lm_qgemm_sgemm (dequantized panels x single-threaded cblas_sgemm: prefill's route before the
 *     integer GEMM),
 *   - cblas_sgemm on an f32 copy of the dequantized weights (what an f32 model's prefill runs).
 * The four alternate within each repetition, so a change of the machine's load hits all alike;
 * medians over REPS in GFLOP/s (2 n weights / time), with the machine's load before and after. With
 * one thread the time is the process's CPU time, so that on a loaded machine the waits for a core
 * do not count (memory contention still does); with more, wall time. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_util.h"
#include "kernels/kernels.h"
#include "kernels/qgemm.h"
#include "model/gguf.h"

enum { NL = 4 };

static int cpu_clock;   /* 1 thread: CPU time */
static double now(void) {
  if (!cpu_clock) return lm_time_sec();
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void load(const char *when) {
  double l[3] = {0};
  FILE *f = fopen("/proc/loadavg", "r");
  if (f) { if (fscanf(f, "%lf %lf %lf", &l[0], &l[1], &l[2]) != 3) l[0] = -1; fclose(f); }
  printf("load %s: %.2f %.2f %.2f\n", when, l[0], l[1], l[2]);
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2, reps = argc > 2 ? atoi(argv[2]) : 7;
  const char *rows_arg = argc > 3 ? argv[3] : "4 8 16 32 64 256 512", *model = argc > 4 ? argv[4] : "tinyllama";
  int gpt2 = !strcmp(model, "gpt2");
  int64_t shp[NL][2] = {{2560, 2048}, {2048, 2048}, {11264, 2048}, {2048, 5632}};
  if (gpt2) { int64_t g[NL][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}}; memcpy(shp, g, sizeof g); }
  omp_set_num_threads(threads);
  cpu_clock = threads == 1;
  load("before");
  printf("%s layer, %d threads, %s path, GFLOP/s of %s time (medians of %d)\n%-5s %5s | %9s %9s %9s | %s %s\n", model, threads,
         lm_qpath_name(lm_qpath_best()), cpu_clock ? "CPU" : "wall", reps, "type", "rows", "qgemm", "panels", "f32 sgemm",
         "qgemm/panels", "qgemm/f32");
  int64_t maxc = 0, maxr = 0, total = 0;
  for (int k = 0; k < NL; k++) { maxc = shp[k][1] > maxc ? shp[k][1] : maxc; maxr = shp[k][0] > maxr ? shp[k][0] : maxr; total += shp[k][0] * shp[k][1]; }
  const int64_t NMAX = 512;
  float *x = lm_alloc((size_t)NMAX * maxc * 4), *y = lm_alloc((size_t)NMAX * maxr * 4);
  void *gs = lm_alloc(lm_qgemm_scratch(NMAX, maxc, threads));
  lm_rng r;
  lm_rng_seed(&r, 1);
  for (int64_t i = 0; i < NMAX * maxc; i++) x[i] = lm_rng_normal(&r);
  for (int t = 0; t < 2; t++) {
    lm_qweight wt = t ? LM_QW_Q4_0 : LM_QW_Q8_0;
    int gt = t ? LM_GGML_Q4_0 : LM_GGML_Q8_0;
    lm_qmat W[NL];
    float *wf[NL];
    for (int k = 0; k < NL; k++) {
      int64_t n = shp[k][0] * shp[k][1];
      float *tmp = lm_alloc((size_t)n * 4);
      for (int64_t i = 0; i < n; i++) tmp[i] = lm_rng_normal(&r) * 0.02f;
      W[k] = (lm_qmat){wt, shp[k][0], shp[k][1], lm_alloc((size_t)n / 32 * lm_qweight_block_bytes(wt)), 0};
      lm_gguf_quantize(gt, tmp, n, W[k].data);
      uint8_t *pk = lm_alloc(lm_qmat_packed_bytes(wt, shp[k][0], shp[k][1]));   /* the panels the model keeps */
      lm_qmat_pack(&W[k], pk);
      lm_free(W[k].data);
      W[k].data = pk;
      W[k].packed = 1;
      lm_qmat_dequantize(&W[k], 0, W[k].rows, tmp);
      wf[k] = tmp;
    }
    for (const char *p = rows_arg; *p;) {
      char *end;
      long n = strtol(p, &end, 10);
      if (end == p) break;
      p = end;
      if (n < 1 || n > NMAX) continue;
      double tg[64], tp[64], tf[64];
      for (int rep = -1; rep < reps && rep < 64; rep++) {
        double t1 = now();
        for (int k = 0; k < NL; k++) lm_qgemm(&W[k], x, n, NULL, y, gs, threads, lm_qpath_best());
        double t2 = now();
        for (int k = 0; k < NL; k++) lm_qgemm_sgemm(&W[k], x, n, NULL, y, gs, threads);
        double t3 = now();
        for (int k = 0; k < NL; k++) matmul_forward(y, x, wf[k], NULL, n, W[k].cols, W[k].rows);
        double t4 = now();
        if (rep >= 0) { tg[rep] = t2 - t1; tp[rep] = t3 - t2; tf[rep] = t4 - t3; }
      }
      double fl = 2.0 * n * (double)total * 1e-9, g = fl / bench_median(tg, reps),
             pp = fl / bench_median(tp, reps), f = fl / bench_median(tf, reps);
      printf("%-5s %5ld | %9.1f %9.1f %9.1f | %12.2f %9.2f\n", t ? "q4_0" : "q8_0", n, g, pp, f, g / pp, g / f);
      fflush(stdout);
    }
    for (int k = 0; k < NL; k++) { lm_free(W[k].data); lm_free(wf[k]); }
  }
  load("after");
  lm_free(x); lm_free(y); lm_free(gs);
  return 0;
}
