/* ngram.h — an interpolated modified Kneser–Ney n-gram language model over
 * token ids (Chen & Goodman 1998), one of the models transformers replaced
 * (src/model/classic/ngram.c). The "ngram" model family (ngram_lm.c) puts it
 * behind lmkit's model interface: `lmkit train --arch ngram`, eval, generate, info.
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
/* p[0..vocab) = p(w | ctx) for every w: equal to lm_ngram_prob bit for bit, cheaper */
void lm_ngram_dist(const lm_ngram *m, const uint32_t *ctx, size_t n_ctx, double *p);
/* the three discounts D1, D2, D3+ of order k (1..order) */
void lm_ngram_discounts(const lm_ngram *m, int k, double d[3]);
int lm_ngram_order(const lm_ngram *m);
int64_t lm_ngram_vocab(const lm_ngram *m);
size_t lm_ngram_tokens(const lm_ngram *m);        /* tokens counted */
size_t lm_ngram_count(const lm_ngram *m, int k);  /* distinct k-grams (1..order) */

/* The file (ngram.bin, docs/classic.md): the counted token stream, from which every count is
 * recomputed on load (an n-gram is stored as a position in that stream, so the stream is the counts'
 * compact form), little-endian:
 *   "LMNGRAM1" | u32 order | u32 bytes per id (2 when vocab <= 65536, else 4) | u64 vocab | u64 n | n ids
 * lm_ngram_write returns the bytes (malloc'ed); lm_ngram_read checks every field and id, and needs
 * the file's order and vocabulary to match order / vocab (0: take the file's). */
lm_status lm_ngram_write(const lm_ngram *m, char **out, size_t *len);
lm_status lm_ngram_read(lm_ngram **out, const void *data, size_t len, int order, int64_t vocab);

#endif
