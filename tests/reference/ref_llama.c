/* ref_llama.c — driver for tests/reference/test_llama.py: loads a Hugging
 * Face directory (Llama, Mistral, Qwen2; single file or sharded; f32, f16 or
 * bf16) with lm_model_load, runs the LM forward and backward on given ids and
 * targets, and writes what the test compares with a PyTorch Llama written from
 * transformers' equations.
 *
 * usage:
 *   ref_llama DIR B T IDS.bin TARGETS.bin OUTDIR
 *       IDS, TARGETS: (B,T) int32 (target -1: no loss). Writes OUTDIR/loss.bin (1 float),
 *       OUTDIR/logits.bin (B,T,V) and OUTDIR/grads.safetensors (every gradient, lmkit's names)
 *   ref_llama --session P DIR IDS.bin OUT.bin
 *       the KV-cache session: the first P ids in one call, then one by one; OUT: (T-P+1, V) logits
 *   ref_llama --save DIR OUTDIR
 *       loads DIR and saves it to OUTDIR (lmkit -> Hugging Face)
 *   ref_llama --adapter ADIR DIR B T IDS.bin TARGETS.bin OUTDIR
 *       as the first form with the PEFT adapter ADIR attached (lm_lora_load): grads.safetensors
 *       holds the adapter's gradients (lmkit's names)
 *   ref_llama --merged ADIR DIR B T IDS.bin TARGETS.bin OUTDIR
 *       the adapter merged into the base (lm_lora_merge), then the first form
 *   ref_llama --dropout E A R SEED DIR B T IDS.bin TARGETS.bin OUTDIR
 *       the first form in training mode with dropout rates E (embeddings), A (attention
 *       probabilities), R (residual branches) set on the loaded config (the general block's
 *       mechanism, whatever the family's keys) and masks drawn from an rng seeded SEED; also writes
 *       OUTDIR/mask_emb.bin and mask_L_{att,res1,res2}.bin (uint64 words of bits, 1 = kept)
 * Exit status 0 on success; on failure 1 with lm_last_error() on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "infer/infer.h"
#include "model/heads.h"
#include "model/lora.h"
#include "model/model.h"
#include "refdrv.h"

static int fail(const char *what) {
  fprintf(stderr, "ref_llama: %s: %s\n", what, lm_last_error());
  return 1;
}

static int32_t *read_ids(const char *path, int64_t *n) {
  char *data; size_t len;
  if (lm_read_file(path, &data, &len)) return NULL;
  *n = (int64_t)(len / 4);
  return (int32_t *)data;
}

static int session(char **a) {
  int64_t P = atoll(a[0]), T;
  lm_model *m;
  if (lm_model_load(&m, a[1])) return fail(a[1]);
  int32_t *ids = read_ids(a[2], &T);
  lm_session *s = NULL;
  int rc = !ids || P < 1 || P > T;
  if (!rc && lm_session_init(&s, m, T)) rc = fail("session");
  FILE *out = rc ? NULL : fopen(a[3], "wb");
  if (!rc && !out) rc = 1;
  const float *logits;
  for (int64_t t = P; !rc && t <= T; t++) {
    lm_status st = t == P ? lm_session_feed(s, ids, P, &logits) : lm_session_feed(s, ids + t - 1, 1, &logits);
    if (st) rc = fail("feed");
    else rc = fwrite(logits, sizeof(float), (size_t)m->cfg.vocab_size, out) != (size_t)m->cfg.vocab_size;
  }
  if (out && fclose(out)) rc = 1;
  lm_session_free(s);
  free(ids);
  lm_model_free(m);
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 6 && !strcmp(argv[1], "--session")) return session(argv + 2);
  if (argc == 4 && !strcmp(argv[1], "--save")) {
    lm_model *m;
    if (lm_model_load(&m, argv[2])) return fail(argv[2]);
    int rc = lm_model_save(m, argv[3]) ? fail(argv[3]) : 0;
    lm_model_free(m);
    return rc;
  }
  const char *adapter = NULL;
  int merge = 0;
  float drop[3] = {0, 0, 0};
  uint64_t drop_seed = 0;
  int dropout = 0;
  if (argc == 12 && !strcmp(argv[1], "--dropout")) {
    for (int k = 0; k < 3; k++) drop[k] = (float)atof(argv[2 + k]);
    drop_seed = strtoull(argv[5], NULL, 10);
    dropout = 1;
    argc -= 5; argv += 5;
  }
  if (argc == 9 && (!strcmp(argv[1], "--adapter") || !strcmp(argv[1], "--merged"))) {
    merge = !strcmp(argv[1], "--merged");
    adapter = argv[2];
    argc -= 2; argv += 2;
  }
  if (argc != 7) {
    fprintf(stderr, "usage: ref_llama [--adapter|--merged ADIR] DIR B T IDS.bin TARGETS.bin OUTDIR | --session P DIR IDS.bin OUT.bin | "
                    "--save DIR OUTDIR\n");
    return 2;
  }
  int64_t B = atoll(argv[2]), T = atoll(argv[3]), n1, n2;
  lm_model *m;
  if (lm_model_load(&m, argv[1])) return fail(argv[1]);
  if (adapter && (lm_lora_load(m, adapter) || (merge && lm_lora_merge(m)))) { lm_model_free(m); return fail(adapter); }
  lm_rng rng;
  if (dropout) {
    m->cfg.embd_pdrop = drop[0]; m->cfg.attn_pdrop = drop[1]; m->cfg.resid_pdrop = drop[2];
    lm_rng_seed(&rng, drop_seed);
    lm_model_set_training(m, &rng);
  }
  int32_t *ids = read_ids(argv[4], &n1), *tg = read_ids(argv[5], &n2);
  int rc = !ids || !tg || n1 != B * T || n2 != B * T;
  if (rc) fprintf(stderr, "ref_llama: ids/targets must hold B*T int32\n");
  if (!rc && lm_model_reserve(m, B, T, 1)) rc = fail("reserve");
  if (!rc) {
    lm_model_zero_grad(m);
    float loss = lm_model_forward(m, ids, tg, NULL, B, T);
    rc = write_bin(argv[6], "loss.bin", &loss, sizeof loss) ||
         write_bin(argv[6], "logits.bin", lm_model_logits(m), (size_t)(B * T * m->cfg.vocab_size) * sizeof(float));
    lm_model_backward(m, ids, tg, NULL, B, T);   /* (the logits buffer may hold their gradient after this) */
    lm_trainable t = lm_model_trainable(m);
    if (!rc) rc = save_table(t.info, t.n_info, t.grads, argv[6], "grads.safetensors");
    if (!rc && dropout) rc = save_dropout_masks(m, B, T, argv[6]);   /* the masks this forward drew */
  }
  free(ids); free(tg);
  lm_model_free(m);
  return rc;
}
