/* ref_gpt.c — driver for tests/reference/test_gpt.py: builds a tiny model
 * from a config file, runs forward + backward (or a few AdamW steps) on the
 * ids the test wrote, and saves parameters and gradients as safetensors with
 * lmkit's internal names and layouts, for comparison with PyTorch.
 *
 * usage: ref_gpt grad  DIR   -> DIR/params.safetensors, DIR/grads.safetensors, DIR/loss.txt
 *        ref_gpt adamw DIR   -> DIR/params.safetensors (initial), DIR/losses.txt (10 steps)
 * DIR/config.txt: "key value" lines; DIR/ids.bin: int32 (B*T);
 * DIR/mask.bin (optional): uint8 (B*T) key padding mask.
 * The LM head (the default) reads DIR/targets.bin: int32 (B*T), through the LM-head shorthand
 * lm_model_forward/backward. Other heads ("head K" with K an lm_head_kind, "labels L" the
 * classes, "pad P" the pad_token_id) run lm_forward/lm_backward on an lm_batch built from the
 * files present: labels.bin int32 (classify: B; tokens: B*T; -1 ignored), values.bin float32 (B,
 * scalar head), dout.bin float32 (d loss / d head output, shaped as the output); grad mode then
 * also writes DIR/out.bin, the head output (float32), and for sequence heads DIR/pool.bin, the
 * int32 (B) token each sequence was pooled at. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "kernels/kernels.h"
#include "model/heads.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "refdrv.h"

static int64_t B = 2, T = 8, steps = 10;
static float lr = 1e-3f, wd = 0.1f;

/* the driver's own keys of config.txt (refdrv.h read_config_txt) */
static int own_key(const char *k, double v) {
  if (!strcmp(k, "B")) B = (int64_t)v;
  else if (!strcmp(k, "T")) T = (int64_t)v;
  else if (!strcmp(k, "steps")) steps = (int64_t)v;
  else if (!strcmp(k, "lr")) lr = (float)v;
  else if (!strcmp(k, "wd")) wd = (float)v;
  else return 0;
  return 1;
}

static int read_config(const char *dir, lm_config *c) {
  lm_config_default(c, LM_ARCH_GPT2);
  return read_config_txt(dir, c, own_key);
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: ref_gpt grad|adamw DIR\n"); return 2; }
  const char *mode = argv[1], *dir = argv[2];
  lm_config cfg;
  if (read_config(dir, &cfg)) { fprintf(stderr, "ref_gpt: cannot read %s/config.txt\n", dir); return 1; }
  lm_model *m;
  if (lm_model_create(&m, &cfg, 1234) || lm_model_reserve(m, B, T, 1)) { fprintf(stderr, "ref_gpt: %s\n", lm_last_error()); return 1; }
  /* perturb norms and biases so that their gradients are not trivially symmetric */
  lm_rng r; lm_rng_seed(&r, 99);
  for (int i = 0; i < m->n_info; i++) {
    const lm_param_info *p = &m->info[i];
    if (strstr(p->name, "ln_") || strstr(p->name, ".bias"))
      for (size_t j = 0; j < p->numel; j++) m->params[p->offset + j] += 0.1f * lm_rng_normal(&r);
    /* task heads' output layers at a trained model's scale (std 0.5, not init's 0.02), so that
     * the outputs are O(1) and the loss is not stuck at its value for uniform outputs */
    if (!strcmp(p->name, "classifier.weight") || !strcmp(p->name, "token_classifier.weight"))
      for (size_t j = 0; j < p->numel; j++) m->params[p->offset + j] += 0.5f * lm_rng_normal(&r);
  }
  int lm = cfg.head == LM_HEAD_LM;
  int64_t NL = cfg.head == LM_HEAD_SCALAR ? 1 : cfg.num_labels;
  int64_t n_out = cfg.head == LM_HEAD_CLASSIFY ? B * NL : cfg.head == LM_HEAD_SCALAR ? B
                : cfg.head == LM_HEAD_TOKENS ? B * T * NL : B * T * cfg.vocab_size;
  int32_t *ids = read_bin(dir, "ids.bin", B * T * 4), *tgt = lm ? read_bin(dir, "targets.bin", B * T * 4) : NULL;
  uint8_t *mask = read_bin(dir, "mask.bin", B * T);
  int32_t *labels = lm ? NULL : read_bin(dir, "labels.bin", (cfg.head == LM_HEAD_TOKENS ? B * T : B) * 4);
  float *values = lm ? NULL : read_bin(dir, "values.bin", B * 4), *dout = lm ? NULL : read_bin(dir, "dout.bin", n_out * 4);
  if (strcmp(mode, "grad") && !lm) { fprintf(stderr, "ref_gpt: adamw runs the LM head only\n"); return 1; }
  if (!ids || (lm && !tgt)) { fprintf(stderr, "ref_gpt: missing ids.bin/targets.bin\n"); return 1; }
  lm_batch batch = {.ids = ids, .mask = mask, .labels = labels, .values = values, .dout = dout, .B = B, .T = T};
  if (save_tensors(m, m->params, dir, "params.safetensors")) return 1;
  char *lp = lm_path_join(dir, !strcmp(mode, "grad") ? "loss.txt" : "losses.txt");
  FILE *lf = fopen(lp, "w");
  free(lp);
  if (!strcmp(mode, "grad") && !lm) {
    lm_model_zero_grad(m);
    float loss = lm_forward(m, &batch, NULL, NULL);
    if (!m->ok) { fprintf(stderr, "ref_gpt: forward: %s\n", lm_last_error()); return 1; }
    char *op = lm_path_join(dir, "out.bin");
    FILE *of = fopen(op, "wb");
    free(op);
    if (!of || fwrite(lm_model_logits(m), 4, (size_t)n_out, of) != (size_t)n_out || fclose(of)) return 1;
    if (lm_model_pool_index(m)) {
      char *pp = lm_path_join(dir, "pool.bin");
      FILE *pf = fopen(pp, "wb");
      free(pp);
      if (!pf || fwrite(lm_model_pool_index(m), 4, (size_t)B, pf) != (size_t)B || fclose(pf)) return 1;
    }
    lm_backward(m, &batch);
    fprintf(lf, "%.9g\n", loss);
    if (save_tensors(m, m->grads, dir, "grads.safetensors")) return 1;
  } else if (!strcmp(mode, "grad")) {
    lm_model_zero_grad(m);
    float loss = lm_model_forward(m, ids, tgt, mask, B, T);
    lm_model_backward(m, ids, tgt, mask, B, T);
    fprintf(lf, "%.9g\n", loss);
    if (save_tensors(m, m->grads, dir, "grads.safetensors")) return 1;
  } else {
    float *mo = lm_alloc(m->n_params * 4), *ve = lm_alloc(m->n_params * 4);
    for (int64_t s = 1; s <= steps; s++) {
      lm_model_zero_grad(m);
      float loss = lm_model_forward(m, ids, tgt, mask, B, T);
      lm_model_backward(m, ids, tgt, mask, B, T);
      fprintf(lf, "%.9g\n", loss);
      for (int i = 0; i < m->n_info; i++) {
        const lm_param_info *p = &m->info[i];
        adamw_update(m->params + p->offset, m->grads + p->offset, mo + p->offset, ve + p->offset, (int64_t)p->numel,
                     lr, 0.9f, 0.95f, 1e-8f, p->decay ? wd : 0.0f, s, 1.0f);
      }
    }
    lm_free(mo); lm_free(ve);
  }
  fclose(lf);
  free(ids); free(tgt); free(mask); free(labels); free(values); free(dout);
  lm_model_free(m);
  return 0;
}
