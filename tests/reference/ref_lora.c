/* ref_lora.c — driver for tests/reference/test_lora.py: a tiny model with a
 * LoRA adapter (src/model/lora.h), forward + backward, the PEFT directory,
 * merge, and reload.
 *
 * usage: ref_lora DIR
 * DIR/config.txt: "key value" lines (as ref_gpt, plus rank, alpha, targets 0|1|2 = all-linear|attn|mlp);
 * DIR/ids.bin int32 (B*T); the LM head reads DIR/targets.bin int32 (B*T); the scalar head
 * (head 6) reads DIR/dout.bin float32 (B), d loss / d reward.
 * Writes:
 *   params.safetensors       the base model (internal names)
 *   lora_params.safetensors  the adapter's trainable table (internal names), B perturbed off zero
 *   lora_grads.safetensors   their gradients
 *   loss.txt                 the loss (LM head) or NaN
 *   out.bin                  the head output with the adapter
 *   base_out.bin             ... with the adapter switched off (lm_lora_enable 0)
 *   frozen.txt               "base_grads 0|1" (1: the base got a gradient array) and "views N"
 *                            (how many of the block's gradient views are non-NULL)
 *   adapter/                 lm_lora_save
 *   loaded.bin               head output of a fresh base + lm_lora_load(adapter/)
 *   merged.bin               head output after lm_lora_merge
 *   merged_dir/              lm_model_save of the merged model; reloaded: merged_reload.bin */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/heads.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "refdrv.h"

static int64_t B = 2, T = 8, rank = 4, targets = 0;
static float alpha = 8;

/* the driver's own keys of config.txt (refdrv.h read_config_txt) */
static int own_key(const char *k, double v) {
  if (!strcmp(k, "B")) B = (int64_t)v;
  else if (!strcmp(k, "T")) T = (int64_t)v;
  else if (!strcmp(k, "rank")) rank = (int64_t)v;
  else if (!strcmp(k, "alpha")) alpha = (float)v;
  else if (!strcmp(k, "targets")) targets = (int64_t)v;
  else return 0;
  return 1;
}

static int read_config(const char *dir, lm_config *c) {
  lm_config_default(c, LM_ARCH_GPT2);
  return read_config_txt(dir, c, own_key);
}

#define DIE(...) do { fprintf(stderr, "ref_lora: " __VA_ARGS__); fprintf(stderr, ": %s\n", lm_last_error()); return 1; } while (0)

static lm_model *base_model(const lm_config *cfg) {
  lm_model *m;
  if (lm_model_create(&m, cfg, 1234)) return NULL;
  lm_rng r; lm_rng_seed(&r, 99);   /* norms, biases and heads off their initial values, as ref_gpt */
  for (int i = 0; i < m->n_info; i++) {
    const lm_param_info *p = &m->info[i];
    float s = strstr(p->name, "ln_") || strstr(p->name, ".bias") ? 0.1f : !strcmp(p->name, "classifier.weight") ? 0.5f : 0;
    for (size_t j = 0; s && j < p->numel; j++) m->params[p->offset + j] += s * lm_rng_normal(&r);
  }
  return m;
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: ref_lora DIR\n"); return 2; }
  const char *dir = argv[1];
  lm_config cfg;
  if (read_config(dir, &cfg)) { fprintf(stderr, "ref_lora: cannot read %s/config.txt\n", dir); return 1; }
  int lm = cfg.head == LM_HEAD_LM;
  int64_t n_out = lm ? B * T * cfg.vocab_size : B;
  int32_t *ids = read_bin(dir, "ids.bin", B * T * 4), *tgt = lm ? read_bin(dir, "targets.bin", B * T * 4) : NULL;
  float *dout = lm ? NULL : read_bin(dir, "dout.bin", B * 4);
  if (!ids || (lm && !tgt) || (!lm && !dout)) { fprintf(stderr, "ref_lora: missing inputs\n"); return 1; }
  lm_batch batch = {.ids = ids, .targets = tgt, .dout = dout, .B = B, .T = T};
  lm_model *m = base_model(&cfg);
  if (!m) DIE("create");
  if (save_table(m->info, m->n_info, m->params, dir, "params.safetensors")) DIE("save params");
  lm_lora_opts o = {.rank = rank, .alpha = alpha, .targets = (lm_lora_targets)targets, .seed = 5, .base_model = "tiny-base"};
  if (lm_lora_attach(m, &o) || lm_model_reserve(m, B, T, 1)) DIE("attach");
  /* B starts at zero (the adapter is the identity): move it off so that every path is exercised */
  lm_trainable tr = lm_model_trainable(m);
  lm_rng r; lm_rng_seed(&r, 7);
  for (int i = 0; i < tr.n_info; i++)
    if (strstr(tr.info[i].name, "lora_B"))
      for (size_t j = 0; j < tr.info[i].numel; j++) tr.params[tr.info[i].offset + j] = 0.2f * lm_rng_normal(&r);
  if (save_table(tr.info, tr.n_info, tr.params, dir, "lora_params.safetensors")) DIE("save lora params");
  /* the base is frozen: no gradient array, every block gradient view NULL */
  int views = 0;
  for (int64_t l = 0; l < cfg.n_layer; l++) {
    const lm_block_weights *g = &m->g.h[l];
    const float *const v[] = {g->ln1_w, g->ln1_b, g->qkv_w, g->qkv_b, g->attn_proj_w, g->attn_proj_b, g->ln2_w, g->ln2_b,
                              g->fc_w, g->fc_b, g->fc_proj_w, g->fc_proj_b};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) views += v[i] != NULL;
  }
  views += (m->g.wte != NULL) + (m->g.wpe != NULL) + (m->g.lnf_w != NULL) + (m->g.lnf_b != NULL);
  lm_model_zero_grad(m);
  float loss = lm_forward(m, &batch, NULL, NULL);
  if (!m->ok) DIE("forward");
  if (write_bin(dir, "out.bin", lm_model_logits(m), n_out * 4)) DIE("write");
  lm_backward(m, &batch);
  if (save_table(tr.info, tr.n_info, tr.grads, dir, "lora_grads.safetensors")) DIE("save lora grads");
  char *fp = lm_path_join(dir, "frozen.txt");
  FILE *ff = fopen(fp, "w");
  free(fp);
  fprintf(ff, "base_grads %d\nviews %d\n", m->grads != NULL, views);
  fclose(ff);
  char *lp = lm_path_join(dir, "loss.txt");
  FILE *lf = fopen(lp, "w");
  free(lp);
  fprintf(lf, "%.9g\n", loss);
  fclose(lf);
  /* the adapter off: the base */
  lm_lora_enable(m, 0);
  lm_forward(m, &batch, NULL, NULL);
  if (!m->ok || write_bin(dir, "base_out.bin", lm_model_logits(m), n_out * 4)) DIE("base forward");
  lm_lora_enable(m, 1);
  char *adir = lm_path_join(dir, "adapter");
  if (lm_lora_save(m, adir)) DIE("lora save");
  /* a fresh base + the saved adapter */
  lm_model *m2 = base_model(&cfg);
  if (!m2 || lm_lora_load(m2, adir) || lm_model_reserve(m2, B, T, 0)) DIE("lora load");
  lm_forward(m2, &batch, NULL, NULL);
  if (!m2->ok || write_bin(dir, "loaded.bin", lm_model_logits(m2), n_out * 4)) DIE("loaded forward");
  lm_model_free(m2);
  /* merged */
  if (lm_lora_merge(m)) DIE("merge");
  lm_forward(m, &batch, NULL, NULL);
  if (!m->ok || write_bin(dir, "merged.bin", lm_model_logits(m), n_out * 4)) DIE("merged forward");
  char *mdir = lm_path_join(dir, "merged_dir");
  if (lm_model_save(m, mdir)) DIE("save merged");
  lm_model *m3;
  if (lm_model_load(&m3, mdir) || lm_model_reserve(m3, B, T, 0)) DIE("load merged");
  lm_forward(m3, &batch, NULL, NULL);
  if (!m3->ok || write_bin(dir, "merged_reload.bin", lm_model_logits(m3), n_out * 4)) DIE("merged reload forward");
  lm_model_free(m3);
  free(adir); free(mdir);
  free(ids); free(tgt); free(dout);
  lm_model_free(m);
  return 0;
}
