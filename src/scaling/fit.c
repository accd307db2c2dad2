/* fit.c — scaling-law fits of a sweep's runs (scaling.h).
 *
 * Approach 3 follows Hoffmann et al. 2022 (Chinchilla), appendix D.2: with
 * A = e^a, B = e^b, E = e^e the model is
 *   log L^(N, D) = LSE(a - alpha log N, b - beta log D, e)
 * and the fit minimises sum_i Huber_delta(log L^_i - log L_i), delta = 1e-3,
 * from every point of the paper's grid alpha, beta in {0, .5, ..., 2},
 * e in {-1, -.5, ..., 1}, a, b in {0, 5, ..., 25} (4500 starts), keeping the
 * lowest. The paper used L-BFGS; GSL has no L-BFGS, so this is GSL's BFGS
 * (gsl_multimin_fdfminimizer_vector_bfgs2) with the analytic gradient; with 5
 * unknowns the limited memory would make no difference.
 *
 * Bootstrap: each resample draws n runs with replacement (lm_rng, seeded), so
 * it is a weighted Huber sum, refitted from the few best distinct optima of
 * the full grid (a resample lands near the full fit; a fresh 4500-start grid
 * per resample would cost 4500x). The interval is the 2.5th..97.5th
 * percentile of each parameter, and of derived quantities (the exponents, a
 * prediction) computed per resample.
 *
 * Approach 2 and Kaplan's L(N) are least-squares fits through GSL
 * (gsl_multifit_linear, gsl_fit_linear). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_fit.h>
#include <gsl/gsl_multifit.h>
#include <gsl/gsl_multimin.h>
#include "base/base.h"
#include "scaling/scaling.h"

#define N_THETA 5   /* a, b, e, alpha, beta */
#define BOOT_STARTS 4     /* distinct optima of the grid each resample is refitted from */
#define SCREEN_ITERS 40   /* BFGS iterations from every start of the grid */
#define POLISH 16         /* the lowest starts after screening, run on to convergence */
#define MAX_ITERS 1000

double lm_scaling_law_loss(const lm_scaling_law *l, double params, double tokens) {
  return l->E + l->A / pow(params, l->alpha) + l->B / pow(tokens, l->beta);
}

void lm_scaling_law_optimum(const lm_scaling_law *l, double flops, double *n_opt, double *d_opt) {
  double s = l->alpha + l->beta, a = l->beta / s, b = l->alpha / s;
  double G = pow(l->alpha * l->A / (l->beta * l->B), 1 / s);
  *n_opt = G * pow(flops / 6, a);
  *d_opt = pow(flops / 6, b) / G;
}

void lm_scaling_fit_opts_default(lm_scaling_fit_opts *o) {
  *o = (lm_scaling_fit_opts){.n_boot = 200, .seed = 1337, .delta = 1e-3};
}

/* ---- approach 3: the Huber objective in log-sum-exp form ---- */

typedef struct {
  const double *ln_n, *ln_d, *ln_l, *w;   /* (n) w: bootstrap multiplicities */
  int64_t n;
  double delta;
} huber_data;

/* value and (when g) gradient at theta = (a, b, e, alpha, beta) */
static double huber_eval(const huber_data *h, const double *t, double *g) {
  double f = 0;
  if (g) memset(g, 0, N_THETA * sizeof *g);
  for (int64_t i = 0; i < h->n; i++) {
    if (h->w[i] == 0) continue;
    double x[3] = {t[0] - t[3] * h->ln_n[i], t[1] - t[4] * h->ln_d[i], t[2]};
    double m = fmax(x[0], fmax(x[1], x[2])), s = 0, p[3];
    for (int k = 0; k < 3; k++) s += p[k] = exp(x[k] - m);
    double r = m + log(s) - h->ln_l[i], ar = fabs(r);
    f += h->w[i] * (ar <= h->delta ? 0.5 * r * r : h->delta * (ar - 0.5 * h->delta));
    if (!g) continue;
    double dr = h->w[i] * (ar <= h->delta ? r : copysign(h->delta, r));   /* d Huber / d r */
    for (int k = 0; k < 3; k++) p[k] /= s;                                 /* softmax: d LSE / d x_k */
    g[0] += dr * p[0];
    g[1] += dr * p[1];
    g[2] += dr * p[2];
    g[3] -= dr * p[0] * h->ln_n[i];
    g[4] -= dr * p[1] * h->ln_d[i];
  }
  return f;
}

static double gsl_f(const gsl_vector *x, void *p) { return huber_eval(p, x->data, NULL); }
static void gsl_df(const gsl_vector *x, void *p, gsl_vector *g) { huber_eval(p, x->data, g->data); }
static void gsl_fdf(const gsl_vector *x, void *p, double *f, gsl_vector *g) { *f = huber_eval(p, x->data, g->data); }

/* BFGS from t (in place) for at most max_iter iterations; returns the objective there */
static double minimise(gsl_multimin_fdfminimizer *s, huber_data *h, double *t, int max_iter) {
  gsl_multimin_function_fdf fn = {.f = gsl_f, .df = gsl_df, .fdf = gsl_fdf, .n = N_THETA, .params = h};
  gsl_vector_view x = gsl_vector_view_array(t, N_THETA);
  if (gsl_multimin_fdfminimizer_set(s, &fn, &x.vector, 0.1, 0.1)) return INFINITY;
  for (int it = 0; it < max_iter; it++) {
    if (gsl_multimin_fdfminimizer_iterate(s)) break;   /* GSL_ENOPROG: no further progress */
    if (gsl_multimin_test_gradient(s->gradient, 1e-9) == GSL_SUCCESS) break;
  }
  memcpy(t, s->x->data, N_THETA * sizeof *t);
  double f = s->f;
  return isfinite(f) ? f : INFINITY;
}

static lm_scaling_law law_of(const double *t) {
  return (lm_scaling_law){.E = exp(t[2]), .A = exp(t[0]), .B = exp(t[1]), .alpha = t[3], .beta = t[4]};
}

typedef struct { double f; double t[N_THETA]; int64_t k; } endpoint;
static int by_f(const void *x, const void *y) {
  const endpoint *a = x, *b = y;   /* ties by start: the order does not depend on qsort */
  return a->f != b->f ? (a->f > b->f) - (a->f < b->f) : (a->k > b->k) - (a->k < b->k);
}
static int by_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

/* the q-quantile of v[0..n) (sorted in place), linear between order statistics */
static double quantile(double *v, int64_t n, double q) {
  qsort(v, (size_t)n, sizeof *v, by_double);
  double at = q * (double)(n - 1);
  int64_t i = (int64_t)floor(at);
  if (i >= n - 1) return v[n - 1];
  return v[i] + (at - (double)i) * (v[i + 1] - v[i]);
}

/* ---- approach 2 and Kaplan: least squares ---- */

static int by_flops(const void *x, const void *y) {
  double a = ((const lm_scaling_run *)x)->flops, b = ((const lm_scaling_run *)y)->flops;
  return (a > b) - (a < b);
}
static int by_params(const void *x, const void *y) {
  double a = ((const lm_scaling_run *)x)->params, b = ((const lm_scaling_run *)y)->params;
  return (a > b) - (a < b);
}

/* L = c0 + c1 x + c2 x^2 through the runs r[0..n), x = ln N */
static void isoflop_fit(const lm_scaling_run *r, int64_t n, lm_isoflop *p) {
  double lc = 0, xmin = INFINITY, xmax = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    lc += log(r[i].flops);
    xmin = fmin(xmin, log(r[i].params)); xmax = fmax(xmax, log(r[i].params));
  }
  p->flops = exp(lc / (double)n);
  p->n_runs = n;
  p->ok = 0;
  p->n_opt = p->d_opt = p->loss_opt = NAN;
  if (n < 3 || xmax - xmin < 1e-9) return;
  gsl_matrix *X = gsl_matrix_alloc((size_t)n, 3), *cov = gsl_matrix_alloc(3, 3);
  gsl_vector *y = gsl_vector_alloc((size_t)n), *c = gsl_vector_alloc(3);
  gsl_multifit_linear_workspace *w = gsl_multifit_linear_alloc((size_t)n, 3);
  double chisq;
  if (X && cov && y && c && w) {
    double xm = 0.5 * (xmin + xmax);   /* centred: a better-conditioned system */
    for (int64_t i = 0; i < n; i++) {
      double x = log(r[i].params) - xm;
      gsl_matrix_set(X, (size_t)i, 0, 1); gsl_matrix_set(X, (size_t)i, 1, x); gsl_matrix_set(X, (size_t)i, 2, x * x);
      gsl_vector_set(y, (size_t)i, r[i].val_loss);
    }
    if (!gsl_multifit_linear(X, y, c, cov, &chisq, w)) {
      double c0 = gsl_vector_get(c, 0), c1 = gsl_vector_get(c, 1), c2 = gsl_vector_get(c, 2);
      /* back to x = ln N: c0 + c1 (x - xm) + c2 (x - xm)^2 */
      p->curv[0] = c0 - c1 * xm + c2 * xm * xm; p->curv[1] = c1 - 2 * c2 * xm; p->curv[2] = c2;
      if (c2 > 0) {
        double xs = -c1 / (2 * c2);
        p->ok = 1;
        p->extrapolated = xs + xm < xmin || xs + xm > xmax;
        p->n_opt = exp(xs + xm);
        p->d_opt = p->flops / (6 * p->n_opt);
        p->loss_opt = c0 + c1 * xs + c2 * xs * xs;
      }
    }
  }
  gsl_matrix_free(X); gsl_matrix_free(cov); gsl_vector_free(y); gsl_vector_free(c);
  if (w) gsl_multifit_linear_free(w);
}

static lm_status approach2(const lm_scaling_run *runs, int64_t n, lm_scaling_fit *f) {
  lm_scaling_run *r = lm_xmalloc((size_t)n * sizeof *r);
  f->iso = lm_xmalloc((size_t)n * sizeof *f->iso);
  if (!r || !f->iso) { free(r); return LM_ERR_NOMEM; }
  memcpy(r, runs, (size_t)n * sizeof *r);
  qsort(r, (size_t)n, sizeof *r, by_flops);
  /* a budget: runs whose flops are within 10% of its first (a sweep's are equal; others' 6ND vary a little) */
  for (int64_t i = 0; i < n;) {
    int64_t j = i + 1;
    while (j < n && r[j].flops <= r[i].flops * 1.1) j++;
    memset(&f->iso[f->n_iso], 0, sizeof *f->iso);
    isoflop_fit(r + i, j - i, &f->iso[f->n_iso]);
    f->n_iso_ok += f->iso[f->n_iso].ok;
    f->n_iso++;
    i = j;
  }
  f->a2 = f->b2 = f->a2_k = f->b2_k = NAN;
  if (f->n_iso_ok >= 2) {
    double *lc = lm_xmalloc((size_t)f->n_iso_ok * 3 * sizeof *lc);
    if (!lc) { free(r); return LM_ERR_NOMEM; }
    double *ln = lc + f->n_iso_ok, *ld = ln + f->n_iso_ok, cov[3], ss;
    int64_t k = 0;
    for (int64_t i = 0; i < f->n_iso; i++)
      if (f->iso[i].ok) { lc[k] = log(f->iso[i].flops); ln[k] = log(f->iso[i].n_opt); ld[k] = log(f->iso[i].d_opt); k++; }
    gsl_fit_linear(lc, 1, ln, 1, (size_t)k, &f->a2_k, &f->a2, &cov[0], &cov[1], &cov[2], &ss);
    gsl_fit_linear(lc, 1, ld, 1, (size_t)k, &f->b2_k, &f->b2, &cov[0], &cov[1], &cov[2], &ss);
    free(lc);
  }
  /* Kaplan: the lowest loss of each size (sizes within 1e-6 relative are one) */
  qsort(r, (size_t)n, sizeof *r, by_params);
  double *x = lm_xmalloc((size_t)n * 2 * sizeof *x);
  if (!x) { free(r); return LM_ERR_NOMEM; }
  double *y = x + n, c0, c1, cov[3], ss;
  int64_t k = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i + 1;
    double best = r[i].val_loss;
    while (j < n && r[j].params <= r[i].params * (1 + 1e-6)) best = fmin(best, r[j++].val_loss);
    x[k] = log(r[i].params); y[k] = log(best); k++;
    i = j;
  }
  f->kaplan_alpha = f->kaplan_nc = NAN;
  if (k >= 2) {
    gsl_fit_linear(x, 1, y, 1, (size_t)k, &c0, &c1, &cov[0], &cov[1], &cov[2], &ss);
    f->kaplan_alpha = -c1;
    f->kaplan_nc = exp(c0 / -c1);
  }
  free(x); free(r);
  return LM_OK;
}

/* ---- the fit ---- */

/* Minimises from each of ends[0..n) (in place), in parallel, each thread with its own minimiser. */
static lm_status minimise_all(huber_data *h, endpoint *ends, int64_t n, int max_iter) {
  int failed = 0;
#pragma omp parallel reduction(| : failed)
  {
    gsl_multimin_fdfminimizer *s = gsl_multimin_fdfminimizer_alloc(gsl_multimin_fdfminimizer_vector_bfgs2, N_THETA);
    failed = !s;
#pragma omp for schedule(dynamic, 8)
    for (int64_t k = 0; k < n; k++) ends[k].f = s ? minimise(s, h, ends[k].t, max_iter) : INFINITY;
    if (s) gsl_multimin_fdfminimizer_free(s);
  }
  return failed ? lm_error(LM_ERR_NOMEM, "out of memory (GSL minimiser)") : LM_OK;
}

lm_status lm_scaling_fit_runs(const lm_scaling_run *runs, int64_t n, const lm_scaling_fit_opts *o, lm_scaling_fit *f) {
  memset(f, 0, sizeof *f);
  if (n < 5) return lm_error(LM_ERR_ARG, "a scaling-law fit needs at least 5 runs (%lld given)", (long long)n);
  if (o->n_boot < 0 || !(o->delta > 0)) return lm_error(LM_ERR_ARG, "bootstrap count and Huber delta must be positive");
  static const double AB[] = {0, 5, 10, 15, 20, 25}, EXP[] = {0, 0.5, 1, 1.5, 2}, E0[] = {-1, -0.5, 0, 0.5, 1};
  const int64_t n_inits = 6 * 6 * 5 * 5 * 5, nb = o->n_boot;
  /* ln N, ln D, ln L, then the weights of the full data (all 1) and of each resample */
  double *buf = lm_xmalloc((size_t)n * (4 + (size_t)nb) * sizeof *buf);
  endpoint *ends = lm_xmalloc((size_t)(n_inits > nb * BOOT_STARTS ? n_inits : nb * BOOT_STARTS) * sizeof *ends);
  f->boot = nb ? lm_xmalloc((size_t)nb * sizeof *f->boot) : NULL;
  huber_data *hb = lm_xmalloc((size_t)(nb + 1) * sizeof *hb);
  double *v = nb ? lm_xmalloc((size_t)nb * sizeof *v) : NULL;
  gsl_error_handler_t *old = gsl_set_error_handler_off();   /* GSL's default handler aborts */
  lm_status st = LM_OK;
  if (!buf || !ends || !hb || (nb && (!f->boot || !v))) { st = LM_ERR_NOMEM; goto done; }
  for (int64_t i = 0; i < n; i++) {
    buf[i] = log(runs[i].params); buf[n + i] = log(runs[i].tokens); buf[2 * n + i] = log(runs[i].val_loss);
    buf[3 * n + i] = 1;
  }
  huber_data h = {.ln_n = buf, .ln_d = buf + n, .ln_l = buf + 2 * n, .w = buf + 3 * n, .n = n, .delta = o->delta};
  int64_t k = 0;
  for (int ia = 0; ia < 6; ia++)
    for (int ib = 0; ib < 6; ib++)
      for (int ie = 0; ie < 5; ie++)
        for (int ial = 0; ial < 5; ial++)
          for (int ibe = 0; ibe < 5; ibe++, k++) {
            double *t = ends[k].t;
            t[0] = AB[ia]; t[1] = AB[ib]; t[2] = E0[ie]; t[3] = EXP[ial]; t[4] = EXP[ibe];
            ends[k].k = k;
          }
  /* Every start gets SCREEN_ITERS iterations; the POLISH lowest then run to convergence. With the
   * Huber loss's kinks BFGS creeps, and most of the 4500 starts end far above the best (measured:
   * 1000 iterations from every start gave the same optimum as this, at 10x the time). */
  if ((st = minimise_all(&h, ends, n_inits, SCREEN_ITERS))) goto done;
  qsort(ends, (size_t)n_inits, sizeof *ends, by_f);
  if ((st = minimise_all(&h, ends, POLISH, MAX_ITERS))) goto done;
  qsort(ends, POLISH, sizeof *ends, by_f);
  if (!isfinite(ends[0].f)) { st = lm_error(LM_ERR_RANGE, "the scaling-law fit did not converge from any start"); goto done; }
  f->law = f->lo = f->hi = law_of(ends[0].t);
  f->objective = ends[0].f;
  f->n_inits = n_inits;
  double s3 = f->law.alpha + f->law.beta;
  f->a3 = f->a3_lo = f->a3_hi = f->law.beta / s3;
  f->b3 = f->b3_lo = f->b3_hi = f->law.alpha / s3;
  /* the bootstrap's starts: the best distinct optima of the grid */
  endpoint starts[BOOT_STARTS];
  int n_starts = 0;
  for (int64_t i = 0; i < POLISH && n_starts < BOOT_STARTS && isfinite(ends[i].f); i++) {
    int dup = 0;
    for (int j = 0; j < n_starts && !dup; j++) {
      double d = 0;
      for (int q = 0; q < N_THETA; q++) d = fmax(d, fabs(ends[i].t[q] - starts[j].t[q]));
      dup = d < 1e-3;
    }
    if (!dup) starts[n_starts++] = ends[i];
  }
  /* the resamples are drawn in order (deterministic), then fitted in parallel */
  lm_rng rng;
  lm_rng_seed(&rng, o->seed);
  for (int64_t bi = 0; bi < nb; bi++) {
    double *w = buf + (4 + bi) * n;
    memset(w, 0, (size_t)n * sizeof *w);
    for (int64_t i = 0; i < n; i++) w[lm_rng_below(&rng, (uint32_t)n)] += 1;
    hb[bi] = h;
    hb[bi].w = w;
    for (int j = 0; j < n_starts; j++) ends[bi * n_starts + j] = starts[j];
  }
  int failed = 0;
#pragma omp parallel reduction(| : failed)
  {
    gsl_multimin_fdfminimizer *s = gsl_multimin_fdfminimizer_alloc(gsl_multimin_fdfminimizer_vector_bfgs2, N_THETA);
    failed = !s;
#pragma omp for schedule(dynamic, 1)
    for (int64_t bi = 0; bi < nb; bi++) {
      endpoint *e = ends + bi * n_starts, *best = e;
      for (int j = 0; j < n_starts; j++) {
        e[j].f = s ? minimise(s, &hb[bi], e[j].t, MAX_ITERS) : INFINITY;
        if (e[j].f < best->f) best = &e[j];
      }
      f->boot[bi] = law_of(isfinite(best->f) ? best->t : starts[0].t);
    }
    if (s) gsl_multimin_fdfminimizer_free(s);
  }
  if (failed) { st = lm_error(LM_ERR_NOMEM, "out of memory (GSL minimiser)"); goto done; }
  f->n_boot = nb;
  if (nb >= 2) {
#define INTERVAL(lo, hi, expr) do { \
    for (int64_t bi = 0; bi < nb; bi++) { const lm_scaling_law *L = &f->boot[bi]; v[bi] = (expr); } \
    lo = quantile(v, nb, 0.025); hi = quantile(v, nb, 0.975); } while (0)
    INTERVAL(f->lo.E, f->hi.E, L->E);
    INTERVAL(f->lo.A, f->hi.A, L->A);
    INTERVAL(f->lo.B, f->hi.B, L->B);
    INTERVAL(f->lo.alpha, f->hi.alpha, L->alpha);
    INTERVAL(f->lo.beta, f->hi.beta, L->beta);
    INTERVAL(f->a3_lo, f->a3_hi, L->beta / (L->alpha + L->beta));
    INTERVAL(f->b3_lo, f->b3_hi, L->alpha / (L->alpha + L->beta));
#undef INTERVAL
  }
  st = approach2(runs, n, f);
done:
  gsl_set_error_handler(old);
  free(buf); free(ends); free(hb); free(v);
  if (st) lm_scaling_fit_free(f);
  return st;
}

void lm_scaling_fit_free(lm_scaling_fit *f) {
  free(f->boot); free(f->iso);
  memset(f, 0, sizeof *f);
}

void lm_scaling_predict(const lm_scaling_fit *f, double params, double tokens, double *loss, double *lo, double *hi) {
  *loss = *lo = *hi = lm_scaling_law_loss(&f->law, params, tokens);
  if (f->n_boot < 2) return;
  double *v = malloc((size_t)f->n_boot * sizeof *v);
  if (!v) return;   /* (no interval: lo = hi = the fit's) */
  for (int64_t i = 0; i < f->n_boot; i++) v[i] = lm_scaling_law_loss(&f->boot[i], params, tokens);
  *lo = quantile(v, f->n_boot, 0.025);
  *hi = quantile(v, f->n_boot, 0.975);
  free(v);
}
