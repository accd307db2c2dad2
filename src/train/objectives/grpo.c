/* grpo.c — online RL on the one trainer: GRPO (DeepSeekMath; TRL's
 * GRPOTrainer, with its loss types grpo, dapo, dr_grpo), RLOO (TRL's
 * RLOOTrainer) and PPO (InstructGPT; TRL's PPOTrainer) as one objective, the
 * algorithm a row of a table (VARIANTS below: how advantages are made, the
 * policy loss's options, whether a value model trains, the metrics; rl.h,
 * docs/rl.md).
 *
 * An iteration over a rollout batch (B tasks x G completions per micro-batch it feeds):
 *   1. rollouts of the current policy (rollout.c, batched), seeded from the
 *      data cursor so that a resumed run samples what the first run would;
 *   2. rewards (rewards.c) of the decoded completions (the stop token left out),
 *      less the missing-EOS penalty;
 *   3. forwards of the rows prompt + completion: the per-token log-probs
 *      lp = log softmax(logits / temperature)[token] (TRL divides by the
 *      temperature too), the reference model's when a KL term is on, and PPO's
 *      values (the value model's output at the position before each token);
 *   4. advantages (the variant's) and the loss (rl_loss.c) against the old
 *      log-probs: GRPO and RLOO use a batch once, in the forward that gives
 *      them (TRL's num_iterations = 1: ratio 1, clipping only shapes the
 *      gradient); PPO makes several passes in mini-batches (see "the objective");
 *   5. d loss / d lp becomes d loss / d logits = g / temperature * (onehot - softmax)
 *      at the position before each completion token, through lm_batch.dout;
 *      PPO's value loss goes back through the value model's own dout.
 * Calculator results spliced into a completion (tool tokens) take no
 * gradient; they still count in the length normalisations. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "infer/chat_generate.h"
#include "model/heads.h"
#include "model/model.h"
#include "train/chat.h"
#include "train/posttrain_shared.h"
#include "train/rl.h"

/* ------------------------------------------------------------------ tasks */

void lm_rl_tasks_free(lm_rl_tasks *t) {
  for (int64_t i = 0; i < t->n; i++) { cJSON_Delete(t->rec[i]); free(t->text[i]); free(t->ids[i]); }
  free(t->rec); free(t->text); free(t->ids); free(t->len); free(t->line);
  memset(t, 0, sizeof *t);
}

static lm_status tasks_grow(lm_rl_tasks *t, int64_t cap) {
  cJSON **r = realloc(t->rec, (size_t)cap * sizeof *r);
  if (r) t->rec = r;
  char **x = realloc(t->text, (size_t)cap * sizeof *x);
  if (x) t->text = x;
  int32_t **d = realloc(t->ids, (size_t)cap * sizeof *d);
  if (d) t->ids = d;
  int64_t *l = realloc(t->len, (size_t)cap * sizeof *l);
  if (l) t->len = l;
  int64_t *ln = realloc(t->line, (size_t)cap * sizeof *ln);
  if (ln) t->line = ln;
  return r && x && d && l && ln ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
}

/* one record: its prompt rendered and tokenized */
static lm_status task_prompt(const cJSON *rec, const char *where, const lm_chat_config *cc, const lm_tokenizer *tok,
                             const char *cot, char **text, int32_t **ids, int64_t *n) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(rec, "prompt");
  if (!p) return lm_error(LM_ERR_FORMAT, "%s: no \"prompt\"", where);
  if (!cJSON_IsString(p) && !cJSON_IsArray(p))
    return lm_error(LM_ERR_FORMAT, "%s: \"prompt\" must be a string or a message list", where);
  cJSON *msgs = lm_chat_as_messages(p, "user");
  if (!msgs) return lm_error(LM_ERR_NOMEM, "out of memory");
  lm_status st = lm_chat_check_messages(msgs, where, "prompt");
  if (!st && cot && *cot) st = lm_chat_add_cot(msgs, cot);   /* joins the last user message */
  size_t len = 0;
  if (!st) st = lm_chat_generation_prompt(cc, msgs, text, &len);
  cJSON_Delete(msgs);
  if (st) return lm_error_prefix(st, "%s: ", where);
  uint32_t *u = NULL; size_t nu = 0;
  st = lm_tokenizer_encode(tok, *text, len, LM_ENCODE_SPECIAL, &u, &nu);
  if (st) { free(*text); *text = NULL; return st; }
  *ids = malloc((nu ? nu : 1) * sizeof **ids);
  if (!*ids) { free(u); free(*text); *text = NULL; return lm_error(LM_ERR_NOMEM, "out of memory"); }
  for (size_t i = 0; i < nu; i++) (*ids)[i] = (int32_t)u[i];
  free(u);
  *n = (int64_t)nu;
  return LM_OK;
}

lm_status lm_rl_tasks_read(lm_rl_tasks *t, const char *path, const lm_chat_config *cc, const lm_tokenizer *tok,
                           const char *cot, int64_t max_prompt, const lm_rewarder *rw) {
  memset(t, 0, sizeof *t);
  char *text; size_t len;
  lm_status st = lm_read_file(path, &text, &len);
  if (st) return st;
  int64_t cap = 0, lineno = 0;
  size_t at = 0, l;
  const char *p;
  while (!st && lm_next_line(text, len, &at, &lineno, &p, &l)) {
    char where[600];
    snprintf(where, sizeof where, "%s:%lld", path, (long long)lineno);
    cJSON *rec = cJSON_ParseWithLength(p, l);
    if (!cJSON_IsObject(rec)) { cJSON_Delete(rec); st = lm_error(LM_ERR_FORMAT, "%s: not a JSON object", where); break; }
    if (t->n == cap && (st = tasks_grow(t, cap = cap ? 2 * cap : 64))) { cJSON_Delete(rec); break; }
    char *pt = NULL; int32_t *ids = NULL; int64_t n = 0;
    st = task_prompt(rec, where, cc, tok, cot, &pt, &ids, &n);
    if (!st && rw) st = lm_rewarder_check(rw, rec, where);
    if (!st && n > max_prompt)
      st = lm_error(LM_ERR_RANGE, "%s: the prompt is %lld tokens, longer than the %lld that --max-length leaves after "
                    "--max-new-tokens", where, (long long)n, (long long)max_prompt);
    if (!st && n == 0) st = lm_error(LM_ERR_FORMAT, "%s: the prompt renders to no tokens", where);
    if (st) { cJSON_Delete(rec); free(pt); free(ids); break; }
    t->rec[t->n] = rec; t->text[t->n] = pt; t->ids[t->n] = ids; t->len[t->n] = n; t->line[t->n] = lineno;
    t->longest = n > t->longest ? n : t->longest;
    t->n++;
  }
  free(text);
  if (!st && t->n == 0) st = lm_error(LM_ERR_FORMAT, "%s: no tasks", path);
  if (st) lm_rl_tasks_free(t);
  return st;
}

lm_status lm_rl_tasks_split(lm_rl_tasks *t, float fraction, uint64_t seed, lm_rl_tasks *held) {
  memset(held, 0, sizeof *held);
  int64_t nh = (int64_t)(fraction * (double)t->n);
  if (nh <= 0) return LM_OK;
  if (nh >= t->n) return lm_error(LM_ERR_ARG, "holding out %g of %lld tasks leaves none to train on", (double)fraction, (long long)t->n);
  uint8_t *out = lm_held_out(t->n, nh, seed);
  lm_status st = out ? tasks_grow(held, nh) : lm_error(LM_ERR_NOMEM, "out of memory");
  if (st) { free(out); return st; }
  int64_t k = 0;
  for (int64_t i = 0; i < t->n; i++) {
    int h = out[i];
    lm_rl_tasks *d = h ? held : t;
    int64_t j = h ? held->n++ : k++;
    d->rec[j] = t->rec[i]; d->text[j] = t->text[i]; d->ids[j] = t->ids[i]; d->len[j] = t->len[i]; d->line[j] = t->line[i];
  }
  t->n = k;
  t->longest = held->longest = 0;
  for (int64_t i = 0; i < t->n; i++) t->longest = t->len[i] > t->longest ? t->len[i] : t->longest;
  for (int64_t i = 0; i < held->n; i++) held->longest = held->len[i] > held->longest ? held->len[i] : held->longest;
  free(out);
  return LM_OK;
}

/* ------------------------------------------------------------------ the objective
 *
 * One mechanism for the three algorithms. An iteration: a rollout batch is sampled and scored
 * (prepare), its advantages made by the algorithm's row of the table below, then it is used by
 * micro-batches of the buffered rows. GRPO and RLOO use each rollout batch once, in the
 * micro-batch that sampled it (old log-probs are that forward's, TRL's num_iterations = 1). PPO
 * samples B x grad_accum x mini_batches prompts, takes the old log-probs, the reference's and the
 * values in forwards of its own, and goes over the rows ppo_epochs times in mini-batches of
 * grad_accum micro-batches, shuffled anew each pass (TRL's b_inds); a trainer step is one
 * mini-batch, so an iteration is ppo_epochs x mini_batches steps and checkpoints fall between
 * iterations (the command keeps --steps and --save-every multiples of it). */

typedef struct grpo_obj grpo_obj;
typedef struct {
  const char *name;
  int min_G;                  /* completions per task at least (2: the group is the baseline) */
  int value;                  /* a value model, per-token advantages, a buffered rollout batch (PPO) */
  void (*advantages)(grpo_obj *o, int64_t n);   /* over the rollout batch's n rows: o->adv (and o->ret) */
  lm_rl_policy_opts (*policy)(const grpo_obj *o);
  int (*fields)(grpo_obj *o, char *buf, size_t n);
} rl_variant;

struct grpo_obj {
  lm_grpo_opts o;
  const rl_variant *v;
  lm_model *ref, *value;
  const lm_tokenizer *tok;
  const lm_rl_tasks *train, *eval;
  lm_rewarder *rw;
  lm_epochs order;
  lm_batch_decoder *dec;
  lm_rollouts roll;
  int64_t n, T, Tmax;           /* rows held (rollout batch, evaluation chunk), completion capacity, longest row */
  int64_t n_roll, n_mic;        /* rows of a rollout batch and of a micro-batch */
  int64_t micros, k;            /* micro-batches per iteration, and done in this one (k == micros: none pending) */
  int need_ref;
  double kl_coef;               /* PPO's, adapted when target_kl > 0 */
  /* the rollout batch (n rows) */
  int64_t *task;                /* (n) the task of each row */
  const int32_t **prompt; int64_t *plen;   /* (n) */
  float *score, *klsum;         /* (n) */
  float *old, *ref_lp, *vold, *adv, *ret;  /* (n,T); adv (n) for per-row variants */
  int64_t *perm;                /* (n_roll) the order of this pass's rows */
  /* a micro-batch (n_mic rows), in the order of rows */
  int64_t *mlen;
  float *lp, *mold, *mref, *madv, *mvold, *mret, *mv, *dlp, *dv;   /* (n_mic,T) */
  int32_t *ids;                 /* (n,Tmax) */
  float *dout, *vdout;          /* (n_mic*Tmax, V), (n_mic*Tmax) */
  double *psum;                 /* (n_mic*Tmax) */
  lm_reward_item *items;
  char **texts;
  /* sums since the last step_fields */
  double s_reward, s_reward2, s_kl, s_clip, s_ent, s_len, s_stop; int64_t s_rows, s_micro;
  double s_pg, s_vf, s_vclip, s_approx;
  /* PPO: the last rollout batch's figures (TRL's objective/...) */
  double r_kl, r_score, r_nonscore, r_coef, r_len, r_stop;
  double val_reward; int64_t val_n;
};

static void grpo_fail(grpo_obj *o) {
  if (o->o.err) snprintf(o->o.err, 256, "%s", lm_last_error());
}

/* the rows of a rollout batch (or an evaluation chunk): the prompts of tasks[rows / G] */
static void set_rows(grpo_obj *o, const lm_rl_tasks *t, int64_t n, int G) {
  for (int64_t i = 0; i < n; i++) {
    int64_t k = o->task[i / G];
    o->prompt[i] = t->ids[k]; o->plen[i] = t->len[k];
  }
}

/* decodes the completions (stop token left out) and scores them */
static lm_status score_rows(grpo_obj *o, const lm_rl_tasks *t, int64_t n, int G) {
  lm_rollouts *r = &o->roll;
  lm_status st = LM_OK;
  for (int64_t i = 0; i < n && !st; i++) {
    int64_t k = o->task[i / G], L = r->len[i] - (r->stopped[i] ? 1 : 0);
    uint32_t *u = malloc((size_t)(L > 0 ? L : 1) * sizeof *u);
    if (!u) { st = lm_error(LM_ERR_NOMEM, "out of memory"); break; }
    for (int64_t j = 0; j < L; j++) u[j] = (uint32_t)r->ids[i * r->T + j];
    size_t tl;
    free(o->texts[i]); o->texts[i] = NULL;
    st = lm_tokenizer_decode(o->tok, u, (size_t)L, &o->texts[i], &tl);
    free(u);
    /* the row's tokens for a reward model: prompt + completion (with the stop token, as 'lmkit reward' scores) */
    int64_t pl = t->len[k], n_ids = pl + r->len[i];
    for (int64_t j = 0; j < pl; j++) o->ids[i * o->Tmax + j] = t->ids[k][j];
    for (int64_t j = 0; j < r->len[i]; j++) o->ids[i * o->Tmax + pl + j] = r->ids[i * r->T + j];
    o->items[i] = (lm_reward_item){.prompt = t->text[k], .record = t->rec[k], .completion = o->texts[i],
                                   .ids = o->ids + i * o->Tmax, .n_ids = n_ids};
  }
  if (!st) st = lm_rewarder_score(o->rw, o->items, n, o->score);
  return st;
}

/* Packs the rollout rows rows[0..nk) (prompt + completion) into o->ids at one row length Tb,
 * which it returns. */
static int64_t pack_rows(grpo_obj *o, const int64_t *rows, int64_t nk) {
  lm_rollouts *r = &o->roll;
  int64_t Tb = 1;
  for (int64_t k = 0; k < nk; k++) Tb = o->plen[rows[k]] + r->len[rows[k]] > Tb ? o->plen[rows[k]] + r->len[rows[k]] : Tb;
  int32_t pad = o->prompt[rows[0]][0];
  for (int64_t k = 0; k < nk; k++) {
    int64_t i = rows[k];
    int32_t *row = o->ids + k * Tb;
    for (int64_t j = 0; j < o->plen[i]; j++) row[j] = o->prompt[i][j];
    for (int64_t j = 0; j < r->len[i]; j++) row[o->plen[i] + j] = r->ids[i * r->T + j];
    for (int64_t j = o->plen[i] + r->len[i]; j < Tb; j++) row[j] = pad;
  }
  return Tb;
}

/* Forward of the packed rows through model; lp (nk,T) of the completion tokens under
 * softmax(logits / temperature), 0 at tool tokens; with keep, exp(z/temp - max) is left in o->dout
 * and its sum in o->psum for the gradient, and *ent gets the summed entropy. Returns 0, or -1. */
static int row_logps(grpo_obj *o, lm_model *model, const int64_t *rows, int64_t nk, int64_t Tb, float *lp, int keep,
                     double *ent) {
  lm_rollouts *r = &o->roll;
  int64_t V = model->cfg.vocab_size;
  lm_batch b = {.ids = o->ids, .B = nk, .T = Tb};
  lm_forward(model, &b, NULL, NULL);
  if (!model->ok) return -1;
  const float *logits = lm_model_logits(model);
  double inv = 1.0 / o->o.ro.temperature, e_sum = 0;
  if (keep) memset(o->dout, 0, (size_t)(nk * Tb * V) * sizeof *o->dout);
#pragma omp parallel for schedule(static) reduction(+ : e_sum)
  for (int64_t k = 0; k < nk; k++) {
    int64_t i = rows[k];
    for (int64_t t = 0; t < r->len[i]; t++) {
      int64_t pos = k * Tb + o->plen[i] + t - 1;   /* the logits that predicted token t */
      if (r->tool[i * r->T + t]) { lp[k * o->T + t] = 0; continue; }   /* tool tokens: no ratio, no KL, no gradient */
      const float *z = logits + pos * V;
      double mx = z[0] * inv, s = 0, sz = 0;
      for (int64_t v = 1; v < V; v++) mx = z[v] * inv > mx ? z[v] * inv : mx;
      float *e = keep ? o->dout + pos * V : NULL;
      for (int64_t v = 0; v < V; v++) {
        double x = exp(z[v] * inv - mx);
        s += x; sz += x * (z[v] * inv - mx);
        if (e) e[v] = (float)x;
      }
      int32_t y = r->ids[i * r->T + t];
      lp[k * o->T + t] = (float)(z[y] * inv - mx - log(s));
      if (keep) { o->psum[pos] = s; e_sum += log(s) - sz / s; }
    }
  }
  if (ent) *ent = e_sum;
  return 0;
}

/* The value model's forward of the packed rows: v (nk,T), the value of each completion token at the
 * position that predicts it (TRL: full_value[:, context_length - 1 : -1]). Returns 0, or -1. */
static int row_values(grpo_obj *o, const int64_t *rows, int64_t nk, int64_t Tb, float *v) {
  lm_batch b = {.ids = o->ids, .B = nk, .T = Tb};
  lm_forward(o->value, &b, NULL, NULL);
  if (!o->value->ok) return -1;
  const float *out = lm_model_logits(o->value);   /* (nk*Tb, 1) */
  for (int64_t k = 0; k < nk; k++)
    for (int64_t t = 0; t < o->roll.len[rows[k]]; t++) v[k * o->T + t] = out[k * Tb + o->plen[rows[k]] + t - 1];
  return 0;
}

/* row-major (nk,T) micro-batch rows <-> rollout-batch rows */
static void scatter(const grpo_obj *o, const int64_t *rows, int64_t nk, const float *src, float *dst) {
  for (int64_t k = 0; k < nk; k++) memcpy(dst + rows[k] * o->T, src + k * o->T, (size_t)o->T * sizeof *dst);
}
static void gather(const grpo_obj *o, const int64_t *rows, int64_t nk, const float *src, float *dst) {
  for (int64_t k = 0; k < nk; k++) memcpy(dst + k * o->T, src + rows[k] * o->T, (size_t)o->T * sizeof *dst);
}

static uint64_t mix(uint64_t x) {   /* splitmix64's finaliser: cursor -> sampling seed */
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* ---- the algorithms' advantages and policy-loss options */

static void grpo_advantages(grpo_obj *o, int64_t n) { lm_rl_group_advantages(o->score, n, o->o.G, o->o.scale, o->adv); }

static void rloo_advantages(grpo_obj *o, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    for (int64_t t = 0; t < o->roll.len[i] && o->need_ref; t++) s += lm_kl_k1(o->old[i * o->T + t], o->ref_lp[i * o->T + t]);
    o->klsum[i] = (float)s;
  }
  lm_rl_rloo_advantages(o->score, o->klsum, o->o.kl_coef, n, o->o.G, o->adv, NULL);
}

/* PPO (TRL PPOTrainer.train): rewards -kl_coef k1 per token + score at the last, GAE over the old
 * values, returns, whitened advantages; then the adaptive controller moves kl_coef for the next
 * batch from this one's mean summed KL (Ziegler et al.; TRL's AdaptiveKLController). */
static void ppo_advantages(grpo_obj *o, int64_t n) {
  const int64_t *len = o->roll.len;
  /* the rewards go to ret: GAE reads each r_t before it writes R_t over it */
  lm_rl_kl_rewards(n, o->T, len, o->old, o->need_ref ? o->ref_lp : o->old, o->score, o->kl_coef, o->ret);
  double kl = 0, nonscore = 0, score = 0, tokens = 0, stop = 0;
  for (int64_t i = 0; i < n; i++) {
    for (int64_t t = 0; t < len[i] && o->need_ref; t++) kl += lm_kl_k1(o->old[i * o->T + t], o->ref_lp[i * o->T + t]);
    score += o->score[i]; tokens += (double)len[i]; stop += o->roll.stopped[i];
  }
  nonscore = 0.0 - o->kl_coef * kl;   /* 0 - x: +0 rather than -0 without a KL */
  o->r_kl = kl / (double)n; o->r_nonscore = nonscore / (double)n; o->r_score = score / (double)n;
  o->r_coef = o->kl_coef; o->r_len = tokens / (double)n; o->r_stop = stop / (double)n;
  /* GAE reads the rewards from ret and writes the returns over them, row by row from the end */
  lm_rl_gae(n, o->T, len, o->ret, o->vold, o->o.gamma, o->o.lam, o->adv, o->ret);
  lm_rl_whiten(n, o->T, len, o->adv);
  if (o->o.target_kl > 0) o->kl_coef = lm_rl_adaptive_kl(o->kl_coef, o->r_kl, o->o.target_kl, o->o.kl_horizon, n);
}

static lm_rl_policy_opts grpo_policy(const grpo_obj *o) {
  return (lm_rl_policy_opts){.norm = o->o.loss, .adv_per_row = 1, .clip_low = o->o.clip_low, .clip_high = o->o.clip_high,
                             .beta = o->need_ref ? o->o.beta : 0, .denom = o->o.loss == LM_RL_NORM_CONST ? (double)o->T : 0};
}

static lm_rl_policy_opts rloo_policy(const grpo_obj *o) {
  return (lm_rl_policy_opts){.norm = LM_RL_NORM_ROWS, .seq_ratio = 1, .adv_per_row = 1, .clip_low = o->o.clip_low,
                             .clip_high = o->o.clip_high};
}

static lm_rl_policy_opts ppo_policy(const grpo_obj *o) {   /* TRL: masked_mean of the clipped surrogate */
  return (lm_rl_policy_opts){.norm = LM_RL_NORM_TOKEN, .clip_low = o->o.clip_low, .clip_high = o->o.clip_high};
}

static int grpo_fields(grpo_obj *o, char *buf, size_t n) {
  if (!o->s_rows) return 0;
  double R = (double)o->s_rows, M = (double)o->s_micro, mean = o->s_reward / R;
  double var = o->s_reward2 / R - mean * mean;
  return snprintf(buf, n, "\"reward\": %.6g, \"reward_std\": %.6g, \"kl\": %.6g, \"clipfrac\": %.4g, \"entropy\": %.6g, "
                  "\"completion_len\": %.4g, \"stopped\": %.4g", mean, sqrt(var > 0 ? var : 0), o->s_kl / M,
                  o->s_clip / M, o->s_ent / M, o->s_len / R, o->s_stop / R);
}

static int ppo_fields(grpo_obj *o, char *buf, size_t n) {
  if (!o->s_micro) return 0;
  double M = (double)o->s_micro;
  return snprintf(buf, n, "\"objective/kl\": %.6g, \"objective/scores\": %.6g, \"objective/rlhf_reward\": %.6g, "
                  "\"objective/non_score_reward\": %.6g, \"objective/kl_coef\": %.6g, \"policy/clipfrac\": %.4g, "
                  "\"policy/entropy\": %.6g, \"policy/approxkl\": %.6g, \"loss/policy\": %.6g, \"loss/value\": %.6g, "
                  "\"val/clipfrac\": %.4g, \"completion_len\": %.4g, \"stopped\": %.4g",
                  o->r_kl, o->r_score, o->r_score + o->r_nonscore, o->r_nonscore, o->r_coef, o->s_clip / M, o->s_ent / M,
                  o->s_approx / M, o->s_pg / M, o->s_vf / M, o->s_vclip / M, o->r_len, o->r_stop);
}

static const rl_variant VARIANTS[] = {
  [LM_RL_ALGO_GRPO] = {"grpo", 2, 0, grpo_advantages, grpo_policy, grpo_fields},
  [LM_RL_ALGO_RLOO] = {"rloo", 2, 0, rloo_advantages, rloo_policy, grpo_fields},
  [LM_RL_ALGO_PPO] = {"ppo", 1, 1, ppo_advantages, ppo_policy, ppo_fields},
};

/* The next rollout batch: B tasks (x G completions) per micro-batch it feeds, sampled (or the fixed
 * rows), scored; for buffered variants also the old log-probs, the reference's, the values and the
 * advantages, in forwards of n_mic rows. */
static lm_status prepare(grpo_obj *o, lm_model *m) {
  int G = o->o.G;
  int64_t n = o->n_roll;
  lm_rollouts *r = &o->roll;
  lm_rollout_opts ro = o->o.ro;
  ro.seed = mix(o->o.ro.seed ^ mix((uint64_t)o->order.epoch * 0x100000001ULL + (uint64_t)o->order.index));
  for (int64_t b = 0; b < n / G; b++) o->task[b] = o->o.fixed ? b % o->train->n : lm_epochs_next(&o->order);
  set_rows(o, o->train, n, G);
  lm_status st = LM_OK;
  if (o->o.fixed) {
    const lm_rollouts *f = o->o.fixed;
    for (int64_t i = 0; i < n; i++) {
      r->len[i] = f->len[i]; r->stopped[i] = f->stopped[i]; o->score[i] = o->o.fixed_score[i];
      memcpy(r->ids + i * r->T, f->ids + i * f->T, (size_t)f->len[i] * sizeof *r->ids);
      memcpy(r->tool + i * r->T, f->tool + i * f->T, (size_t)f->len[i]);
    }
  } else {
    st = lm_rollout(o->dec, m, o->tok, o->prompt, o->plen, n, &ro, r);
    if (!st) st = score_rows(o, o->train, n, G);
    if (st) return st;
  }
  for (int64_t i = 0; i < n; i++)   /* TRL: scores[~contains_eos_token] -= missing_eos_penalty */
    if (!r->stopped[i]) o->score[i] = (float)((double)o->score[i] - o->o.missing_eos_penalty);
  o->k = 0;
  if (o->micros == 1) return LM_OK;   /* used once: the micro-batch's own forward gives the old log-probs */
  for (int64_t c = 0; c < n; c += o->n_mic) {
    int64_t nk = n - c < o->n_mic ? n - c : o->n_mic, *rows = o->perm;
    for (int64_t k = 0; k < nk; k++) rows[k] = c + k;
    int64_t Tb = pack_rows(o, rows, nk);
    if (o->need_ref) { if (row_logps(o, o->ref, rows, nk, Tb, o->mref, 0, NULL)) return LM_ERR_ARG; scatter(o, rows, nk, o->mref, o->ref_lp); }
    if (row_logps(o, m, rows, nk, Tb, o->lp, 0, NULL)) return LM_ERR_ARG;
    scatter(o, rows, nk, o->lp, o->old);
    if (o->value) { if (row_values(o, rows, nk, Tb, o->mv)) return LM_ERR_ARG; scatter(o, rows, nk, o->mv, o->vold); }
  }
  o->v->advantages(o, n);
  return LM_OK;
}

static float grpo_micro(void *self, lm_model *m) {
  grpo_obj *o = self;
  const rl_variant *var = o->v;
  int64_t V = m->cfg.vocab_size, nk = o->n_mic, T = o->T;
  lm_rollouts *r = &o->roll;
  if (o->k == o->micros && prepare(o, m)) { grpo_fail(o); return NAN; }
  /* this micro-batch's rows: a fresh shuffle at the start of each pass over the rollout batch */
  int64_t per_pass = o->n_roll / nk, in_pass = o->k % per_pass;
  if (in_pass == 0) {
    for (int64_t i = 0; i < o->n_roll; i++) o->perm[i] = i;
    if (o->micros > 1) {
      lm_rng g;
      lm_rng_seed(&g, mix(o->o.ro.seed ^ mix((uint64_t)o->order.epoch * 0x100000001ULL + (uint64_t)o->order.index) ^
                          (uint64_t)(o->k / per_pass + 1)));
      for (int64_t i = o->n_roll - 1; i > 0; i--) {
        int64_t j = (int64_t)lm_rng_below(&g, (uint32_t)(i + 1)), x = o->perm[i];
        o->perm[i] = o->perm[j]; o->perm[j] = x;
      }
    }
  }
  const int64_t *rows = o->perm + in_pass * nk;
  int single = o->micros == 1;
  int64_t Tb = pack_rows(o, rows, nk);
  double ent = 0;
  if (single && o->need_ref) {
    if (row_logps(o, o->ref, rows, nk, Tb, o->mref, 0, NULL)) { grpo_fail(o); return NAN; }
    scatter(o, rows, nk, o->mref, o->ref_lp);
  }
  if (row_logps(o, m, rows, nk, Tb, o->lp, 1, &ent)) { grpo_fail(o); return NAN; }
  if (o->value && row_values(o, rows, nk, Tb, o->mv)) { grpo_fail(o); return NAN; }
  if (single) {   /* old = the current policy (and values), detached */
    scatter(o, rows, nk, o->lp, o->old);
    if (o->value) scatter(o, rows, nk, o->mv, o->vold);
    var->advantages(o, o->n_roll);
  }
  for (int64_t k = 0; k < nk; k++) o->mlen[k] = r->len[rows[k]];
  gather(o, rows, nk, o->old, o->mold);
  if (o->need_ref) gather(o, rows, nk, o->ref_lp, o->mref);
  if (var->value) { gather(o, rows, nk, o->adv, o->madv); gather(o, rows, nk, o->vold, o->mvold); gather(o, rows, nk, o->ret, o->mret); }
  else for (int64_t k = 0; k < nk; k++) o->madv[k] = o->adv[rows[k]];
  lm_rl_policy_opts po = var->policy(o);
  lm_rl_policy_stats ps;
  lm_rl_policy_loss(&po, nk, T, o->mlen, o->lp, o->mold, o->need_ref ? o->mref : NULL, o->madv, o->dlp, &ps);
  double loss = ps.loss;
  /* d loss / d logits at the position before each completion token */
  double inv = 1.0 / o->o.ro.temperature;
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < nk; k++) {
    int64_t i = rows[k];
    for (int64_t t = 0; t < r->len[i]; t++) {
      int64_t pos = k * Tb + o->plen[i] + t - 1;
      float *dr = o->dout + pos * V;
      double g = r->tool[i * r->T + t] ? 0 : o->dlp[k * T + t] * inv;
      if (g == 0) { memset(dr, 0, (size_t)V * sizeof *dr); continue; }
      float sc = (float)(-g / o->psum[pos]);
      for (int64_t v = 0; v < V; v++) dr[v] *= sc;
      int32_t y = r->ids[i * r->T + t];
      dr[y] = (float)((double)dr[y] + g);
    }
  }
  lm_batch b = {.ids = o->ids, .B = nk, .T = Tb, .dout = o->dout};
  lm_backward(m, &b);
  /* the value model: vf_coef times the clipped value loss (TRL: loss = pg_loss + vf_coef * vf_loss) */
  int64_t tokens = 0;
  double approx = 0;
  for (int64_t k = 0; k < nk; k++)
    for (int64_t t = 0; t < o->mlen[k]; t++, tokens++) {
      double d = (double)o->lp[k * T + t] - o->mold[k * T + t];
      approx += 0.5 * d * d;   /* TRL's approxkl: 0.5 (log ratio)^2 */
    }
  if (o->value) {
    double vclip, vf = lm_rl_value_loss(nk, T, o->mlen, o->mv, o->mvold, o->mret, o->o.cliprange_value, o->dv, &vclip);
    memset(o->vdout, 0, (size_t)(nk * Tb) * sizeof *o->vdout);
    for (int64_t k = 0; k < nk; k++)
      for (int64_t t = 0; t < o->mlen[k]; t++)
        o->vdout[k * Tb + o->plen[rows[k]] + t - 1] = (float)(o->o.vf_coef * o->dv[k * T + t]);
    lm_batch vb = {.ids = o->ids, .B = nk, .T = Tb, .dout = o->vdout};
    lm_backward(o->value, &vb);
    loss += o->o.vf_coef * vf;
    o->s_pg += ps.loss; o->s_vf += vf; o->s_vclip += vclip;
  }
  /* statistics */
  if (!var->value)
    for (int64_t k = 0; k < nk; k++) {
      int64_t i = rows[k];
      o->s_reward += o->score[i]; o->s_reward2 += (double)o->score[i] * o->score[i];
      o->s_len += (double)r->len[i]; o->s_stop += r->stopped[i];
    }
  o->s_rows += nk; o->s_micro++;
  o->s_kl += ps.kl; o->s_clip += ps.clipfrac; o->s_ent += tokens ? ent / (double)tokens : 0;
  o->s_approx += tokens ? approx / (double)tokens : 0;
  o->k++;
  return (float)loss;
}

static double grpo_evaluate(void *self, lm_model *m, int64_t max_batches) {
  grpo_obj *o = self;
  const lm_rl_tasks *t = o->eval;
  if (!t || t->n == 0) return NAN;
  if (o->k != o->micros) {   /* the rollout batch is still in use (the command keeps evaluations between iterations) */
    lm_error(LM_ERR_ARG, "evaluation inside an RL iteration");
    grpo_fail(o);
    return NAN;
  }
  lm_rollout_opts ro = o->o.ro;
  ro.temperature = 0;   /* greedy: one completion per task */
  double sum = 0;
  int64_t done = 0, batches = 0;
  for (int64_t i0 = 0; i0 < t->n && (max_batches <= 0 || batches < max_batches); i0 += o->n, batches++) {
    int64_t nb = t->n - i0 < o->n ? t->n - i0 : o->n;
    for (int64_t i = 0; i < nb; i++) o->task[i] = i0 + i;
    set_rows(o, t, nb, 1);
    lm_status st = lm_rollout(o->dec, m, o->tok, o->prompt, o->plen, nb, &ro, &o->roll);
    if (!st) st = score_rows(o, t, nb, 1);
    if (st) { grpo_fail(o); return NAN; }
    for (int64_t i = 0; i < nb; i++) sum += o->score[i];
    done += nb;
  }
  o->val_reward = sum / (double)done; o->val_n = done;
  return -o->val_reward;
}

static int grpo_eval_fields(void *self, char *buf, size_t n) {
  grpo_obj *o = self;
  if (!o->val_n) return 0;
  int k = snprintf(buf, n, "\"val_reward\": %.6g, \"val_tasks\": %lld", o->val_reward, (long long)o->val_n);
  return k > 0 && (size_t)k < n ? k : 0;
}

static int grpo_step_fields(void *self, char *buf, size_t n) {
  grpo_obj *o = self;
  int k = o->v->fields(o, buf, n);
  o->s_reward = o->s_reward2 = o->s_kl = o->s_clip = o->s_ent = o->s_len = o->s_stop = 0;
  o->s_pg = o->s_vf = o->s_vclip = o->s_approx = 0;
  o->s_rows = o->s_micro = 0;
  return k > 0 && (size_t)k < n ? k : 0;
}

static int ppo_state_save(void *self, char *buf, size_t n) {
  grpo_obj *o = self;
  int k = snprintf(buf, n, "{\"kl_coef\": %.17g}", o->kl_coef);
  return k > 0 && (size_t)k < n ? k : 0;
}

static lm_status ppo_state_restore(void *self, const cJSON *state) {
  grpo_obj *o = self;
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(state, "kl_coef");
  if (!cJSON_IsNumber(c)) return lm_error(LM_ERR_FORMAT, "trainer_state.json: objective_state has no kl_coef");
  o->kl_coef = c->valuedouble;
  return LM_OK;
}

static void grpo_cursor(void *self, int64_t *epoch, int64_t *index) {
  grpo_obj *o = self;
  *epoch = o->order.epoch; *index = o->order.index;
}

static void grpo_free(void *self) {
  grpo_obj *o = self;
  lm_epochs_free(&o->order);
  lm_batch_decoder_free(o->dec);
  lm_rollouts_free(&o->roll);
  if (o->texts) for (int64_t i = 0; i < o->n; i++) free(o->texts[i]);
  free(o->texts); free(o->items); free(o->task); free(o->prompt); free(o->plen); free(o->score); free(o->klsum);
  free(o->old); free(o->ref_lp); free(o->vold); free(o->adv); free(o->ret); free(o->perm); free(o->mlen);
  free(o->lp); free(o->mold); free(o->mref); free(o->madv); free(o->mvold); free(o->mret); free(o->mv); free(o->dlp);
  free(o->dv); free(o->ids); lm_free(o->dout); free(o->vdout); free(o->psum);
  free(o);
}

lm_status lm_objective_grpo(lm_objective *obj, lm_model *m, lm_model *ref, const lm_tokenizer *tok,
                            const lm_rl_tasks *train, const lm_rl_tasks *eval, lm_rewarder *rw, const lm_grpo_opts *go,
                            const int64_t *cursor) {
  memset(obj, 0, sizeof *obj);
  if (go->algo < 0 || go->algo >= (int)(sizeof VARIANTS / sizeof *VARIANTS)) return lm_error(LM_ERR_ARG, "unknown RL algorithm %d", go->algo);
  const rl_variant *var = &VARIANTS[go->algo];
  if (m->cfg.head != LM_HEAD_LM || !m->cfg.causal)
    return lm_error(LM_ERR_ARG, "RL needs a causal decoder with an LM head; this is a %s model with a %s head",
                    lm_arch_name(m->cfg.arch), lm_head_name(m->cfg.head));
  if (go->G < var->min_G)
    return lm_error(LM_ERR_ARG, "%s: --generations must be at least %d (the group is the baseline)", var->name, var->min_G);
  if (go->B < 1 || go->ro.max_new < 1) return lm_error(LM_ERR_ARG, "batch and max new tokens must be positive");
  if (!(go->ro.temperature > 0)) return lm_error(LM_ERR_ARG, "RL samples: --temperature must be above 0");
  if ((go->beta != 0 || go->kl_coef != 0 || go->target_kl > 0) && !ref) return lm_error(LM_ERR_ARG, "the KL term needs the reference model");
  lm_model *value = var->value ? go->value : NULL;
  if (var->value) {
    if (!value || value->cfg.head != LM_HEAD_TOKENS || value->cfg.num_labels != 1)
      return lm_error(LM_ERR_ARG, "%s needs a value model with a tokens head of one label", var->name);
    if (value->cfg.vocab_size < m->cfg.vocab_size || value->cfg.n_positions < m->cfg.n_positions)
      return lm_error(LM_ERR_ARG, "the value model has %lld ids and %lld positions, fewer than the policy's %lld and %lld",
                      (long long)value->cfg.vocab_size, (long long)value->cfg.n_positions, (long long)m->cfg.vocab_size,
                      (long long)m->cfg.n_positions);
    if (go->ppo_epochs < 1 || go->mini_batches < 1 || go->grad_accum < 1)
      return lm_error(LM_ERR_ARG, "PPO epochs, mini-batches and gradient accumulation must be positive");
    if (go->target_kl > 0 && !(go->kl_horizon > 0)) return lm_error(LM_ERR_ARG, "--kl-horizon must be positive");
  }
  if (go->fixed && !go->fixed_score) return lm_error(LM_ERR_ARG, "fixed rollouts need fixed scores");
  int64_t longest = train->longest > (eval ? eval->longest : 0) ? train->longest : eval->longest;
  int64_t Tmax = longest + go->ro.max_new;
  if (Tmax > m->cfg.n_positions)
    return lm_error(LM_ERR_RANGE, "a prompt of %lld tokens + %lld new tokens is longer than the model's %lld positions",
                    (long long)longest, (long long)go->ro.max_new, (long long)m->cfg.n_positions);
  grpo_obj *o = calloc(1, sizeof *o);
  if (!o) return lm_error(LM_ERR_NOMEM, "out of memory");
  o->o = *go; o->v = var; o->ref = ref; o->value = value; o->tok = tok; o->train = train; o->eval = eval; o->rw = rw;
  o->need_ref = ref && (go->beta != 0 || go->kl_coef != 0 || go->target_kl > 0);
  o->kl_coef = go->kl_coef;
  o->n_mic = go->B * go->G;
  o->micros = var->value ? (int64_t)go->ppo_epochs * go->mini_batches * go->grad_accum : 1;
  o->n_roll = var->value ? o->n_mic * go->mini_batches * go->grad_accum : o->n_mic;
  o->k = o->micros;   /* nothing pending: the first micro-batch samples */
  int64_t n = o->n_roll, nm = o->n_mic, T = go->ro.max_new, V = m->cfg.vocab_size;
  if (eval && eval->n && n < 8) n = 8;   /* evaluation chunks: at least 8 greedy rows at a time */
  if (go->fixed && go->fixed->n < o->n_roll) { free(o); return lm_error(LM_ERR_ARG, "fewer fixed rollouts than a rollout batch"); }
  o->n = n; o->T = T; o->Tmax = Tmax;
  lm_status st = lm_rollouts_alloc(&o->roll, n, T);
  size_t NT = (size_t)(n * T), MT = (size_t)(nm * T);
  o->task = malloc((size_t)n * sizeof *o->task); o->prompt = malloc((size_t)n * sizeof *o->prompt);
  o->plen = malloc((size_t)n * sizeof *o->plen); o->score = malloc((size_t)n * sizeof *o->score);
  o->klsum = malloc((size_t)n * sizeof *o->klsum);
  o->old = calloc(NT, sizeof *o->old); o->ref_lp = calloc(NT, sizeof *o->ref_lp); o->vold = calloc(NT, sizeof *o->vold);
  o->adv = calloc(NT, sizeof *o->adv); o->ret = calloc(NT, sizeof *o->ret); o->perm = calloc((size_t)n, sizeof *o->perm);
  o->mlen = calloc((size_t)nm, sizeof *o->mlen);
  o->lp = calloc(MT, sizeof *o->lp); o->mold = calloc(MT, sizeof *o->mold); o->mref = calloc(MT, sizeof *o->mref);
  o->madv = calloc(MT, sizeof *o->madv); o->mvold = calloc(MT, sizeof *o->mvold); o->mret = calloc(MT, sizeof *o->mret);
  o->mv = calloc(MT, sizeof *o->mv); o->dlp = calloc(MT, sizeof *o->dlp); o->dv = calloc(MT, sizeof *o->dv);
  o->ids = calloc((size_t)(n * Tmax), sizeof *o->ids); o->psum = calloc((size_t)(nm * Tmax), sizeof *o->psum);
  o->dout = lm_alloc((size_t)(nm * Tmax * V) * sizeof *o->dout); o->vdout = calloc((size_t)(nm * Tmax), sizeof *o->vdout);
  o->items = calloc((size_t)n, sizeof *o->items); o->texts = calloc((size_t)n, sizeof *o->texts);
  if (!st && (!o->task || !o->prompt || !o->plen || !o->score || !o->klsum || !o->old || !o->ref_lp || !o->vold ||
              !o->adv || !o->ret || !o->perm || !o->mlen || !o->lp || !o->mold || !o->mref || !o->madv || !o->mvold ||
              !o->mret || !o->mv || !o->dlp || !o->dv || !o->ids || !o->psum || !o->dout || !o->vdout || !o->items ||
              !o->texts))
    st = lm_error(LM_ERR_NOMEM, "out of memory for %lld rollouts of up to %lld tokens", (long long)n, (long long)Tmax);
  if (!st) st = lm_batch_decoder_init(&o->dec, m, (int)n, Tmax);
  if (!st) st = lm_epochs_init(&o->order, train->n, go->seed, 0x6270ULL, cursor);
  if (!st) st = lm_model_reserve(m, nm, Tmax, 1);
  if (!st && ref) st = lm_model_reserve(ref, nm, Tmax, 0);
  if (!st && value) st = lm_model_reserve(value, nm, Tmax, 1);
  if (st) { grpo_free(o); return st; }
  if (var->value) m->dropout_off = value->dropout_off = 1;   /* TRL's PPO disables dropout: old and new log-probs alike */
  *obj = (lm_objective){.self = o, .micro = grpo_micro, .evaluate = grpo_evaluate, .cursor = grpo_cursor, .free = grpo_free,
                        .eval_fields = grpo_eval_fields, .step_fields = grpo_step_fields};
  if (var->value)
    obj->aux = value, obj->aux_name = "value", obj->state_save = ppo_state_save, obj->state_restore = ppo_state_restore;
  return LM_OK;
}
