/* objectives.h — training objectives that turn a token stream into a batch:
 * masked language modelling (BERT, RoBERTa) and next-sentence prediction
 * pairs. The causal-LM objective (GPT) is the trainer's default windowing in
 * src/train/trainer.c. All randomness comes from an lm_rng the caller owns
 * (and checkpoints), so batches are reproducible and resumable. */
#ifndef LM_OBJECTIVES_H
#define LM_OBJECTIVES_H

#include <stdint.h>
#include "base/base.h"

/* ---- MLM: choose each eligible token with probability `prob`; a chosen token becomes
 * [MASK] 80% of the time, a random ordinary token 10%, and stays itself 10%; its label is
 * the original id. Unchosen tokens get label -1. Padding (attn_mask 0) and special ids
 * (special[id] != 0) are never chosen. */
typedef struct {
  int32_t mask_id;
  int64_t vocab_size;
  float prob;                 /* 0.15 */
  const uint8_t *special;     /* (vocab_size) 1 = special, or NULL */
} lm_mlm_opts;

/* ids (N) are rewritten in place; labels (N) receive targets or -1. Returns how many were chosen. */
int64_t lm_mlm_mask(lm_rng *rng, const lm_mlm_opts *o, int32_t *ids, const uint8_t *attn_mask, int32_t *labels, int64_t N);

/* ---- NSP pairs: [CLS] A [SEP] B [SEP] [PAD]... from a stream of documents separated by
 * `doc_sep` (the tokenizer's end-of-text id; -1: none), each cut into pieces of at most max_doc. Half the time B continues A in the same document (label 0, "is next"), half the
 * time B is taken from a random other document (label 1). */
typedef struct {
  const uint32_t *ids; uint64_t n;   /* the stream */
  uint64_t *doc_start; int64_t n_docs; /* documents (runs between separators, >= 2 tokens): start | len << 40 */
  int32_t cls_id, sep_id, pad_id;
} lm_pair_source;

lm_status lm_pair_source_init(lm_pair_source *s, const uint32_t *ids, uint64_t n, int64_t doc_sep, uint64_t max_doc,
                              int32_t cls_id, int32_t sep_id, int32_t pad_id);
void lm_pair_source_free(lm_pair_source *s);
/* Fills one example of length T (T >= 5): ids, segments, attention mask; returns its NSP label
 * (0 or 1), or label -1 with a single segment when nsp is 0 (MLM-only: one span of a document). */
int32_t lm_pair_make(const lm_pair_source *s, lm_rng *rng, int64_t T, int nsp, int32_t *ids, int32_t *segments, uint8_t *mask);

#endif
