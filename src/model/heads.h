/* heads.h — task heads: objects of their own on top of any family's hidden
 * states h (N,C) (DESIGN.md §3). The head kind is cfg.head (lmkit.h
 * lm_head_kind); what varies by family is asked of the family (family.h):
 * how sequence heads pool, whether their output layer has a bias, and the
 * Hugging Face names of the head's tensors.
 *
 *   LM        logits = h W^T (W = wte when tied, else lm_head); loss = mean CE over targets >= 0
 *   MLM       LayerNorm(act(h W_d^T + b_d)) W_dec^T + mlm.bias at the rows with a label (all rows
 *             without labels); W_dec = wte when tied
 *   PRETRAIN  MLM + NSP: tanh(h[:,0] W_p^T + b_p) W_n^T + b_n; loss = MLM mean + NSP mean
 *             (distillation adds a soft-target KL term: lm_batch.mlm_soft_targets)
 *   CLASSIFY  pooled (B,C) -> (B,L); mean CE over labels >= 0. Pooling: LM_POOL_FIRST = tanh
 *             pooler on the first token; LM_POOL_LAST = the last non-pad token (mask, else
 *             ids != pad_token_id, else T-1), no pooler
 *   SCALAR    pooled as CLASSIFY -> (B); loss = mean squared error against lm_batch.values
 *   TOKENS    every token -> (B,T,L); mean CE over labels >= 0 at real tokens
 *   QA        every token -> (start, end) logits; softmax over the real tokens of each sequence;
 *             loss = (CE(start) + CE(end)) / 2, mean over sequences with labels
 *
 * Internal tensor names are the head's own ("classifier.weight", "mlm.dense.weight",
 * "lm_head.weight"); the family maps them to its HF class's ("score.weight" in GPT-2,
 * "classifier.weight" in BERT). */
#ifndef LM_MODEL_HEADS_H
#define LM_MODEL_HEADS_H

#include <stdint.h>
#include "model/model.h"

const char *lm_head_name(int head);                  /* "lm", "classify", ... */
int lm_head_from_name(const char *name);             /* -1 if unknown */
int lm_head_is_tensor(const char *name);             /* one of a head's own tensors (not the base model's) */
int lm_head_is_sequence(int head);                   /* pools a sequence to one vector (classify, scalar) */

/* internal: model.c's hooks */
int lm_head_add_params(const lm_config *c, const lm_family *f, lm_param_table *t);
lm_status lm_head_reserve(lm_model *m, int64_t B, int64_t T, int need_grads);
void lm_head_free(lm_model *m);
lm_status lm_head_check(const lm_model *m, const lm_batch *b);
/* returns the loss (NAN without labels); clears m->ok when it refuses the batch (error set) */
float lm_head_forward(lm_model *m, const lm_batch *b, const float *hidden, float *aux_a, float *aux_b);
/* dhidden (N,C) zeroed by the caller; ACCUMULATES the head's gradients */
void lm_head_backward(lm_model *m, const lm_batch *b, const float *hidden, float *dhidden);

/* ---- results of the last forward */
const float *lm_model_hidden(const lm_model *m);     /* (B,T,C) the head's input */
/* The head's output: LM (N,V), classify (B,L), scalar (B), tokens (B,T,L), qa (B,T,2) as
 * [start, end] pairs, mlm/pretrain: MLM (M,V) for the M rows of lm_model_mlm_rows.
 * After lm_backward the LM and MLM buffers hold d(logits). */
const float *lm_model_logits(const lm_model *m);
const float *lm_model_pooled(const lm_model *m);     /* (B,C) the pooled vectors of sequence heads, or NULL */
/* the classifier-input dropout mask the last training forward drew ((B,C) bits for classify/scalar,
 * (B*T,C) for tokens, 1 = kept), or NULL when it drew none (refdrv.h save_dropout_masks) */
const uint64_t *lm_model_head_dropout_mask(const lm_model *m);
const int32_t *lm_model_pool_index(const lm_model *m); /* (B) the token each sequence was pooled at, or NULL */
int64_t lm_model_mlm_rows(const lm_model *m, const int32_t **rows);  /* rows (b*T + t) of the MLM logits; M */
const float *lm_model_nsp_logits(const lm_model *m); /* (B,2), pretrain head */
/* The mean KL(p || softmax(z / tau)) over the M rows of the last forward, before the
 * alpha_ce * tau^2 weight (NAN when the batch had no mlm_soft_targets). */
float lm_model_distill_kl(const lm_model *m);
/* The LM head's output matrix (V,C): wte when tied, else lm_head.weight; NULL for other heads. */
const float *lm_model_lm_head(const lm_model *m);
/* The LM head's logits bias (V) (BART's final_logits_bias), or NULL: none. */
const float *lm_model_lm_head_bias(const lm_model *m);
/* Per-token losses of the LM head's last forward with targets (N), 0 where ignored. */
const float *lm_model_token_losses(const lm_model *m);

#endif
