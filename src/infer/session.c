/* session.c — forward passes for inference with a KV cache.
 *
 * Unlike training (src/model/model.c), nothing is kept for backward: each
 * block's output overwrites its input, and the only state is the cache of
 * keys and values, (L, max_len, KVC) each (KVC = NKV*hs: grouped-query
 * attention caches only the key/value heads), with head h in columns
 * h*hs..(h+1)*hs. Keys are cached after RoPE, so a cached key never moves.
 * Tokens are fed in chunks: a prompt (prefill) runs as matrix-matrix products,
 * a single decoded token as matrix-vector products, which are bound by how
 * fast the weights stream from memory. Only the last token's logits are
 * computed, since only they are sampled from. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/heads.h"
#include "infer/infer.h"

#define CHUNK 256   /* prompt tokens per forward pass: bounds the scratch memory */

struct lm_session {
  const lm_model *m;
  int64_t max_len, pos;
  float *kcache, *vcache;   /* (L, max_len, KVC) */
  float *x, *a, *t, *y;     /* (CHUNK, C) */
  float *qkv;               /* (CHUNK, QKV) */
  float *h, *g;             /* (CHUNK, FW), (CHUNK, F): the FFN's hidden layer before and after a gate */
  float *mean, *rstd;       /* (CHUNK) */
  float *scores;            /* (NH, CHUNK, max_len) */
  float *logits;            /* (V) */
  int32_t *pos_ids;         /* (CHUNK) */
};

lm_status lm_session_init(lm_session **out, const lm_model *m, int64_t max_len) {
  const lm_config *c = &m->cfg;
  *out = NULL;
  if (!c->causal || c->head != LM_HEAD_LM || !m->fam->embed_tokens)
    return lm_error(LM_ERR_UNSUPPORTED, "generation needs a causal decoder with an LM head; this is a %s model with a %s head",
                    lm_arch_name(c->arch), lm_head_name(c->head));
  if (m->lora)   /* the cache's kernels read the base weights only */
    return lm_error(LM_ERR_UNSUPPORTED, "generation runs on the base weights: merge the LoRA adapter first (lm_lora_merge)");
  if (max_len <= 0 || max_len > c->n_positions)
    return lm_error(LM_ERR_RANGE, "a sequence of %lld tokens does not fit the model's context of %lld",
                    (long long)max_len, (long long)c->n_positions);
  lm_session *s = calloc(1, sizeof *s);
  if (!s) return lm_error(LM_ERR_NOMEM, "out of memory");
  int64_t C = c->n_embd, L = c->n_layer, F = lm_ffn_width(c), FW = lm_fc_width(c), NH = c->n_head, n = CHUNK;
  int64_t KVC = lm_kv_heads(c) * (C / NH);
  s->m = m; s->max_len = max_len;
  s->kcache = lm_alloc((size_t)L * max_len * KVC * sizeof(float));
  s->vcache = lm_alloc((size_t)L * max_len * KVC * sizeof(float));
  s->x = lm_alloc(n * C * sizeof(float)); s->a = lm_alloc(n * C * sizeof(float));
  s->t = lm_alloc(n * C * sizeof(float)); s->y = lm_alloc(n * C * sizeof(float));
  s->qkv = lm_alloc(n * lm_qkv_width(c) * sizeof(float)); s->h = lm_alloc(n * FW * sizeof(float));
  s->g = c->glu ? lm_alloc(n * F * sizeof(float)) : s->h;
  s->mean = lm_alloc(n * sizeof(float)); s->rstd = lm_alloc(n * sizeof(float));
  s->scores = lm_alloc((size_t)NH * n * max_len * sizeof(float));
  s->logits = lm_alloc(c->vocab_size * sizeof(float));
  s->pos_ids = malloc(n * sizeof(int32_t));
  if (!s->kcache || !s->vcache || !s->x || !s->a || !s->t || !s->y || !s->qkv || !s->h || !s->g || !s->mean ||
      !s->rstd || !s->scores || !s->logits || !s->pos_ids) {
    lm_session_free(s);
    return lm_error(LM_ERR_NOMEM, "out of memory for a KV cache of %lld tokens", (long long)max_len);
  }
  *out = s;
  return LM_OK;
}

void lm_session_free(lm_session *s) {
  if (!s) return;
  lm_free(s->kcache); lm_free(s->vcache); lm_free(s->x); lm_free(s->a); lm_free(s->t); lm_free(s->y);
  if (s->g != s->h) lm_free(s->g);
  lm_free(s->qkv); lm_free(s->h); lm_free(s->mean); lm_free(s->rstd); lm_free(s->scores); lm_free(s->logits);
  free(s->pos_ids);
  free(s);
}

void lm_session_reset(lm_session *s) { s->pos = 0; }
int64_t lm_session_pos(const lm_session *s) { return s->pos; }

/* out(n,OC) = inp(n,C) @ W(OC,C)^T + b; one row goes through gemv, which streams W once. */
static void linear(float *out, const float *inp, const float *w, const float *b, int64_t n, int64_t C, int64_t OC) {
  if (n > 1) { matmul_forward(out, inp, w, b, n, C, OC); return; }
  cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)OC, (int)C, 1.0f, w, (int)C, inp, 1, 0.0f, out, 1);
  if (b) for (int64_t o = 0; o < OC; o++) out[o] += b[o];
}

static void norm(const lm_config *c, float *out, lm_session *s, const float *inp, const float *w, const float *b, int64_t n) {
  if (c->norm == LM_NORM_RMS) rmsnorm_forward(out, s->rstd, inp, w, n, c->n_embd, c->norm_eps);
  else layernorm_forward(out, s->mean, s->rstd, inp, w, b, n, c->n_embd, c->norm_eps);
}

/* y(n,C): n new queries at positions p0.. attend (causally, within the sliding window if any) to the
 * cached keys 0..p0+n-1; query head h reads key/value head h / (NH/NKV). */
static void attention_cached(lm_session *s, float *y, const float *qkv, const float *K, const float *V,
                             int64_t p0, int64_t n) {
  const lm_config *c = &s->m->cfg;
  int64_t C = c->n_embd, NH = c->n_head, hs = C / NH, Lk = p0 + n, QKV = lm_qkv_width(c);
  int64_t KVC = lm_kv_heads(c) * hs, group = NH / lm_kv_heads(c), win = c->sliding_window;
  float scale = 1.0f / sqrtf((float)hs);
  /* a decoded token's per-head work is microseconds: a fork/join would cost more than it saves */
  #pragma omp parallel for schedule(static) if (n * Lk * hs * NH >= 65536)
  for (int64_t h = 0; h < NH; h++) {
    float *S = s->scores + h * n * s->max_len;   /* (n, Lk), row stride Lk */
    const float *Kh = K + (h / group) * hs, *Vh = V + (h / group) * hs;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)Lk, (int)hs, scale, qkv + h * hs, (int)QKV,
                Kh, (int)KVC, 0.0f, S, (int)Lk);
    for (int64_t i = 0; i < n; i++) {
      float *row = S + i * Lk;
      int64_t visible = c->causal ? p0 + i + 1 : Lk;
      int64_t lo = win > 0 && visible - win > 0 ? visible - win : 0;
      float mx = -INFINITY;
      for (int64_t j = lo; j < visible; j++) mx = row[j] > mx ? row[j] : mx;
      float sum = 0;
      for (int64_t j = lo; j < visible; j++) { row[j] = expf(row[j] - mx); sum += row[j]; }
      float inv = 1.0f / sum;
      for (int64_t j = 0; j < lo; j++) row[j] = 0.0f;
      for (int64_t j = lo; j < visible; j++) row[j] *= inv;
      for (int64_t j = visible; j < Lk; j++) row[j] = 0.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)hs, (int)Lk, 1.0f, S, (int)Lk,
                Vh, (int)KVC, 0.0f, y + h * hs, (int)C);
  }
}

/* the FFN: t(n,C) = proj(act(fc(a))) or proj(silu(gate(a)) * up(a)) */
static void mlp(lm_session *s, const lm_block_weights *w, const float *a, int64_t n) {
  const lm_config *c = &s->m->cfg;
  int64_t C = c->n_embd, F = lm_ffn_width(c);
  linear(s->h, a, w->fc_w, w->fc_b, n, C, lm_fc_width(c));
  if (c->glu) glu_forward(s->g, s->h, n, F);
  else act_forward(s->h, s->h, n * F, c->act);
  linear(s->t, s->g, w->fc_proj_w, w->fc_proj_b, n, F, C);
}

static void feed_chunk(lm_session *s, const int32_t *ids, int64_t n) {
  const lm_model *m = s->m;
  const lm_config *c = &m->cfg;
  int64_t C = c->n_embd, p0 = s->pos, QKV = lm_qkv_width(c), NH = c->n_head, NKV = lm_kv_heads(c);
  int64_t KVC = NKV * (C / NH);
  for (int64_t i = 0; i < n; i++) s->pos_ids[i] = (int32_t)(p0 + i);
  m->fam->embed_tokens(m, ids, s->pos_ids, n, s->x);
  for (int64_t l = 0; l < c->n_layer; l++) {
    const lm_block_weights *w = &m->w.h[l];
    float *K = s->kcache + (size_t)l * s->max_len * KVC, *V = s->vcache + (size_t)l * s->max_len * KVC;
    const float *ain = s->x;
    if (c->pre_ln) { norm(c, s->a, s, s->x, w->ln1_w, w->ln1_b, n); ain = s->a; }
    linear(s->qkv, ain, w->qkv_w, w->qkv_b, n, C, QKV);
    if (m->rope) rope_apply(s->qkv, QKV, NH + NKV, C / NH, s->pos_ids, m->rope, n, 0);
    for (int64_t i = 0; i < n; i++) {
      memcpy(K + (p0 + i) * KVC, s->qkv + i * QKV + C, KVC * sizeof(float));
      memcpy(V + (p0 + i) * KVC, s->qkv + i * QKV + C + KVC, KVC * sizeof(float));
    }
    attention_cached(s, s->y, s->qkv, K, V, p0, n);
    linear(s->t, s->y, w->attn_proj_w, w->attn_proj_b, n, C, C);
    if (c->pre_ln) {
      residual_forward(s->x, s->x, s->t, n * C);
      norm(c, s->a, s, s->x, w->ln2_w, w->ln2_b, n);
      mlp(s, w, s->a, n);
      residual_forward(s->x, s->x, s->t, n * C);
    } else {
      residual_forward(s->a, s->x, s->t, n * C);
      norm(c, s->x, s, s->a, w->ln1_w, w->ln1_b, n);
      mlp(s, w, s->x, n);
      residual_forward(s->a, s->x, s->t, n * C);
      norm(c, s->x, s, s->a, w->ln2_w, w->ln2_b, n);
    }
  }
  s->pos += n;
}

lm_status lm_session_feed(lm_session *s, const int32_t *ids, int64_t n, const float **logits) {
  const lm_config *c = &s->m->cfg;
  if (n <= 0) return lm_error(LM_ERR_ARG, "nothing to feed");
  if (s->pos + n > s->max_len)
    return lm_error(LM_ERR_RANGE, "%lld tokens exceed the context of %lld", (long long)(s->pos + n), (long long)s->max_len);
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= c->vocab_size)
      return lm_error(LM_ERR_RANGE, "token id %d is outside the vocabulary (%lld)", ids[i], (long long)c->vocab_size);
  for (int64_t done = 0; done < n; done += CHUNK) {
    int64_t k = n - done < CHUNK ? n - done : CHUNK;
    feed_chunk(s, ids + done, k);
    if (done + k == n) {
      /* the last token's hidden state -> final norm -> logits */
      const float *last = s->x + (k - 1) * c->n_embd;
      if (c->pre_ln) { norm(c, s->a, s, last, s->m->w.lnf_w, s->m->w.lnf_b, 1); last = s->a; }
      const float *head = lm_model_lm_head(s->m);
      linear(s->logits, last, head, NULL, 1, c->n_embd, c->vocab_size);
    }
  }
  if (logits) *logits = s->logits;
  return LM_OK;
}
