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
 * computed, since only they are sampled from.
 *
 * The forward (lm_fwd) takes runs: each run is tokens of one sequence appended
 * to that sequence's own cache (lm_kv). A session is one run at a time; the
 * batch decoder (batch.c) passes one run per sequence, so a decode step of N
 * sequences runs the linear layers as one (N, C) matrix-matrix product and
 * attention per run over its own cache (runs x heads in parallel). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "kernels/qgemm.h"
#include "model/model.h"
#include "model/heads.h"
#include "infer/infer.h"
#include "infer/linear.h"

#define CHUNK 256   /* prompt tokens per forward pass: bounds the scratch memory */
/* Up to this many rows (a decode step, a short prompt) go through lm_linear_rows (linear.c), which
 * reads each weight row from memory once for all of them; more through sgemm. */
#define FEW_ROWS 32

struct lm_fwd {
  const lm_model *m;
  int64_t rows, max_len;    /* tokens per pass; longest cache */
  float *x, *a, *t, *y;     /* (rows, C) */
  float *qkv;               /* (rows, QKV) */
  float *h, *g;             /* (rows, FW), (rows, F): the FFN's hidden layer before and after a gate */
  float *mean, *rstd;       /* (rows) */
  float *scores;            /* (NH, rows, max_len) */
  float *logits;            /* (rows, V): each run's last token */
  int32_t *pos_ids;         /* (rows) */
  int64_t *start;           /* (rows) the first row of each run */
  void *qscratch;           /* the quantized activations of (rows) rows, when the model has quantized linears */
  void *gscratch;           /* lm_qgemm's dequantized panels (prompts of more than FEW_ROWS rows), or NULL */
  float *kvf;               /* (threads, 2, max_len, hs): a head's keys and values of an f16 cache, as f32 */
  int threads;
  lm_qpath qpath;           /* the quantized kernels' path: the best this CPU has */
};

struct lm_session {
  lm_fwd *f;
  lm_kv kv;
  int64_t pos;
  /* a family that decodes from a per-sequence state instead of a KV cache (family.h state_*: RNN,
   * LSTM, n-gram): f and kv stay empty and state_feed does the work */
  const lm_model *m;
  void *state;
  float *logits;   /* (V) */
  int64_t max_len;
};

/* a family that decodes from its own state (RNN, LSTM, n-gram) has no KV cache to batch or copy */
static lm_status no_kv(const lm_model *m) {
  return lm_error(LM_ERR_UNSUPPORTED, "a %s model decodes from its own state, not a KV cache: batched decoding and beam "
                  "search do not support it (lmkit generate without --beams does)", m->fam->model_type);
}

lm_status lm_kv_init(lm_kv *kv, const lm_model *m, int64_t max_len) { return lm_kv_init_type(kv, m, max_len, 0); }

lm_status lm_kv_init_type(lm_kv *kv, const lm_model *m, int64_t max_len, int f16) {
  const lm_config *c = &m->cfg;
  *kv = (lm_kv){.max_len = max_len};
  if (m->fam->state_new) return no_kv(m);
  size_t n = (size_t)c->n_layer * max_len * lm_kv_heads(c) * (c->n_embd / c->n_head);
  *kv = (lm_kv){.max_len = max_len};
  if (f16) { kv->k16 = lm_alloc(n * sizeof(uint16_t)); kv->v16 = lm_alloc(n * sizeof(uint16_t)); }
  else { kv->k = lm_alloc(n * sizeof(float)); kv->v = lm_alloc(n * sizeof(float)); }
  if (f16 ? !kv->k16 || !kv->v16 : !kv->k || !kv->v) {
    lm_kv_free(kv);
    return lm_error(LM_ERR_NOMEM, "out of memory for a KV cache of %lld tokens", (long long)max_len);
  }
  return LM_OK;
}

void lm_kv_free(lm_kv *kv) {
  lm_free(kv->k); lm_free(kv->v); lm_free(kv->k16); lm_free(kv->v16);
  kv->k = kv->v = NULL; kv->k16 = kv->v16 = NULL;
}

lm_status lm_fwd_init(lm_fwd **out, const lm_model *m, int64_t rows, int64_t max_len) {
  const lm_config *c = &m->cfg;
  *out = NULL;
  if (m->fam->state_new) return no_kv(m);
  if (!c->causal || c->head != LM_HEAD_LM || !m->fam->embed_tokens || c->n_enc_layer > 0)
    return lm_error(LM_ERR_UNSUPPORTED, "generation needs a causal decoder with an LM head; this is a %s model with a %s head%s",
                    lm_arch_name(c->arch), lm_head_name(c->head),
                    c->n_enc_layer > 0 ? " (encoder-decoder generation is not implemented yet)" : "");
  if (m->lora)   /* the cache's kernels read the base weights only */
    return lm_error(LM_ERR_UNSUPPORTED, "generation runs on the base weights: merge the LoRA adapter first (lm_lora_merge)");
  if (max_len <= 0 || max_len > c->n_positions)
    return lm_error(LM_ERR_RANGE, "a sequence of %lld tokens does not fit the model's context of %lld",
                    (long long)max_len, (long long)c->n_positions);
  lm_fwd *s = calloc(1, sizeof *s);
  if (!s) return lm_error(LM_ERR_NOMEM, "out of memory");
  int64_t C = c->n_embd, F = lm_ffn_width(c), FW = lm_fc_width(c), NH = c->n_head, n = rows;
  s->m = m; s->max_len = max_len; s->rows = rows;
  s->x = lm_alloc(n * C * sizeof(float)); s->a = lm_alloc(n * C * sizeof(float));
  s->t = lm_alloc(n * C * sizeof(float)); s->y = lm_alloc(n * C * sizeof(float));
  s->qkv = lm_alloc(n * lm_qkv_width(c) * sizeof(float)); s->h = lm_alloc(n * FW * sizeof(float));
  s->g = c->glu ? lm_alloc(n * F * sizeof(float)) : s->h;
  s->mean = lm_alloc(n * sizeof(float)); s->rstd = lm_alloc(n * sizeof(float));
  s->scores = lm_alloc((size_t)NH * n * max_len * sizeof(float));
  s->logits = lm_alloc((size_t)n * c->vocab_size * sizeof(float));
  s->pos_ids = malloc(n * sizeof(int32_t));
  s->start = malloc(n * sizeof(int64_t));
  s->qpath = lm_qpath_best();
  s->threads = omp_get_max_threads();
  s->kvf = lm_alloc((size_t)s->threads * 2 * max_len * (C / NH) * sizeof(float));
  int fail_q = 0;
  if (m->qlin) fail_q = !(s->qscratch = lm_alloc(lm_qmatmul_scratch(n, F > C ? F : C)));
  if (m->qlin && n > FEW_ROWS) fail_q |= !(s->gscratch = lm_alloc(lm_qgemm_scratch(F > C ? F : C, s->threads)));
  if (fail_q || !s->kvf || !s->x || !s->a || !s->t || !s->y || !s->qkv || !s->h || !s->g || !s->mean || !s->rstd || !s->scores ||
      !s->logits || !s->pos_ids || !s->start) {
    lm_fwd_free(s);
    return lm_error(LM_ERR_NOMEM, "out of memory for the scratch of %lld tokens", (long long)rows);
  }
  *out = s;
  return LM_OK;
}

void lm_fwd_free(lm_fwd *s) {
  if (!s) return;
  lm_free(s->x); lm_free(s->a); lm_free(s->t); lm_free(s->y);
  if (s->g != s->h) lm_free(s->g);
  lm_free(s->qkv); lm_free(s->h); lm_free(s->mean); lm_free(s->rstd); lm_free(s->scores); lm_free(s->logits);
  free(s->pos_ids); free(s->start); lm_free(s->qscratch); lm_free(s->gscratch); lm_free(s->kvf);
  free(s);
}

lm_status lm_session_init(lm_session **out, const lm_model *m, int64_t max_len) { return lm_session_init_kv(out, m, max_len, 0); }

lm_status lm_session_init_kv(lm_session **out, const lm_model *m, int64_t max_len, int kv_f16) {
  *out = NULL;
  lm_session *s = calloc(1, sizeof *s);
  if (!s) return lm_error(LM_ERR_NOMEM, "out of memory");
  if (m->fam->state_new) {
    s->m = m; s->max_len = max_len;
    lm_status st = m->fam->state_new(m, &s->state);
    if (!st && !(s->logits = lm_alloc((size_t)m->cfg.vocab_size * sizeof(float)))) st = lm_error(LM_ERR_NOMEM, "out of memory");
    if (st) { lm_session_free(s); return st; }
    *out = s;
    return LM_OK;
  }
  lm_status st = lm_fwd_init(&s->f, m, CHUNK, max_len);
  if (!st) st = lm_kv_init_type(&s->kv, m, max_len, kv_f16);
  if (st) { lm_session_free(s); return st; }
  *out = s;
  return LM_OK;
}

void lm_session_free(lm_session *s) {
  if (!s) return;
  lm_fwd_free(s->f);
  lm_kv_free(&s->kv);
  if (s->state) s->m->fam->state_free(s->state);
  lm_free(s->logits);
  free(s);
}

void lm_session_reset(lm_session *s) {
  s->pos = 0;
  if (s->state) s->m->fam->state_reset(s->m, s->state);
}
int64_t lm_session_pos(const lm_session *s) { return s->pos; }


/* layer l's linear k (LM_QL_*; l = n_layer: the LM head) when kept quantized, else NULL */
static const lm_qmat *qlin(const lm_model *m, int64_t l, int k) {
  const lm_qmat *q = m->qlin ? &m->qlin[l * LM_QL_PER_LAYER + k] : NULL;
  return q && q->data ? q : NULL;
}

/* out(n,OC) = inp(n,C) @ W(OC,C)^T + b. The weight's type picks the kernel: quantized blocks (q,
 * model.h qlin) go through quant.c against the activations quantized once per row for up to
 * FEW_ROWS rows (f16 weights through lm_linear_rows_f16: the bits of their f32 values), through
 * qgemm.c (dequantized panels x sgemm, which overtakes quant.c between 16 and 32 rows:
 * bench/qgemm.c) for more; f32 weights
 * through lm_linear_rows for up to FEW_ROWS rows (one row included, so that a sequence's decode
 * step gives the same bits alone or in any batch), sgemm for more. */
static void linear(lm_fwd *s, float *out, const float *inp, const float *w, const float *b, const lm_qmat *q, int64_t n,
                   int64_t C, int64_t OC) {
  if (q && n > FEW_ROWS) { lm_qgemm(q, inp, n, b, out, s->gscratch, s->threads); return; }
  if (q && q->type == LM_QW_F16) { lm_linear_rows_f16(out, inp, (const uint16_t *)q->data, b, n, C, OC); return; }
  if (q) { lm_qmatmul(q, inp, n, b, out, s->qscratch, s->qpath); return; }
  if (n <= FEW_ROWS) lm_linear_rows(out, inp, w, b, n, C, OC);
  else matmul_forward(out, inp, w, b, n, C, OC);
}

static void norm(const lm_config *c, float *out, lm_fwd *s, const float *inp, const float *w, const float *b, int64_t n) {
  if (c->norm == LM_NORM_RMS) rmsnorm_forward(out, s->rstd, inp, w, n, c->n_embd, c->norm_eps);
  else layernorm_forward(out, s->mean, s->rstd, inp, w, b, n, c->n_embd, c->norm_eps);
}

/* y(N,C): each run's n new queries at positions p0.. attend (causally, within the sliding window if
 * any) to its cache's keys 0..p0+n-1; query head h reads key/value head h / (NH/NKV). */
static void attention_cached(lm_fwd *s, float *y, const float *qkv, const lm_kv_run *runs, int n_runs, int64_t l) {
  const lm_config *c = &s->m->cfg;
  int64_t C = c->n_embd, NH = c->n_head, hs = C / NH, QKV = lm_qkv_width(c), N = 0, work = 0;
  int64_t KVC = lm_kv_heads(c) * hs, group = NH / lm_kv_heads(c), win = c->sliding_window;
  float scale = 1.0f / sqrtf((float)hs);
  for (int r = 0; r < n_runs; r++) { s->start[r] = N; N += runs[r].n; work += runs[r].n * (runs[r].pos + runs[r].n); }
  /* a decoded token's per-head work is microseconds: a fork/join would cost more than it saves */
  #pragma omp parallel for collapse(2) schedule(static) num_threads(s->threads) if (work * hs * NH >= 65536)
  for (int r = 0; r < n_runs; r++)
  for (int64_t h = 0; h < NH; h++) {
    const lm_kv_run *u = &runs[r];
    int64_t n = u->n, p0 = u->pos, Lk = p0 + n, i0 = s->start[r];
    size_t layer = (size_t)l * u->kv->max_len * KVC;
    const float *Kh, *Vh;
    int64_t ld = KVC;
    if (u->kv->k16) {   /* an f16 cache: this head's keys and values up to Lk, as f32 in the thread's scratch */
      float *kf = s->kvf + (size_t)omp_get_thread_num() * 2 * s->max_len * hs, *vf = kf + s->max_len * hs;
      const uint16_t *k16 = u->kv->k16 + layer + (h / group) * hs, *v16 = u->kv->v16 + layer + (h / group) * hs;
      for (int64_t j = 0; j < Lk; j++) {
        lm_f16_to_f32_row(k16 + j * KVC, kf + j * hs, hs);
        lm_f16_to_f32_row(v16 + j * KVC, vf + j * hs, hs);
      }
      Kh = kf; Vh = vf; ld = hs;
    } else {
      Kh = u->kv->k + layer + (h / group) * hs; Vh = u->kv->v + layer + (h / group) * hs;
    }
    float *S = s->scores + (h * N + i0) * s->max_len;   /* (n, Lk), row stride Lk */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)Lk, (int)hs, scale, qkv + i0 * QKV + h * hs,
                (int)QKV, Kh, (int)ld, 0.0f, S, (int)Lk);
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
                Vh, (int)ld, 0.0f, y + i0 * C + h * hs, (int)C);
  }
}

/* the FFN: t(n,C) = proj(act(fc(a))) or proj(silu(gate(a)) * up(a)) */
static void mlp(lm_fwd *s, int64_t l, const lm_block_weights *w, const float *a, int64_t n) {
  const lm_config *c = &s->m->cfg;
  int64_t C = c->n_embd, F = lm_ffn_width(c);
  linear(s, s->h, a, w->fc_w, w->fc_b, qlin(s->m, l, LM_QL_FC), n, C, lm_fc_width(c));
  if (c->glu) glu_forward(s->g, s->h, n, F);
  else act_forward(s->h, s->h, n * F, c->act);
  linear(s, s->t, s->g, w->fc_proj_w, w->fc_proj_b, qlin(s->m, l, LM_QL_FC_PROJ), n, F, C);
}

const float *lm_fwd_feed(lm_fwd *s, const lm_kv_run *runs, int n_runs) {
  const lm_model *m = s->m;
  const lm_config *c = &m->cfg;
  int64_t C = c->n_embd, QKV = lm_qkv_width(c), NH = c->n_head, NKV = lm_kv_heads(c), n = 0;
  int64_t KVC = NKV * (C / NH);
  for (int r = 0; r < n_runs; r++)
    for (int64_t i = 0; i < runs[r].n; i++) s->pos_ids[n++] = (int32_t)(runs[r].pos + i);
  int32_t *ids = (int32_t *)s->y;   /* the runs' ids side by side (y is free until attention) */
  for (int r = 0, k = 0; r < n_runs; k += (int)runs[r].n, r++) memcpy(ids + k, runs[r].ids, runs[r].n * sizeof(int32_t));
  m->fam->embed_tokens(m, ids, s->pos_ids, n, s->x);
  for (int64_t l = 0; l < c->n_layer; l++) {
    const lm_block_weights *w = &m->w.h[l];
    const float *ain = s->x;
    if (c->pre_ln) { norm(c, s->a, s, s->x, w->ln1_w, w->ln1_b, n); ain = s->a; }
    linear(s, s->qkv, ain, w->qkv_w, w->qkv_b, qlin(m, l, LM_QL_QKV), n, C, QKV);
    if (m->rope) rope_apply(s->qkv, QKV, NH + NKV, C / NH, s->pos_ids, m->rope, n, 0);
    for (int r = 0, i0 = 0; r < n_runs; i0 += (int)runs[r].n, r++) {
      const lm_kv *kv = runs[r].kv;
      size_t at = ((size_t)l * kv->max_len + runs[r].pos) * KVC;
      for (int64_t i = 0; i < runs[r].n; i++, at += KVC) {
        const float *k = s->qkv + (i0 + i) * QKV + C, *v = k + KVC;
        if (kv->k16) { lm_f32_to_f16_row(k, kv->k16 + at, KVC); lm_f32_to_f16_row(v, kv->v16 + at, KVC); }
        else { memcpy(kv->k + at, k, KVC * sizeof(float)); memcpy(kv->v + at, v, KVC * sizeof(float)); }
      }
    }
    attention_cached(s, s->y, s->qkv, runs, n_runs, l);
    linear(s, s->t, s->y, w->attn_proj_w, w->attn_proj_b, qlin(m, l, LM_QL_ATTN_PROJ), n, C, C);
    if (c->pre_ln) {
      residual_forward(s->x, s->x, s->t, n * C);
      norm(c, s->a, s, s->x, w->ln2_w, w->ln2_b, n);
      mlp(s, l, w, s->a, n);
      residual_forward(s->x, s->x, s->t, n * C);
    } else {
      residual_forward(s->a, s->x, s->t, n * C);
      norm(c, s->x, s, s->a, w->ln1_w, w->ln1_b, n);
      mlp(s, l, w, s->x, n);
      residual_forward(s->a, s->x, s->t, n * C);
      norm(c, s->x, s, s->a, w->ln2_w, w->ln2_b, n);
    }
  }
  /* each run's last hidden state -> final norm -> logits */
  for (int r = 0, end = 0; r < n_runs; r++) {
    end += (int)runs[r].n;
    memmove(s->t + r * C, s->x + (end - 1) * C, C * sizeof(float));
  }
  const float *last = s->t;
  if (c->pre_ln) { norm(c, s->a, s, s->t, m->w.lnf_w, m->w.lnf_b, n_runs); last = s->a; }
  linear(s, s->logits, last, lm_model_lm_head(m), NULL, qlin(m, c->n_layer, 0), n_runs, C, c->vocab_size);
  return s->logits;
}

lm_status lm_session_feed(lm_session *s, const int32_t *ids, int64_t n, const float **logits) {
  const lm_config *c = s->state ? &s->m->cfg : &s->f->m->cfg;
  int64_t max_len = s->state ? s->max_len : s->kv.max_len;
  if (n <= 0) return lm_error(LM_ERR_ARG, "nothing to feed");
  if (s->pos + n > max_len)
    return lm_error(LM_ERR_RANGE, "%lld tokens exceed the context of %lld", (long long)(s->pos + n), (long long)max_len);
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= c->vocab_size)
      return lm_error(LM_ERR_RANGE, "token id %d is outside the vocabulary (%lld)", ids[i], (long long)c->vocab_size);
  if (s->state) {
    lm_status st = s->m->fam->state_feed(s->m, s->state, ids, n, s->logits);
    if (st) return st;
    s->pos += n;
    if (logits) *logits = s->logits;
    return LM_OK;
  }
  const float *lg = NULL;
  for (int64_t done = 0; done < n; done += CHUNK) {
    lm_kv_run run = {.kv = &s->kv, .pos = s->pos, .ids = ids + done, .n = n - done < CHUNK ? n - done : CHUNK};
    lg = lm_fwd_feed(s->f, &run, 1);
    s->pos += run.n;
  }
  if (logits) *logits = lg;
  return LM_OK;
}
