/* denoise.h — BART's noising functions and the denoising objective (denoise.c).
 *
 * Each noising function rewrites one sequence in a work buffer and returns
 * its new length; lm_denoise_apply runs the enabled ones in fairseq's order
 * (sentence permutation, text infilling, token deletion, insertion, document
 * rotation). A token's kind comes from two tables over the vocabulary: word
 * starts (its text begins with whitespace or the SentencePiece ▁: fairseq's
 * whole-word logic for GPT-2 BPE) and sentence ends (its text ends in . ! ?
 * or holds a newline: fairseq's full-stop token). Position 0 of a window
 * always starts a word. */
#ifndef LM_DENOISE_H
#define LM_DENOISE_H

#include <stdint.h>
#include "lmkit.h"
#include "base/base.h"
#include "train/train.h"

typedef struct {
  lm_denoise_opts o;
  int64_t V, cap;          /* vocabulary; the longest sequence the buffers take (inputs up to cap/3) */
  int32_t mask_id;         /* <mask>, or -1 (then infilling and its zero-length spans are refused) */
  uint8_t *word_start, *sent_end;   /* (V) */
  const uint8_t *special;  /* (V) ids random insertion never draws (NULL: none), owned by the caller */
  int32_t *a, *b;          /* (cap) work buffers */
  int64_t *idx;            /* (cap) */
  int64_t *w;              /* (3 cap) */
  uint8_t *keep;           /* (cap) */
  /* the last lm_denoise_infill: words, the budget ceil(words * mask_ratio), the spans' lengths as drawn
   * (including zeros, before trimming to the budget), how many; NULL lengths: not kept */
  int64_t last_words, last_budget, n_drawn, last_raw;   /* last_raw: the last draw before trimming */
  int64_t *drawn;          /* (cap) */
} lm_denoiser;

/* Tables from the tokenizer; mask_id from "<mask>" (-1 when it has none). max_len: longest input. */
lm_status lm_denoiser_init(lm_denoiser *d, const lm_denoise_opts *o, const lm_tokenizer *tok, int64_t V, int64_t max_len);
/* The same from explicit tables (V each; copied), for tests. */
lm_status lm_denoiser_init_tables(lm_denoiser *d, const lm_denoise_opts *o, int64_t V, int32_t mask_id,
                                  const uint8_t *word_start, const uint8_t *sent_end, int64_t max_len);
void lm_denoiser_free(lm_denoiser *d);

/* Each works in place on x (n) (capacity d->cap) and returns the new length. */
int64_t lm_denoise_permute(lm_denoiser *d, lm_rng *rng, int32_t *x, int64_t n, float p);
int64_t lm_denoise_infill(lm_denoiser *d, lm_rng *rng, int32_t *x, int64_t n, float p, double lambda);
int64_t lm_denoise_delete(lm_denoiser *d, lm_rng *rng, int32_t *x, int64_t n, float p);
/* k new tokens at distinct random positions: <mask> (random = 0) or random non-special ids */
int64_t lm_denoise_insert(lm_denoiser *d, lm_rng *rng, int32_t *x, int64_t n, int64_t k, int random);
int64_t lm_denoise_rotate(lm_denoiser *d, lm_rng *rng, int32_t *x, int64_t n, float p);
/* all enabled functions of d->o, in order */
int64_t lm_denoise_apply(lm_denoiser *d, lm_rng *rng, int32_t *x, int64_t n);

/* a draw from Poisson(lambda) (Knuth's product of uniforms; lambda <= 30) */
int64_t lm_poisson(lm_rng *rng, double lambda);

/* The objective: windows of context-1 tokens; the encoder reads the noised window + </s> (padded to
 * the context, truncated to it), the decoder reconstructs window + </s> after decoder_start_token_id. */
lm_status lm_objective_denoise(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_stream *train,
                               const lm_stream *val, int64_t B, int64_t S, const lm_denoise_opts *o, lm_rng *rng,
                               int rank, int ranks);

#endif
