/* batch.c — the many-sequence decoder (batch.h).
 *
 * Each slot is a KV cache (lm_kv) and a position; one scratch (lm_fwd, session.c's forward)
 * serves them all. A prompt is one run through it, in chunks as a session feeds; a step is
 * one run of one token per listed slot, all in one forward. */
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/model.h"
#include "infer/infer.h"
#include "infer/batch.h"

#define CHUNK 256   /* prompt tokens per forward pass, as a session's */

struct lm_batch_decoder {
  const lm_model *m;
  int n_seq;
  lm_fwd *f;
  lm_kv *kv;        /* (n_seq) */
  int64_t *pos;     /* (n_seq) */
  lm_kv_run *runs;  /* (n_seq) */
  char *busy;       /* (n_seq) a slot listed twice in a step is refused */
  float *logits;    /* (n_seq, V) prefill's, gathered across its forwards */
  int64_t rows;     /* the scratch's rows: tokens per forward */
};

lm_status lm_batch_decoder_init(lm_batch_decoder **out, const lm_model *m, int n_seq, int64_t max_len) {
  *out = NULL;
  if (n_seq < 1) return lm_error(LM_ERR_ARG, "a batch decoder needs at least one slot");
  lm_batch_decoder *d = calloc(1, sizeof *d);
  if (!d) return lm_error(LM_ERR_NOMEM, "out of memory");
  d->m = m; d->n_seq = n_seq;
  d->kv = calloc((size_t)n_seq, sizeof *d->kv);
  d->pos = calloc((size_t)n_seq, sizeof *d->pos);
  d->runs = calloc((size_t)n_seq, sizeof *d->runs);
  d->busy = calloc((size_t)n_seq, 1);
  if (!d->kv || !d->pos || !d->runs || !d->busy) { lm_batch_decoder_free(d); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  d->rows = n_seq > CHUNK ? n_seq : CHUNK;
  d->logits = lm_alloc((size_t)n_seq * lm_model_config(m)->vocab_size * sizeof(float));
  if (!d->logits) { lm_batch_decoder_free(d); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  lm_status st = lm_fwd_init(&d->f, m, d->rows, max_len);
  for (int i = 0; i < n_seq && !st; i++) st = lm_kv_init(&d->kv[i], m, max_len);
  if (st) { lm_batch_decoder_free(d); return st; }
  *out = d;
  return LM_OK;
}

void lm_batch_decoder_free(lm_batch_decoder *d) {
  if (!d) return;
  for (int i = 0; d->kv && i < d->n_seq; i++) lm_kv_free(&d->kv[i]);
  lm_fwd_free(d->f);
  free(d->kv); free(d->pos); free(d->runs); free(d->busy); lm_free(d->logits);
  free(d);
}

int lm_batch_decoder_slots(const lm_batch_decoder *d) { return d->n_seq; }
void lm_batch_decoder_reset(lm_batch_decoder *d, int slot) { if (slot >= 0 && slot < d->n_seq) d->pos[slot] = 0; }
int64_t lm_batch_decoder_pos(const lm_batch_decoder *d, int slot) { return slot >= 0 && slot < d->n_seq ? d->pos[slot] : -1; }

/* slot exists, and n more tokens (ids inside the vocabulary) fit its cache */
static lm_status check(const lm_batch_decoder *d, int slot, const int32_t *ids, int64_t n) {
  int64_t V = lm_model_config(d->m)->vocab_size;
  if (slot < 0 || slot >= d->n_seq) return lm_error(LM_ERR_RANGE, "slot %d does not exist (the decoder has %d)", slot, d->n_seq);
  if (n <= 0) return lm_error(LM_ERR_ARG, "nothing to feed");
  if (d->pos[slot] + n > d->kv[slot].max_len)
    return lm_error(LM_ERR_RANGE, "%lld tokens exceed the context of %lld", (long long)(d->pos[slot] + n),
                    (long long)d->kv[slot].max_len);
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= V) return lm_error(LM_ERR_RANGE, "token id %d is outside the vocabulary (%lld)", ids[i], (long long)V);
  return LM_OK;
}

lm_status lm_batch_decoder_feed(lm_batch_decoder *d, int slot, const int32_t *ids, int64_t n, const float **logits) {
  lm_status st = check(d, slot, ids, n);
  if (st) return st;
  const float *lg = NULL;
  for (int64_t done = 0; done < n; done += CHUNK) {
    lm_kv_run run = {.kv = &d->kv[slot], .pos = d->pos[slot], .ids = ids + done, .n = n - done < CHUNK ? n - done : CHUNK};
    lg = lm_fwd_feed(d->f, &run, 1);
    d->pos[slot] += run.n;
  }
  *logits = lg;
  return LM_OK;
}

lm_status lm_batch_decoder_step(lm_batch_decoder *d, const int *slots, const int32_t *ids, int n, const float **logits) {
  if (n < 1 || n > d->n_seq) return lm_error(LM_ERR_ARG, "a step takes 1..%d slots (got %d)", d->n_seq, n);
  lm_status st = LM_OK;
  memset(d->busy, 0, (size_t)d->n_seq);
  for (int i = 0; i < n && !st; i++) {
    st = check(d, slots[i], ids + i, 1);
    if (!st && d->busy[slots[i]]++) st = lm_error(LM_ERR_ARG, "slot %d is listed twice in one step", slots[i]);
    if (!st) d->runs[i] = (lm_kv_run){.kv = &d->kv[slots[i]], .pos = d->pos[slots[i]], .ids = ids + i, .n = 1};
  }
  if (st) return st;
  *logits = lm_fwd_feed(d->f, d->runs, n);
  for (int i = 0; i < n; i++) d->pos[slots[i]]++;
  return LM_OK;
}

lm_status lm_batch_decoder_prefill(lm_batch_decoder *d, const int *slots, const int32_t *const *ids, const int64_t *len,
                                   int n, const float **logits) {
  if (n < 1 || n > d->n_seq) return lm_error(LM_ERR_ARG, "a prefill takes 1..%d prompts (got %d)", d->n_seq, n);
  lm_status st = LM_OK;
  memset(d->busy, 0, (size_t)d->n_seq);
  for (int i = 0; i < n && !st; i++) {
    st = check(d, slots[i], ids[i], len[i]);
    if (!st && d->busy[slots[i]]++) st = lm_error(LM_ERR_ARG, "slot %d is listed twice in one prefill", slots[i]);
  }
  if (st) return st;
  int64_t V = lm_model_config(d->m)->vocab_size;
  /* prompt i has fed done[i] tokens; each forward takes the next pieces, in order, up to the
   * scratch's rows; a prompt split across forwards has one piece in each, so no forward holds two
   * runs of one cache */
  int64_t *done = calloc((size_t)n, sizeof *done);
  int *who = malloc((size_t)n * sizeof *who);
  if (!done || !who) { free(done); free(who); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  for (int first = 0; first < n;) {
    int k = 0;
    int64_t rows = 0;
    for (int i = first; i < n && rows < d->rows; i++) {
      int64_t take = len[i] - done[i] < d->rows - rows ? len[i] - done[i] : d->rows - rows;
      d->runs[k] = (lm_kv_run){.kv = &d->kv[slots[i]], .pos = d->pos[slots[i]], .ids = ids[i] + done[i], .n = take};
      who[k++] = i;
      rows += take;
    }
    const float *lg = lm_fwd_feed(d->f, d->runs, k);
    for (int r = 0; r < k; r++) {
      int i = who[r];
      d->pos[slots[i]] += d->runs[r].n;
      done[i] += d->runs[r].n;
      if (done[i] == len[i]) memcpy(d->logits + (size_t)i * V, lg + (size_t)r * V, (size_t)V * sizeof(float));
    }
    while (first < n && done[first] == len[first]) first++;
  }
  free(done); free(who);
  *logits = d->logits;
  return LM_OK;
}
