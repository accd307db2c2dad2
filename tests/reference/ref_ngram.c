/* ref_ngram.c — driver of tests/reference/test_ngram.py: trains the Kneser–Ney n-gram model
 * (src/model/classic/ngram.c) on the ids in argv[1] (whitespace-separated) with order argv[2] and
 * vocabulary argv[3], then for each line of argv[4] (a context: ids, possibly none) prints
 * p(w | context) for every w of the vocabulary on one line; the first `order` lines are the
 * discounts D1 D2 D3+ of each order. lm_ngram_dist (the whole distribution at once) must give the
 * same bits as lm_ngram_prob, else the driver fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/classic/ngram.h"

static size_t read_ids(const char *s, uint32_t *out, size_t max) {
  size_t n = 0;
  char *end;
  for (;;) {
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || n == max) return n;
    out[n++] = (uint32_t)v;
    s = end;
  }
}

int main(int argc, char **argv) {
  if (argc != 5) { fprintf(stderr, "usage: ref_ngram IDS ORDER VOCAB CONTEXTS\n"); return 2; }
  char *text = NULL; size_t len = 0;
  if (lm_read_file(argv[1], &text, &len)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
  uint32_t *ids = malloc((len / 2 + 2) * sizeof *ids);
  size_t n = read_ids(text, ids, len / 2 + 2);
  int order = atoi(argv[2]);
  int64_t V = atoll(argv[3]);
  lm_ngram *m = NULL;
  if (lm_ngram_train(&m, ids, n, order, V)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
  for (int k = 1; k <= order; k++) {
    double d[3];
    lm_ngram_discounts(m, k, d);
    printf("%.17g %.17g %.17g\n", d[0], d[1], d[2]);
  }
  FILE *q = fopen(argv[4], "r");
  char line[4096];
  uint32_t ctx[1024];
  while (q && fgets(line, sizeof line, q)) {
    size_t nc = read_ids(line, ctx, 1024);
    double *p = malloc((size_t)V * sizeof *p);
    lm_ngram_dist(m, ctx, nc, p);   /* the whole distribution at once must be the same bits */
    for (int64_t w = 0; w < V; w++) {
      double q = lm_ngram_prob(m, ctx, nc, (uint32_t)w);
      if (memcmp(&q, &p[w], sizeof q)) { fprintf(stderr, "lm_ngram_dist differs from lm_ngram_prob at w = %lld\n", (long long)w); return 1; }
      printf("%s%.17g", w ? " " : "", q);
    }
    free(p);
    printf("\n");
  }
  if (q) fclose(q);
  lm_ngram_free(m);
  free(ids); free(text);
  return 0;
}
