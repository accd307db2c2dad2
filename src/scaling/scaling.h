/* scaling.h — scaling-law studies: the runs of a sweep (SWEEP/runs.jsonl) and
 * the fits made from them (src/scaling/runs.c, src/scaling/fit.c).
 *
 * A run is one model of N parameters (non-embedding, as Kaplan et al. count)
 * trained on D tokens at a compute budget C (FLOPs, C = 6 N D) to a
 * validation loss L. From a set of runs lmkit fits
 *   - Chinchilla's approach 3: L(N, D) = E + A / N^alpha + B / D^beta by the
 *     Huber loss (delta 1e-3) on log L in the paper's log-sum-exp form, from
 *     the paper's grid of 4500 initialisations, with GSL's BFGS (vector_bfgs2),
 *     and bootstrap confidence intervals (resamples of the runs, seeded);
 *   - approach 2: per budget a parabola in log N through the IsoFLOP profile,
 *     its minimum N_opt(C), D_opt = C / (6 N_opt), then N_opt ∝ C^a and
 *     D_opt ∝ C^b by least squares in log-log;
 *   - Kaplan's L(N) = (N_c / N)^alpha_N over the lowest loss of each size. */
#ifndef LM_SCALING_H
#define LM_SCALING_H

#include <stddef.h>
#include <stdint.h>
#include "lmkit.h"

typedef struct {
  double params;     /* N: non-embedding parameters */
  double tokens;     /* D: training tokens */
  double flops;      /* C: the budget the run belongs to (6 N D when the line has no "flops") */
  double val_loss;   /* L */
  int64_t line;      /* 1-based line in runs.jsonl */
  char run[64];      /* the sweep's run name ("run"; SWEEP/runs/<run>), or "" */
  int64_t steps;     /* optimiser steps ("steps"), or 0 */
} lm_scaling_run;

/* Parses runs.jsonl text (len bytes, need not be NUL-terminated); name goes into errors as
 * "name:LINE: ...". Blank lines are skipped. "params", "tokens" and "val_loss" are required positive
 * finite numbers, "flops" an optional one; the informational keys a sweep writes (see
 * docs/scaling.md) are allowed; any other key is an error naming it. *runs is malloc'ed. */
lm_status lm_scaling_parse(const char *text, size_t len, const char *name, lm_scaling_run **runs, int64_t *n);
/* lm_scaling_parse of the file SWEEP/runs.jsonl, or of path itself when it is a file. */
lm_status lm_scaling_read(const char *path, lm_scaling_run **runs, int64_t *n);

/* L(N, D) = E + A / N^alpha + B / D^beta */
typedef struct { double E, A, B, alpha, beta; } lm_scaling_law;
double lm_scaling_law_loss(const lm_scaling_law *l, double params, double tokens);
/* The compute-optimal split of budget C = 6 N D under the law (Chinchilla eq. 4):
 * N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b, a = beta/(alpha+beta), b = alpha/(alpha+beta). */
void lm_scaling_law_optimum(const lm_scaling_law *l, double flops, double *n_opt, double *d_opt);

typedef struct {
  int64_t n_boot;    /* bootstrap resamples (0: none) */
  uint64_t seed;     /* of the resamples */
  double delta;      /* Huber delta on log L (1e-3) */
} lm_scaling_fit_opts;
void lm_scaling_fit_opts_default(lm_scaling_fit_opts *o);

/* One IsoFLOP profile (approach 2). */
typedef struct {
  double flops;             /* the budget (geometric mean of the runs' flops within it) */
  int64_t n_runs;
  int ok;                   /* 1: the parabola in log N opens upwards (a minimum exists) */
  int extrapolated;         /* 1: the minimum lies outside the sizes that were run */
  double n_opt, d_opt, loss_opt;
  double curv[3];           /* log L = curv[0] + curv[1] x + curv[2] x^2, x = ln N */
} lm_isoflop;

typedef struct {
  lm_scaling_law law;                 /* approach 3, the full data */
  lm_scaling_law lo, hi;              /* 95% bootstrap percentile intervals (= law without bootstrap) */
  double objective;                   /* the minimised Huber sum */
  int64_t n_inits, n_boot;
  lm_scaling_law *boot;               /* (n_boot) the resampled fits, for intervals of predictions */
  double a3, b3, a3_lo, a3_hi, b3_lo, b3_hi;   /* N_opt ∝ C^a, D_opt ∝ C^b under the law */
  lm_isoflop *iso;                    /* (n_iso) approach 2, by increasing budget */
  int64_t n_iso, n_iso_ok;
  double a2, b2, a2_k, b2_k;          /* ln N_opt = a2 ln C + a2_k, ln D_opt = b2 ln C + b2_k (NAN: < 2 minima) */
  double kaplan_alpha, kaplan_nc;     /* L(N) = (N_c / N)^alpha_N (NAN: < 2 sizes) */
} lm_scaling_fit;

/* Fits the runs (at least 5 for approach 3). Deterministic for given runs and opts. Free with
 * lm_scaling_fit_free. */
lm_status lm_scaling_fit_runs(const lm_scaling_run *runs, int64_t n, const lm_scaling_fit_opts *o, lm_scaling_fit *f);
void lm_scaling_fit_free(lm_scaling_fit *f);
/* The 95% bootstrap interval of a prediction L(N, D) (lo = hi = the fit's without bootstrap). */
void lm_scaling_predict(const lm_scaling_fit *f, double params, double tokens, double *loss, double *lo, double *hi);

#endif
