/* heads.c — every task head (see heads.h for the equations), on top of the
 * hidden states (N,C) of any family.
 *
 * A head adds its tensors to the parameter table (lm_head_add_params), keeps
 * its activations in one arena of its own (head_state, hung on
 * m->head_state), and runs forward (hidden -> logits -> loss) and backward
 * (loss or the caller's d(output) -> d hidden). The MLM head runs only over
 * the rows that carry a label (about 15% of them), gathered into contiguous
 * (M,C) buffers, which saves most of the (N,C)x(C,V) decoder product.
 *
 * Distillation (lm_batch.mlm_soft_targets): the MLM rows also get a
 * soft-target term alpha_ce * tau^2 * KL(p || softmax(z/tau)), mean over the
 * M rows, beside alpha_mlm * the hard cross-entropy. Its gradient is
 *   dL/dz = alpha_ce * tau / M * (softmax(z/tau) * sum(p) - p)
 *         + alpha_mlm * (softmax(z) - onehot(label)) / n_labels,
 * written in place over the logits (distill_backward) like the plain CE's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/mm.h"
#include "model/heads.h"

/* ------------------------------------------------------------------ names */

static const char *const head_names[LM_HEAD_COUNT] = {"pretrain", "classify", "tokens", "qa", "lm", "mlm", "scalar"};

const char *lm_head_name(int head) { return head >= 0 && head < LM_HEAD_COUNT ? head_names[head] : "unknown"; }

int lm_head_from_name(const char *name) {
  for (int i = 0; i < LM_HEAD_COUNT; i++)
    if (!strcmp(name, head_names[i])) return i;
  return -1;
}

int lm_head_is_sequence(int head) { return head == LM_HEAD_CLASSIFY || head == LM_HEAD_SCALAR; }

static int has_prefix(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

int lm_head_is_tensor(const char *name) {
  static const char *const own[] = {"pooler.", "mlm.", "nsp.", "classifier.", "token_classifier.", "qa_outputs.",
                                    "lm_head."};
  for (size_t i = 0; i < sizeof own / sizeof *own; i++)
    if (has_prefix(name, own[i])) return 1;
  return 0;
}

static int has_mlm(int head) { return head == LM_HEAD_PRETRAIN || head == LM_HEAD_MLM; }
static int has_pooler(const lm_config *c, const lm_family *f) {
  return c->head == LM_HEAD_PRETRAIN || (lm_head_is_sequence(c->head) && f->pool == LM_POOL_FIRST);
}
/* outputs per row of the small heads */
static int64_t head_width(const lm_config *c) {
  switch (c->head) {
    case LM_HEAD_CLASSIFY: case LM_HEAD_TOKENS: return c->num_labels;
    case LM_HEAD_QA: return 2;
    case LM_HEAD_SCALAR: return 1;
    default: return 0;
  }
}

/* ------------------------------------------------------------------ tensors */

int lm_head_add_params(const lm_config *c, const lm_family *f, lm_param_table *t) {
  int64_t C = c->n_embd, V = c->vocab_size, L = head_width(c);
#define ADD(n, d0, d1, dec) do { if (lm_table_add(t, n, d0, d1, dec)) return -1; } while (0)
  if (has_pooler(c, f)) { ADD("pooler.weight", C, C, 1); ADD("pooler.bias", C, 0, 0); }
  switch (c->head) {
    case LM_HEAD_LM:
      if (!c->tie_embeddings && !f->logits_body) ADD("lm_head.weight", V, C, 1);
      break;
    case LM_HEAD_PRETRAIN: case LM_HEAD_MLM:
      ADD("mlm.dense.weight", C, C, 1); ADD("mlm.dense.bias", C, 0, 0);
      ADD("mlm.ln.weight", C, 0, 0); ADD("mlm.ln.bias", C, 0, 0); ADD("mlm.bias", V, 0, 0);
      if (c->head == LM_HEAD_PRETRAIN) { ADD("nsp.weight", 2, C, 1); ADD("nsp.bias", 2, 0, 0); }
      if (!c->tie_embeddings) ADD("mlm.decoder.weight", V, C, 1);
      break;
    case LM_HEAD_CLASSIFY: case LM_HEAD_SCALAR:
      ADD("classifier.weight", L, C, 1);
      if (f->seq_head_bias) ADD("classifier.bias", L, 0, 0);
      break;
    case LM_HEAD_TOKENS:
      ADD("token_classifier.weight", L, C, 1); ADD("token_classifier.bias", L, 0, 0);
      break;
    case LM_HEAD_QA:
      ADD("qa_outputs.weight", 2, C, 1); ADD("qa_outputs.bias", 2, 0, 0);
      break;
    default: return -1;
  }
#undef ADD
  return 0;
}

/* ------------------------------------------------------------------ state */

/* Views of the head's tensors in params or grads; NULL where the head has none. */
typedef struct {
  float *pool_w, *pool_b;                 /* (C,C), (C) */
  float *mlm_dw, *mlm_db, *mlm_ln_w, *mlm_ln_b, *mlm_bias, *mlm_dec; /* mlm_dec: (V,C), wte when tied */
  float *nsp_w, *nsp_b;                   /* (2,C), (2) */
  float *out_w, *out_b;                   /* lm_head (wte when tied) / classifier / token_classifier / qa_outputs */
} head_weights;

typedef struct {
  int64_t B, T;                 /* reserved sizes */
  int grads;
  float *arena;
  int32_t *iarena;
  head_weights w, g;
  float *logits;                          /* LM (N,V), MLM (M<=N,V), small heads (N,L) / (B,L) / (B) */
  float *losses, *dlosses;                /* (N), (2N) */
  double *ce_stats;                       /* (N,2) the LM/MLM cross-entropy's row max and sum, for backward */
  float *dsmall;                          /* d logits of the small heads and of NSP */
  int32_t *tgt, *rows, *mlm_tgt, *pool_idx; /* (N), (N), (N), (B) */
  float *mlm_x, *mlm_h, *mlm_g, *mlm_t;   /* (M,C): gathered hidden, dense, act, norm */
  float *mlm_mean, *mlm_rstd;             /* (M) */
  float *cls, *pooled;                    /* (B,C): gathered hidden, pooled (== cls without a pooler) */
  float *nsp_logits;                      /* (B,2) */
  float *d1, *d2;                         /* backward scratch (M,C), (N,C) or (B,C) */
  /* the classifier's input dropout (BERT's classifier_dropout), training only */
  float drop_p;                           /* its rate; 0: none */
  uint64_t *drop;                         /* (B,C) or (N,C) bits, 1 = kept; NULL without */
  float *xd;                              /* the dropped input, (B,C) or (N,C) */
  int dropped;                            /* the last forward dropped */
  /* the last forward */
  int has_mlm, has_nsp, has_head, has_distill;
  int64_t fB, fT, M;
  float kl;                               /* mean KL of the distillation term, or NAN */
  float qa_scale;                         /* d loss / d CE term of one QA sequence */
} head_state;

static head_state *hs(const lm_model *m) { return m->head_state; }

void lm_head_free(lm_model *m) {
  head_state *s = m->head_state;
  if (!s) return;
  lm_free(s->arena);
  free(s->iarena);
  free(s->drop);
  free(s);
  m->head_state = NULL;
}

/* grad 0: the values, 1: the gradients (NULL where not trained); lm_model_param knows where each lives */
static void view(const lm_model *m, int grad, head_weights *w, const float *wte) {
  memset(w, 0, sizeof *w);
#define T(n) lm_model_param(m, n, grad)
  w->pool_w = T("pooler.weight"); w->pool_b = T("pooler.bias");
  w->mlm_dw = T("mlm.dense.weight"); w->mlm_db = T("mlm.dense.bias");
  w->mlm_ln_w = T("mlm.ln.weight"); w->mlm_ln_b = T("mlm.ln.bias");
  w->mlm_bias = T("mlm.bias");
  w->mlm_dec = has_mlm(m->cfg.head) ? (m->cfg.tie_embeddings ? (float *)wte : T("mlm.decoder.weight")) : NULL;
  w->nsp_w = T("nsp.weight"); w->nsp_b = T("nsp.bias");
  switch (m->cfg.head) {
    case LM_HEAD_LM:   /* BART's final_logits_bias: added, never trained (a buffer in transformers) */
      w->out_w = m->cfg.tie_embeddings ? (float *)wte : T("lm_head.weight");
      w->out_b = T("final_logits_bias");
      break;
    case LM_HEAD_CLASSIFY: case LM_HEAD_SCALAR: w->out_w = T("classifier.weight"); w->out_b = T("classifier.bias"); break;
    case LM_HEAD_TOKENS: w->out_w = T("token_classifier.weight"); w->out_b = T("token_classifier.bias"); break;
    case LM_HEAD_QA: w->out_w = T("qa_outputs.weight"); w->out_b = T("qa_outputs.bias"); break;
  }
#undef T
}

/* The rate a family's classification heads drop their classifier's input with (BERT's
 * classifier_dropout, null meaning hidden_dropout_prob, as transformers reads it), or 0. */
static float head_drop_rate(const lm_model *m) {
  const lm_config *c = &m->cfg;
  int cls = c->head == LM_HEAD_CLASSIFY || c->head == LM_HEAD_SCALAR || c->head == LM_HEAD_TOKENS;
  if (!cls || !m->fam->head_dropout) return 0;
  return c->cls_pdrop >= 0 ? c->cls_pdrop : c->resid_pdrop;
}

lm_status lm_head_reserve(lm_model *m, int64_t B, int64_t T, int need_grads) {
  const lm_config *c = &m->cfg;
  head_state *s = hs(m);
  if (!s || s->B != B || s->T != T || (need_grads && !s->grads)) {
    lm_head_free(m);
    int64_t N = B * T, C = c->n_embd, V = c->vocab_size, L = head_width(c);
    int big = c->head == LM_HEAD_LM || has_mlm(c->head);
    int64_t small = N * (L > 2 ? L : 2);             /* every small head's logits fit, and NSP's */
    float drop_p = need_grads ? head_drop_rate(m) : 0;
    int64_t xn = c->head == LM_HEAD_TOKENS ? N * C : B * C;   /* the classifier's input */
    int64_t dsz = has_mlm(c->head) || (drop_p > 0 && c->head == LM_HEAD_TOKENS) ? N * C : B * C;  /* backward scratch */
    size_t total = (big ? (size_t)N * V : (size_t)small) + 7 * (size_t)N + (size_t)small
                   + (has_mlm(c->head) ? 4 * (size_t)N * C + 2 * (size_t)N : 0)
                   + 2 * (size_t)B * C + 2 * (size_t)B
                   + (need_grads ? 2 * (size_t)dsz : 0) + (drop_p > 0 ? (size_t)xn : 0) + 16 * 16;
    s = calloc(1, sizeof *s);
    if (!s) return lm_error(LM_ERR_NOMEM, "out of memory");
    s->arena = lm_alloc(total * sizeof(float));
    s->iarena = calloc(3 * (size_t)N + (size_t)B, sizeof(int32_t));
    if (!s->arena || !s->iarena) {
      lm_free(s->arena); free(s->iarena); free(s);
      return lm_error(LM_ERR_NOMEM, "out of memory for the %s head's activations (batch %lld x %lld)",
                      lm_head_name(c->head), (long long)B, (long long)T);
    }
    float *p = s->arena;
#define CARVE(n) ({ float *r_ = p; p += ((size_t)(n) + 15) & ~(size_t)15; r_; })
    s->logits = CARVE(big ? N * V : small);
    s->losses = CARVE(N); s->dlosses = CARVE(2 * N);   /* MLM's rows, then NSP's at +N */
    s->ce_stats = (double *)CARVE(4 * N);
    s->dsmall = CARVE(small);
    if (has_mlm(c->head)) {
      s->mlm_x = CARVE(N * C); s->mlm_h = CARVE(N * C); s->mlm_g = CARVE(N * C); s->mlm_t = CARVE(N * C);
      s->mlm_mean = CARVE(N); s->mlm_rstd = CARVE(N);
    }
    s->cls = CARVE(B * C); s->pooled = CARVE(B * C); s->nsp_logits = CARVE(2 * B);
    if (need_grads) { s->d1 = CARVE(dsz); s->d2 = CARVE(dsz); }
    if (drop_p > 0) { s->xd = CARVE(xn); s->drop_p = drop_p; s->drop = calloc(((size_t)xn + 63) / 64, sizeof(uint64_t)); }
#undef CARVE
    if ((size_t)(p - s->arena) > total || (drop_p > 0 && !s->drop)) {
      lm_free(s->arena); free(s->iarena); free(s->drop); free(s);
      return lm_error(LM_ERR_NOMEM, "out of memory for the %s head's activations", lm_head_name(c->head));
    }
    s->tgt = s->iarena; s->rows = s->iarena + N; s->mlm_tgt = s->iarena + 2 * N; s->pool_idx = s->iarena + 3 * N;
    s->B = B; s->T = T; s->grads = need_grads;
    m->head_state = s;
  }
  view(m, 0, &s->w, m->w.wte);
  view(m, 1, &s->g, m->g.wte);
  return LM_OK;
}

/* ------------------------------------------------------------------ batch checks */

static lm_status check_ids(const char *what, const int32_t *v, int64_t n, int64_t lo, int64_t hi, const char *range) {
  for (int64_t i = 0; i < n; i++)
    if (v[i] < lo || v[i] >= hi)
      return lm_error(LM_ERR_RANGE, "batch: %s[%lld] = %d is out of range (%s %lld..%lld)", what, (long long)i,
                      (int)v[i], range, (long long)lo, (long long)hi - 1);
  return LM_OK;
}

/* which fields the head takes */
static lm_status check_fields(const lm_config *c, const lm_batch *b) {
  const char *h = lm_head_name(c->head);
  int lm = c->head == LM_HEAD_LM, mlm = has_mlm(c->head), pre = c->head == LM_HEAD_PRETRAIN;
  if (b->targets && !lm) return lm_error(LM_ERR_ARG, "batch: next-token targets given to a model whose head is %s, not lm", h);
  if (b->mlm_labels && !mlm) return lm_error(LM_ERR_ARG, "batch: MLM labels given to a model whose head is %s, not pre-training", h);
  if (b->nsp_labels && !pre) return lm_error(LM_ERR_ARG, "batch: NSP labels given to a model whose head is %s, not pre-training", h);
  if (b->mlm_soft_targets && !mlm) return lm_error(LM_ERR_ARG, "batch: mlm_soft_targets given to a model whose head is %s, not pre-training", h);
  if (b->labels && (lm || mlm || c->head == LM_HEAD_SCALAR))
    return lm_error(LM_ERR_ARG, "batch: task labels given to a model whose head is %s", h);
  if (b->values && c->head != LM_HEAD_SCALAR) return lm_error(LM_ERR_ARG, "batch: scalar values given to a model whose head is %s", h);
  if (b->dout && mlm) return lm_error(LM_ERR_UNSUPPORTED, "batch: a caller's d(output) is not supported for the %s head", h);
  return LM_OK;
}

lm_status lm_head_check(const lm_model *m, const lm_batch *b) {
  const lm_config *c = &m->cfg;
  int64_t B = b->B, T = b->T, N = B * T;
  lm_status st = check_fields(c, b);
  if (st) return st;
  if (b->targets && (st = check_ids("targets", b->targets, N, -1, c->vocab_size, "-1 or vocabulary"))) return st;
  if (b->mlm_labels && (st = check_ids("mlm_labels", b->mlm_labels, N, -1, c->vocab_size, "-1 or vocabulary"))) return st;
  if (b->nsp_labels && (st = check_ids("nsp_labels", b->nsp_labels, B, -1, 2, "-1 or"))) return st;
  if (b->values)
    for (int64_t i = 0; i < B; i++)
      if (!isfinite(b->values[i])) return lm_error(LM_ERR_RANGE, "batch: values[%lld] = %g is not a finite number", (long long)i, (double)b->values[i]);
  if (b->mlm_soft_targets) {
    if (!(b->distill_temperature > 0) || !isfinite(b->distill_temperature))
      return lm_error(LM_ERR_RANGE, "batch: distill_temperature = %g must be a positive number", (double)b->distill_temperature);
    if (!(b->distill_alpha_ce >= 0) || !isfinite(b->distill_alpha_ce) || !(b->distill_alpha_mlm >= 0) ||
        !isfinite(b->distill_alpha_mlm))
      return lm_error(LM_ERR_RANGE, "batch: distill_alpha_ce = %g and distill_alpha_mlm = %g must be >= 0",
                      (double)b->distill_alpha_ce, (double)b->distill_alpha_mlm);
  }
  if (!b->labels) return LM_OK;
  switch (c->head) {
    case LM_HEAD_CLASSIFY: return check_ids("labels", b->labels, B, -1, c->num_labels, "-1 or num_labels");
    case LM_HEAD_TOKENS: return check_ids("labels", b->labels, N, -1, c->num_labels, "-1 or num_labels");
    case LM_HEAD_QA:
      if ((st = check_ids("labels", b->labels, 2 * B, -1, T, "-1 or position"))) return st;
      for (int64_t i = 0; i < B; i++) {
        int32_t s0 = b->labels[2 * i], e0 = b->labels[2 * i + 1];
        if ((s0 < 0) != (e0 < 0))
          return lm_error(LM_ERR_ARG, "batch: sequence %lld has a start label %d but end label %d (both or neither)",
                          (long long)i, (int)s0, (int)e0);
        if (s0 >= 0 && b->mask && (!b->mask[i * T + s0] || !b->mask[i * T + e0]))
          return lm_error(LM_ERR_ARG, "batch: sequence %lld: the answer span %d..%d points at padding",
                          (long long)i, (int)s0, (int)e0);
      }
      return LM_OK;
  }
  return LM_OK;
}

/* ------------------------------------------------------------------ forward */

/* mean of losses[i] over the n rows with tgt[i] >= 0; dlosses[i] = 1/count there, 0 elsewhere.
 * norm > 0 divides by norm instead of the count (lm_batch.loss_count: a rank's share of a job). */
static float masked_mean(const float *losses, float *dlosses, const int32_t *tgt, int64_t n, float norm, int *any) {
  double sum = 0; int64_t count = 0;
  for (int64_t i = 0; i < n; i++)
    if (tgt[i] >= 0) { sum += losses[i]; count++; }
  float inv = norm > 0 ? 1.0f / norm : count ? 1.0f / (float)count : 0.0f;
  for (int64_t i = 0; i < n; i++) dlosses[i] = (tgt[i] >= 0 && count) ? inv : 0.0f;
  *any = count > 0;
  if (norm > 0) return (float)(sum / norm);   /* a share with no labelled token adds 0 */
  return count ? (float)(sum / count) : NAN;
}

/* The token each sequence is pooled at: 0 (first), or the last real one: by the mask, else by
 * ids != pad_token_id (HF's rule), else T-1. A sequence with no real token pools at 0, as HF's argmax. */
static void pool_index(const lm_model *m, const lm_batch *b, int32_t *idx) {
  int64_t B = b->B, T = b->T, pad = m->cfg.pad_token_id;
  for (int64_t i = 0; i < B; i++) {
    if (m->fam->pool == LM_POOL_FIRST) { idx[i] = 0; continue; }
    int32_t last = (int32_t)T - 1;
    if (b->mask || pad >= 0) {
      last = 0;
      for (int64_t t = 0; t < T; t++)
        if (b->mask ? b->mask[i * T + t] != 0 : b->ids[i * T + t] != pad) last = (int32_t)t;
    }
    idx[i] = last;
  }
}

/* cls(B,C) = hidden at the pooled tokens; pooled = tanh(cls W_p^T + b_p) with a pooler, else cls */
static void pool_forward(head_state *s, const float *hidden, int64_t B, int64_t T, int64_t C) {
  for (int64_t b = 0; b < B; b++) memcpy(s->cls + b * C, hidden + (b * T + s->pool_idx[b]) * C, C * sizeof(float));
  if (!s->w.pool_w) { memcpy(s->pooled, s->cls, B * C * sizeof(float)); return; }
  matmul_forward(s->pooled, s->cls, s->w.pool_w, s->w.pool_b, B, C, C);
  for (int64_t i = 0; i < B * C; i++) s->pooled[i] = tanhf(s->pooled[i]);
}

/* dhidden rows at the pooled tokens += d(cls), from d(pooled) (B,C) in s->d1; uses s->d2 */
static void pool_backward(head_state *s, float *dhidden, int64_t B, int64_t T, int64_t C) {
  if (s->w.pool_w) {
    for (int64_t i = 0; i < B * C; i++) s->d2[i] = s->d1[i] * (1.0f - s->pooled[i] * s->pooled[i]);
    memset(s->d1, 0, B * C * sizeof(float));
    matmul_backward(s->d1, s->g.pool_w, s->g.pool_b, s->d2, s->cls, s->w.pool_w, B, C, C);
  }
  for (int64_t b = 0; b < B; b++) {
    float *dst = dhidden + (b * T + s->pool_idx[b]) * C;
    for (int64_t j = 0; j < C; j++) dst[j] += s->d1[b * C + j];
  }
}

/* QA: per sequence and per k (0 start, 1 end), softmax over the real tokens of logits[., k].
 * With d non-NULL, writes d loss / d logits (scaled by s->qa_scale) instead. */
static double qa_softmax(const head_state *s, const lm_batch *b, int64_t i, int k, int64_t T, float *d) {
  const float *x = s->logits + i * T * 2 + k;    /* stride 2 */
  float mx = -INFINITY;
  for (int64_t t = 0; t < T; t++)
    if (!b->mask || b->mask[i * T + t]) mx = fmaxf(mx, x[2 * t]);
  double z = 0;
  for (int64_t t = 0; t < T; t++)
    if (!b->mask || b->mask[i * T + t]) z += exp((double)x[2 * t] - mx);
  int32_t label = b->labels[2 * i + k];
  if (!d) return (double)mx + log(z) - x[2 * label];
  for (int64_t t = 0; t < T; t++)
    if (!b->mask || b->mask[i * T + t]) d[2 * t] = (float)(exp((double)x[2 * t] - mx) / z) * s->qa_scale;
  d[2 * label] -= s->qa_scale;
  return 0;
}

static float qa_forward(head_state *s, const lm_batch *b, int64_t B, int64_t T) {
  double sum = 0; int64_t count = 0;
  for (int64_t i = 0; i < B; i++) {
    if (b->labels[2 * i] < 0) continue;
    count++;
    for (int k = 0; k < 2; k++) sum += qa_softmax(s, b, i, k, T, NULL);
  }
  s->qa_scale = count ? 0.5f / (float)count : 0.0f;
  return count ? (float)(sum * 0.5 / count) : NAN;
}

/* Distillation forward: kl[i] = KL(p_i || softmax(z_i / tau)) for the M rows of z (M,V) and p (M,V);
 * returns their mean, or NAN (error set) when p holds a value outside [0, 1]. In double:
 *   KL_i = sum_j p_j log p_j - sum_j p_j z_j / tau + logsumexp(z_i / tau) * sum_j p_j   (0 log 0 = 0) */
static float distill_forward(float *kl, const float *z, const float *p, int64_t M, int64_t V, float tau) {
  #pragma omp parallel for schedule(static) if (M * V > 32768)
  for (int64_t i = 0; i < M; i++) {
    const float *zi = z + i * V, *pi = p + i * V;
    float mx = -INFINITY;
    for (int64_t j = 0; j < V; j++) mx = fmaxf(mx, zi[j]);
    double se = 0, plogp = 0, pz = 0, psum = 0;
    int bad = 0;
    for (int64_t j = 0; j < V; j++) {
      se += exp((double)(zi[j] - mx) / tau);
      double pj = pi[j];
      if (!(pj >= 0 && pj <= 1)) bad = 1;
      else if (pj > 0) { plogp += pj * log(pj); pz += pj * zi[j]; psum += pj; }
    }
    double lse = (double)mx / tau + log(se);
    kl[i] = bad ? NAN : (float)(plogp - pz / tau + lse * psum);
  }
  double sum = 0;
  for (int64_t i = 0; i < M; i++) {
    if (isnan(kl[i])) {
      lm_error(LM_ERR_RANGE, "batch: mlm_soft_targets row %lld holds a value that is not a probability in [0, 1]",
               (long long)i);
      return NAN;
    }
    sum += kl[i];
  }
  return M ? (float)(sum / M) : NAN;
}

/* Distillation backward, IN PLACE over z (M,V) -> dz: per row,
 *   dz = w_kl * (softmax(z / tau) * sum(p) - p) + w_ce[i] * (softmax(z) - onehot(tgt[i]))
 * with w_kl = alpha_ce * tau / M and w_ce[i] = alpha_mlm * dlosses[i] (0 for rows without a label).
 * Every row's maxima and sums are taken before it is overwritten. */
static void distill_backward(float *z, const float *p, const int32_t *tgt, const float *dlosses, int64_t M, int64_t V,
                             float tau, float alpha_ce, float alpha_mlm) {
  double w_kl = (double)alpha_ce * tau / (double)M;
  #pragma omp parallel for schedule(static) if (M * V > 32768)
  for (int64_t i = 0; i < M; i++) {
    float *zi = z + i * V;
    const float *pi = p + i * V;
    double w_ce = tgt[i] >= 0 ? (double)alpha_mlm * dlosses[i] : 0.0;
    float mx = -INFINITY;
    for (int64_t j = 0; j < V; j++) mx = fmaxf(mx, zi[j]);
    double s1 = 0, st = 0, psum = 0;
    for (int64_t j = 0; j < V; j++) {
      s1 += exp((double)(zi[j] - mx));
      st += exp((double)(zi[j] - mx) / tau);
      psum += pi[j];
    }
    for (int64_t j = 0; j < V; j++) {
      double d = (double)(zi[j] - mx);
      double g = w_kl * (exp(d / tau) / st * psum - pi[j]) + w_ce * (exp(d) / s1);
      zi[j] = (float)g;
    }
    if (tgt[i] >= 0) zi[tgt[i]] -= (float)w_ce;
  }
}

/* MLM over the labelled rows (all rows when there are no labels); returns the loss or NAN */
static float mlm_forward(lm_model *m, head_state *s, const lm_batch *b, const float *hidden, float *mlm_loss) {
  const lm_config *c = &m->cfg;
  int64_t N = b->B * b->T, C = c->n_embd, V = c->vocab_size, M = 0;
  float loss = NAN;
  for (int64_t n = 0; n < N; n++)
    if (!b->mlm_labels || b->mlm_labels[n] >= 0) { s->rows[M] = (int32_t)n; s->mlm_tgt[M] = b->mlm_labels ? b->mlm_labels[n] : -1; M++; }
  s->M = M;
  if (M == 0) return b->mlm_labels && b->loss_count > 0 ? 0.0f : NAN;   /* a rank's share may hold no label */
  for (int64_t i = 0; i < M; i++) memcpy(s->mlm_x + i * C, hidden + (int64_t)s->rows[i] * C, C * sizeof(float));
  lm_linear_forward(m->mm, s->mlm_h, s->mlm_x, s->w.mlm_dw, s->w.mlm_db, M, C, C);               // (M,C)
  act_forward(s->mlm_g, s->mlm_h, M * C, c->act);
  layernorm_forward(s->mlm_t, s->mlm_mean, s->mlm_rstd, s->mlm_g, s->w.mlm_ln_w, s->w.mlm_ln_b, M, C, c->norm_eps);
  lm_linear_forward(m->mm, s->logits, s->mlm_t, s->w.mlm_dec, s->w.mlm_bias, M, C, V);             // (M,V)
  if (b->mlm_labels) {
    crossentropy_forward(s->losses, s->logits, s->mlm_tgt, M, V, s->ce_stats);
    loss = masked_mean(s->losses, s->dlosses, s->mlm_tgt, M, b->loss_count, &s->has_mlm);
    if (mlm_loss) *mlm_loss = loss;
  }
  if (b->mlm_soft_targets) {
    /* alpha_ce * tau^2 * KL + alpha_mlm * CE; s->losses is free until NSP */
    float tau = b->distill_temperature;
    s->kl = distill_forward(s->losses, s->logits, b->mlm_soft_targets, M, V, tau);
    if (isnan(s->kl)) return NAN;
    s->has_distill = 1;
    loss = b->distill_alpha_ce * tau * tau * s->kl + (s->has_mlm ? b->distill_alpha_mlm * loss : 0.0f);
  }
  return loss;
}

/* The classifier's input x (n floats): in training mode with a rate, a mask drawn from the
 * model's dropout rng after the blocks' (a fixed order) and applied to a copy; else x itself. */
static const float *head_dropout_forward(lm_model *m, head_state *s, const float *x, int64_t n) {
  s->dropped = s->drop && m->dropout_rng && !m->dropout_off;
  if (!s->dropped) return x;
  dropout_mask(s->drop, n, s->drop_p, m->dropout_rng);
  memcpy(s->xd, x, (size_t)n * sizeof(float));
  dropout_apply(s->xd, s->drop, n, s->drop_p);
  return s->xd;
}

float lm_head_forward(lm_model *m, const lm_batch *b, const float *hidden, float *aux_a, float *aux_b) {
  head_state *s = hs(m);
  const lm_config *c = &m->cfg;
  int64_t B = b->B, T = b->T, N = B * T, C = c->n_embd, V = c->vocab_size, NL = head_width(c);
  s->has_mlm = s->has_nsp = s->has_head = s->has_distill = 0;
  s->fB = B; s->fT = T; s->M = 0; s->kl = NAN;
  float loss = NAN;
  switch (c->head) {
    case LM_HEAD_LM:
      if (m->fam->logits_body) memcpy(s->logits, hidden, (size_t)N * V * sizeof(float));   // the n-gram's log p
      else lm_linear_forward(m->mm, s->logits, hidden, s->w.out_w, s->w.out_b, N, C, V);            // (N,V)
      if (b->targets) {
        crossentropy_forward(s->losses, s->logits, b->targets, N, V, s->ce_stats);
        loss = masked_mean(s->losses, s->dlosses, b->targets, N, b->loss_count, &s->has_head);
      }
      break;
    case LM_HEAD_MLM:
      loss = mlm_forward(m, s, b, hidden, aux_a);
      if (b->mlm_soft_targets && s->M > 0 && !s->has_distill) { m->ok = 0; return NAN; }
      break;
    case LM_HEAD_PRETRAIN: {
      loss = mlm_forward(m, s, b, hidden, aux_a);
      if (b->mlm_soft_targets && s->M > 0 && !s->has_distill) { m->ok = 0; return NAN; }
      /* NSP on the pooled first token */
      pool_index(m, b, s->pool_idx);
      pool_forward(s, hidden, B, T, C);
      lm_linear_forward(m->mm, s->nsp_logits, s->pooled, s->w.nsp_w, s->w.nsp_b, B, C, 2);          // (B,2)
      if (b->nsp_labels) {
        memcpy(s->tgt, b->nsp_labels, B * sizeof(int32_t));
        crossentropy_forward(s->losses, s->nsp_logits, s->tgt, B, 2, NULL);
        float l_nsp = masked_mean(s->losses, s->dlosses + N, s->tgt, B, 0, &s->has_nsp);   /* MLM keeps dlosses[0..M) */
        if (aux_b) *aux_b = l_nsp;
        if (s->has_nsp) loss = s->has_mlm || s->has_distill ? loss + l_nsp : l_nsp;
      }
      break;
    }
    case LM_HEAD_CLASSIFY: case LM_HEAD_SCALAR:
      pool_index(m, b, s->pool_idx);
      pool_forward(s, hidden, B, T, C);
      lm_linear_forward(m->mm, s->logits, head_dropout_forward(m, s, s->pooled, B * C), s->w.out_w, s->w.out_b, B, C, NL); // (B,L)
      if (b->labels) {
        memcpy(s->tgt, b->labels, B * sizeof(int32_t));
        crossentropy_forward(s->losses, s->logits, s->tgt, B, NL, NULL);
        loss = masked_mean(s->losses, s->dlosses, s->tgt, B, 0, &s->has_head);
      }
      if (b->values) {   /* mean squared error, as HF's regression (num_labels 1) */
        double sum = 0;
        for (int64_t i = 0; i < B; i++) { double d = (double)s->logits[i] - b->values[i]; sum += d * d; }
        loss = (float)(sum / B);
        s->has_head = 1;
      }
      break;
    case LM_HEAD_TOKENS:
      lm_linear_forward(m->mm, s->logits, head_dropout_forward(m, s, hidden, N * C), s->w.out_w, s->w.out_b, N, C, NL); // (N,L)
      if (b->labels) {
        for (int64_t n = 0; n < N; n++) s->tgt[n] = (b->mask && !b->mask[n]) ? -1 : b->labels[n];
        crossentropy_forward(s->losses, s->logits, s->tgt, N, NL, NULL);
        loss = masked_mean(s->losses, s->dlosses, s->tgt, N, 0, &s->has_head);
      }
      break;
    case LM_HEAD_QA:
      lm_linear_forward(m->mm, s->logits, hidden, s->w.out_w, s->w.out_b, N, C, 2);                 // (N,2)
      if (b->labels) {
        loss = qa_forward(s, b, B, T);
        s->has_head = !isnan(loss);
      }
      break;
  }
  return loss;
}

/* ------------------------------------------------------------------ backward */

static void mlm_backward(lm_model *m, head_state *s, const lm_batch *b, float *dhidden) {
  const lm_config *c = &m->cfg;
  int64_t M = s->M, C = c->n_embd, V = c->vocab_size;
  if (s->has_distill)
    distill_backward(s->logits, b->mlm_soft_targets, s->mlm_tgt, s->dlosses, M, V, b->distill_temperature,
                     b->distill_alpha_ce, s->has_mlm ? b->distill_alpha_mlm : 0.0f);            // (M,V) in place
  else
    crossentropy_backward(s->logits, s->logits, s->mlm_tgt, s->dlosses, M, V, s->ce_stats);                 // (M,V) in place
  memset(s->d1, 0, M * C * sizeof(float));
  lm_linear_backward(m->mm, s->d1, s->g.mlm_dec, s->g.mlm_bias, s->logits, s->mlm_t, s->w.mlm_dec, M, C, V); // d mlm_t
  memset(s->d2, 0, M * C * sizeof(float));
  layernorm_backward(s->d2, s->g.mlm_ln_w, s->g.mlm_ln_b, s->d1, s->mlm_g, s->w.mlm_ln_w, s->mlm_mean, s->mlm_rstd, M, C);
  memset(s->d1, 0, M * C * sizeof(float));
  act_backward(s->d1, s->mlm_h, s->d2, M * C, c->act);                                         // d mlm_h
  memset(s->d2, 0, M * C * sizeof(float));
  lm_linear_backward(m->mm, s->d2, s->g.mlm_dw, s->g.mlm_db, s->d1, s->mlm_x, s->w.mlm_dw, M, C, C);     // d mlm_x
  for (int64_t i = 0; i < M; i++) {
    float *dst = dhidden + (int64_t)s->rows[i] * C;
    for (int64_t j = 0; j < C; j++) dst[j] += s->d2[i * C + j];
  }
}

void lm_head_backward(lm_model *m, const lm_batch *b, const float *hidden, float *dhidden) {
  head_state *s = hs(m);
  const lm_config *c = &m->cfg;
  int64_t B = b->B, T = b->T, N = B * T, C = c->n_embd, V = c->vocab_size, NL = head_width(c);
  const float *dout = b->dout;
  switch (c->head) {
    case LM_HEAD_LM:
      /* a caller may write its d(logits) over the logits buffer itself (lm_model_logits): no copy */
      if (dout) { if (dout != s->logits) memcpy(s->logits, dout, (size_t)N * V * sizeof(float)); }
      else if (s->has_head) crossentropy_backward(s->logits, s->logits, b->targets, s->dlosses, N, V, s->ce_stats);
      else break;
      if (m->fam->logits_body) break;   /* counted, not trained: nothing to differentiate */
      lm_linear_backward(m->mm, dhidden, s->g.out_w, NULL, s->logits, hidden, s->w.out_w, N, C, V);
      break;
    case LM_HEAD_MLM: case LM_HEAD_PRETRAIN:
      if (s->has_mlm || s->has_distill) mlm_backward(m, s, b, dhidden);
      if (s->has_nsp) {
        crossentropy_backward(s->dsmall, s->nsp_logits, s->tgt, s->dlosses + N, B, 2, NULL);          // (B,2)
        memset(s->d1, 0, B * C * sizeof(float));
        lm_linear_backward(m->mm, s->d1, s->g.nsp_w, s->g.nsp_b, s->dsmall, s->pooled, s->w.nsp_w, B, C, 2);
        pool_backward(s, dhidden, B, T, C);
      }
      break;
    case LM_HEAD_CLASSIFY: case LM_HEAD_SCALAR:
      if (dout) memcpy(s->dsmall, dout, B * NL * sizeof(float));
      else if (s->has_head && b->values)
        for (int64_t i = 0; i < B; i++) s->dsmall[i] = 2.0f * (s->logits[i] - b->values[i]) / (float)B;
      else if (s->has_head) crossentropy_backward(s->dsmall, s->logits, s->tgt, s->dlosses, B, NL, NULL);   // (B,L)
      else break;
      memset(s->d1, 0, B * C * sizeof(float));
      lm_linear_backward(m->mm, s->d1, s->g.out_w, s->g.out_b, s->dsmall, s->dropped ? s->xd : s->pooled, s->w.out_w, B, C, NL);
      if (s->dropped) dropout_apply(s->d1, s->drop, B * C, s->drop_p);   /* d pooled through the same mask */
      pool_backward(s, dhidden, B, T, C);
      break;
    case LM_HEAD_TOKENS:
      if (dout) memcpy(s->dsmall, dout, N * NL * sizeof(float));
      else if (s->has_head) crossentropy_backward(s->dsmall, s->logits, s->tgt, s->dlosses, N, NL, NULL);   // (N,L)
      else break;
      if (!s->dropped) { lm_linear_backward(m->mm, dhidden, s->g.out_w, s->g.out_b, s->dsmall, hidden, s->w.out_w, N, C, NL); break; }
      memset(s->d1, 0, (size_t)N * C * sizeof(float));
      lm_linear_backward(m->mm, s->d1, s->g.out_w, s->g.out_b, s->dsmall, s->xd, s->w.out_w, N, C, NL);    // d xd (N,C)
      dropout_apply(s->d1, s->drop, N * C, s->drop_p);
      for (int64_t i = 0; i < N * C; i++) dhidden[i] += s->d1[i];
      break;
    case LM_HEAD_QA:
      if (dout) memcpy(s->dsmall, dout, N * 2 * sizeof(float));
      else if (s->has_head) {
        /* d logits[n,k] = (softmax over the real tokens - onehot(label)) * 0.5 / count */
        memset(s->dsmall, 0, N * 2 * sizeof(float));
        for (int64_t i = 0; i < B; i++)
          if (b->labels[2 * i] >= 0)
            for (int k = 0; k < 2; k++) qa_softmax(s, b, i, k, T, s->dsmall + i * T * 2 + k);
      } else break;
      lm_linear_backward(m->mm, dhidden, s->g.out_w, s->g.out_b, s->dsmall, hidden, s->w.out_w, N, C, 2);
      break;
  }
}

/* ------------------------------------------------------------------ accessors */

const float *lm_model_hidden(const lm_model *m) { return m->hidden; }

const float *lm_model_logits(const lm_model *m) { return hs(m) ? hs(m)->logits : NULL; }

const uint64_t *lm_model_head_dropout_mask(const lm_model *m) {
  const head_state *s = hs(m);
  return s && s->dropped ? s->drop : NULL;
}

const float *lm_model_pooled(const lm_model *m) {
  const head_state *s = hs(m);
  return s && (lm_head_is_sequence(m->cfg.head) || m->cfg.head == LM_HEAD_PRETRAIN) ? s->pooled : NULL;
}

const int32_t *lm_model_pool_index(const lm_model *m) {
  const head_state *s = hs(m);
  return s && (lm_head_is_sequence(m->cfg.head) || m->cfg.head == LM_HEAD_PRETRAIN) ? s->pool_idx : NULL;
}

int64_t lm_model_mlm_rows(const lm_model *m, const int32_t **rows) {
  const head_state *s = hs(m);
  if (rows) *rows = s ? s->rows : NULL;
  return s ? s->M : 0;
}

const float *lm_model_nsp_logits(const lm_model *m) {
  const head_state *s = hs(m);
  return s && m->cfg.head == LM_HEAD_PRETRAIN ? s->nsp_logits : NULL;
}

float lm_model_distill_kl(const lm_model *m) {
  const head_state *s = hs(m);
  return s && m->ok && s->has_distill ? s->kl : NAN;
}

const float *lm_model_token_losses(const lm_model *m) {
  const head_state *s = hs(m);
  return s && m->cfg.head == LM_HEAD_LM ? s->losses : NULL;
}

const float *lm_model_lm_head_bias(const lm_model *m) {
  return m->cfg.head == LM_HEAD_LM ? lm_model_tensor(m, m->params, "final_logits_bias") : NULL;
}

const float *lm_model_lm_head(const lm_model *m) {
  if (m->cfg.head != LM_HEAD_LM) return NULL;
  return m->cfg.tie_embeddings ? m->w.wte : lm_model_tensor(m, m->params, "lm_head.weight");
}
