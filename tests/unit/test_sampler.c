/* test_sampler.c — the sampler (src/infer/sampler.c) draws from the distribution it claims, on
 * each of its paths: nothing cut (one pass in id order), top-k (the heap), top-p (the floor and
 * sort), both; checked by a chi-square test over many seeded draws against the distribution
 * computed here in double (softmax at the temperature, cut, renormalised), and by never drawing
 * outside the cut. Ties at the top-k boundary keep the lower ids. The log-probability the sampler
 * reports is log softmax(z / T)[y]. RL rollouts, which sample their rows in parallel, give the
 * same tokens and log-probabilities at 1 and 3 threads. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "infer/infer.h"
#include "model/model.h"
#include "train/rl.h"

#define V 8
static const float Z[V] = {1.5f, -0.3f, 2.1f, 0.0f, 0.7f, -2.0f, 1.2f, 0.4f};

/* the distribution the sampler must follow: softmax(Z / T), cut to the top k (0: none) and to
 * the smallest most-probable prefix holding top_p of that mass, renormalised */
static void expected(double *p, float T, int k, float top_p) {
  double s = 0, mx = Z[0];
  for (int i = 1; i < V; i++) mx = Z[i] > mx ? Z[i] : mx;
  for (int i = 0; i < V; i++) s += p[i] = exp((Z[i] - mx) / T);
  int order[V];
  for (int i = 0; i < V; i++) order[i] = i;
  for (int i = 0; i < V; i++)   /* by probability, descending (Z has no ties) */
    for (int j = i + 1; j < V; j++)
      if (p[order[j]] > p[order[i]]) { int t = order[i]; order[i] = order[j]; order[j] = t; }
  int keep = k > 0 && k < V ? k : V;
  double mass = 0;
  for (int i = 0; i < keep; i++) mass += p[order[i]];
  if (top_p < 1) {
    double cut = 0;
    int n = 0;
    while (n < keep) { cut += p[order[n++]]; if (cut >= top_p * mass) break; }
    keep = n; mass = cut;
  }
  double q[V] = {0};
  for (int i = 0; i < keep; i++) q[order[i]] = p[order[i]] / mass;
  memcpy(p, q, sizeof q);
}

/* DRAWS seeded draws: none outside the support, and chi-square below the 0.1% critical value */
static void check(float T, int k, float top_p) {
  enum { DRAWS = 200000 };
  static const double crit[V] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32};   /* df = 1..7 */
  double p[V];
  expected(p, T, k, top_p);
  lm_gen_opts o;
  lm_gen_opts_default(&o);
  o.temperature = T; o.top_k = k; o.top_p = top_p; o.seed = 1234;
  lm_sampler s;
  cr_assert_eq(lm_sampler_init(&s, &o, V), LM_OK);
  long seen[V] = {0};
  for (int d = 0; d < DRAWS; d++) {
    int32_t y = lm_sampler_pick(&s, Z);
    cr_assert(y >= 0 && y < V);
    seen[y]++;
  }
  lm_sampler_free(&s);
  double chi2 = 0;
  int support = 0;
  for (int i = 0; i < V; i++) {
    if (p[i] == 0) { cr_assert_eq(seen[i], 0, "T=%g k=%d p=%g: id %d is cut but drawn %ld times", T, k, top_p, i, seen[i]); continue; }
    support++;
    double e = p[i] * DRAWS;
    chi2 += (seen[i] - e) * (seen[i] - e) / e;
  }
  if (support > 1)
    cr_assert(chi2 < crit[support - 1], "T=%g k=%d p=%g: chi-square %.2f over %d ids (critical %.2f)", T, k, top_p, chi2, support,
              crit[support - 1]);
}

Test(sampler, nothing_cut) { check(0.7f, 0, 1.0f); check(1.0f, 0, 1.0f); check(1.0f, V, 1.0f); check(1.0f, 100, 1.0f); }
Test(sampler, top_k) { check(1.0f, 3, 1.0f); check(0.8f, 5, 1.0f); check(1.0f, 1, 1.0f); }
Test(sampler, top_p) { check(1.0f, 0, 0.9f); check(0.8f, 0, 0.5f); check(1.0f, 0, 0.99f); }
Test(sampler, top_k_and_top_p) { check(1.0f, 4, 0.8f); check(1.2f, 6, 0.95f); }

/* many equal logits: top-k keeps the lowest ids among the tied, and the heap finds the true top k
 * of a large vocabulary */
Test(sampler, top_k_ties_and_large_vocabulary) {
  enum { BIG = 5000, K = 40 };
  float *z = malloc(BIG * sizeof *z);
  for (int i = 0; i < BIG; i++) z[i] = (float)((i * 7919) % 1000) * 0.01f;   /* values repeat: ties */
  /* the top K by (value desc, id asc), by brute force */
  char *in = calloc(BIG, 1);
  for (int n = 0; n < K; n++) {
    int best = -1;
    for (int i = 0; i < BIG; i++) if (!in[i] && (best < 0 || z[i] > z[best])) best = i;
    in[best] = 1;
  }
  lm_gen_opts o;
  lm_gen_opts_default(&o);
  o.temperature = 0.05f; o.top_k = K; o.top_p = 1.0f; o.seed = 5;
  lm_sampler s;
  cr_assert_eq(lm_sampler_init(&s, &o, BIG), LM_OK);
  int hits[BIG] = {0};
  for (int d = 0; d < 4000; d++) {
    int32_t y = lm_sampler_pick(&s, z);
    cr_assert(in[y], "drew id %d (logit %g), not among the top %d", y, z[y], K);
    hits[y]++;
  }
  int distinct = 0;
  for (int i = 0; i < BIG; i++) distinct += hits[i] > 0;
  cr_assert(distinct > 1, "top-k drew only one id");
  lm_sampler_free(&s);
  free(z); free(in);
}

Test(sampler, logp_is_log_softmax) {
  const float T[3] = {0.5f, 1.0f, 1.7f};
  for (int t = 0; t < 3; t++) {
    lm_gen_opts o;
    lm_gen_opts_default(&o);
    o.temperature = T[t]; o.top_k = t == 1 ? 3 : 0; o.top_p = 1.0f; o.seed = 9;
    lm_sampler s;
    cr_assert_eq(lm_sampler_init(&s, &o, V), LM_OK);
    double mx = 2.1, sum = 0;
    for (int i = 0; i < V; i++) sum += exp((Z[i] - mx) / T[t]);
    for (int d = 0; d < 50; d++) {
      int32_t y = lm_sampler_pick(&s, Z);
      double want = (Z[y] - mx) / T[t] - log(sum);
      cr_assert(fabs(s.logp - want) < 1e-6 * (1 + fabs(want)), "T=%g: logp %.9g, want %.9g", T[t], s.logp, want);
    }
    lm_sampler_free(&s);
  }
}

/* rollouts sample their rows in parallel: the same tokens and log-probabilities at any thread count */
Test(sampler, rollouts_independent_of_threads) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  c.vocab_size = 301; c.n_positions = 40; c.n_embd = 32; c.n_layer = 2; c.n_head = 4;
  lm_model *m;
  cr_assert_eq(lm_model_create(&m, &c, 3), LM_OK);
  enum { N = 6, NEW = 16 };
  lm_batch_decoder *d;
  cr_assert_eq(lm_batch_decoder_init(&d, m, N, 40), LM_OK);
  int32_t prompt[4] = {5, 17, 250, 3};
  const int32_t *pp[N];
  int64_t pl[N];
  for (int i = 0; i < N; i++) { pp[i] = prompt; pl[i] = 1 + i % 4; }
  const float temps[2] = {1.0f, 0.0f};
  for (int t = 0; t < 2; t++) {
    lm_rollout_opts o = {.temperature = temps[t], .top_p = 1.0f, .max_new = NEW, .seed = 21};
    lm_rollouts r1, r3;
    cr_assert_eq(lm_rollouts_alloc(&r1, N, NEW), LM_OK);
    cr_assert_eq(lm_rollouts_alloc(&r3, N, NEW), LM_OK);
    lm_set_threads(1);
    cr_assert_eq(lm_rollout(d, m, NULL, pp, pl, N, &o, &r1), LM_OK, "%s", lm_last_error());
    lm_set_threads(3);
    cr_assert_eq(lm_rollout(d, m, NULL, pp, pl, N, &o, &r3), LM_OK, "%s", lm_last_error());
    cr_assert(!memcmp(r1.ids, r3.ids, sizeof(int32_t) * N * NEW), "T=%g: other tokens at 3 threads", temps[t]);
    cr_assert(!memcmp(r1.logp, r3.logp, sizeof(float) * N * NEW), "T=%g: other log-probs at 3 threads", temps[t]);
    lm_rollouts_free(&r1);
    lm_rollouts_free(&r3);
  }
  lm_batch_decoder_free(d);
  lm_model_free(m);
}
