/* encdec.c — decoding with an encoder-decoder (see encdec.h).
 *
 *   init:  e = encoder(ids)                                   once: (S,C)
 *          xk[l], xv[l] = k_x(e), v_x(e) for every decoder layer   once: (S,A) each
 *   step:  x = embed(id)                                      (C)
 *          per layer: x += attn(N1 x) over the cached k, v of tokens 0..t (+ relative bias)
 *                     x += xattn(Nx x) over xk[l], xv[l]
 *                     x += mlp(N2 x)
 *          logits = head(norm(x) [* d_model^-0.5 when tied]) [+ final_logits_bias]
 *   post-LN (BART): x = N1(x + attn(x)), x = Nx(x + xattn(x)), x = N2(x + mlp(x)); no final norm
 *
 * The encoder is the model's own stack run through lm_block_forward on
 * buffers of this decoder; a step is the general block's equations for one
 * row, with the attention kernel (kernels.h lm_attn) reading the cache.
 * lm_encdec_generate is lm_generate's loop (sampler, stop tokens, streaming
 * detokenizer) around it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/heads.h"
#include "infer/detok.h"
#include "infer/encdec.h"
#include "infer/infer.h"

struct lm_encdec {
  const lm_model *m;
  int64_t S, max_len, pos;
  size_t arena_n;          /* floats in the arena, for lm_encdec_clone */
  float *arena;
  float *enc;              /* (S,C) encoder output */
  float *xk, *xv;          /* (L,S,A) cross-attention keys and values of every decoder layer */
  float *kc, *vc;          /* (L,max_len,A) self-attention cache */
  float *x, *a, *qkv, *y, *t, *h, *ha, *lse, *mean, *rstd, *bias, *logits;
};

/* one token's attention over Tk keys: q (A), k, v rows of stride ks, bias (NH, Tk) or NULL */
static void attend(const lm_config *c, float *out, float *lse, const float *q, const float *k, const float *v, int64_t ks,
                   int64_t Tk, const float *bias) {
  int64_t hs = lm_head_size(c);
  lm_attn a = {.B = 1, .Tq = 1, .Tk = Tk, .NH = c->n_head, .NKV = c->n_head, .hs = hs, .q = q, .k = k, .v = v,
               .qs = c->n_head * hs, .ks = ks, .scale = c->attn_unscaled ? 1.0f : 1.0f / sqrtf((float)hs),
               .bias = bias, .bias_hs = Tk};
  attention_forward(&a, out, lse);
}

/* the encoder: embeddings, the encoder's blocks, its final norm, into e->enc */
static lm_status encode(lm_encdec *e, const int32_t *ids) {
  const lm_model *m = e->m;
  const lm_config *c = &m->cfg;
  lm_config ec = *c;
  ec.causal = 0;
  int64_t S = e->S, C = c->n_embd, F = lm_ffn_width(c), FW = lm_fc_width(c), QKV = lm_qkv_width(c), A = lm_attn_width(c);
  size_t per = (size_t)S * (5 * C + 4 + QKV + A + FW + F) + (size_t)c->n_head * (S + 2 * S);
  float *buf = lm_alloc(per * sizeof(float));
  if (!buf) return lm_error(LM_ERR_NOMEM, "out of memory for the encoder (%lld tokens)", (long long)S);
  float *p = buf;
  lm_layer_acts la = {0};
  float *x = p; p += S * C;
  la.a1 = p; p += S * C; la.res1 = p; p += S * C; la.a2 = p; p += S * C; la.res2 = p; p += S * C;
  la.mean1 = p; p += S; la.rstd1 = p; p += S; la.mean2 = p; p += S; la.rstd2 = p; p += S;
  la.qkv = p; p += S * QKV; la.atty = p; p += S * A; la.fch = p; p += S * FW; la.fch_act = p; p += S * F;
  la.lse = p; p += c->n_head * S;
  float *bias = p;   /* (NH, 2S-1) */
  lm_batch b = {.ids = ids, .enc_ids = ids, .B = 1, .T = S, .S = S};
  if (m->fam->enc_embed_tokens) m->fam->enc_embed_tokens(m, ids, S, x);                // (S,C)
  else m->fam->enc_embed_forward((lm_model *)m, &b, x);
  lm_attn_mask em = {0};
  if (c->rel_buckets > 0) { lm_rel_bias_forward(c, bias, m->w.enc_rel_bias, S, S, 1); em.bias = bias; }
  for (int64_t l = 0; l < c->n_enc_layer; l++) {   /* each layer's output becomes the next one's input */
    lm_block_forward(&ec, &m->w.enc_h[l], &la, x, e->enc, em, 1, S);
    memcpy(x, la.res2, (size_t)S * C * sizeof(float));
  }
  if (c->pre_ln) lm_norm_forward(c, e->enc, la.mean1, la.rstd1, x, m->w.enc_lnf_w, m->w.enc_lnf_b, S);   // (S,C)
  else memcpy(e->enc, x, (size_t)S * C * sizeof(float));   /* post-LN: the last block's output is normalised */
  lm_free(buf);
  return LM_OK;
}

lm_status lm_encdec_init(lm_encdec **out, const lm_model *m, const int32_t *ids, int64_t S, int64_t max_len) {
  *out = NULL;
  const lm_config *c = &m->cfg;
  if (c->n_enc_layer <= 0 || c->head != LM_HEAD_LM || !m->fam->enc_embed_forward)
    return lm_error(LM_ERR_UNSUPPORTED, "encoder-decoder decoding needs an encoder-decoder with an LM head (t5, bart); "
                    "this is a %s model", lm_arch_name(c->arch));
  if (S < 1 || S > c->n_positions || max_len < 1 || max_len > c->n_positions)
    return lm_error(LM_ERR_RANGE, "an input of %lld tokens and an output of %lld must each fit the model's %lld positions",
                    (long long)S, (long long)max_len, (long long)c->n_positions);
  for (int64_t i = 0; i < S; i++)
    if (ids[i] < 0 || ids[i] >= c->vocab_size)
      return lm_error(LM_ERR_RANGE, "input id %d at %lld is outside the vocabulary of %lld", (int)ids[i], (long long)i,
                      (long long)c->vocab_size);
  lm_encdec *e = calloc(1, sizeof *e);
  if (!e) return lm_error(LM_ERR_NOMEM, "out of memory");
  int64_t L = c->n_layer, C = c->n_embd, A = lm_attn_width(c), QKV = lm_qkv_width(c), FW = lm_fc_width(c);
  int64_t NH = c->n_head, V = c->vocab_size;
  size_t n = (size_t)S * C + 2 * (size_t)L * S * A + 2 * (size_t)L * max_len * A + 3 * (size_t)C + QKV + 2 * (size_t)A +
             2 * (size_t)FW + (size_t)S * 2 * A + NH + 2 + (size_t)NH * max_len + V + 64;
  e->arena = lm_alloc(n * sizeof(float));
  if (!e->arena) { free(e); return lm_error(LM_ERR_NOMEM, "out of memory for decoding"); }
  e->arena_n = n;
  float *p = e->arena;
  e->m = m; e->S = S; e->max_len = max_len;
  e->enc = p; p += S * C;
  e->xk = p; p += L * S * A; e->xv = p; p += L * S * A;
  e->kc = p; p += L * max_len * A; e->vc = p; p += L * max_len * A;
  e->x = p; p += C; e->a = p; p += C; e->t = p; p += C;
  e->qkv = p; p += QKV; e->y = p; p += A; e->h = p; p += FW; e->ha = p; p += FW;
  float *kv = p; p += S * 2 * A;   /* one layer's k|v rows of the encoder output */
  e->lse = p; p += NH; e->mean = p; p += 1; e->rstd = p; p += 1;
  e->bias = p; p += NH * max_len; e->logits = p;
  lm_status st = encode(e, ids);
  for (int64_t l = 0; l < L && !st; l++) {   /* cross-attention keys and values, once */
    const lm_block_weights *w = &m->w.h[l];
    matmul_forward(kv, e->enc, w->xkv_w, w->xkv_b, S, C, 2 * A);                        // (S,2A)
    for (int64_t s = 0; s < S; s++) {
      memcpy(e->xk + (l * S + s) * A, kv + s * 2 * A, A * sizeof(float));
      memcpy(e->xv + (l * S + s) * A, kv + s * 2 * A + A, A * sizeof(float));
    }
  }
  if (st) { lm_encdec_free(e); return st; }
  *out = e;
  return LM_OK;
}

int64_t lm_encdec_pos(const lm_encdec *e) { return e->pos; }

lm_status lm_encdec_clone(lm_encdec **out, const lm_encdec *src) {
  *out = NULL;
  lm_encdec *e = malloc(sizeof *e);
  if (!e) return lm_error(LM_ERR_NOMEM, "out of memory");
  *e = *src;
  if (!(e->arena = lm_alloc(src->arena_n * sizeof(float)))) { free(e); return lm_error(LM_ERR_NOMEM, "out of memory for decoding"); }
  memcpy(e->arena, src->arena, src->arena_n * sizeof(float));
  /* every buffer is an offset into the arena: move the pointers with it */
  float **ptrs[] = {&e->enc, &e->xk, &e->xv, &e->kc, &e->vc, &e->x, &e->a, &e->qkv, &e->y, &e->t, &e->h, &e->ha, &e->lse,
                    &e->mean, &e->rstd, &e->bias, &e->logits};
  for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++) *ptrs[i] = e->arena + (*ptrs[i] - src->arena);
  *out = e;
  return LM_OK;
}

lm_status lm_encdec_copy(lm_encdec *dst, const lm_encdec *src) {
  if (dst->m != src->m || dst->S != src->S || dst->max_len != src->max_len || dst->xk - dst->arena != src->xk - src->arena)
    return lm_error(LM_ERR_ARG, "lm_encdec_copy: the decoders are not clones of one another");
  int64_t A = lm_attn_width(&src->m->cfg);
  for (int64_t l = 0; l < src->m->cfg.n_layer; l++) {   /* the self-attention cache of tokens 0..pos-1 */
    size_t at = (size_t)l * src->max_len * A, n = (size_t)src->pos * A * sizeof(float);
    memcpy(dst->kc + at, src->kc + at, n);
    memcpy(dst->vc + at, src->vc + at, n);
  }
  dst->pos = src->pos;
  return LM_OK;
}

/* a sub-layer's input: N(x) before it (pre-LN) or x itself (post-LN) */
static const float *sub_in(const lm_config *c, lm_encdec *e, const float *w, const float *b) {
  if (!c->pre_ln) return e->x;
  lm_norm_forward(c, e->a, e->mean, e->rstd, e->x, w, b, 1);
  return e->a;
}

/* x += the sub-layer's output e->t, then N(x) after it (post-LN; in place: statistics first) */
static void sub_out(const lm_config *c, lm_encdec *e, const float *w, const float *b) {
  residual_forward(e->x, e->x, e->t, c->n_embd);
  if (!c->pre_ln) lm_norm_forward(c, e->x, e->mean, e->rstd, e->x, w, b, 1);
}

lm_status lm_encdec_step(lm_encdec *e, int32_t id, const float **logits) {
  const lm_model *m = e->m;
  const lm_config *c = &m->cfg;
  int64_t t = e->pos, C = c->n_embd, A = lm_attn_width(c), QKV = lm_qkv_width(c), F = lm_ffn_width(c), NH = c->n_head;
  if (t >= e->max_len) return lm_error(LM_ERR_RANGE, "the decoder is full (%lld tokens)", (long long)e->max_len);
  if (id < 0 || id >= c->vocab_size) return lm_error(LM_ERR_RANGE, "token id %d is outside the vocabulary", (int)id);
  int32_t pos = (int32_t)t;
  m->fam->embed_tokens(m, &id, &pos, 1, e->x);                                          // (C)
  const float *bias = NULL;
  if (c->rel_buckets > 0) {   /* key j of this query at t: bucket of j - t, causal; shared by the layers */
    for (int64_t j = 0; j <= t; j++) {
      int64_t bk = lm_rel_bucket(j - t, 0, c->rel_buckets, c->rel_max_distance);
      for (int64_t h = 0; h < NH; h++) e->bias[h * (t + 1) + j] = m->w.rel_bias[bk * NH + h];
    }
    bias = e->bias;
  }
  for (int64_t l = 0; l < c->n_layer; l++) {
    const lm_block_weights *w = &m->w.h[l];
    float *kc = e->kc + l * e->max_len * A, *vc = e->vc + l * e->max_len * A;
    /* self-attention over the cache */
    matmul_forward(e->qkv, sub_in(c, e, w->ln1_w, w->ln1_b), w->qkv_w, w->qkv_b, 1, C, QKV);   // [q | k | v]
    memcpy(kc + t * A, e->qkv + A, A * sizeof(float));
    memcpy(vc + t * A, e->qkv + 2 * A, A * sizeof(float));
    attend(c, e->y, e->lse, e->qkv, kc, vc, A, t + 1, bias);
    matmul_forward(e->t, e->y, w->attn_proj_w, w->attn_proj_b, 1, A, C);
    sub_out(c, e, w->ln1_w, w->ln1_b);
    /* cross-attention over the encoder */
    matmul_forward(e->qkv, sub_in(c, e, w->lnx_w, w->lnx_b), w->xq_w, w->xq_b, 1, C, A);
    attend(c, e->y, e->lse, e->qkv, e->xk + l * e->S * A, e->xv + l * e->S * A, A, e->S, NULL);
    matmul_forward(e->t, e->y, w->xproj_w, w->xproj_b, 1, A, C);
    sub_out(c, e, w->lnx_w, w->lnx_b);
    /* feed-forward */
    matmul_forward(e->h, sub_in(c, e, w->ln2_w, w->ln2_b), w->fc_w, w->fc_b, 1, C, lm_fc_width(c));
    if (c->glu) glu_act_forward(e->ha, e->h, 1, F, c->act);
    else act_forward(e->ha, e->h, F, c->act);
    matmul_forward(e->t, e->ha, w->fc_proj_w, w->fc_proj_b, 1, F, C);
    sub_out(c, e, w->ln2_w, w->ln2_b);
  }
  const float *h = e->x;   /* post-LN: the last block's output is the head's input */
  if (c->pre_ln) {
    lm_norm_forward(c, e->a, e->mean, e->rstd, e->x, m->w.lnf_w, m->w.lnf_b, 1);
    if (m->fam->tied_head_rescale && c->tie_embeddings) scale_inplace(e->a, C, (float)pow((double)C, -0.5));
    h = e->a;
  }
  matmul_forward(e->logits, h, lm_model_lm_head(m), lm_model_lm_head_bias(m), 1, C, c->vocab_size);   // (V)
  e->pos++;
  *logits = e->logits;
  return LM_OK;
}

void lm_encdec_free(lm_encdec *e) {
  if (!e) return;
  lm_free(e->arena);
  free(e);
}

lm_status lm_encdec_generate(const lm_model *m, const lm_tokenizer *tok, const char *prompt, const lm_gen_opts *o,
                             lm_piece_callback cb, void *user, lm_gen_stats *stats) {
  const lm_config *c = &m->cfg;
  uint32_t *ids = NULL; size_t n = 0;
  lm_status st = lm_tokenizer_encode(tok, prompt, strlen(prompt), LM_ENCODE_SPECIAL | (o->add_special ? LM_ENCODE_ADD_SPECIAL : 0),
                                     &ids, &n);
  if (st) return st;
  int64_t P = c->n_positions, eos = c->eos_token_id;
  int32_t *in = malloc((n + 1) * sizeof(int32_t));
  if (!in) { free(ids); return lm_error(LM_ERR_NOMEM, "out of memory"); }
  int64_t S = 0, dropped = 0;
  for (size_t i = 0; i < n; i++) in[S++] = (int32_t)ids[i];
  free(ids);
  if (eos >= 0 && (S == 0 || in[S - 1] != eos)) in[S++] = (int32_t)eos;   /* T5's inputs end with </s> */
  if (S > P) {   /* the encoder's input is truncated to its positions, its end kept */
    dropped = S - P;
    if (eos >= 0) in[P - 1] = (int32_t)eos;
    S = P;
    if (o->on_window) o->on_window(P, dropped, user);
  }
  int64_t max_len = o->max_tokens + 1 < P ? o->max_tokens + 1 : P;
  lm_encdec *e = NULL;
  lm_sampler sp;
  lm_gen_stats gs = {.prompt_tokens = S, .stop_token = -1};
  double t0 = lm_time_sec();
  st = lm_encdec_init(&e, m, in, S, max_len);
  free(in);
  if (st) return st;
  if ((st = lm_sampler_init(&sp, o, c->vocab_size))) { lm_encdec_free(e); return st; }
  const float *logits;
  int32_t next = (int32_t)c->decoder_start_token_id;
  st = lm_encdec_step(e, next, &logits);
  gs.prefill_sec = lm_time_sec() - t0;
  lm_detok dt = {0};
  if (!st) st = lm_detok_init(&dt, tok, -1);
  t0 = lm_time_sec();
  for (int64_t k = 0; !st && k < o->max_tokens; k++) {
    next = lm_sampler_pick(&sp, logits);
    gs.generated_tokens++;
    int is_stop = o->stop_at_eot && next == eos;
    for (int j = 0; j < o->n_stop_tokens && !is_stop; j++) is_stop = o->stop_tokens[j] == next;
    if (is_stop) { gs.stop_token = next; break; }   /* a stop token ends generation unprinted */
    const char *text; size_t tlen;
    if ((st = lm_detok_push(&dt, (uint32_t)next, &text, &tlen))) break;
    if (tlen && cb && cb(text, tlen, user)) break;
    if (k + 1 == o->max_tokens || lm_encdec_pos(e) >= max_len) break;
    st = lm_encdec_step(e, next, &logits);
  }
  const char *rest; size_t nrest;
  if (!st && !lm_detok_flush(&dt, &rest, &nrest) && nrest && cb) cb(rest, nrest, user);
  lm_detok_free(&dt);
  gs.decode_sec = lm_time_sec() - t0;
  if (stats) *stats = gs;
  lm_sampler_free(&sp);
  lm_encdec_free(e);
  return st;
}
