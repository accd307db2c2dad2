/* posttrain.h — post-training: from a base model to an assistant
 * (docs/posttraining.md). Instruction tuning (SFT) here; the reward model
 * and the direct preference methods build on the same pieces.
 *
 * Data are conversations (src/train/chat.h), tokenized through the model's
 * chat template into ids + a mask of the assistant's tokens. Objectives plug
 * into the one trainer (train.h lm_train_run), so they get its schedule,
 * clipping, AdamW, metrics.jsonl, checkpoints and exact resume. */
#ifndef LM_TRAIN_POSTTRAIN_H
#define LM_TRAIN_POSTTRAIN_H

#include <stdint.h>
#include "lmkit.h"
#include "base/base.h"
#include "train/chat.h"
#include "train/train.h"

/* ---- tokenized conversations */
typedef struct {
  int64_t n;
  uint32_t *ids;        /* every example's tokens */
  uint8_t *mask;        /* 1 = an assistant token (it gets a loss) */
  int64_t *off;         /* (n+1) example i is ids[off[i] .. off[i+1]) */
  int64_t longest;
  int64_t too_long;     /* conversations skipped: longer than max_length */
  int64_t no_loss;      /* skipped: no assistant token left (cannot happen with a sane template) */
} lm_sft_data;

/* Tokenizes every conversation of set (lm_chat_encode); those longer than max_length tokens are
 * counted and skipped. An error when nothing is left. */
lm_status lm_sft_encode(lm_sft_data *d, const lm_chat_set *set, const lm_chat_config *cc, const lm_tokenizer *tok,
                        int64_t max_length, const char *name);
void lm_sft_data_free(lm_sft_data *d);
/* Splits off the last `fraction` of d (in a seeded random order) as held-out examples. */
lm_status lm_sft_split(lm_sft_data *d, float fraction, uint64_t seed, lm_sft_data *held);

/* Lays out a micro-batch for a causal LM: ids (B,T) and targets (B,T): target t is token t+1 of
 * the same example where that token is an assistant token, else -1 (so the last token of an
 * example never has one). Without packing each row holds one example, right-padded with pad to
 * the longest of the batch; with packing examples follow each other in a row and starts marks
 * where each begins (positions restart there, attention stays inside); an example that does not
 * fit the rest of a row begins the next one. Padding has no target (and, packed, is its own
 * one-token example). The objective builds its batches with these calls, and so can a test:
 *
 *   lm_sft_layout l = {.d = d, .B = B, .T = T, .packing = 1, .pad = pad, .ids = ids, .targets = tgt,
 *                      .starts = starts};                      // buffers of B*T
 *   lm_sft_layout_begin(&l);
 *   while (i < n && lm_sft_layout_add(&l, order[i])) i++;      // 0: full, order[i] not placed
 *   int64_t Tb = lm_sft_layout_end(&l);                        // the batch is (B, Tb) */
typedef struct {
  const lm_sft_data *d;
  int64_t B, T;                      /* rows, and the longest a row may be */
  int packing;
  int32_t pad;
  int32_t *ids, *targets, *starts;   /* (B*T) the caller's; starts is written with packing only */
  int64_t n, row, col, longest;      /* progress: examples placed, the row and column being filled */
} lm_sft_layout;

void lm_sft_layout_begin(lm_sft_layout *l);
/* Places example i; 1 when placed, 0 when the batch is full (B examples without packing; packed,
 * i does not fit in the rest of the last row) or i is longer than T. */
int lm_sft_layout_add(lm_sft_layout *l, int64_t i);
/* Pads the rest of every row; returns the row length Tb (packing: T; else the longest placed,
 * at least 1). Rows are Tb apart in the buffers. */
int64_t lm_sft_layout_end(lm_sft_layout *l);

/* The SFT objective: epochs over train in a seeded order; micro-batches of B rows of up to T
 * tokens; mean next-token loss over the assistant tokens. neftune_alpha > 0 adds NEFTune noise
 * to the embeddings (training only) drawn from the trainer's rng. evaluate: the same loss over
 * all of eval (NAN without). */
lm_status lm_objective_sft(lm_objective *o, lm_model *m, const lm_sft_data *train, const lm_sft_data *eval,
                           int64_t B, int64_t T, int packing, float neftune_alpha, int32_t pad, uint64_t seed,
                           lm_rng *rng, const int64_t *cursor);

#endif
