/* ref_rl.c — driver for tests/reference/test_rl.py: runs the RL losses of
 * src/train/rl_loss.c on the fixed rollouts the test wrote and writes what
 * they return, for comparison with PyTorch autograd.
 *
 * usage: ref_rl DIR
 *   DIR/config.txt  "key value" lines: n T G, and the options: norm seq_ratio adv_per_row clip_low
 *                   clip_high beta denom (policy loss), scale (GRPO), kl_coef gamma lam cliprange_value
 *                   (PPO, RLOO), V temperature (entropy)
 *   DIR/len.bin (n int64), lp old ref adv v vold (n*T float32), advrow score (n float32),
 *   logits (n*T*V float32)
 * writes (float32 unless said): k1 k3 k3grad (n*T); grpo_adv (n); rloo_adv rloo_rlhf (n);
 *   policy.bin (float64 loss, clipfrac, kl, ratio) and dlp (n*T) of the policy loss;
 *   ppo_rewards ppo_adv (whitened) ppo_ret (n*T) from old/ref/score/vold; ppo_policy.bin (float64)
 *   and ppo_dlp: the token-normalised clipped loss of lp against old with ppo_adv; value.bin
 *   (float64 loss, clipfrac) and dv of the value loss of v against vold and ppo_ret; entropy.bin
 *   (float64, n*T)
 *
 * usage: ref_rl ppo DIR — PPO through the real objective (src/train/objectives/grpo.c) on a tiny
 *   GPT-2 policy, its reference (the policy plus noise) and a value model (tokens head, 1 label):
 *   DIR/config.txt  the model keys (refdrv.h) and n P T temperature kl_coef target_kl kl_horizon gamma
 *                   lam vf_coef cliprange_value clip_low clip_high missing_eos_penalty
 *   DIR/prompt.bin (n*P int32, row i's first plen[i] count), plen.bin (n int64), comp.bin (n*T int32),
 *   len.bin (n int64), stopped.bin (n uint8), score.bin (n float32): the fixed rollout batch.
 *   The objective runs with ppo_epochs 2, one mini-batch: the first micro-batch takes the old
 *   log-probs, reference log-probs and values and makes the advantages; then the policy and the
 *   value model are moved (as an optimizer step would) and the second micro-batch's loss and
 *   gradients are what the test checks.
 *   writes policy0/policy1/ref/value0/value1.safetensors (parameters), grads.safetensors and
 *   vgrads.safetensors (after the second micro-batch), loss.txt, fields.txt (its step_fields) and
 *   state.txt (the objective state: the adapted kl_coef). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/model.h"
#include "train/rl.h"
#include "refdrv.h"

typedef struct { int64_t n, T, G, V; lm_rl_policy_opts po; int scale; double kl_coef, gamma, lam, cv, temp; } cfg_t;

static int read_cfg(const char *dir, cfg_t *c) {
  memset(c, 0, sizeof *c);
  c->po.clip_low = c->po.clip_high = 0.2; c->gamma = 1; c->lam = 0.95; c->cv = 0.2; c->temp = 1;
  char *p = lm_path_join(dir, "config.txt");
  FILE *f = fopen(p, "r");
  free(p);
  if (!f) return 1;
  char k[64]; double v;
  while (fscanf(f, "%63s %lf", k, &v) == 2) {
    if (!strcmp(k, "n")) c->n = (int64_t)v;
    else if (!strcmp(k, "T")) c->T = (int64_t)v;
    else if (!strcmp(k, "G")) c->G = (int64_t)v;
    else if (!strcmp(k, "V")) c->V = (int64_t)v;
    else if (!strcmp(k, "norm")) c->po.norm = (int)v;
    else if (!strcmp(k, "seq_ratio")) c->po.seq_ratio = (int)v;
    else if (!strcmp(k, "adv_per_row")) c->po.adv_per_row = (int)v;
    else if (!strcmp(k, "clip_low")) c->po.clip_low = v;
    else if (!strcmp(k, "clip_high")) c->po.clip_high = v;
    else if (!strcmp(k, "beta")) c->po.beta = v;
    else if (!strcmp(k, "denom")) c->po.denom = v;
    else if (!strcmp(k, "scale")) c->scale = (int)v;
    else if (!strcmp(k, "kl_coef")) c->kl_coef = v;
    else if (!strcmp(k, "gamma")) c->gamma = v;
    else if (!strcmp(k, "lam")) c->lam = v;
    else if (!strcmp(k, "cliprange_value")) c->cv = v;
    else if (!strcmp(k, "temperature")) c->temp = v;
    else { fprintf(stderr, "ref_rl: unknown config key %s\n", k); fclose(f); return 1; }
  }
  fclose(f);
  return !(c->n > 0 && c->T > 0 && c->G >= 2 && c->n % c->G == 0 && c->V > 0);
}

/* ---- PPO through the model */

static double ppo_key[16];
static const char *const PPO_KEYS[] = {"n", "P", "T", "temperature", "kl_coef", "target_kl", "kl_horizon", "gamma", "lam",
                                       "vf_coef", "cliprange_value", "clip_low", "clip_high", "missing_eos_penalty", NULL};
static int ppo_own(const char *k, double v) {
  for (int i = 0; PPO_KEYS[i]; i++) if (!strcmp(k, PPO_KEYS[i])) { ppo_key[i] = v; return 1; }
  return 0;
}
#define KEY(i) ppo_key[i]

static void perturb(lm_model *m, lm_rng *r, float scale, int shape) {
  for (int i = 0; i < m->n_info; i++) {
    const lm_param_info *p = &m->info[i];
    float s = scale;
    if (shape && (strstr(p->name, "ln_") || strstr(p->name, ".bias"))) s = 0.1f;   /* norms and biases off their init */
    if (shape && (!strcmp(p->name, "wte.weight") || strstr(p->name, "classifier"))) s = 0.3f;
    for (size_t k = 0; k < p->numel; k++) m->params[p->offset + k] += s * lm_rng_normal(r);
  }
}

static int ppo_main(const char *dir) {
  lm_set_threads(1);
  lm_config cfg;
  lm_config_default(&cfg, LM_ARCH_GPT2);
  if (read_config_txt(dir, &cfg, ppo_own)) { fprintf(stderr, "ref_rl: no config.txt\n"); return 1; }
  int64_t n = (int64_t)KEY(0), P = (int64_t)KEY(1), T = (int64_t)KEY(2);
  int32_t *prompt = read_bin(dir, "prompt.bin", (size_t)(n * P) * 4), *comp = read_bin(dir, "comp.bin", (size_t)(n * T) * 4);
  int64_t *plen = read_bin(dir, "plen.bin", (size_t)n * 8), *len = read_bin(dir, "len.bin", (size_t)n * 8);
  uint8_t *stopped = read_bin(dir, "stopped.bin", (size_t)n);
  float *score = read_bin(dir, "score.bin", (size_t)n * 4);
  if (!prompt || !comp || !plen || !len || !stopped || !score) { fprintf(stderr, "ref_rl: missing rollout input\n"); return 1; }
  lm_model *m, *ref, *value;
  lm_config vc = cfg;
  vc.head = LM_HEAD_TOKENS; vc.num_labels = 1;
  if (lm_model_create(&m, &cfg, 1234) || lm_model_create(&ref, &cfg, 1234) || lm_model_create(&value, &vc, 4321)) {
    fprintf(stderr, "ref_rl: %s\n", lm_last_error());
    return 1;
  }
  lm_rng r;
  lm_rng_seed(&r, 99);
  perturb(m, &r, 0, 1);
  memcpy(ref->params, m->params, m->n_params * sizeof *m->params);
  perturb(ref, &r, 0.05f, 0);
  perturb(value, &r, 0, 1);
  /* the tasks and the fixed rollouts */
  lm_rl_tasks t = {.n = n};
  t.ids = calloc((size_t)n, sizeof *t.ids); t.len = plen; t.rec = calloc((size_t)n, sizeof *t.rec);
  t.text = calloc((size_t)n, sizeof *t.text);
  for (int64_t i = 0; i < n; i++) { t.ids[i] = prompt + i * P; t.longest = plen[i] > t.longest ? plen[i] : t.longest; }
  lm_rollouts fx;
  if (lm_rollouts_alloc(&fx, n, T)) return 1;
  memcpy(fx.ids, comp, (size_t)(n * T) * 4);
  for (int64_t i = 0; i < n; i++) { fx.len[i] = len[i]; fx.stopped[i] = stopped[i]; }
  memset(fx.tool, 0, (size_t)(n * T));
  lm_grpo_opts go = {.algo = LM_RL_ALGO_PPO, .loss = LM_RL_NORM_TOKEN, .G = 1, .B = n, .kl_coef = KEY(4),
                     .target_kl = KEY(5), .kl_horizon = KEY(6), .gamma = KEY(7), .lam = KEY(8), .vf_coef = KEY(9),
                     .cliprange_value = KEY(10), .clip_low = KEY(11), .clip_high = KEY(12), .missing_eos_penalty = KEY(13),
                     .ppo_epochs = 2, .mini_batches = 1, .grad_accum = 1, .value = value, .fixed = &fx, .fixed_score = score,
                     .ro = {.temperature = (float)KEY(3), .top_p = 1, .max_new = T}, .seed = 7};
  lm_objective obj;
  if (lm_objective_grpo(&obj, m, ref, NULL, &t, NULL, NULL, &go, NULL)) { fprintf(stderr, "ref_rl: %s\n", lm_last_error()); return 1; }
  int bad = save_tensors(m, m->params, dir, "policy0.safetensors") | save_tensors(ref, ref->params, dir, "ref.safetensors") |
            save_tensors(value, value->params, dir, "value0.safetensors");
  char fields[2048];
  lm_model_zero_grad(m); lm_model_zero_grad(value);
  float l1 = obj.micro(obj.self, m);
  obj.step_fields(obj.self, fields, sizeof fields);
  /* an optimizer step's worth of change, so that ratios and value clipping are not trivial */
  perturb(m, &r, 0.02f, 0);
  perturb(value, &r, 0.05f, 0);
  bad |= save_tensors(m, m->params, dir, "policy1.safetensors") | save_tensors(value, value->params, dir, "value1.safetensors");
  lm_model_zero_grad(m); lm_model_zero_grad(value);
  float l2 = obj.micro(obj.self, m);
  if (!(l1 == l1) || !(l2 == l2)) { fprintf(stderr, "ref_rl: micro-batch failed: %s\n", lm_last_error()); return 1; }
  int k = obj.step_fields(obj.self, fields, sizeof fields);
  char state[256];
  int ks = obj.state_save(obj.self, state, sizeof state);
  bad |= save_tensors(m, m->grads, dir, "grads.safetensors") | save_tensors(value, value->grads, dir, "vgrads.safetensors");
  char loss[64];
  snprintf(loss, sizeof loss, "%.9g\n", l2);
  bad |= write_bin(dir, "loss.txt", loss, strlen(loss)) | write_bin(dir, "fields.txt", fields, (size_t)k) |
         write_bin(dir, "state.txt", state, (size_t)ks);
  obj.free(obj.self);
  lm_rollouts_free(&fx);
  free(t.ids); free(t.rec); free(t.text);
  free(prompt); free(comp); free(plen); free(len); free(stopped); free(score);
  lm_model_free(m); lm_model_free(ref); lm_model_free(value);
  if (bad) fprintf(stderr, "ref_rl: could not write the outputs\n");
  return bad;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "ppo")) return ppo_main(argv[2]);
  if (argc != 2) { fprintf(stderr, "usage: ref_rl DIR | ref_rl ppo DIR\n"); return 2; }
  const char *dir = argv[1];
  cfg_t c;
  if (read_cfg(dir, &c)) { fprintf(stderr, "ref_rl: bad config.txt\n"); return 1; }
  int64_t n = c.n, T = c.T, NT = n * T;
  size_t fb = (size_t)NT * sizeof(float), rb = (size_t)n * sizeof(float);
  int64_t *len = read_bin(dir, "len.bin", (size_t)n * sizeof *len);
  float *lp = read_bin(dir, "lp.bin", fb), *old = read_bin(dir, "old.bin", fb), *ref = read_bin(dir, "ref.bin", fb);
  float *adv = read_bin(dir, "adv.bin", fb), *v = read_bin(dir, "v.bin", fb), *vold = read_bin(dir, "vold.bin", fb);
  float *advrow = read_bin(dir, "advrow.bin", rb), *score = read_bin(dir, "score.bin", rb);
  float *logits = read_bin(dir, "logits.bin", fb * (size_t)c.V);
  if (!len || !lp || !old || !ref || !adv || !v || !vold || !advrow || !score || !logits) {
    fprintf(stderr, "ref_rl: missing input\n");
    return 1;
  }
  for (int64_t i = 0; i < n; i++)
    if (len[i] < 0 || len[i] > T) { fprintf(stderr, "ref_rl: bad length\n"); return 1; }
  float *a = malloc(fb), *b = malloc(fb), *d = malloc(fb), *x = malloc(rb), *y = malloc(rb);
  int bad = 0;

  for (int64_t k = 0; k < NT; k++) { a[k] = (float)lm_kl_k1(lp[k], ref[k]); b[k] = (float)lm_kl_k3(lp[k], ref[k]);
                                     d[k] = (float)lm_kl_k3_grad(lp[k], ref[k]); }
  bad |= write_bin(dir, "k1.bin", a, fb) | write_bin(dir, "k3.bin", b, fb) | write_bin(dir, "k3grad.bin", d, fb);

  lm_rl_group_advantages(score, n, (int)c.G, c.scale, x);
  bad |= write_bin(dir, "grpo_adv.bin", x, rb);
  /* RLOO's KL sum: k1 of old against ref over each row */
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    for (int64_t t = 0; t < len[i]; t++) s += lm_kl_k1(old[i * T + t], ref[i * T + t]);
    y[i] = (float)s;
  }
  float *rl = malloc(rb);
  lm_rl_rloo_advantages(score, y, c.kl_coef, n, (int)c.G, x, rl);
  bad |= write_bin(dir, "rloo_adv.bin", x, rb) | write_bin(dir, "rloo_rlhf.bin", rl, rb);
  free(rl);

  lm_rl_policy_stats ps;
  lm_rl_policy_loss(&c.po, n, T, len, lp, old, ref, c.po.adv_per_row ? advrow : adv, d, &ps);
  double pv[4] = {ps.loss, ps.clipfrac, ps.kl, ps.ratio};
  bad |= write_bin(dir, "policy.bin", pv, sizeof pv) | write_bin(dir, "dlp.bin", d, fb);

  /* PPO: rewards, GAE, whitening, then the token-normalised clipped loss and the value loss */
  memset(a, 0, fb); memset(b, 0, fb);
  float *ret = calloc((size_t)NT, sizeof *ret);
  lm_rl_kl_rewards(n, T, len, old, ref, score, c.kl_coef, a);
  lm_rl_gae(n, T, len, a, vold, c.gamma, c.lam, b, ret);
  lm_rl_whiten(n, T, len, b);
  bad |= write_bin(dir, "ppo_rewards.bin", a, fb) | write_bin(dir, "ppo_adv.bin", b, fb) | write_bin(dir, "ppo_ret.bin", ret, fb);
  lm_rl_policy_opts ppo = {.norm = LM_RL_NORM_TOKEN, .clip_low = c.po.clip_low, .clip_high = c.po.clip_high};
  lm_rl_policy_loss(&ppo, n, T, len, lp, old, NULL, b, d, &ps);
  double pp[4] = {ps.loss, ps.clipfrac, ps.kl, ps.ratio};
  bad |= write_bin(dir, "ppo_policy.bin", pp, sizeof pp) | write_bin(dir, "ppo_dlp.bin", d, fb);
  double vc, vl = lm_rl_value_loss(n, T, len, v, vold, ret, c.cv, d, &vc);
  double vv[2] = {vl, vc};
  bad |= write_bin(dir, "value.bin", vv, sizeof vv) | write_bin(dir, "dv.bin", d, fb);

  double *ent = malloc((size_t)NT * sizeof *ent);
  for (int64_t k = 0; k < NT; k++) ent[k] = lm_rl_entropy(logits + k * c.V, c.V, c.temp);
  bad |= write_bin(dir, "entropy.bin", ent, (size_t)NT * sizeof *ent);

  free(ent); free(ret); free(a); free(b); free(d); free(x); free(y);
  free(len); free(lp); free(old); free(ref); free(adv); free(v); free(vold); free(advrow); free(score); free(logits);
  if (bad) fprintf(stderr, "ref_rl: could not write the outputs\n");
  return bad;
}
