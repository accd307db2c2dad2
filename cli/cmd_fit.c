/* cmd_fit.c — `lmkit fit`: fits scaling laws to a sweep's runs.jsonl
 * (src/scaling): Chinchilla's approach 3 with bootstrap intervals, the IsoFLOP
 * minima of approach 2, the compute-optimal exponents, tokens per parameter,
 * Kaplan's L(N), and the predicted loss of a larger run. Prints a report, or
 * with --json one JSON object. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "cli.h"
#include "scaling/scaling.h"

static const char *HELP =
  "usage: lmkit fit --sweep SWEEP [--predict N,D] [--json] [options]\n"
  "\n"
  "Fits L(N, D) = E + A/N^alpha + B/D^beta to the runs in SWEEP/runs.jsonl (one\n"
  "{\"params\": N, \"tokens\": D, \"flops\": C, \"val_loss\": L} per line; 'lmkit sweep'\n"
  "writes them, and a sweep made elsewhere in that format fits too). N counts\n"
  "non-embedding parameters and C = 6 N D FLOPs, as Kaplan et al.\n"
  "\n"
  "  approach 3  Chinchilla's parametric fit: the Huber loss (delta 1e-3) on log L,\n"
  "              minimised with BFGS (GSL) from the paper's grid of 4500 starts, with\n"
  "              95% bootstrap intervals; the compute-optimal N_opt ∝ C^a, D_opt ∝ C^b\n"
  "  approach 2  per budget a parabola of L in log N (the IsoFLOP profile), its minimum\n"
  "              N_opt and D_opt = C/(6 N_opt), and the exponents fitted through them\n"
  "  Kaplan      L(N) = (N_c/N)^alpha_N over the lowest loss of each size\n"
  "\n"
  "  --sweep PATH       a sweep directory (its runs.jsonl) or a runs.jsonl file\n"
  "  --predict N,D      also predict the loss of a run of N parameters on D tokens, with\n"
  "                     its bootstrap interval (may be given more than once)\n"
  "  --bootstrap K      resamples for the intervals (200; 0: none)\n"
  "  --seed N           seed of the resamples (1337)\n"
  "  --json             print one JSON object: E, A, B, alpha, beta, ci, a, b, ...\n"
  "  --threads N        threads (default: all cores)\n";

#define MAX_PREDICT 16

static int parse_pair(const char *s, double *n, double *d) {
  char *end;
  *n = strtod(s, &end);
  if (end == s || *end != ',') return 1;
  const char *t = end + 1;
  *d = strtod(t, &end);
  return end == t || *end || !(*n > 0) || !(*d > 0) || !isfinite(*n) || !isfinite(*d);
}

static cJSON *pair(double lo, double hi) {
  cJSON *a = cJSON_CreateArray();
  cJSON_AddItemToArray(a, cJSON_CreateNumber(lo));
  cJSON_AddItemToArray(a, cJSON_CreateNumber(hi));
  return a;
}

static void print_json(const lm_scaling_fit *f, int64_t n_runs, const char *path, const double (*pred)[2], int n_pred) {
  cJSON *j = cJSON_CreateObject(), *ci = cJSON_CreateObject(), *tpp = cJSON_CreateArray(), *iso = cJSON_CreateArray();
  cJSON_AddStringToObject(j, "sweep", path);
  cJSON_AddNumberToObject(j, "runs", (double)n_runs);
  cJSON_AddStringToObject(j, "params", "non-embedding");
  cJSON_AddNumberToObject(j, "E", f->law.E);
  cJSON_AddNumberToObject(j, "A", f->law.A);
  cJSON_AddNumberToObject(j, "B", f->law.B);
  cJSON_AddNumberToObject(j, "alpha", f->law.alpha);
  cJSON_AddNumberToObject(j, "beta", f->law.beta);
  cJSON_AddItemToObject(ci, "E", pair(f->lo.E, f->hi.E));
  cJSON_AddItemToObject(ci, "A", pair(f->lo.A, f->hi.A));
  cJSON_AddItemToObject(ci, "B", pair(f->lo.B, f->hi.B));
  cJSON_AddItemToObject(ci, "alpha", pair(f->lo.alpha, f->hi.alpha));
  cJSON_AddItemToObject(ci, "beta", pair(f->lo.beta, f->hi.beta));
  cJSON_AddItemToObject(ci, "a", pair(f->a3_lo, f->a3_hi));
  cJSON_AddItemToObject(ci, "b", pair(f->b3_lo, f->b3_hi));
  cJSON_AddItemToObject(j, "ci", ci);
  cJSON_AddNumberToObject(j, "ci_level", 0.95);
  cJSON_AddNumberToObject(j, "bootstrap", (double)f->n_boot);
  cJSON_AddNumberToObject(j, "huber", f->objective);
  cJSON_AddNumberToObject(j, "a", f->a3);
  cJSON_AddNumberToObject(j, "b", f->b3);
  for (int64_t i = 0; i < f->n_iso; i++) {
    const lm_isoflop *p = &f->iso[i];
    double no, dd;
    lm_scaling_law_optimum(&f->law, p->flops, &no, &dd);
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "flops", p->flops);
    cJSON_AddNumberToObject(t, "n_opt", no);
    cJSON_AddNumberToObject(t, "d_opt", dd);
    cJSON_AddNumberToObject(t, "tokens_per_param", dd / no);
    cJSON_AddItemToArray(tpp, t);
    cJSON *q = cJSON_CreateObject();
    cJSON_AddNumberToObject(q, "flops", p->flops);
    cJSON_AddNumberToObject(q, "runs", (double)p->n_runs);
    cJSON_AddBoolToObject(q, "minimum", p->ok);
    if (p->ok) {
      cJSON_AddNumberToObject(q, "n_opt", p->n_opt);
      cJSON_AddNumberToObject(q, "d_opt", p->d_opt);
      cJSON_AddNumberToObject(q, "loss", p->loss_opt);
      cJSON_AddNumberToObject(q, "tokens_per_param", p->d_opt / p->n_opt);
      cJSON_AddBoolToObject(q, "extrapolated", p->extrapolated);
    }
    cJSON_AddItemToArray(iso, q);
  }
  cJSON_AddItemToObject(j, "optimum", tpp);
  cJSON_AddItemToObject(j, "isoflop", iso);
  if (isfinite(f->a2)) {
    cJSON_AddNumberToObject(j, "isoflop_a", f->a2);
    cJSON_AddNumberToObject(j, "isoflop_b", f->b2);
  }
  if (isfinite(f->kaplan_alpha)) {
    cJSON *k = cJSON_CreateObject();
    cJSON_AddNumberToObject(k, "alpha_N", f->kaplan_alpha);
    cJSON_AddNumberToObject(k, "N_c", f->kaplan_nc);
    cJSON_AddItemToObject(j, "kaplan", k);
  }
  cJSON *pr = cJSON_CreateArray();
  for (int i = 0; i < n_pred; i++) {
    double L, lo, hi;
    lm_scaling_predict(f, pred[i][0], pred[i][1], &L, &lo, &hi);
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "params", pred[i][0]);
    cJSON_AddNumberToObject(p, "tokens", pred[i][1]);
    cJSON_AddNumberToObject(p, "val_loss", L);
    cJSON_AddItemToObject(p, "ci", pair(lo, hi));
    cJSON_AddItemToArray(pr, p);
  }
  cJSON_AddItemToObject(j, "predict", pr);
  char *s = cJSON_PrintUnformatted(j);
  if (s) puts(s);
  free(s);
  cJSON_Delete(j);
}

static void print_report(const lm_scaling_fit *f, int64_t n_runs, const char *path, const double (*pred)[2], int n_pred) {
  printf("%lld runs from %s; N counts non-embedding parameters, C = 6 N D FLOPs\n\n", (long long)n_runs, path);
  printf("approach 3: L(N, D) = E + A/N^alpha + B/D^beta  (Huber delta 1e-3 on log L, BFGS from %lld starts",
         (long long)f->n_inits);
  if (f->n_boot) printf("; 95%% intervals from %lld bootstrap resamples)\n", (long long)f->n_boot);
  else printf("; no bootstrap)\n");
  printf("  E      %10.4g   [%.4g, %.4g]\n", f->law.E, f->lo.E, f->hi.E);
  printf("  A      %10.4g   [%.4g, %.4g]\n", f->law.A, f->lo.A, f->hi.A);
  printf("  B      %10.4g   [%.4g, %.4g]\n", f->law.B, f->lo.B, f->hi.B);
  printf("  alpha  %10.4f   [%.4f, %.4f]\n", f->law.alpha, f->lo.alpha, f->hi.alpha);
  printf("  beta   %10.4f   [%.4f, %.4f]\n", f->law.beta, f->lo.beta, f->hi.beta);
  printf("  L(N, D) = %.4g + %.4g/N^%.4f + %.4g/D^%.4f\n", f->law.E, f->law.A, f->law.alpha, f->law.B, f->law.beta);
  printf("  compute-optimal: N_opt ∝ C^%.3f [%.3f, %.3f], D_opt ∝ C^%.3f [%.3f, %.3f]\n", f->a3, f->a3_lo, f->a3_hi,
         f->b3, f->b3_lo, f->b3_hi);
  printf("\napproach 2: IsoFLOP profiles (a parabola of L in ln N per budget)\n");
  printf("  %-10s %5s %12s %12s %8s %10s   %s\n", "C", "runs", "N_opt", "D_opt", "L_opt", "tokens/N", "approach 3: N_opt, tokens/N");
  for (int64_t i = 0; i < f->n_iso; i++) {
    const lm_isoflop *p = &f->iso[i];
    double no, dd;
    lm_scaling_law_optimum(&f->law, p->flops, &no, &dd);
    if (p->ok)
      printf("  %-10.3g %5lld %12.4g %12.4g %8.4f %10.2f   %.4g, %.2f%s\n", p->flops, (long long)p->n_runs, p->n_opt,
             p->d_opt, p->loss_opt, p->d_opt / p->n_opt, no, dd / no, p->extrapolated ? "  (minimum outside the sizes run)" : "");
    else
      printf("  %-10.3g %5lld %12s %12s %8s %10s   %.4g, %.2f  (%s)\n", p->flops, (long long)p->n_runs, "-", "-", "-", "-",
             no, dd / no, p->n_runs < 3 ? "fewer than 3 sizes" : "no minimum: the profile is not convex");
  }
  if (isfinite(f->a2)) printf("  N_opt ∝ C^%.3f, D_opt ∝ C^%.3f (over %lld budgets with a minimum)\n", f->a2, f->b2, (long long)f->n_iso_ok);
  else printf("  exponents: need minima at 2 budgets or more (%lld)\n", (long long)f->n_iso_ok);
  if (isfinite(f->kaplan_alpha))
    printf("\nKaplan: L(N) = (N_c/N)^alpha_N, alpha_N %.4f, N_c %.4g (the lowest loss of each size)\n", f->kaplan_alpha, f->kaplan_nc);
  for (int i = 0; i < n_pred; i++) {
    double L, lo, hi, no, dd, C = 6 * pred[i][0] * pred[i][1];
    lm_scaling_predict(f, pred[i][0], pred[i][1], &L, &lo, &hi);
    lm_scaling_law_optimum(&f->law, C, &no, &dd);
    printf("\npredicted: N %.4g, D %.4g (C %.3g): L %.4f [%.4f, %.4f]; the compute-optimal split of C is N %.4g, D %.4g\n",
           pred[i][0], pred[i][1], C, L, lo, hi, no, dd);
  }
}

int cmd_fit(int argc, char **argv) {
  const char *sweep = NULL, *v;
  int json = 0, n_pred = 0, r;
  double pred[MAX_PREDICT][2];
  int64_t threads = 0, boot = 200;
  lm_scaling_fit_opts o;
  lm_scaling_fit_opts_default(&o);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); return 0; }
    if (!strcmp(a, "--json")) { json = 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--sweep", &v))) { if (r < 0) return 1; sweep = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--predict", &v))) {
      if (r < 0) return 1;
      if (n_pred == MAX_PREDICT) return cli_error("--predict: at most %d runs", MAX_PREDICT);
      if (parse_pair(v, &pred[n_pred][0], &pred[n_pred][1]))
        return cli_error("invalid value for --predict: '%s' (expected N,D: two positive numbers, e.g. 1e9,2e10)", v);
      n_pred++;
      continue;
    }
    if ((r = cli_opt(argc, argv, &i, "--bootstrap", &v))) { if (r < 0 || cli_i64(a, v, 0, 100000, &boot)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--seed", &v))) { if (r < 0 || cli_u64(a, v, &o.seed)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v))) { if (r < 0 || cli_i64(a, v, 1, 4096, &threads)) return 1; continue; }
    return cli_unknown("fit", a);
  }
  if (!sweep) return cli_error("--sweep SWEEP is required (see 'lmkit fit --help')");
  o.n_boot = boot;
  lm_set_threads((int)threads);
  lm_scaling_run *runs = NULL;
  int64_t n = 0;
  if (lm_scaling_read(sweep, &runs, &n)) return cli_fail();
  lm_scaling_fit f;
  if (lm_scaling_fit_runs(runs, n, &o, &f)) { free(runs); return cli_fail(); }
  if (json) print_json(&f, n, sweep, (const double (*)[2])pred, n_pred);
  else print_report(&f, n, sweep, (const double (*)[2])pred, n_pred);
  lm_scaling_fit_free(&f);
  free(runs);
  return 0;
}
