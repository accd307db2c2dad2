/* linear_few.c — microbenchmark of the decode step's linear layers (issues #11, #16): the time of
 * all of GPT-2 124M's f32 linears (12 x qkv, attn proj, fc, fc proj + the tied LM head, 124M
 * weights, 497 MB: read from memory each step as in decoding) for n = 1..32 rows, by
 *   - lm_linear_rows (src/infer/linear.c: WR x XR register blocks, the decoder's kernel),
 *   - the kernel it replaced (four weight rows, one input row at a time; copied here to compare),
 *   - OpenBLAS sgemm (out = inp W^T), and sgemv at n = 1 (a session's single-row path before).
 * Kernels alternate within each repetition, so a change of the machine's load hits all alike;
 * figures are medians over REPS, in GFLOP/s (2 n 124M / time), with the machine's load. With one
 * thread the time is the process's CPU time, so that on a loaded machine the waits for a core do
 * not count (memory contention still does); with more, wall time.
 * It also checks that lm_linear_rows gives each row the same bits at every n.
 *
 * usage: bench_linear_few [THREADS=1] [REPS=11] [ROWS="1 2 4 8 16 32"] */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_util.h"
#include "infer/linear.h"

enum { L = 12, C = 768, F = 3072, V = 50257, NK = 4 };

/* the kernel lm_linear_rows replaced (src/infer/session.c before 2026-12-02), for comparison */
static void old_few(float *out, const float *inp, const float *w, const float *b, int64_t n, int64_t Cc, int64_t OC) {
  #pragma omp parallel for schedule(static) if (OC * Cc >= (1 << 18))
  for (int64_t o = 0; o < OC; o += 4) {
    int64_t m = OC - o < 4 ? OC - o : 4;
    const float *w0 = w + o * Cc, *w1 = w + (o + (m > 1)) * Cc, *w2 = w + (o + (m > 2 ? 2 : 0)) * Cc, *w3 = w + (o + (m > 3 ? 3 : 0)) * Cc;
    for (int64_t i = 0; i < n; i++) {
      const float *x = inp + i * Cc;
      float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
      #pragma omp simd reduction(+:a0, a1, a2, a3)
      for (int64_t k = 0; k < Cc; k++) { a0 += x[k] * w0[k]; a1 += x[k] * w1[k]; a2 += x[k] * w2[k]; a3 += x[k] * w3[k]; }
      float acc[4] = {a0, a1, a2, a3};
      for (int64_t r = 0; r < m; r++) out[i * OC + o + r] = acc[r] + (b ? b[o + r] : 0.0f);
    }
  }
}

static void new_few(float *out, const float *inp, const float *w, const float *b, int64_t n, int64_t Cc, int64_t OC) {
  lm_linear_rows(out, inp, w, b, n, Cc, OC);
}

static void blas(float *out, const float *inp, const float *w, const float *b, int64_t n, int64_t Cc, int64_t OC) {
  if (n == 1) cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)OC, (int)Cc, 1.0f, w, (int)Cc, inp, 1, 0.0f, out, 1);
  else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)OC, (int)Cc, 1.0f, inp, (int)Cc, w, (int)Cc, 0.0f, out, (int)OC);
  if (b) for (int64_t i = 0; i < n; i++) for (int64_t o = 0; o < OC; o++) out[i * OC + o] += b[o];
}

typedef void (*kernel)(float *, const float *, const float *, const float *, int64_t, int64_t, int64_t);

/* the weights of one model: layer l's four matrices, then the head */
typedef struct { float *w[L][NK], *b[L][NK], *head; } weights;
static const int64_t IN[NK] = {C, C, C, F}, OUT[NK] = {3 * C, C, F, C};

static float *filled(size_t n, unsigned seed) {
  float *p = lm_alloc(n * sizeof(float));
  if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
  for (size_t i = 0; i < n; i++) { seed = seed * 1664525u + 1013904223u; p[i] = (float)(seed >> 8) / 16777216.0f - 0.5f; }
  return p;
}

/* the process's CPU seconds: on a loaded machine, the time this process ran rather than the time
 * it waited for a core (with one thread, the kernel's own speed) */
static double cpu_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* one decode step's linears for n rows: seconds (CPU seconds with cpu) */
static double step(kernel k, const weights *W, const float *x, float *y, int64_t n, int cpu) {
  double t = cpu ? cpu_sec() : lm_time_sec();
  for (int l = 0; l < L; l++)
    for (int j = 0; j < NK; j++) k(y, x, W->w[l][j], W->b[l][j], n, IN[j], OUT[j]);
  k(y, x, W->head, NULL, n, C, V);
  return (cpu ? cpu_sec() : lm_time_sec()) - t;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 11;
  const char *rows = argc > 3 ? argv[3] : "1 2 4 8 16 32";
  if (threads < 1 || reps < 1) { fprintf(stderr, "usage: %s [THREADS] [REPS] [ROWS]\n", argv[0]); return 2; }
  lm_set_threads(threads);
  int cpu = threads == 1;   /* one thread: time by CPU seconds, which the machine's load barely moves */
  weights W;
  double params = 0;
  for (int l = 0; l < L; l++)
    for (int j = 0; j < NK; j++) {
      W.w[l][j] = filled((size_t)IN[j] * OUT[j], 1 + l * NK + j);
      W.b[l][j] = filled((size_t)OUT[j], 100 + l * NK + j);
      params += (double)IN[j] * OUT[j];
    }
  W.head = filled((size_t)C * V, 7);
  params += (double)C * V;
  float *x = filled((size_t)32 * F, 9), *y = lm_alloc((size_t)32 * V * sizeof(float)), *y1 = lm_alloc((size_t)V * sizeof(float));
  /* each row's bits at n = 32 equal the row alone */
  int same = 1;
  lm_linear_rows(y, x, W.head, NULL, 32, C, V);
  for (int i = 0; i < 32 && same; i++) {
    lm_linear_rows(y1, x + (size_t)i * C, W.head, NULL, 1, C, V);
    same = memcmp(y1, y + (size_t)i * V, (size_t)V * sizeof(float)) == 0;
  }
  double load[3] = {0};
  FILE *f = fopen("/proc/loadavg", "r");
  if (f) { if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1; fclose(f); }
  printf("decode-step linears of GPT-2 124M (%.0fM weights, %.0f MB), %d thread%s, median of %d, %s; load %.2f\n",
         params / 1e6, params * 4 / 1e6, threads, threads > 1 ? "s" : "", reps,
         cpu ? "GFLOP per CPU second" : "GFLOP per wall second", load[0]);
  printf("lm_linear_rows: each row's bits equal the row alone at n = 32: %s\n", same ? "yes" : "NO");
  printf("%5s %14s %14s %14s %9s\n", "rows", "linear_rows", "old kernel", "sgemm/sgemv", "new/old");
  const kernel ks[3] = {new_few, old_few, blas};
  double *t = malloc((size_t)reps * 3 * sizeof *t);
  for (const char *p = rows; *p;) {
    char *end;
    long n = strtol(p, &end, 10);
    if (end == p) break;
    p = end;
    if (n < 1 || n > 32) { fprintf(stderr, "rows must be 1..32\n"); return 2; }
    for (int k = 0; k < 3; k++) step(ks[k], &W, x, y, n, cpu);   /* warm-up */
    for (int r = 0; r < reps; r++)
      for (int k = 0; k < 3; k++) t[k * reps + r] = step(ks[k], &W, x, y, n, cpu);
    double g[3];
    for (int k = 0; k < 3; k++) g[k] = 2.0 * n * params / bench_median(t + k * reps, reps) / 1e9;
    printf("%5ld %9.1f GF/s %9.1f GF/s %9.1f GF/s %8.2fx\n", n, g[0], g[1], g[2], g[0] / g[1]);
    fflush(stdout);
  }
  if (!(f = fopen("/proc/loadavg", "r")) || fscanf(f, "%lf", &load[0]) != 1) load[0] = -1;
  if (f) fclose(f);
  printf("load after: %.2f\n", load[0]);
  free(t);
  return same ? 0 : 1;
}
