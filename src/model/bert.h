/* bert.h — the BERT encoder family (DESIGN.md §3): embeddings (word + position
 * + segment, LayerNorm), n_layer post-LN bidirectional blocks with a key
 * padding mask, and one task head chosen by cfg.head (lmkit.h lm_bert_head):
 *
 *   LM_HEAD_PRETRAIN  MLM: LayerNorm(act(h W_d^T + b_d)) wte^T + mlm.bias at the positions
 *                     with a label (or all positions when there are no labels),
 *                     NSP: tanh(h[:,0] W_p^T + b_p) W_n^T + b_n;  loss = MLM mean + NSP mean
 *                     (distillation adds a soft-target KL term: lm_bert_batch.mlm_soft_targets)
 *   LM_HEAD_CLASSIFY  tanh-pooled [CLS] -> (B, num_labels); mean cross-entropy over labels >= 0
 *   LM_HEAD_TOKENS    every token -> (B, T, num_labels); mean over labels >= 0 at real tokens
 *   LM_HEAD_QA        every token -> (start, end) logits; softmax over the real tokens of each
 *                     sequence; loss = (CE(start) + CE(end)) / 2, means over sequences with labels
 *
 * Training: lm_bert_reserve once for the largest (B, T), then per step
 * lm_model_zero_grad, lm_bert_forward, lm_bert_backward (accumulates into
 * m->grads). Nothing is allocated inside a step. lm_bert_forward validates the
 * batch (lm_bert_check_batch) and returns NAN, with lm_last_error() set, for a
 * bad one; lm_bert_backward after such a forward does nothing.
 *
 * Directories are Hugging Face's (BertForPreTraining, BertForSequenceClassification,
 * BertForTokenClassification, BertForQuestionAnswering; a plain BertModel or
 * BertForMaskedLM loads too). Tensors of a head the file lacks are initialised
 * (normal(0, initializer_range), seed 0), as transformers does. */
#ifndef LM_MODEL_BERT_H
#define LM_MODEL_BERT_H

#include <stdint.h>
#include "lmkit.h"
#include "model/model.h"

typedef struct {            /* one batch for the encoder */
  const int32_t *ids;       /* (B,T) */
  const int32_t *segments;  /* (B,T) token type ids, or NULL (all 0) */
  const uint8_t *mask;      /* (B,T) 1 = real token, 0 = padding; NULL = all real */
  const int32_t *mlm_labels;/* (B,T) target id or -1; NULL = no MLM loss (pretrain head) */
  const int32_t *nsp_labels;/* (B) 0 = is next, 1 = random, -1 = none; NULL = no NSP loss (pretrain head) */
  const int32_t *labels;    /* classify: (B); tokens: (B,T) with -1 ignored; qa: (B,2) start,end (-1: none); or NULL */
  int64_t B, T;
  /* Knowledge distillation (DistilBERT; pretrain head). With mlm_soft_targets non-NULL the MLM
   * part of the loss becomes
   *   distill_alpha_ce * tau^2 * mean over the M rows of KL(p || softmax(z / tau))
   *   + distill_alpha_mlm * (MLM cross-entropy mean over the labels)          [+ NSP mean]
   * where z (M,V) are the MLM logits, tau = distill_temperature (> 0) and p = mlm_soft_targets
   * (M,V): the teacher's softmax(z_teacher / tau) at the rows of lm_bert_mlm_rows (the positions
   * with an MLM label, in order; all B*T without labels). The tau^2 keeps the gradient of the
   * soft term at the scale of the hard one as tau grows (Hinton et al. 2015). NULL: plain
   * MLM + NSP, the three numbers unused. */
  const float *mlm_soft_targets;
  float distill_alpha_ce, distill_alpha_mlm, distill_temperature;
} lm_bert_batch;

/* Sizes the activations for batches of up to B sequences of up to T tokens (T <= n_positions). */
lm_status lm_bert_reserve(lm_model *m, int64_t B, int64_t T, int need_grads);
/* Every id, segment and label in range, the batch fits the reserved sizes; errors name the field. */
lm_status lm_bert_check_batch(const lm_model *m, const lm_bert_batch *b);

/* Forward; returns the total loss of the head (NAN when the batch has no labels, or is bad).
 * For the pretrain head *mlm_loss / *nsp_loss (either may be NULL) receive the two means
 * (NAN when absent); other heads set them to NAN. Keeps activations for backward. */
float lm_bert_forward(lm_model *m, const lm_bert_batch *b, float *mlm_loss, float *nsp_loss);
/* Backward of the loss of the last forward (same batch); ACCUMULATES into m->grads. */
void lm_bert_backward(lm_model *m, const lm_bert_batch *b);

const float *lm_bert_hidden(const lm_model *m);   /* (B,T,C) encoder output of the last forward */
const float *lm_bert_pooled(const lm_model *m);   /* (B,C) tanh pooler output, or NULL (tokens, qa heads) */
/* Head logits of the last forward: classify (B,L), tokens (B,T,L), qa (B,T,2) as [start, end]
 * pairs, pretrain: MLM (M,V) for the M positions of lm_bert_mlm_rows (all B*T without labels).
 * After lm_bert_backward the MLM buffer holds d(logits). */
const float *lm_bert_logits(const lm_model *m);
/* Pretrain head: the rows (b*T + t) the MLM logits were computed for; returns M. */
int64_t lm_bert_mlm_rows(const lm_model *m, const int32_t **rows);
const float *lm_bert_nsp_logits(const lm_model *m); /* (B,2), pretrain head */
/* The mean KL(p || softmax(z / tau)) over the M rows of the last forward, before the alpha_ce *
 * tau^2 weight (NAN when the batch had no mlm_soft_targets). */
float lm_bert_distill_kl(const lm_model *m);

/* Loads a Hugging Face BERT directory (config.json + model.safetensors) with the head its
 * config names. */
lm_status lm_bert_load(lm_model **out, const char *dir);
/* The same with another head (e.g. a pre-trained checkpoint for fine-tuning): encoder tensors
 * are loaded, the head's tensors are loaded only when the directory has that same head, else
 * initialised with `seed`. num_labels <= 0 keeps the config's. */
lm_status lm_bert_load_head(lm_model **out, const char *dir, lm_bert_head head, int64_t num_labels, uint64_t seed);
/* Writes config.json + model.safetensors with transformers' names for cfg.head, atomically. */
lm_status lm_bert_save(const lm_model *m, const char *dir);

#endif
