/* kernels.h — the numeric building blocks of every model (DESIGN.md §5).
 *
 * Conventions (as in llm.c):
 *  - fp32, row-major; activations are (N, C) with N = B*T rows.
 *  - Linear weights use PyTorch's nn.Linear layout (OC, C): out = inp @ W^T + b.
 *  - forward functions WRITE their outputs; backward functions ACCUMULATE (+=)
 *    into every gradient they are given, so shared weights just work. A NULL
 *    gradient pointer means "not needed" and is skipped.
 *  - Results are deterministic for a fixed thread count (no atomics, reductions
 *    in a fixed order).
 *  - Parallel loops are OpenMP; matrix products are cblas_sgemm (OpenBLAS). */
#ifndef LM_KERNELS_H
#define LM_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "lmkit.h"
#include "base/base.h"

/* ---- matmul: out(N,OC) = inp(N,C) @ weight(OC,C)^T + bias(OC); bias may be NULL ---- */
void matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int64_t N, int64_t C, int64_t OC);
/* out(N,OC) += inp(N,C) @ weight(OC,C)^T: adds a second product into an output (LoRA's low-rank path) */
void matmul_forward_add(float *out, const float *inp, const float *weight, int64_t N, int64_t C, int64_t OC);
/* dinp(N,C) += dout @ weight;  dweight(OC,C) += dout^T @ inp;  dbias(OC) += column sums of dout */
void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int64_t N, int64_t C, int64_t OC);

/* ---- embedding lookup: out(N,C) (=, or += when accumulate) table[ids[n]] ---- */
void embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N, int64_t C, int accumulate);
/* dtable[ids[n]] += dout[n] */
void embedding_backward(float *dtable, const float *dout, const int32_t *ids, int64_t N, int64_t C);

/* ---- LayerNorm over the last dim; saves mean(N), rstd(N) for backward; bias may be NULL ---- */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int64_t N, int64_t C, float eps);
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int64_t N, int64_t C);

/* ---- RMSNorm: out = inp * rstd * weight, rstd = 1/sqrt(mean(inp^2) + eps) ---- */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int64_t N, int64_t C, float eps);
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int64_t N, int64_t C);

/* ---- activations, elementwise over n values: GELU (tanh or erf form), ReLU, SiLU ---- */
void act_forward(float *out, const float *inp, int64_t n, lm_act_kind kind);
void act_backward(float *dinp, const float *inp, const float *dout, int64_t n, lm_act_kind kind);
/* ---- SwiGLU: out(N,F) = silu(inp[:, :F]) * inp[:, F:], inp (N,2F) = [gate | up]; dinp (N,2F) += ---- */
void glu_forward(float *out, const float *inp, int64_t N, int64_t F);
void glu_backward(float *dinp, const float *inp, const float *dout, int64_t N, int64_t F);
/* the same gate with another activation: out = act(gate) * up (T5 v1.1's gated-GELU, GEGLU); SiLU is glu_* */
void glu_act_forward(float *out, const float *inp, int64_t N, int64_t F, lm_act_kind kind);
void glu_act_backward(float *dinp, const float *inp, const float *dout, int64_t N, int64_t F, lm_act_kind kind);

/* ---- rotary position embedding (RoPE), Hugging Face's rotate-half convention ----
 * For each of the N rows of x (row stride `stride`), each of the nh heads of width hs starting at
 * column h*hs is rotated in place by the angle pos[n] * inv_freq[i] in the plane of its columns i
 * and i + hs/2 (i < hs/2):  x_i' = x_i cos - x_{i+hs/2} sin,  x_{i+hs/2}' = x_{i+hs/2} cos + x_i sin.
 * cs (P, hs) holds cos then sin of each position's hs/2 angles (lm_rope_table). inverse: rotate
 * by minus the angle, which is the backward of the rotation (it is orthogonal). */
void rope_apply(float *x, int64_t stride, int64_t nh, int64_t hs, const int32_t *pos, const float *cs, int64_t N,
                int inverse);

/* ---- dropout (inverted): bits (ceil(n/64) words) 1 = kept, P(drop) = p, from one key drawn from r
 * (a counter-based fill: the same bits on any number of threads); apply scales kept elements by
 * 1/(1-p) and zeroes the others, in place (its backward is the same call on the gradient) ---- */
void dropout_mask(uint64_t *bits, int64_t n, float p, lm_rng *r);
void dropout_apply(float *x, const uint64_t *bits, int64_t n, float p);
static inline int dropout_kept(const uint64_t *bits, int64_t i) { return (int)(bits[i >> 6] >> (i & 63) & 1); }
/* x[0..n) *= mask bits at0.. / (1 - p): a row of a larger masked tensor */
static inline void dropout_apply_at(float *x, const uint64_t *bits, int64_t at0, int64_t n, float p) {
  const float scale = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < n; i++) x[i] = dropout_kept(bits, at0 + i) ? x[i] * scale : 0.0f;
}

/* ---- memset / memcpy of n floats on all threads (large activation buffers) ---- */
void floats_zero(float *x, int64_t n);
void floats_copy(float *dst, const float *src, int64_t n);

/* ---- residual: out = a + b; backward adds dout into da and db ---- */
void residual_forward(float *out, const float *a, const float *b, int64_t n);
void residual_backward(float *da, float *db, const float *dout, int64_t n);

/* ---- multi-head scaled dot-product attention, tiled (FlashAttention-2's algorithm) ----
 * One description of an attention call, for self-attention (q, k, v inside one packed qkv buffer)
 * and cross-attention (Tq queries over Tk keys of another sequence) alike:
 *   q (B,Tq,*) row stride qs: query head h at columns h*hs..(h+1)*hs;
 *   k, v (B,Tk,*) row stride ks: key/value head g at columns g*hs.. (NKV heads; query head h uses
 *   g = h / (NH/NKV): grouped-query attention; NKV = NH is multi-head attention).
 * score(i,j) = scale * q_i.k_j [+ bias[h*bias_hs + i*bias_is + j]]: an additive per-head bias, NULL for
 * none; a full (NH,Tq,Tk) matrix has bias_hs = Tq*Tk, bias_is = Tk; a bias that depends only on the
 * offset j - i (T5's relative position buckets, ALiBi) is O(T): rel (NH, Tq+Tk-1) indexed by
 * j - i + Tq - 1 is bias = rel + Tq - 1, bias_hs = Tq + Tk - 1, bias_is = -1.
 * Key j is visible to query i iff key_mask[b*Tk+j] (when key_mask != NULL), and, with off = Tk - Tq:
 *   causal:     j <= i + off;     window > 0: j > i + off - window (Mistral's sliding window);
 *   starts (B,Tq) (packed examples, Tq == Tk): j >= starts[b*Tq+i] (the query's example begins there).
 * A query that sees no key gets a zero output (and zero gradient).
 * drop (bits of (B,NH,Tq,Tk), dropout.c) or NULL: attention dropout with probability drop_p,
 * O = (P * mask / (1 - drop_p)) V, the mask bit of (b,h,i,j) at ((b*NH + h)*Tq + i)*Tk + j. */
typedef struct {
  int64_t B, Tq, Tk, NH, NKV, hs;
  const float *q, *k, *v;
  int64_t qs, ks;
  float scale;                /* usually 1/sqrt(hs); T5 uses 1 */
  int causal;
  int64_t window;
  const uint8_t *key_mask;
  const int32_t *starts;
  const float *bias;
  int64_t bias_hs, bias_is;
  const uint64_t *drop;
  float drop_p;
} lm_attn;

/* Self-attention over a packed qkv (B,T,A+2*KVC) = [q (A) | k (KVC) | v (KVC)] per token, A = NH*hs,
 * KVC = NKV*hs: the description with scale 1/sqrt(hs), no mask, no bias, no dropout (set those after). */
lm_attn lm_attn_self(const float *qkv, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t hs, int causal);

/* out (B,Tq,NH*hs) = softmax(scores) V per head; lse (B,NH,Tq) = each query row's log-sum-exp of its
 * visible scores (+inf for a row that sees no key), all backward needs besides q, k, v and out. Memory:
 * O(Tq) besides the inputs; no (Tq,Tk) matrix is ever held. */
void attention_forward(const lm_attn *a, float *out, float *lse);
/* dq, dk, dv (same layouts and strides as q, k, v) += the gradients, recomputing the probabilities
 * tile by tile from lse; dbias (the bias's layout, bias_hs and bias_is) or NULL += the bias's
 * gradient, summed over the batch in sequence order. dq NULL: nothing. */
void attention_backward(const lm_attn *a, float *dq, float *dk, float *dv, float *dbias, const float *out,
                        const float *lse, const float *dout);

/* ---- softmax cross-entropy over V classes ----
 * losses[n] = -log softmax(logits[n])[targets[n]]; a target < 0 means "ignored" (loss 0).
 * The loss mask is expressed through dlosses: mean over mask = dlosses[n] = mask[n] / sum(mask). */
void crossentropy_forward(float *losses, const float *logits, const int32_t *targets, int64_t N, int64_t V,
                          double *stats);
/* stats (may be NULL): forward keeps each row's max and sum of exp(x - max), 2 doubles a row; given
 * to backward on the same logits and targets, backward makes one pass instead of three (same bits). */
/* dlogits(N,V) = (softmax(logits) - onehot(target)) * dlosses[n], rows with target < 0 get 0.
 * Exception to the += rule: this WRITES dlogits, and dlogits may alias logits (in-place),
 * because a (N,V) logits buffer is the largest activation and has no other consumer. */
void crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets, const float *dlosses,
                           int64_t N, int64_t V, const double *stats);

/* ---- optimiser ----
 * One AdamW step (PyTorch semantics: decoupled decay p -= lr*wd*p, bias-corrected moments,
 * eps added to sqrt(v_hat)); t is the 1-based step count. The gradient is grads * clip: the
 * clipping factor (1 for none) is applied in the same pass; grads is left as it is. */
void adamw_update(float *params, const float *grads, float *m, float *v, int64_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t t, float clip);
/* adamw_update that also writes the updated parameters rounded to bf16 (mm.h lm_bf16_round) into
 * bf16 (n values; NULL: none) in the same pass: a bf16 engine's copy of the weights (mm.h
 * lm_mm_weight_claim) without a second pass over the fp32 weights. */
void adamw_update_bf16(float *params, const float *grads, float *m, float *v, int64_t n, float lr, float beta1,
                       float beta2, float eps, float weight_decay, int64_t t, float clip, uint16_t *bf16);
/* adamw_update_bf16 (bf16 may be NULL) that also sets each gradient to 0 once read: the next
 * step's zeroing in the same pass (the same parameters, moments and bf16 copy, bit for bit) */
void adamw_update_zero(float *params, float *grads, float *m, float *v, int64_t n, float lr, float beta1, float beta2,
                       float eps, float weight_decay, int64_t t, float clip, uint16_t *bf16);
/* sqrt(sum g^2), accumulated in double in a fixed order (deterministic) */
double global_norm(const float *g, int64_t n);
void scale_inplace(float *x, int64_t n, float s);

#endif
