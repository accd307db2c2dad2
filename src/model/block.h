/* block.h — the one transformer block of DESIGN.md §3, configured, not copied.
 *
 * A block is self-attention + feed-forward with residuals and norms around
 * them. What varies between families is a setting of lm_config, not a copy of
 * the code: causal or bidirectional attention (with a key padding mask), pre-
 * or post-LN, LayerNorm or RMSNorm, GELU (tanh/erf), ReLU or a gated SiLU FFN
 * (SwiGLU), biases on or off (or on q/k/v only), multi-head or grouped-query
 * attention, rotary positions (RoPE) on q and k, a sliding attention window.
 *
 *   attn(x) = o(A(rope(q(x)), rope(k(x)), v(x)))     q: C wide, k and v: NKV*hs wide (GQA)
 *   mlp(x)  = down(act(fc(x)))  or, gated,  down(silu(gate(x)) * up(x))
 *
 *   pre-LN  (GPT-2):  a1 = N1(x);  res1 = x + attn(a1);  a2 = N2(res1);  res2 = res1 + mlp(a2)
 *   post-LN (BERT):   a1 = x + attn(x);  res1 = N1(a1);  a2 = res1 + mlp(res1);  res2 = N2(a2)
 *
 * A decoder block of an encoder-decoder (T5, BART) has a third sub-layer between the two, cross-
 * attention: queries from the decoder, keys and values from the encoder's output e (B,S,C),
 *   xattn(x) = o_x(A(q_x(x), k_x(e), v_x(e)))
 *   pre-LN  (T5):   ax = Nx(res1);  resx = res1 + xattn(ax);  then the FFN on resx instead of res1
 *   post-LN (BART): ax = res1 + xattn(res1);  resx = Nx(ax);  then the FFN on resx
 * and its backward accumulates d e. Attention heads are hs = head_dim wide (T5's d_kv; n_embd / n_head
 * unless set), so q and the attention output are A = n_head * hs wide, which may differ from C.
 *
 * In training (mask.drop), dropout applies where the layer has masks: on the attention probabilities
 * (self and cross), on each sub-layer's output before its residual add, and on the FFN's activation
 * before its down projection (T5, BART).
 *
 * res2 is the block's output. The block uses only the kernels (and a strided
 * GEMM for the LoRA adapters of row blocks of a fused matrix); it knows
 * nothing of families, heads or the model's parameter table (model.c points
 * the lm_block_weights views into the flat parameter and gradient arrays). */
#ifndef LM_MODEL_BLOCK_H
#define LM_MODEL_BLOCK_H

#include <stdint.h>
#include "lmkit.h"

/* A LoRA adapter on one linear layer W (OC, C) (src/model/lora.h). A fused linear (q|k|v, gate|up)
 * is adapted part by part, as PEFT adapts HF's separate modules: part p covers the rows
 * row0 .. row0+rows of W and has its own A (r, C) and B (rows, r), or none (A NULL):
 *   y[:, part p] = x W_p^T + b_p + scale * (x A_p^T) B_p^T,   scale = alpha / r
 * v of each part keeps scale * x A_p^T (N, r) of the last forward for backward; dv (N, r) is
 * backward scratch. dA, dB receive the gradients (accumulated); the base W gets none when its
 * gradient view is NULL. An unfused linear is one part covering every row. */
#define LM_LORA_MAX_PARTS 4
typedef struct {
  int64_t row0, rows;
  const float *A, *B;
  float *dA, *dB;
  float *v;
} lm_lora_part;
typedef struct {
  int64_t r;
  float scale;
  int n_parts;
  lm_lora_part part[LM_LORA_MAX_PARTS];
  float *dv;
} lm_lora_linear;

/* Views of one block's tensors in a flat parameter (or gradient) array; NULL where the config has none.
 * The *_lora members (parameter views only) are the LoRA adapters of the four linears, or NULL. */
typedef struct {
  float *ln1_w, *ln1_b;             /* (C) */
  float *qkv_w, *qkv_b;             /* (QKV, C), (QKV): QKV = C + 2*NKV*hs, rows [q | k | v] */
  float *attn_proj_w, *attn_proj_b; /* (C, C), (C) */
  float *ln2_w, *ln2_b;             /* (C) */
  float *fc_w, *fc_b;               /* (F, C), (F); gated: (2F, C), rows [gate | up] */
  float *fc_proj_w, *fc_proj_b;     /* (C, F), (C) */
  /* cross-attention (decoder blocks of encoder-decoders), else NULL */
  float *lnx_w, *lnx_b;             /* (C) */
  float *xq_w, *xq_b;               /* (A, C), (A) */
  float *xkv_w, *xkv_b;             /* (2A, C), (2A): rows [k | v], applied to the encoder output */
  float *xproj_w, *xproj_b;         /* (C, A), (C) */
  lm_lora_linear *qkv_lora, *attn_proj_lora, *fc_lora, *fc_proj_lora;
} lm_block_weights;

/* What one block keeps for its backward pass (names as in the equations above). */
typedef struct {
  float *a1, *res1, *a2, *res2;          /* (N,C) each */
  float *mean1, *rstd1, *mean2, *rstd2;  /* (N) */
  float *qkv;                            /* (N,QKV), q and k rotated when RoPE is on */
  float *lse;                            /* (B,NH,T): attention's per-row log-sum-exp (kernels.h) */
  float *atty;                           /* (N,C) */
  float *fch, *fch_act;                  /* (N,F) each; gated: (N,2F) and (N,F) */
  float *ax, *resx, *meanx, *rstdx;      /* cross-attention: (N,C), (N,C), (N), (N) */
  float *xq, *xkv, *xlse, *xatty;        /* (N,A), (B*S,2A), (B,NH,T), (N,A) */
  /* dropout masks, 1 bit per element (kernels.h dropout_*): attention probabilities (B,NH,T,T), the
   * two residual branches (N,C), the FFN's activation (N,F) (act_pdrop) and, in a decoder block of an
   * encoder-decoder, cross-attention's probabilities (B,NH,T,S) and its residual branch (N,C); NULL
   * when the config has no such dropout */
  uint64_t *drop_att, *drop_res1, *drop_res2, *drop_act, *drop_xatt, *drop_resx;
} lm_layer_acts;

/* Backward workspace shared by every block (contents clobbered). */
typedef struct {
  float *dtmp, *datty;                   /* (N,C) */
  float *dqkv;                           /* (N,QKV) */
  float *dfch, *dfch_act;                /* (N,F) each; gated: (N,2F) and (N,F) */
  float *dxkv;                           /* cross-attention: (B*S,2A) */
} lm_block_scratch;

int64_t lm_ffn_width(const lm_config *c);   /* n_inner, or 4 * n_embd when 0 */
int64_t lm_fc_width(const lm_config *c);    /* rows of fc: F, or 2F for a gated FFN */
int64_t lm_kv_heads(const lm_config *c);    /* n_kv_head, or n_head when 0 */
int64_t lm_qkv_width(const lm_config *c);   /* A + 2 * NKV * hs */
int64_t lm_head_size(const lm_config *c);   /* hs: head_dim, or n_embd / n_head when 0 */
int64_t lm_attn_width(const lm_config *c);  /* A = n_head * hs: q and the attention output */

/* T5's relative position bucket of a key - query distance rel (HF _relative_position_bucket, with
 * its float32 logarithm): bidirectional splits the buckets between keys before and after the
 * query; causal keeps only keys before it. */
int64_t lm_rel_bucket(int64_t rel, int bidirectional, int64_t n_buckets, int64_t max_distance);
/* The bias (NH, Tq+Tk-1) of a stack from its table (n_buckets, NH), by offset as kernels.h's
 * rel_bias: bias[h][k - q + Tq - 1] = table[bucket(k - q), h]; backward ACCUMULATES dtable. */
void lm_rel_bias_forward(const lm_config *c, float *bias, const float *table, int64_t Tq, int64_t Tk, int bidirectional);
void lm_rel_bias_backward(const lm_config *c, float *dtable, const float *dbias, int64_t Tq, int64_t Tk,
                          int bidirectional);

/* RoPE's table (n_positions, hs): for each position p the hs/2 values cos(p f_i), then the hs/2
 * sin(p f_i), with HF's inverse frequencies f_i = theta^(-2i/hs) (Llama 3's scaling applied), all
 * in fp32 as transformers computes them. *cs is lm_alloc'ed; NULL when the config has no RoPE. */
lm_status lm_rope_table(const lm_config *c, float **cs);

/* What attention needs besides q, k, v. key_mask (B,T) or NULL: key s of sequence b is visible iff
 * key_mask[b*T+s]. starts (B,T) or NULL (packed examples: the position where each token's example
 * begins; attention stays inside it). pos (B*T) and rope: each token's position and the RoPE
 * table (lm_rope_table); rope NULL when the config has none. */
typedef struct {
  const uint8_t *key_mask;
  const int32_t *starts;
  const int32_t *pos;
  const float *rope;
  int drop;      /* training with dropout: the layer's masks (lm_layer_acts drop_*) are drawn and apply */
  /* bias (NH, 2T-1): added to the self-attention scores by key - query offset k - q + T - 1 (T5's
   * relative positions), or NULL; backward ACCUMULATES its gradient into dbias (or NULL) */
  const float *bias;
  float *dbias;
  /* the encoder output (B,S,C) that cross-attention reads (blocks with lnx/xq weights), its key
   * mask (B,S) or NULL, and d enc (B,S,C), which backward ACCUMULATES */
  const float *enc;
  const uint8_t *enc_mask;
  float *denc;
  int64_t S;
  /* the engine of the linears' products (kernels/mm.h): NULL = fp32 OpenBLAS, else bf16 oneDNN */
  struct lm_mm *mm;
} lm_attn_mask;

/* Forward: x (N,C) -> la->res2 (N,C); tmp (N,C) is scratch for a sub-layer output. */
void lm_block_forward(const lm_config *c, const lm_block_weights *w, lm_layer_acts *la, const float *x,
                      float *tmp, lm_attn_mask mask, int64_t B, int64_t T);
/* Backward: P (N,C) holds d(output) on entry and d(input) on return; Q (N,C) is scratch.
 * Gradients ACCUMULATE into g. mask: the forward's. */
void lm_block_backward(const lm_config *c, const lm_block_weights *w, lm_block_weights *g, const lm_layer_acts *la,
                       const lm_block_scratch *s, const float *x, float *P, float *Q, lm_attn_mask mask, int64_t B,
                       int64_t T);

/* The config's norm (LayerNorm or RMSNorm) over rows of width C; mean is unused for RMSNorm. */
void lm_norm_forward(const lm_config *c, float *out, float *mean, float *rstd, const float *inp, const float *w,
                     const float *b, int64_t N);
void lm_norm_backward(const lm_config *c, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                      const float *w, const float *mean, const float *rstd, int64_t N);

#endif
