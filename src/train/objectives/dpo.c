/* dpo.c — direct preference optimisation and its kin (TRL's DPOTrainer,
 * CPOTrainer with SimPO, ORPOTrainer): the policy is trained on preference
 * pairs through its own log-probabilities, with no reward model and no
 * sampling. posttrain.h gives the five losses.
 *
 * A micro-batch is B pairs laid out as 2B right-padded rows (chosen,
 * rejected, ...). One forward gives the logits (N,V); for each position whose
 * next token is a response token, log p = logit[y] - logsumexp(logits); a
 * sequence's log-prob s is their sum and n their count. The loss of a pair is
 * a function of (s_c, s_r) (or of a = s/n), and of the reference's (s_c, s_r)
 * cached before training (src/train/objectives/dpo.c lm_pref_logps), so the
 * reference model never sits in memory beside the policy. Its gradient
 * reaches the logits by the chain rule through every such position:
 *
 *   d loss / d logits[n, :] = (d loss / d s_row) * (onehot(y_n) - softmax(logits[n, :]))
 *
 * (ORPO adds its NLL term, -1/count at every next-token position of the chosen
 * rows), and goes into the model through lm_batch.dout. Sums are in double. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/heads.h"
#include "model/model.h"
#include "train/posttrain_shared.h"

static const char *const LOSS_NAMES[] = {"sigmoid", "ipo", "hinge", "simpo", "orpo"};

int lm_pref_loss_from_name(const char *name) {
  for (int i = 0; i < (int)(sizeof LOSS_NAMES / sizeof *LOSS_NAMES); i++)
    if (!strcmp(name, LOSS_NAMES[i])) return i;
  return -1;
}

const char *lm_pref_loss_name(int loss) {
  return loss >= 0 && loss < (int)(sizeof LOSS_NAMES / sizeof *LOSS_NAMES) ? LOSS_NAMES[loss] : "?";
}

int lm_pref_loss_uses_reference(int loss) { return loss == LM_PREF_SIGMOID || loss == LM_PREF_IPO || loss == LM_PREF_HINGE; }

/* ------------------------------------------------------------------ the losses of one pair */

static double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)); }
/* log(1 - e^x) for x < 0, accurate at both ends */
static double log1mexp(double x) { return x > -0.693147180559945 ? log(-expm1(x)) : log1p(-exp(x)); }

typedef struct {
  double loss;
  double gc, gr;        /* d loss / d s_c, d s_r (sums) */
  double rc, rr;        /* implicit rewards */
} pair_out;

/* s: log-prob sums, n: counts, ref: the reference's sums (ignored by simpo, orpo) */
static void pair_loss(int kind, double beta, double gamma, double sc, double sr, double nc, double nr, double refc,
                      double refr, pair_out *o) {
  double ac = sc / nc, ar = sr / nr;
  switch (kind) {
    case LM_PREF_SIGMOID: case LM_PREF_HINGE: {
      double z = beta * ((sc - sr) - (refc - refr)), dz;
      if (kind == LM_PREF_SIGMOID) { o->loss = lm_softplus(-z); dz = -sigmoid(-z); }
      else { o->loss = z < 1 ? 1 - z : 0; dz = z < 1 ? -1 : 0; }
      o->gc = beta * dz; o->gr = -beta * dz;
      o->rc = beta * (sc - refc); o->rr = beta * (sr - refr);
      break;
    }
    case LM_PREF_IPO: {
      double h = (ac - ar) - (refc / nc - refr / nr), u = h - 1.0 / (2.0 * beta);
      o->loss = u * u;
      o->gc = 2 * u / nc; o->gr = -2 * u / nr;
      o->rc = beta * (ac - refc / nc); o->rr = beta * (ar - refr / nr);
      break;
    }
    case LM_PREF_SIMPO: {
      double z = beta * (ac - ar) - gamma, dz = -sigmoid(-z);
      o->loss = lm_softplus(-z);
      o->gc = beta * dz / nc; o->gr = -beta * dz / nr;
      o->rc = beta * ac; o->rr = beta * ar;
      break;
    }
    default: {   /* orpo: -beta log sigmoid(log-odds); the NLL is added per batch */
      /* an average log-prob of exactly 0 (every token certain in float) has infinite odds: keep it finite */
      ac = ac < -1e-12 ? ac : -1e-12; ar = ar < -1e-12 ? ar : -1e-12;
      double lo = (ac - ar) - (log1mexp(ac) - log1mexp(ar)), dlo = -beta * sigmoid(-lo);
      o->loss = beta * lm_softplus(-lo);
      /* d lo / d a_c = 1 / (1 - e^a_c) = -1 / expm1(a_c); d lo / d a_r = 1 / expm1(a_r) */
      o->gc = dlo * (-1.0 / expm1(ac)) / nc; o->gr = dlo * (1.0 / expm1(ar)) / nr;
      o->rc = beta * ac; o->rr = beta * ar;
      break;
    }
  }
}

/* ------------------------------------------------------------------ batches */

typedef struct {
  int32_t *ids, *tgt, *nxt;   /* (2B,T): tokens; next token where it is a response token; next real token */
  uint8_t *mask;              /* (2B,T) */
  double *lp, *lse, *psum;    /* (2B*T) log p of the next token, logsumexp of the row, sum of exp(logit - max) */
  double *s, *n, *g;          /* (2B) response log-prob sums, counts, d loss / d s */
  float *dout;                /* (2B*T, V) training only */
  int64_t *pairs;             /* (B) */
} dpo_bufs;

static void bufs_free(dpo_bufs *b) {
  free(b->ids); free(b->tgt); free(b->nxt); free(b->mask); free(b->lp); free(b->lse); free(b->psum); free(b->s); free(b->n); free(b->g);
  lm_free(b->dout); free(b->pairs);
  memset(b, 0, sizeof *b);
}

static lm_status bufs_alloc(dpo_bufs *b, int64_t B, int64_t T, int64_t V, int train) {
  memset(b, 0, sizeof *b);
  size_t N = (size_t)(2 * B * T);
  b->ids = lm_xmalloc(N * sizeof *b->ids); b->tgt = lm_xmalloc(N * sizeof *b->tgt); b->nxt = lm_xmalloc(N * sizeof *b->nxt);
  b->mask = lm_xmalloc(N); b->lp = lm_xmalloc(N * sizeof *b->lp); b->lse = lm_xmalloc(N * sizeof *b->lse);
  b->psum = lm_xmalloc(N * sizeof *b->psum);
  b->s = lm_xmalloc((size_t)(2 * B) * sizeof *b->s); b->n = lm_xmalloc((size_t)(2 * B) * sizeof *b->n);
  b->g = lm_xmalloc((size_t)(2 * B) * sizeof *b->g);
  b->pairs = lm_xmalloc((size_t)B * sizeof *b->pairs);
  if (train) b->dout = lm_alloc(N * (size_t)V * sizeof *b->dout);
  if (!b->ids || !b->tgt || !b->nxt || !b->mask || !b->lp || !b->lse || !b->psum || !b->s || !b->n || !b->g || !b->pairs || (train && !b->dout)) {
    bufs_free(b);
    return lm_error(LM_ERR_NOMEM, "out of memory for the preference batches (%lld x %lld tokens)", (long long)(2 * B),
                    (long long)T);
  }
  return LM_OK;
}

/* pairs[0..nb) into 2nb rows right-padded to the longest; returns that length */
static int64_t fill_rows(const lm_pref_data *d, dpo_bufs *b, int64_t nb, int32_t pad) {
  int64_t Tb = lm_pref_rows_longest(d, b->pairs, nb);
  for (int64_t r = 0; r < 2 * nb; r++) {
    int64_t q = 2 * b->pairs[r / 2] + r % 2;
    lm_pref_put(d, q, Tb, pad, b->ids + r * Tb, b->mask + r * Tb, b->tgt + r * Tb);
    for (int64_t t = 0; t < Tb; t++)
      b->nxt[r * Tb + t] = t + 1 < Tb && b->mask[r * Tb + t + 1] ? b->ids[r * Tb + t + 1] : -1;
  }
  return Tb;
}

/* Forward of the 2nb rows; per-position log-probs where y (tgt, or nxt when all) is set; sequence
 * sums s and counts n over the response positions. With keep (N,V), the rows' exp(logit - max)
 * are kept there for the gradient (batch_loss), which then needs no second exp. Returns 0, or -1
 * when the forward refused the batch. */
static int batch_logps(lm_model *m, dpo_bufs *b, int64_t nb, int64_t Tb, int all, float *keep) {
  lm_batch bt = {.ids = b->ids, .B = 2 * nb, .T = Tb};
  lm_forward(m, &bt, NULL, NULL);
  if (!m->ok) return -1;
  const float *logits = lm_model_logits(m);
  const int32_t *y = all ? b->nxt : b->tgt;
  int64_t N = 2 * nb * Tb, V = m->cfg.vocab_size;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) {
    if (y[i] < 0) continue;
    const float *row = logits + i * V;
    float *e = keep ? keep + i * V : NULL;
    float mx = row[0];
    for (int64_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
    double sum = 0;
    if (e)
      for (int64_t v = 0; v < V; v++) { double x = exp((double)row[v] - mx); e[v] = (float)x; sum += x; }
    else
      for (int64_t v = 0; v < V; v++) sum += exp((double)row[v] - mx);
    b->lse[i] = mx + log(sum);
    b->lp[i] = (double)row[y[i]] - b->lse[i];
    b->psum[i] = sum;
  }
  for (int64_t r = 0; r < 2 * nb; r++) {
    double s = 0, n = 0;
    for (int64_t t = 0; t < Tb; t++)
      if (b->tgt[r * Tb + t] >= 0) { s += b->lp[r * Tb + t]; n += 1; }
    b->s[r] = s; b->n[r] = n;
  }
  return 0;
}

lm_status lm_pref_logps(lm_model *m, const lm_pref_data *d, int64_t B, int32_t pad, double *logps) {
  if (m->cfg.head != LM_HEAD_LM)
    return lm_error(LM_ERR_ARG, "response log-probabilities need an LM head; this model has a %s head", lm_head_name(m->cfg.head));
  if (B < 1) return lm_error(LM_ERR_ARG, "batch must be positive");
  if (d->n == 0) return LM_OK;
  dpo_bufs b;
  lm_status st = bufs_alloc(&b, B, d->longest, m->cfg.vocab_size, 0);
  if (!st) st = lm_model_reserve(m, 2 * B, d->longest, 0);
  for (int64_t i0 = 0; i0 < d->n && !st; i0 += B) {
    int64_t nb = d->n - i0 < B ? d->n - i0 : B;
    for (int64_t i = 0; i < nb; i++) b.pairs[i] = i0 + i;
    int64_t Tb = fill_rows(d, &b, nb, pad);
    if (batch_logps(m, &b, nb, Tb, 0, NULL)) { st = LM_ERR_ARG; break; }
    memcpy(logps + 2 * i0, b.s, (size_t)(2 * nb) * sizeof *logps);
  }
  bufs_free(&b);
  return st;
}

/* ------------------------------------------------------------------ the objective */

typedef struct {
  const lm_pref_data *train, *eval;
  const double *train_ref, *eval_ref;
  lm_dpo_opts o;
  lm_epochs order;
  lm_dpo_eval *last, stats;
  lm_dpo_eval acc;   /* sums over the training micro-batches since the last step_fields */
  dpo_bufs b;
} dpo_obj;

/* The loss of the nb pairs in b (after batch_logps); with dout, fills b->dout (N,V). Adds to st. */
static double batch_loss(dpo_obj *o, lm_model *m, const lm_pref_data *d, const double *ref, int64_t nb, int64_t Tb,
                         float *dout, lm_dpo_eval *st, double *nll_sum, double *nll_cnt) {
  dpo_bufs *b = &o->b;
  int orpo = o->o.loss == LM_PREF_ORPO;
  double total = 0, *g = b->g;
  for (int64_t i = 0; i < nb; i++) {
    int64_t p = b->pairs[i];
    pair_out po;
    pair_loss(o->o.loss, o->o.beta, o->o.gamma, b->s[2 * i], b->s[2 * i + 1], b->n[2 * i], b->n[2 * i + 1],
              ref ? ref[2 * p] : 0, ref ? ref[2 * p + 1] : 0, &po);
    total += po.loss;
    g[2 * i] = po.gc / (double)nb; g[2 * i + 1] = po.gr / (double)nb;
    if (st) {
      st->pairs++; st->loss += po.loss;
      st->chosen += po.rc; st->rejected += po.rr; st->margins += po.rc - po.rr; st->accuracies += po.rc > po.rr;
    }
  }
  double loss = total / (double)nb, wn = 0;
  if (orpo) {   /* NLL of the chosen rows: every next real token, prompt included (TRL's ORPO) */
    double sum = 0, cnt = 0;
    for (int64_t i = 0; i < nb; i++)
      for (int64_t t = 0; t < Tb; t++)
        if (b->nxt[2 * i * Tb + t] >= 0) { sum += b->lp[2 * i * Tb + t]; cnt += 1; }
    if (cnt > 0) { loss += -sum / cnt; wn = -1.0 / cnt; }
    if (nll_sum) { *nll_sum += -sum; *nll_cnt += cnt; }
  }
  if (dout) {
    int64_t N = 2 * nb * Tb, V = m->cfg.vocab_size;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
      int64_t r = i / Tb;
      double w = (b->tgt[i] >= 0 ? g[r] : 0) + (orpo && r % 2 == 0 && b->nxt[i] >= 0 ? wn : 0);
      float *dr = dout + i * V;   /* holds exp(logit - max) of the rows that got a log-prob */
      if (w == 0) { memset(dr, 0, (size_t)V * sizeof *dr); continue; }
      float scale = (float)(-w / b->psum[i]);   /* -w * softmax = -w * exp(logit - max) / sum */
      for (int64_t v = 0; v < V; v++) dr[v] *= scale;
      int32_t y = b->nxt[i];   /* the next token: equals tgt where that is set */
      dr[y] = (float)((double)dr[y] + w);
    }
  }
  return loss;
}

static float dpo_micro(void *self, lm_model *m) {
  dpo_obj *o = self;
  int64_t B = o->o.B;
  for (int64_t i = 0; i < B; i++) o->b.pairs[i] = lm_epochs_next(&o->order);
  int64_t Tb = fill_rows(o->train, &o->b, B, o->o.pad);
  if (batch_logps(m, &o->b, B, Tb, o->o.loss == LM_PREF_ORPO, o->b.dout)) return NAN;
  double loss = batch_loss(o, m, o->train, o->train_ref, B, Tb, o->b.dout, &o->acc, NULL, NULL);
  lm_batch bt = {.ids = o->b.ids, .B = 2 * B, .T = Tb, .dout = o->b.dout};
  lm_backward(m, &bt);
  return (float)loss;
}

static double dpo_evaluate(void *self, lm_model *m, int64_t max_batches) {
  dpo_obj *o = self;
  const lm_pref_data *d = o->eval;
  if (!d || d->n == 0) return NAN;
  lm_dpo_eval st = {0};
  double nll_sum = 0, nll_cnt = 0;
  int64_t batches = 0;
  for (int64_t i0 = 0; i0 < d->n && (max_batches <= 0 || batches < max_batches); i0 += o->o.B, batches++) {
    int64_t nb = d->n - i0 < o->o.B ? d->n - i0 : o->o.B;
    for (int64_t i = 0; i < nb; i++) o->b.pairs[i] = i0 + i;
    int64_t Tb = fill_rows(d, &o->b, nb, o->o.pad);
    if (batch_logps(m, &o->b, nb, Tb, o->o.loss == LM_PREF_ORPO, NULL)) return NAN;
    batch_loss(o, m, d, o->eval_ref, nb, Tb, NULL, &st, &nll_sum, &nll_cnt);
  }
  if (!st.pairs) return NAN;
  double n = (double)st.pairs;
  st.loss = st.loss / n + (nll_cnt > 0 ? nll_sum / nll_cnt : 0);
  st.chosen /= n; st.rejected /= n; st.margins /= n; st.accuracies /= n;
  o->stats = st;
  if (o->last) *o->last = st;
  return st.loss;
}

static int dpo_eval_fields(void *self, char *buf, size_t n) {
  dpo_obj *o = self;
  if (!o->stats.pairs) return 0;
  int k = snprintf(buf, n, "\"val_rewards/chosen\": %.6g, \"val_rewards/rejected\": %.6g, \"val_rewards/margins\": %.6g, "
                   "\"val_rewards/accuracies\": %.6f", o->stats.chosen, o->stats.rejected, o->stats.margins,
                   o->stats.accuracies);
  return k > 0 && (size_t)k < n ? k : 0;
}

/* TRL's training metrics, over the micro-batches since the last call */
static int dpo_step_fields(void *self, char *buf, size_t n) {
  dpo_obj *o = self;
  lm_dpo_eval a = o->acc;
  memset(&o->acc, 0, sizeof o->acc);
  if (!a.pairs) return 0;
  double k = (double)a.pairs;
  int w = snprintf(buf, n, "\"rewards/chosen\": %.6g, \"rewards/rejected\": %.6g, \"rewards/margins\": %.6g, "
                   "\"rewards/accuracies\": %.6f", a.chosen / k, a.rejected / k, a.margins / k, a.accuracies / k);
  return w > 0 && (size_t)w < n ? w : 0;
}

static void dpo_cursor(void *self, int64_t *epoch, int64_t *index) {
  dpo_obj *o = self;
  *epoch = o->order.epoch; *index = o->order.index;
}

static void dpo_free(void *self) {
  dpo_obj *o = self;
  lm_epochs_free(&o->order);
  bufs_free(&o->b);
  free(o);
}

lm_status lm_objective_dpo(lm_objective *obj, lm_model *m, const lm_pref_data *train, const double *train_ref,
                           const lm_pref_data *eval, const double *eval_ref, const lm_dpo_opts *po,
                           const int64_t *cursor, lm_dpo_eval *last) {
  memset(obj, 0, sizeof *obj);
  if (m->cfg.head != LM_HEAD_LM || !m->cfg.causal)
    return lm_error(LM_ERR_ARG, "preference optimisation needs a causal decoder with an LM head; this is a %s model with "
                    "a %s head", lm_arch_name(m->cfg.arch), lm_head_name(m->cfg.head));
  int64_t B = po->B, T = po->T;
  if (B < 1 || T < 2) return lm_error(LM_ERR_ARG, "batch must be positive and max length at least 2");
  if (po->loss < 0 || po->loss > LM_PREF_ORPO) return lm_error(LM_ERR_ARG, "unknown preference loss %d", po->loss);
  if (!(po->beta > 0)) return lm_error(LM_ERR_ARG, "beta must be positive (got %g)", (double)po->beta);
  m->dropout_off = 1;   /* as TRL's disable_dropout: the policy and its reference compare like for like */
  lm_status st = lm_pref_check_length(m, train, eval, T);
  if (st) return st;
  if (lm_pref_loss_uses_reference(po->loss) && (!train_ref || (eval && eval->n && !eval_ref)))
    return lm_error(LM_ERR_ARG, "the %s loss needs the reference model's log-probabilities", lm_pref_loss_name(po->loss));
  dpo_obj *o = calloc(1, sizeof *o);
  if (!o) return lm_error(LM_ERR_NOMEM, "out of memory");
  o->train = train; o->eval = eval; o->o = *po; o->last = last;
  int ref = lm_pref_loss_uses_reference(po->loss);
  o->train_ref = ref ? train_ref : NULL; o->eval_ref = ref ? eval_ref : NULL;
  st = bufs_alloc(&o->b, B, T, m->cfg.vocab_size, 1);
  if (st) { free(o); return st; }
  st = lm_epochs_init(&o->order, train->n, po->seed, 0xd90ULL, cursor);
  if (!st) st = lm_model_reserve(m, 2 * B, T, 1);
  if (st) { dpo_free(o); return st; }
  *obj = (lm_objective){.self = o, .micro = dpo_micro, .evaluate = dpo_evaluate, .cursor = dpo_cursor, .free = dpo_free,
                        .eval_fields = dpo_eval_fields, .step_fields = dpo_step_fields};
  return LM_OK;
}
