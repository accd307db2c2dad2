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
 *   (float64, n*T) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: ref_rl DIR\n"); return 2; }
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
