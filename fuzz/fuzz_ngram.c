/* fuzz_ngram.c — libFuzzer target for the n-gram model's file (ngram.bin,
 * src/model/classic/ngram.c lm_ngram_read). Beyond "no crash, no hang, no
 * undefined behaviour": an accepted file writes back to the very same bytes,
 * and over a small vocabulary the probabilities after a few contexts (none, a
 * prefix of the stream, ids past the stream) are positive and sum to 1.
 * Build with fuzz/build_ngram.sh. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "model/classic/ngram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1 << 16)) return 0;   /* the counting is linear; large inputs only slow the search down */
  lm_ngram *m = NULL;
  if (lm_ngram_read(&m, data, size, 0, 0)) return 0;
  char *out = NULL;
  size_t len = 0;
  if (lm_ngram_write(m, &out, &len) || len != size || memcmp(out, data, size)) abort();
  free(out);
  int64_t V = lm_ngram_vocab(m);
  if (V <= 512) {
    uint32_t ctx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (size_t n = 0; n <= 8; n += 4) {
      double sum = 0;
      for (int64_t w = 0; w < V; w++) {
        double p = lm_ngram_prob(m, ctx, n, (uint32_t)w);
        if (!(p > 0) || !isfinite(p)) abort();
        sum += p;
      }
      if (fabs(sum - 1) > 1e-9) abort();
      for (int i = 0; i < 8; i++) ctx[i] = (uint32_t)((ctx[i] * 7 + 3) % (uint64_t)V);
    }
  }
  lm_ngram_free(m);
  return 0;
}
