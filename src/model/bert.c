/* bert.c — the BERT family (encoder-only, post-LN, bidirectional attention
 * with a padding mask): the tensors it adds to the general transformer, its
 * forward and backward passes with the pre-training and fine-tuning heads,
 * and Hugging Face directory i/o. See bert.h for the equations of each head.
 *
 * The encoder is the general block of model.c (lm_block_forward/backward,
 * cfg.pre_ln = 0, causal = 0, key padding mask), run over
 *   emb = LayerNorm(wte[ids] + wpe[t] + wtt[segments])            // (N,C)
 * The block activations live in the model's arena (lm_model_reserve); what
 * the embeddings and heads keep for backward lives in one more arena, the
 * bert_state below, hung on m->ext. The MLM head runs only over the rows that
 * carry a label (about 15% of them), gathered into contiguous (M,C) buffers,
 * which saves most of the (N,C)x(C,V) decoder product.
 *
 * Distillation (lm_bert_batch.mlm_soft_targets): the MLM rows also get a
 * soft-target term alpha_ce * tau^2 * KL(p || softmax(z/tau)), mean over the
 * M rows, beside alpha_mlm * the hard cross-entropy. Its gradient is
 *   dL/dz = alpha_ce * tau / M * (softmax(z/tau) * sum(p) - p)
 *         + alpha_mlm * (softmax(z) - onehot(label)) / n_labels,
 * written in place over the logits (distill_backward) like the plain CE's.
 *
 * Internal names are lmkit's ("h.3.attn.c_attn.weight", "mlm.dense.weight");
 * hf_name() maps them to transformers' ("bert.encoder.layer.3.attention.self.
 * query.weight", "cls.predictions.transform.dense.weight"). Our fused q|k|v
 * matrix (3C,C) is three contiguous (C,C) blocks, so saving writes three views
 * and loading reads three pieces; nothing is transposed (nn.Linear layout). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "model/bert.h"
#include "model/config.h"
#include "model/model.h"
#include "model/safetensors.h"

/* ------------------------------------------------------------------ table */

int lm_bert_add_params(const lm_config *c, void *t, lm_table_add_fn add) {
  int64_t C = c->n_embd, V = c->vocab_size, L = c->num_labels;
  if (c->type_vocab_size > 0 && add(t, "wtt.weight", c->type_vocab_size, C, 0)) return -1;
  if (add(t, "emb_ln.weight", C, 0, 0) || add(t, "emb_ln.bias", C, 0, 0)) return -1;
  switch (c->head) {
    case LM_HEAD_PRETRAIN:
      if (add(t, "pooler.weight", C, C, 1) || add(t, "pooler.bias", C, 0, 0) ||
          add(t, "mlm.dense.weight", C, C, 1) || add(t, "mlm.dense.bias", C, 0, 0) ||
          add(t, "mlm.ln.weight", C, 0, 0) || add(t, "mlm.ln.bias", C, 0, 0) || add(t, "mlm.bias", V, 0, 0) ||
          add(t, "nsp.weight", 2, C, 1) || add(t, "nsp.bias", 2, 0, 0))
        return -1;
      if (!c->tie_embeddings && add(t, "mlm.decoder.weight", V, C, 1)) return -1;
      return 0;
    case LM_HEAD_CLASSIFY:
      return add(t, "pooler.weight", C, C, 1) || add(t, "pooler.bias", C, 0, 0) ||
             add(t, "classifier.weight", L, C, 1) || add(t, "classifier.bias", L, 0, 0);
    case LM_HEAD_TOKENS:
      return add(t, "token_classifier.weight", L, C, 1) || add(t, "token_classifier.bias", L, 0, 0);
    case LM_HEAD_QA:
      return add(t, "qa_outputs.weight", 2, C, 1) || add(t, "qa_outputs.bias", 2, 0, 0);
  }
  return -1;
}

/* ------------------------------------------------------------------ state */

/* Views of the BERT-only tensors in params or grads; NULL where the head has none. */
typedef struct {
  float *wtt, *emb_ln_w, *emb_ln_b;
  float *pool_w, *pool_b;                 /* (C,C), (C) */
  float *mlm_dw, *mlm_db, *mlm_ln_w, *mlm_ln_b, *mlm_bias, *mlm_dec; /* mlm_dec: untied decoder (V,C) */
  float *nsp_w, *nsp_b;                   /* (2,C), (2) */
  float *head_w, *head_b;                 /* classifier / token_classifier / qa_outputs */
} bert_weights;

typedef struct {
  int64_t B, T;                 /* reserved sizes */
  int grads;
  float *arena;
  int32_t *iarena;
  bert_weights w, g;
  /* embeddings */
  float *emb_sum, *emb_mean, *emb_rstd;   /* (N,C), (N), (N): input of emb_ln and its stats */
  int32_t *emb_ids;                       /* (N) ids with the padding id as -1: no gradient (padding_idx) */
  int32_t *zeros;                         /* (N) segment 0, when the batch has no segments */
  /* MLM head over M gathered rows */
  int32_t *rows, *mlm_tgt;                /* (N) */
  float *mlm_x, *mlm_h, *mlm_g, *mlm_t;   /* (M,C): gathered hidden, dense, act, norm */
  float *mlm_mean, *mlm_rstd;             /* (M) */
  /* pooler */
  float *cls, *pooled;                    /* (B,C): hidden[:,0], tanh(dense) */
  float *nsp_logits;                      /* (B,2) */
  /* small heads */
  float *logits, *dlogits;                /* classify (B,L), tokens (N,L), qa (N,2); nsp's dlogits (B,2) */
  int32_t *tgt;                           /* (N) targets (nsp, classify, tokens with padding ignored) */
  float *losses, *dlosses;                /* (N) */
  float *d1, *d2;                         /* backward scratch (M,C) or (B,C) */
  /* the last forward */
  int ok, has_mlm, has_nsp, has_head, has_distill;
  int64_t fB, fT, M;
  float kl;                               /* mean KL of the distillation term, or NAN */
  float qa_scale;                         /* d loss / d CE term of one QA sequence */
} bert_state;

static void state_free(void *p) {
  bert_state *s = p;
  if (!s) return;
  lm_free(s->arena);
  free(s->iarena);
  free(s);
}

static float *find(const lm_model *m, const float *base, const char *name) {
  const lm_param_info *p = lm_model_find_param(m, name);
  return p && base ? (float *)base + p->offset : NULL;
}

static void view(const lm_model *m, const float *base, bert_weights *w) {
  static const char *head_names[][2] = {{NULL, NULL}, {"classifier.weight", "classifier.bias"},
                                        {"token_classifier.weight", "token_classifier.bias"},
                                        {"qa_outputs.weight", "qa_outputs.bias"}};
  memset(w, 0, sizeof *w);
  if (!base) return;
  w->wtt = find(m, base, "wtt.weight");
  w->emb_ln_w = find(m, base, "emb_ln.weight"); w->emb_ln_b = find(m, base, "emb_ln.bias");
  w->pool_w = find(m, base, "pooler.weight"); w->pool_b = find(m, base, "pooler.bias");
  w->mlm_dw = find(m, base, "mlm.dense.weight"); w->mlm_db = find(m, base, "mlm.dense.bias");
  w->mlm_ln_w = find(m, base, "mlm.ln.weight"); w->mlm_ln_b = find(m, base, "mlm.ln.bias");
  w->mlm_bias = find(m, base, "mlm.bias"); w->mlm_dec = find(m, base, "mlm.decoder.weight");
  w->nsp_w = find(m, base, "nsp.weight"); w->nsp_b = find(m, base, "nsp.bias");
  int h = m->cfg.head;
  if (h > 0 && h <= LM_HEAD_QA) {
    w->head_w = find(m, base, head_names[h][0]);
    w->head_b = find(m, base, head_names[h][1]);
  }
}

static bert_state *state(const lm_model *m) { return m->ext_free == state_free ? m->ext : NULL; }

lm_status lm_bert_reserve(lm_model *m, int64_t B, int64_t T, int need_grads) {
  if (!m || m->cfg.arch != LM_ARCH_BERT) return lm_error(LM_ERR_ARG, "lm_bert_reserve: not a bert model");
  lm_status st = lm_model_reserve(m, B, T, need_grads);
  if (st) return st;
  const lm_config *c = &m->cfg;
  bert_state *s = state(m);
  if (!s || s->B != B || s->T != T || (need_grads && !s->grads)) {
    if (m->ext_free) m->ext_free(m->ext);
    m->ext = NULL; m->ext_free = NULL;
    int64_t N = B * T, C = c->n_embd, L = c->num_labels;
    int pre = c->head == LM_HEAD_PRETRAIN;
    int64_t small = N * (L > 2 ? L : 2);             /* every small head's logits fit */
    int64_t dsz = pre ? N * C : B * C;               /* backward scratch rows */
    size_t total = (size_t)N * C + 2 * (size_t)N                          /* embeddings */
                   + (pre ? 4 * (size_t)N * C + 2 * (size_t)N : 0)        /* MLM */
                   + 2 * (size_t)B * C + 2 * (size_t)B                    /* pooler, nsp */
                   + 2 * (size_t)small + 2 * (size_t)N                    /* heads, losses */
                   + (need_grads ? 2 * (size_t)dsz : 0) + 16 * 20;
    s = calloc(1, sizeof *s);
    if (!s) return lm_error(LM_ERR_NOMEM, "out of memory");
    s->arena = lm_alloc(total * sizeof(float));
    s->iarena = calloc(5 * (size_t)N, sizeof(int32_t));
    if (!s->arena || !s->iarena) { state_free(s); return lm_error(LM_ERR_NOMEM, "out of memory for bert activations"); }
    float *p = s->arena;
#define CARVE(n) ({ float *r_ = p; p += ((size_t)(n) + 15) & ~(size_t)15; r_; })
    s->emb_sum = CARVE(N * C); s->emb_mean = CARVE(N); s->emb_rstd = CARVE(N);
    if (pre) {
      s->mlm_x = CARVE(N * C); s->mlm_h = CARVE(N * C); s->mlm_g = CARVE(N * C); s->mlm_t = CARVE(N * C);
      s->mlm_mean = CARVE(N); s->mlm_rstd = CARVE(N);
    }
    s->cls = CARVE(B * C); s->pooled = CARVE(B * C); s->nsp_logits = CARVE(2 * B);
    s->logits = CARVE(small); s->dlogits = CARVE(small);
    s->losses = CARVE(N); s->dlosses = CARVE(N);
    if (need_grads) { s->d1 = CARVE(dsz); s->d2 = CARVE(dsz); }
#undef CARVE
    if ((size_t)(p - s->arena) > total) { state_free(s); return lm_error(LM_ERR_NOMEM, "internal: bert arena too small"); }
    s->emb_ids = s->iarena; s->zeros = s->iarena + N; s->rows = s->iarena + 2 * N; s->mlm_tgt = s->iarena + 3 * N;
    s->tgt = s->iarena + 4 * N;
    s->B = B; s->T = T; s->grads = need_grads;
    m->ext = s; m->ext_free = state_free;
  }
  view(m, m->params, &s->w);
  view(m, m->grads, &s->g);
  s->ok = 0;
  return LM_OK;
}

/* ------------------------------------------------------------------ batch checks */

static lm_status check_ids(const char *what, const int32_t *v, int64_t n, int64_t lo, int64_t hi, const char *range) {
  for (int64_t i = 0; i < n; i++)
    if (v[i] < lo || v[i] >= hi)
      return lm_error(LM_ERR_RANGE, "bert batch: %s[%lld] = %d is out of range (%s %lld..%lld)", what, (long long)i,
                      (int)v[i], range, (long long)lo, (long long)hi - 1);
  return LM_OK;
}

lm_status lm_bert_check_batch(const lm_model *m, const lm_bert_batch *b) {
  if (!m || !b || !b->ids) return lm_error(LM_ERR_ARG, "bert batch: NULL model, batch or ids");
  const lm_config *c = &m->cfg;
  if (c->arch != LM_ARCH_BERT) return lm_error(LM_ERR_ARG, "bert batch: the model is %s, not bert", lm_arch_name(c->arch));
  int64_t B = b->B, T = b->T, N = B * T;
  if (B <= 0 || T <= 0) return lm_error(LM_ERR_ARG, "bert batch: B = %lld, T = %lld must be positive", (long long)B, (long long)T);
  if (T > c->n_positions)
    return lm_error(LM_ERR_RANGE, "bert batch: T = %lld tokens is longer than max_position_embeddings = %lld",
                    (long long)T, (long long)c->n_positions);
  const bert_state *s = state(m);
  if (!s || B > s->B || T > s->T)
    return lm_error(LM_ERR_ARG, "bert batch: %lld x %lld exceeds the reserved %lld x %lld (call lm_bert_reserve)",
                    (long long)B, (long long)T, s ? (long long)s->B : 0LL, s ? (long long)s->T : 0LL);
  lm_status st;
  if ((st = check_ids("ids", b->ids, N, 0, c->vocab_size, "vocabulary"))) return st;
  if (b->segments && (st = check_ids("segments", b->segments, N, 0, c->type_vocab_size > 0 ? c->type_vocab_size : 1,
                                     "type_vocab_size")))
    return st;
  int pre = c->head == LM_HEAD_PRETRAIN;
  if (!pre && (b->mlm_labels || b->nsp_labels))
    return lm_error(LM_ERR_ARG, "bert batch: MLM/NSP labels given to a model whose head is not pre-training");
  if (pre && b->labels) return lm_error(LM_ERR_ARG, "bert batch: task labels given to a pre-training head");
  if (b->mlm_labels && (st = check_ids("mlm_labels", b->mlm_labels, N, -1, c->vocab_size, "-1 or vocabulary"))) return st;
  if (b->nsp_labels && (st = check_ids("nsp_labels", b->nsp_labels, B, -1, 2, "-1 or"))) return st;
  if (b->mlm_soft_targets) {
    if (!pre) return lm_error(LM_ERR_ARG, "bert batch: mlm_soft_targets given to a model whose head is not pre-training");
    if (!(b->distill_temperature > 0) || !isfinite(b->distill_temperature))
      return lm_error(LM_ERR_RANGE, "bert batch: distill_temperature = %g must be a positive number", (double)b->distill_temperature);
    if (!(b->distill_alpha_ce >= 0) || !isfinite(b->distill_alpha_ce) || !(b->distill_alpha_mlm >= 0) ||
        !isfinite(b->distill_alpha_mlm))
      return lm_error(LM_ERR_RANGE, "bert batch: distill_alpha_ce = %g and distill_alpha_mlm = %g must be >= 0",
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
          return lm_error(LM_ERR_ARG, "bert batch: sequence %lld has a start label %d but end label %d (both or neither)",
                          (long long)i, (int)s0, (int)e0);
        if (s0 >= 0 && b->mask && (!b->mask[i * T + s0] || !b->mask[i * T + e0]))
          return lm_error(LM_ERR_ARG, "bert batch: sequence %lld: the answer span %d..%d points at padding",
                          (long long)i, (int)s0, (int)e0);
      }
      return LM_OK;
  }
  return LM_OK;
}

/* ------------------------------------------------------------------ forward */

/* mean of losses[i] over the n rows with tgt[i] >= 0; dlosses[i] = 1/count there, 0 elsewhere */
static float masked_mean(const float *losses, float *dlosses, const int32_t *tgt, int64_t n, int *any) {
  double sum = 0; int64_t count = 0;
  for (int64_t i = 0; i < n; i++)
    if (tgt[i] >= 0) { sum += losses[i]; count++; }
  for (int64_t i = 0; i < n; i++) dlosses[i] = (tgt[i] >= 0 && count) ? 1.0f / (float)count : 0.0f;
  *any = count > 0;
  return count ? (float)(sum / count) : NAN;
}

/* pooled(B,C) = tanh(hidden[:,0] @ W^T + b) */
static void pooler_forward(bert_state *s, const float *hidden, int64_t B, int64_t T, int64_t C) {
  for (int64_t b = 0; b < B; b++) memcpy(s->cls + b * C, hidden + b * T * C, C * sizeof(float));
  matmul_forward(s->pooled, s->cls, s->w.pool_w, s->w.pool_b, B, C, C);
  for (int64_t i = 0; i < B * C; i++) s->pooled[i] = tanhf(s->pooled[i]);
}

/* QA: per sequence and per k (0 start, 1 end), softmax over the real tokens of logits[., k]. */
static float qa_forward(bert_state *s, const lm_bert_batch *b, int64_t B, int64_t T) {
  double sum = 0; int64_t count = 0;
  for (int64_t i = 0; i < B; i++) {
    if (b->labels[2 * i] < 0) continue;
    count++;
    for (int k = 0; k < 2; k++) {
      const float *x = s->logits + i * T * 2 + k;    /* stride 2 */
      float mx = -INFINITY;
      for (int64_t t = 0; t < T; t++)
        if (!b->mask || b->mask[i * T + t]) mx = fmaxf(mx, x[2 * t]);
      double z = 0;
      for (int64_t t = 0; t < T; t++)
        if (!b->mask || b->mask[i * T + t]) z += exp((double)x[2 * t] - mx);
      sum += (double)mx + log(z) - x[2 * b->labels[2 * i + k]];
    }
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
      lm_error(LM_ERR_RANGE, "bert batch: mlm_soft_targets row %lld holds a value that is not a probability in [0, 1]",
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

float lm_bert_forward(lm_model *m, const lm_bert_batch *b, float *mlm_loss, float *nsp_loss) {
  if (mlm_loss) *mlm_loss = NAN;
  if (nsp_loss) *nsp_loss = NAN;
  bert_state *s = state(m);
  if (s) s->ok = 0;
  if (lm_bert_check_batch(m, b)) return NAN;
  const lm_config *c = &m->cfg;
  lm_acts *a = &m->acts;
  int64_t B = b->B, T = b->T, N = B * T, C = c->n_embd, V = c->vocab_size, L = c->n_layer, NL = c->num_labels;
  const int32_t *seg = b->segments ? b->segments : s->zeros;

  /* embeddings: emb = LN(wte[ids] + wpe[t] + wtt[seg]) */
  embedding_forward(s->emb_sum, b->ids, m->w.wte, N, C, 0);                               // (N,C)
  for (int64_t i = 0; i < B; i++) embedding_forward(s->emb_sum + i * T * C, a->pos, m->w.wpe, T, C, 1);
  if (s->w.wtt) embedding_forward(s->emb_sum, seg, s->w.wtt, N, C, 1);
  layernorm_forward(a->emb, s->emb_mean, s->emb_rstd, s->emb_sum, s->w.emb_ln_w, s->w.emb_ln_b, N, C, c->norm_eps);
  for (int64_t n = 0; n < N; n++) s->emb_ids[n] = b->ids[n] == c->pad_token_id ? -1 : b->ids[n];

  /* encoder */
  const float *x = a->emb;
  float *tmp = a->dtmp ? a->dtmp : a->lnf;   /* lnf is free until the (pre-LN only) final norm */
  for (int64_t l = 0; l < L; l++) {
    lm_block_forward(c, &m->w.h[l], &a->layer[l], x, tmp, b->mask, B, T);
    x = a->layer[l].res2;
  }
  if (c->pre_ln) layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, x, m->w.lnf_w, m->w.lnf_b, N, C, c->norm_eps);
  const float *hidden = c->pre_ln ? a->lnf : x;                                           // (N,C)

  s->has_mlm = s->has_nsp = s->has_head = s->has_distill = 0;
  s->fB = B; s->fT = T; s->M = 0; s->kl = NAN;
  float loss = NAN;
  switch (c->head) {
    case LM_HEAD_PRETRAIN: {
      /* MLM over the labelled rows (all rows when there are no labels) */
      int64_t M = 0;
      for (int64_t n = 0; n < N; n++)
        if (!b->mlm_labels || b->mlm_labels[n] >= 0) { s->rows[M] = (int32_t)n; s->mlm_tgt[M] = b->mlm_labels ? b->mlm_labels[n] : -1; M++; }
      s->M = M;
      if (M > 0) {
        for (int64_t i = 0; i < M; i++) memcpy(s->mlm_x + i * C, hidden + (int64_t)s->rows[i] * C, C * sizeof(float));
        matmul_forward(s->mlm_h, s->mlm_x, s->w.mlm_dw, s->w.mlm_db, M, C, C);           // (M,C)
        act_forward(s->mlm_g, s->mlm_h, M * C, c->act);
        layernorm_forward(s->mlm_t, s->mlm_mean, s->mlm_rstd, s->mlm_g, s->w.mlm_ln_w, s->w.mlm_ln_b, M, C, c->norm_eps);
        const float *dec = s->w.mlm_dec ? s->w.mlm_dec : m->w.wte;
        matmul_forward(a->logits, s->mlm_t, dec, s->w.mlm_bias, M, C, V);                 // (M,V)
        if (b->mlm_labels) {
          crossentropy_forward(a->losses, a->logits, s->mlm_tgt, M, V);
          float l_mlm = masked_mean(a->losses, a->dlosses, s->mlm_tgt, M, &s->has_mlm);
          if (mlm_loss) *mlm_loss = l_mlm;
          loss = l_mlm;
        }
        if (b->mlm_soft_targets) {
          /* alpha_ce * tau^2 * KL + alpha_mlm * CE; s->losses is free until NSP below */
          float tau = b->distill_temperature;
          s->kl = distill_forward(s->losses, a->logits, b->mlm_soft_targets, M, V, tau);
          if (isnan(s->kl)) return NAN;
          s->has_distill = 1;
          loss = b->distill_alpha_ce * tau * tau * s->kl + (s->has_mlm ? b->distill_alpha_mlm * loss : 0.0f);
        }
      }
      /* NSP on the pooled [CLS] */
      pooler_forward(s, hidden, B, T, C);
      matmul_forward(s->nsp_logits, s->pooled, s->w.nsp_w, s->w.nsp_b, B, C, 2);          // (B,2)
      if (b->nsp_labels) {
        memcpy(s->tgt, b->nsp_labels, B * sizeof(int32_t));
        crossentropy_forward(s->losses, s->nsp_logits, s->tgt, B, 2);
        float l_nsp = masked_mean(s->losses, s->dlosses, s->tgt, B, &s->has_nsp);
        if (nsp_loss) *nsp_loss = l_nsp;
        if (s->has_nsp) loss = s->has_mlm || s->has_distill ? loss + l_nsp : l_nsp;
      }
      break;
    }
    case LM_HEAD_CLASSIFY:
      pooler_forward(s, hidden, B, T, C);
      matmul_forward(s->logits, s->pooled, s->w.head_w, s->w.head_b, B, C, NL);            // (B,L)
      if (b->labels) {
        memcpy(s->tgt, b->labels, B * sizeof(int32_t));
        crossentropy_forward(s->losses, s->logits, s->tgt, B, NL);
        loss = masked_mean(s->losses, s->dlosses, s->tgt, B, &s->has_head);
      }
      break;
    case LM_HEAD_TOKENS:
      matmul_forward(s->logits, hidden, s->w.head_w, s->w.head_b, N, C, NL);               // (N,L)
      if (b->labels) {
        for (int64_t n = 0; n < N; n++) s->tgt[n] = (b->mask && !b->mask[n]) ? -1 : b->labels[n];
        crossentropy_forward(s->losses, s->logits, s->tgt, N, NL);
        loss = masked_mean(s->losses, s->dlosses, s->tgt, N, &s->has_head);
      }
      break;
    case LM_HEAD_QA:
      matmul_forward(s->logits, hidden, s->w.head_w, s->w.head_b, N, C, 2);                // (N,2)
      if (b->labels) {
        loss = qa_forward(s, b, B, T);
        s->has_head = !isnan(loss);
      }
      break;
  }
  s->ok = 1;
  return loss;
}

/* ------------------------------------------------------------------ backward */

/* dhidden rows b*T += d(cls) from d(pooled) (B,C) in s->d1; uses s->d2 */
static void pooler_backward(bert_state *s, float *dhidden, int64_t B, int64_t T, int64_t C) {
  for (int64_t i = 0; i < B * C; i++) s->d2[i] = s->d1[i] * (1.0f - s->pooled[i] * s->pooled[i]);
  memset(s->d1, 0, B * C * sizeof(float));
  matmul_backward(s->d1, s->g.pool_w, s->g.pool_b, s->d2, s->cls, s->w.pool_w, B, C, C);
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < C; j++) dhidden[b * T * C + j] += s->d1[b * C + j];
}

void lm_bert_backward(lm_model *m, const lm_bert_batch *b) {
  bert_state *s = state(m);
  lm_acts *a = &m->acts;
  if (!s || !s->ok || !s->grads || !m->grads || !a->dres_a || b->B != s->fB || b->T != s->fT) return;
  const lm_config *c = &m->cfg;
  int64_t B = b->B, T = b->T, N = B * T, C = c->n_embd, V = c->vocab_size, L = c->n_layer, NL = c->num_labels;
  size_t bytes = N * C * sizeof(float);
  float *P = a->dres_a, *Q = a->dres_b;
  memset(P, 0, bytes);                                                                     // d hidden (N,C)
  const float *hidden = c->pre_ln ? a->lnf : a->layer[L - 1].res2;
  switch (c->head) {
    case LM_HEAD_PRETRAIN:
      if (s->has_mlm || s->has_distill) {
        int64_t M = s->M;
        if (s->has_distill)
          distill_backward(a->logits, b->mlm_soft_targets, s->mlm_tgt, a->dlosses, M, V, b->distill_temperature,
                           b->distill_alpha_ce, s->has_mlm ? b->distill_alpha_mlm : 0.0f);   // (M,V) in place
        else
          crossentropy_backward(a->logits, a->logits, s->mlm_tgt, a->dlosses, M, V);      // (M,V) in place
        const float *dec = s->w.mlm_dec ? s->w.mlm_dec : m->w.wte;
        float *ddec = s->w.mlm_dec ? s->g.mlm_dec : m->g.wte;
        memset(s->d1, 0, M * C * sizeof(float));
        matmul_backward(s->d1, ddec, s->g.mlm_bias, a->logits, s->mlm_t, dec, M, C, V);   // d mlm_t
        memset(s->d2, 0, M * C * sizeof(float));
        layernorm_backward(s->d2, s->g.mlm_ln_w, s->g.mlm_ln_b, s->d1, s->mlm_g, s->w.mlm_ln_w, s->mlm_mean,
                           s->mlm_rstd, M, C);                                             // d mlm_g
        memset(s->d1, 0, M * C * sizeof(float));
        act_backward(s->d1, s->mlm_h, s->d2, M * C, c->act);                               // d mlm_h
        memset(s->d2, 0, M * C * sizeof(float));
        matmul_backward(s->d2, s->g.mlm_dw, s->g.mlm_db, s->d1, s->mlm_x, s->w.mlm_dw, M, C, C); // d mlm_x
        for (int64_t i = 0; i < M; i++) {
          float *dst = P + (int64_t)s->rows[i] * C;
          for (int64_t j = 0; j < C; j++) dst[j] += s->d2[i * C + j];
        }
      }
      if (s->has_nsp) {
        crossentropy_backward(s->dlogits, s->nsp_logits, s->tgt, s->dlosses, B, 2);       // (B,2)
        memset(s->d1, 0, B * C * sizeof(float));
        matmul_backward(s->d1, s->g.nsp_w, s->g.nsp_b, s->dlogits, s->pooled, s->w.nsp_w, B, C, 2);
        pooler_backward(s, P, B, T, C);
      }
      break;
    case LM_HEAD_CLASSIFY:
      if (!s->has_head) break;
      crossentropy_backward(s->dlogits, s->logits, s->tgt, s->dlosses, B, NL);             // (B,L)
      memset(s->d1, 0, B * C * sizeof(float));
      matmul_backward(s->d1, s->g.head_w, s->g.head_b, s->dlogits, s->pooled, s->w.head_w, B, C, NL);
      pooler_backward(s, P, B, T, C);
      break;
    case LM_HEAD_TOKENS:
      if (!s->has_head) break;
      crossentropy_backward(s->dlogits, s->logits, s->tgt, s->dlosses, N, NL);             // (N,L)
      matmul_backward(P, s->g.head_w, s->g.head_b, s->dlogits, hidden, s->w.head_w, N, C, NL);
      break;
    case LM_HEAD_QA:
      if (!s->has_head) break;
      /* d logits[n,k] = (softmax over the real tokens - onehot(label)) * 0.5 / count */
      memset(s->dlogits, 0, N * 2 * sizeof(float));
      for (int64_t i = 0; i < B; i++) {
        if (b->labels[2 * i] < 0) continue;
        for (int k = 0; k < 2; k++) {
          const float *x = s->logits + i * T * 2 + k;
          float *dx = s->dlogits + i * T * 2 + k;
          float mx = -INFINITY;
          for (int64_t t = 0; t < T; t++)
            if (!b->mask || b->mask[i * T + t]) mx = fmaxf(mx, x[2 * t]);
          double z = 0;
          for (int64_t t = 0; t < T; t++)
            if (!b->mask || b->mask[i * T + t]) z += exp((double)x[2 * t] - mx);
          for (int64_t t = 0; t < T; t++)
            if (!b->mask || b->mask[i * T + t]) dx[2 * t] = (float)(exp((double)x[2 * t] - mx) / z) * s->qa_scale;
          dx[2 * b->labels[2 * i + k]] -= s->qa_scale;
        }
      }
      matmul_backward(P, s->g.head_w, s->g.head_b, s->dlogits, hidden, s->w.head_w, N, C, 2);
      break;
  }
  if (c->pre_ln) {
    memset(Q, 0, bytes);
    layernorm_backward(Q, m->g.lnf_w, m->g.lnf_b, P, a->layer[L - 1].res2, m->w.lnf_w, a->lnf_mean, a->lnf_rstd, N, C);
    float *t = P; P = Q; Q = t;
  }
  for (int64_t l = L - 1; l >= 0; l--) {
    const float *x = l ? a->layer[l - 1].res2 : a->emb;
    lm_block_backward(c, &m->w.h[l], &m->g.h[l], &a->layer[l], a, x, P, Q, B, T);
  }
  /* P = d emb; through the embedding LayerNorm into the three tables */
  memset(Q, 0, bytes);
  layernorm_backward(Q, s->g.emb_ln_w, s->g.emb_ln_b, P, s->emb_sum, s->w.emb_ln_w, s->emb_mean, s->emb_rstd, N, C);
  embedding_backward(m->g.wte, Q, s->emb_ids, N, C);
  for (int64_t i = 0; i < B; i++) embedding_backward(m->g.wpe, Q + i * T * C, a->pos, T, C);
  if (s->g.wtt) embedding_backward(s->g.wtt, Q, b->segments ? b->segments : s->zeros, N, C);
}

/* ------------------------------------------------------------------ accessors */

const float *lm_bert_hidden(const lm_model *m) {
  if (!state(m)) return NULL;
  return m->cfg.pre_ln ? m->acts.lnf : m->acts.layer[m->cfg.n_layer - 1].res2;
}

const float *lm_bert_pooled(const lm_model *m) {
  const bert_state *s = state(m);
  return s && (m->cfg.head == LM_HEAD_PRETRAIN || m->cfg.head == LM_HEAD_CLASSIFY) ? s->pooled : NULL;
}

const float *lm_bert_logits(const lm_model *m) {
  const bert_state *s = state(m);
  if (!s) return NULL;
  return m->cfg.head == LM_HEAD_PRETRAIN ? m->acts.logits : s->logits;
}

int64_t lm_bert_mlm_rows(const lm_model *m, const int32_t **rows) {
  const bert_state *s = state(m);
  if (rows) *rows = s ? s->rows : NULL;
  return s ? s->M : 0;
}

const float *lm_bert_nsp_logits(const lm_model *m) {
  const bert_state *s = state(m);
  return s && m->cfg.head == LM_HEAD_PRETRAIN ? s->nsp_logits : NULL;
}

float lm_bert_distill_kl(const lm_model *m) {
  const bert_state *s = state(m);
  return s && s->ok && s->has_distill ? s->kl : NAN;
}

/* ------------------------------------------------------------------ Hugging Face names */

/* transformers' name for internal tensor `name` (part 0,1,2 = query,key,value of c_attn),
 * without the "bert." prefix; returns 1 for base-model tensors (prefixed "bert." in the task
 * models), 0 for top-level head tensors, -1 if unknown. `layer` overrides the layer index
 * (shared layers are written once per layer), or -1. */
static int hf_name(const char *name, int part, int64_t layer, char *out, size_t n) {
  static const struct { const char *ours, *hf; int base; } map[] = {
      {"wte.weight", "embeddings.word_embeddings.weight", 1},
      {"wpe.weight", "embeddings.position_embeddings.weight", 1},
      {"wtt.weight", "embeddings.token_type_embeddings.weight", 1},
      {"emb_ln.weight", "embeddings.LayerNorm.weight", 1},
      {"emb_ln.bias", "embeddings.LayerNorm.bias", 1},
      {"ln_f.weight", "encoder.ln_f.weight", 1},            /* pre-LN variant only: lmkit's own */
      {"ln_f.bias", "encoder.ln_f.bias", 1},
      {"pooler.weight", "pooler.dense.weight", 1},
      {"pooler.bias", "pooler.dense.bias", 1},
      {"mlm.dense.weight", "cls.predictions.transform.dense.weight", 0},
      {"mlm.dense.bias", "cls.predictions.transform.dense.bias", 0},
      {"mlm.ln.weight", "cls.predictions.transform.LayerNorm.weight", 0},
      {"mlm.ln.bias", "cls.predictions.transform.LayerNorm.bias", 0},
      {"mlm.bias", "cls.predictions.bias", 0},
      {"mlm.decoder.weight", "cls.predictions.decoder.weight", 0},
      {"nsp.weight", "cls.seq_relationship.weight", 0},
      {"nsp.bias", "cls.seq_relationship.bias", 0},
      {"classifier.weight", "classifier.weight", 0},
      {"classifier.bias", "classifier.bias", 0},
      {"token_classifier.weight", "classifier.weight", 0},
      {"token_classifier.bias", "classifier.bias", 0},
      {"qa_outputs.weight", "qa_outputs.weight", 0},
      {"qa_outputs.bias", "qa_outputs.bias", 0},
  };
  for (size_t i = 0; i < sizeof map / sizeof *map; i++)
    if (!strcmp(name, map[i].ours)) { snprintf(out, n, "%s", map[i].hf); return map[i].base; }
  long long l;
  int k = 0;
  if (sscanf(name, "h.%lld.%n", &l, &k) != 1 || k == 0) return -1;
  if (layer >= 0) l = layer;
  const char *rest = name + k;
  static const struct { const char *ours, *hf; } blk[] = {
      {"ln_1.", "attention.output.LayerNorm."}, {"attn.c_proj.", "attention.output.dense."},
      {"mlp.c_fc.", "intermediate.dense."},     {"mlp.c_proj.", "output.dense."},
      {"ln_2.", "output.LayerNorm."},
  };
  static const char *qkv[3] = {"query", "key", "value"};
  if (!strncmp(rest, "attn.c_attn.", 12)) {
    snprintf(out, n, "encoder.layer.%lld.attention.self.%s.%s", l, qkv[part], rest + 12);
    return 1;
  }
  for (size_t i = 0; i < sizeof blk / sizeof *blk; i++) {
    size_t len = strlen(blk[i].ours);
    if (!strncmp(rest, blk[i].ours, len)) { snprintf(out, n, "encoder.layer.%lld.%s%s", l, blk[i].hf, rest + len); return 1; }
  }
  return -1;
}

static int is_qkv(const char *name) { return strstr(name, ".attn.c_attn.") != NULL; }

lm_status lm_bert_save(const lm_model *m, const char *dir) {
  if (!m || m->cfg.arch != LM_ARCH_BERT) return lm_error(LM_ERR_ARG, "lm_bert_save: not a bert model");
  lm_status st = lm_mkdir_p(dir);
  if (st) return st;
  const lm_config *c = &m->cfg;
  int64_t reps = c->share_layers ? c->n_layer : 1;   /* shared layers are written as n_layer copies */
  int cap = (int)(m->n_info * 3 * reps);
  lm_st_entry *e = calloc(cap, sizeof *e);
  char (*names)[LM_MAX_NAME + 64] = calloc(cap, sizeof *names);
  if (!e || !names) { free(e); free(names); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  int n = 0;
  for (int i = 0; i < m->n_info; i++) {
    const lm_param_info *p = &m->info[i];
    int layered = !strncmp(p->name, "h.", 2);
    int parts = is_qkv(p->name) ? 3 : 1;
    for (int64_t r = 0; r < (layered ? reps : 1); r++)
      for (int k = 0; k < parts; k++) {
        char hf[LM_MAX_NAME + 32];
        int base = hf_name(p->name, k, c->share_layers && layered ? r : -1, hf, sizeof hf);
        if (base < 0) { free(e); free(names); return lm_error(LM_ERR_FORMAT, "internal: no HF name for '%s'", p->name); }
        snprintf(names[n], sizeof names[n], "%s%s", base ? "bert." : "", hf);
        size_t piece = p->numel / parts;
        e[n] = (lm_st_entry){.name = names[n], .ndim = p->ndim, .data = m->params + p->offset + k * piece};
        e[n].shape[0] = p->shape[0] / parts;
        e[n].shape[1] = p->shape[1];
        n++;
      }
  }
  char *wpath = lm_path_join(dir, "model.safetensors"), *cpath = lm_path_join(dir, "config.json");
  if (!wpath || !cpath) st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st) st = lm_st_write(wpath, e, n, NULL);
  if (!st) st = lm_config_save(c, cpath);
  free(wpath); free(cpath); free(e); free(names);
  return st;
}

/* Finds `hf` in f: with and without the "bert." prefix, and the TF-era LayerNorm.gamma/beta names. */
static int find_hf(const lm_st_file *f, const char *hf, int base) {
  char nm[LM_MAX_NAME + 80];
  for (int alt = 0; alt < 2; alt++) {
    const char *s = hf;
    char tmp[LM_MAX_NAME + 64];
    if (alt) {
      size_t len = strlen(hf);
      if (len >= 16 && !strcmp(hf + len - 16, "LayerNorm.weight")) snprintf(tmp, sizeof tmp, "%.*sgamma", (int)(len - 6), hf);
      else if (len >= 14 && !strcmp(hf + len - 14, "LayerNorm.bias")) snprintf(tmp, sizeof tmp, "%.*sbeta", (int)(len - 4), hf);
      else continue;
      s = tmp;
    }
    int idx;
    if (base) {
      snprintf(nm, sizeof nm, "bert.%s", s);
      if ((idx = lm_st_find(f, nm)) >= 0) return idx;
    }
    if ((idx = lm_st_find(f, s)) >= 0) return idx;
  }
  return -1;
}

/* BERT initialisation of one tensor (a head the file lacks) */
static void init_tensor(lm_model *m, const lm_param_info *p, lm_rng *r) {
  float *x = m->params + p->offset;
  size_t len = strlen(p->name);
  if (len > 5 && !strcmp(p->name + len - 5, ".bias")) { memset(x, 0, p->numel * sizeof(float)); return; }
  if (len >= 9 && !strcmp(p->name + len - 9, "ln.weight")) { for (size_t j = 0; j < p->numel; j++) x[j] = 1.0f; return; }
  for (size_t j = 0; j < p->numel; j++) x[j] = m->cfg.init_std * lm_rng_normal(r);
}

/* encoder tensors must be in the file; the pooler and head tensors may be absent (initialised) */
static int is_optional(const char *name) {
  return !strncmp(name, "pooler.", 7) || !strncmp(name, "mlm.", 4) || !strncmp(name, "nsp.", 4) ||
         !strncmp(name, "classifier.", 11) || !strncmp(name, "token_classifier.", 17) || !strncmp(name, "qa_outputs.", 11);
}

static lm_status load_weights(lm_model *m, const char *path, int load_head, uint64_t seed) {
  lm_st_file *f;
  lm_status st = lm_st_open(&f, path);
  if (st) return st;
  const lm_config *c = &m->cfg;
  int nt = lm_st_count(f);
  char *used = calloc(nt + 1, 1);
  if (!used) { lm_st_close(f); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  lm_rng rng;
  lm_rng_seed(&rng, seed);
  for (int i = 0; i < m->n_info && !st; i++) {
    const lm_param_info *p = &m->info[i];
    int parts = is_qkv(p->name) ? 3 : 1, opt = is_optional(p->name);
    int head_tensor = opt && strncmp(p->name, "pooler.", 7);
    int loaded = 0;
    for (int k = 0; k < parts && !st; k++) {
      char hf[LM_MAX_NAME + 32];
      int base = hf_name(p->name, k, -1, hf, sizeof hf);
      int idx = base < 0 || (head_tensor && !load_head) ? -1 : find_hf(f, hf, base);
      if (idx < 0 && !strcmp(p->name, "mlm.bias")) idx = find_hf(f, "cls.predictions.decoder.bias", 0);
      if (idx < 0) {
        if (!opt) st = lm_error(LM_ERR_FORMAT, "%s: missing tensor '%s%s'", path, base > 0 ? "bert." : "", hf);
        break;
      }
      int64_t shape[2] = {p->shape[0] / parts, p->shape[1]};
      size_t piece = p->numel / parts;
      st = lm_st_read_f32(f, idx, m->params + p->offset + k * piece, shape, p->ndim, 0);
      used[idx] = 1;
      loaded = k == parts - 1;
    }
    if (!st && !loaded) init_tensor(m, p, &rng);
  }
  /* anything else must be a known non-parameter: buffers, a tied decoder copy, other heads' tensors,
   * the copies of shared layers */
  for (int i = 0; i < nt && !st; i++) {
    if (used[i]) continue;
    const char *name = lm_st_name(f, i);
    const char *base = strncmp(name, "bert.", 5) ? name : name + 5;
    size_t len = strlen(base);
    if (len >= 12 && !strcmp(base + len - 12, "position_ids")) continue;
    if (!strncmp(base, "cls.", 4) || !strncmp(base, "classifier.", 11) || !strncmp(base, "qa_outputs.", 11) ||
        !strncmp(base, "pooler.", 7))
      continue;
    long long l;
    if (c->share_layers && sscanf(base, "encoder.layer.%lld.", &l) == 1 && l >= 0 && l < c->n_layer) continue;
    st = lm_error(LM_ERR_FORMAT, "%s: unexpected tensor '%s' for a %lld-layer bert config", path, name,
                  (long long)c->n_layer);
  }
  free(used);
  lm_st_close(f);
  return st;
}

lm_status lm_bert_load_head(lm_model **out, const char *dir, lm_bert_head head, int64_t num_labels, uint64_t seed) {
  *out = NULL;
  if (!lm_dir_exists(dir)) return lm_error(LM_ERR_IO, "%s: no such model directory", dir);
  char *cpath = lm_path_join(dir, "config.json"), *wpath = lm_path_join(dir, "model.safetensors");
  if (!cpath || !wpath) { free(cpath); free(wpath); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  lm_config cfg;
  lm_status st = lm_config_load(&cfg, cpath);
  if (!st && cfg.arch != LM_ARCH_BERT)
    st = lm_error(LM_ERR_ARG, "%s: model_type '%s' is not bert", cpath, lm_arch_name(cfg.arch));
  int load_head = 0;
  if (!st) {
    /* the head's tensors come from the file only when it has this very head */
    load_head = cfg.head == (int)head && (num_labels <= 0 || num_labels == cfg.num_labels);
    cfg.head = head;
    if (num_labels > 0) cfg.num_labels = num_labels;
    st = lm_config_validate(&cfg);
    if (st) lm_error_prefix(st, "%s", cpath);
  }
  lm_model *m = NULL;
  if (!st) st = lm_model_alloc(&m, &cfg);
  if (!st) st = load_weights(m, wpath, load_head, seed);
  free(cpath); free(wpath);
  if (st) { lm_model_free(m); return st; }
  *out = m;
  return LM_OK;
}

lm_status lm_bert_load(lm_model **out, const char *dir) {
  *out = NULL;
  char *cpath = lm_path_join(dir, "config.json");
  if (!cpath) return lm_error(LM_ERR_NOMEM, "out of memory");
  lm_config cfg;
  lm_status st = lm_dir_exists(dir) ? lm_config_load(&cfg, cpath) : lm_error(LM_ERR_IO, "%s: no such model directory", dir);
  free(cpath);
  if (st) return st;
  return lm_bert_load_head(out, dir, (lm_bert_head)cfg.head, 0, 0);
}
