/* block.c — the general transformer block (see block.h for the equations):
 * attention and feed-forward sub-layers, their residuals and norms, forward
 * and backward. Backward follows the forward in reverse; every gradient
 * ACCUMULATES, so layers that share weights (ALBERT) just sum. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "kernels/mm.h"
#include "model/block.h"

int64_t lm_ffn_width(const lm_config *c) { return c->n_inner > 0 ? c->n_inner : 4 * c->n_embd; }
int64_t lm_fc_width(const lm_config *c) { return (c->glu ? 2 : 1) * lm_ffn_width(c); }
int64_t lm_kv_heads(const lm_config *c) { return c->n_kv_head > 0 ? c->n_kv_head : c->n_head; }
int64_t lm_head_size(const lm_config *c) { return c->head_dim > 0 ? c->head_dim : c->n_embd / c->n_head; }
int64_t lm_attn_width(const lm_config *c) { return c->n_head * lm_head_size(c); }
int64_t lm_qkv_width(const lm_config *c) { return lm_attn_width(c) + 2 * lm_kv_heads(c) * lm_head_size(c); }

/* HF T5's _relative_position_bucket: distances below max_exact get a bucket each, longer ones share
 * log-spaced buckets up to max_distance; the logarithm in float32 as torch computes it. */
int64_t lm_rel_bucket(int64_t rel, int bidirectional, int64_t n_buckets, int64_t max_distance) {
  int64_t bucket = 0, nb = n_buckets;
  if (bidirectional) {
    nb /= 2;
    if (rel > 0) bucket += nb;
    rel = rel < 0 ? -rel : rel;
  } else {
    rel = rel < 0 ? -rel : 0;
  }
  int64_t max_exact = nb / 2;
  if (rel < max_exact) return bucket + rel;
  float scaled = logf((float)rel / (float)max_exact) / (float)log((double)max_distance / (double)max_exact) *
                 (float)(nb - max_exact);
  int64_t large = max_exact + (int64_t)scaled;
  return bucket + (large < nb - 1 ? large : nb - 1);
}

void lm_rel_bias_forward(const lm_config *c, float *bias, const float *table, int64_t Tq, int64_t Tk, int bidirectional) {
  int64_t NH = c->n_head, W = Tq + Tk - 1;
  for (int64_t o = 0; o < W; o++) {   // offset o = k - q + Tq - 1
    int64_t bucket = lm_rel_bucket(o - (Tq - 1), bidirectional, c->rel_buckets, c->rel_max_distance);
    for (int64_t h = 0; h < NH; h++) bias[h * W + o] = table[bucket * NH + h];
  }
}

void lm_rel_bias_backward(const lm_config *c, float *dtable, const float *dbias, int64_t Tq, int64_t Tk,
                          int bidirectional) {
  int64_t NH = c->n_head, W = Tq + Tk - 1;
  for (int64_t o = 0; o < W; o++) {
    int64_t bucket = lm_rel_bucket(o - (Tq - 1), bidirectional, c->rel_buckets, c->rel_max_distance);
    for (int64_t h = 0; h < NH; h++) dtable[bucket * NH + h] += dbias[h * W + o];
  }
}

/* HF's _compute_default_rope_parameters and _compute_llama3_parameters, operation by operation in
 * fp32 (the angles of long contexts are sensitive to the rounding of the frequencies). */
lm_status lm_rope_table(const lm_config *c, float **cs) {
  *cs = NULL;
  if (!c->rope) return LM_OK;
  int64_t hs = c->n_embd / c->n_head, half = hs / 2, P = c->n_positions;
  float *t = lm_alloc((size_t)P * hs * sizeof(float));
  float *inv = malloc((size_t)half * sizeof(float));
  if (!t || !inv) { lm_free(t); free(inv); return lm_error(LM_ERR_NOMEM, "out of memory for the RoPE table"); }
  for (int64_t i = 0; i < half; i++) {
    inv[i] = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)hs);
    if (c->rope_scaling) {   /* Llama 3: long wavelengths slowed by `factor`, a smooth ramp between */
      float old = (float)c->rope_original_positions, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
      float low_wavelen = old / lo, high_wavelen = old / hi;
      float wavelen = 2.0f * (float)M_PI / inv[i];
      float scaled = wavelen > low_wavelen ? inv[i] / c->rope_factor : inv[i];
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
        float smooth = (old / wavelen - lo) / (hi - lo);
        scaled = (1.0f - smooth) * scaled / c->rope_factor + smooth * scaled;
      }
      inv[i] = scaled;
    }
  }
  for (int64_t p = 0; p < P; p++)
    for (int64_t i = 0; i < half; i++) {
      float a = (float)p * inv[i];
      t[p * hs + i] = cosf(a);
      t[p * hs + half + i] = sinf(a);
    }
  free(inv);
  *cs = t;
  return LM_OK;
}

void lm_norm_forward(const lm_config *c, float *out, float *mean, float *rstd, const float *inp, const float *w,
                     const float *b, int64_t N) {
  if (c->norm == LM_NORM_RMS) rmsnorm_forward(out, rstd, inp, w, N, c->n_embd, c->norm_eps);
  else layernorm_forward(out, mean, rstd, inp, w, b, N, c->n_embd, c->norm_eps);
}

void lm_norm_backward(const lm_config *c, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                      const float *w, const float *mean, const float *rstd, int64_t N) {
  if (c->norm == LM_NORM_RMS) rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, c->n_embd);
  else layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, c->n_embd);
}

/* ------------------------------------------------------------------ linears */

/* out(N,OC) = inp W^T + b [+ scale (inp A_p^T) B_p^T into the rows of each adapted part p]:
 * every linear of the block. The base product runs on the model's engine mm (mm.h: fp32 when
 * NULL, else bf16); the adapters' small products stay fp32. */
static void linear_forward(lm_mm *mm, float *out, const float *inp, const float *W, const float *b,
                           const lm_lora_linear *a, int64_t N, int64_t C, int64_t OC) {
  lm_linear_forward(mm, out, inp, W, b, N, C, OC);
  for (int k = 0; a && k < a->n_parts; k++) {
    const lm_lora_part *p = &a->part[k];
    if (!p->A) continue;
    matmul_forward(p->v, inp, p->A, NULL, N, C, a->r);                            // v = x A^T (N,r)
    scale_inplace(p->v, N * a->r, a->scale);                                      // v *= scale
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)p->rows, (int)a->r, 1.0f, p->v, (int)a->r,
                p->B, (int)a->r, 1.0f, out + p->row0, (int)OC);                   // out[:, part] += v B^T
  }
}

/* The backward of linear_forward: dinp += dout W (+ the adapters' paths); dW, db, dA, dB accumulate
 * where non-NULL (a frozen base passes NULL dW and db). */
static void linear_backward(lm_mm *mm, float *dinp, float *dW, float *db, const float *dout, const float *inp,
                            const float *W, const lm_lora_linear *a, int64_t N, int64_t C, int64_t OC) {
  lm_linear_backward(mm, dinp, dW, db, dout, inp, W, N, C, OC);
  for (int k = 0; a && k < a->n_parts; k++) {
    const lm_lora_part *p = &a->part[k];
    if (!p->A) continue;
    const float *g = dout + p->row0;                                              // (N, rows), row stride OC
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)a->r, (int)p->rows, 1.0f, g, (int)OC,
                p->B, (int)a->r, 0.0f, a->dv, (int)a->r);                         // dv = dout B
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)p->rows, (int)a->r, (int)N, 1.0f, g, (int)OC,
                p->v, (int)a->r, 1.0f, p->dB, (int)a->r);                         // dB += dout^T v
    scale_inplace(a->dv, N * a->r, a->scale);                                     // d(x A^T) = scale dv
    matmul_backward(dinp, p->dA, NULL, a->dv, inp, p->A, N, C, a->r);            // dinp += .. A, dA += ..^T x
  }
}

/* ------------------------------------------------------------------ forward */

/* the attention call of this layer: self-attention over la->qkv with the block's masks */
static lm_attn attn_desc(const lm_config *c, const lm_layer_acts *la, lm_attn_mask mask, int64_t B, int64_t T) {
  lm_attn a = lm_attn_self(la->qkv, B, T, c->n_head, lm_kv_heads(c), lm_head_size(c), c->causal);
  if (c->attn_unscaled) a.scale = 1.0f;
  if (mask.bias) { a.bias = mask.bias + T - 1; a.bias_hs = 2 * T - 1; a.bias_is = -1; }   /* by offset: (NH, 2T-1) */
  a.window = c->sliding_window;
  a.key_mask = mask.key_mask;
  a.starts = mask.starts;
  if (mask.drop && la->drop_att) { a.drop = la->drop_att; a.drop_p = c->attn_pdrop; }
  return a;
}

/* attention sub-layer: out(N,C) = proj(attn(rope(qkv(inp)))) */
static void attn_forward(const lm_config *c, const lm_block_weights *w, lm_layer_acts *la, float *out,
                         const float *inp, lm_attn_mask mask, int64_t B, int64_t T) {
  int64_t N = B * T, C = c->n_embd, NH = c->n_head, NKV = lm_kv_heads(c), QKV = lm_qkv_width(c), A = lm_attn_width(c);
  linear_forward(mask.mm, la->qkv, inp, w->qkv_w, w->qkv_b, w->qkv_lora, N, C, QKV);                  // (N,QKV)
  if (mask.rope) rope_apply(la->qkv, QKV, NH + NKV, lm_head_size(c), mask.pos, mask.rope, N, 0);  // q and k heads
  lm_attn at = attn_desc(c, la, mask, B, T);
  attention_forward(&at, la->atty, la->lse);                                                  // (N,A)
  linear_forward(mask.mm, out, la->atty, w->attn_proj_w, w->attn_proj_b, w->attn_proj_lora, N, A, C);      // (N,C)
}

/* cross-attention sub-layer: out(N,C) = proj(attn(q(inp), k(enc), v(enc))), the encoder output enc
 * (B,S,C) seen whole (its padding hidden by enc_mask) */
static lm_attn xattn_desc(const lm_config *c, const lm_layer_acts *la, lm_attn_mask mask, int64_t B, int64_t T) {
  int64_t hs = lm_head_size(c), A = lm_attn_width(c);
  lm_attn a = {.B = B, .Tq = T, .Tk = mask.S, .NH = c->n_head, .NKV = c->n_head, .hs = hs, .q = la->xq,
               .k = la->xkv, .v = la->xkv + A, .qs = A, .ks = 2 * A,
               .scale = c->attn_unscaled ? 1.0f : 1.0f / sqrtf((float)hs), .key_mask = mask.enc_mask};
  if (mask.drop && la->drop_xatt) { a.drop = la->drop_xatt; a.drop_p = c->attn_pdrop; }
  return a;
}

static void xattn_forward(const lm_config *c, const lm_block_weights *w, lm_layer_acts *la, float *out,
                          const float *inp, lm_attn_mask mask, int64_t B, int64_t T) {
  int64_t N = B * T, C = c->n_embd, A = lm_attn_width(c);
  linear_forward(mask.mm, la->xq, inp, w->xq_w, w->xq_b, NULL, N, C, A);                             // (N,A)
  linear_forward(mask.mm, la->xkv, mask.enc, w->xkv_w, w->xkv_b, NULL, B * mask.S, C, 2 * A);        // (B*S,2A)
  lm_attn at = xattn_desc(c, la, mask, B, T);
  attention_forward(&at, la->xatty, la->xlse);                                               // (N,A)
  linear_forward(mask.mm, out, la->xatty, w->xproj_w, w->xproj_b, NULL, N, A, C);                     // (N,C)
}

/* feed-forward sub-layer: out(N,C) = proj(act(fc(inp))), or proj(silu(gate(inp)) * up(inp)); in training
 * the activation is dropped in place (fch_act holds what proj saw) */
static void mlp_forward(const lm_config *c, const lm_block_weights *w, lm_layer_acts *la, float *out,
                        const float *inp, lm_attn_mask mask, int64_t N) {
  int64_t C = c->n_embd, F = lm_ffn_width(c);
  linear_forward(mask.mm, la->fch, inp, w->fc_w, w->fc_b, w->fc_lora, N, C, lm_fc_width(c));        // (N,F) or (N,2F)
  if (c->glu) glu_act_forward(la->fch_act, la->fch, N, F, c->act);                          // (N,F)
  else act_forward(la->fch_act, la->fch, N * F, c->act);
  if (mask.drop && la->drop_act) dropout_apply(la->fch_act, la->drop_act, N * F, c->act_pdrop);
  linear_forward(mask.mm, out, la->fch_act, w->fc_proj_w, w->fc_proj_b, w->fc_proj_lora, N, F, C);       // (N,C)
}

void lm_block_forward(const lm_config *c, const lm_block_weights *w, lm_layer_acts *la, const float *x,
                      float *tmp, lm_attn_mask mask, int64_t B, int64_t T) {
  int64_t N = B * T, C = c->n_embd;
  const uint64_t *d1 = mask.drop ? la->drop_res1 : NULL, *d2 = mask.drop ? la->drop_res2 : NULL;
  const uint64_t *dx = mask.drop ? la->drop_resx : NULL;
  if (c->pre_ln) {
    lm_norm_forward(c, la->a1, la->mean1, la->rstd1, x, w->ln1_w, w->ln1_b, N);
    attn_forward(c, w, la, tmp, la->a1, mask, B, T);
    if (d1) dropout_apply(tmp, d1, N * C, c->resid_pdrop);
    residual_forward(la->res1, x, tmp, N * C);
    const float *mid = la->res1;   /* the FFN's input: res1, or resx after cross-attention */
    if (w->xq_w) {
      lm_norm_forward(c, la->ax, la->meanx, la->rstdx, la->res1, w->lnx_w, w->lnx_b, N);
      xattn_forward(c, w, la, tmp, la->ax, mask, B, T);
      if (dx) dropout_apply(tmp, dx, N * C, c->resid_pdrop);
      residual_forward(la->resx, la->res1, tmp, N * C);
      mid = la->resx;
    }
    lm_norm_forward(c, la->a2, la->mean2, la->rstd2, mid, w->ln2_w, w->ln2_b, N);
    mlp_forward(c, w, la, tmp, la->a2, mask, N);
    if (d2) dropout_apply(tmp, d2, N * C, c->resid_pdrop);
    residual_forward(la->res2, mid, tmp, N * C);
  } else {
    attn_forward(c, w, la, tmp, x, mask, B, T);
    if (d1) dropout_apply(tmp, d1, N * C, c->resid_pdrop);
    residual_forward(la->a1, x, tmp, N * C);
    lm_norm_forward(c, la->res1, la->mean1, la->rstd1, la->a1, w->ln1_w, w->ln1_b, N);
    const float *mid = la->res1;
    if (w->xq_w) {
      xattn_forward(c, w, la, tmp, la->res1, mask, B, T);
      if (dx) dropout_apply(tmp, dx, N * C, c->resid_pdrop);
      residual_forward(la->ax, la->res1, tmp, N * C);
      lm_norm_forward(c, la->resx, la->meanx, la->rstdx, la->ax, w->lnx_w, w->lnx_b, N);
      mid = la->resx;
    }
    mlp_forward(c, w, la, tmp, mid, mask, N);
    if (d2) dropout_apply(tmp, d2, N * C, c->resid_pdrop);
    residual_forward(la->a2, mid, tmp, N * C);
    lm_norm_forward(c, la->res2, la->mean2, la->rstd2, la->a2, w->ln2_w, w->ln2_b, N);
  }
}

/* ----------------------------------------------------------------- backward */

static void attn_backward(const lm_config *c, const lm_block_weights *w, lm_block_weights *g, const lm_layer_acts *la,
                          const lm_block_scratch *s, float *dinp, const float *dout, const float *inp,
                          lm_attn_mask mask, int64_t B, int64_t T) {
  int64_t N = B * T, C = c->n_embd, NH = c->n_head, NKV = lm_kv_heads(c), QKV = lm_qkv_width(c), A = lm_attn_width(c);
  floats_zero(s->datty, N * A);
  linear_backward(mask.mm, s->datty, g->attn_proj_w, g->attn_proj_b, dout, la->atty, w->attn_proj_w, w->attn_proj_lora, N, A, C);
  floats_zero(s->dqkv, N * QKV);
  lm_attn at = attn_desc(c, la, mask, B, T);
  attention_backward(&at, s->dqkv, s->dqkv + (at.k - at.q), s->dqkv + (at.v - at.q), mask.dbias ? mask.dbias + T - 1 : NULL,
                     la->atty, la->lse, s->datty);
  if (mask.rope) rope_apply(s->dqkv, QKV, NH + NKV, lm_head_size(c), mask.pos, mask.rope, N, 1);  // d(before rotation)
  linear_backward(mask.mm, dinp, g->qkv_w, g->qkv_b, s->dqkv, inp, w->qkv_w, w->qkv_lora, N, C, QKV);
}

/* d inp += .., d enc (mask.denc) += ..; q's gradient goes through dqkv's first N*A floats */
static void xattn_backward(const lm_config *c, const lm_block_weights *w, lm_block_weights *g, const lm_layer_acts *la,
                           const lm_block_scratch *s, float *dinp, const float *dout, const float *inp,
                           lm_attn_mask mask, int64_t B, int64_t T) {
  int64_t N = B * T, C = c->n_embd, A = lm_attn_width(c), NS = B * mask.S;
  float *dxq = s->dqkv;
  floats_zero(s->datty, N * A);
  linear_backward(mask.mm, s->datty, g->xproj_w, g->xproj_b, dout, la->xatty, w->xproj_w, NULL, N, A, C);
  floats_zero(dxq, N * A);
  floats_zero(s->dxkv, NS * 2 * A);
  lm_attn at = xattn_desc(c, la, mask, B, T);
  attention_backward(&at, dxq, s->dxkv, s->dxkv + A, NULL, la->xatty, la->xlse, s->datty);
  linear_backward(mask.mm, dinp, g->xq_w, g->xq_b, dxq, inp, w->xq_w, NULL, N, C, A);
  linear_backward(mask.mm, mask.denc, g->xkv_w, g->xkv_b, s->dxkv, mask.enc, w->xkv_w, NULL, NS, C, 2 * A);
}

static void mlp_backward(const lm_config *c, const lm_block_weights *w, lm_block_weights *g, const lm_layer_acts *la,
                         const lm_block_scratch *s, float *dinp, const float *dout, const float *inp,
                         lm_attn_mask mask, int64_t N) {
  int64_t C = c->n_embd, F = lm_ffn_width(c), FW = lm_fc_width(c);
  floats_zero(s->dfch_act, N * F);
  linear_backward(mask.mm, s->dfch_act, g->fc_proj_w, g->fc_proj_b, dout, la->fch_act, w->fc_proj_w, w->fc_proj_lora, N, F, C);
  if (mask.drop && la->drop_act) dropout_apply(s->dfch_act, la->drop_act, N * F, c->act_pdrop);
  floats_zero(s->dfch, N * FW);
  if (c->glu) glu_act_backward(s->dfch, la->fch, s->dfch_act, N, F, c->act);
  else act_backward(s->dfch, la->fch, s->dfch_act, N * F, c->act);
  linear_backward(mask.mm, dinp, g->fc_w, g->fc_b, s->dfch, inp, w->fc_w, w->fc_lora, N, C, FW);
}

/* Buffers accumulate, so each is zeroed or copied into before use (on all threads: kernels.h floats_zero). */
void lm_block_backward(const lm_config *c, const lm_block_weights *w, lm_block_weights *g, const lm_layer_acts *la,
                       const lm_block_scratch *s, const float *x, float *P, float *Q, lm_attn_mask mask, int64_t B,
                       int64_t T) {
  int64_t N = B * T;
  float *D = s->dtmp;
  /* a dropped residual branch passes its gradient back through the same mask */
  const uint64_t *d1 = mask.drop ? la->drop_res1 : NULL, *d2 = mask.drop ? la->drop_res2 : NULL;
  const uint64_t *dx = mask.drop ? la->drop_resx : NULL;
  int64_t NC = N * c->n_embd;
  if (c->pre_ln) {
    /* res2 = res1 + mlp(a2), a2 = N2(res1) */
    floats_copy(Q, P, NC);                                      /* d res1: residual path */
    floats_zero(D, NC);
    if (d2) dropout_apply(P, d2, NC, c->resid_pdrop);
    mlp_backward(c, w, g, la, s, D, P, la->a2, mask, N);              /* d a2 */
    lm_norm_backward(c, Q, g->ln2_w, g->ln2_b, D, w->xq_w ? la->resx : la->res1, w->ln2_w, la->mean2, la->rstd2, N);
    if (w->xq_w) {
      /* resx = res1 + xattn(ax), ax = Nx(res1); Q holds d resx */
      floats_copy(P, Q, NC);                                    /* d res1: residual path */
      floats_zero(D, NC);
      if (dx) dropout_apply(Q, dx, NC, c->resid_pdrop);
      xattn_backward(c, w, g, la, s, D, Q, la->ax, mask, B, T);  /* d ax */
      lm_norm_backward(c, P, g->lnx_w, g->lnx_b, D, la->res1, w->lnx_w, la->meanx, la->rstdx, N);
      floats_copy(Q, P, NC);
    }
    /* res1 = x + attn(a1), a1 = N1(x) */
    floats_copy(P, Q, NC);                                      /* d x: residual path */
    floats_zero(D, NC);
    if (d1) dropout_apply(Q, d1, NC, c->resid_pdrop);
    attn_backward(c, w, g, la, s, D, Q, la->a1, mask, B, T);          /* d a1 */
    lm_norm_backward(c, P, g->ln1_w, g->ln1_b, D, x, w->ln1_w, la->mean1, la->rstd1, N);
  } else {
    /* res2 = N2(a2), a2 = res1 + mlp(res1) */
    floats_zero(Q, NC);
    lm_norm_backward(c, Q, g->ln2_w, g->ln2_b, P, la->a2, w->ln2_w, la->mean2, la->rstd2, N); /* d a2 */
    floats_copy(P, Q, NC);                                      /* d res1: residual path */
    if (d2) dropout_apply(Q, d2, NC, c->resid_pdrop);
    mlp_backward(c, w, g, la, s, P, Q, w->xq_w ? la->resx : la->res1, mask, N);
    if (w->xq_w) {
      /* resx = Nx(ax), ax = res1 + xattn(res1); P holds d resx */
      floats_zero(Q, NC);
      lm_norm_backward(c, Q, g->lnx_w, g->lnx_b, P, la->ax, w->lnx_w, la->meanx, la->rstdx, N); /* d ax */
      floats_copy(P, Q, NC);                                    /* d res1: residual path */
      if (dx) dropout_apply(Q, dx, NC, c->resid_pdrop);
      xattn_backward(c, w, g, la, s, P, Q, la->res1, mask, B, T);
    }
    /* res1 = N1(a1), a1 = x + attn(x) */
    floats_zero(Q, NC);
    lm_norm_backward(c, Q, g->ln1_w, g->ln1_b, P, la->a1, w->ln1_w, la->mean1, la->rstd1, N); /* d a1 */
    floats_copy(P, Q, NC);                                      /* d x: residual path */
    if (d1) dropout_apply(Q, d1, NC, c->resid_pdrop);
    attn_backward(c, w, g, la, s, P, Q, x, mask, B, T);
  }
}
