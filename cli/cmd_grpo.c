/* cmd_grpo.c — `lmkit grpo` (and, through cli_rl_main, `lmkit rloo` and
 * `lmkit ppo`, cli/cmd_rloo.c and cli/cmd_ppo.c): online RL of a decoder
 * against a reward (src/train/objectives/grpo.c, rewards.c; docs/rl.md). The
 * commands are rows of one table (their defaults and help) over the same code.
 * The run's settings go to OUT/posttrain.json so that --resume needs nothing
 * else; the reference model is the starting --policy. PPO's value model (a
 * tokens head of one label: a value per token) starts from the reward model
 * or the policy and is saved as OUT/value (and CHECKPOINT/value). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "cli.h"
#include "base/base.h"
#include "infer/chat_generate.h"
#include "model/heads.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/rl.h"

#define DEFAULT_COT LM_COT_DEFAULT   /* infer/chat_generate.h */

static const char *HELP_COMMON =
  "\n"
  "tasks (--prompts, --eval): JSONL, one {\"prompt\": P, ...} per line, P a string (one user\n"
  "message) or a message list, rendered by the policy's chat template with the generation\n"
  "prompt; the other members are the task's, for the reward (arith: \"answer\" or \"expression\").\n"
  "\n"
  "rewards (--reward): arith (1 when the last <answer>X</answer> equals the task's answer),\n"
  "regex:PATTERN (1 when PCRE2 PATTERN matches the completion), a reward-model directory\n"
  "('lmkit reward', sharing the policy's tokenizer), or --reward-cmd \"CMD\": CMD reads JSON\n"
  "lines {\"prompt\", \"completion\"} on stdin and writes one number per line.\n"
  "\n"
  "options:\n"
  "  --policy DIR         the starting model and reference (a decoder with an LM head; also --model)\n"
  "  --prompts FILE       training tasks (also --data)\n"
  "  --reward SPEC        arith, regex:PATTERN, or a reward-model directory\n"
  "  --reward-cmd CMD     a reward command (run by /bin/sh once per batch)\n"
  "  --reward-timeout S   seconds a reward command may take per batch (60)\n"
  "  --out DIR            where the tuned model, checkpoints and metrics.jsonl go\n"
  "  --generations G      completions per task: the group of grpo and rloo (4; ppo: 1)\n"
  "  --max-new-tokens N   completion length at most (64)\n"
  "  --temperature X      sampling temperature (1.0); log-probs are of softmax(logits / X)\n"
  "  --top-p X, --top-k N sampling filters (1.0 and 0: off)\n"
  "  --epsilon E          clip range of the ratio (0.2); --epsilon-high E: its upper side (DAPO's 0.28)\n"
  "  --calc               the calculator tool in rollouts (<|calc|>EXPR<|/calc|> -> ' \xe2\x86\x92 RESULT')\n"
  "  --cot                append \"" DEFAULT_COT "\" to each prompt; --cot-text T: another text\n"
  "  --eval FILE          held-out tasks: val_reward = mean reward of one greedy completion each\n"
  "  --val-fraction F     hold out this share of --prompts instead\n"
  "  --eval-only          print the held-out reward of --policy and exit\n"
  "  --max-length N       prompt + completion tokens at most (the model's positions, at most 1024)\n"
  "  --missing-eos-penalty P  subtracted from the score of a completion without a stop token (0)\n"
  "  (--batch counts tasks: each micro-batch holds batch x generations completions)\n";

typedef struct {
  const char *name;
  int algo;
  const char *help;
} rl_command;

/* indexed by lm_rl_algo */

static const rl_command COMMANDS[] = {
  {"grpo", LM_RL_ALGO_GRPO,
   "usage: lmkit grpo --policy SFT --prompts TASKS.jsonl --reward R --out DIR [options]\n"
   "       lmkit grpo --resume DIR [--steps N] [--threads N]\n"
   "\n"
   "Group relative policy optimisation (DeepSeekMath; TRL's GRPOTrainer): G completions\n"
   "of each task are sampled from the policy, scored, and each one's advantage is its\n"
   "reward minus its group's mean, divided by the group's std (--scale-rewards group,\n"
   "batch, none). Loss: the clipped ratio times the advantage at every token, plus\n"
   "beta * k3 KL to the starting model, normalised per --loss:\n"
   "  grpo     mean over completions of the mean over their tokens\n"
   "  dapo     mean over all tokens of the batch\n"
   "  dr_grpo  sum over tokens / (completions x --max-new-tokens)\n"
   "  --beta B             weight of the k3 KL to the reference (0: none, no reference held)\n"
   "  --loss KIND          grpo (default), dapo, dr_grpo\n"
   "  --scale-rewards S    group (default), batch, none\n"},
  {"rloo", LM_RL_ALGO_RLOO,
   "usage: lmkit rloo --policy SFT --prompts TASKS.jsonl --reward R --out DIR [options]\n"
   "       lmkit rloo --resume DIR [--steps N] [--threads N]\n"
   "\n"
   "REINFORCE leave-one-out (TRL's RLOOTrainer): each completion's reward is its score\n"
   "minus kl_coef times its summed k1 KL to the starting model; its advantage is that\n"
   "minus the mean of the other G-1 completions of its task. Loss: the clipped ratio of\n"
   "the whole completion's probability times the advantage, averaged over completions.\n"
   "  --kl-coef K          weight of the KL in the reward (0.05; 0: no reference held)\n"},
  {"ppo", LM_RL_ALGO_PPO,
   "usage: lmkit ppo --policy SFT --reward RM --prompts TASKS.jsonl --out DIR [options]\n"
   "       lmkit ppo --resume DIR [--steps N] [--threads N]\n"
   "\n"
   "RLHF with PPO (InstructGPT; TRL's PPOTrainer). Each iteration samples one completion\n"
   "for each of batch x grad-accum x mini-batches tasks; every token's reward is\n"
   "-kl_coef (log pi - log pi_ref) (k1), the reward's score is added at the last token.\n"
   "A value model (the scalar head at every token) gives GAE advantages (gamma, lambda),\n"
   "whitened over the batch; then --ppo-epochs passes over the completions in\n"
   "--mini-batches optimizer steps of the clipped surrogate (--epsilon) plus vf_coef\n"
   "times the clipped value loss. A step of --steps is one mini-batch: --steps and\n"
   "--save-every are multiples of ppo-epochs x mini-batches. The value model is saved\n"
   "as OUT/value.\n"
   "  --value-init W       the value model starts from: reward (the reward model, TRL's\n"
   "                       default; needs a reward-model --reward) or policy (a new head)\n"
   "  --kl-coef K          weight of the per-token KL in the reward (0.05)\n"
   "  --target-kl X        adapt kl_coef towards this KL per completion (Ziegler et al.; off)\n"
   "  --kl-horizon H       the adaptive controller's horizon, in completions (10000)\n"
   "  --ppo-epochs N       passes over each rollout batch (4)\n"
   "  --mini-batches N     optimizer steps per pass (1)\n"
   "  --gamma G, --lam L   GAE discount and lambda (1.0, 0.95)\n"
   "  --vf-coef C          weight of the value loss (0.1)\n"
   "  --cliprange-value C  clip range of the value predictions (0.2)\n"},
};

static const char *const LOSSES[] = {"grpo", "dapo", "dr_grpo"};   /* = LM_RL_NORM_SEQ, TOKEN, CONST */
static const char *const VALUE_INIT[] = {"reward", "policy"};

typedef struct {
  cli_posttrain p;
  const char *reward;       /* the spec, "cmd:..." for --reward-cmd */
  char *reward_owned;
  double timeout;
  lm_grpo_opts go;
  const char *cot;
  int eval_only;
  int value_init;           /* PPO: 0 reward, 1 policy, -1 not given (reward when --reward is a model directory) */
} rl_args;

typedef struct {
  rl_args *a;
  lm_model *ref;
  lm_rl_tasks *train, *eval;
  lm_rewarder *rw;
} rl_ctx;

static lm_status factory(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o, lm_rng *rng,
                         const int64_t *cursor, void *ctx) {
  (void)rng;
  rl_ctx *c = ctx;
  lm_grpo_opts go = c->a->go;
  go.B = o->batch; go.seed = o->seed; go.ro.seed = o->seed; go.grad_accum = o->grad_accum;
  return lm_objective_grpo(obj, m, c->ref, tok, c->train, c->eval && c->eval->n ? c->eval : NULL, c->rw, &go, cursor);
}

/* the command's settings into posttrain.json, and back */
static void args_to_json(cJSON *j, const rl_args *a) {
  cJSON_AddStringToObject(j, "reward", a->reward);
  cJSON_AddNumberToObject(j, "reward_timeout", a->timeout);
  cJSON_AddNumberToObject(j, "generations", a->go.G);
  cJSON_AddStringToObject(j, "loss", a->go.algo == LM_RL_ALGO_RLOO ? "rloo" : LOSSES[a->go.loss]);
  cJSON_AddStringToObject(j, "scale_rewards", lm_rl_scale_name(a->go.scale));
  cJSON_AddNumberToObject(j, "beta", a->go.beta);
  cJSON_AddNumberToObject(j, "kl_coef", a->go.kl_coef);
  cJSON_AddNumberToObject(j, "epsilon", a->go.clip_low);
  cJSON_AddNumberToObject(j, "epsilon_high", a->go.clip_high);
  cJSON_AddNumberToObject(j, "max_new_tokens", (double)a->go.ro.max_new);
  cJSON_AddNumberToObject(j, "temperature", a->go.ro.temperature);
  cJSON_AddNumberToObject(j, "top_p", a->go.ro.top_p);
  cJSON_AddNumberToObject(j, "top_k", (double)a->go.ro.top_k);
  cJSON_AddBoolToObject(j, "calc", a->go.ro.calc);
  if (a->cot) cJSON_AddStringToObject(j, "cot", a->cot);
  cJSON_AddNumberToObject(j, "missing_eos_penalty", a->go.missing_eos_penalty);
  if (a->go.algo == LM_RL_ALGO_PPO) {
    cJSON_AddStringToObject(j, "value_init", VALUE_INIT[a->value_init]);
    cJSON_AddNumberToObject(j, "ppo_epochs", a->go.ppo_epochs);
    cJSON_AddNumberToObject(j, "mini_batches", a->go.mini_batches);
    cJSON_AddNumberToObject(j, "gamma", a->go.gamma);
    cJSON_AddNumberToObject(j, "lam", a->go.lam);
    cJSON_AddNumberToObject(j, "vf_coef", a->go.vf_coef);
    cJSON_AddNumberToObject(j, "cliprange_value", a->go.cliprange_value);
    cJSON_AddNumberToObject(j, "target_kl", a->go.target_kl);
    cJSON_AddNumberToObject(j, "kl_horizon", a->go.kl_horizon);
  }
}

/* PPO's settings (and the penalty, absent from runs before it existed) */
static int ppo_from_json(const cJSON *j, rl_args *a) {
  const cJSON *pen = cJSON_GetObjectItemCaseSensitive(j, "missing_eos_penalty");
  if (pen && !cJSON_IsNumber(pen)) return 0;
  a->go.missing_eos_penalty = pen ? pen->valuedouble : 0;
  if (a->go.algo != LM_RL_ALGO_PPO) return 1;
#define NUM(k) const cJSON *k = cJSON_GetObjectItemCaseSensitive(j, #k); if (!cJSON_IsNumber(k)) return 0
  NUM(ppo_epochs); NUM(mini_batches); NUM(gamma); NUM(lam); NUM(vf_coef); NUM(cliprange_value); NUM(target_kl); NUM(kl_horizon);
#undef NUM
  const cJSON *vi = cJSON_GetObjectItemCaseSensitive(j, "value_init");
  if (!cJSON_IsString(vi)) return 0;
  a->value_init = -1;
  for (int i = 0; i < 2; i++) if (!strcmp(vi->valuestring, VALUE_INIT[i])) a->value_init = i;
  a->go.ppo_epochs = (int)ppo_epochs->valuedouble; a->go.mini_batches = (int)mini_batches->valuedouble;
  a->go.gamma = gamma->valuedouble; a->go.lam = lam->valuedouble; a->go.vf_coef = vf_coef->valuedouble;
  a->go.cliprange_value = cliprange_value->valuedouble; a->go.target_kl = target_kl->valuedouble;
  a->go.kl_horizon = kl_horizon->valuedouble;
  return a->value_init >= 0 && a->go.ppo_epochs >= 1 && a->go.mini_batches >= 1;
}

static int args_from_json(const cJSON *j, rl_args *a) {
#define NUM(k) const cJSON *k = cJSON_GetObjectItemCaseSensitive(j, #k); if (!cJSON_IsNumber(k)) return 0
  NUM(reward_timeout); NUM(generations); NUM(beta); NUM(kl_coef); NUM(epsilon); NUM(epsilon_high); NUM(max_new_tokens);
  NUM(temperature); NUM(top_p); NUM(top_k);
#undef NUM
  const cJSON *rw = cJSON_GetObjectItemCaseSensitive(j, "reward"), *ls = cJSON_GetObjectItemCaseSensitive(j, "loss"),
              *sc = cJSON_GetObjectItemCaseSensitive(j, "scale_rewards"), *calc = cJSON_GetObjectItemCaseSensitive(j, "calc"),
              *cot = cJSON_GetObjectItemCaseSensitive(j, "cot");
  if (!cJSON_IsString(rw) || !cJSON_IsString(ls) || !cJSON_IsString(sc) || !cJSON_IsBool(calc) || (cot && !cJSON_IsString(cot)))
    return 0;
  a->reward = rw->valuestring; a->timeout = reward_timeout->valuedouble; a->go.G = (int)generations->valuedouble;
  a->go.beta = beta->valuedouble; a->go.kl_coef = kl_coef->valuedouble;
  a->go.clip_low = epsilon->valuedouble; a->go.clip_high = epsilon_high->valuedouble;
  a->go.ro.max_new = (int64_t)max_new_tokens->valuedouble; a->go.ro.temperature = (float)temperature->valuedouble;
  a->go.ro.top_p = (float)top_p->valuedouble; a->go.ro.top_k = (int64_t)top_k->valuedouble;
  a->go.ro.calc = cJSON_IsTrue(calc); a->cot = cot ? cot->valuestring : NULL;
  a->go.scale = lm_rl_scale_from_name(sc->valuestring);
  a->go.loss = -1;
  for (int i = 0; i < 3; i++) if (!strcmp(ls->valuestring, LOSSES[i])) a->go.loss = i;
  if (a->go.algo == LM_RL_ALGO_RLOO) a->go.loss = LM_RL_NORM_ROWS;
  if (a->go.algo == LM_RL_ALGO_PPO) a->go.loss = LM_RL_NORM_TOKEN;
  return a->go.scale >= 0 && a->go.loss >= 0 && a->go.G >= 1 && ppo_from_json(j, a);
}

/* PPO's own flags: 1 consumed, -1 after an error, 0 not one of them */
static int ppo_flag(int argc, char **argv, int *i, rl_args *a) {
  const char *f = argv[*i], *v;
  int r;
  float x;
  int64_t k;
  static const struct { const char *flag; double lo, hi; size_t off; } REALS[] = {
    {"--target-kl", 0, 1e6, offsetof(lm_grpo_opts, target_kl)}, {"--kl-horizon", 1, 1e12, offsetof(lm_grpo_opts, kl_horizon)},
    {"--gamma", 0, 1, offsetof(lm_grpo_opts, gamma)}, {"--lam", 0, 1, offsetof(lm_grpo_opts, lam)},
    {"--vf-coef", 0, 1e6, offsetof(lm_grpo_opts, vf_coef)}, {"--cliprange-value", 0, 1e6, offsetof(lm_grpo_opts, cliprange_value)},
  };
  for (size_t j = 0; j < sizeof REALS / sizeof *REALS; j++) {
    if ((r = cli_opt(argc, argv, i, REALS[j].flag, &v)) <= 0) { if (r < 0) return -1; continue; }
    if (cli_f32(f, v, (float)REALS[j].lo, (float)REALS[j].hi, &x)) return -1;
    *(double *)((char *)&a->go + REALS[j].off) = x;
    return 1;
  }
  if ((r = cli_opt(argc, argv, i, "--ppo-epochs", &v)) < 0) return -1;
  else if (r) { if (cli_i64(f, v, 1, 1000, &k)) return -1; a->go.ppo_epochs = (int)k; return 1; }
  if ((r = cli_opt(argc, argv, i, "--mini-batches", &v)) < 0) return -1;
  else if (r) { if (cli_i64(f, v, 1, 1000, &k)) return -1; a->go.mini_batches = (int)k; return 1; }
  if ((r = cli_opt(argc, argv, i, "--value-init", &v)) < 0) return -1;
  else if (r) {
    a->value_init = -1;
    for (int j = 0; j < 2; j++) if (!strcmp(v, VALUE_INIT[j])) a->value_init = j;
    if (a->value_init < 0) { cli_error("unknown --value-init '%s' (reward, policy)", v); return -1; }
    return 1;
  }
  return 0;
}

/* PPO's value model: RESUME/value, or the reward model's base with its score layer at every token
 * (token_classifier = classifier), or the policy's with a new one */
static lm_status value_load(lm_model **out, const rl_args *a, const char *state, uint64_t seed) {
  *out = NULL;
  lm_status st;
  if (state) {
    char *p = lm_path_join(state, "value");
    if (!p) return LM_ERR_NOMEM;
    st = lm_model_load(out, p);
    if (!st && ((*out)->cfg.head != LM_HEAD_TOKENS || (*out)->cfg.num_labels != 1))
      st = lm_error(LM_ERR_FORMAT, "%s: not a value model (a tokens head of one label)", p);
    free(p);
  } else if (a->value_init == 1) {
    st = lm_model_load_head(out, a->p.model, LM_HEAD_TOKENS, 1, seed);
  } else {
    lm_model *rm = NULL;
    st = lm_model_load(&rm, a->reward);
    if (!st && rm->cfg.head != LM_HEAD_SCALAR)
      st = lm_error(LM_ERR_ARG, "--value-init reward: %s has a %s head, not a reward model's scalar head", a->reward,
                    lm_head_name(rm->cfg.head));
    if (!st) st = lm_model_load_head(out, a->reward, LM_HEAD_TOKENS, 1, seed);
    if (!st) {
      const lm_param_info *w = lm_model_find_param(rm, "classifier.weight"), *b = lm_model_find_param(rm, "classifier.bias");
      float *vw = lm_model_param(*out, "token_classifier.weight", 0), *vb = lm_model_param(*out, "token_classifier.bias", 0);
      if (!w || !vw || !vb || w->numel != (size_t)(*out)->cfg.n_embd)
        st = lm_error(LM_ERR_FORMAT, "%s: cannot copy the reward model's score layer into the value head", a->reward);
      else {
        memcpy(vw, rm->params + w->offset, w->numel * sizeof *vw);
        vb[0] = b ? rm->params[b->offset] : 0.0f;   /* GPT-2's score layer has no bias */
      }
    }
    lm_model_free(rm);
  }
  if (st) { lm_model_free(*out); *out = NULL; }
  return st;
}

static int rl_main(const rl_command *cmd, int argc, char **argv) {
  rl_args a = {.timeout = 60, .value_init = -1};
  int ppo = cmd->algo == LM_RL_ALGO_PPO;
  a.go = (lm_grpo_opts){.algo = cmd->algo, .loss = cmd->algo == LM_RL_ALGO_RLOO ? LM_RL_NORM_ROWS : ppo ? LM_RL_NORM_TOKEN : LM_RL_NORM_SEQ,
                        .scale = LM_RL_SCALE_GROUP, .G = ppo ? 1 : 4, .kl_coef = cmd->algo == LM_RL_ALGO_GRPO ? 0 : 0.05,
                        .clip_low = 0.2, .clip_high = -1, .ppo_epochs = 4, .mini_batches = 1, .gamma = 1.0, .lam = 0.95,
                        .vf_coef = 0.1, .cliprange_value = 0.2, .kl_horizon = 10000,
                        .ro = {.temperature = 1.0f, .top_p = 1.0f, .max_new = 64}};
  lm_train_opts o;
  cli_posttrain_opts(&o, cmd->name, 1e-6f);
  o.batch = 4;
  cli_train_seen seen = {0};
  const char *v, *setting = NULL, *cot_text = NULL;
  int r, cot = 0;
  float x;
  int64_t k;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    if (cli_is_help(f)) { fputs(cmd->help, stdout); fputs(HELP_COMMON, stdout); fputs(CLI_TRAIN_FLAGS_HELP, stdout); return 0; }
    if ((r = cli_train_flag(argc, argv, &i, &o, &seen)) < 0) return 1; else if (r) continue;
    if (!strncmp(f, "--lora", 6) || !strcmp(f, "--adapter"))
      return cli_error("%s: 'lmkit %s' does not train LoRA adapters yet (docs/rl.md)", f, cmd->name);
    if ((r = cli_opt(argc, argv, &i, "--policy", &v)) < 0) return 1; else if (r) { a.p.model = v; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--prompts", &v)) < 0) return 1; else if (r) { a.p.data = v; setting = f; continue; }
    if ((r = cli_posttrain_flag(argc, argv, &i, &a.p)) < 0) return 1; else if (r) { setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--out", &v)) < 0) return 1; else if (r) { o.out_dir = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--reward", &v)) < 0) return 1; else if (r) { a.reward = v; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--reward-cmd", &v)) < 0) return 1;
    else if (r) {
      free(a.reward_owned);
      size_t n = strlen(v) + 5;
      a.reward = a.reward_owned = malloc(n);
      if (!a.reward_owned) return cli_error("out of memory");
      snprintf(a.reward_owned, n, "cmd:%s", v);
      setting = f; continue;
    }
    if ((r = cli_opt(argc, argv, &i, "--reward-timeout", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, 0.001f, 1e6f, &x)) return 1; a.timeout = x; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--generations", &v)) < 0) return 1;
    else if (r) { if (cli_i64(f, v, ppo ? 1 : 2, 1024, &k)) return 1; a.go.G = (int)k; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--missing-eos-penalty", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, -1e6f, 1e6f, &x)) return 1; a.go.missing_eos_penalty = x; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--max-new-tokens", &v)) < 0) return 1;
    else if (r) { if (cli_i64(f, v, 1, 1 << 20, &a.go.ro.max_new)) return 1; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--temperature", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, 1e-3f, 100, &a.go.ro.temperature)) return 1; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--top-p", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, 1e-6f, 1, &a.go.ro.top_p)) return 1; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--top-k", &v)) < 0) return 1;
    else if (r) { if (cli_i64(f, v, 0, 1 << 30, &a.go.ro.top_k)) return 1; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--epsilon", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, 0, 1, &x)) return 1; a.go.clip_low = x; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--epsilon-high", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, 0, 100, &x)) return 1; a.go.clip_high = x; setting = f; continue; }
    if (!strcmp(f, "--calc")) { a.go.ro.calc = 1; setting = f; continue; }
    if (!strcmp(f, "--cot")) { cot = 1; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--cot-text", &v)) < 0) return 1; else if (r) { cot_text = v; setting = f; continue; }
    if (!strcmp(f, "--eval-only")) { a.eval_only = 1; continue; }
    if (cmd->algo == LM_RL_ALGO_GRPO) {
      if ((r = cli_opt(argc, argv, &i, "--beta", &v)) < 0) return 1;
      else if (r) { if (cli_f32(f, v, 0, 1e6f, &x)) return 1; a.go.beta = x; setting = f; continue; }
      if ((r = cli_opt(argc, argv, &i, "--loss", &v)) < 0) return 1;
      else if (r) {
        a.go.loss = -1;
        for (int j = 0; j < 3; j++) if (!strcmp(v, LOSSES[j])) a.go.loss = j;
        if (a.go.loss < 0) return cli_error("unknown --loss '%s' (grpo, dapo, dr_grpo)", v);
        setting = f; continue;
      }
      if ((r = cli_opt(argc, argv, &i, "--scale-rewards", &v)) < 0) return 1;
      else if (r) {
        if ((a.go.scale = lm_rl_scale_from_name(v)) < 0) return cli_error("unknown --scale-rewards '%s' (group, batch, none)", v);
        setting = f; continue;
      }
    } else if ((r = cli_opt(argc, argv, &i, "--kl-coef", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, 0, 1e6f, &x)) return 1; a.go.kl_coef = x; setting = f; continue; }
    if (ppo && (r = ppo_flag(argc, argv, &i, &a)) < 0) return 1; else if (r) { setting = f; continue; }
    return cli_unknown(cmd->name, f);
  }
  if (a.go.clip_high < 0) a.go.clip_high = a.go.clip_low;
  if (ppo && a.value_init < 0) a.value_init = a.reward && lm_dir_exists(a.reward) ? 0 : 1;
  if (ppo && !o.resume_dir && a.value_init == 0 && a.reward && !lm_dir_exists(a.reward)) {
    free(a.reward_owned);
    return cli_error("--value-init reward needs a reward-model directory as --reward (or give --value-init policy)");
  }
  if (cot_text) a.cot = cot_text; else if (cot) a.cot = DEFAULT_COT;
  char *state = NULL, *run_dir = NULL;
  cJSON *saved = NULL;
  int rc = 0;
  if (o.resume_dir) {
    if (cli_posttrain_no_settings(setting, &seen)) { free(a.reward_owned); return 1; }
    if (cli_posttrain_resume(cmd->name, &o, &seen, &a.p, &state, &run_dir, &saved) ||
        (!args_from_json(saved, &a) && cli_posttrain_malformed(cmd->name, run_dir))) {
      cJSON_Delete(saved); free(state); free(run_dir); free(a.reward_owned); return 1;
    }
  } else {
    rc = !a.p.model ? cli_error("--policy DIR is required (see 'lmkit %s --help')", cmd->name)
       : !a.p.data ? cli_error("--prompts FILE is required (see 'lmkit %s --help')", cmd->name)
       : !a.reward ? cli_error("--reward SPEC or --reward-cmd CMD is required (see 'lmkit %s --help')", cmd->name)
       : !o.out_dir && !a.eval_only ? cli_error("--out DIR is required (see 'lmkit %s --help')", cmd->name)
       : a.p.eval && a.p.val_fraction > 0 ? cli_error("give --eval FILE or --val-fraction F, not both")
       : a.eval_only && !a.p.eval && !(a.p.val_fraction > 0) ? cli_error("--eval-only needs --eval FILE or --val-fraction F")
       : 0;
    if (rc) { free(a.reward_owned); return rc; }
  }
  lm_set_threads((int)seen.threads);
  lm_model *m = NULL, *ref = NULL, *value = NULL;
  lm_tokenizer *tok = NULL;
  lm_chat_config cc = {0};
  lm_rl_tasks train = {0}, eval = {0};
  lm_rewarder *rw = NULL;
  char err[256] = "";
  a.go.err = err;
#define FAIL() do { rc = cli_fail(); goto done; } while (0)
  if (lm_model_load(&m, a.p.model)) FAIL();
  if ((rc = cli_posttrain_decoder(m, a.p.model, cmd->name))) goto done;
  if ((rc = cli_posttrain_chat(m, &a.p, &tok, &cc))) goto done;
  if (a.go.ro.max_new >= a.p.max_length)
    { rc = cli_error("--max-new-tokens %lld leaves no room for a prompt in --max-length %lld", (long long)a.go.ro.max_new, (long long)a.p.max_length); goto done; }
  if (lm_rewarder_open(&rw, a.reward, a.timeout)) FAIL();
  int32_t stop[LM_CHAT_MAX_STOP];
  int n_stop = 0;
  if (lm_chat_stop_tokens(&cc, tok, lm_model_config(m), stop, LM_CHAT_MAX_STOP, &n_stop)) FAIL();
  int64_t eot = lm_tokenizer_eot(tok);
  if (eot >= 0 && n_stop < LM_CHAT_MAX_STOP) {
    int have = 0;
    for (int i = 0; i < n_stop; i++) have |= stop[i] == eot;
    if (!have) stop[n_stop++] = (int32_t)eot;
  }
  a.go.ro.stop = stop; a.go.ro.n_stop = n_stop;
  int64_t max_prompt = a.p.max_length - a.go.ro.max_new;
  if (lm_rl_tasks_read(&train, a.p.data, &cc, tok, a.cot, max_prompt, rw)) FAIL();
  if (a.p.eval) { if (lm_rl_tasks_read(&eval, a.p.eval, &cc, tok, a.cot, max_prompt, rw)) FAIL(); }
  else if (a.p.val_fraction > 0 && lm_rl_tasks_split(&train, a.p.val_fraction, o.seed, &eval)) FAIL();
  if (a.eval_only) {   /* the held-out reward of the policy as it is */
    lm_objective obj;
    lm_grpo_opts keep = a.go;
    a.go.B = 1; a.go.G = 2; a.go.algo = LM_RL_ALGO_GRPO;   /* evaluation is the same for every algorithm */
    rl_ctx ctx = {&a, NULL, &train, &eval, rw};
    a.go.beta = a.go.kl_coef = a.go.target_kl = 0;
    if (factory(&obj, m, tok, &o, NULL, NULL, &ctx)) FAIL();
    double vl = obj.evaluate(obj.self, m, 0);
    obj.free(obj.self);
    a.go = keep;
    if (vl != vl) { rc = cli_error("%s", err[0] ? err : "evaluation failed"); goto done; }
    printf("{\"val_reward\": %.6g, \"val_tasks\": %lld}\n", -vl, (long long)eval.n);
    goto done;
  }
  cJSON *j = NULL;
  /* PPO: a trainer step is one mini-batch of an iteration of ppo_epochs x mini_batches steps */
  int64_t iter = ppo ? (int64_t)a.go.ppo_epochs * a.go.mini_batches : 1;
  int64_t per_epoch = ppo ? (train.n + o.batch * o.grad_accum * a.go.mini_batches - 1) / (o.batch * o.grad_accum * a.go.mini_batches) * iter
                          : (train.n + o.batch - 1) / o.batch;
  if (!state) {
    cli_train_finish(&o, &seen, per_epoch);
    if ((j = cli_posttrain_json(cmd->name, &a.p))) { args_to_json(j, &a); cli_posttrain_json_end(j, &a.p, &o); }
  } else cli_train_finish(&o, &seen, 1);
  if (ppo) {
    const char *bad = o.steps % iter ? "--steps" : o.save_every % iter ? "--save-every" : o.eval_every % iter ? "--eval-every" : NULL;
    if (bad) { rc = cli_error("%s must be a multiple of --ppo-epochs x --mini-batches (%lld): checkpoints and evaluations "
                              "fall between PPO iterations", bad, (long long)iter); cJSON_Delete(j); goto done; }
  }
  if ((rc = cli_posttrain_save(o.out_dir, saved, j))) goto done;
  o.context = a.p.max_length;
  if (ppo && value_load(&value, &a, state, o.seed)) FAIL();
  a.go.value = value;
  if (a.go.beta != 0 || a.go.kl_coef != 0 || a.go.target_kl > 0) {   /* the reference: the starting policy, frozen */
    if (state) { ref = m; m = NULL; if (lm_model_load(&m, state)) FAIL(); }
    else if (lm_model_load(&ref, a.p.model)) FAIL();
  } else if (state) {
    lm_model_free(m); m = NULL;
    if (lm_model_load(&m, state)) FAIL();
  }
  char plan[1200];
  cli_posttrain_plan(plan, sizeof plan, &o, state);
  fprintf(stderr, "lmkit %s: %lld tasks, %lld held out; reward %s; %d completions per task of up to %lld tokens%s%s; "
          "%s; %d threads\n", cmd->name, (long long)train.n, (long long)eval.n, lm_rewarder_name(rw), a.go.G,
          (long long)a.go.ro.max_new, a.go.ro.calc ? ", calculator on" : "", a.cot ? ", chain-of-thought prompt" : "",
          plan, lm_get_threads());
  {
    rl_ctx ctx = {&a, ref, &train, &eval, rw};
    if (lm_train_run(m, tok, &o, factory, &ctx, NULL, NULL)) {
      if (err[0]) rc = cli_error("%s", err);
      else FAIL();
      goto done;
    }
  }
  rc = cli_posttrain_finish(cmd->name, a.p.model, o.out_dir, &cc, 0, 0);
#undef FAIL
done:
  lm_rl_tasks_free(&train); lm_rl_tasks_free(&eval);
  lm_rewarder_free(rw);
  lm_chat_config_free(&cc);
  lm_tokenizer_free(tok);
  lm_model_free(m); lm_model_free(ref); lm_model_free(value);
  cJSON_Delete(saved);
  free(state); free(run_dir); free(a.reward_owned);
  return rc;
}

int cli_rl_main(int algo, int argc, char **argv);   /* cli/cmd_rloo.c and cli/cmd_ppo.c call it */
int cli_rl_main(int algo, int argc, char **argv) { return rl_main(&COMMANDS[algo], argc, argv); }
int cmd_grpo(int argc, char **argv) { return rl_main(&COMMANDS[0], argc, argv); }
