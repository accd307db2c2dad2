/* tokenize.c — encode throughput of a tokenizer on a text file (bench/tokenize.sh
 * runs it next to js-tiktoken). Usage: bench_tokenize FILE [TOKENIZER] [IDS_OUT].
 * Prints MB/s single-threaded (lm_tokenizer_encode, median and best of 5) and with
 * all threads (lm_tokenize_buffer, best of 3), checks both give the same ids, and writes the
 * ids (space-separated) to IDS_OUT for comparison with the reference. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lmkit.h"
#include "base/base.h"
#include "tokenizer/tokenizer.h"

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: bench_tokenize FILE [TOKENIZER] [IDS_OUT]\n"); return 2; }
  const char *spec = argc > 2 ? argv[2] : "gpt2";
  char *text; size_t len;
  lm_tokenizer *tok;
  double t0 = lm_time_sec();
  if (lm_tokenizer_load(&tok, spec) || lm_read_file(argv[1], &text, &len)) {
    fprintf(stderr, "bench_tokenize: %s\n", lm_last_error());
    return 1;
  }
  double tload = lm_time_sec() - t0;
  uint32_t *ids = NULL, *ids2 = NULL; size_t n = 0, n2 = 0;
  double t1[5], bestp = 1e30;
  for (int rep = 0; rep < 5; rep++) {
    free(ids);
    t0 = lm_time_sec();
    if (lm_tokenizer_encode(tok, text, len, 0, &ids, &n)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
    t1[rep] = lm_time_sec() - t0;
    for (int k = rep; k > 0 && t1[k] < t1[k - 1]; k--) { double x = t1[k]; t1[k] = t1[k - 1]; t1[k - 1] = x; }
  }
  int threads = omp_get_max_threads();
  for (int rep = 0; rep < 3; rep++) {
    free(ids2);
    t0 = lm_time_sec();
    if (lm_tokenize_buffer(tok, text, len, threads, 0, &ids2, &n2)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
    double dt = lm_time_sec() - t0;
    if (dt < bestp) bestp = dt;
  }
  int same = n == n2 && !memcmp(ids, ids2, n * sizeof *ids);
  printf("lmkit  %-8s load %.3f s, %.2f MB -> %zu tokens (%.2f bytes/token)\n", spec, tload, len / 1e6, n, (double)len / n);
  printf("lmkit  encode 1 thread:  %7.2f MB/s median of 5 (best %.2f)\n", len / 1e6 / t1[2], len / 1e6 / t1[0]);
  printf("lmkit  encode %d threads: %7.2f MB/s (ids %s)\n", threads, len / 1e6 / bestp, same ? "identical" : "DIFFER");
  if (argc > 3) {
    FILE *f = fopen(argv[3], "w");
    if (!f) { perror(argv[3]); return 1; }
    for (size_t i = 0; i < n; i++) fprintf(f, i ? " %u" : "%u", ids[i]);
    fputc('\n', f);
    fclose(f);
  }
  free(ids); free(ids2); free(text);
  lm_tokenizer_free(tok);
  return same ? 0 : 1;
}
