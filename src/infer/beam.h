/* beam.h — beam search, as Hugging Face transformers' BeamSearchScorer does it,
 * over a small "step" interface that both the decoder's KV cache (session.c's
 * lm_fwd + lm_kv) and the encoder-decoder (encdec.c) implement. */
#ifndef LM_INFER_BEAM_H
#define LM_INFER_BEAM_H

#include <stdint.h>
#include "lmkit.h"

/* N decoding states ("slots"), each with its own cache, all at the same length. */
typedef struct {
  void *self;
  int64_t V;
  /* feeds ids[i] to slot slots[i] (i < n); *logits: (n, V), row i the next token's after slot slots[i] */
  lm_status (*step)(void *self, const int *slots, const int32_t *ids, int n, const float **logits);
  /* slot dst becomes a copy of slot src (its cache up to the current length) */
  lm_status (*copy)(void *self, int dst, int src);
} lm_beam_ops;

typedef struct {
  int beams;              /* N >= 1; 1 is greedy */
  float length_penalty;   /* a hypothesis scores sum log p / (generated tokens)^length_penalty */
  int early_stopping;     /* 1: stop when N hypotheses are finished; 0: when no running beam can beat them (HF's heuristic) */
  int no_repeat_ngram;    /* > 0: a token that would repeat an n-gram of the sequence (prefix included) is banned */
  int64_t max_new;        /* tokens to generate at most */
  const int32_t *eos;     /* tokens that finish a hypothesis */
  int n_eos;
} lm_beam_opts;

/* Runs beam search. All slots start equal (the prefix fed to slot 0, whose next-token logits are
 * first (V)); prefix (n_prefix) is what no_repeat_ngram looks back into. *out (malloc'd, *n_out
 * tokens; a finishing eos included) is the best hypothesis, *score its length-penalised score. */
lm_status lm_beam_search(const lm_beam_ops *ops, const float *first, const int32_t *prefix, int64_t n_prefix,
                         const lm_beam_opts *o, int32_t **out, int64_t *n_out, double *score);

/* The two implementations of lm_beam_ops: N caches of a causal decoder, fed `ids` (the prompt, which
 * must leave max_new positions free); N decoder states of an encoder-decoder over the encoded `ids`. */
typedef struct lm_beam_model lm_beam_model;
lm_status lm_beam_decoder_init(lm_beam_model **out, const lm_model *m, int beams, const int32_t *ids, int64_t n,
                               int64_t max_new, lm_beam_ops *ops, const float **first);
lm_status lm_beam_encdec_init(lm_beam_model **out, const lm_model *m, int beams, const int32_t *ids, int64_t n,
                              int64_t max_new, lm_beam_ops *ops, const float **first);
void lm_beam_model_free(lm_beam_model *b);

/* lm_generate with o->beams >= 1: the best hypothesis, detokenized, to cb. */
lm_status lm_beam_generate(const lm_model *m, const lm_tokenizer *tok, const char *prompt, const lm_gen_opts *o,
                           lm_piece_callback cb, void *user, lm_gen_stats *stats);

#endif
