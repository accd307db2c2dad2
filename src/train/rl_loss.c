/* rl_loss.c — the losses and advantages of PPO, GRPO and RLOO (rl.h) as pure
 * functions over fixed rollouts. Sums run in double; inputs and gradients are
 * float, as the model produces and consumes them. The formulas are TRL's
 * (trl/trainer/ppo_trainer.py: compute rewards, GAE loop, masked_whiten,
 * pg_losses / vf_losses; grpo_trainer.py: _generate_and_score_completions for
 * the advantages, _compute_loss for the loss and its loss_type
 * normalisations; rloo_trainer.py: rlhf_reward and the leave-one-out
 * baseline), checked against PyTorch by tests/reference/test_rl.py. */
#include <math.h>
#include <string.h>
#include "train/rl.h"

static const char *const SCALE_NAMES[] = {"group", "batch", "none"};

int lm_rl_scale_from_name(const char *name) {
  for (int i = 0; i < 3; i++)
    if (!strcmp(name, SCALE_NAMES[i])) return i;
  return -1;
}

const char *lm_rl_scale_name(int scale) { return scale >= 0 && scale < 3 ? SCALE_NAMES[scale] : "?"; }

/* unbiased standard deviation of x[0..n) (torch.std), 0 for n < 2 */
static double std_unbiased(const float *x, int64_t n) {
  if (n < 2) return 0;
  double m = 0, v = 0;
  for (int64_t i = 0; i < n; i++) m += x[i];
  m /= (double)n;
  for (int64_t i = 0; i < n; i++) v += ((double)x[i] - m) * ((double)x[i] - m);
  return sqrt(v / (double)(n - 1));
}

void lm_rl_group_advantages(const float *r, int64_t n, int G, int scale, float *adv) {
  double bstd = std_unbiased(r, n);
  for (int64_t g0 = 0; g0 < n; g0 += G) {
    double m = 0;
    for (int j = 0; j < G; j++) m += r[g0 + j];
    m /= G;
    /* TRL: advantages / (std_rewards + 1e-4) */
    double s = scale == LM_RL_SCALE_GROUP ? std_unbiased(r + g0, G) : bstd;
    for (int j = 0; j < G; j++) {
      double a = (double)r[g0 + j] - m;
      adv[g0 + j] = (float)(scale == LM_RL_SCALE_NONE ? a : a / (s + 1e-4));
    }
  }
}

void lm_rl_rloo_advantages(const float *score, const float *klsum, double kl_coef, int64_t n, int G, float *adv,
                           float *rlhf) {
  for (int64_t g0 = 0; g0 < n; g0 += G) {
    double sum = 0;
    for (int j = 0; j < G; j++) sum += (double)score[g0 + j] - kl_coef * klsum[g0 + j];
    for (int j = 0; j < G; j++) {
      double x = (double)score[g0 + j] - kl_coef * klsum[g0 + j];
      adv[g0 + j] = (float)(x - (sum - x) / (G - 1));   /* baseline: the mean of the others */
      if (rlhf) rlhf[g0 + j] = (float)x;
    }
  }
}

void lm_rl_kl_rewards(int64_t n, int64_t T, const int64_t *len, const float *lp, const float *ref, const float *score,
                      double kl_coef, float *rewards) {
  for (int64_t i = 0; i < n; i++) {
    for (int64_t t = 0; t < len[i]; t++)
      rewards[i * T + t] = (float)(-kl_coef * lm_kl_k1(lp[i * T + t], ref[i * T + t]));
    if (len[i] > 0) rewards[i * T + len[i] - 1] = (float)((double)rewards[i * T + len[i] - 1] + score[i]);
  }
}

void lm_rl_gae(int64_t n, int64_t T, const int64_t *len, const float *rewards, const float *values, double gamma,
               double lam, float *adv, float *ret) {
  for (int64_t i = 0; i < n; i++) {
    double last = 0;
    for (int64_t t = len[i] - 1; t >= 0; t--) {
      double next = t + 1 < len[i] ? values[i * T + t + 1] : 0.0;
      double delta = rewards[i * T + t] + gamma * next - values[i * T + t];
      last = delta + gamma * lam * last;
      adv[i * T + t] = (float)last;
      ret[i * T + t] = (float)(last + values[i * T + t]);
    }
  }
}

void lm_rl_whiten(int64_t n, int64_t T, const int64_t *len, float *x) {
  double m = 0, c = 0, v = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t t = 0; t < len[i]; t++) { m += x[i * T + t]; c += 1; }
  if (c < 2) return;   /* TRL would divide by zero (Bessel); nothing to whiten */
  m /= c;
  for (int64_t i = 0; i < n; i++)
    for (int64_t t = 0; t < len[i]; t++) v += ((double)x[i * T + t] - m) * ((double)x[i * T + t] - m);
  v = v / c * (c / (c - 1));   /* masked_var(unbiased=True): the mean square times c / (c - 1) */
  double inv = 1.0 / sqrt(v + 1e-8);
  for (int64_t i = 0; i < n; i++)
    for (int64_t t = 0; t < len[i]; t++) x[i * T + t] = (float)(((double)x[i * T + t] - m) * inv);
}

/* max(-a r, -a clip(r)) and its derivative in r; *clipped when the clipped term is the larger */
static double clip_term(double a, double r, double lo, double hi, double *dr, int *clipped) {
  double rc = r < lo ? lo : r > hi ? hi : r;
  double l1 = -a * r, l2 = -a * rc;
  *clipped = l2 > l1;
  if (l2 > l1) { *dr = 0; return l2; }   /* the clipped side is flat in r */
  *dr = -a;
  return l1;
}

void lm_rl_policy_loss(const lm_rl_policy_opts *o, int64_t n, int64_t T, const int64_t *len, const float *lp,
                       const float *old, const float *ref, const float *adv, float *dlp, lm_rl_policy_stats *st) {
  double lo = 1.0 - o->clip_low, hi = 1.0 + o->clip_high;
  int64_t tokens = 0;
  for (int64_t i = 0; i < n; i++) tokens += len[i];
  double total = 0, clipped = 0, kl = 0, ratios = 0;
  /* the weight of a row's token sum in the loss, by normalisation */
  double w_all = o->norm == LM_RL_NORM_TOKEN ? 1.0 / (o->denom > 0 ? o->denom : (tokens ? (double)tokens : 1.0))
               : o->norm == LM_RL_NORM_CONST ? 1.0 / ((double)n * o->denom)
               : 1.0 / (double)n;
  for (int64_t i = 0; i < n; i++) {
    const float *l = lp + i * T, *q = old + i * T;
    float *d = dlp + i * T;
    memset(d, 0, (size_t)T * sizeof *d);
    int64_t L = len[i];
    double w = o->norm == LM_RL_NORM_SEQ ? w_all / (L > 0 ? (double)L : 1.0) : w_all;
    if (o->seq_ratio) {   /* RLOO: one ratio per row, exp(sum lp - sum old) */
      double diff = 0, dr;
      int c;
      for (int64_t t = 0; t < L; t++) diff += (double)l[t] - q[t];
      double r = exp(diff), a = adv[i];
      total += w * clip_term(a, r, lo, hi, &dr, &c);
      clipped += c; ratios += r;
      for (int64_t t = 0; t < L; t++) {
        d[t] = (float)(w * dr * r);
        if (ref) kl += lm_kl_k1(l[t], ref[i * T + t]);
      }
      continue;
    }
    for (int64_t t = 0; t < L; t++) {
      double r = exp((double)l[t] - q[t]), dr, a = o->adv_per_row ? adv[i] : adv[i * T + t];
      int c;
      double lt = clip_term(a, r, lo, hi, &dr, &c), g = dr * r;
      if (o->beta != 0) {
        lt += o->beta * lm_kl_k3(l[t], ref[i * T + t]);
        g += o->beta * lm_kl_k3_grad(l[t], ref[i * T + t]);
      }
      if (ref) kl += o->beta != 0 ? lm_kl_k3(l[t], ref[i * T + t]) : lm_kl_k1(l[t], ref[i * T + t]);
      total += w * lt; d[t] = (float)(w * g);
      clipped += c; ratios += r;
    }
  }
  if (st) {
    double cnt = o->seq_ratio ? (double)n : (double)(tokens ? tokens : 1);
    st->loss = total; st->clipfrac = clipped / cnt; st->ratio = ratios / cnt;
    st->kl = tokens ? kl / (double)tokens : 0;
  }
}

double lm_rl_value_loss(int64_t n, int64_t T, const int64_t *len, const float *v, const float *vold, const float *ret,
                        double cliprange_value, float *dv, double *clipfrac) {
  int64_t tokens = 0;
  for (int64_t i = 0; i < n; i++) tokens += len[i];
  double c = tokens ? (double)tokens : 1.0, total = 0, clipped = 0;
  for (int64_t i = 0; i < n; i++) {
    memset(dv + i * T, 0, (size_t)T * sizeof *dv);
    for (int64_t t = 0; t < len[i]; t++) {
      int64_t k = i * T + t;
      double lo = (double)vold[k] - cliprange_value, hi = (double)vold[k] + cliprange_value, x = v[k];
      double xc = x < lo ? lo : x > hi ? hi : x, R = ret[k];
      double l1 = (x - R) * (x - R), l2 = (xc - R) * (xc - R);
      if (l2 > l1) { total += l2; clipped += 1; dv[k] = 0; }   /* x outside the clip range: flat */
      else { total += l1; dv[k] = (float)(2 * (x - R) * 0.5 / c); }
    }
  }
  if (clipfrac) *clipfrac = clipped / c;
  return 0.5 * total / c;
}

double lm_rl_entropy(const float *z, int64_t V, double temperature) {
  double inv = temperature > 0 ? 1.0 / temperature : 1.0, mx = z[0] * inv, s = 0, sz = 0;
  for (int64_t v = 1; v < V; v++) mx = z[v] * inv > mx ? z[v] * inv : mx;
  for (int64_t v = 0; v < V; v++) {
    double e = exp(z[v] * inv - mx);
    s += e; sz += e * (z[v] * inv - mx);
  }
  return log(s) - sz / s;   /* logsumexp - sum p z, with the max taken out */
}

double lm_rl_adaptive_kl(double kl_coef, double kl, double target, double horizon, int64_t n_steps) {
  double e = kl / target - 1.0;
  e = e < -0.2 ? -0.2 : e > 0.2 ? 0.2 : e;
  return kl_coef * (1.0 + e * (double)n_steps / horizon);
}
