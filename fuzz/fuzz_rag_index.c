/* fuzz_rag_index.c — libFuzzer target for the retrieval index reader (lm_rag_index_parse,
 * src/rag/index.c; the format is in docs/rag.md).
 *
 * Parses the input; when it is accepted, every passage must read back within its own
 * bounds (text length = byte range, lines ordered), every term must be found by lookup,
 * BM25 scores for a few queries must be finite and non-negative, and the index must save
 * and parse again to the same passages and scores (the round trip `lmkit index` and `ask`
 * rely on). Build with fuzz/build_rag.sh. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/base.h"
#include "rag/index_impl.h"

static void scores(const lm_rag_index *ix, const char *q, double *s) {
  if (lm_rag_bm25(ix, q, s) != LM_OK) abort();
  for (int64_t i = 0; i < lm_rag_index_size(ix); i++)
    if (!isfinite(s[i]) || s[i] < 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lm_rag_index *ix;
  if (lm_rag_index_parse(&ix, data, size, "fuzz") != LM_OK) return 0;
  int64_t n = lm_rag_index_size(ix);
  for (int64_t i = 0; i < n; i++) {
    lm_rag_chunk c;
    lm_rag_index_chunk(ix, i, &c);
    if ((int64_t)c.len != c.byte_end - c.byte_start || strlen(c.text) != c.len || c.line_start > c.line_end || !c.file)
      abort();
  }
  for (int64_t t = 0; t < ix->n_terms; t++)
    if (lm_rag_term_find(ix, ix->terms[t].s, ix->terms[t].len) != t) abort();
  const char *queries[] = {"a", "the cat", "x y z 1 2 3", ""};
  double *s1 = malloc((size_t)(n ? n : 1) * sizeof *s1), *s2 = malloc((size_t)(n ? n : 1) * sizeof *s2);
  char path[64];
  snprintf(path, sizeof path, "/tmp/fuzz_rag_%d.idx", (int)getpid());
  lm_rag_index *back;
  if (lm_rag_index_save(ix, path) != LM_OK || lm_rag_index_load(&back, path) != LM_OK) abort();
  if (lm_rag_index_size(back) != n || lm_rag_index_dim(back) != lm_rag_index_dim(ix)) abort();
  for (size_t q = 0; q < sizeof queries / sizeof *queries; q++) {
    scores(ix, queries[q], s1);
    scores(back, queries[q], s2);
    if (memcmp(s1, s2, (size_t)n * sizeof *s1)) abort();
  }
  unlink(path);
  free(s1);
  free(s2);
  lm_rag_index_free(back);
  lm_rag_index_free(ix);
  return 0;
}
