/* ref_t5.c — driver for tests/reference/test_t5.py and test_bart.py: loads a Hugging Face T5 or
 * BART directory with lm_model_load, runs the encoder-decoder forward and backward
 * on given encoder ids, encoder mask, decoder ids and labels, and writes what
 * the test compares with a PyTorch T5 written from the equations.
 *
 * usage:
 *   ref_t5 DIR B S T INDIR OUTDIR
 *       INDIR holds enc.bin (B,S) int32, mask.bin (B,S) uint8 (1 = real token), dec.bin and
 *       labels.bin (B,T) int32 (label -1: no loss). Writes OUTDIR/loss.bin (1 float), OUTDIR/logits.bin (B,T,V) and
 *       OUTDIR/grads.safetensors (every gradient, lmkit's names)
 *   ref_t5 --dropout SEED DIR B S T INDIR OUTDIR
 *       the same in training mode: dropout at config.json's rates, the masks drawn from an rng seeded
 *       SEED and also written to OUTDIR (refdrv.h save_encdec_dropout_masks)
 *   ref_t5 --save DIR OUTDIR
 *       loads DIR and saves it to OUTDIR (lmkit -> Hugging Face)
 *   ref_t5 --buckets T BIDIRECTIONAL BUCKETS MAX_DISTANCE OUT.bin
 *       the bias lm_rel_bias_forward builds for T queries over T keys from a one-head table whose
 *       entry b is b: the bucket of each offset k - q + T - 1, (2T-1) floats
 * Exit status 0 on success; on failure 1 with lm_last_error() on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/heads.h"
#include "model/model.h"
#include "refdrv.h"

static int fail(const char *what) {
  fprintf(stderr, "ref_t5: %s: %s\n", what, lm_last_error());
  return 1;
}

static int buckets(char **a) {
  int64_t T = atoll(a[0]);
  lm_config c = {.n_head = 1, .rel_buckets = atoll(a[2]), .rel_max_distance = atoll(a[3])};
  float *table = malloc((size_t)c.rel_buckets * sizeof(float)), *bias = malloc((size_t)(2 * T - 1) * sizeof(float));
  for (int64_t b = 0; b < c.rel_buckets; b++) table[b] = (float)b;
  lm_rel_bias_forward(&c, bias, table, T, T, atoi(a[1]));
  FILE *f = fopen(a[4], "wb");
  int rc = !f || fwrite(bias, sizeof(float), (size_t)(2 * T - 1), f) != (size_t)(2 * T - 1);
  if (f && fclose(f)) rc = 1;
  free(table); free(bias);
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 7 && !strcmp(argv[1], "--buckets")) return buckets(argv + 2);
  if (argc == 4 && !strcmp(argv[1], "--save")) {
    lm_model *m;
    if (lm_model_load(&m, argv[2])) return fail(argv[2]);
    int rc = lm_model_save(m, argv[3]) ? fail(argv[3]) : 0;
    lm_model_free(m);
    return rc;
  }
  uint64_t seed = 0;
  int train = argc == 9 && !strcmp(argv[1], "--dropout");
  if (train) {
    seed = strtoull(argv[2], NULL, 10);
    argv += 2; argc -= 2;
  }
  if (argc != 7) {
    fprintf(stderr, "usage: ref_t5 [--dropout SEED] DIR B S T INDIR OUTDIR | --save DIR OUTDIR | "
                    "--buckets T BIDIR BUCKETS MAXD OUT.bin\n");
    return 2;
  }
  int64_t B = atoll(argv[2]), S = atoll(argv[3]), T = atoll(argv[4]);
  const char *in = argv[5], *out = argv[6];
  lm_model *m;
  if (lm_model_load(&m, argv[1])) return fail(argv[1]);
  int32_t *enc = read_bin(in, "enc.bin", (size_t)(B * S) * 4), *dec = read_bin(in, "dec.bin", (size_t)(B * T) * 4);
  int32_t *labels = read_bin(in, "labels.bin", (size_t)(B * T) * 4);
  uint8_t *mask = read_bin(in, "mask.bin", (size_t)(B * S));
  int rc = !enc || !dec || !labels || !mask;
  if (rc) fprintf(stderr, "ref_t5: short or missing input files\n");
  if (!rc && lm_model_reserve(m, B, S > T ? S : T, 1)) rc = fail("reserve");
  lm_rng rng;
  lm_rng_seed(&rng, seed);
  if (train) lm_model_set_training(m, &rng);
  if (!rc) {
    lm_batch b = {.ids = dec, .targets = labels, .enc_ids = enc, .enc_mask = mask, .B = B, .T = T, .S = S};
    lm_model_zero_grad(m);
    float loss = lm_forward(m, &b, NULL, NULL);
    if (loss != loss) rc = fail("forward");
    if (!rc)
      rc = write_bin(out, "loss.bin", &loss, sizeof loss) ||
           write_bin(out, "logits.bin", lm_model_logits(m), (size_t)(B * T * m->cfg.vocab_size) * sizeof(float));
    if (!rc) {
      lm_backward(m, &b);
      rc = save_tensors(m, m->grads, out, "grads.safetensors");
      if (!rc && train) rc = save_encdec_dropout_masks(m, B, S, T, out);
    }
  }
  free(enc); free(dec); free(labels); free(mask);
  lm_model_free(m);
  return rc;
}
