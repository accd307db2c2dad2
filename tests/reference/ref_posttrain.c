/* ref_posttrain.c — driver for tests/reference/test_posttrain.py: builds a tiny
 * GPT-2 from a config file, lays the preference pairs the test wrote into an
 * lm_pref_data, and runs ONE micro-batch of the real objective (reward or
 * DPO and its kin, src/train/objectives/{reward,dpo}.c) through forward,
 * the objective's own loss and gradient, and backward; then its evaluation on
 * the same pairs. Parameters and gradients are saved as safetensors with
 * lmkit's internal names, for comparison with PyTorch autograd.
 *
 * usage: ref_posttrain reward|dpo DIR
 *   DIR/config.txt  "key value" lines: the model (vocab, positions, dim, layers, heads, head, pad)
 *                   and the objective (center; loss = lm_pref_loss, beta, gamma)
 *   DIR/pairs.json  {"pairs": [{"chosen": [ids], "chosen_mask": [0/1], "rejected": [...],
 *                   "rejected_mask": [...], "margin": x}, ...]}; mask 1 = a response token
 * writes DIR/params.safetensors, DIR/grads.safetensors, DIR/loss.txt (the micro-batch's loss),
 *   DIR/eval.txt (evaluate's loss and figures); dpo also DIR/refparams.safetensors (the reference
 *   model: the policy's parameters plus noise) and DIR/ref_logps.bin (float64, 2 per pair: its
 *   response log-prob sums from lm_pref_logps). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "model/heads.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "train/posttrain.h"
#include "refdrv.h"

static float center = 0, beta = 0.1f, gamma_ = 0.5f;
static int loss_kind = 0;

/* the driver's own keys of config.txt (refdrv.h read_config_txt) */
static int own_key(const char *k, double v) {
  if (!strcmp(k, "center")) center = (float)v;
  else if (!strcmp(k, "loss")) loss_kind = (int)v;
  else if (!strcmp(k, "beta")) beta = (float)v;
  else if (!strcmp(k, "gamma")) gamma_ = (float)v;
  else return 0;
  return 1;
}

static int read_config(const char *dir, lm_config *c) {
  lm_config_default(c, LM_ARCH_GPT2);
  if (read_config_txt(dir, c, own_key)) return 1;
  if (c->head == LM_HEAD_SCALAR) c->num_labels = 1;
  return 0;
}

static int append_ints(const cJSON *a, const char *what, uint32_t *ids, uint8_t *mask, int64_t *len) {
  int64_t n = 0;
  const cJSON *x;
  cJSON_ArrayForEach(x, a) {
    if (!cJSON_IsNumber(x)) { fprintf(stderr, "ref_posttrain: %s: not a number\n", what); return 1; }
    if (ids) ids[n] = (uint32_t)x->valueint;
    if (mask) mask[n] = (uint8_t)x->valueint;
    n++;
  }
  *len = n;
  return 0;
}

/* pairs.json -> lm_pref_data */
static int read_pairs(const char *dir, lm_pref_data *d) {
  memset(d, 0, sizeof *d);
  char *p = lm_path_join(dir, "pairs.json"), *text;
  size_t len;
  if (lm_read_file(p, &text, &len)) { free(p); fprintf(stderr, "ref_posttrain: %s\n", lm_last_error()); return 1; }
  free(p);
  cJSON *j = cJSON_ParseWithLength(text, len);
  free(text);
  const cJSON *pairs = cJSON_GetObjectItemCaseSensitive(j, "pairs");
  int64_t n = cJSON_GetArraySize(pairs), total = 0;
  const cJSON *pr;
  cJSON_ArrayForEach(pr, pairs) {
    total += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(pr, "chosen"));
    total += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(pr, "rejected"));
  }
  d->n = n;
  d->ids = malloc((size_t)total * sizeof *d->ids); d->mask = malloc((size_t)total);
  d->off = malloc((size_t)(2 * n + 1) * sizeof *d->off); d->margin = malloc((size_t)n * sizeof *d->margin);
  d->line = malloc((size_t)n * sizeof *d->line);
  d->off[0] = 0;
  int64_t i = 0;
  cJSON_ArrayForEach(pr, pairs) {
    for (int s = 0; s < 2; s++) {
      const char *key = s ? "rejected" : "chosen", *mkey = s ? "rejected_mask" : "chosen_mask";
      int64_t a = d->off[2 * i + s], k, km;
      if (append_ints(cJSON_GetObjectItemCaseSensitive(pr, key), key, d->ids + a, NULL, &k) ||
          append_ints(cJSON_GetObjectItemCaseSensitive(pr, mkey), mkey, NULL, d->mask + a, &km) || k != km) {
        cJSON_Delete(j);
        return 1;
      }
      d->off[2 * i + s + 1] = a + k;
      if (k > d->longest) d->longest = k;
    }
    const cJSON *mg = cJSON_GetObjectItemCaseSensitive(pr, "margin");
    d->margin[i] = cJSON_IsNumber(mg) ? (float)mg->valuedouble : 0.0f;
    d->line[i] = i + 1;
    i++;
  }
  cJSON_Delete(j);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3 || (strcmp(argv[1], "reward") && strcmp(argv[1], "dpo"))) {
    fprintf(stderr, "usage: ref_posttrain reward|dpo DIR\n");
    return 2;
  }
  int reward = !strcmp(argv[1], "reward");
  const char *dir = argv[2];
  lm_set_threads(1);
  lm_config cfg;
  if (read_config(dir, &cfg)) { fprintf(stderr, "ref_posttrain: cannot read %s/config.txt\n", dir); return 1; }
  lm_pref_data d;
  if (read_pairs(dir, &d)) return 1;
  lm_model *m;
  if (lm_model_create(&m, &cfg, 1234)) { fprintf(stderr, "ref_posttrain: %s\n", lm_last_error()); return 1; }
  /* norms and biases off their init, the scalar head at a trained model's scale, so that the
   * outputs and gradients are not trivially symmetric */
  lm_rng r;
  lm_rng_seed(&r, 99);
  for (int i = 0; i < m->n_info; i++) {
    const lm_param_info *p = &m->info[i];
    if (strstr(p->name, "ln_") || strstr(p->name, ".bias"))
      for (size_t k = 0; k < p->numel; k++) m->params[p->offset + k] += 0.1f * lm_rng_normal(&r);
    if (!strcmp(p->name, "classifier.weight"))
      for (size_t k = 0; k < p->numel; k++) m->params[p->offset + k] += 0.5f * lm_rng_normal(&r);
    if (!strcmp(p->name, "wte.weight"))   /* sharper next-token distributions than init's */
      for (size_t k = 0; k < p->numel; k++) m->params[p->offset + k] += 0.3f * lm_rng_normal(&r);
  }
  int64_t B = d.n, T = d.longest;
  int32_t pad = (int32_t)(cfg.pad_token_id >= 0 ? cfg.pad_token_id : 0);
  double *ref = NULL;
  if (!reward) {
    /* the reference: the policy's parameters plus noise; its log-probs through lm_pref_logps */
    float *keep = malloc(m->n_params * sizeof *keep);
    memcpy(keep, m->params, m->n_params * sizeof *keep);
    for (size_t k = 0; k < m->n_params; k++) m->params[k] += 0.05f * lm_rng_normal(&r);
    if (save_tensors(m, m->params, dir, "refparams.safetensors")) return 1;
    ref = malloc((size_t)(2 * B) * sizeof *ref);
    if (lm_pref_logps(m, &d, B, pad, ref)) { fprintf(stderr, "ref_posttrain: logps: %s\n", lm_last_error()); return 1; }
    memcpy(m->params, keep, m->n_params * sizeof *keep);
    free(keep);
    char *rp = lm_path_join(dir, "ref_logps.bin");
    FILE *rf = fopen(rp, "wb");
    free(rp);
    if (!rf || fwrite(ref, sizeof *ref, (size_t)(2 * B), rf) != (size_t)(2 * B) || fclose(rf)) return 1;
  }
  lm_objective obj;
  lm_reward_eval rev = {0};
  lm_dpo_eval dev = {0};
  lm_status st;
  if (reward) {
    lm_reward_opts ro = {.B = B, .T = T, .center = center, .pad = pad, .seed = 5};
    st = lm_objective_reward(&obj, m, &d, &d, &ro, NULL, &rev);
  } else {
    lm_dpo_opts po = {.loss = loss_kind, .beta = beta, .gamma = gamma_, .B = B, .T = T, .pad = pad, .seed = 5};
    st = lm_objective_dpo(&obj, m, &d, ref, &d, ref, &po, NULL, &dev);
  }
  if (st) { fprintf(stderr, "ref_posttrain: objective: %s\n", lm_last_error()); return 1; }
  if (save_tensors(m, m->params, dir, "params.safetensors")) return 1;
  lm_model_zero_grad(m);
  float loss = obj.micro(obj.self, m);
  if (save_tensors(m, m->grads, dir, "grads.safetensors")) return 1;
  double vl = obj.evaluate(obj.self, m, 0);
  char *lp = lm_path_join(dir, "loss.txt"), *ep = lm_path_join(dir, "eval.txt");
  FILE *lf = fopen(lp, "w"), *ef = fopen(ep, "w");
  free(lp); free(ep);
  if (!lf || !ef) return 1;
  fprintf(lf, "%.9g\n", loss);
  if (reward)
    fprintf(ef, "%.12g %.12g %.12g %.12g %.12g\n", vl, rev.accuracy, rev.margin, rev.chosen, rev.rejected);
  else
    fprintf(ef, "%.12g %.12g %.12g %.12g %.12g\n", vl, dev.chosen, dev.rejected, dev.margins, dev.accuracies);
  fclose(lf); fclose(ef);
  obj.free(obj.self);
  free(ref);
  lm_pref_data_free(&d);
  lm_model_free(m);
  return 0;
}
