/* reward.c — the reward model (InstructGPT's RM; TRL's RewardTrainer): a
 * model with the scalar head gives each sequence one number, read at its
 * last real token, and learns from preference pairs with the Bradley–Terry
 * loss
 *
 *   L = mean_i -log sigmoid(r_c,i - r_r,i - margin_i) + center * mean_i (r_c,i + r_r,i)^2
 *
 * where the optional margin comes from the data and `center` is TRL's
 * center_rewards_coefficient (it keeps rewards near zero mean, since the
 * Bradley–Terry loss only sees differences). A micro-batch is B pairs laid
 * out as 2B right-padded rows, chosen then rejected, with the key padding
 * mask telling the head where each sequence ends. The gradient of L with
 * respect to the 2B rewards goes to the model through lm_batch.dout:
 *
 *   dL/dr_c,i = (-sigmoid(-z_i) + 2 center (r_c,i + r_r,i)) / B,   z_i = r_c,i - r_r,i - margin_i
 *   dL/dr_r,i = ( sigmoid(-z_i) + 2 center (r_c,i + r_r,i)) / B */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/heads.h"
#include "model/model.h"
#include "train/posttrain_shared.h"

typedef struct {
  const lm_pref_data *train, *eval;
  lm_reward_opts o;
  lm_epochs order;
  lm_reward_eval *last, stats;
  lm_reward_eval acc;   /* sums over the training micro-batches since the last step_fields */
  int32_t *ids;     /* (2B,T) */
  uint8_t *mask;    /* (2B,T) */
  float *dout;      /* (2B) */
  int64_t *pairs;   /* (B) */
} reward_obj;

/* pairs[0..nb) into 2nb rows (chosen, rejected, ...) right-padded to the longest; returns that length */
static int64_t fill_rows(const lm_pref_data *d, const int64_t *pairs, int64_t nb, int32_t pad, int32_t *ids, uint8_t *mask) {
  int64_t Tb = lm_pref_rows_longest(d, pairs, nb);
  for (int64_t b = 0; b < nb; b++)
    for (int s = 0; s < 2; s++)
      lm_pref_put(d, 2 * pairs[b] + s, Tb, pad, ids + (2 * b + s) * Tb, mask + (2 * b + s) * Tb, NULL);
  return Tb;
}

/* The loss of nb pairs from their rewards r (2nb); dout (2nb) gets dL/dr when non-NULL. Adds the
 * pairs' figures to st (sums). */
static double pair_loss(const float *r, const lm_pref_data *d, const int64_t *pairs, int64_t nb, double center,
                        float *dout, lm_reward_eval *st) {
  double bt = 0, cen = 0;
  for (int64_t i = 0; i < nb; i++) {
    double rc = r[2 * i], rr = r[2 * i + 1], z = rc - rr - d->margin[pairs[i]], s = rc + rr;
    double l = lm_softplus(-z), dz = -1.0 / (1.0 + exp(z));   /* d lm_softplus(-z)/dz = -sigmoid(-z) */
    bt += l; cen += s * s;
    if (dout) {
      dout[2 * i] = (float)((dz + 2.0 * center * s) / (double)nb);
      dout[2 * i + 1] = (float)((-dz + 2.0 * center * s) / (double)nb);
    }
    if (st) {
      st->pairs++;
      st->loss += l + center * s * s;
      st->accuracy += rc > rr;
      st->margin += rc - rr;
      st->chosen += rc; st->rejected += rr;
    }
  }
  return bt / (double)nb + center * cen / (double)nb;
}

static float reward_micro(void *self, lm_model *m) {
  reward_obj *o = self;
  int64_t B = o->o.B;
  for (int64_t b = 0; b < B; b++) o->pairs[b] = lm_epochs_next(&o->order);
  int64_t Tb = fill_rows(o->train, o->pairs, B, o->o.pad, o->ids, o->mask);
  lm_batch b = {.ids = o->ids, .mask = o->mask, .B = 2 * B, .T = Tb};
  lm_forward(m, &b, NULL, NULL);
  if (!m->ok) return NAN;
  double loss = pair_loss(lm_model_logits(m), o->train, o->pairs, B, o->o.center, o->dout, &o->acc);
  b.dout = o->dout;
  lm_backward(m, &b);
  return (float)loss;
}

static double reward_evaluate(void *self, lm_model *m, int64_t max_batches) {
  reward_obj *o = self;
  const lm_pref_data *d = o->eval;
  if (!d || d->n == 0) return NAN;
  lm_reward_eval st = {0};
  int64_t batches = 0;
  for (int64_t i0 = 0; i0 < d->n && (max_batches <= 0 || batches < max_batches); i0 += o->o.B, batches++) {
    int64_t nb = d->n - i0 < o->o.B ? d->n - i0 : o->o.B;
    for (int64_t b = 0; b < nb; b++) o->pairs[b] = i0 + b;
    int64_t Tb = fill_rows(d, o->pairs, nb, o->o.pad, o->ids, o->mask);
    lm_batch b = {.ids = o->ids, .mask = o->mask, .B = 2 * nb, .T = Tb};
    lm_forward(m, &b, NULL, NULL);
    if (!m->ok) return NAN;
    pair_loss(lm_model_logits(m), d, o->pairs, nb, o->o.center, NULL, &st);
  }
  if (!st.pairs) return NAN;
  double n = (double)st.pairs;
  st.loss /= n; st.accuracy /= n; st.margin /= n; st.chosen /= n; st.rejected /= n;
  o->stats = st;
  if (o->last) *o->last = st;
  return st.loss;
}

static int reward_eval_fields(void *self, char *buf, size_t n) {
  reward_obj *o = self;
  if (!o->stats.pairs) return 0;
  int k = snprintf(buf, n, "\"val_accuracy\": %.6f, \"val_margin\": %.6g, \"val_reward_chosen\": %.6g, "
                   "\"val_reward_rejected\": %.6g", o->stats.accuracy, o->stats.margin, o->stats.chosen, o->stats.rejected);
  return k > 0 && (size_t)k < n ? k : 0;
}

/* pair accuracy and margin over the training micro-batches since the last call */
static int reward_step_fields(void *self, char *buf, size_t n) {
  reward_obj *o = self;
  lm_reward_eval a = o->acc;
  memset(&o->acc, 0, sizeof o->acc);
  if (!a.pairs) return 0;
  int k = snprintf(buf, n, "\"accuracy\": %.6f, \"margin\": %.6g", a.accuracy / (double)a.pairs, a.margin / (double)a.pairs);
  return k > 0 && (size_t)k < n ? k : 0;
}

static void reward_cursor(void *self, int64_t *epoch, int64_t *index) {
  reward_obj *o = self;
  *epoch = o->order.epoch; *index = o->order.index;
}

static void reward_free(void *self) {
  reward_obj *o = self;
  lm_epochs_free(&o->order);
  free(o->ids); free(o->mask); free(o->dout); free(o->pairs);
  free(o);
}

lm_status lm_objective_reward(lm_objective *obj, lm_model *m, const lm_pref_data *train, const lm_pref_data *eval,
                              const lm_reward_opts *ro, const int64_t *cursor, lm_reward_eval *last) {
  memset(obj, 0, sizeof *obj);
  if (m->cfg.head != LM_HEAD_SCALAR)
    return lm_error(LM_ERR_ARG, "a reward model needs the scalar head; this model has a %s head", lm_head_name(m->cfg.head));
  int64_t B = ro->B, T = ro->T;
  if (B < 1 || T < 2) return lm_error(LM_ERR_ARG, "batch must be positive and max length at least 2");
  m->dropout_off = 1;   /* as TRL's RewardTrainer (disable_dropout): both answers of a pair scored alike */
  lm_status st = lm_pref_check_length(m, train, eval, T);
  if (st) return st;
  if (!(ro->center >= 0)) return lm_error(LM_ERR_ARG, "the reward centering coefficient must be >= 0");
  reward_obj *o = calloc(1, sizeof *o);
  if (!o) return lm_error(LM_ERR_NOMEM, "out of memory");
  o->train = train; o->eval = eval; o->o = *ro; o->last = last;
  o->ids = lm_xmalloc((size_t)(2 * B * T) * sizeof *o->ids);
  o->mask = lm_xmalloc((size_t)(2 * B * T));
  o->dout = lm_xmalloc((size_t)(2 * B) * sizeof *o->dout);
  o->pairs = lm_xmalloc((size_t)B * sizeof *o->pairs);
  st = (!o->ids || !o->mask || !o->dout || !o->pairs) ? LM_ERR_NOMEM : LM_OK;
  if (!st) st = lm_epochs_init(&o->order, train->n, ro->seed, 0x7e3aULL, cursor);
  if (!st) st = lm_model_reserve(m, 2 * B, T, 1);
  if (st) { reward_free(o); return st; }
  *obj = (lm_objective){.self = o, .micro = reward_micro, .evaluate = reward_evaluate, .cursor = reward_cursor,
                        .free = reward_free, .eval_fields = reward_eval_fields, .step_fields = reward_step_fields};
  return LM_OK;
}

lm_status lm_reward_score(lm_model *m, const int32_t *ids, const uint8_t *mask, int64_t B, int64_t T, float *out) {
  if (m->cfg.head != LM_HEAD_SCALAR)
    return lm_error(LM_ERR_ARG, "scoring needs a reward model (the scalar head); this model has a %s head",
                    lm_head_name(m->cfg.head));
  lm_batch b = {.ids = ids, .mask = mask, .B = B, .T = T};
  lm_forward(m, &b, NULL, NULL);
  if (!m->ok) return LM_ERR_ARG;   /* lm_forward set the error */
  memcpy(out, lm_model_logits(m), (size_t)B * sizeof *out);
  return LM_OK;
}
