/* mm.h — the matrix products of a model's linear layers, in fp32 (OpenBLAS) or bf16 (oneDNN).
 *
 * lm_linear_forward / lm_linear_backward compute what matmul_forward / matmul_backward compute
 * (kernels.h: out = inp W^T + b in nn.Linear's layout; backward ACCUMULATES dinp, dW, db) through
 * an lm_mm engine. A NULL engine is fp32: the call goes straight to matmul.c's cblas_sgemm.
 *
 * A bf16 engine (lm_mm_create) hands the three products to oneDNN matmul primitives with bf16
 * inputs and fp32 accumulation and output:
 *   - the weights are rounded to bf16 once per weight version: the engine keeps a bf16 copy of
 *     every W it has seen, keyed by its address, and lm_mm_invalidate (the optimiser stepped)
 *     marks them all stale; forward, the activation-checkpointing recompute and backward of one
 *     step share one copy;
 *   - the activations (inp) and output gradients (dout) are rounded on each call (they change
 *     on each call);
 *   - a primitive is built once per shape and product and kept (building one costs far more
 *     than running a small one); its scratchpad is one buffer of the engine's;
 *   - the bias and its gradient stay fp32 (matmul.c's deterministic column sums).
 * Rounding is to nearest even, so a bf16 product of one input is the same bits on every call
 * with the same thread count (oneDNN's matmul has a fixed reduction order), and a run is
 * deterministic as an fp32 run is.
 *
 * Error of a bf16 product: each input rounds with relative error <= 2^-9, so each term of a
 * dot product of length K is off by <= ~2^-8 |a_k b_k|, independent between terms; with fp32
 * accumulation the result is within ~2^-8 sqrt(K) of the typical term scale, i.e. a relative
 * error in the Frobenius norm of about 2^-8 ~ 4e-3 (tests/unit/test_mm.c checks <= 1e-2).
 *
 * The engine owns no global state: a model holds its own (model.h lm_model.mm). */
#ifndef LM_KERNELS_MM_H
#define LM_KERNELS_MM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "lmkit.h"

typedef struct lm_mm lm_mm;

/* 1 when oneDNN runs bf16 products natively on this CPU (AVX512-BF16 or AMX; oneDNN's
 * ONEDNN_MAX_CPU_ISA can lower what it uses); isa (may be NULL) receives oneDNN's name for the
 * ISA it will use. */
int lm_mm_bf16_native(char *isa, size_t n);
/* A bf16 engine. LM_ERR_UNSUPPORTED when the CPU lacks bf16 products (lm_mm_bf16_native):
 * callers then run fp32 (a NULL engine) and say so. */
lm_status lm_mm_create(lm_mm **out);
void lm_mm_free(lm_mm *mm);
/* The weights changed (an optimiser step, a load): the cached bf16 copies are stale. */
void lm_mm_invalidate(lm_mm *mm);
/* Products that oneDNN refused and that ran in fp32 instead (0 normally). */
int64_t lm_mm_fallbacks(const lm_mm *mm);

/* out(N,OC) = inp(N,C) @ W(OC,C)^T + b(OC) (b may be NULL) */
void lm_linear_forward(lm_mm *mm, float *out, const float *inp, const float *W, const float *b, int64_t N,
                       int64_t C, int64_t OC);
/* dinp(N,C) += dout W, dW(OC,C) += dout^T inp, db(OC) += column sums of dout; each may be NULL */
void lm_linear_backward(lm_mm *mm, float *dinp, float *dW, float *db, const float *dout, const float *inp,
                        const float *W, int64_t N, int64_t C, int64_t OC);

/* The engine's bf16 copy of the weight W (n values), for an optimiser that rounds the updated
 * weights in its own pass (kernels.h adamw_update_bf16) instead of leaving it to the next product:
 * after lm_mm_invalidate, returns the copy and counts it current, so the caller MUST fill all n
 * values (lm_bf16_round of the new W) before the next product. NULL when mm is NULL or no product
 * has used exactly (W, n) (then a product rounds W itself when it needs it, as without a claim). */
uint16_t *lm_mm_weight_claim(lm_mm *mm, const float *W, int64_t n);

/* fp32 -> bf16: round to nearest, ties to even; a NaN stays a (quiet) NaN */
static inline uint16_t lm_bf16_round(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}
/* fp32 -> bf16 (lm_bf16_round) and back, n values */
void lm_f32_to_bf16(uint16_t *dst, const float *src, int64_t n);
void lm_bf16_to_f32(float *dst, const uint16_t *src, int64_t n);

#endif
