/* progress.c — a one-line progress bar with rate and ETA for long work
 * (training, tokenizing). On a terminal it redraws in place; otherwise it
 * prints a plain line every few seconds so logs stay readable. */
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <omp.h>
#include "base/base.h"

double lm_time_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void lm_progress_start(lm_progress *p, const char *label, int64_t total) {
  memset(p, 0, sizeof *p);
  p->total = total; p->label = label;
  p->t0 = lm_time_sec(); p->last = 0;
  p->tty = isatty(STDERR_FILENO);
}

static void fmt_eta(char *buf, size_t n, double s) {
  if (s < 0 || s > 1e7) { snprintf(buf, n, "--:--"); return; }
  int is = (int)(s + 0.5);
  if (is >= 3600) snprintf(buf, n, "%d:%02d:%02d", is / 3600, (is / 60) % 60, is % 60);
  else snprintf(buf, n, "%02d:%02d", is / 60, is % 60);
}

static void draw(lm_progress *p, const char *extra, int final) {
  double now = lm_time_sec(), el = now - p->t0;
  double frac = p->total > 0 ? (double)p->done / p->total : 0;
  char eta[32];
  fmt_eta(eta, sizeof eta, frac > 0 ? el / frac - el : -1);
  if (p->tty) {
    char bar[26]; int w = (int)(frac * 24 + 0.5);
    for (int i = 0; i < 24; i++) bar[i] = i < w ? '#' : '.';
    bar[24] = 0;
    fprintf(stderr, "\r\033[K%s [%s] %lld/%lld %s ETA %s%s", p->label, bar, (long long)p->done,
            (long long)p->total, extra ? extra : "", eta, final ? "\n" : "");
  } else {
    fprintf(stderr, "%s %lld/%lld %s ETA %s\n", p->label, (long long)p->done, (long long)p->total,
            extra ? extra : "", eta);
  }
  fflush(stderr);
}

void lm_progress_update(lm_progress *p, int64_t done, const char *extra) {
  p->done = done;
  double now = lm_time_sec();
  double every = p->tty ? 0.1 : 5.0;
  if (now - p->last < every) return;
  p->last = now;
  draw(p, extra, 0);
}

void lm_progress_finish(lm_progress *p, const char *extra) {
  p->done = p->total;
  draw(p, extra, 1);
}

/* OpenBLAS's OpenMP build reads omp's thread count; we also tell it directly. */
extern void openblas_set_num_threads(int) __attribute__((weak));

void lm_set_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  if (openblas_set_num_threads) openblas_set_num_threads(n);
}

int lm_get_threads(void) { return omp_get_max_threads(); }
