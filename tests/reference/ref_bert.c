/* ref_bert.c — driver for tests/reference/test_bert.py: runs lmkit's BERT
 * (src/model/bert.c) on the batch the test wrote and saves what PyTorch is
 * compared with.
 *
 * usage: ref_bert grad DIR          tiny model from DIR/config.txt (norms and biases perturbed),
 *                                   forward + backward -> params.safetensors, grads.safetensors
 *                                   (internal names), loss.txt ("total mlm nsp"), hidden.bin, logits.bin
 *        ref_bert load DIR MODEL    lm_model_load(MODEL), forward without labels -> params.safetensors,
 *                                   hidden.bin, logits.bin (MLM over every row), nsp.bin
 *        ref_bert save DIR MODEL    the grad-mode model, lm_model_save(MODEL), then reloaded ->
 *                                   params.safetensors (before), params2.safetensors (reloaded)
 * DIR/config.txt: "key value" lines (drop, adrop: hidden and attention dropout rates, drawn in
 * training mode from an rng seeded drop_seed; the masks go to DIR/mask_*.bin, refdrv.h);
 * DIR/ids.bin int32 (B*T); optional segments.bin int32,
 * mask.bin uint8, mlm.bin int32 (B*T), nsp.bin int32 (B), labels.bin int32 (head-shaped). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "model/heads.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "refdrv.h"

static int64_t B = 2, T = 8;
static uint64_t drop_seed = 0;

/* the driver's own keys of config.txt (refdrv.h read_config_txt) */
static int own_key(const char *k, double v) {
  if (!strcmp(k, "drop_seed")) drop_seed = (uint64_t)v;
  else if (!strcmp(k, "B")) B = (int64_t)v;
  else if (!strcmp(k, "T")) T = (int64_t)v;
  else return 0;
  return 1;
}

static int read_config(const char *dir, lm_config *c) {
  lm_config_default(c, LM_ARCH_BERT);
  return read_config_txt(dir, c, own_key);
}

static size_t logits_floats(const lm_model *m) {
  const lm_config *c = lm_model_config(m);
  switch (c->head) {
    case LM_HEAD_CLASSIFY: return (size_t)(B * c->num_labels);
    case LM_HEAD_TOKENS: return (size_t)(B * T * c->num_labels);
    case LM_HEAD_QA: return (size_t)(B * T * 2);
    default: return (size_t)(lm_model_mlm_rows(m, NULL) * c->vocab_size);
  }
}

static lm_model *make_model(const lm_config *cfg) {
  lm_model *m;
  if (lm_model_create(&m, cfg, 1234)) return NULL;
  /* perturb norms and biases so that their gradients are not trivially symmetric */
  lm_rng r; lm_rng_seed(&r, 99);
  for (int i = 0; i < m->n_info; i++) {
    const lm_param_info *p = &m->info[i];
    if (strstr(p->name, "ln") || strstr(p->name, "bias"))
      for (size_t j = 0; j < p->numel; j++) m->params[p->offset + j] += 0.1f * lm_rng_normal(&r);
  }
  return m;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: ref_bert grad|load|save DIR [MODEL]\n"); return 2; }
  const char *mode = argv[1], *dir = argv[2];
  lm_config cfg;
  if (read_config(dir, &cfg)) { fprintf(stderr, "ref_bert: cannot read %s/config.txt\n", dir); return 1; }
  lm_model *m = NULL;
  if (!strcmp(mode, "load")) {
    if (argc != 4 || lm_model_load(&m, argv[3])) { fprintf(stderr, "ref_bert: %s\n", lm_last_error()); return 1; }
  } else if (!(m = make_model(&cfg))) {
    fprintf(stderr, "ref_bert: %s\n", lm_last_error());
    return 1;
  }
  if (save_tensors(m, m->params, dir, "params.safetensors")) return 1;
  if (!strcmp(mode, "save")) {
    lm_model *r;
    if (argc != 4 || lm_model_save(m, argv[3]) || lm_model_load(&r, argv[3])) { fprintf(stderr, "ref_bert: %s\n", lm_last_error()); return 1; }
    if (save_tensors(r, r->params, dir, "params2.safetensors")) return 1;
    lm_model_free(r);
    lm_model_free(m);
    return 0;
  }
  const lm_config *c = lm_model_config(m);
  int grad = !strcmp(mode, "grad");
  if (lm_model_reserve(m, B, T, grad)) { fprintf(stderr, "ref_bert: %s\n", lm_last_error()); return 1; }
  size_t N = (size_t)(B * T);
  size_t nlab = c->head == LM_HEAD_CLASSIFY ? (size_t)B : c->head == LM_HEAD_QA ? 2 * (size_t)B : N;
  lm_batch b = {.B = B, .T = T};
  int32_t *ids = read_bin(dir, "ids.bin", N * 4), *seg = read_bin(dir, "segments.bin", N * 4);
  uint8_t *mask = read_bin(dir, "mask.bin", N);
  int32_t *mlm = grad ? read_bin(dir, "mlm.bin", N * 4) : NULL, *nsp = grad ? read_bin(dir, "nsp.bin", B * 4) : NULL;
  int32_t *lab = grad ? read_bin(dir, "labels.bin", nlab * 4) : NULL;
  if (!ids) { fprintf(stderr, "ref_bert: missing ids.bin\n"); return 1; }
  b.ids = ids; b.segments = seg; b.mask = mask; b.mlm_labels = mlm; b.nsp_labels = nsp; b.labels = lab;
  lm_model_zero_grad(m);
  lm_rng drng;
  lm_rng_seed(&drng, drop_seed);
  if (grad) lm_model_set_training(m, &drng);   /* dropout only where the config has rates */
  float lm = NAN, ln = NAN;
  float loss = lm_forward(m, &b, &lm, &ln);
  if (grad && isnan(loss)) { fprintf(stderr, "ref_bert: forward: %s\n", lm_last_error()); return 1; }
  /* outputs of the forward, before backward reuses the MLM logits buffer */
  if (write_bin(dir, "hidden.bin", lm_model_hidden(m), N * c->n_embd * 4) ||
      write_bin(dir, "logits.bin", lm_model_logits(m), logits_floats(m) * 4))
    return 1;
  if (c->head == LM_HEAD_PRETRAIN && write_bin(dir, "nsp_logits.bin", lm_model_nsp_logits(m), B * 2 * 4)) return 1;
  if (grad) {
    lm_backward(m, &b);
    char *lp = lm_path_join(dir, "loss.txt");
    FILE *lf = fopen(lp, "w");
    free(lp);
    fprintf(lf, "%.9g %.9g %.9g\n", loss, lm, ln);
    fclose(lf);
    if (save_tensors(m, m->grads, dir, "grads.safetensors") || save_dropout_masks(m, B, T, dir)) return 1;
  }
  free(ids); free(seg); free(mask); free(mlm); free(nsp); free(lab);
  lm_model_free(m);
  return 0;
}
