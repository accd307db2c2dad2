/* clm.c — the causal language-modelling objective (GPT): predict every next
 * token. Batches are windows of T+1 tokens: the non-overlapping slices of the
 * train stream starting at multiples of T, visited in a fresh random order
 * each epoch. The order is a pure function of (seed, epoch), so the data
 * cursor is just (epoch, index) and a resumed run draws exactly the batches
 * the uninterrupted run would have.
 *
 * Data parallelism (src/train/dist.c): with P ranks a micro-batch of the
 * job is P x B windows drawn as one process would draw them; rank r keeps
 * windows r*B .. r*B+B-1 and skips the others, so P ranks at batch B see the
 * sequences one process at batch P x B sees, and every rank's cursor is the
 * same (the job's). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "model/model.h"
#include "train/train.h"

typedef struct {
  const lm_stream *train, *val;
  int64_t B, T;
  int rank, ranks;        /* this process's share of each micro-batch of the job (1 rank: all) */
  lm_epochs order;        /* over the windows; holds the cursor */
  int32_t *inp, *tgt;     /* (B,T) */
} clm;

/* Fills inputs/targets (B,T) with the next B windows. */
static void next_batch(clm *c) {
  int64_t T = c->T;
  for (int64_t g = 0; g < c->B * c->ranks; g++) {
    int64_t win = lm_epochs_next(&c->order), b = g - c->rank * c->B;
    if (b < 0 || b >= c->B) continue;   /* another rank's window */
    const uint32_t *w = c->train->ids + win * T;
    for (int64_t t = 0; t < T; t++) { c->inp[b * T + t] = (int32_t)w[t]; c->tgt[b * T + t] = (int32_t)w[t + 1]; }
  }
}

static float clm_micro(void *self, lm_model *m) {
  clm *c = self;
  next_batch(c);
  float loss = lm_model_forward(m, c->inp, c->tgt, NULL, c->B, c->T);
  lm_model_backward(m, c->inp, c->tgt, NULL, c->B, c->T);
  return loss;
}

lm_status lm_clm_eval_stream(lm_model *m, const lm_stream *s, int64_t T, int64_t B, int64_t max_batches,
                             int32_t *inp, int32_t *tgt, double *mean, int64_t *count) {
  double sum = 0; int64_t n = 0;
  int64_t n_windows = s->n > 1 ? (int64_t)((s->n - 1) / (uint64_t)T) : 0;
  /* a stream shorter than one window is still evaluated, as one short window */
  int64_t Teff = n_windows ? T : (int64_t)s->n - 1;
  if (!n_windows && s->n >= 2) n_windows = 1;
  for (int64_t w0 = 0, nb = 0; w0 < n_windows && (!max_batches || nb < max_batches); w0 += B, nb++) {
    int64_t bb = n_windows - w0 < B ? n_windows - w0 : B;
    for (int64_t b = 0; b < B; b++)
      for (int64_t t = 0; t < Teff; t++) {
        int in = b < bb;
        const uint32_t *w = s->ids + (w0 + (in ? b : 0)) * T;
        inp[b * Teff + t] = (int32_t)w[t];
        tgt[b * Teff + t] = in ? (int32_t)w[t + 1] : -1;   /* padding rows are ignored */
      }
    float loss = lm_model_forward(m, inp, tgt, NULL, B, Teff);
    sum += (double)loss * bb * Teff; n += bb * Teff;
  }
  *mean = n ? sum / n : NAN;
  if (count) *count = n;
  return LM_OK;
}

static double clm_evaluate(void *self, lm_model *m, int64_t max_batches) {
  clm *c = self;
  if (!c->val || c->val->n < 2) return NAN;
  double mean;
  lm_clm_eval_stream(m, c->val, c->T, c->B, max_batches, c->inp, c->tgt, &mean, NULL);
  return mean;
}

static void clm_cursor(void *self, int64_t *epoch, int64_t *index) {
  clm *c = self;
  *epoch = c->order.epoch; *index = c->order.index;
}

static void clm_free(void *self) {
  clm *c = self;
  if (!c) return;
  lm_epochs_free(&c->order); free(c->inp); free(c->tgt); free(c);
}

lm_status lm_objective_clm(lm_objective *o, lm_model *m, const lm_stream *train, const lm_stream *val,
                           int64_t B, int64_t T, uint64_t seed, const int64_t *cursor, int rank, int ranks) {
  memset(o, 0, sizeof *o);
  clm *c = calloc(1, sizeof *c);
  if (!c) return lm_error(LM_ERR_NOMEM, "out of memory");
  c->train = train; c->val = val; c->B = B; c->T = T;
  c->rank = rank; c->ranks = ranks > 0 ? ranks : 1;
  int64_t n_windows = train->n > 1 ? (int64_t)((train->n - 1) / (uint64_t)T) : 0;
  lm_status st = LM_OK;
  if (n_windows < 1)
    st = lm_error(LM_ERR_ARG, "the training data has %llu tokens: too few for one window of context %lld + 1",
                  (unsigned long long)train->n, (long long)T);
  if (!st) st = lm_epochs_init(&c->order, n_windows, seed, 1, cursor);
  if (!st) {
    c->inp = lm_xmalloc(B * T * sizeof(int32_t));
    c->tgt = lm_xmalloc(B * T * sizeof(int32_t));
    if (!c->inp || !c->tgt) st = LM_ERR_NOMEM;
  }
  if (!st) st = lm_model_reserve(m, B, T, 1);
  if (st) { clm_free(c); return st; }
  *o = (lm_objective){.self = c, .micro = clm_micro, .evaluate = clm_evaluate, .cursor = clm_cursor, .free = clm_free};
  return LM_OK;
}
