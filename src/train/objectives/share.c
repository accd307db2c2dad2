/* share.c — data parallelism for the objectives that draw their batches (BERT's masked LM and
 * NSP, T5's span corruption, BART's denoising).
 *
 * The causal-LM objective (clm.c) gives each rank its own windows by skipping the others'. These
 * objectives draw every example from the trainer's rng (masks, spans, noise), whose state the
 * ranks share, so the simplest exact scheme is: every rank draws the job's whole batch of
 * ranks x B examples, as one process at that batch would (drawing is cheap next to a forward),
 * and runs forward and backward on its own B rows. The ranks' rngs stay in step because they all
 * make the same draws.
 *
 * Token losses are a mean over labelled tokens, and the ranks' shares hold different numbers of
 * them (MLM picks 15% at random; BART's targets are padded), so the mean of the ranks' means is
 * not the job's mean. Each rank therefore divides its sum by the job's count / ranks
 * (lm_batch.loss_count): the trainer's average over the ranks is then the job's mean, and the
 * gradients are the job's. Per-example losses (NSP) have B per rank and need nothing.
 *
 * Validation (rank 0 alone) scores the job's batches share by share with the same weights, so a
 * data-parallel run logs the validation loss a single process at ranks x B would. */
#include "model/model.h"
#include "train/train.h"
#include "train/objectives/objectives.h"

/* rows r0 .. r0+B-1 of a job batch (the fields the drawing objectives fill) */
static lm_batch share_rows(const lm_batch *j, int64_t r0, int64_t B) {
  lm_batch b = *j;
  int64_t T = j->T, S = j->S;
  b.B = B;
#define ROWS(f, w) if (j->f) b.f = j->f + r0 * (w)
  ROWS(ids, T); ROWS(segments, T); ROWS(mask, T); ROWS(targets, T); ROWS(mlm_labels, T); ROWS(nsp_labels, 1);
  ROWS(enc_ids, S); ROWS(enc_mask, S);
#undef ROWS
  return b;
}

/* the job's labelled tokens (MLM labels, else LM targets) over ranks: each share's loss_count */
static float share_count(const lm_batch *j, int ranks) {
  const int32_t *t = j->mlm_labels ? j->mlm_labels : j->targets;
  int64_t n = 0, N = j->B * j->T;
  for (int64_t i = 0; t && i < N; i++) n += t[i] >= 0;
  return n > 0 ? (float)n / (float)ranks : 0.0f;
}

float lm_share_step(lm_model *m, const lm_batch *job, int rank, int ranks) {
  if (ranks <= 1) {
    float loss = lm_forward(m, job, NULL, NULL);
    lm_backward(m, job);
    return loss;
  }
  lm_batch b = share_rows(job, (int64_t)rank * (job->B / ranks), job->B / ranks);
  b.loss_count = share_count(job, ranks);
  float loss = lm_forward(m, &b, NULL, NULL);
  lm_backward(m, &b);
  return loss;
}

double lm_share_loss(lm_model *m, const lm_batch *job, int ranks) {
  if (ranks <= 1) return lm_forward(m, job, NULL, NULL);
  float count = share_count(job, ranks);
  double sum = 0;
  for (int r = 0; r < ranks; r++) {
    lm_batch b = share_rows(job, (int64_t)r * (job->B / ranks), job->B / ranks);
    b.loss_count = count;
    sum += lm_forward(m, &b, NULL, NULL);
  }
  return sum / ranks;
}
