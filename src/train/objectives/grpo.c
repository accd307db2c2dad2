/* grpo.c — online RL on the one trainer: GRPO (DeepSeekMath; TRL's
 * GRPOTrainer, with its loss types grpo, dapo, dr_grpo) and RLOO (TRL's
 * RLOOTrainer) as one objective, the algorithm a row of a table of choices
 * (the advantage and the policy loss's options; rl.h, docs/rl.md).
 *
 * A micro-batch is B tasks x G completions:
 *   1. rollouts of the current policy (rollout.c, batched), seeded from the
 *      data cursor so that a resumed run samples what the first run would;
 *   2. rewards (rewards.c) of the decoded completions (the stop token left out);
 *   3. one forward of the n = B*G rows prompt + completion: the per-token
 *      log-probs lp = log softmax(logits / temperature)[token] (TRL divides by
 *      the temperature too), and the reference model's when beta > 0 (GRPO's
 *      k3) or kl_coef > 0 (RLOO's KL-shaped reward);
 *   4. advantages and the loss (rl_loss.c) with old = lp detached: one
 *      optimisation step per rollout batch (TRL's num_iterations = 1), so the
 *      ratio is 1 and clipping only matters for its gradient's form;
 *   5. d loss / d lp becomes d loss / d logits = g / temperature * (onehot - softmax)
 *      at the position before each completion token, through lm_batch.dout.
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
  if (!st && cot && *cot) {   /* the chain-of-thought instruction joins the last user message */
    cJSON *last = NULL, *m;
    cJSON_ArrayForEach(m, msgs)
      if (!strcmp(cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring, "user")) last = m;
    if (!last) st = lm_error(LM_ERR_FORMAT, "%s: --cot needs a user message in the prompt", where);
    else {
      const char *c = cJSON_GetObjectItemCaseSensitive(last, "content")->valuestring;
      size_t k = strlen(c) + strlen(cot) + 3;
      char *s = malloc(k);
      if (!s) st = lm_error(LM_ERR_NOMEM, "out of memory");
      else {
        snprintf(s, k, "%s\n\n%s", c, cot);
        cJSON_ReplaceItemInObjectCaseSensitive(last, "content", cJSON_CreateString(s));
        free(s);
      }
    }
  }
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
  for (size_t b = 0; b < len && !st;) {
    size_t e = b;
    while (e < len && text[e] != '\n') e++;
    lineno++;
    char where[600];
    snprintf(where, sizeof where, "%s:%lld", path, (long long)lineno);
    size_t s = b;
    while (s < e && (text[s] == ' ' || text[s] == '\t' || text[s] == '\r')) s++;
    if (s < e) {
      cJSON *rec = cJSON_ParseWithLength(text + s, e - s);
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
    b = e + 1;
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

/* ------------------------------------------------------------------ the objective */

typedef struct {
  lm_grpo_opts o;
  lm_model *ref;
  const lm_tokenizer *tok;
  const lm_rl_tasks *train, *eval;
  lm_rewarder *rw;
  lm_epochs order;
  lm_batch_decoder *dec;
  lm_rollouts roll;
  int64_t n, T, Tmax;           /* rows, completion capacity, longest row */
  int64_t *task;                /* (n) the task of each row */
  const int32_t **prompt; int64_t *plen;   /* (n) */
  float *score, *adv, *klsum;   /* (n) */
  float *lp, *old, *ref_lp, *dlp;   /* (n,T) */
  int64_t *len;                 /* (n) completion lengths */
  int32_t *ids;                 /* (n,Tmax) */
  float *dout;                  /* (n*Tmax, V) */
  double *psum;                 /* (n*Tmax) */
  lm_reward_item *items;
  char **texts;
  /* sums since the last step_fields */
  double s_reward, s_reward2, s_kl, s_clip, s_ent, s_len, s_stop; int64_t s_rows, s_micro;
  double val_reward; int64_t val_n;
} grpo_obj;

static void grpo_fail(grpo_obj *o) {
  if (o->o.err) snprintf(o->o.err, 256, "%s", lm_last_error());
}

/* the rows of one micro-batch (or an evaluation chunk): the prompts of tasks[rows / G] */
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

/* Forward of the n rows prompt + completion through model; lp (n,T) of the completion tokens under
 * softmax(logits / temperature); with keep, exp(z/temp - max) is left in o->dout and its sum in
 * o->psum for the gradient, and *ent gets the summed entropy. Returns the row length Tb, or -1. */
static int64_t row_logps(grpo_obj *o, lm_model *model, int64_t n, float *lp, int keep, double *ent) {
  lm_rollouts *r = &o->roll;
  int64_t Tb = 1, V = model->cfg.vocab_size;
  for (int64_t i = 0; i < n; i++) Tb = o->plen[i] + r->len[i] > Tb ? o->plen[i] + r->len[i] : Tb;
  int32_t pad = o->prompt[0][0];
  for (int64_t i = 0; i < n; i++) {   /* repack at row length Tb */
    int32_t *row = o->ids + i * Tb;
    for (int64_t j = 0; j < o->plen[i]; j++) row[j] = o->prompt[i][j];
    for (int64_t j = 0; j < r->len[i]; j++) row[o->plen[i] + j] = r->ids[i * r->T + j];
    for (int64_t j = o->plen[i] + r->len[i]; j < Tb; j++) row[j] = pad;
  }
  lm_batch b = {.ids = o->ids, .B = n, .T = Tb};
  lm_forward(model, &b, NULL, NULL);
  if (!model->ok) return -1;
  const float *logits = lm_model_logits(model);
  double inv = 1.0 / o->o.ro.temperature, e_sum = 0;
  if (keep) memset(o->dout, 0, (size_t)(n * Tb * V) * sizeof *o->dout);
#pragma omp parallel for schedule(static) reduction(+ : e_sum)
  for (int64_t i = 0; i < n; i++)
    for (int64_t t = 0; t < r->len[i]; t++) {
      int64_t pos = i * Tb + o->plen[i] + t - 1;   /* the logits that predicted token t */
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
      lp[i * o->T + t] = (float)(z[y] * inv - mx - log(s));
      if (keep) { o->psum[pos] = s; if (!r->tool[i * r->T + t]) e_sum += log(s) - sz / s; }
    }
  if (ent) *ent = e_sum;
  return Tb;
}

static uint64_t mix(uint64_t x) {   /* splitmix64's finaliser: cursor -> sampling seed */
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static float grpo_micro(void *self, lm_model *m) {
  grpo_obj *o = self;
  int G = o->o.G;
  int64_t n = o->o.B * G, V = m->cfg.vocab_size;   /* o->n may be larger: evaluation's chunks */
  lm_rollouts *r = &o->roll;
  lm_rollout_opts ro = o->o.ro;
  ro.seed = mix(o->o.ro.seed ^ mix((uint64_t)o->order.epoch * 0x100000001ULL + (uint64_t)o->order.index));
  for (int64_t b = 0; b < o->o.B; b++) o->task[b] = lm_epochs_next(&o->order);
  set_rows(o, o->train, n, G);
  lm_status st = lm_rollout(o->dec, m, o->tok, o->prompt, o->plen, n, &ro, r);
  if (!st) st = score_rows(o, o->train, n, G);
  if (st) { grpo_fail(o); return NAN; }
  double ent = 0;
  int need_ref = o->ref && (o->o.beta != 0 || o->o.kl_coef != 0);
  if (need_ref && row_logps(o, o->ref, n, o->ref_lp, 0, NULL) < 0) { grpo_fail(o); return NAN; }
  int64_t Tb = row_logps(o, m, n, o->lp, 1, &ent);
  if (Tb < 0) { grpo_fail(o); return NAN; }
  for (int64_t i = 0; i < n; i++) {   /* tool tokens: no ratio, no KL, no gradient */
    o->len[i] = r->len[i];
    for (int64_t t = 0; t < r->len[i]; t++)
      if (r->tool[i * r->T + t]) o->lp[i * o->T + t] = o->ref_lp[i * o->T + t] = 0;
  }
  memcpy(o->old, o->lp, (size_t)(n * o->T) * sizeof *o->old);
  lm_rl_policy_opts po = {.norm = o->o.loss, .adv_per_row = 1, .clip_low = o->o.clip_low, .clip_high = o->o.clip_high,
                          .denom = o->o.loss == LM_RL_NORM_CONST ? (double)o->T : 0};
  if (o->o.algo == LM_RL_ALGO_RLOO) {
    for (int64_t i = 0; i < n; i++) {
      double s = 0;
      for (int64_t t = 0; t < r->len[i] && need_ref; t++) s += lm_kl_k1(o->lp[i * o->T + t], o->ref_lp[i * o->T + t]);
      o->klsum[i] = (float)s;
    }
    lm_rl_rloo_advantages(o->score, o->klsum, o->o.kl_coef, n, G, o->adv, NULL);
    po.seq_ratio = 1; po.norm = LM_RL_NORM_ROWS;
  } else {
    lm_rl_group_advantages(o->score, n, G, o->o.scale, o->adv);
    po.beta = need_ref ? o->o.beta : 0;
  }
  lm_rl_policy_stats ps;
  lm_rl_policy_loss(&po, n, o->T, o->len, o->lp, o->old, need_ref ? o->ref_lp : NULL, o->adv, o->dlp, &ps);
  /* d loss / d logits at the position before each completion token */
  double inv = 1.0 / o->o.ro.temperature;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++)
    for (int64_t t = 0; t < r->len[i]; t++) {
      int64_t pos = i * Tb + o->plen[i] + t - 1;
      float *dr = o->dout + pos * V;
      double g = r->tool[i * r->T + t] ? 0 : o->dlp[i * o->T + t] * inv;
      if (g == 0) { memset(dr, 0, (size_t)V * sizeof *dr); continue; }
      float sc = (float)(-g / o->psum[pos]);
      for (int64_t v = 0; v < V; v++) dr[v] *= sc;
      int32_t y = r->ids[i * r->T + t];
      dr[y] = (float)((double)dr[y] + g);
    }
  lm_batch b = {.ids = o->ids, .B = n, .T = Tb, .dout = o->dout};
  lm_backward(m, &b);
  /* statistics */
  int64_t tokens = 0;
  for (int64_t i = 0; i < n; i++) {
    o->s_reward += o->score[i]; o->s_reward2 += (double)o->score[i] * o->score[i];
    o->s_len += (double)r->len[i]; o->s_stop += r->stopped[i];
    tokens += r->len[i];
  }
  o->s_rows += n; o->s_micro++;
  o->s_kl += ps.kl; o->s_clip += ps.clipfrac; o->s_ent += tokens ? ent / (double)tokens : 0;
  return (float)ps.loss;
}

static double grpo_evaluate(void *self, lm_model *m, int64_t max_batches) {
  grpo_obj *o = self;
  const lm_rl_tasks *t = o->eval;
  if (!t || t->n == 0) return NAN;
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
  if (!o->s_rows) return 0;
  double R = (double)o->s_rows, M = (double)o->s_micro, mean = o->s_reward / R;
  double var = o->s_reward2 / R - mean * mean;
  int k = snprintf(buf, n, "\"reward\": %.6g, \"reward_std\": %.6g, \"kl\": %.6g, \"clipfrac\": %.4g, \"entropy\": %.6g, "
                   "\"completion_len\": %.4g, \"stopped\": %.4g", mean, sqrt(var > 0 ? var : 0), o->s_kl / M,
                   o->s_clip / M, o->s_ent / M, o->s_len / R, o->s_stop / R);
  o->s_reward = o->s_reward2 = o->s_kl = o->s_clip = o->s_ent = o->s_len = o->s_stop = 0;
  o->s_rows = o->s_micro = 0;
  return k > 0 && (size_t)k < n ? k : 0;
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
  free(o->texts); free(o->items); free(o->task); free(o->prompt); free(o->plen); free(o->score); free(o->adv);
  free(o->klsum); free(o->lp); free(o->old); free(o->ref_lp); free(o->dlp); free(o->len); free(o->ids);
  lm_free(o->dout); free(o->psum);
  free(o);
}

lm_status lm_objective_grpo(lm_objective *obj, lm_model *m, lm_model *ref, const lm_tokenizer *tok,
                            const lm_rl_tasks *train, const lm_rl_tasks *eval, lm_rewarder *rw, const lm_grpo_opts *go,
                            const int64_t *cursor) {
  memset(obj, 0, sizeof *obj);
  if (m->cfg.head != LM_HEAD_LM || !m->cfg.causal)
    return lm_error(LM_ERR_ARG, "RL needs a causal decoder with an LM head; this is a %s model with a %s head",
                    lm_arch_name(m->cfg.arch), lm_head_name(m->cfg.head));
  if (go->G < 2) return lm_error(LM_ERR_ARG, "--generations must be at least 2 (the group is the baseline)");
  if (go->B < 1 || go->ro.max_new < 1) return lm_error(LM_ERR_ARG, "batch and max new tokens must be positive");
  if (!(go->ro.temperature > 0)) return lm_error(LM_ERR_ARG, "RL samples: --temperature must be above 0");
  if ((go->beta != 0 || go->kl_coef != 0) && !ref) return lm_error(LM_ERR_ARG, "the KL term needs the reference model");
  int64_t longest = train->longest > (eval ? eval->longest : 0) ? train->longest : eval->longest;
  int64_t Tmax = longest + go->ro.max_new;
  if (Tmax > m->cfg.n_positions)
    return lm_error(LM_ERR_RANGE, "a prompt of %lld tokens + %lld new tokens is longer than the model's %lld positions",
                    (long long)longest, (long long)go->ro.max_new, (long long)m->cfg.n_positions);
  grpo_obj *o = calloc(1, sizeof *o);
  if (!o) return lm_error(LM_ERR_NOMEM, "out of memory");
  o->o = *go; o->ref = ref; o->tok = tok; o->train = train; o->eval = eval; o->rw = rw;
  int64_t n = go->B * go->G, T = go->ro.max_new, V = m->cfg.vocab_size;
  if (eval && eval->n && n < 8) n = 8;   /* evaluation chunks: at least 8 greedy rows at a time */
  o->n = n; o->T = T; o->Tmax = Tmax;
  lm_status st = lm_rollouts_alloc(&o->roll, n, T);
  size_t NT = (size_t)(n * T);
  o->task = malloc((size_t)n * sizeof *o->task); o->prompt = malloc((size_t)n * sizeof *o->prompt);
  o->plen = malloc((size_t)n * sizeof *o->plen); o->score = malloc((size_t)n * sizeof *o->score);
  o->adv = malloc((size_t)n * sizeof *o->adv); o->klsum = malloc((size_t)n * sizeof *o->klsum);
  o->lp = calloc(NT, sizeof *o->lp); o->old = calloc(NT, sizeof *o->old); o->ref_lp = calloc(NT, sizeof *o->ref_lp);
  o->dlp = calloc(NT, sizeof *o->dlp); o->len = calloc((size_t)n, sizeof *o->len);
  o->ids = calloc((size_t)(n * Tmax), sizeof *o->ids); o->psum = calloc((size_t)(n * Tmax), sizeof *o->psum);
  o->dout = lm_alloc((size_t)(n * Tmax * V) * sizeof *o->dout);
  o->items = calloc((size_t)n, sizeof *o->items); o->texts = calloc((size_t)n, sizeof *o->texts);
  if (!st && (!o->task || !o->prompt || !o->plen || !o->score || !o->adv || !o->klsum || !o->lp || !o->old ||
              !o->ref_lp || !o->dlp || !o->len || !o->ids || !o->psum || !o->dout || !o->items || !o->texts))
    st = lm_error(LM_ERR_NOMEM, "out of memory for %lld rollouts of up to %lld tokens", (long long)n, (long long)Tmax);
  if (!st) st = lm_batch_decoder_init(&o->dec, m, (int)n, Tmax);
  if (!st) st = lm_epochs_init(&o->order, train->n, go->seed, 0x6270ULL, cursor);
  if (!st) st = lm_model_reserve(m, n, Tmax, 1);
  if (!st && ref) st = lm_model_reserve(ref, n, Tmax, 0);
  if (st) { grpo_free(o); return st; }
  *obj = (lm_objective){.self = o, .micro = grpo_micro, .evaluate = grpo_evaluate, .cursor = grpo_cursor, .free = grpo_free,
                        .eval_fields = grpo_eval_fields, .step_fields = grpo_step_fields};
  return LM_OK;
}
