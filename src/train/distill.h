/* distill.h — knowledge distillation of a BERT encoder into a shallower one
 * (DistilBERT, Sanh et al. 2019; docs/distill.md), and the BERT example
 * builder it shares with BERT pre-training.
 *
 * The student has the teacher's config with fewer layers and starts from the
 * teacher's weights: embeddings, heads and an evenly spaced subset of the
 * layers (every other one for half the depth, as DistilBERT). Training draws
 * BERT pre-training examples exactly as `lmkit train --objective mlm` does,
 * runs the teacher (no gradients) on each masked batch, and trains the student
 * on alpha_ce * tau^2 * KL(teacher_tau || student_tau) + alpha_mlm * MLM
 * cross-entropy at the masked positions (lm_batch.mlm_soft_targets),
 * with the shared trainer (lm_train_run: schedule, clipping, AdamW,
 * evaluation, metrics.jsonl, checkpoints, exact resume). */
#ifndef LM_TRAIN_DISTILL_H
#define LM_TRAIN_DISTILL_H

#include <stdint.h>
#include "lmkit.h"
#include "base/base.h"
#include "model/heads.h"
#include "train/objectives/objectives.h"
#include "train/train.h"

/* ---- BERT examples: B sequences [CLS] A [SEP] (B [SEP]) of T tokens from a stream (nsp.c), masked
 * for MLM afresh on every draw (mlm.c), every draw from the caller's rng. Implemented in
 * objectives/bert_pretrain.c; used by the pre-training and distillation objectives. */
typedef struct {
  lm_pair_source train, val;
  int have_val, nsp;
  lm_mlm_opts mlm;
  uint8_t *special;                          /* (V) ids never masked */
  int64_t B, T;
  int32_t *ids, *seg, *labels, *nsp_labels;  /* (B,T), (B,T), (B,T), (B) */
  uint8_t *mask;                             /* (B,T) */
} lm_bert_examples;

/* Finds [CLS] [SEP] [MASK] [PAD] (or <s> </s> <mask> <pad>) in tok (an error names the missing one);
 * val may be NULL or too small for pairs (then have_val = 0). */
lm_status lm_bert_examples_init(lm_bert_examples *e, const lm_tokenizer *tok, int64_t vocab_size, const lm_stream *train,
                                const lm_stream *val, int64_t B, int64_t T, int nsp, float mlm_prob);
/* Draws the next batch from the train (or val) stream into e's buffers; *b points at them, with NSP
 * labels when e->nsp. */
void lm_bert_examples_next(lm_bert_examples *e, int from_val, lm_rng *rng, lm_batch *b);
void lm_bert_examples_free(lm_bert_examples *e);

/* ---- the student */

/* Which teacher layer student layer k copies: round(k * (L_teacher - 1) / (L_student - 1)), the
 * first and last always included (6 of 12 gives 0 2 4 7 9 11; 1 of L gives 0). */
int64_t lm_distill_layer(int64_t k, int64_t n_student, int64_t n_teacher);
/* A pre-training-head BERT with teacher's config but n_layer layers (1 <= n_layer < teacher's), every
 * tensor copied from the teacher (layers picked by lm_distill_layer). */
lm_status lm_distill_student(lm_model **out, const lm_model *teacher, int64_t n_layer);

/* Teacher forward on b (without its NSP labels and soft targets), then
 *   out (M,V) = softmax(z_teacher / tau)
 * at the M rows of lm_model_mlm_rows (the positions with an MLM label; all B*T without labels):
 * the mlm_soft_targets of the student's batch. The teacher must be reserved (lm_model_reserve) for
 * b; out holds at least B*T*V floats. teacher_mlm (or NULL) receives its MLM loss. Returns M, or
 * -1 (lm_last_error set) when the teacher cannot run the batch. */
int64_t lm_distill_soft_targets(lm_model *teacher, const lm_batch *b, float tau, float *out, float *teacher_mlm);

/* ---- the objective: examples as lm_objective_bert (nsp: keep the student's NSP loss, weight 1),
 * teacher forward at the masked rows, probabilities at temperature tau, student forward/backward
 * with them as soft targets. evaluate: the same loss over fixed validation batches. Reserves the
 * student (with gradients) and the teacher (without) for (B, T). last_kl / last_mlm, when not
 * NULL, receive the components of the last training micro-batch (mean KL before alpha_ce * tau^2,
 * and the MLM cross-entropy). The teacher must outlive the objective. */
typedef struct {
  lm_model *teacher;
  float temperature, alpha_ce, alpha_mlm;
  float *last_kl, *last_mlm, *last_teacher_mlm;
} lm_distill_loss;

lm_status lm_objective_distill(lm_objective *o, lm_model *student, const lm_distill_loss *dl, const lm_tokenizer *tok,
                               const lm_stream *train, const lm_stream *val, int64_t B, int64_t T, int nsp,
                               float mlm_prob, lm_rng *rng);

/* ---- the driver (`lmkit distill`) */
typedef struct {
  const char *teacher_dir;     /* pre-trained BERT (pretrain head) with its tokenizer */
  int64_t student_layers;      /* 1 .. teacher's n_layer - 1 */
  float temperature;           /* 2.0 */
  float alpha_ce, alpha_mlm;   /* 5.0, 2.0 (DistilBERT's) */
  int nsp;                     /* 0: MLM only (DistilBERT); 1: also the student's NSP loss */
  lm_train_opts train;         /* data, out_dir, resume_dir, batch, context, steps, lr, ... */
} lm_distill_opts;

typedef struct {
  int64_t teacher_params, student_params, teacher_layers, student_layers;
  int64_t layers[64];          /* teacher layer of each student layer (first 64) */
  float first_loss, last_loss, val_loss;   /* NAN where absent */
  float last_kl, last_mlm, teacher_mlm;    /* components of the last training micro-batch */
  double teacher_tps, student_tps;         /* forward tokens/s on one batch (0 if not measured) */
  int64_t speed_B, speed_T;
} lm_distill_result;

void lm_distill_opts_default(lm_distill_opts *o);
/* Loads the teacher and its tokenizer, builds the student (or, with train.resume_dir, loads it and
 * the teacher named in the checkpoint's distill.json unless teacher_dir is given), trains it with
 * lm_train_run, writes train.out_dir (model, tokenizer, trainer state, metrics.jsonl, distill.json),
 * then times one forward batch of each model. */
lm_status lm_distill(const lm_distill_opts *o, lm_distill_result *res);

#endif
