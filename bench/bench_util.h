/* bench_util.h — shared by the benchmark programs: the machine's sgemm peak
 * (a 4096^2 cblas_sgemm, best of 3), its read bandwidth, medians, peak RSS. */
#ifndef LM_BENCH_UTIL_H
#define LM_BENCH_UTIL_H
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include "base/base.h"

static inline double bench_sgemm_peak(void) {
  const int n = 4096;
  float *a = lm_alloc((size_t)n * n * 4), *b = lm_alloc((size_t)n * n * 4), *c = lm_alloc((size_t)n * n * 4);
  for (size_t i = 0; i < (size_t)n * n; i++) { a[i] = (float)(i % 7) * 0.1f; b[i] = (float)(i % 5) * 0.1f; }
  double best = 1e30;
  for (int r = 0; r < 4; r++) {
    double t = lm_time_sec();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    t = lm_time_sec() - t;
    if (r > 0 && t < best) best = t;   /* the first run warms caches and threads */
  }
  lm_free(a); lm_free(b); lm_free(c);
  return 2.0 * n * (double)n * n / best;
}

/* Read bandwidth (bytes/s): the best of `passes` timed parallel sums over x (n floats, every page
 * touched before), after one untimed pass; n floats far beyond the caches (256 MiB or more) */
static inline double bench_bw_measure(const float *x, size_t n, int passes) {
  double best = 1e30, sink = 0;
  for (int r = 0; r <= passes; r++) {   /* run 0 warms up */
    double t = lm_time_sec();
    float s = 0;
    #pragma omp parallel for simd schedule(static) reduction(+ : s)
    for (size_t i = 0; i < n; i++) s += x[i];
    t = lm_time_sec() - t;
    sink += s;
    if (r > 0 && t < best) best = t;
  }
  if (sink == 0) fprintf(stderr, "(bandwidth sum was zero)\n");
  return (double)n * sizeof(float) / best;
}

/* a buffer of n floats for bench_bw_measure, every page touched (NULL: out of memory) */
static inline float *bench_bw_buffer(size_t n) {
  float *x = lm_alloc(n * sizeof(float));
  if (!x) return NULL;
  #pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) x[i] = 1.0f + (float)(i & 7);
  return x;
}

/* Best-of-5 read bandwidth (bytes/s) of a parallel sum over a 1 GiB float array. */
static inline double bench_read_bandwidth(void) {
  const size_t n = ((size_t)1 << 30) / sizeof(float);
  float *x = bench_bw_buffer(n);
  if (!x) return NAN;
  double bw = bench_bw_measure(x, n, 5);
  lm_free(x);
  return bw;
}

static int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static inline double bench_median(double *v, int n) {
  qsort(v, n, sizeof *v, bench_cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static inline double bench_peak_rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}
#endif
