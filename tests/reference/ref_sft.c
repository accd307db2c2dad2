/* ref_sft.c — driver for tests/reference/test_sft.py: instruction tuning's
 * data path and loss, run with the library's own code so that the test can
 * compare every step with an independent PyTorch reference.
 *
 * usage: ref_sft DIR
 * DIR holds tokenizer.json (and tokenizer_config.json for a template other than ChatML),
 * data.jsonl (conversation records) and config.txt ("key value" lines: vocab, positions, dim,
 * layers, heads, max_length, pad, B_packed, seed). The driver
 *   1. reads and tokenizes the records as `lmkit sft` does (lm_chat_read, lm_sft_encode):
 *      counts.txt "kept no_assistant empty too_long no_loss", enc_ids.bin (uint32),
 *      enc_mask.bin (uint8), enc_off.bin (int64, n+1);
 *   2. builds a GPT-2 of that size (norms, biases and attention weights perturbed), writes
 *      params.safetensors;
 *   3. lays out two micro-batches with the objective's layout (lm_sft_layout, posttrain.h) from
 *      examples 0, 1, 2, ... in order: "plain" (one example per row, all of them) and "packed"
 *      (B_packed rows of max_length tokens, as many examples as fit), and for each runs
 *      lm_forward + lm_backward: MODE_ids.bin, MODE_targets.bin, MODE_starts.bin (packed; int32),
 *      MODE_meta.txt "placed B T", MODE_loss.txt, MODE_grads.safetensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "tokenizer/tokenizer.h"
#include "train/posttrain.h"

static const char *dir;

static int fail(const char *what) {
  fprintf(stderr, "ref_sft: %s: %s\n", what, lm_last_error());
  return 1;
}

static int write_bin(const char *name, const void *p, size_t bytes) {
  char *path = lm_path_join(dir, name);
  FILE *f = fopen(path, "wb");
  free(path);
  if (!f || fwrite(p, 1, bytes, f) != bytes) { if (f) fclose(f); return 1; }
  return fclose(f) != 0;
}

static FILE *open_text(const char *name) {
  char *path = lm_path_join(dir, name);
  FILE *f = fopen(path, "w");
  free(path);
  return f;
}

static int save_tensors(const lm_model *m, const float *base, const char *name) {
  lm_st_entry *e = calloc(m->n_info, sizeof *e);
  for (int i = 0; i < m->n_info; i++) {
    const lm_param_info *p = &m->info[i];
    e[i] = (lm_st_entry){.name = p->name, .ndim = p->ndim, .shape = {p->shape[0], p->shape[1]}, .data = base + p->offset};
  }
  char *path = lm_path_join(dir, name);
  lm_status st = lm_st_write(path, e, m->n_info, NULL);
  free(path); free(e);
  return st != LM_OK;
}

/* lays out examples 0, 1, ... (as many as fit), runs forward + backward, writes MODE_* */
static int run_batch(lm_model *m, const lm_sft_data *d, const char *mode, int packing, int64_t B, int64_t T, int32_t pad) {
  int32_t *ids = malloc((size_t)(B * T) * 4), *tgt = malloc((size_t)(B * T) * 4), *starts = malloc((size_t)(B * T) * 4);
  lm_sft_layout l = {.d = d, .B = B, .T = T, .packing = packing, .pad = pad, .ids = ids, .targets = tgt, .starts = starts};
  lm_sft_layout_begin(&l);
  for (int64_t i = 0; i < d->n && lm_sft_layout_add(&l, i); i++) {}
  int64_t Tb = lm_sft_layout_end(&l);
  lm_batch b = {.ids = ids, .targets = tgt, .starts = packing ? starts : NULL, .B = B, .T = Tb};
  lm_model_zero_grad(m);
  float loss = lm_forward(m, &b, NULL, NULL);
  if (!m->ok) return fail(mode);
  lm_backward(m, &b);
  char name[64];
  int bad = 0;
  snprintf(name, sizeof name, "%s_ids.bin", mode); bad |= write_bin(name, ids, (size_t)(B * Tb) * 4);
  snprintf(name, sizeof name, "%s_targets.bin", mode); bad |= write_bin(name, tgt, (size_t)(B * Tb) * 4);
  if (packing) { snprintf(name, sizeof name, "%s_starts.bin", mode); bad |= write_bin(name, starts, (size_t)(B * Tb) * 4); }
  snprintf(name, sizeof name, "%s_meta.txt", mode);
  FILE *f = open_text(name);
  if (f) { fprintf(f, "%lld %lld %lld\n", (long long)l.n, (long long)B, (long long)Tb); bad |= fclose(f) != 0; } else bad = 1;
  snprintf(name, sizeof name, "%s_loss.txt", mode);
  if ((f = open_text(name))) { fprintf(f, "%.9g\n", loss); bad |= fclose(f) != 0; } else bad = 1;
  snprintf(name, sizeof name, "%s_grads.safetensors", mode);
  bad |= save_tensors(m, m->grads, name);
  free(ids); free(tgt); free(starts);
  if (bad) fprintf(stderr, "ref_sft: cannot write the %s outputs in %s\n", mode, dir);
  return bad;
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: ref_sft DIR\n"); return 2; }
  dir = argv[1];
  lm_config cfg;
  lm_config_default(&cfg, LM_ARCH_GPT2);
  int64_t max_length = 64, B_packed = 2, pad = 0;
  uint64_t seed = 1234;
  char *cp = lm_path_join(dir, "config.txt");
  FILE *cf = fopen(cp, "r");
  free(cp);
  if (!cf) { fprintf(stderr, "ref_sft: cannot read %s/config.txt\n", dir); return 1; }
  char k[64]; double v;
  while (fscanf(cf, "%63s %lf", k, &v) == 2) {
    if (!strcmp(k, "vocab")) cfg.vocab_size = (int64_t)v;
    else if (!strcmp(k, "positions")) cfg.n_positions = (int64_t)v;
    else if (!strcmp(k, "dim")) cfg.n_embd = (int64_t)v;
    else if (!strcmp(k, "layers")) cfg.n_layer = (int64_t)v;
    else if (!strcmp(k, "heads")) cfg.n_head = (int64_t)v;
    else if (!strcmp(k, "max_length")) max_length = (int64_t)v;
    else if (!strcmp(k, "B_packed")) B_packed = (int64_t)v;
    else if (!strcmp(k, "pad")) pad = (int64_t)v;
    else if (!strcmp(k, "seed")) seed = (uint64_t)v;
  }
  fclose(cf);

  /* 1. the data, as lmkit sft reads it */
  lm_tokenizer *tok;
  lm_chat_config cc;
  lm_chat_set set;
  lm_sft_data d;
  char *data = lm_path_join(dir, "data.jsonl");
  if (lm_tokenizer_load(&tok, dir)) return fail("tokenizer");
  if (lm_chat_config_load(&cc, dir)) return fail("chat config");
  if (lm_chat_read(data, &set)) return fail("data");
  if (lm_sft_encode(&d, &set, &cc, tok, max_length, data)) return fail("encode");
  FILE *f = open_text("counts.txt");
  if (!f) return 1;
  fprintf(f, "%lld %lld %lld %lld %lld\n", (long long)d.n, (long long)set.no_assistant, (long long)set.empty,
          (long long)d.too_long, (long long)d.no_loss);
  fclose(f);
  if (write_bin("enc_ids.bin", d.ids, (size_t)d.off[d.n] * 4) || write_bin("enc_mask.bin", d.mask, (size_t)d.off[d.n]) ||
      write_bin("enc_off.bin", d.off, (size_t)(d.n + 1) * 8)) {
    fprintf(stderr, "ref_sft: cannot write to %s\n", dir);
    return 1;
  }

  /* 2. the model */
  lm_model *m;
  int64_t B_plain = d.n, Bmax = B_plain > B_packed ? B_plain : B_packed;
  if (lm_model_create(&m, &cfg, seed) || lm_model_reserve(m, Bmax, max_length, 1)) return fail("model");
  lm_rng r;
  lm_rng_seed(&r, 99);
  for (int i = 0; i < m->n_info; i++) {   /* norms and biases away from 1 and 0, so their gradients are not symmetric */
    const lm_param_info *p = &m->info[i];
    if (strstr(p->name, "ln_") || strstr(p->name, ".bias"))
      for (size_t j = 0; j < p->numel; j++) m->params[p->offset + j] += 0.1f * lm_rng_normal(&r);
    /* queries and keys at a trained model's scale, so that attention is far from uniform and a
     * leak across packed examples would show in the loss */
    if (strstr(p->name, "attn.c_attn.weight"))
      for (size_t j = 0; j < p->numel; j++) m->params[p->offset + j] += 0.3f * lm_rng_normal(&r);
  }
  if (save_tensors(m, m->params, "params.safetensors")) return fail("params");

  /* 3. one example per row, and packed */
  int bad = run_batch(m, &d, "plain", 0, B_plain, max_length, (int32_t)pad) ||
            run_batch(m, &d, "packed", 1, B_packed, max_length, (int32_t)pad);
  lm_model_free(m);
  lm_sft_data_free(&d);
  lm_chat_set_free(&set);
  lm_chat_config_free(&cc);
  lm_tokenizer_free(tok);
  free(data);
  return bad;
}
