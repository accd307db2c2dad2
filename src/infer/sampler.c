/* sampler.c — picks the next token from logits: greedy (temperature 0), or
 * softmax at a temperature restricted to the top-k ids and/or the smallest
 * set of ids whose probability reaches top-p (nucleus sampling).
 *
 * When nothing is cut (top-k 0 or >= V, top-p 1: RL rollouts, --top-p 1) the
 * draw is one pass in id order: the first id whose running sum of exp((z - max)
 * / T) exceeds u times the total. A cut needs the ids in order of probability;
 * sorting 50k of them per token would cost more than the matrix-vector products
 * of a small model, so top-k keeps the k best in a heap (O(V log k)), and top-p
 * alone sorts only the ids above a probability floor, lowered tenfold until the
 * ids above it hold at least top_p of the mass — the nucleus is then guaranteed
 * to lie among them. Ties go to the lower id, so every path is deterministic. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "infer/infer.h"
#include "kernels/vexp.h"

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

/* id a ranks below id b: less probable, or as probable and a higher id (by_prob_desc's order) */
static int below(const float *p, int32_t a, int32_t b) { return p[a] < p[b] || (p[a] == p[b] && a > b); }

/* the k best ids of p (k < V) into idx[0..k), best first: a heap whose root is the worst kept */
static void top_k(const float *p, int64_t V, int32_t *idx, int64_t k) {
  for (int64_t i = 0; i < V; i++) {
    int32_t id = (int32_t)i;
    int64_t j;
    if (i < k) {   /* sift up */
      for (j = i; j > 0 && below(p, id, idx[(j - 1) / 2]); j = (j - 1) / 2) idx[j] = idx[(j - 1) / 2];
    } else {
      if (!below(p, idx[0], id)) continue;
      for (j = 0;;) {   /* replace the root, sift down */
        int64_t c = 2 * j + 1;
        if (c >= k) break;
        if (c + 1 < k && below(p, idx[c + 1], idx[c])) c++;
        if (!below(p, idx[c], id)) break;
        idx[j] = idx[c]; j = c;
      }
    }
    idx[j] = id;
  }
  qsort_r(idx, (size_t)k, sizeof(int32_t), by_prob_desc, (void *)p);
}

/* the draw from the weights prob (V, unnormalised, summing to sum) under the cuts */
static int32_t pick(lm_sampler *s, double sum) {
  int64_t V = s->V;
  int cut_k = s->o.top_k > 0 && s->o.top_k < V, cut_p = s->o.top_p < 1.0f;
  if (!cut_k && !cut_p) {   /* nothing cut: one pass in id order over the unnormalised weights */
    double r = lm_rng_uniform(&s->rng) * sum, acc = 0;
    for (int64_t i = 0; i < V; i++) { acc += s->prob[i]; if (r < acc) return (int32_t)i; }
    return (int32_t)(V - 1);   /* not reached: the running sum ends at sum > r */
  }
  for (int64_t i = 0; i < V; i++) s->prob[i] = (float)(s->prob[i] / sum);
  int64_t n = 0;
  if (cut_k) { top_k(s->prob, V, s->idx, s->o.top_k); n = s->o.top_k; }
  else {
    /* candidates: ids above a floor holding >= top_p of the mass */
    for (float floor = 1e-3f; ; floor *= 0.1f) {
      double mass = 0; n = 0;
      for (int64_t i = 0; i < V; i++)
        if (s->prob[i] >= floor) { s->idx[n++] = (int32_t)i; mass += s->prob[i]; }
      if (mass >= s->o.top_p || floor < 1e-30f) break;
    }
    qsort_r(s->idx, n, sizeof(int32_t), by_prob_desc, s->prob);
  }
  double mass = 0, cut = 0;
  for (int64_t i = 0; i < n; i++) mass += s->prob[s->idx[i]];
  if (cut_p) {
    /* smallest prefix whose share of the (top-k) mass reaches top_p */
    int64_t k = 0;
    for (; k < n; k++) { cut += s->prob[s->idx[k]]; if (cut >= s->o.top_p * mass) { k++; break; } }
    n = k; mass = cut;
  }
  double r = lm_rng_uniform(&s->rng) * mass, acc = 0;
  for (int64_t i = 0; i < n; i++) { acc += s->prob[s->idx[i]]; if (r < acc) return s->idx[i]; }
  return s->idx[n - 1];
}

int32_t lm_sampler_pick(lm_sampler *s, const float *logits) {
  int64_t V = s->V;
  int32_t best = 0;
  for (int64_t i = 1; i < V; i++) if (logits[i] > logits[best]) best = (int32_t)i;
  if (s->o.temperature <= 0) return best;
  float inv_t = 1.0f / s->o.temperature, mx = logits[best];
  for (int64_t i = 0; i < V; i++) s->prob[i] = vexp((logits[i] - mx) * inv_t);   /* vectorised */
  double sum = 0;
  for (int64_t i = 0; i < V; i++) sum += s->prob[i];
  int32_t y = pick(s, sum);
  s->logp = (float)((double)((logits[y] - mx) * inv_t) - log(sum));
  return y;
}
