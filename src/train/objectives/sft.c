/* sft.c — supervised fine-tuning on conversations (instruction tuning, as
 * InstructGPT and TRL's SFTTrainer do): next-token cross-entropy on the
 * assistant's tokens only, end-of-turn token included.
 *
 * Without packing a micro-batch is B examples, each in its own row, right-
 * padded to the longest (T at most); padding is never attended to by a real
 * token (causal) and has no target. With packing, examples are laid one after
 * another into B rows of T tokens; an example that does not fit the rest of a
 * row starts the next one, and `starts` tells the model where each example
 * begins, so positions restart and attention stays inside it. The example
 * left over when a batch is full is the first of the next batch: the
 * checkpointed cursor is the order's position before it, so resume is exact. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/heads.h"
#include "model/model.h"
#include "train/posttrain_shared.h"

/* ------------------------------------------------------------------ data */

void lm_sft_data_free(lm_sft_data *d) {
  free(d->ids); free(d->mask); free(d->off);
  memset(d, 0, sizeof *d);
}

lm_status lm_sft_encode(lm_sft_data *d, const lm_chat_set *set, const lm_chat_config *cc, const lm_tokenizer *tok,
                        int64_t max_length, const char *name) {
  memset(d, 0, sizeof *d);
  d->off = lm_xmalloc((size_t)(set->n + 1) * sizeof *d->off);
  if (!d->off) return LM_ERR_NOMEM;
  d->off[0] = 0;
  size_t used = 0, cap = 0;
  lm_status st = LM_OK;
  for (int64_t i = 0; i < set->n && !st; i++) {
    uint32_t *ids; uint8_t *mask; size_t k;
    if ((st = lm_chat_encode(cc, tok, set->conv[i], 0, &ids, &mask, &k))) {
      lm_error_prefix(st, "%s:%lld", name, (long long)set->line[i]);
      break;
    }
    int any = 0;
    for (size_t j = 1; j < k; j++) any |= mask[j];   /* a target needs a token before it */
    if ((int64_t)k > max_length || !any) {
      if (!any) d->no_loss++; else d->too_long++;
      free(ids); free(mask);
      continue;
    }
    if (used + k > cap) {
      size_t nc = cap ? cap : 4096;
      while (nc < used + k) nc *= 2;
      uint32_t *i2 = lm_xrealloc(d->ids, nc * sizeof *i2);
      if (i2) d->ids = i2;
      uint8_t *m2 = i2 ? lm_xrealloc(d->mask, nc) : NULL;
      if (m2) d->mask = m2;
      if (!i2 || !m2) { free(ids); free(mask); st = LM_ERR_NOMEM; break; }
      cap = nc;
    }
    memcpy(d->ids + used, ids, k * sizeof *ids);
    memcpy(d->mask + used, mask, k);
    free(ids); free(mask);
    used += k;
    d->off[++d->n] = (int64_t)used;
    if ((int64_t)k > d->longest) d->longest = (int64_t)k;
  }
  if (!st && d->n == 0)
    st = lm_error(LM_ERR_ARG, "%s: no conversation fits --max-length %lld (%lld longer)", name, (long long)max_length,
                  (long long)d->too_long);
  if (st) { int64_t tl = d->too_long; lm_sft_data_free(d); d->too_long = tl; }
  return st;
}

lm_status lm_sft_split(lm_sft_data *d, float fraction, uint64_t seed, lm_sft_data *held) {
  memset(held, 0, sizeof *held);
  int64_t nh = (int64_t)(fraction * (double)d->n + 0.5);
  if (fraction <= 0 || nh < 1) return LM_OK;
  if (nh >= d->n) return lm_error(LM_ERR_ARG, "a held-out share of %g leaves no training examples (%lld in all)",
                                  (double)fraction, (long long)d->n);
  uint8_t *is_held = lm_held_out(d->n, nh, seed ^ 0x5f7dULL);
  if (!is_held) return LM_ERR_NOMEM;
  lm_sft_data parts[2] = {{0}, {0}};   /* 0: kept, 1: held out */
  lm_status st = LM_OK;
  for (int p = 0; p < 2 && !st; p++) {
    lm_sft_data *o = &parts[p];
    size_t total = 0;
    for (int64_t i = 0; i < d->n; i++) if (is_held[i] == p) total += (size_t)(d->off[i + 1] - d->off[i]);
    o->ids = lm_xmalloc((total ? total : 1) * sizeof *o->ids);
    o->mask = lm_xmalloc(total ? total : 1);
    o->off = lm_xmalloc((size_t)(d->n + 1) * sizeof *o->off);
    if (!o->ids || !o->mask || !o->off) { st = LM_ERR_NOMEM; break; }
    o->off[0] = 0;
    for (int64_t i = 0; i < d->n; i++) {
      if (is_held[i] != p) continue;
      int64_t k = d->off[i + 1] - d->off[i], at = o->off[o->n];
      memcpy(o->ids + at, d->ids + d->off[i], (size_t)k * sizeof *o->ids);
      memcpy(o->mask + at, d->mask + d->off[i], (size_t)k);
      o->off[++o->n] = at + k;
      if (k > o->longest) o->longest = k;
    }
  }
  free(is_held);
  if (st) { lm_sft_data_free(&parts[0]); lm_sft_data_free(&parts[1]); return st; }
  parts[0].too_long = d->too_long; parts[0].no_loss = d->no_loss;
  lm_sft_data_free(d);
  *d = parts[0];
  *held = parts[1];
  return LM_OK;
}

/* ------------------------------------------------------------------ batches */

/* Writes example i at row position [t0, t0+k) of a row; targets as described in posttrain.h. */
static void put_example(const lm_sft_data *d, int64_t i, int32_t *ids, int32_t *tgt, int32_t *starts, int64_t t0) {
  int64_t a = d->off[i], k = d->off[i + 1] - a;
  for (int64_t t = 0; t < k; t++) {
    ids[t0 + t] = (int32_t)d->ids[a + t];
    tgt[t0 + t] = t + 1 < k && d->mask[a + t + 1] ? (int32_t)d->ids[a + t + 1] : -1;
    if (starts) starts[t0 + t] = (int32_t)t0;
  }
}

/* fills positions [t, T) of a row with padding */
static void pad_row(int32_t *ids, int32_t *tgt, int32_t *starts, int64_t t, int64_t T, int32_t pad) {
  for (; t < T; t++) {
    ids[t] = pad; tgt[t] = -1;
    if (starts) starts[t] = (int32_t)t;   /* padding: each token its own "example" */
  }
}

void lm_sft_layout_begin(lm_sft_layout *l) { l->n = l->row = l->col = l->longest = 0; }

int lm_sft_layout_add(lm_sft_layout *l, int64_t i) {
  int64_t k = l->d->off[i + 1] - l->d->off[i], T = l->T;
  if (k > T) return 0;
  if (!l->packing) {   /* row n at stride T for now; lm_sft_layout_end packs the rows to the longest */
    if (l->n == l->B) return 0;
    put_example(l->d, i, l->ids + l->n * T, l->targets + l->n * T, NULL, 0);
    pad_row(l->ids + l->n * T, l->targets + l->n * T, NULL, k, T, l->pad);
    if (k > l->longest) l->longest = k;
    l->n++;
    return 1;
  }
  if (l->col + k > T) {   /* does not fit the rest of this row: pad it, go on in the next */
    if (l->row + 1 >= l->B) return 0;
    pad_row(l->ids + l->row * T, l->targets + l->row * T, l->starts + l->row * T, l->col, T, l->pad);
    l->row++; l->col = 0;
  }
  put_example(l->d, i, l->ids + l->row * T, l->targets + l->row * T, l->starts + l->row * T, l->col);
  l->col += k; l->n++;
  return 1;
}

int64_t lm_sft_layout_end(lm_sft_layout *l) {
  int64_t B = l->B, T = l->T;
  if (l->packing) {
    for (int64_t r = l->row; r < B; r++)
      pad_row(l->ids + r * T, l->targets + r * T, l->starts + r * T, r == l->row ? l->col : 0, T, l->pad);
    return T;
  }
  int64_t Tb = l->longest > 0 ? l->longest : 1;
  /* row r moves from r*T to r*Tb <= r*T: in increasing r nothing is overwritten before it is moved */
  for (int64_t r = 1; r < l->n; r++) {
    memmove(l->ids + r * Tb, l->ids + r * T, (size_t)Tb * sizeof *l->ids);
    memmove(l->targets + r * Tb, l->targets + r * T, (size_t)Tb * sizeof *l->targets);
  }
  for (int64_t r = l->n; r < B; r++) pad_row(l->ids + r * Tb, l->targets + r * Tb, NULL, 0, Tb, l->pad);
  return Tb;
}

typedef struct {
  const lm_sft_data *train, *eval;
  int64_t B, T;
  int packing;
  float neftune;
  int32_t pad;
  lm_epochs order;
  int64_t pending;                 /* an example drawn but not yet placed (packing), or -1 */
  int64_t cur_epoch, cur_index;    /* the order's position before `pending` was drawn */
  lm_rng *rng;
  int32_t *ids, *tgt, *starts;     /* (B,T) */
} sft_obj;

static int64_t next_example(sft_obj *o) {
  if (o->pending >= 0) { int64_t i = o->pending; o->pending = -1; return i; }
  o->cur_epoch = o->order.epoch; o->cur_index = o->order.index;
  return lm_epochs_next(&o->order);
}

/* one training micro-batch into o->ids/tgt/starts; returns its T */
static int64_t fill_train(sft_obj *o) {
  lm_sft_layout l = {.d = o->train, .B = o->B, .T = o->T, .packing = o->packing, .pad = o->pad, .ids = o->ids,
                     .targets = o->tgt, .starts = o->starts};
  lm_sft_layout_begin(&l);
  while (o->packing || l.n < o->B) {   /* packed, until an example does not fit: it begins the next batch */
    int64_t i = next_example(o);
    if (!lm_sft_layout_add(&l, i)) { o->pending = i; break; }
  }
  if (o->pending < 0) { o->cur_epoch = o->order.epoch; o->cur_index = o->order.index; }
  return lm_sft_layout_end(&l);
}

static float sft_micro(void *self, lm_model *m) {
  sft_obj *o = self;
  int64_t T = fill_train(o);
  lm_batch b = {.ids = o->ids, .targets = o->tgt, .starts = o->packing ? o->starts : NULL, .B = o->B, .T = T,
                .neftune_alpha = o->neftune, .noise_rng = o->rng};
  float loss = lm_forward(m, &b, NULL, NULL);
  lm_backward(m, &b);
  return loss;
}

/* mean loss over every assistant token of eval, one example per row */
static double sft_evaluate(void *self, lm_model *m, int64_t max_batches) {
  sft_obj *o = self;
  const lm_sft_data *d = o->eval;
  if (!d || d->n == 0) return NAN;
  double sum = 0; int64_t count = 0, batches = 0;
  for (int64_t i0 = 0; i0 < d->n && (max_batches <= 0 || batches < max_batches); i0 += o->B, batches++) {
    int64_t nb = d->n - i0 < o->B ? d->n - i0 : o->B, n_tgt = 0;
    lm_sft_layout l = {.d = d, .B = nb, .T = o->T, .pad = o->pad, .ids = o->ids, .targets = o->tgt};
    lm_sft_layout_begin(&l);
    for (int64_t b = 0; b < nb; b++) lm_sft_layout_add(&l, i0 + b);
    int64_t Tb = lm_sft_layout_end(&l);
    for (int64_t j = 0; j < nb * Tb; j++) n_tgt += o->tgt[j] >= 0;
    float loss = lm_model_forward(m, o->ids, o->tgt, NULL, nb, Tb);
    if (n_tgt && isfinite(loss)) { sum += (double)loss * n_tgt; count += n_tgt; }
  }
  return count ? sum / count : NAN;
}

static void sft_cursor(void *self, int64_t *epoch, int64_t *index) {
  sft_obj *o = self;
  *epoch = o->cur_epoch; *index = o->cur_index;
}

static void sft_free(void *self) {
  sft_obj *o = self;
  lm_epochs_free(&o->order);
  free(o->ids); free(o->tgt); free(o->starts);
  free(o);
}

lm_status lm_objective_sft(lm_objective *obj, lm_model *m, const lm_sft_data *train, const lm_sft_data *eval,
                           int64_t B, int64_t T, int packing, float neftune_alpha, int32_t pad, uint64_t seed,
                           lm_rng *rng, const int64_t *cursor) {
  memset(obj, 0, sizeof *obj);
  if (m->cfg.head != LM_HEAD_LM || !m->cfg.causal)
    return lm_error(LM_ERR_ARG, "instruction tuning needs a causal decoder with an LM head; this is a %s model with a %s head",
                    lm_arch_name(m->cfg.arch), lm_head_name(m->cfg.head));
  if (B < 1 || T < 2) return lm_error(LM_ERR_ARG, "batch must be positive and max length at least 2");
  if (train->longest > T || (eval && eval->longest > T))
    return lm_error(LM_ERR_ARG, "an example of %lld tokens is longer than the maximum length %lld",
                    (long long)(train->longest > T ? train->longest : eval->longest), (long long)T);
  sft_obj *o = calloc(1, sizeof *o);
  if (!o) return lm_error(LM_ERR_NOMEM, "out of memory");
  o->train = train; o->eval = eval; o->B = B; o->T = T; o->packing = packing; o->neftune = neftune_alpha;
  o->pad = pad; o->pending = -1; o->rng = rng;
  o->ids = lm_xmalloc((size_t)(B * T) * sizeof *o->ids);
  o->tgt = lm_xmalloc((size_t)(B * T) * sizeof *o->tgt);
  o->starts = lm_xmalloc((size_t)(B * T) * sizeof *o->starts);
  lm_status st = (!o->ids || !o->tgt || !o->starts) ? LM_ERR_NOMEM : LM_OK;
  if (!st) st = lm_epochs_init(&o->order, train->n, seed, 0x5f7ULL, cursor);
  if (!st) { o->cur_epoch = o->order.epoch; o->cur_index = o->order.index; }
  if (!st) st = lm_model_reserve(m, B, T, 1);
  if (st) { sft_free(o); return st; }
  *obj = (lm_objective){.self = o, .micro = sft_micro, .evaluate = sft_evaluate, .cursor = sft_cursor, .free = sft_free};
  return LM_OK;
}
