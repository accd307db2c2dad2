/* ref_span.c — driver for tests/reference/test_span.py: T5's span corruption
 * (src/train/objectives/span.c) on inputs the test chooses, with every random
 * draw written out so a Python port of the reference algorithm can replay
 * them.
 *
 * usage:
 *   ref_span --masks SEED N MINLEN MAXLEN OUTDIR
 *       N noise masks (density 0.15, mean span 3) of lengths drawn uniformly in [MINLEN, MAXLEN]
 *       (from an rng seeded SEED + 1) with an rng seeded SEED. Writes OUTDIR/lengths.bin (N int64),
 *       masks.bin (the masks one after another, uint8), spans.bin (N int64) and draws.bin (every
 *       shuffle draw in order, uint32)
 *   ref_span --lengths INPUTS...
 *       prints "INPUTS RAW TARGETS" per line (lm_span_lengths)
 *   ref_span --corrupt SENTINEL0 EOS DIR
 *       DIR/raw.bin (int32) and DIR/noise.bin (uint8, as many) -> DIR/inp.bin and DIR/tgt.bin (int32)
 * Exit status 0 on success. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "train/objectives/objectives.h"
#include "refdrv.h"

static int masks(char **a) {
  uint64_t seed = strtoull(a[0], NULL, 10);
  int64_t N = atoll(a[1]), lo = atoll(a[2]), hi = atoll(a[3]), total = 0, nd = 0;
  lm_rng rng, rlen;
  lm_rng_seed(&rng, seed);
  lm_rng_seed(&rlen, seed + 1);
  int64_t *lengths = malloc((size_t)N * sizeof(int64_t)), *spans = malloc((size_t)N * sizeof(int64_t));
  for (int64_t i = 0; i < N; i++) total += lengths[i] = lo + (int64_t)lm_rng_below(&rlen, (uint32_t)(hi - lo + 1));
  uint8_t *mask = malloc((size_t)total);
  uint32_t *draws = malloc((size_t)(2 * total + 1) * sizeof(uint32_t));
  int64_t *work = malloc((size_t)(3 * hi + 6) * sizeof(int64_t));
  int64_t at = 0;
  for (int64_t i = 0; i < N; i++) {
    uint32_t *d = draws + nd;
    spans[i] = lm_span_noise_mask(&rng, lengths[i], 0.15, 3.0, mask + at, work, d);
    /* each shuffle of m slots draws m - 2 times (i = m-2 .. 1): noise then kept tokens */
    int64_t noise = 0;
    for (int64_t t = 0; t < lengths[i]; t++) noise += mask[at + t];
    nd += (noise - 1 > 1 ? noise - 2 : 0) + (lengths[i] - noise - 1 > 1 ? lengths[i] - noise - 2 : 0);
    at += lengths[i];
  }
  int rc = write_bin(a[4], "lengths.bin", lengths, (size_t)N * 8) || write_bin(a[4], "masks.bin", mask, (size_t)total) ||
           write_bin(a[4], "spans.bin", spans, (size_t)N * 8) || write_bin(a[4], "draws.bin", draws, (size_t)nd * 4);
  free(lengths); free(spans); free(mask); free(draws); free(work);
  return rc;
}

static int corrupt(char **a) {
  char *p = lm_path_join(a[2], "raw.bin");
  char *raw; size_t len;
  int rc = lm_read_file(p, &raw, &len) != LM_OK;
  free(p);
  if (rc) return 1;
  int64_t n = (int64_t)(len / 4), ni, nt;
  uint8_t *noise = read_bin(a[2], "noise.bin", (size_t)n);
  int32_t *inp = malloc((size_t)(n + 1) * 4), *tgt = malloc((size_t)(n + 1) * 4);
  rc = !noise;
  if (!rc) {
    lm_span_corrupt((const int32_t *)raw, noise, n, atoi(a[0]), atoi(a[1]), inp, &ni, tgt, &nt);
    rc = write_bin(a[2], "inp.bin", inp, (size_t)ni * 4) || write_bin(a[2], "tgt.bin", tgt, (size_t)nt * 4);
  }
  free(raw); free(noise); free(inp); free(tgt);
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 7 && !strcmp(argv[1], "--masks")) return masks(argv + 2);
  if (argc == 5 && !strcmp(argv[1], "--corrupt")) return corrupt(argv + 2);
  if (argc >= 3 && !strcmp(argv[1], "--lengths")) {
    for (int i = 2; i < argc; i++) {
      int64_t raw, tg;
      lm_span_lengths(atoll(argv[i]), 0.15, 3.0, &raw, &tg);
      printf("%s %lld %lld\n", argv[i], (long long)raw, (long long)tg);
    }
    return 0;
  }
  fprintf(stderr, "usage: ref_span --masks SEED N MINLEN MAXLEN OUTDIR | --lengths N... | --corrupt SENTINEL0 EOS DIR\n");
  return 2;
}
