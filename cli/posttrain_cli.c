/* posttrain_cli.c — what `lmkit sft`, `lmkit reward` and `lmkit dpo` share
 * (cli.h cli_posttrain): their common flags, the posttrain.json settings of a
 * run for --resume, LoRA on the base, the chat template and tokenizer, the
 * preference data and the messages these commands print. */
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

void cli_posttrain_opts(lm_train_opts *o, const char *objective, float lr) {
  lm_train_opts_default(o);
  o->lr = lr; o->weight_decay = 0.0f; o->batch = 8; o->eval_batches = 0; o->val_fraction = 0;
  o->objective = objective; o->keep_checkpoints = 3;
}

int cli_posttrain_help(const char *help) {
  fputs(help, stdout); fputs(CLI_TRAIN_FLAGS_HELP, stdout); fputs(CLI_LORA_FLAGS_HELP, stdout);
  return 0;
}

int cli_posttrain_flag(int argc, char **argv, int *i, cli_posttrain *p) {
  const char *f = argv[*i], *v;
  int r;
  if ((r = cli_lora_flag(argc, argv, i, &p->lora))) return r;
  if ((r = cli_opt(argc, argv, i, "--adapter", &v)) > 0) p->adapter = v;
  else if (!r && (r = cli_opt(argc, argv, i, "--model", &v)) > 0) p->model = v;
  else if (!r && (r = cli_opt(argc, argv, i, "--data", &v)) > 0) p->data = v;
  else if (!r && (r = cli_opt(argc, argv, i, "--eval", &v)) > 0) p->eval = v;
  else if (!r && (r = cli_opt(argc, argv, i, "--val-fraction", &v)) > 0) r = cli_f32(f, v, 0, 0.9f, &p->val_fraction) ? -1 : 1;
  else if (!r && (r = cli_opt(argc, argv, i, "--max-length", &v)) > 0) r = cli_i64(f, v, 2, 1 << 20, &p->max_length) ? -1 : 1;
  return r;
}

int cli_posttrain_no_settings(const char *setting, const cli_train_seen *seen) {
  if (!setting && !seen->hyper) return 0;
  return cli_error("%s cannot be given with --resume: the run's settings come from its posttrain.json and "
                   "trainer_state.json", setting ? setting : seen->hyper);
}

int cli_posttrain_check(const char *cmd, const cli_posttrain *p, const char *out, int one_eval) {
  if (!p->model) return cli_error("--model DIR is required (see 'lmkit %s --help')", cmd);
  if (!p->data) return cli_error("--data FILE is required (see 'lmkit %s --help')", cmd);
  if (!out) return cli_error("--out DIR is required (see 'lmkit %s --help')", cmd);
  if (one_eval && p->eval && p->val_fraction > 0) return cli_error("give --eval FILE or --val-fraction F, not both");
  if (cli_lora_check(&p->lora)) return 1;
  if (p->adapter && p->lora.rank) return cli_error("--adapter DIR goes on training that adapter: %s cannot be given with it", p->lora.seen);
  return 0;
}

cJSON *cli_posttrain_json(const char *cmd, const cli_posttrain *p) {
  cJSON *j = cJSON_CreateObject();
  if (!j) return NULL;
  cJSON_AddStringToObject(j, "command", cmd);
  cJSON_AddStringToObject(j, "model", p->model);
  cJSON_AddStringToObject(j, "data", p->data);
  if (p->eval) cJSON_AddStringToObject(j, "eval", p->eval);
  cJSON_AddNumberToObject(j, "val_fraction", p->val_fraction);
  cJSON_AddNumberToObject(j, "max_length", (double)p->max_length);
  return j;
}

/* The run's evaluation and checkpoint cadence and how many checkpoints it keeps: not among the
 * trainer's saved settings (the caller's, as in `lmkit train`), so posttrain.json holds them and
 * `--resume RUN` alone keeps them; one given again on --resume replaces the saved value, here too. */
static const char *const CADENCE[] = {"eval_every", "save_every", "keep_checkpoints"};

static int64_t *cadence_opt(lm_train_opts *o, int i) {
  return i == 0 ? &o->eval_every : i == 1 ? &o->save_every : &o->keep_checkpoints;
}

static int *cadence_seen(cli_train_seen *s, int i) {
  return i == 0 ? &s->eval_every : i == 1 ? &s->save_every : &s->keep_checkpoints;
}

void cli_posttrain_json_end(cJSON *j, const cli_posttrain *p, const lm_train_opts *o) {
  const int64_t v[3] = {o->eval_every, o->save_every, o->keep_checkpoints};
  for (int i = 0; i < 3; i++) cJSON_AddNumberToObject(j, CADENCE[i], (double)v[i]);
  if (p->lora.rank || p->adapter) {   /* a LoRA run: checkpoints hold the adapter, the base is "model" */
    cJSON *l = cJSON_AddObjectToObject(j, "lora");
    if (p->adapter) cJSON_AddStringToObject(l, "adapter", p->adapter);
    else {
      cJSON_AddNumberToObject(l, "r", (double)p->lora.rank);
      cJSON_AddNumberToObject(l, "alpha", p->lora.alpha > 0 ? p->lora.alpha : 2.0 * (double)p->lora.rank);
      cJSON_AddStringToObject(l, "targets", p->lora.targets ? p->lora.targets : "all-linear");
    }
  }
}

int cli_posttrain_save(const char *out, cJSON *saved, cJSON *fresh) {
  cJSON *j = saved ? saved : fresh;
  lm_status st = j ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st) st = lm_mkdir_p(out);
  if (!st) st = lm_posttrain_save_args(out, j);
  cJSON_Delete(fresh);
  return st ? cli_fail() : 0;
}

int cli_posttrain_resume(const char *cmd, lm_train_opts *o, cli_train_seen *seen, cli_posttrain *p, char **state,
                         char **run_dir, cJSON **saved) {
  if (lm_posttrain_resume(o->resume_dir, cmd, state, run_dir, saved)) return cli_fail();
  const cJSON *j = *saved;
#define GET(name) cJSON_GetObjectItemCaseSensitive(j, name)
  const cJSON *m = GET("model"), *d = GET("data"), *e = GET("eval"), *vf = GET("val_fraction"), *ml = GET("max_length");
  if (!cJSON_IsString(m) || !cJSON_IsString(d) || (e && !cJSON_IsString(e)) || !cJSON_IsNumber(vf) || !cJSON_IsNumber(ml))
    return cli_posttrain_malformed(cmd, *run_dir);
  p->model = m->valuestring; p->data = d->valuestring; p->eval = e ? e->valuestring : NULL;
  p->val_fraction = (float)vf->valuedouble; p->max_length = (int64_t)ml->valuedouble;
  p->lora_run = cJSON_IsObject(GET("lora"));   /* the adapter comes from the checkpoint */
  /* the cadence: the saved one, or the one given now (saved for the next resume); a run written
   * before lmkit saved it (no key) takes the command's defaults, as it did then */
  for (int i = 0; i < 3; i++) {
    cJSON *v = GET(CADENCE[i]);
    if (v && !(cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= (double)(INT64_MAX / 2)))
      return cli_posttrain_malformed(cmd, *run_dir);
    if (*cadence_seen(seen, i)) {
      cJSON_DeleteItemFromObjectCaseSensitive(*saved, CADENCE[i]);
      if (!cJSON_AddNumberToObject(*saved, CADENCE[i], (double)*cadence_opt(o, i))) return cli_error("out of memory");
    } else if (v) {
      *cadence_opt(o, i) = (int64_t)v->valuedouble;
      *cadence_seen(seen, i) = 1;
    }
  }
#undef GET
  if (!o->out_dir) o->out_dir = *run_dir;
  o->resume_dir = *state;
  return 0;
}

int cli_posttrain_malformed(const char *cmd, const char *run_dir) {
  return cli_error("%s/posttrain.json: malformed settings of an 'lmkit %s' run", run_dir, cmd);
}

int cli_posttrain_lora(lm_model *m, const char *cmd, const cli_posttrain *p, const char *state, uint64_t seed,
                       const char *what, const char *tail) {
  if (state ? lm_lora_load(m, state) : p->adapter ? lm_lora_load(m, p->adapter) : 0) return cli_fail();
  if (!state && !p->adapter && cli_lora_attach(m, &p->lora, p->model, seed)) return 1;
  int64_t r, n;
  float alpha;
  lm_lora_info(m, &r, &alpha, &n);
  fprintf(stderr, "lmkit %s: LoRA r = %lld, alpha = %g: %lld trainable values%s, the %lld of the base frozen%s\n", cmd,
          (long long)r, alpha, (long long)n, what, (long long)lm_model_num_params(m), tail);
  return 0;
}

int cli_posttrain_decoder(const lm_model *m, const char *model, const char *what) {
  const lm_config *c = lm_model_config(m);
  if (c->head == LM_HEAD_LM && c->causal) return 0;
  return cli_error("%s is a %s model with a %s head: %s needs a decoder with an LM head", model, lm_arch_name(c->arch),
                   lm_head_name(c->head), what);
}

int cli_posttrain_chat(const lm_model *m, cli_posttrain *p, lm_tokenizer **tok, lm_chat_config *cc) {
  const lm_config *c = lm_model_config(m);
  if (!p->max_length) p->max_length = c->n_positions < 1024 ? c->n_positions : 1024;
  if (p->max_length > c->n_positions)
    return cli_error("--max-length %lld is longer than the model's %lld positions", (long long)p->max_length,
                     (long long)c->n_positions);
  if (lm_tokenizer_load(tok, p->model) || lm_chat_config_load(cc, p->model)) return cli_fail();
  if (cc->is_default && (lm_tokenizer_token_id(*tok, LM_CHATML_START) < 0 || lm_tokenizer_token_id(*tok, LM_CHATML_END) < 0))
    return cli_error("%s has no chat template and its tokenizer lacks the ChatML tokens %s and %s (tokenizers that 'lmkit "
                     "tokenizer train' makes have them)", p->model, LM_CHATML_START, LM_CHATML_END);
  return 0;
}

static void pref_skips(const char *cmd, const char *name, const lm_pref_data *d, int64_t max_length) {
  if (d->empty || d->identical || d->too_long || d->no_prompt || d->no_response)
    fprintf(stderr, "lmkit %s: %s: skipped %lld pairs with an empty response, %lld identical, %lld longer than %lld "
            "tokens, %lld without a shared prompt%s\n", cmd, name, (long long)d->empty, (long long)d->identical,
            (long long)d->too_long, (long long)max_length, (long long)d->no_prompt,
            d->no_response ? " (and some with no response token left)" : "");
}

int cli_posttrain_prefs(const char *cmd, const cli_posttrain *p, const lm_chat_config *cc, const lm_tokenizer *tok,
                        uint64_t seed, lm_pref_data *train, lm_pref_data *eval) {
  if (lm_pref_read(train, p->data, cc, tok, p->max_length)) return cli_fail();
  pref_skips(cmd, p->data, train, p->max_length);
  if (p->eval) {
    if (lm_pref_read(eval, p->eval, cc, tok, p->max_length)) return cli_fail();
    pref_skips(cmd, p->eval, eval, p->max_length);
  } else if (p->val_fraction > 0 && lm_pref_split(train, p->val_fraction, seed, eval)) return cli_fail();
  return 0;
}

void cli_posttrain_plan(char *buf, size_t n, const lm_train_opts *o, const char *state) {
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

int cli_posttrain_finish(const char *cmd, const char *model, const char *out, const lm_chat_config *cc, int keep,
                         int lora) {
  if (!cc->is_default) {   /* the tuned model keeps its base's chat template */
    char *src = lm_path_join(model, "tokenizer_config.json"), *dst = lm_path_join(out, "tokenizer_config.json");
    char *text; size_t len;
    lm_status st = src && dst ? lm_read_file(src, &text, &len) : LM_ERR_NOMEM;
    if (!st) { if (!(keep && lm_file_exists(dst))) st = lm_write_file_atomic(dst, text, len); free(text); }
    free(src); free(dst);
    if (st) return cli_fail();
  }
  if (lora && !strcmp(cmd, "reward"))
    fprintf(stderr, "lmkit reward: saved the LoRA adapter and scalar head to %s (score with 'lmkit score --adapter %s'; "
            "'lmkit lora merge --adapter %s --out DIR' writes a full reward model)\n", out, out, out);
  else if (lora)
    fprintf(stderr, "lmkit %s: saved the LoRA adapter to %s (use it with --adapter %s; 'lmkit lora merge --adapter %s "
            "--out DIR' writes a full model)\n", cmd, out, out, out);
  else fprintf(stderr, "lmkit %s: saved to %s\n", cmd, out);
  return 0;
}
