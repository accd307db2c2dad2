/* rollout.c — sampling completions for RL (rl.h lm_rollout).
 *
 * Each row has a slot of the many-sequence decoder (src/infer/batch.h): its
 * prompt is fed to the slot, then every step samples one token per live row
 * from the logits kept for it and feeds all of them in ONE forward
 * (lm_batch_decoder_step). A row ends at a stop token (kept: the policy learns
 * to stop) or at max_new tokens. Each row samples with its own generator
 * (seed + row), so rollouts do not depend on which rows are still live or on
 * the thread count; rows sample in parallel. With calc, a row whose text ends a calculator call gets
 * " → RESULT" (calc.h) appended as tool tokens: fed to its slot on their own,
 * marked in r->tool, never sampled and never trained on. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "infer/calc.h"
#include "infer/infer.h"
#include "kernels/vexp.h"
#include "model/model.h"
#include "train/rl.h"

lm_status lm_rollouts_alloc(lm_rollouts *r, int64_t n, int64_t T) {
  memset(r, 0, sizeof *r);
  r->n = n; r->T = T;
  size_t NT = (size_t)(n * T);
  r->ids = calloc(NT, sizeof *r->ids); r->logp = calloc(NT, sizeof *r->logp); r->tool = calloc(NT, 1);
  r->len = calloc((size_t)n, sizeof *r->len); r->stopped = calloc((size_t)n, 1);
  if (!r->ids || !r->logp || !r->tool || !r->len || !r->stopped) {
    lm_rollouts_free(r);
    return lm_error(LM_ERR_NOMEM, "out of memory for %lld rollouts of %lld tokens", (long long)n, (long long)T);
  }
  return LM_OK;
}

void lm_rollouts_free(lm_rollouts *r) {
  free(r->ids); free(r->logp); free(r->tool); free(r->len); free(r->stopped);
  memset(r, 0, sizeof *r);
}

/* log softmax(z / temperature)[y] as the sampler computes it (lm_sampler.logp): e (V) is scratch
 * for the exponentials, by vexp in float (vectorised), summed in double */
static float token_logp(const float *z, int64_t V, float temperature, int32_t y, float *e) {
  float inv = 1.0f / temperature, mx = z[0];
  for (int64_t v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
  for (int64_t v = 0; v < V; v++) e[v] = vexp((z[v] - mx) * inv);
  double s = 0;
  for (int64_t v = 0; v < V; v++) s += e[v];
  return (float)((double)((z[y] - mx) * inv) - log(s));
}

typedef struct { char text[LM_CALC_MAX_EXPR + 64]; size_t n; } text_tail;

/* appends token y's text to the tail; the splice of a call it closes into out (0: none) */
static lm_status tail_push(text_tail *t, const lm_tokenizer *tok, int32_t y, char *out, size_t cap, int *ns) {
  uint32_t u = (uint32_t)y;
  char *s; size_t k;
  *ns = 0;
  lm_status st = lm_tokenizer_decode(tok, &u, 1, &s, &k);
  if (st) return st;
  for (size_t i = 0; i < k; i++) {
    if (t->n == sizeof t->text) { memmove(t->text, t->text + sizeof t->text / 2, sizeof t->text / 2); t->n = sizeof t->text / 2; }
    t->text[t->n++] = s[i];
  }
  free(s);
  *ns = lm_calc_splice(t->text, t->n, out, cap);
  if (*ns) t->n = 0;
  return LM_OK;
}

lm_status lm_rollout(lm_batch_decoder *d, const lm_model *m, const lm_tokenizer *tok, const int32_t *const *prompt,
                     const int64_t *plen, int64_t n, const lm_rollout_opts *o, lm_rollouts *r) {
  if (n > lm_batch_decoder_slots(d) || n > r->n || o->max_new > r->T)
    return lm_error(LM_ERR_ARG, "rollouts: %lld rows do not fit the decoder's %d slots", (long long)n, lm_batch_decoder_slots(d));
  if (!(o->temperature >= 0)) return lm_error(LM_ERR_ARG, "rollouts need a temperature of at least 0 (got %g)", (double)o->temperature);
  if (o->calc && !tok) return lm_error(LM_ERR_ARG, "the calculator needs the tokenizer");
  int64_t V = lm_model_config(m)->vocab_size;
  lm_status st = LM_OK;
  float *L = lm_alloc((size_t)(n * V) * sizeof *L);   /* (n,V) each live row's next-token logits */
  lm_sampler *sp = calloc((size_t)n, sizeof *sp);
  int *slots = malloc((size_t)n * sizeof *slots), *live = malloc((size_t)n * sizeof *live);
  int32_t *next = malloc((size_t)n * sizeof *next), *picked = malloc((size_t)n * sizeof *picked);
  float *lp = malloc((size_t)n * sizeof *lp);
  text_tail *tails = o->calc ? calloc((size_t)n, sizeof *tails) : NULL;
  if (!L || !sp || !slots || !live || !next || !picked || !lp || (o->calc && !tails)) {
    st = lm_error(LM_ERR_NOMEM, "out of memory");
    goto done;
  }
  memset(r->len, 0, (size_t)n * sizeof *r->len); memset(r->stopped, 0, (size_t)n);
  memset(r->tool, 0, (size_t)(n * r->T));
  r->sampled = 0;
  lm_gen_opts g;
  lm_gen_opts_default(&g);
  g.temperature = o->temperature; g.top_p = o->top_p; g.top_k = o->top_k;
  for (int64_t i = 0; i < n && !st; i++) {
    g.seed = o->seed + (uint64_t)i;
    st = lm_sampler_init(&sp[i], &g, V);
    if (st) break;
    const float *lg;
    lm_batch_decoder_reset(d, (int)i);
    st = lm_batch_decoder_feed(d, (int)i, prompt[i], plen[i], &lg);
    if (!st) memcpy(L + i * V, lg, (size_t)V * sizeof *L);
    live[i] = 1;
  }
  int64_t n_live = n;
  while (!st && n_live > 0) {
    int k = 0;
    /* every live row's token and its log-probability, rows in parallel: each row has its own
     * sampler (generator and scratch), so the draws do not depend on the thread count */
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; i++) {
      if (!live[i]) continue;
      const float *z = L + i * V;
      picked[i] = lm_sampler_pick(&sp[i], z);
      /* greedy: the log-probability at temperature 1, the sampler's scratch free for it */
      lp[i] = o->temperature > 0 ? sp[i].logp : token_logp(z, V, 1.0f, picked[i], sp[i].prob);
    }
    for (int64_t i = 0; i < n && !st; i++) {
      if (!live[i]) continue;
      int32_t y = picked[i];
      int64_t t = r->len[i]++;
      r->ids[i * r->T + t] = y;
      r->logp[i * r->T + t] = lp[i];
      r->sampled++;
      int stop = 0;
      for (int j = 0; j < o->n_stop && !stop; j++) stop = o->stop[j] == y;
      if (stop || r->len[i] >= o->max_new) { r->stopped[i] = (uint8_t)stop; live[i] = 0; n_live--; continue; }
      char sp_text[64]; int ns = 0;
      if (o->calc && (st = tail_push(&tails[i], tok, y, sp_text, sizeof sp_text, &ns))) break;
      if (!ns) { slots[k] = (int)i; next[k++] = y; continue; }
      /* the calculator's result: fed to this slot with the sampled token, as tool tokens */
      uint32_t *sid = NULL; size_t nsid = 0;
      if ((st = lm_tokenizer_encode(tok, sp_text, (size_t)ns, 0, &sid, &nsid))) break;
      int32_t *run = malloc((nsid + 1) * sizeof *run);
      if (!run) { free(sid); st = lm_error(LM_ERR_NOMEM, "out of memory"); break; }
      run[0] = y;
      size_t fit = 0;
      for (; fit < nsid && r->len[i] < o->max_new; fit++) {
        run[fit + 1] = (int32_t)sid[fit];
        r->ids[i * r->T + r->len[i]] = (int32_t)sid[fit];
        r->tool[i * r->T + r->len[i]++] = 1;
      }
      const float *lg;
      st = lm_batch_decoder_feed(d, (int)i, run, (int64_t)fit + 1, &lg);
      if (!st) memcpy(L + i * V, lg, (size_t)V * sizeof *L);
      free(run); free(sid);
      if (r->len[i] >= o->max_new) { live[i] = 0; n_live--; }
    }
    if (st || k == 0) continue;
    const float *lg;
    st = lm_batch_decoder_step(d, slots, next, k, &lg);
    for (int j = 0; j < k && !st; j++) memcpy(L + (int64_t)slots[j] * V, lg + (int64_t)j * V, (size_t)V * sizeof *L);
  }
done:
  if (sp) for (int64_t i = 0; i < n; i++) lm_sampler_free(&sp[i]);
  free(sp); lm_free(L); free(slots); free(live); free(next); free(picked); free(lp); free(tails);
  return st;
}
