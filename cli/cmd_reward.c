/* cmd_reward.c — `lmkit reward`: trains a reward model on preference pairs
 * (src/train/objectives/reward.c, docs/posttraining.md "Reward model"). The
 * starting model (usually the SFT model) gets the scalar head; the result is a
 * GPT2ForSequenceClassification directory (num_labels 1) with the tokenizer
 * and chat template, which `lmkit score` reads. The run's settings go to
 * OUT/posttrain.json so that --resume needs nothing else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "cli.h"
#include "base/base.h"
#include "model/heads.h"
#include "model/lora.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/posttrain.h"

static const char *HELP =
  "usage: lmkit reward --model SFT --data PREFS.jsonl --out DIR [options]\n"
  "       lmkit reward --resume DIR [--steps N] [--threads N]\n"
  "\n"
  "Trains a reward model: the model (e.g. from 'lmkit sft') gets a scalar head that\n"
  "reads one number at the last token of a conversation, trained on preference\n"
  "pairs with the Bradley-Terry loss -log sigmoid(r_chosen - r_rejected - margin)\n"
  "(+ C * (r_chosen + r_rejected)^2 with --center-rewards C). Each side is the\n"
  "prompt and its response rendered with the model's chat template (ChatML when it\n"
  "has none). Held-out pair accuracy and mean margin are reported. DIR is a\n"
  "GPT2ForSequenceClassification model (num_labels 1) with the tokenizer and chat\n"
  "template; score conversations with 'lmkit score --model DIR'.\n"
  "\n"
  "data (JSONL, one record per line; see docs/posttraining.md):\n"
  "  {\"prompt\": P, \"chosen\": R, \"rejected\": R, \"margin\": M}   P a string (a user\n"
  "      message) or a message list; R a string (an assistant message) or a message\n"
  "      list; margin optional\n"
  "  {\"chosen\": [messages], \"rejected\": [messages]}   the shared messages are the prompt\n"
  "  {\"chosen\": \"\\n\\nHuman: ...\\n\\nAssistant: ...\", \"rejected\": ...}   Anthropic hh-rlhf\n"
  "  A pair with an empty response, identical responses, or a side longer than\n"
  "  --max-length is counted and skipped; a malformed record is an error (file:line).\n"
  "\n"
  "options:\n"
  "  --model DIR          the starting model (a decoder and its tokenizer)\n"
  "  --data FILE          training pairs\n"
  "  --out DIR            where the reward model, checkpoints and metrics.jsonl go\n"
  "  --eval FILE          held-out pairs (val_loss, val_accuracy, val_margin in metrics)\n"
  "  --val-fraction F     hold out this share of --data instead (0: none without --eval)\n"
  "  --max-length N       longest side of a pair in tokens (the model's positions, at most 1024)\n"
  "  --center-rewards C   TRL's center_rewards_coefficient: C * mean (r_c + r_r)^2 (0)\n"
  "  --adapter DIR        go on training this LoRA adapter (a PEFT directory) on --model\n"
  "  (--batch counts pairs: each micro-batch holds 2 x batch sequences)\n"
  "With --lora-rank R the base is frozen and LoRA adapters train with the scalar head\n"
  "(PEFT's modules_to_save): DIR is then the adapter; score with\n"
  "'lmkit score --adapter DIR', or 'lmkit lora merge' it into a full reward model.\n";

typedef struct {
  cli_posttrain p;      /* with --lora-rank the adapter trains with the head, OUT holds both */
  float center;
} reward_args;

typedef struct {
  lm_pref_data *train, *eval;
  reward_args *a;
  int32_t pad;
  lm_reward_eval last;
} reward_ctx;

static lm_status factory(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o, lm_rng *rng,
                         const int64_t *cursor, void *ctx) {
  (void)tok; (void)rng;
  reward_ctx *c = ctx;
  lm_reward_opts ro = {.B = o->batch, .T = c->a->p.max_length, .center = c->a->center, .pad = c->pad, .seed = o->seed};
  return lm_objective_reward(obj, m, c->train, c->eval && c->eval->n ? c->eval : NULL, &ro, cursor, &c->last);
}

int cmd_reward(int argc, char **argv) {
  reward_args a = {0};
  lm_train_opts o;
  cli_posttrain_opts(&o, "reward", 1e-5f);
  cli_train_seen seen = {0};
  const char *v, *setting = NULL;
  int r;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    if (cli_is_help(f)) return cli_posttrain_help(HELP);
    if ((r = cli_train_flag(argc, argv, &i, &o, &seen)) < 0) return 1; else if (r) continue;
    if ((r = cli_posttrain_flag(argc, argv, &i, &a.p)) < 0) return 1; else if (r) { setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--out", &v)) < 0) return 1; else if (r) { o.out_dir = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--center-rewards", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, 0, 1e6f, &a.center)) return 1; setting = f; continue; }
    return cli_unknown("reward", f);
  }
  char *state = NULL, *run_dir = NULL;
  cJSON *saved = NULL;
  if (o.resume_dir) {
    if (cli_posttrain_no_settings(setting, &seen)) return 1;
    const cJSON *c = NULL;
    if (cli_posttrain_resume("reward", &o, &seen, &a.p, &state, &run_dir, &saved) ||
        (!cJSON_IsNumber(c = cJSON_GetObjectItemCaseSensitive(saved, "center_rewards")) &&
         cli_posttrain_malformed("reward", run_dir))) {
      cJSON_Delete(saved); free(state); free(run_dir); return 1;
    }
    a.center = (float)c->valuedouble;
  } else if (cli_posttrain_check("reward", &a.p, o.out_dir, 1)) return 1;
  lm_set_threads((int)seen.threads);
  int rc = 0;
  lm_model *m = NULL;
  lm_tokenizer *tok = NULL;
  lm_chat_config cc = {0};
  lm_pref_data train = {0}, eval = {0};
#define FAIL() do { rc = cli_fail(); goto done; } while (0)
  /* a resumed run continues from its checkpoint (a reward model already); a new one puts the
   * scalar head on the starting model. With LoRA the base gets the scalar head and the adapter
   * (new, --adapter's, or the checkpoint's) trains with a copy of that head (modules_to_save). */
  int lora = a.p.lora.rank > 0 || a.p.adapter || a.p.lora_run;
  if (state && !lora ? lm_model_load(&m, state) : lm_model_load_head(&m, a.p.model, LM_HEAD_SCALAR, 1, o.seed)) FAIL();
  if (m->cfg.head != LM_HEAD_SCALAR) { rc = cli_error("%s is not a reward model (its head is %s)", state, lm_head_name(m->cfg.head)); goto done; }
  if (lora && (rc = cli_posttrain_lora(m, "reward", &a.p, state, o.seed, " (the scalar head's included)", ""))) goto done;
  if ((rc = cli_posttrain_chat(m, &a.p, &tok, &cc))) goto done;
  int64_t eot = lm_tokenizer_eot(tok);
  /* padding: the end-of-text token, as TRL sets pad = eos; recorded so that transformers batches too */
  if (m->cfg.pad_token_id < 0) m->cfg.pad_token_id = eot >= 0 ? eot : 0;
  if ((rc = cli_posttrain_prefs("reward", &a.p, &cc, tok, o.seed, &train, &eval))) goto done;
  {
    int64_t per_epoch = (train.n + o.batch - 1) / o.batch;
    per_epoch = (per_epoch + o.grad_accum - 1) / o.grad_accum;
    cli_train_finish(&o, &seen, per_epoch);
    o.context = a.p.max_length;
    cJSON *j = NULL;
    if (!state && (j = cli_posttrain_json("reward", &a.p))) {
      cJSON_AddNumberToObject(j, "center_rewards", a.center);
      cli_posttrain_json_end(j, &a.p, &o);
    }
    /* a resumed run into another directory takes its settings along, so that it can be resumed too */
    if ((rc = cli_posttrain_save(o.out_dir, state ? saved : NULL, j))) goto done;
    char plan[1200];
    cli_posttrain_plan(plan, sizeof plan, &o, state);
    fprintf(stderr, "lmkit reward: %lld pairs (%s), %lld held out; %s; %d threads\n", (long long)train.n, cc.source,
            (long long)eval.n, plan, lm_get_threads());
    reward_ctx ctx = {&train, &eval, &a, (int32_t)m->cfg.pad_token_id, {0}};
    if (lm_train_run(m, tok, &o, factory, &ctx, NULL, NULL)) FAIL();
    if (ctx.last.pairs)
      fprintf(stderr, "lmkit reward: held-out pair accuracy %.4f over %lld pairs, mean margin %.4f (chosen %.4f, "
              "rejected %.4f)\n", ctx.last.accuracy, (long long)ctx.last.pairs, ctx.last.margin, ctx.last.chosen,
              ctx.last.rejected);
  }
  rc = cli_posttrain_finish("reward", a.p.model, o.out_dir, &cc, 0, lora);
#undef FAIL
done:
  lm_pref_data_free(&train); lm_pref_data_free(&eval);
  lm_chat_config_free(&cc);
  lm_tokenizer_free(tok);
  lm_model_free(m);
  cJSON_Delete(saved);
  free(state); free(run_dir);
  return rc;
}
