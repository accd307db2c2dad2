/* cmd_sft.c — `lmkit sft`: instruction tuning (supervised fine-tuning) of a
 * decoder on conversations, loss on the assistant's tokens only
 * (src/train/objectives/sft.c; docs/posttraining.md). This file reads the
 * flags and the data, and runs the one trainer. The run's post-training
 * settings go to OUT/posttrain.json so that --resume needs nothing else. */
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
  cli_posttrain p;
  float neftune;
  int packing;
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
  return lm_objective_sft(obj, m, c->train, c->eval && c->eval->n ? c->eval : NULL, o->batch, c->a->p.max_length,
                          c->a->packing, c->a->neftune, c->pad, o->seed, rng, cursor);
}

/* the settings of its own that a resumed run reads back (the shared ones: cli_posttrain_resume) */
static int args_from_json(const cJSON *j, sft_args *a) {
  const cJSON *pk = cJSON_GetObjectItemCaseSensitive(j, "packing"), *nf = cJSON_GetObjectItemCaseSensitive(j, "neftune_alpha");
  if (!cJSON_IsBool(pk) || !cJSON_IsNumber(nf)) return 0;
  a->packing = cJSON_IsTrue(pk); a->neftune = (float)nf->valuedouble;
  return 1;
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
  cli_posttrain_opts(&o, "sft", 1e-4f);
  cli_train_seen seen = {0};
  int eval_only = 0;
  const char *v, *setting = NULL;
  int r;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    if (cli_is_help(f)) return cli_posttrain_help(HELP);
    if ((r = cli_train_flag(argc, argv, &i, &o, &seen)) < 0) return 1; else if (r) continue;
    if (!strcmp(f, "--packing")) { a.packing = 1; setting = f; continue; }
    if (!strcmp(f, "--eval-only")) { eval_only = 1; continue; }
    if ((r = cli_posttrain_flag(argc, argv, &i, &a.p)) < 0) return 1; else if (r) { setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--out", &v)) < 0) return 1; else if (r) { o.out_dir = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--neftune-alpha", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, 0, 1000, &a.neftune)) return 1; setting = f; continue; }
    return cli_unknown("sft", f);
  }
  char *state = NULL, *run_dir = NULL;
  cJSON *saved = NULL;
  if (o.resume_dir) {
    if (cli_posttrain_no_settings(setting, &seen)) return 1;
    if (cli_posttrain_resume("sft", &o, &seen, &a.p, &state, &run_dir, &saved) ||
        (!args_from_json(saved, &a) && cli_posttrain_malformed("sft", run_dir))) {
      cJSON_Delete(saved); free(state); free(run_dir); return 1;
    }
  } else if (eval_only) {
    if (!a.p.model || !a.p.eval) return cli_error("--eval-only needs --model DIR and --eval FILE");
  } else if (cli_posttrain_check("sft", &a.p, o.out_dir, 0)) return 1;
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
  int lora = a.p.lora.rank > 0 || a.p.adapter || a.p.lora_run;
  if (lm_model_load(&m, state && !lora ? state : a.p.model)) FAIL();
  if ((rc = cli_posttrain_decoder(m, a.p.model, "instruction tuning"))) goto done;
  if (lora && (rc = cli_posttrain_lora(m, "sft", &a.p, state, o.seed, "", ""))) goto done;
  if ((rc = cli_posttrain_chat(m, &a.p, &tok, &cc))) goto done;
  if (eval_only) {   /* the loss of the model as it is, on the held-out conversations */
    if (lm_chat_read(a.p.eval, &eset) || lm_sft_encode(&eval, &eset, &cc, tok, a.p.max_length, a.p.eval)) FAIL();
    report_skips(a.p.eval, &eset, &eval, a.p.max_length);
    lm_objective obj;
    lm_rng rng;
    lm_rng_seed(&rng, o.seed);
    int64_t pad = lm_tokenizer_eot(tok);
    if (lm_objective_sft(&obj, m, &eval, &eval, o.batch, a.p.max_length, 0, 0, (int32_t)(pad >= 0 ? pad : 0), o.seed, &rng, NULL))
      FAIL();
    double loss = obj.evaluate(obj.self, m, 0);
    obj.free(obj.self);
    int64_t n_tgt = 0;
    for (int64_t i = 0; i < eval.n; i++)
      for (int64_t t = eval.off[i] + 1; t < eval.off[i + 1]; t++) n_tgt += eval.mask[t];
    printf("{\"val_loss\": %.6f, \"conversations\": %lld, \"assistant_tokens\": %lld}\n", loss, (long long)eval.n, (long long)n_tgt);
    goto done;
  }
  if (lm_chat_read(a.p.data, &set) || lm_sft_encode(&train, &set, &cc, tok, a.p.max_length, a.p.data)) FAIL();
  report_skips(a.p.data, &set, &train, a.p.max_length);
  if (a.p.eval) {
    if (lm_chat_read(a.p.eval, &eset) || lm_sft_encode(&eval, &eset, &cc, tok, a.p.max_length, a.p.eval)) FAIL();
    report_skips(a.p.eval, &eset, &eval, a.p.max_length);
  } else if (a.p.val_fraction > 0 && lm_sft_split(&train, a.p.val_fraction, o.seed, &eval)) FAIL();
  {
    int64_t pad = lm_tokenizer_eot(tok);
    int64_t tokens = train.off[train.n], per_epoch;
    lm_train_opts so;   /* a resumed run's batch and planned steps, for the banner and the epoch's length
                           (the trainer takes them from the state too) */
    lm_train_opts_default(&so);
    if (state) {
      if (lm_train_read_state(state, &so, NULL)) FAIL();
      o.batch = so.batch; o.grad_accum = so.grad_accum;
    }
    if (a.packing) per_epoch = (tokens + o.batch * a.p.max_length - 1) / (o.batch * a.p.max_length);
    else per_epoch = (train.n + o.batch - 1) / o.batch;
    per_epoch = (per_epoch + o.grad_accum - 1) / o.grad_accum;
    cli_train_finish(&o, &seen, per_epoch);
    if (state && !o.steps) o.steps = so.steps;
    o.context = a.p.max_length;
    cJSON *j = state ? NULL : cli_posttrain_json("sft", &a.p);
    if (j) {
      cJSON_AddBoolToObject(j, "packing", a.packing);
      cJSON_AddNumberToObject(j, "neftune_alpha", a.neftune);
      cli_posttrain_json_end(j, &a.p, &o);
    }
    /* a resumed run into another directory takes its settings along, so that it can be resumed too */
    if ((rc = cli_posttrain_save(o.out_dir, saved, j))) goto done;
    fprintf(stderr, "lmkit sft: %lld conversations (%lld tokens, %s), %lld held out; %lld steps of %lld x %lld%s; %d threads\n",
            (long long)train.n, (long long)tokens, cc.source, (long long)eval.n, (long long)o.steps, (long long)o.batch,
            (long long)a.p.max_length, a.packing ? " packed" : "", lm_get_threads());
    sft_ctx ctx = {&train, &eval, &a, (int32_t)(pad >= 0 ? pad : 0)};
    if (lm_train_run(m, tok, &o, factory, &ctx, NULL, NULL)) FAIL();
  }
  rc = cli_posttrain_finish("sft", a.p.model, o.out_dir, &cc, 1, lora);
#undef FAIL
done:
  lm_sft_data_free(&train); lm_sft_data_free(&eval);
  lm_chat_set_free(&set); lm_chat_set_free(&eset);
  lm_chat_config_free(&cc);
  lm_tokenizer_free(tok);
  lm_model_free(m);
  cJSON_Delete(saved); free(state); free(run_dir);
  return rc;
}
