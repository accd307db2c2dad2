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

/* ---- T5 span corruption (span.c) */
/* T5's random_spans_noise_mask: noise (length) gets 1 on round(length * density) tokens in
 * round(noise / mean_span) spans (round half to even), kept tokens first; work (3 length + 6) is
 * scratch; every random draw (a shuffle index) is appended to draws when non-NULL (at most
 * 2 length). Returns the number of spans. */
int64_t lm_span_noise_mask(lm_rng *rng, int64_t length, double density, double mean_span, uint8_t *noise,
                           int64_t *work, uint32_t *draws);
/* T5's compute_input_and_target_lengths: the raw window that corrupts to inputs_length tokens, and
 * the target's length */
void lm_span_lengths(int64_t inputs_length, double density, double mean_span, int64_t *raw, int64_t *targets);
/* raw (n) and its noise mask -> inp (kept tokens, one sentinel per span: sentinel0, sentinel0 - 1,
 * ..., then eos) and tgt (each span's sentinel and its tokens, then eos); their lengths out */
void lm_span_corrupt(const int32_t *raw, const uint8_t *noise, int64_t n, int32_t sentinel0, int32_t eos, int32_t *inp,
                     int64_t *n_inp, int32_t *tgt, int64_t *n_tgt);
struct lm_tokenizer;
/* The id of <extra_id_0>, checking that <extra_id_1> .. <extra_id_{n-1}> count down from it; an
 * error naming the missing or misplaced one otherwise. */
lm_status lm_span_sentinels(const struct lm_tokenizer *tok, int64_t n, int32_t *sentinel0);

/* ---- data parallelism for objectives that draw their batches (share.c): every rank draws the
 * job's batch of ranks x B examples with the shared rng and trains on its own B rows, token losses
 * divided by the job's count / ranks so the ranks' mean is the job's. ranks 1: the whole batch. */
struct lm_model;
struct lm_batch;
/* forward and backward on rank's share of job (B = ranks x the model's reserved batch); its loss */
float lm_share_step(struct lm_model *m, const struct lm_batch *job, int rank, int ranks);
/* the job's loss, share by share (no backward): what one process at the job's batch computes */
double lm_share_loss(struct lm_model *m, const struct lm_batch *job, int ranks);

#endif
