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

/* ---- dropout (inverted): bits (ceil(n/64) words) 1 = kept, drawn from r with P(drop) = p; apply
 * scales kept elements by 1/(1-p) and zeroes the others, in place (its backward is the same call on
 * the gradient) ---- */
void dropout_mask(uint64_t *bits, int64_t n, float p, lm_rng *r);
void dropout_apply(float *x, const uint64_t *bits, int64_t n, float p);
static inline int dropout_kept(const uint64_t *bits, int64_t i) { return (int)(bits[i >> 6] >> (i & 63) & 1); }
/* x[0..n) *= mask bits at0.. / (1 - p): a row of a larger masked tensor */
static inline void dropout_apply_at(float *x, const uint64_t *bits, int64_t at0, int64_t n, float p) {
  const float scale = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < n; i++) x[i] = dropout_kept(bits, at0 + i) ? x[i] * scale : 0.0f;
}

/* ---- residual: out = a + b; backward adds dout into da and db ---- */
void residual_forward(float *out, const float *a, const float *b, int64_t n);
void residual_backward(float *da, float *db, const float *dout, int64_t n);

/* ---- multi-head scaled dot-product self-attention ----
 * qkv(B,T,3C): per token [q | k | v], head h at columns h*hs..(h+1)*hs of each third (hs = C/NH).
 * out(B,T,C); att(B,NH,T,T) receives the softmax probabilities (saved for backward).
 * causal: query t sees keys <= t.  key_mask(B,T) or NULL: key s of sequence b is visible iff
 * key_mask[b*T+s] != 0. A query that sees no key gets a zero output (and zero gradient). */
void attention_forward(float *out, float *att, const float *qkv, const uint8_t *key_mask,
                       int64_t B, int64_t T, int64_t C, int64_t NH, int causal);
/* The same with examples packed into one row: starts (B,T) holds, for each query, the position
 * where its example begins (<= its own position); keys before it are not visible, so attention
 * stays inside each example (a block-diagonal mask). NULL: no packing. */
void attention_forward_packed(float *out, float *att, const float *qkv, const uint8_t *key_mask, const int32_t *starts,
                              int64_t B, int64_t T, int64_t C, int64_t NH, int causal);
/* dqkv(B,T,3C) += ...; scratch(B,NH,T,T) is workspace (contents clobbered). */
void attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att,
                        int64_t B, int64_t T, int64_t C, int64_t NH);
/* Grouped-query attention (Llama 2 70B, Llama 3, Mistral, Qwen2): NKV key/value heads (NH % NKV == 0)
 * each shared by NH/NKV query heads; qkv (B,T,C+2*KVC) holds [q (C) | k (KVC) | v (KVC)] per token,
 * KVC = NKV*hs. NKV = NH is multi-head attention (the functions above). window > 0 (causal): query t
 * sees only keys > t - window (Mistral's sliding window); 0: no window. */
void attention_forward_gqa(float *out, float *att, const float *qkv, const uint8_t *key_mask, const int32_t *starts,
                           int64_t B, int64_t T, int64_t C, int64_t NH, int64_t NKV, int causal, int64_t window,
                           const uint64_t *drop, float drop_p, float *pd);
void attention_backward_gqa(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att,
                            int64_t B, int64_t T, int64_t C, int64_t NH, int64_t NKV, const uint64_t *drop,
                            float drop_p);
/* Attention dropout: drop (bits of (B,NH,T,T), dropout.c) or NULL drops attention probabilities with
 * probability drop_p: O = (P * mask / (1 - p)) V. att keeps the softmax P (backward needs it);
 * pd (B,NH,T,T) is scratch for the dropped probabilities (the backward scratch serves). */

/* ---- softmax cross-entropy over V classes ----
 * losses[n] = -log softmax(logits[n])[targets[n]]; a target < 0 means "ignored" (loss 0).
 * The loss mask is expressed through dlosses: mean over mask = dlosses[n] = mask[n] / sum(mask). */
void crossentropy_forward(float *losses, const float *logits, const int32_t *targets, int64_t N, int64_t V);
/* dlogits(N,V) = (softmax(logits) - onehot(target)) * dlosses[n], rows with target < 0 get 0.
 * Exception to the += rule: this WRITES dlogits, and dlogits may alias logits (in-place),
 * because a (N,V) logits buffer is the largest activation and has no other consumer. */
void crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets, const float *dlosses,
                           int64_t N, int64_t V);

/* ---- optimiser ----
 * One AdamW step (PyTorch semantics: decoupled decay p -= lr*wd*p, bias-corrected moments,
 * eps added to sqrt(v_hat)); t is the 1-based step count. */
void adamw_update(float *params, const float *grads, float *m, float *v, int64_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t t);
/* sqrt(sum g^2), accumulated in double in a fixed order (deterministic) */
double global_norm(const float *g, int64_t n);
void scale_inplace(float *x, int64_t n, float s);

#endif
