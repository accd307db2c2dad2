/* sampler.c — picks the next token from logits: greedy (temperature 0), or
 * softmax at a temperature restricted to the top-k ids and/or the smallest
 * set of ids whose probability reaches top-p (nucleus sampling).
 *
 * Sorting 50k probabilities per token would cost more than the matrix-vector
 * products of a small model, so top-p sorts only the ids above a probability
 * floor, lowered tenfold until the ids above it hold at least top_p of the
 * mass — the nucleus is then guaranteed to lie among them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "infer/infer.h"

void lm_gen_opts_default(lm_gen_opts *o) {
  memset(o, 0, sizeof *o);
  o->max_tokens = 128; o->temperature = 0.8f; o->top_k = 40; o->top_p = 0.95f; o->seed = 42; o->stop_at_eot = 1;
  o->length_penalty = 1.0f;
}

lm_status lm_sampler_init(lm_sampler *s, const lm_gen_opts *o, int64_t V) {
  memset(s, 0, sizeof *s);
  if (o->temperature < 0 || !(o->top_p > 0 && o->top_p <= 1) || o->top_k < 0)
    return lm_error(LM_ERR_ARG, "sampling needs temperature >= 0, 0 < top-p <= 1 and top-k >= 0");
  s->o = *o; s->V = V;
  lm_rng_seed(&s->rng, o->seed);
  s->prob = malloc(V * sizeof(float));
  s->idx = malloc(V * sizeof(int32_t));
  if (!s->prob || !s->idx) { lm_sampler_free(s); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  return LM_OK;
}

void lm_sampler_free(lm_sampler *s) { free(s->prob); free(s->idx); s->prob = NULL; s->idx = NULL; }

static int by_prob_desc(const void *a, const void *b, void *key) {
  const float *p = key;
  float x = p[*(const int32_t *)a], y = p[*(const int32_t *)b];
  if (x != y) return x < y ? 1 : -1;
  return *(const int32_t *)a - *(const int32_t *)b;   /* ties: lower id first, deterministic */
}

int32_t lm_sampler_pick(lm_sampler *s, const float *logits) {
  int64_t V = s->V;
  int32_t best = 0;
  for (int64_t i = 1; i < V; i++) if (logits[i] > logits[best]) best = (int32_t)i;
  if (s->o.temperature <= 0) return best;
  float inv_t = 1.0f / s->o.temperature, mx = logits[best];
  double sum = 0;
  for (int64_t i = 0; i < V; i++) { s->prob[i] = expf((logits[i] - mx) * inv_t); sum += s->prob[i]; }
  for (int64_t i = 0; i < V; i++) s->prob[i] = (float)(s->prob[i] / sum);
  /* candidates: ids above a floor holding >= top_p of the mass (all ids when top_p == 1 and no top-k) */
  int64_t n = 0;
  int need_all = s->o.top_p >= 1.0f && s->o.top_k == 0;
  for (float floor = 1e-3f; ; floor *= 0.1f) {
    double mass = 0; n = 0;
    for (int64_t i = 0; i < V; i++)
      if (need_all || s->prob[i] >= floor) { s->idx[n++] = (int32_t)i; mass += s->prob[i]; }
    int enough_k = s->o.top_k == 0 || n >= s->o.top_k || n == V;
    if (need_all || (mass >= s->o.top_p && enough_k) || floor < 1e-30f) break;
  }
  qsort_r(s->idx, n, sizeof(int32_t), by_prob_desc, s->prob);
  if (s->o.top_k > 0 && n > s->o.top_k) n = s->o.top_k;
  double mass = 0, cut = 0;
  for (int64_t i = 0; i < n; i++) mass += s->prob[s->idx[i]];
  if (s->o.top_p < 1.0f) {
    /* smallest prefix whose share of the (top-k) mass reaches top_p */
    int64_t k = 0;
    for (; k < n; k++) { cut += s->prob[s->idx[k]]; if (cut >= s->o.top_p * mass) { k++; break; } }
    n = k; mass = cut;
  }
  double r = lm_rng_uniform(&s->rng) * mass, acc = 0;
  for (int64_t i = 0; i < n; i++) { acc += s->prob[s->idx[i]]; if (r < acc) return s->idx[i]; }
  return s->idx[n - 1];
}
