/* rl.h — reinforcement learning from feedback (docs/rl.md): the losses of PPO
 * (RLHF), GRPO and RLOO as pure functions over fixed rollouts, the rewards,
 * rollouts, and the objectives that put them on the one trainer.
 *
 * Rollouts are laid out as n rows of up to T completion tokens: row i's
 * tokens are positions 0 .. len[i]-1 of its (n,T) arrays, the rest is padding
 * that no function reads or writes (gradients there are 0). Groups (GRPO,
 * RLOO) are G consecutive rows: the completions of one prompt.
 *
 * Every loss returns its value and d loss / d (its inputs that carry a
 * gradient: the policy's per-token log-probs, the value head's predictions);
 * tests/reference/test_rl.py checks both against PyTorch autograd. The
 * formulas follow TRL (trl/trainer/ppo_trainer.py, grpo_trainer.py,
 * rloo_trainer.py); where lmkit differs it says so here and in docs/rl.md. */
#ifndef LM_TRAIN_RL_H
#define LM_TRAIN_RL_H

#include <math.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "lmkit.h"
#include "base/base.h"

/* ---- KL estimators per token, of KL(pi || pi_ref) from a sample of pi (Schulman's k1, k3).
 * lp = log pi(y), ref = log pi_ref(y). k1 is unbiased but noisy (PPO's reward shaping, RLOO);
 * k3 = e^(ref-lp) - (ref-lp) - 1 >= 0 (GRPO's penalty, TRL's per_token_kl). */
static inline double lm_kl_k1(double lp, double ref) { return lp - ref; }
static inline double lm_kl_k3(double lp, double ref) { return exp(ref - lp) - (ref - lp) - 1.0; }
static inline double lm_kl_k3_grad(double lp, double ref) { return 1.0 - exp(ref - lp); }   /* d k3 / d lp */

/* ---- advantages */
typedef enum { LM_RL_SCALE_GROUP = 0, LM_RL_SCALE_BATCH, LM_RL_SCALE_NONE } lm_rl_scale;
int lm_rl_scale_from_name(const char *name);   /* -1 when unknown */
const char *lm_rl_scale_name(int scale);

/* GRPO (TRL GRPOTrainer._generate_and_score_completions): adv = r - mean of r's group, divided by
 * (std + 1e-4) where std is the unbiased standard deviation of the group (group), of all n
 * rewards (batch), or not divided (none). n a multiple of G >= 2. */
void lm_rl_group_advantages(const float *r, int64_t n, int G, int scale, float *adv);
/* RLOO (TRL RLOOTrainer): the KL-shaped sequence reward x = score - kl_coef * klsum (klsum: the
 * sum of k1 over the row's tokens) and adv = x - mean of the other G-1 rows of the group (the
 * leave-one-out baseline). TRL lays the k samples of a prompt rloo_k batches apart; lmkit keeps
 * them consecutive, as GRPO. rlhf (may be NULL) receives x. */
void lm_rl_rloo_advantages(const float *score, const float *klsum, double kl_coef, int64_t n, int G, float *adv,
                           float *rlhf);

/* PPO's per-token rewards (TRL PPOTrainer.train, "compute rewards"): -kl_coef * k1(lp, ref) at
 * every token, plus score at the row's last token. (TRL adds the score one position past the last
 * token when the row has room, at the first padding token whose value it keeps; lmkit puts it on
 * the last token, as InstructGPT does.) */
void lm_rl_kl_rewards(int64_t n, int64_t T, const int64_t *len, const float *lp, const float *ref, const float *score,
                      double kl_coef, float *rewards);
/* Generalised advantage estimation over each row's tokens (TRL's loop): delta_t = r_t + gamma
 * V_{t+1} - V_t (V past the last token = 0), A_t = delta_t + gamma lambda A_{t+1}; returns
 * R_t = A_t + V_t. ret may be rewards itself (each r_t is read before R_t is written). */
void lm_rl_gae(int64_t n, int64_t T, const int64_t *len, const float *rewards, const float *values, double gamma,
               double lam, float *adv, float *ret);
/* TRL's masked_whiten over the real tokens (shift_mean): (x - mean) / sqrt(var + 1e-8), var the
 * unbiased variance; in place. */
void lm_rl_whiten(int64_t n, int64_t T, const int64_t *len, float *x);

/* ---- the policy loss, one function for PPO, GRPO (and DAPO, Dr. GRPO) and RLOO.
 * ratio = exp(lp - old) per token (seq_ratio: one per row, exp(sum lp - sum old), RLOO's),
 * per-token (per-row) loss  l = max(-A ratio, -A clip(ratio, 1 - clip_low, 1 + clip_high))
 *                              + beta * k3(lp, ref)                   (beta > 0: GRPO's KL term)
 * normalised by norm:
 *   SEQ    mean over rows of (sum over the row's tokens / len)             GRPO's "grpo"
 *   TOKEN  sum over all tokens / tokens (or / denom when denom > 0)        "dapo" (denom = the
 *          tokens of the whole generation batch, TRL's num_items_in_batch), "bnpo", PPO's masked_mean
 *   CONST  sum over all tokens / (n * denom), denom = the maximum completion length   "dr_grpo"
 *   ROWS   mean over rows (seq_ratio; RLOO's pg_loss_max.mean())
 * A is adv (n,T) per token (PPO), or (n) per row (GRPO, RLOO) when adv_per_row. */
typedef enum { LM_RL_NORM_SEQ = 0, LM_RL_NORM_TOKEN, LM_RL_NORM_CONST, LM_RL_NORM_ROWS } lm_rl_norm;
typedef struct {
  int norm;                   /* lm_rl_norm */
  int seq_ratio;              /* RLOO: one ratio per row */
  int adv_per_row;            /* adv is (n) */
  double clip_low, clip_high; /* 0.2, 0.2 */
  double beta;                /* k3 weight (0: none; ref unused) */
  double denom;               /* TOKEN: 0 or the batch's tokens; CONST: the maximum completion length */
} lm_rl_policy_opts;
typedef struct {
  double loss;
  double clipfrac;            /* share of tokens (rows) whose clipped term was the larger (TRL's pg_clipfrac) */
  double kl;                  /* mean k3 over tokens (beta > 0), else mean k1 against ref when ref given */
  double ratio;               /* mean ratio */
} lm_rl_policy_stats;
/* dlp (n,T): d loss / d lp at real tokens, 0 at padding. ref may be NULL when beta == 0. */
void lm_rl_policy_loss(const lm_rl_policy_opts *o, int64_t n, int64_t T, const int64_t *len, const float *lp,
                       const float *old, const float *ref, const float *adv, float *dlp, lm_rl_policy_stats *st);

/* PPO's clipped value loss (TRL): 0.5 * mean over real tokens of
 * max((v - R)^2, (clip(v, v_old - c, v_old + c) - R)^2); dv (n,T) its gradient; *clipfrac (may be
 * NULL) the share of tokens where the clipped term was the larger. */
double lm_rl_value_loss(int64_t n, int64_t T, const int64_t *len, const float *v, const float *vold, const float *ret,
                        double cliprange_value, float *dv, double *clipfrac);

/* Entropy of softmax(z / temperature) over V logits (policy/entropy). */
double lm_rl_entropy(const float *z, int64_t V, double temperature);

/* The adaptive KL controller (Ziegler et al. 2019, TRL's AdaptiveKLController):
 * kl_coef *= 1 + clip(kl / target - 1, -0.2, 0.2) * n_steps / horizon. */
double lm_rl_adaptive_kl(double kl_coef, double kl, double target, double horizon, int64_t n_steps);

/* ======================================================================
 * Rollouts (src/train/rollout.c): G completions of each prompt sampled in one
 * batch by the many-sequence decoder (src/infer/batch.h), with generate's
 * sampling (temperature, top-k, top-p), stopping at an end-of-turn token, and
 * the calculator tool (calc.h) when asked.
 * ====================================================================== */
#include "infer/batch.h"

typedef struct {
  float temperature;          /* 0: greedy (log-probs at 1); else the log-probs are those of softmax(logits / temperature) */
  float top_p;                /* 1: off */
  int64_t top_k;              /* 0: off */
  int64_t max_new;            /* completion tokens at most, spliced calculator results included */
  const int32_t *stop;        /* tokens that end a completion (kept as its last token) */
  int n_stop;
  int calc;                   /* splice calculator results (calc.h) */
  uint64_t seed;              /* row i samples with seed + i: the same seed gives the same rollouts */
} lm_rollout_opts;

typedef struct {
  int64_t n, T;               /* rows, and the capacity of a row (max_new) */
  int32_t *ids;               /* (n,T) completion tokens */
  float *logp;                /* (n,T) log-prob of each token under the sampling policy (0 at tool tokens) */
  uint8_t *tool;              /* (n,T) 1: spliced by the calculator, not sampled (no loss) */
  int64_t *len;               /* (n) */
  uint8_t *stopped;           /* (n) 1: ended with a stop token; 0: ran out of max_new */
  int64_t sampled;            /* tokens sampled in all */
} lm_rollouts;

lm_status lm_rollouts_alloc(lm_rollouts *r, int64_t n, int64_t T);
void lm_rollouts_free(lm_rollouts *r);
/* Row i continues prompt[i] (plen[i] tokens) on slot i of d (n <= its slots, plen + max_new within
 * its length); tok decodes for the calculator (may be NULL without calc). */
lm_status lm_rollout(lm_batch_decoder *d, const lm_model *m, const lm_tokenizer *tok, const int32_t *const *prompt,
                     const int64_t *plen, int64_t n, const lm_rollout_opts *o, lm_rollouts *out);

/* ======================================================================
 * Rewards (src/train/rewards.c): one number per completion, from a table of
 * kinds chosen by the --reward spec:
 *   arith          1 when the completion's last <answer>X</answer> holds a number equal to the task's
 *                  answer (the record's "answer", a number or numeric string, or the value of its
 *                  "expression" by the calculator's evaluator), else 0
 *   regex:PATTERN  1 when PCRE2 PATTERN matches somewhere in the completion, else 0 (a format reward)
 *   cmd:COMMAND    COMMAND (run by /bin/sh) reads one JSON line {"prompt", "completion"} per
 *                  completion on stdin and writes one number per line; a timeout, a failed exit, a
 *                  missing, extra or non-numeric line is an error naming the command
 *   DIR            a reward model (a directory with the scalar head, 'lmkit reward'): its score of
 *                  the prompt + completion tokens
 * ====================================================================== */
typedef struct {
  const char *prompt;         /* the prompt's text (as the model saw it) */
  const cJSON *record;        /* the task's JSONL record */
  const char *completion;     /* the completion's text */
  const int32_t *ids;         /* prompt + completion tokens (reward models) */
  int64_t n_ids;
} lm_reward_item;
typedef struct lm_rewarder lm_rewarder;
lm_status lm_rewarder_open(lm_rewarder **out, const char *spec, double timeout_sec);
void lm_rewarder_free(lm_rewarder *r);
const char *lm_rewarder_name(const lm_rewarder *r);
/* Checks a task record for what the reward needs (arith: an answer); error prefixed with where. */
lm_status lm_rewarder_check(const lm_rewarder *r, const cJSON *record, const char *where);
lm_status lm_rewarder_score(lm_rewarder *r, const lm_reward_item *items, int64_t n, float *out);

/* ======================================================================
 * Tasks and the GRPO / RLOO objective (src/train/objectives/grpo.c)
 * ====================================================================== */
#include "infer/template.h"
#include "train/train.h"

/* Tasks, JSONL: {"prompt": P, ...} with P a string (one user message) or a message list; other
 * members stay in the record for the reward (arith's "answer"). Each prompt is rendered by the chat
 * template with the generation prompt; cot (may be NULL) is appended to its last user message
 * after a blank line. Errors name file:line; a prompt longer than max_prompt tokens is an error. */
typedef struct {
  int64_t n;
  cJSON **rec;
  char **text;                /* the rendered prompt */
  int32_t **ids;
  int64_t *len, *line;
  int64_t longest;
} lm_rl_tasks;
lm_status lm_rl_tasks_read(lm_rl_tasks *t, const char *path, const lm_chat_config *cc, const lm_tokenizer *tok,
                           const char *cot, int64_t max_prompt, const lm_rewarder *rw);
void lm_rl_tasks_free(lm_rl_tasks *t);
/* Moves the last `fraction` of t (a seeded random choice, order kept) into held. */
lm_status lm_rl_tasks_split(lm_rl_tasks *t, float fraction, uint64_t seed, lm_rl_tasks *held);

/* The algorithms, rows of one table in grpo.c: how advantages are made, the policy loss's options,
 * whether a value model trains alongside (PPO) and the metrics they log. */
typedef enum { LM_RL_ALGO_GRPO = 0, LM_RL_ALGO_RLOO, LM_RL_ALGO_PPO } lm_rl_algo;
typedef struct {
  int algo;                   /* lm_rl_algo */
  int loss;                   /* GRPO: lm_rl_norm SEQ (grpo), TOKEN (dapo), CONST (dr_grpo); RLOO: ROWS; PPO: TOKEN */
  int scale;                  /* GRPO: lm_rl_scale */
  int G;                      /* completions per prompt (>= 2 for GRPO and RLOO; PPO: 1) */
  int64_t B;                  /* prompts per micro-batch */
  double beta;                /* GRPO: k3 weight (0: no reference model) */
  double kl_coef;             /* RLOO: weight of the sequence's k1 sum in its reward; PPO: of the per-token k1 */
  double clip_low, clip_high;
  double missing_eos_penalty; /* subtracted from the score of a completion that ran out of tokens (TRL) */
  /* PPO (TRL PPOTrainer): the rollout batch is B x grad_accum x mini_batches prompts, used for
   * ppo_epochs passes of mini_batches optimizer steps (grad_accum micro-batches of B rows each);
   * rows are shuffled anew each pass */
  int ppo_epochs, mini_batches;
  int64_t grad_accum;
  double gamma, lam;          /* GAE */
  double vf_coef, cliprange_value;
  double target_kl, kl_horizon;   /* the adaptive KL controller (target_kl > 0; Ziegler et al.) */
  lm_model *value;            /* PPO: the value model (a tokens head of 1 label), trained with the policy */
  lm_rollout_opts ro;         /* seed: the run's; each micro-batch derives its own from the data cursor */
  uint64_t seed;              /* the task order */
  char *err;                  /* (256) where a failed micro-batch leaves its error (the trainer reports a NaN loss) */
  /* tests (tests/reference/ref_rl.c): these completions and scores instead of sampled and scored
   * ones; row i of each rollout batch is fixed row i, a completion of task i / G */
  const lm_rollouts *fixed;
  const float *fixed_score;
} lm_grpo_opts;
/* ref: the frozen starting model (needed when beta > 0 or kl_coef > 0; else may be NULL). evaluate
 * is minus the mean reward of one greedy completion per eval task (val_reward in eval_fields);
 * step_fields: GRPO and RLOO reward, reward_std, kl, clipfrac, entropy, completion_len, stopped;
 * PPO TRL's objective/kl, objective/scores, objective/rlhf_reward, objective/non_score_reward,
 * objective/kl_coef, policy/clipfrac, policy/entropy, policy/approxkl, loss/policy, loss/value,
 * val/clipfrac, completion_len, stopped. PPO's value model is the objective's aux model (train.h)
 * and its KL coefficient its state. */
lm_status lm_objective_grpo(lm_objective *o, lm_model *m, lm_model *ref, const lm_tokenizer *tok,
                            const lm_rl_tasks *train, const lm_rl_tasks *eval, lm_rewarder *rw, const lm_grpo_opts *go,
                            const int64_t *cursor);

#endif
