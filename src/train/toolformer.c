/* toolformer.c — Toolformer's augmented data for the calculator (toolformer.h;
 * docs/rl.md "Toolformer").
 *
 * Finding the candidates and inserting the calls: toolformer_find.c.
 *
 * Scoring: each candidate becomes three token sequences (no call, the call
 * without its result, the call with it) that end with the same `window`
 * tokens of the text that follows; lm_pref_logps (objectives/dpo.c, the DPO
 * reference cache) gives the log-likelihood of those tokens in each, for many
 * candidates per forward pass. Its data are pairs of sequences, so the three
 * sequences of the candidates are laid out one after another and an odd count
 * gets a copy of the last one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/heads.h"
#include "model/model.h"
#include "train/posttrain.h"
#include "train/toolformer.h"

/* ---------------------------------------------------------------- scoring */

typedef struct { uint32_t *ids; size_t n; } piece;

static lm_status encode(const lm_tokenizer *tok, const char *s, size_t n, piece *p) {
  p->ids = NULL; p->n = 0;
  return n ? lm_tokenizer_encode(tok, s, n, 0, &p->ids, &p->n) : LM_OK;
}

/* Appends ctx + pre + call + the first w ids of rest to d as sequence d->n..., the last w marked;
 * at most T tokens (the front dropped). Room is the caller's. */
static void put_seq(lm_pref_data *d, int64_t *s, size_t *used, int64_t T, const uint32_t *ctx, int64_t n_ctx,
                    const piece *pre, const piece *call, const piece *rest, int64_t w) {
  int64_t head = n_ctx + (int64_t)pre->n + (int64_t)call->n, total = head + w, skip = total > T ? total - T : 0;
  uint32_t *o = d->ids + *used;
  uint8_t *mk = d->mask + *used;
  int64_t k = 0;
  for (int64_t i = 0; i < head; i++) {
    if (i < skip) continue;
    uint32_t id = i < n_ctx ? ctx[i] : i < n_ctx + (int64_t)pre->n ? pre->ids[i - n_ctx] : call->ids[i - n_ctx - (int64_t)pre->n];
    o[k] = id; mk[k++] = 0;
  }
  for (int64_t i = 0; i < w; i++) { o[k] = rest->ids[i]; mk[k++] = 1; }
  *used += (size_t)k;
  d->off[++*s] = (int64_t)*used;
  if (k > d->longest) d->longest = k;
}

lm_status lm_toolformer_score(lm_model *m, const lm_tokenizer *tok, const uint32_t *ctx, int64_t n_ctx,
                              const char *text, lm_toolformer_cand *c, int64_t n, const lm_toolformer_opts *o) {
  if (m->cfg.head != LM_HEAD_LM)
    return lm_error(LM_ERR_ARG, "toolformer needs a decoder with an LM head; this model has a %s head", lm_head_name(m->cfg.head));
  if (o->window < 1 || o->batch < 1) return lm_error(LM_ERR_ARG, "window and batch must be positive");
  int64_t T = m->cfg.n_positions;
  if (T < o->window + 1) return lm_error(LM_ERR_ARG, "the model's %lld positions are too few for a window of %lld", (long long)T, (long long)o->window);
  int32_t pad = (int32_t)(m->cfg.pad_token_id >= 0 ? m->cfg.pad_token_id : 0);
  lm_status st = LM_OK;
  for (int64_t c0 = 0; c0 < n && !st; c0 += o->batch) {
    int64_t nb = n - c0 < o->batch ? n - c0 : o->batch, ns = 0;
    size_t used = 0;
    lm_pref_data d = {0};
    double *lp = NULL;
    /* three sequences (+1 to make pairs) of at most T tokens per candidate */
    d.ids = malloc((size_t)(3 * nb + 1) * (size_t)T * sizeof *d.ids);
    d.mask = malloc((size_t)(3 * nb + 1) * (size_t)T);
    d.off = calloc((size_t)(3 * nb + 2), sizeof *d.off);
    lp = malloc((size_t)(3 * nb + 1) * sizeof *lp);
    if (!d.ids || !d.mask || !d.off || !lp) st = lm_error(LM_ERR_NOMEM, "out of memory for toolformer's sequences");
    int64_t *seq = calloc((size_t)nb, sizeof *seq);   /* first sequence of each candidate, -1: not scored */
    if (!st && !seq) st = lm_error(LM_ERR_NOMEM, "out of memory");
    for (int64_t k = 0; k < nb && !st; k++) {
      lm_toolformer_cand *x = &c[c0 + k];
      piece pre = {0}, rest = {0}, calls[3] = {{0}};
      char *cn = lm_toolformer_call(text, x, 0), *cr = lm_toolformer_call(text, x, 1);
      if (!cn || !cr) st = lm_error(LM_ERR_NOMEM, "out of memory");
      if (!st) st = encode(tok, text, x->at, &pre);
      if (!st) st = encode(tok, text + x->at, strlen(text + x->at), &rest);
      if (!st) st = encode(tok, cn, strlen(cn), &calls[1]);
      if (!st) st = encode(tok, cr, strlen(cr), &calls[2]);
      x->scored = (int64_t)rest.n < o->window ? (int64_t)rest.n : o->window;
      seq[k] = -1;
      if (!st && x->scored > 0) {
        seq[k] = ns;
        for (int v = 0; v < 3; v++) put_seq(&d, &ns, &used, T, ctx, n_ctx, &pre, &calls[v], &rest, x->scored);
      }
      free(pre.ids); free(rest.ids); free(calls[1].ids); free(calls[2].ids); free(cn); free(cr);
    }
    if (!st && ns % 2) {   /* pairs: the last sequence once more */
      int64_t a = d.off[ns - 1], k = d.off[ns] - a;
      memmove(d.ids + used, d.ids + a, (size_t)k * sizeof *d.ids);
      memmove(d.mask + used, d.mask + a, (size_t)k);
      used += (size_t)k;
      d.off[++ns] = (int64_t)used;
    }
    d.n = ns / 2;
    if (!st && d.n) st = lm_pref_logps(m, &d, (3 * o->batch + 1) / 2, pad, lp);
    for (int64_t k = 0; k < nb && !st; k++) {
      lm_toolformer_cand *x = &c[c0 + k];
      x->keep = 0;
      if (seq[k] < 0) { x->loss_none = x->loss_no_result = x->loss_call = 0; continue; }
      x->loss_none = -lp[seq[k]]; x->loss_no_result = -lp[seq[k] + 1]; x->loss_call = -lp[seq[k] + 2];
      double base = x->loss_none < x->loss_no_result ? x->loss_none : x->loss_no_result;
      x->keep = base - x->loss_call >= o->threshold;
    }
    free(seq); free(d.ids); free(d.mask); free(d.off); free(lp);
  }
  return st;
}
