/* train.h — internal pieces of the training stage shared by the trainer,
 * evaluation and tests: token streams (text files tokenized in memory, or
 * memory-mapped shards) and the learning-rate schedule. */
#ifndef LM_TRAIN_H
#define LM_TRAIN_H

#include <stdint.h>
#include "lmkit.h"
#include "train/shard.h"

struct cJSON;

typedef struct {
  const uint32_t *ids;   /* (n) */
  uint64_t n;
  uint32_t *owned;       /* non-NULL when ids live in memory we allocated */
  lm_shard shard;        /* when ids are a single memory-mapped shard */
} lm_stream;

/* Loads the train and validation streams from files: text files are tokenized
 * (documents separated by the end-of-text id) and the last val_fraction of the
 * tokens becomes validation; a directory from `lmkit data prepare` supplies
 * train.tok and val.tok. val may be NULL. */
lm_status lm_streams_load(const lm_tokenizer *tok, const char *const *files, int n_files, float val_fraction,
                          int64_t vocab_size, lm_stream *train, lm_stream *val);
void lm_stream_free(lm_stream *s);

/* The order an objective visits its n items in: a fresh permutation per epoch, a pure function
 * of (seed, salt, epoch), so the cursor (epoch, index) resumes exactly (src/train/epochs.c). */
typedef struct {
  int64_t n, epoch, index; uint64_t seed, salt; int64_t *perm;
  const int64_t *len; int64_t group; void *scratch;   /* lm_epochs_group_by_length; len NULL: off */
} lm_epochs;
/* cursor: (epoch, index) to resume from, or NULL to start; an out-of-range cursor is an error */
lm_status lm_epochs_init(lm_epochs *e, int64_t n, uint64_t seed, uint64_t salt, const int64_t *cursor);
/* From now on (the current epoch included) each run of `group` consecutive items of every epoch's
 * order is sorted by len[item], longest first, ties in shuffled order: Hugging Face's
 * group_by_length (mega-batches of 50 batches), so batches padded to their longest member pad
 * little. Still a pure function of (seed, salt, epoch). len (n items) must outlive e. */
lm_status lm_epochs_group_by_length(lm_epochs *e, const int64_t *len, int64_t group);
int64_t lm_epochs_next(lm_epochs *e);   /* the next item, reshuffling at the end of an epoch */
void lm_epochs_free(lm_epochs *e);

/* A training objective: what a micro-batch is and how its loss is computed. The trainer
 * (schedule, clipping, AdamW, logging, checkpoints) is the same for all of them. */
typedef struct {
  void *self;
  /* builds the next micro-batch, runs forward and backward (accumulating grads); returns its mean loss */
  float (*micro)(void *self, lm_model *m);
  /* mean validation loss over at most max_batches batches (0: all); NAN without validation data */
  double (*evaluate)(void *self, lm_model *m, int64_t max_batches);
  /* the data cursor to checkpoint (objectives that sample with the trainer's rng report 0, 0) */
  void (*cursor)(void *self, int64_t *epoch, int64_t *index);
  void (*free)(void *self);
  /* optional: extra JSON members for the last evaluation's metrics line, e.g. "\"val_accuracy\": 0.91";
   * returns the length written into buf (0: nothing) */
  int (*eval_fields)(void *self, char *buf, size_t n);
  /* optional: extra JSON members for a step's metrics line, over the micro-batches since the last
   * call (e.g. DPO's "rewards/chosen"); returns the length written into buf (0: nothing) */
  int (*step_fields)(void *self, char *buf, size_t n);
  /* optional: a second model trained alongside m (PPO's value model). The trainer zeroes its
   * gradients, clips both models by one global norm (TRL's one optimizer over policy and value),
   * steps it with AdamW at the same rate, and saves it in every state as the model directory
   * aux_name/ (its moments in optimizer.safetensors as aux.exp_avg, aux.exp_avg_sq). On resume the
   * trainer reads the moments back; the caller loads the weights from RESUME/aux_name. */
  lm_model *aux;
  const char *aux_name;
  /* optional: the objective's own state, kept in trainer_state.json as "objective_state" (PPO's
   * adaptive KL coefficient). state_save writes a JSON object into buf after each step (returns
   * its length); state_restore gets it back on resume, before the first micro-batch. */
  int (*state_save)(void *self, char *buf, size_t n);
  lm_status (*state_restore)(void *self, const struct cJSON *state);
} lm_objective;

/* Makes the objective of a run (e.g. a fine-tuning task over its own data); rng is the trainer's
 * (checkpointed) generator, cursor the resumed data cursor or NULL. */
typedef lm_status (*lm_objective_factory)(lm_objective *obj, lm_model *m, const lm_tokenizer *tok,
                                          const lm_train_opts *o, lm_rng *rng, const int64_t *cursor, void *ctx);
/* lm_train with a custom objective: the same loop, schedule, clipping, AdamW, evaluation,
 * metrics.jsonl, checkpoints and resume. factory NULL = lm_train (o->data streams, o->objective). */
lm_status lm_train_run(lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o,
                       lm_objective_factory factory, void *ctx, lm_train_callback cb, void *user);

/* Causal LM over windows of T+1 tokens; cursor (epoch, index) or NULL to start. Reserves the model.
 * Data parallelism: rank `rank` of `ranks` takes its B of the job's ranks x B windows per
 * micro-batch (1 rank: rank 0 of 1). */
lm_status lm_objective_clm(lm_objective *o, lm_model *m, const lm_stream *train, const lm_stream *val,
                           int64_t B, int64_t T, uint64_t seed, const int64_t *cursor, int rank, int ranks);
/* BERT pre-training: MLM (+ NSP when nsp) on [CLS] A [SEP] B [SEP] examples drawn with rng.
 * This and the span and denoising objectives take data parallelism as objectives/share.c does:
 * rank `rank` of `ranks` trains on its B of the job's ranks x B examples (1 rank: rank 0 of 1). */
lm_status lm_objective_bert(lm_objective *o, lm_model *m, const lm_tokenizer *tok, const lm_stream *train,
                            const lm_stream *val, int64_t B, int64_t T, int nsp, float mlm_prob, lm_rng *rng,
                            int rank, int ranks);
/* T5 span corruption (objectives/span.c) for encoder-decoders: inputs of S tokens from windows of
 * the train stream drawn with rng. */
lm_status lm_objective_span(lm_objective *o, lm_model *m, const lm_tokenizer *tok, const lm_stream *train,
                            const lm_stream *val, int64_t B, int64_t S, lm_rng *rng, int rank, int ranks);
/* Mean next-token loss over consecutive windows of s; inp/tgt hold (B,T). */
lm_status lm_clm_eval_stream(lm_model *m, const lm_stream *s, int64_t T, int64_t B, int64_t max_batches,
                             int32_t *inp, int32_t *tgt, double *mean, int64_t *count);

/* What `--resume dir` continues from: the newest complete training state among dir's
 * checkpoint-N directories and dir itself (a run directory or one checkpoint). *path is
 * malloc'ed; an unfinished save (*.tmp) or a directory without a complete state is an error. */
lm_status lm_train_find_resume(const char *dir, char **path, int64_t *step);
/* The run options and step saved in dir/trainer_state.json (data paths are not returned). */
lm_status lm_train_read_state(const char *dir, lm_train_opts *o, int64_t *step);

/* Linear warmup to lr over `warmup` steps, then cosine decay to min_lr at `steps`. step is 1-based. */
float lm_lr_at(int64_t step, int64_t steps, int64_t warmup, float lr, float min_lr);

#endif
