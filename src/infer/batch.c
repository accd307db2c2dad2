/* batch.c — the many-sequence decoder (batch.h).
 *
 * Each slot is an lm_session (its own KV cache); a step feeds each listed slot its token and
 * gathers the logits into one (n, V) array. */
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/model.h"
#include "infer/infer.h"
#include "infer/batch.h"

struct lm_batch_decoder {
  const lm_model *m;
  int n_seq;
  lm_session **s;
  float *logits;   /* (n_seq, V) */
};

lm_status lm_batch_decoder_init(lm_batch_decoder **out, const lm_model *m, int n_seq, int64_t max_len) {
  *out = NULL;
  if (n_seq < 1) return lm_error(LM_ERR_ARG, "a batch decoder needs at least one slot");
  lm_batch_decoder *d = calloc(1, sizeof *d);
  if (!d) return lm_error(LM_ERR_NOMEM, "out of memory");
  d->m = m; d->n_seq = n_seq;
  d->s = calloc((size_t)n_seq, sizeof *d->s);
  d->logits = lm_alloc((size_t)n_seq * lm_model_config(m)->vocab_size * sizeof(float));
  if (!d->s || !d->logits) { lm_batch_decoder_free(d); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  for (int i = 0; i < n_seq; i++) {
    lm_status st = lm_session_init(&d->s[i], m, max_len);
    if (st) { lm_batch_decoder_free(d); return st; }
  }
  *out = d;
  return LM_OK;
}

void lm_batch_decoder_free(lm_batch_decoder *d) {
  if (!d) return;
  for (int i = 0; d->s && i < d->n_seq; i++) lm_session_free(d->s[i]);
  free(d->s);
  lm_free(d->logits);
  free(d);
}

int lm_batch_decoder_slots(const lm_batch_decoder *d) { return d->n_seq; }
void lm_batch_decoder_reset(lm_batch_decoder *d, int slot) { lm_session_reset(d->s[slot]); }
int64_t lm_batch_decoder_pos(const lm_batch_decoder *d, int slot) { return lm_session_pos(d->s[slot]); }

static lm_status check_slot(const lm_batch_decoder *d, int slot) {
  if (slot < 0 || slot >= d->n_seq)
    return lm_error(LM_ERR_RANGE, "slot %d does not exist (the decoder has %d)", slot, d->n_seq);
  return LM_OK;
}

lm_status lm_batch_decoder_feed(lm_batch_decoder *d, int slot, const int32_t *ids, int64_t n, const float **logits) {
  lm_status st = check_slot(d, slot);
  return st ? st : lm_session_feed(d->s[slot], ids, n, logits);
}

lm_status lm_batch_decoder_step(lm_batch_decoder *d, const int *slots, const int32_t *ids, int n, const float **logits) {
  int64_t V = lm_model_config(d->m)->vocab_size;
  if (n < 1 || n > d->n_seq) return lm_error(LM_ERR_ARG, "a step takes 1..%d slots (got %d)", d->n_seq, n);
  for (int i = 0; i < n; i++) {
    const float *l;
    lm_status st = check_slot(d, slots[i]);
    if (!st) st = lm_session_feed(d->s[slots[i]], ids + i, 1, &l);
    if (st) return st;
    memcpy(d->logits + (size_t)i * V, l, (size_t)V * sizeof(float));
  }
  *logits = d->logits;
  return LM_OK;
}
