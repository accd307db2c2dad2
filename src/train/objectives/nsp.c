/* nsp.c — next-sentence-prediction pairs (BERT): an example is
 * [CLS] A [SEP] B [SEP] with segment ids 0 for the first part and 1 for the
 * second. A is a span of a random document; B is, with probability 1/2, the
 * text that follows A in that document ("is next", label 0) and otherwise a
 * span of another random document (label 1). Spans are cut at token
 * boundaries rather than sentence boundaries, which keeps the pipeline
 * independent of any sentence splitter. */
#include <stdlib.h>
#include <string.h>
#include "train/objectives/objectives.h"

lm_status lm_pair_source_init(lm_pair_source *s, const uint32_t *ids, uint64_t n, int64_t doc_sep, uint64_t max_doc,
                              int32_t cls_id, int32_t sep_id, int32_t pad_id) {
  memset(s, 0, sizeof *s);
  if (n >= (1ull << 40)) return lm_error(LM_ERR_RANGE, "streams over 2^40 tokens are not supported");
  s->ids = ids; s->n = n; s->cls_id = cls_id; s->sep_id = sep_id; s->pad_id = pad_id;
  int64_t cap = 16;
  s->doc_start = malloc((cap + 1) * sizeof(uint64_t));
  if (!s->doc_start) return lm_error(LM_ERR_NOMEM, "out of memory");
  uint64_t start = 0;
  if (max_doc < 2 || max_doc >= (1ull << 23)) max_doc = 1ull << 23;
  for (uint64_t i = 0; i <= n; i++) {
    /* a document ends at a separator, or is cut at max_doc tokens so that a corpus of
     * few long documents still offers "random next" pairs from elsewhere */
    int cut = i == n || (doc_sep >= 0 && ids[i] == (uint64_t)doc_sep) || i - start == max_doc;
    if (!cut) continue;
    if (i - start >= 2) {
      if (s->n_docs + 1 >= cap) {
        cap *= 2;
        uint64_t *p = realloc(s->doc_start, (cap + 1) * sizeof(uint64_t));
        if (!p) { lm_pair_source_free(s); return lm_error(LM_ERR_NOMEM, "out of memory"); }
        s->doc_start = p;
      }
      /* one word per document: start in the low 40 bits, length above */
      s->doc_start[s->n_docs++] = start | ((uint64_t)(i - start) << 40);
    }
    start = (i < n && doc_sep >= 0 && ids[i] == (uint64_t)doc_sep) ? i + 1 : i;
  }
  if (s->n_docs == 0) { lm_pair_source_free(s); return lm_error(LM_ERR_ARG, "the data holds no document of 2 or more tokens"); }
  return LM_OK;
}

void lm_pair_source_free(lm_pair_source *s) { free(s->doc_start); memset(s, 0, sizeof *s); }

static void doc_span(const lm_pair_source *s, int64_t d, uint64_t *start, uint64_t *len) {
  *start = s->doc_start[d] & ((1ull << 40) - 1);
  *len = s->doc_start[d] >> 40;
}

int32_t lm_pair_make(const lm_pair_source *s, lm_rng *rng, int64_t T, int nsp, int32_t *ids, int32_t *segments, uint8_t *mask) {
  int64_t budget = T - (nsp ? 3 : 2);     /* room for A and B after [CLS], [SEP] (, [SEP]) */
  int64_t d = (int64_t)lm_rng_below(rng, (uint32_t)s->n_docs);
  uint64_t ds, dl;
  doc_span(s, d, &ds, &dl);
  int32_t label = -1;
  int64_t la, lb = 0;
  uint64_t a0, b0 = 0;
  if (!nsp) {
    la = (int64_t)dl < budget ? (int64_t)dl : budget;
    a0 = ds + lm_rng_below(rng, (uint32_t)(dl - la + 1));
  } else {
    /* A takes a random share of the budget; B fills the rest */
    int64_t want_a = 1 + (int64_t)lm_rng_below(rng, (uint32_t)(budget - 1));
    int random_b = s->n_docs > 1 && lm_rng_uniform(rng) < 0.5f;
    la = want_a < (int64_t)dl - (random_b ? 0 : 1) ? want_a : (int64_t)dl - (random_b ? 0 : 1);
    if (la < 1) la = 1;
    a0 = ds + lm_rng_below(rng, (uint32_t)(dl - la - (random_b ? 0 : 1) + 1));
    if (!random_b) {
      label = 0;
      b0 = a0 + la;
      lb = (int64_t)(ds + dl - b0);
    } else {
      label = 1;
      int64_t e;
      do e = (int64_t)lm_rng_below(rng, (uint32_t)s->n_docs); while (e == d);
      uint64_t es, el;
      doc_span(s, e, &es, &el);
      lb = budget - la < (int64_t)el ? budget - la : (int64_t)el;
      b0 = es + lm_rng_below(rng, (uint32_t)(el - lb + 1));
    }
    if (lb > budget - la) lb = budget - la;
  }
  int64_t t = 0;
  ids[t] = s->cls_id; segments[t++] = 0;
  for (int64_t i = 0; i < la; i++) { ids[t] = (int32_t)s->ids[a0 + i]; segments[t++] = 0; }
  ids[t] = s->sep_id; segments[t++] = 0;
  if (nsp) {
    for (int64_t i = 0; i < lb; i++) { ids[t] = (int32_t)s->ids[b0 + i]; segments[t++] = 1; }
    ids[t] = s->sep_id; segments[t++] = 1;
  }
  for (int64_t i = 0; i < T; i++) mask[i] = i < t;
  for (; t < T; t++) { ids[t] = s->pad_id; segments[t] = 0; }
  return label;
}
