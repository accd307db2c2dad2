/* ref_logits.c — driver for tests/reference/test_hf_gpt2.py (Hugging Face
 * GPT-2 interop): loads a model directory with lm_model_load and writes the
 * logits it computes, through the training forward or the KV-cache session,
 * so the test can compare them with a PyTorch GPT-2 run on the HF tensors;
 * and creates + saves a random model for the lmkit -> HF direction.
 *
 * usage:
 *   ref_logits DIR IDS.bin OUT.bin
 *       lm_model_forward over the int32 ids (B=1, T=len): OUT = (T, V) fp32 logits
 *   ref_logits --session P DIR IDS.bin OUT.bin
 *       lm_session_feed: the first P ids in one call (prefill), then the rest
 *       one by one; OUT = (T-P+1, V): the logits each call returned
 *   ref_logits --create DIR LAYERS HEADS DIM VOCAB POSITIONS INNER TIE SEED [IDS.bin OUT.bin]
 *       lm_model_create (INNER 0 = 4*DIM; TIE 0/1), norms and biases perturbed
 *       so that they matter, then lm_model_save(DIR); with IDS/OUT, also the
 *       (T, V) logits of the in-memory model (before any save/load)
 * Exit status 0 on success; on failure 1 with lm_last_error() on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "infer/infer.h"
#include "model/model.h"
#include "model/heads.h"

static int fail(const char *what) {
  fprintf(stderr, "ref_logits: %s: %s\n", what, lm_last_error());
  return 1;
}

static int32_t *read_ids(const char *path, int64_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long bytes = ftell(f);
  fseek(f, 0, SEEK_SET);
  int32_t *ids = bytes > 0 ? malloc((size_t)bytes) : NULL;
  if (ids && fread(ids, 1, (size_t)bytes, f) != (size_t)bytes) { free(ids); ids = NULL; }
  fclose(f);
  *n = bytes / 4;
  return ids;
}

static int write_f32(FILE *f, const float *x, size_t n) { return fwrite(x, sizeof(float), n, f) != n; }

static int forward_to(lm_model *m, const char *ids_path, const char *out_path) {
  int64_t T = 0;
  int32_t *ids = read_ids(ids_path, &T);
  if (!ids || T <= 0) { fprintf(stderr, "ref_logits: cannot read %s\n", ids_path); return 1; }
  FILE *out = fopen(out_path, "wb");
  int rc = !out;
  if (rc) fprintf(stderr, "ref_logits: cannot write %s\n", out_path);
  else if (lm_model_reserve(m, 1, T, 0)) rc = fail("reserve");
  else {
    lm_model_forward(m, ids, NULL, NULL, 1, T);
    rc = write_f32(out, lm_model_logits(m), (size_t)(T * m->cfg.vocab_size));
  }
  if (out && fclose(out)) rc = 1;
  free(ids);
  return rc;
}

static int do_create(char **a, const char *ids_path, const char *out_path) {
  lm_config c;
  lm_config_default(&c, LM_ARCH_GPT2);
  c.n_layer = atoll(a[1]); c.n_head = atoll(a[2]); c.n_embd = atoll(a[3]); c.vocab_size = atoll(a[4]);
  c.n_positions = atoll(a[5]); c.n_inner = atoll(a[6]); c.tie_embeddings = atoi(a[7]);
  c.bos_token_id = c.eos_token_id = c.vocab_size - 1;
  lm_model *m;
  if (lm_model_create(&m, &c, (uint64_t)atoll(a[8]))) return fail("create");
  lm_rng r;
  lm_rng_seed(&r, (uint64_t)atoll(a[8]) + 1);
  for (int i = 0; i < m->n_info; i++) {
    const lm_param_info *p = &m->info[i];
    if (strstr(p->name, "ln_") || strstr(p->name, ".bias"))
      for (size_t j = 0; j < p->numel; j++) m->params[p->offset + j] += 0.1f * lm_rng_normal(&r);
  }
  int rc = lm_model_save(m, a[0]) ? fail(a[0]) : 0;
  if (!rc && ids_path) rc = forward_to(m, ids_path, out_path);
  lm_model_free(m);
  return rc;
}

int main(int argc, char **argv) {
  if ((argc == 11 || argc == 13) && !strcmp(argv[1], "--create")) {
    lm_set_threads(1);
    return do_create(argv + 2, argc == 13 ? argv[11] : NULL, argc == 13 ? argv[12] : NULL);
  }
  int64_t prefill = 0;   /* 0: full forward */
  char **a = argv + 1;
  if (argc == 6 && !strcmp(argv[1], "--session")) { prefill = atoll(argv[2]); a = argv + 3; }
  else if (argc != 4) {
    fprintf(stderr, "usage: ref_logits DIR IDS.bin OUT.bin\n"
                    "       ref_logits --session PREFILL DIR IDS.bin OUT.bin\n"
                    "       ref_logits --create DIR LAYERS HEADS DIM VOCAB POSITIONS INNER TIE SEED [IDS.bin OUT.bin]\n");
    return 2;
  }
  lm_set_threads(1);
  lm_model *m;
  if (lm_model_load(&m, a[0])) return fail("load");
  int64_t T = 0;
  int32_t *ids = read_ids(a[1], &T);
  if (!ids || T <= 0) { fprintf(stderr, "ref_logits: cannot read %s\n", a[1]); return 1; }
  const int64_t V = m->cfg.vocab_size;
  FILE *out = fopen(a[2], "wb");
  if (!out) { fprintf(stderr, "ref_logits: cannot write %s\n", a[2]); return 1; }
  int rc = 0;
  if (!prefill) {
    if (lm_model_reserve(m, 1, T, 0)) rc = fail("reserve");
    else {
      lm_model_forward(m, ids, NULL, NULL, 1, T);
      rc = write_f32(out, lm_model_logits(m), (size_t)(T * V));
    }
  } else {
    lm_session *s;
    const float *lg;
    if (prefill > T) prefill = T;
    if (lm_session_init(&s, m, T)) rc = fail("session");
    else {
      if (lm_session_feed(s, ids, prefill, &lg)) rc = fail("feed");
      else rc = write_f32(out, lg, (size_t)V);
      for (int64_t i = prefill; i < T && !rc; i++) {
        if (lm_session_feed(s, ids + i, 1, &lg)) rc = fail("feed");
        else rc = write_f32(out, lg, (size_t)V);
      }
      if (!rc && lm_session_pos(s) != T) { fprintf(stderr, "ref_logits: session at %lld, expected %lld\n", (long long)lm_session_pos(s), (long long)T); rc = 1; }
      lm_session_free(s);
    }
  }
  if (fclose(out)) rc = 1;
  free(ids);
  lm_model_free(m);
  return rc;
}
