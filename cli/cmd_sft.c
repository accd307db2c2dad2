/* cmd_sft.c — `lmkit sft`: instruction tuning (supervised fine-tuning) of a
 * decoder on conversations, loss on the assistant's tokens only
 * (src/train/objectives/sft.c; docs/posttraining.md). This file reads the
 * flags and the data, and runs the one trainer. The run's post-training
 * settings go to OUT/posttrain.json so that --resume needs nothing else. */
#include <libgen.h>
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
  "usage: lmkit sft --model BASE --data FILE.jsonl --out DIR [options]\n"
  "       lmkit sft --resume DIR [--steps N] [--threads N]\n"
  "\n"
  "Instruction tuning: trains a decoder (e.g. from 'lmkit train') on conversations,\n"
  "with the next-token loss on the assistant's tokens only, the end-of-turn token\n"
  "included, so that the model learns to answer and to stop. Conversations are\n"
  "rendered with the model's chat template (tokenizer_config.json), or ChatML\n"
  "(<|im_start|>role\\n...<|im_end|>\\n) when it has none. The tuned model, its\n"
  "tokenizer and chat template go to --out; use it with 'lmkit generate --user'.\n"
  "\n"
  "data (JSONL, one record per line; see docs/posttraining.md):\n"
  "  {\"messages\": [{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": ...}, ...]}\n"
  "  {\"prompt\": ..., \"completion\": ...}          (strings or message lists)\n"
  "  {\"instruction\": ..., \"input\": ..., \"output\": ...}   (Alpaca)\n"
  "  A record without an assistant turn, with an empty one, or longer than\n"
  "  --max-length is counted and skipped; a malformed one is an error (file:line).\n"
  "\n"
  "options:\n"
  "  --model DIR          the base model (a decoder with an LM head, and its tokenizer)\n"
  "  --data FILE          training conversations\n"
  "  --out DIR            where the tuned model, checkpoints and metrics.jsonl go\n"
  "  --eval FILE          held-out conversations: their assistant-token loss is val_loss\n"
  "  --val-fraction F     hold out this share of --data instead (0: none without --eval)\n"
  "  --max-length N       longest conversation in tokens (the model's positions, at most 1024)\n"
  "  --packing            put several short conversations into each row of --max-length\n"
  "                       tokens; attention stays inside each, positions restart\n"
  "  --eval-only          print the assistant-token loss of --model on --eval and exit (no\n"
  "                       training: --data and --out are not needed)\n"
  "  --neftune-alpha A    NEFTune: uniform noise of size A/sqrt(T*C) on the embeddings while\n"
  "                       training (0: off; 5 is the paper's choice)\n"
  "  --adapter DIR        go on training this LoRA adapter (a PEFT directory) on --model\n";

typedef struct {
  const char *model, *data, *eval;
  float val_fraction, neftune;
  int64_t max_length;
  int packing;
  cli_lora lora;            /* --lora-rank ...: train an adapter, OUT holds it */
  const char *adapter;      /* --adapter: the adapter to go on training */
} sft_args;

typedef struct {
  lm_sft_data *train, *eval;
  sft_args *a;
  int32_t pad;
} sft_ctx;

static lm_status factory(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o, lm_rng *rng,
                         const int64_t *cursor, void *ctx) {
  (void)tok;
  sft_ctx *c = ctx;
  return lm_objective_sft(obj, m, c->train, c->eval && c->eval->n ? c->eval : NULL, o->batch, c->a->max_length,
                          c->a->packing, c->a->neftune, c->pad, o->seed, rng, cursor);
}

/* OUT/posttrain.json: what a resumed run needs besides the trainer's state */
static lm_status save_args(const char *out, const sft_args *a) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "command", "sft");
  cJSON_AddStringToObject(j, "model", a->model);
  cJSON_AddStringToObject(j, "data", a->data);
  if (a->eval) cJSON_AddStringToObject(j, "eval", a->eval);
  cJSON_AddNumberToObject(j, "val_fraction", a->val_fraction);
  cJSON_AddNumberToObject(j, "max_length", (double)a->max_length);
  cJSON_AddBoolToObject(j, "packing", a->packing);
  cJSON_AddNumberToObject(j, "neftune_alpha", a->neftune);
  if (a->lora.rank || a->adapter) {   /* a LoRA run: checkpoints hold the adapter, the base is "model" */
    cJSON *l = cJSON_AddObjectToObject(j, "lora");
    if (a->adapter) cJSON_AddStringToObject(l, "adapter", a->adapter);
    else {
      cJSON_AddNumberToObject(l, "r", (double)a->lora.rank);
      cJSON_AddNumberToObject(l, "alpha", a->lora.alpha > 0 ? a->lora.alpha : 2.0 * (double)a->lora.rank);
      cJSON_AddStringToObject(l, "targets", a->lora.targets ? a->lora.targets : "all-linear");
    }
  }
  char *text = cJSON_Print(j);
  cJSON_Delete(j);
  char *path = lm_path_join(out, "posttrain.json");
  lm_status st = text && path ? lm_write_file_atomic(path, text, strlen(text)) : LM_ERR_NOMEM;
  free(text); free(path);
  return st;
}

/* reads posttrain.json from the resumed directory or the run directory above it */
static lm_status load_args(const char *dir, sft_args *a, char **keep) {
  char *copy = lm_strdup(dir), *path = lm_path_join(dir, "posttrain.json");
  if (!copy || !path) { free(copy); free(path); return LM_ERR_NOMEM; }
  if (!lm_file_exists(path)) { free(path); path = lm_path_join(dirname(copy), "posttrain.json"); }
  free(copy);
  char *text; size_t len;
  lm_status st = path ? lm_read_file(path, &text, &len) : LM_ERR_NOMEM;
  if (st) { free(path); return lm_error_prefix(st, "cannot resume: no posttrain.json in %s or above it", dir); }
  cJSON *j = cJSON_ParseWithLength(text, len);
  free(text);
  const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(j, "command"), *m = cJSON_GetObjectItemCaseSensitive(j, "model"),
              *d = cJSON_GetObjectItemCaseSensitive(j, "data"), *e = cJSON_GetObjectItemCaseSensitive(j, "eval"),
              *vf = cJSON_GetObjectItemCaseSensitive(j, "val_fraction"), *ml = cJSON_GetObjectItemCaseSensitive(j, "max_length"),
              *pk = cJSON_GetObjectItemCaseSensitive(j, "packing"), *nf = cJSON_GetObjectItemCaseSensitive(j, "neftune_alpha");
  if (!cJSON_IsString(cmd) || strcmp(cmd->valuestring, "sft") || !cJSON_IsString(m) || !cJSON_IsString(d) ||
      !cJSON_IsNumber(vf) || !cJSON_IsNumber(ml) || !cJSON_IsBool(pk) || !cJSON_IsNumber(nf)) {
    cJSON_Delete(j);
    st = lm_error(LM_ERR_FORMAT, "%s: not the settings of an 'lmkit sft' run", path);
    free(path);
    return st;
  }
  free(path);
  /* the strings live in one buffer the caller frees */
  size_t n1 = strlen(m->valuestring) + 1, n2 = strlen(d->valuestring) + 1, n3 = cJSON_IsString(e) ? strlen(e->valuestring) + 1 : 0;
  char *buf = malloc(n1 + n2 + n3 + 1);
  if (!buf) { cJSON_Delete(j); return LM_ERR_NOMEM; }
  memcpy(buf, m->valuestring, n1); memcpy(buf + n1, d->valuestring, n2);
  if (n3) memcpy(buf + n1 + n2, e->valuestring, n3);
  a->model = buf; a->data = buf + n1; a->eval = n3 ? buf + n1 + n2 : NULL;
  a->val_fraction = (float)vf->valuedouble; a->max_length = (int64_t)ml->valuedouble;
  a->packing = cJSON_IsTrue(pk); a->neftune = (float)nf->valuedouble;
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "lora");
  if (cJSON_IsObject(l)) {   /* which adapter the checkpoint holds comes from the checkpoint itself */
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(l, "r");
    a->lora.rank = cJSON_IsNumber(lr) && lr->valuedouble >= 1 ? (int64_t)lr->valuedouble : 1;
  }
  *keep = buf;
  cJSON_Delete(j);
  return LM_OK;
}

static void report_skips(const char *name, const lm_chat_set *s, const lm_sft_data *d, int64_t max_length) {
  if (s->no_assistant || s->empty || d->too_long || d->no_loss)
    fprintf(stderr, "lmkit sft: %s: skipped %lld without an assistant turn, %lld with an empty one, %lld longer than %lld "
            "tokens%s\n", name, (long long)s->no_assistant, (long long)s->empty, (long long)d->too_long,
            (long long)max_length, d->no_loss ? " (and some with no assistant token left)" : "");
}

int cmd_sft(int argc, char **argv) {
  sft_args a = {0};
  lm_train_opts o;
  lm_train_opts_default(&o);
  o.lr = 1e-4f; o.weight_decay = 0.0f; o.batch = 8; o.eval_batches = 0; o.val_fraction = 0;
  o.objective = "sft"; o.keep_checkpoints = 3;
  cli_train_seen seen = {0};
  int eval_only = 0;
  const char *v, *setting = NULL;
  int r;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    if (cli_is_help(f)) { fputs(HELP, stdout); fputs(CLI_TRAIN_FLAGS_HELP, stdout); fputs(CLI_LORA_FLAGS_HELP, stdout); return 0; }
    if ((r = cli_train_flag(argc, argv, &i, &o, &seen)) < 0) return 1; else if (r) continue;
    if (!strcmp(f, "--packing")) { a.packing = 1; setting = f; continue; }
    if (!strcmp(f, "--eval-only")) { eval_only = 1; continue; }
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
    if ((r = cli_opt(argc, argv, &i, "--neftune-alpha", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, 0, 1000, &a.neftune)) return 1; setting = f; continue; }
    return cli_unknown("sft", f);
  }
  char *keep = NULL;
  if (o.resume_dir) {
    if (setting || seen.hyper)
      return cli_error("%s cannot be given with --resume: the run's settings come from its posttrain.json and "
                       "trainer_state.json", setting ? setting : seen.hyper);
    if (load_args(o.resume_dir, &a, &keep)) return cli_fail();
    if (!o.out_dir) o.out_dir = o.resume_dir;
  } else if (eval_only) {
    if (!a.model || !a.eval) return cli_error("--eval-only needs --model DIR and --eval FILE");
  } else {
    if (!a.model) return cli_error("--model DIR is required (see 'lmkit sft --help')");
    if (!a.data) return cli_error("--data FILE is required (see 'lmkit sft --help')");
    if (!o.out_dir) return cli_error("--out DIR is required (see 'lmkit sft --help')");
    if (cli_lora_check(&a.lora)) return 1;
    if (a.adapter && a.lora.rank) return cli_error("--adapter DIR goes on training that adapter: %s cannot be given with it", a.lora.seen);
  }
  lm_set_threads((int)seen.threads);
  int rc = 0;
  lm_model *m = NULL;
  lm_tokenizer *tok = NULL;
  lm_chat_config cc = {0};
  lm_chat_set set = {0}, eset = {0};
  lm_sft_data train = {0}, eval = {0};
#define FAIL() do { rc = cli_fail(); goto done; } while (0)
  /* a resumed run continues from its checkpoint's weights (with LoRA: the base + the checkpoint's
   * adapter); the template and tokenizer are the base's */
  int lora = a.lora.rank > 0 || a.adapter;
  if (lm_model_load(&m, o.resume_dir && !lora ? o.resume_dir : a.model)) FAIL();
  const lm_config *c = lm_model_config(m);
  if (c->head != LM_HEAD_LM || !c->causal) {
    rc = cli_error("%s is a %s model with a %s head: instruction tuning needs a decoder with an LM head", a.model,
                   lm_arch_name(c->arch), lm_head_name(c->head));
    goto done;
  }
  if (lora && o.resume_dir ? lm_lora_load(m, o.resume_dir) : a.adapter ? lm_lora_load(m, a.adapter) : 0) FAIL();
  if (lora && !o.resume_dir && !a.adapter && cli_lora_attach(m, &a.lora, a.model, o.seed)) { rc = 1; goto done; }
  if (lora) {
    int64_t r_, n_;
    float al_;
    lm_lora_info(m, &r_, &al_, &n_);
    fprintf(stderr, "lmkit sft: LoRA r = %lld, alpha = %g: %lld trainable values, the %lld of the base frozen\n",
            (long long)r_, al_, (long long)n_, (long long)lm_model_num_params(m));
  }
  if (!a.max_length) a.max_length = c->n_positions < 1024 ? c->n_positions : 1024;
  if (a.max_length > c->n_positions) {
    rc = cli_error("--max-length %lld is longer than the model's %lld positions", (long long)a.max_length,
                   (long long)c->n_positions);
    goto done;
  }
  if (lm_tokenizer_load(&tok, a.model) || lm_chat_config_load(&cc, a.model)) FAIL();
  if (cc.is_default && (lm_tokenizer_token_id(tok, LM_CHATML_START) < 0 || lm_tokenizer_token_id(tok, LM_CHATML_END) < 0)) {
    rc = cli_error("%s has no chat template and its tokenizer lacks the ChatML tokens %s and %s (tokenizers that 'lmkit "
                   "tokenizer train' makes have them)", a.model, LM_CHATML_START, LM_CHATML_END);
    goto done;
  }
  if (eval_only) {   /* the loss of the model as it is, on the held-out conversations */
    if (lm_chat_read(a.eval, &eset) || lm_sft_encode(&eval, &eset, &cc, tok, a.max_length, a.eval)) FAIL();
    report_skips(a.eval, &eset, &eval, a.max_length);
    lm_objective obj;
    lm_rng rng;
    lm_rng_seed(&rng, o.seed);
    int64_t pad = lm_tokenizer_eot(tok);
    if (lm_objective_sft(&obj, m, &eval, &eval, o.batch, a.max_length, 0, 0, (int32_t)(pad >= 0 ? pad : 0), o.seed, &rng, NULL))
      FAIL();
    double loss = obj.evaluate(obj.self, m, 0);
    obj.free(obj.self);
    int64_t n_tgt = 0;
    for (int64_t i = 0; i < eval.n; i++)
      for (int64_t t = eval.off[i] + 1; t < eval.off[i + 1]; t++) n_tgt += eval.mask[t];
    printf("{\"val_loss\": %.6f, \"conversations\": %lld, \"assistant_tokens\": %lld}\n", loss, (long long)eval.n, (long long)n_tgt);
    goto done;
  }
  if (lm_chat_read(a.data, &set) || lm_sft_encode(&train, &set, &cc, tok, a.max_length, a.data)) FAIL();
  report_skips(a.data, &set, &train, a.max_length);
  if (a.eval) {
    if (lm_chat_read(a.eval, &eset) || lm_sft_encode(&eval, &eset, &cc, tok, a.max_length, a.eval)) FAIL();
    report_skips(a.eval, &eset, &eval, a.max_length);
  } else if (a.val_fraction > 0 && lm_sft_split(&train, a.val_fraction, o.seed, &eval)) FAIL();
  {
    int64_t pad = lm_tokenizer_eot(tok);
    int64_t tokens = train.off[train.n], per_epoch;
    if (a.packing) per_epoch = (tokens + o.batch * a.max_length - 1) / (o.batch * a.max_length);
    else per_epoch = (train.n + o.batch - 1) / o.batch;
    per_epoch = (per_epoch + o.grad_accum - 1) / o.grad_accum;
    cli_train_finish(&o, &seen, per_epoch);
    o.context = a.max_length;
    if (!o.resume_dir && (lm_mkdir_p(o.out_dir) || save_args(o.out_dir, &a))) FAIL();
    fprintf(stderr, "lmkit sft: %lld conversations (%lld tokens, %s), %lld held out; %lld steps of %lld x %lld%s; %d threads\n",
            (long long)train.n, (long long)tokens, cc.source, (long long)eval.n, (long long)o.steps, (long long)o.batch,
            (long long)a.max_length, a.packing ? " packed" : "", lm_get_threads());
    sft_ctx ctx = {&train, &eval, &a, (int32_t)(pad >= 0 ? pad : 0)};
    if (lm_train_run(m, tok, &o, factory, &ctx, NULL, NULL)) FAIL();
  }
  /* the tuned model keeps its base's chat template */
  if (!cc.is_default) {
    char *src = lm_path_join(a.model, "tokenizer_config.json"), *dst = lm_path_join(o.out_dir, "tokenizer_config.json");
    char *text; size_t len;
    lm_status st = src && dst ? lm_read_file(src, &text, &len) : LM_ERR_NOMEM;
    if (!st) { if (!lm_file_exists(dst)) st = lm_write_file_atomic(dst, text, len); free(text); }
    free(src); free(dst);
    if (st) FAIL();
  }
  if (lora)
    fprintf(stderr, "lmkit sft: saved the LoRA adapter to %s (use it with --adapter %s; 'lmkit lora merge --adapter %s "
            "--out DIR' writes a full model)\n", o.out_dir, o.out_dir, o.out_dir);
  else fprintf(stderr, "lmkit sft: saved to %s\n", o.out_dir);
#undef FAIL
done:
  lm_sft_data_free(&train); lm_sft_data_free(&eval);
  lm_chat_set_free(&set); lm_chat_set_free(&eset);
  lm_chat_config_free(&cc);
  lm_tokenizer_free(tok);
  lm_model_free(m);
  free(keep);
  return rc;
}
