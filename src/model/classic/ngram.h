/* ngram.h — an interpolated modified Kneser–Ney n-gram language model over
 * token ids (Chen & Goodman 1998), one of the models transformers replaced
 * (src/model/classic/ngram.c). Library only so far: `lmkit train --arch
 * ngram` and eval/generate/info on it are not wired yet.
 *
 *   p_n(w | h) = max(c(hw) − D_n(c(hw)), 0) / c(h) + γ(h) p_{n−1}(w | h')
 *   γ(h) = (D_n1 N1(h•) + D_n2 N2(h•) + D_n3+ N3+(h•)) / c(h)
 *
 * with h' the context without its first token, c the raw count at the highest
 * order and the continuation count N1+(•g) (distinct left neighbours) below it,
 * three discounts per order from its counts of counts, and the unigram level
 * interpolated with the uniform 1/V. A context never seen backs off entirely:
 * p_n(w | h) = p_{n−1}(w | h'). Every level sums to 1 over the vocabulary. */
#ifndef LM_NGRAM_H
#define LM_NGRAM_H

#include <stddef.h>
#include <stdint.h>
#include "lmkit.h"

typedef struct lm_ngram lm_ngram;

/* Counts the n-grams of ids[0..n) up to `order` (1..8) over a vocabulary of `vocab` ids. */
lm_status lm_ngram_train(lm_ngram **out, const uint32_t *ids, size_t n, int order, int64_t vocab);
void lm_ngram_free(lm_ngram *m);
/* p(w | ctx): ctx[0..n_ctx) are the preceding tokens (only the last order-1 are used). */
double lm_ngram_prob(const lm_ngram *m, const uint32_t *ctx, size_t n_ctx, uint32_t w);
/* the three discounts D1, D2, D3+ of order k (1..order) */
void lm_ngram_discounts(const lm_ngram *m, int k, double d[3]);

#endif
