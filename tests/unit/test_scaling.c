/* test_scaling.c — scaling-law fits (src/scaling): on synthetic sweeps drawn
 * from Chinchilla's law (E = 1.69, A = 406.4, B = 410.7, alpha = 0.34,
 * beta = 0.28) with 1% multiplicative noise, approach 3 recovers alpha and beta
 * within 0.03 and E within 0.05, approach 2's IsoFLOP minima follow the law's
 * compute-optimal exponents, the fit is bit-identical for a seed, and
 * malformed runs.jsonl lines are errors naming the file and line. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include "base/base.h"
#include "scaling/scaling.h"

static const lm_scaling_law CHINCHILLA = {.E = 1.69, .A = 406.4, .B = 410.7, .alpha = 0.34, .beta = 0.28};

/* 13 budgets 1e17..1e23 (half decades) x 9 sizes from N_opt/10 to 10 N_opt, D = C / (6N). With 1%
 * noise, fewer runs (6 budgets x 9) put E off by up to 0.08 with a fit better than the truth's: the
 * data, not the fitter, limit it. */
static int64_t synth(lm_scaling_run *r, uint64_t seed, double noise) {
  lm_rng rng;
  lm_rng_seed(&rng, seed);
  int64_t n = 0;
  for (int c = 0; c < 13; c++) {
    double C = 1e17 * pow(10, 0.5 * c), nopt, dopt;
    lm_scaling_law_optimum(&CHINCHILLA, C, &nopt, &dopt);
    for (int k = -4; k <= 4; k++, n++) {
      double N = nopt * pow(10, k / 4.0), D = C / (6 * N);
      r[n] = (lm_scaling_run){.params = N, .tokens = D, .flops = C, .line = n + 1,
                              .val_loss = lm_scaling_law_loss(&CHINCHILLA, N, D) * (1 + noise * lm_rng_normal(&rng))};
    }
  }
  return n;
}

/* the fit of r[0..n) with n_boot resamples (default seed), asserted to succeed */
static void fit(const lm_scaling_run *r, int64_t n, int64_t n_boot, lm_scaling_fit *f) {
  lm_scaling_fit_opts o;
  lm_scaling_fit_opts_default(&o);
  o.n_boot = n_boot;
  cr_assert_eq(lm_scaling_fit_runs(r, n, &o, f), LM_OK, "%s", lm_last_error());
}

Test(scaling, recovers_chinchilla) {
  lm_scaling_run r[128];
  int64_t n = synth(r, 7, 0.01);
  lm_scaling_fit f;
  fit(r, n, 20, &f);
  cr_expect(fabs(f.law.alpha - 0.34) < 0.03, "alpha %g", f.law.alpha);
  cr_expect(fabs(f.law.beta - 0.28) < 0.03, "beta %g", f.law.beta);
  cr_expect(fabs(f.law.E - 1.69) < 0.05, "E %g", f.law.E);
  cr_expect(f.lo.alpha <= f.law.alpha && f.law.alpha <= f.hi.alpha, "alpha %g not in [%g, %g]", f.law.alpha, f.lo.alpha, f.hi.alpha);
  cr_expect(f.lo.E <= f.hi.E && f.lo.beta <= f.hi.beta);
  cr_expect(f.n_inits == 4500);
  /* approach 2: every budget has a bracketed minimum; the exponents are the law's (0.45, 0.55) */
  cr_expect_eq(f.n_iso, 13);
  cr_expect_eq(f.n_iso_ok, 13);
  double a = 0.28 / 0.62;
  cr_expect(fabs(f.a2 - a) < 0.05 && fabs(f.b2 - (1 - a)) < 0.05, "a2 %g b2 %g", f.a2, f.b2);
  cr_expect(fabs(f.a2 + f.b2 - 1) < 1e-9);
  cr_expect(f.kaplan_alpha > 0 && f.kaplan_alpha < 0.34, "kaplan alpha %g", f.kaplan_alpha);
  /* the same runs and seed: the same fit, bit for bit; predictions come with their interval */
  lm_scaling_fit g;
  fit(r, n, 20, &g);
  cr_expect(!memcmp(&f.law, &g.law, sizeof f.law) && !memcmp(&f.lo, &g.lo, sizeof f.lo) && !memcmp(&f.hi, &g.hi, sizeof f.hi));
  double L, lo, hi;
  lm_scaling_predict(&f, 1e10, 2e11, &L, &lo, &hi);
  double truth = lm_scaling_law_loss(&CHINCHILLA, 1e10, 2e11);
  cr_expect(lo <= L && L <= hi && fabs(L - truth) / truth < 0.02, "predicted %g [%g, %g], law %g", L, lo, hi, truth);
  lm_scaling_fit_free(&f);
  lm_scaling_fit_free(&g);
}

Test(scaling, noiseless_is_exact) {
  lm_scaling_run r[128];
  int64_t n = synth(r, 1, 0);
  lm_scaling_fit f;
  fit(r, n, 0, &f);
  cr_expect(fabs(f.law.alpha - 0.34) < 1e-3 && fabs(f.law.beta - 0.28) < 1e-3 && fabs(f.law.E - 1.69) < 1e-3,
            "E %g alpha %g beta %g", f.law.E, f.law.alpha, f.law.beta);
  lm_scaling_fit_free(&f);
}

static void expect_error(const char *text, const char *msg) {
  lm_scaling_run *r = NULL;
  int64_t n = 0;
  cr_expect_eq(lm_scaling_parse(text, strlen(text), "s/runs.jsonl", &r, &n), LM_ERR_FORMAT, "accepted: %s", text);
  cr_expect(strstr(lm_last_error(), msg) != NULL, "'%s' lacks '%s'", lm_last_error(), msg);
  cr_expect_null(r);
}

Test(scaling, runs_jsonl) {
  const char *ok = "{\"params\": 1e6, \"tokens\": 2e7, \"flops\": 1.2e14, \"val_loss\": 3.5, \"run\": \"b0-s0\"}\n"
                   "\n  \r\n"
                   "{\"params\": 2e6, \"tokens\": 1e7, \"val_loss\": 3.25}";
  lm_scaling_run *r = NULL;
  int64_t n = 0;
  cr_assert_eq(lm_scaling_parse(ok, strlen(ok), "x", &r, &n), LM_OK, "%s", lm_last_error());
  cr_assert_eq(n, 2);
  cr_expect(r[0].params == 1e6 && r[0].tokens == 2e7 && r[0].flops == 1.2e14 && r[0].val_loss == 3.5 && r[0].line == 1);
  cr_expect(r[1].flops == 6 * 2e6 * 1e7 && r[1].line == 4);   /* flops defaults to 6ND */
  free(r);
  expect_error("{\"params\": 1, \"tokens\": 1, \"val_loss\": 1}\n{\"params\": 1, \"tokens\": 1}\n",
               "s/runs.jsonl:2: missing \"val_loss\"");
  expect_error("{\"params\": 1, \"tokens\": 1, \"val_loss\": 1, \"val-loss\": 2}", "s/runs.jsonl:1: unknown key \"val-loss\"");
  expect_error("\n\n{\"params\": 1, \"tokens\": 1, \"val_loss\"", "s/runs.jsonl:3: not a JSON object");
  expect_error("[1, 2]", "s/runs.jsonl:1: not a JSON object");
  expect_error("{\"params\": -1, \"tokens\": 1, \"val_loss\": 1}", "s/runs.jsonl:1: \"params\" must be a positive number");
  expect_error("{\"params\": 1, \"tokens\": \"7\", \"val_loss\": 1}", "\"tokens\" must be a positive number");
  expect_error("{\"params\": 1e300, \"tokens\": 1e300, \"val_loss\": 1}", "overflows");
}

Test(scaling, too_few_runs) {
  lm_scaling_run r[4];
  for (int i = 0; i < 4; i++) r[i] = (lm_scaling_run){.params = i + 1, .tokens = 1, .flops = 6 * (i + 1), .val_loss = 1, .line = i + 1};
  lm_scaling_fit_opts o;
  lm_scaling_fit_opts_default(&o);
  lm_scaling_fit f;
  cr_expect_eq(lm_scaling_fit_runs(r, 4, &o, &f), LM_ERR_ARG);
  cr_expect(strstr(lm_last_error(), "at least 5 runs") != NULL);
}
