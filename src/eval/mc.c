/* mc.c — multiple-choice evaluation by log-likelihood (mc.h).
 *
 * Records are read by mc_data.c. Scoring follows lm-evaluation-harness
 * (lm_eval/api/model.py _encode_pair, loglikelihood): the continuation's
 * tokens are those of encode(context + continuation) past encode(context),
 * scored from one causal forward over the pair (one sequence at a time; the
 * logits at position t predict token t+1, log-softmax in double). k-shot
 * prompts join k training examples "ctx ending" with blank lines before the
 * test context, as lm-eval's default delimiters do; the shots of item i are
 * drawn with an rng seeded by (seed, i), so any subset scores the same. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "eval/mc.h"
#include "model/heads.h"
#include "model/model.h"

/* ---- scoring ---- */

lm_status lm_loglik(lm_model *m, const lm_tokenizer *tok, const char *context, const char *cont, double *ll,
                    int64_t *n_cont) {
  size_t lc = strlen(context), spaces = 0;
  while (spaces < lc && context[lc - 1 - spaces] == ' ') spaces++;
  size_t lx = strlen(cont), lw = lc + lx;
  char *whole = lm_xmalloc(lw + 1);
  uint32_t *ctx_ids = NULL, *ids = NULL;
  size_t n_ctx = 0, n = 0;
  int32_t *in = NULL;
  lm_status st = whole ? LM_OK : LM_ERR_NOMEM;
  if (!st) {
    memcpy(whole, context, lc); memcpy(whole + lc, cont, lx); whole[lw] = 0;
    st = lm_tokenizer_encode(tok, context, lc - spaces, 0, &ctx_ids, &n_ctx);
  }
  if (!st) st = lm_tokenizer_encode(tok, whole, lw, 0, &ids, &n);
  if (st) goto done;
  /* encode(context + cont) must start with encode(context): true for byte-level BPE at a space boundary */
  if (n_ctx > n || (n_ctx && memcmp(ctx_ids, ids, n_ctx * sizeof *ids))) {
    st = lm_error(LM_ERR_UNSUPPORTED, "the tokenizer encodes the context differently with the continuation after it; "
                  "cannot split the continuation's tokens");
    goto done;
  }
  int64_t nc = (int64_t)(n - n_ctx), eot = lm_tokenizer_eot(tok);
  if (nc == 0) { st = lm_error(LM_ERR_ARG, "an empty continuation cannot be scored"); goto done; }
  /* the sequence: [eot when the context is empty] + ids; the model sees all but the last token */
  int64_t lead = n_ctx == 0 ? 1 : 0;
  if (lead && eot < 0) { st = lm_error(LM_ERR_ARG, "an empty context needs an end-of-text token, and the tokenizer has none"); goto done; }
  const lm_config *c = lm_model_config(m);
  int64_t total = lead + (int64_t)n, T = total - 1, skip = 0;
  if (T > c->n_positions) { skip = T - c->n_positions; T = c->n_positions; }   /* keep the last tokens */
  if (nc > T) { st = lm_error(LM_ERR_RANGE, "a continuation of %lld tokens is longer than the model's %lld positions", (long long)nc, (long long)c->n_positions); goto done; }
  if (!(in = lm_xmalloc((size_t)(T + 1) * sizeof *in))) { st = LM_ERR_NOMEM; goto done; }
  for (int64_t t = 0; t <= T; t++) {
    int64_t k = skip + t - lead;   /* index into ids; -1: the leading eot */
    in[t] = k < 0 ? (int32_t)eot : (int32_t)ids[k];
  }
  lm_batch b = {.ids = in, .B = 1, .T = T};
  if ((st = lm_batch_check(m, &b))) goto done;
  lm_forward(m, &b, NULL, NULL);
  const float *logits = lm_model_logits(m);
  int64_t V = c->vocab_size;
  double sum = 0;
  for (int64_t t = T - nc; t < T; t++) {   /* logits at t predict in[t + 1] */
    const float *z = logits + t * V;
    double mx = z[0], s = 0;
    for (int64_t v = 1; v < V; v++) mx = fmax(mx, z[v]);
    for (int64_t v = 0; v < V; v++) s += exp(z[v] - mx);
    sum += z[in[t + 1]] - mx - log(s);
  }
  *ll = sum;
  *n_cont = nc;
done:
  free(whole); free(ctx_ids); free(ids); free(in);
  return st;
}

/* "ctx ending\n\nctx ending\n\n...ctx" with k shots (not the item itself when train is test) */
static char *prompt_of(const lm_mc_item *it, const lm_mc_set *train, const int64_t *shots, int k) {
  size_t len = strlen(it->ctx) + 1;
  for (int j = 0; j < k; j++) {
    const lm_mc_item *s = &train->items[shots[j]];
    len += strlen(s->ctx) + 1 + strlen(s->endings[s->label]) + 2;
  }
  char *p = lm_xmalloc(len), *w = p;
  if (!p) return NULL;
  for (int j = 0; j < k; j++) {
    const lm_mc_item *s = &train->items[shots[j]];
    w += sprintf(w, "%s %s\n\n", s->ctx, s->endings[s->label]);
  }
  strcpy(w, it->ctx);
  return p;
}

double lm_eval_stderr(double p, int64_t n) { return n > 1 ? sqrt(p * (1 - p) * (double)n / (double)(n - 1) / (double)n) : NAN; }

void lm_eval_shots(uint64_t seed, int64_t i, int64_t n_train, int same, int k, int64_t *shots) {
  lm_rng rng;
  lm_rng_seed(&rng, seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(i + 1)));
  for (int j = 0; j < k; j++) {   /* distinct, and not the item itself */
    int64_t s;
    int dup;
    do {
      s = lm_rng_below(&rng, (uint32_t)n_train);
      dup = same && s == i;
      for (int q = 0; q < j && !dup; q++) dup = shots[q] == s;
    } while (dup);
    shots[j] = s;
  }
}

lm_status lm_mc_eval(lm_model *m, const lm_tokenizer *tok, const lm_mc_set *test, const lm_mc_opts *o, lm_mc_result *r,
                     lm_mc_callback cb, void *user) {
  const lm_config *c = lm_model_config(m);
  memset(r, 0, sizeof *r);
  if (c->head != LM_HEAD_LM || !c->causal || c->n_enc_layer > 0)
    return lm_error(LM_ERR_UNSUPPORTED, "multiple choice needs a decoder with an LM head (this is %s with a %s head)",
                    lm_arch_name(c->arch), lm_head_name(c->head));
  if (o->shots > 0 && (!o->train || o->train->n < o->shots + (o->train == test)))
    return lm_error(LM_ERR_ARG, "%d shots need at least %d training records (%lld given)", o->shots,
                    o->shots + (o->train == test), (long long)(o->train ? o->train->n : 0));
  lm_status st = lm_model_reserve(m, 1, c->n_positions, 0);
  if (st) return st;
  int max_end = 0;
  for (int64_t i = 0; i < test->n; i++) max_end = test->items[i].n_endings > max_end ? test->items[i].n_endings : max_end;
  double *ll = lm_xmalloc((size_t)max_end * sizeof *ll);
  int64_t *bytes = lm_xmalloc((size_t)max_end * sizeof *bytes), *shots = lm_xmalloc(((size_t)o->shots + 1) * sizeof *shots);
  char *cont = NULL;
  if (!ll || !bytes || !shots) { st = LM_ERR_NOMEM; goto done; }
  lm_progress bar;
  if (o->progress) lm_progress_start(&bar, "eval", test->n);
  int64_t right = 0, right_norm = 0;
  for (int64_t i = 0; i < test->n && !st; i++) {
    const lm_mc_item *it = &test->items[i];
    if (o->shots) lm_eval_shots(o->seed, i, o->train->n, o->train == test, o->shots, shots);
    char *prompt = prompt_of(it, o->train, shots, o->shots);
    if (!prompt) { st = LM_ERR_NOMEM; break; }
    int pred = 0, pred_norm = 0;
    for (int k = 0; k < it->n_endings && !st; k++) {
      size_t le = strlen(it->endings[k]);
      free(cont);
      if (!(cont = lm_xmalloc(le + 2))) { st = LM_ERR_NOMEM; break; }
      cont[0] = ' '; memcpy(cont + 1, it->endings[k], le + 1);
      int64_t nt;
      if ((st = lm_loglik(m, tok, prompt, cont, &ll[k], &nt))) {
        lm_error_prefix(st, "record %lld (line %lld), ending %d", (long long)i + 1, (long long)it->line, k);
        break;
      }
      bytes[k] = (int64_t)le + 1;
      if (ll[k] > ll[pred]) pred = k;
      if (ll[k] / (double)bytes[k] > ll[pred_norm] / (double)bytes[pred_norm]) pred_norm = k;
    }
    free(prompt);
    if (st) break;
    right += pred == it->label;
    right_norm += pred_norm == it->label;
    if (cb) {
      lm_mc_detail d = {.index = i, .shots = shots, .n_shots = o->shots, .loglik = ll, .bytes = bytes,
                        .n = it->n_endings, .pred = pred, .pred_norm = pred_norm, .label = it->label};
      st = cb(&d, user);
    }
    char extra[64];
    snprintf(extra, sizeof extra, "acc %.3f", (double)right / (double)(i + 1));
    if (o->progress) lm_progress_update(&bar, i + 1, extra);
  }
  if (o->progress) lm_progress_finish(&bar, NULL);
  if (!st) {
    r->n = test->n;
    r->acc = (double)right / (double)test->n;
    r->acc_norm = (double)right_norm / (double)test->n;
    r->acc_stderr = lm_eval_stderr(r->acc, test->n);
    r->acc_norm_stderr = lm_eval_stderr(r->acc_norm, test->n);
  }
done:
  free(ll); free(bytes); free(shots); free(cont);
  return st;
}
