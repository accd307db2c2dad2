/* session.c — forward passes for inference with a KV cache.
 *
 * Unlike training (src/model/model.c), nothing is kept for backward: each
 * block's output overwrites its input, and the only state is the cache of
 * keys and values, (L, max_len, C) each, with head h in columns h*hs..(h+1)*hs.
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
  float *kcache, *vcache;   /* (L, max_len, C) */
  float *x, *a, *t, *y;     /* (CHUNK, C) */
  float *qkv;               /* (CHUNK, 3C) */
  float *h;                 /* (CHUNK, F) */
  float *mean, *rstd;       /* (CHUNK) */
  float *scores;            /* (NH, CHUNK, max_len) */
  float *logits;            /* (V) */
  int32_t *pos_ids;         /* (CHUNK) */
};

static int64_t ffn(const lm_config *c) { return c->n_inner > 0 ? c->n_inner : 4 * c->n_embd; }

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
  int64_t C = c->n_embd, L = c->n_layer, F = ffn(c), NH = c->n_head, n = CHUNK;
  s->m = m; s->max_len = max_len;
  s->kcache = lm_alloc((size_t)L * max_len * C * sizeof(float));
  s->vcache = lm_alloc((size_t)L * max_len * C * sizeof(float));
  s->x = lm_alloc(n * C * sizeof(float)); s->a = lm_alloc(n * C * sizeof(float));
  s->t = lm_alloc(n * C * sizeof(float)); s->y = lm_alloc(n * C * sizeof(float));
  s->qkv = lm_alloc(n * 3 * C * sizeof(float)); s->h = lm_alloc(n * F * sizeof(float));
  s->mean = lm_alloc(n * sizeof(float)); s->rstd = lm_alloc(n * sizeof(float));
  s->scores = lm_alloc((size_t)NH * n * max_len * sizeof(float));
  s->logits = lm_alloc(c->vocab_size * sizeof(float));
  s->pos_ids = malloc(n * sizeof(int32_t));
  if (!s->kcache || !s->vcache || !s->x || !s->a || !s->t || !s->y || !s->qkv || !s->h || !s->mean ||
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

/* y(n,C): n new queries at positions p0.. attend (causally) to the cached keys 0..p0+n-1. */
static void attention_cached(lm_session *s, float *y, const float *qkv, const float *K, const float *V,
                             int64_t p0, int64_t n) {
  const lm_config *c = &s->m->cfg;
  int64_t C = c->n_embd, NH = c->n_head, hs = C / NH, Lk = p0 + n;
  float scale = 1.0f / sqrtf((float)hs);
  /* a decoded token's per-head work is microseconds: a fork/join would cost more than it saves */
  #pragma omp parallel for schedule(static) if (n * Lk * hs * NH >= 65536)
  for (int64_t h = 0; h < NH; h++) {
    float *S = s->scores + h * n * s->max_len;   /* (n, Lk), row stride Lk */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)Lk, (int)hs, scale, qkv + h * hs, (int)(3 * C),
                K + h * hs, (int)C, 0.0f, S, (int)Lk);
    for (int64_t i = 0; i < n; i++) {
      float *row = S + i * Lk;
      int64_t visible = c->causal ? p0 + i + 1 : Lk;
      float mx = -INFINITY;
      for (int64_t j = 0; j < visible; j++) mx = row[j] > mx ? row[j] : mx;
      float sum = 0;
      for (int64_t j = 0; j < visible; j++) { row[j] = expf(row[j] - mx); sum += row[j]; }
      float inv = 1.0f / sum;
      for (int64_t j = 0; j < visible; j++) row[j] *= inv;
      for (int64_t j = visible; j < Lk; j++) row[j] = 0.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)hs, (int)Lk, 1.0f, S, (int)Lk,
                V + h * hs, (int)C, 0.0f, y + h * hs, (int)C);
  }
}

static void feed_chunk(lm_session *s, const int32_t *ids, int64_t n) {
  const lm_model *m = s->m;
  const lm_config *c = &m->cfg;
  int64_t C = c->n_embd, F = ffn(c), p0 = s->pos;
  for (int64_t i = 0; i < n; i++) s->pos_ids[i] = (int32_t)(p0 + i);
  m->fam->embed_tokens(m, ids, s->pos_ids, n, s->x);
  for (int64_t l = 0; l < c->n_layer; l++) {
    const lm_block_weights *w = &m->w.h[l];
    float *K = s->kcache + (size_t)l * s->max_len * C, *V = s->vcache + (size_t)l * s->max_len * C;
    const float *ain = s->x;
    if (c->pre_ln) { norm(c, s->a, s, s->x, w->ln1_w, w->ln1_b, n); ain = s->a; }
    linear(s->qkv, ain, w->qkv_w, w->qkv_b, n, C, 3 * C);
    for (int64_t i = 0; i < n; i++) {
      memcpy(K + (p0 + i) * C, s->qkv + i * 3 * C + C, C * sizeof(float));
      memcpy(V + (p0 + i) * C, s->qkv + i * 3 * C + 2 * C, C * sizeof(float));
    }
    attention_cached(s, s->y, s->qkv, K, V, p0, n);
    linear(s->t, s->y, w->attn_proj_w, w->attn_proj_b, n, C, C);
    if (c->pre_ln) {
      residual_forward(s->x, s->x, s->t, n * C);
      norm(c, s->a, s, s->x, w->ln2_w, w->ln2_b, n);
      linear(s->h, s->a, w->fc_w, w->fc_b, n, C, F);
      act_forward(s->h, s->h, n * F, c->act);
      linear(s->t, s->h, w->fc_proj_w, w->fc_proj_b, n, F, C);
      residual_forward(s->x, s->x, s->t, n * C);
    } else {
      residual_forward(s->a, s->x, s->t, n * C);
      norm(c, s->x, s, s->a, w->ln1_w, w->ln1_b, n);
      linear(s->h, s->x, w->fc_w, w->fc_b, n, C, F);
      act_forward(s->h, s->h, n * F, c->act);
      linear(s->t, s->h, w->fc_proj_w, w->fc_proj_b, n, F, C);
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
