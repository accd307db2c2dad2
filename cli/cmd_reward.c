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
  const char *model, *data, *eval;
  float val_fraction, center;
  int64_t max_length;
  int64_t eval_every;   /* the run's evaluation cadence (saved so that a resumed run keeps it) */
  cli_lora lora;        /* --lora-rank ...: train an adapter (and the head), OUT holds it */
  const char *adapter;  /* --adapter: the adapter to go on training */
  int lora_run;         /* a resumed LoRA run */
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
  lm_reward_opts ro = {.B = o->batch, .T = c->a->max_length, .center = c->a->center, .pad = c->pad, .seed = o->seed};
  return lm_objective_reward(obj, m, c->train, c->eval && c->eval->n ? c->eval : NULL, &ro, cursor, &c->last);
}

static cJSON *args_json(const reward_args *a) {
  cJSON *j = cJSON_CreateObject();
  if (!j) return NULL;
  cJSON_AddStringToObject(j, "command", "reward");
  cJSON_AddStringToObject(j, "model", a->model);
  cJSON_AddStringToObject(j, "data", a->data);
  if (a->eval) cJSON_AddStringToObject(j, "eval", a->eval);
  cJSON_AddNumberToObject(j, "val_fraction", a->val_fraction);
  cJSON_AddNumberToObject(j, "max_length", (double)a->max_length);
  cJSON_AddNumberToObject(j, "center_rewards", a->center);
  cJSON_AddNumberToObject(j, "eval_every", (double)a->eval_every);
  if (a->lora.rank || a->adapter) {   /* a LoRA run: checkpoints hold the adapter and head, the base is "model" */
    cJSON *l = cJSON_AddObjectToObject(j, "lora");
    if (a->adapter) cJSON_AddStringToObject(l, "adapter", a->adapter);
    else {
      cJSON_AddNumberToObject(l, "r", (double)a->lora.rank);
      cJSON_AddNumberToObject(l, "alpha", a->lora.alpha > 0 ? a->lora.alpha : 2.0 * (double)a->lora.rank);
      cJSON_AddStringToObject(l, "targets", a->lora.targets ? a->lora.targets : "all-linear");
    }
  }
  return j;
}

/* the settings saved by the run being resumed; strings point into j */
static int args_from_json(const cJSON *j, const char *dir, reward_args *a) {
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "model"), *d = cJSON_GetObjectItemCaseSensitive(j, "data"),
              *e = cJSON_GetObjectItemCaseSensitive(j, "eval"), *vf = cJSON_GetObjectItemCaseSensitive(j, "val_fraction"),
              *ml = cJSON_GetObjectItemCaseSensitive(j, "max_length"), *c = cJSON_GetObjectItemCaseSensitive(j, "center_rewards"),
              *ee = cJSON_GetObjectItemCaseSensitive(j, "eval_every");
  if (!cJSON_IsString(m) || !cJSON_IsString(d) || (e && !cJSON_IsString(e)) || !cJSON_IsNumber(vf) ||
      !cJSON_IsNumber(ml) || !cJSON_IsNumber(c) || !cJSON_IsNumber(ee))
    return cli_error("%s/posttrain.json: malformed settings of an 'lmkit reward' run", dir);
  a->model = m->valuestring; a->data = d->valuestring; a->eval = e ? e->valuestring : NULL;
  a->val_fraction = (float)vf->valuedouble; a->max_length = (int64_t)ml->valuedouble; a->center = (float)c->valuedouble;
  a->eval_every = (int64_t)ee->valuedouble;
  a->lora_run = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "lora"));   /* the adapter comes from the checkpoint */
  return 0;
}

static void report_skips(const char *name, const lm_pref_data *d, int64_t max_length) {
  if (d->empty || d->identical || d->too_long || d->no_prompt || d->no_response)
    fprintf(stderr, "lmkit reward: %s: skipped %lld pairs with an empty response, %lld identical, %lld longer than %lld "
            "tokens, %lld without a shared prompt%s\n", name, (long long)d->empty, (long long)d->identical,
            (long long)d->too_long, (long long)max_length, (long long)d->no_prompt,
            d->no_response ? " (and some with no response token left)" : "");
}

/* "N steps of B pairs", or where a resumed run stands */
static void describe_plan(char *buf, size_t n, const lm_train_opts *o, const char *state) {
  lm_train_opts so;
  lm_train_opts_default(&so);
  int64_t at = 0;
  if (state && !lm_train_read_state(state, &so, &at))
    snprintf(buf, n, "resuming at step %lld of %lld (%lld pairs a step) from %s", (long long)at,
             (long long)(o->steps > 0 ? o->steps : so.steps), (long long)so.batch, state);
  else
    snprintf(buf, n, "%lld steps of %lld pairs", (long long)o->steps, (long long)o->batch);
  lm_clear_error();
}

int cmd_reward(int argc, char **argv) {
  reward_args a = {0};
  lm_train_opts o;
  lm_train_opts_default(&o);
  o.lr = 1e-5f; o.weight_decay = 0.0f; o.batch = 8; o.eval_batches = 0; o.val_fraction = 0;
  o.objective = "reward"; o.keep_checkpoints = 3;
  cli_train_seen seen = {0};
  const char *v, *setting = NULL;
  int r;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    if (cli_is_help(f)) { fputs(HELP, stdout); fputs(CLI_TRAIN_FLAGS_HELP, stdout); fputs(CLI_LORA_FLAGS_HELP, stdout); return 0; }
    if ((r = cli_train_flag(argc, argv, &i, &o, &seen)) < 0) return 1; else if (r) continue;
    if ((r = cli_lora_flag(argc, argv, &i, &a.lora)) < 0) return 1; else if (r) { setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--adapter", &v)) < 0) return 1; else if (r) { a.adapter = v; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--model", &v)) < 0) return 1; else if (r) { a.model = v; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--data", &v)) < 0) return 1; else if (r) { a.data = v; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--eval", &v)) < 0) return 1; else if (r) { a.eval = v; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--out", &v)) < 0) return 1; else if (r) { o.out_dir = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--val-fraction", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, 0, 0.9f, &a.val_fraction)) return 1; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--max-length", &v)) < 0) return 1;
    else if (r) { if (cli_i64(f, v, 2, 1 << 20, &a.max_length)) return 1; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--center-rewards", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, 0, 1e6f, &a.center)) return 1; setting = f; continue; }
    return cli_unknown("reward", f);
  }
  char *state = NULL, *run_dir = NULL;
  cJSON *saved = NULL;
  if (o.resume_dir) {
    if (setting || seen.hyper)
      return cli_error("%s cannot be given with --resume: the run's settings come from its posttrain.json and "
                       "trainer_state.json", setting ? setting : seen.hyper);
    if (lm_posttrain_resume(o.resume_dir, "reward", &state, &run_dir, &saved)) return cli_fail();
    if (args_from_json(saved, run_dir, &a)) { cJSON_Delete(saved); free(state); free(run_dir); return 1; }
    if (!o.out_dir) o.out_dir = run_dir;
    o.resume_dir = state;
    if (!seen.eval_every) { o.eval_every = a.eval_every; seen.eval_every = 1; }
  } else {
    if (!a.model) return cli_error("--model DIR is required (see 'lmkit reward --help')");
    if (!a.data) return cli_error("--data FILE is required (see 'lmkit reward --help')");
    if (!o.out_dir) return cli_error("--out DIR is required (see 'lmkit reward --help')");
    if (a.eval && a.val_fraction > 0) return cli_error("give --eval FILE or --val-fraction F, not both");
    if (cli_lora_check(&a.lora)) return 1;
    if (a.adapter && a.lora.rank) return cli_error("--adapter DIR goes on training that adapter: %s cannot be given with it", a.lora.seen);
  }
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
  int lora = a.lora.rank > 0 || a.adapter || a.lora_run;
  if (state && !lora ? lm_model_load(&m, state) : lm_model_load_head(&m, a.model, LM_HEAD_SCALAR, 1, o.seed)) FAIL();
  if (m->cfg.head != LM_HEAD_SCALAR) { rc = cli_error("%s is not a reward model (its head is %s)", state, lm_head_name(m->cfg.head)); goto done; }
  if (lora && (state ? lm_lora_load(m, state) : a.adapter ? lm_lora_load(m, a.adapter) : 0)) FAIL();
  if (lora && !state && !a.adapter && cli_lora_attach(m, &a.lora, a.model, o.seed)) { rc = 1; goto done; }
  if (lora) {
    int64_t r_, n_;
    float al_;
    lm_lora_info(m, &r_, &al_, &n_);
    fprintf(stderr, "lmkit reward: LoRA r = %lld, alpha = %g: %lld trainable values (the scalar head's included), the "
            "%lld of the base frozen\n", (long long)r_, al_, (long long)n_, (long long)lm_model_num_params(m));
  }
  if (!a.max_length) a.max_length = m->cfg.n_positions < 1024 ? m->cfg.n_positions : 1024;
  if (a.max_length > m->cfg.n_positions) {
    rc = cli_error("--max-length %lld is longer than the model's %lld positions", (long long)a.max_length,
                   (long long)m->cfg.n_positions);
    goto done;
  }
  if (lm_tokenizer_load(&tok, a.model) || lm_chat_config_load(&cc, a.model)) FAIL();
  if (cc.is_default && (lm_tokenizer_token_id(tok, LM_CHATML_START) < 0 || lm_tokenizer_token_id(tok, LM_CHATML_END) < 0)) {
    rc = cli_error("%s has no chat template and its tokenizer lacks the ChatML tokens %s and %s (tokenizers that 'lmkit "
                   "tokenizer train' makes have them)", a.model, LM_CHATML_START, LM_CHATML_END);
    goto done;
  }
  int64_t eot = lm_tokenizer_eot(tok);
  /* padding: the end-of-text token, as TRL sets pad = eos; recorded so that transformers batches too */
  if (m->cfg.pad_token_id < 0) m->cfg.pad_token_id = eot >= 0 ? eot : 0;
  if (lm_pref_read(&train, a.data, &cc, tok, a.max_length)) FAIL();
  report_skips(a.data, &train, a.max_length);
  if (a.eval) {
    if (lm_pref_read(&eval, a.eval, &cc, tok, a.max_length)) FAIL();
    report_skips(a.eval, &eval, a.max_length);
  } else if (a.val_fraction > 0 && lm_pref_split(&train, a.val_fraction, o.seed, &eval)) FAIL();
  {
    int64_t per_epoch = (train.n + o.batch - 1) / o.batch;
    per_epoch = (per_epoch + o.grad_accum - 1) / o.grad_accum;
    cli_train_finish(&o, &seen, per_epoch);
    o.context = a.max_length;
    a.eval_every = o.eval_every;
    {
      /* a resumed run into another directory takes its settings along, so that it can be resumed too */
      cJSON *j = state ? saved : args_json(&a);
      lm_status st = j ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
      if (!st) st = lm_mkdir_p(o.out_dir);
      if (!st) st = lm_posttrain_save_args(o.out_dir, j);
      if (!state) cJSON_Delete(j);
      if (st) FAIL();
    }
    char plan[1200];
    describe_plan(plan, sizeof plan, &o, state);
    fprintf(stderr, "lmkit reward: %lld pairs (%s), %lld held out; %s; %d threads\n", (long long)train.n, cc.source,
            (long long)eval.n, plan, lm_get_threads());
    reward_ctx ctx = {&train, &eval, &a, (int32_t)m->cfg.pad_token_id, {0}};
    if (lm_train_run(m, tok, &o, factory, &ctx, NULL, NULL)) FAIL();
    if (ctx.last.pairs)
      fprintf(stderr, "lmkit reward: held-out pair accuracy %.4f over %lld pairs, mean margin %.4f (chosen %.4f, "
              "rejected %.4f)\n", ctx.last.accuracy, (long long)ctx.last.pairs, ctx.last.margin, ctx.last.chosen,
              ctx.last.rejected);
  }
  /* the reward model keeps its base's chat template */
  if (!cc.is_default) {
    char *src = lm_path_join(a.model, "tokenizer_config.json"), *dst = lm_path_join(o.out_dir, "tokenizer_config.json");
    char *text; size_t len;
    lm_status st = src && dst ? lm_read_file(src, &text, &len) : LM_ERR_NOMEM;
    if (!st) { st = lm_write_file_atomic(dst, text, len); free(text); }
    free(src); free(dst);
    if (st) FAIL();
  }
  if (lora)
    fprintf(stderr, "lmkit reward: saved the LoRA adapter and scalar head to %s (score with 'lmkit score --adapter %s'; "
            "'lmkit lora merge --adapter %s --out DIR' writes a full reward model)\n", o.out_dir, o.out_dir, o.out_dir);
  else fprintf(stderr, "lmkit reward: saved to %s\n", o.out_dir);
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
