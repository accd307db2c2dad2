/* train.h — internal pieces of the training stage shared by the trainer,
 * evaluation and tests: token streams (text files tokenized in memory, or
 * memory-mapped shards) and the learning-rate schedule. */
#ifndef LM_TRAIN_H
#define LM_TRAIN_H

#include <stdint.h>
#include "lmkit.h"
#include "train/shard.h"

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

/* Linear warmup to lr over `warmup` steps, then cosine decay to min_lr at `steps`. step is 1-based. */
float lm_lr_at(int64_t step, int64_t steps, int64_t warmup, float lr, float min_lr);

#endif
