/* cmd_dpo.c — `lmkit dpo`: direct preference optimisation of a decoder and its
 * kin, IPO, hinge (SLiC), SimPO and ORPO (src/train/objectives/dpo.c;
 * docs/posttraining.md "DPO and its kin"). The reference model is the
 * starting model: its response log-probabilities are computed once, before
 * training, and kept in OUT/reference_logps.bin, so no second model is held
 * during training and a resumed run reads the same numbers. The run's settings
 * go to OUT/posttrain.json so that --resume needs nothing else. */
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
  "usage: lmkit dpo --model SFT --data PREFS.jsonl --out DIR [--loss KIND] [--beta B] [options]\n"
  "       lmkit dpo --resume DIR [--steps N] [--threads N]\n"
  "\n"
  "Trains a decoder (e.g. from 'lmkit sft') on preference pairs directly, with no\n"
  "reward model: the log-probability of each response (summed over its tokens,\n"
  "end-of-turn included) is pushed up for the chosen and down for the rejected one,\n"
  "relative to the starting model (the reference), as Hugging Face TRL does:\n"
  "  sigmoid  DPO: -log sigmoid(beta * (dlogp_policy - dlogp_reference))\n"
  "  ipo      IPO: (d - 1/(2 beta))^2 on length-averaged log-probs\n"
  "  hinge    SLiC: relu(1 - beta * (dlogp_policy - dlogp_reference))\n"
  "  simpo    SimPO (no reference): -log sigmoid(beta * d_avg - gamma), length-averaged\n"
  "  orpo     ORPO (no reference): NLL(chosen) - beta * log sigmoid(log odds ratio)\n"
  "The reference's log-probabilities are computed once before training and kept in\n"
  "DIR/reference_logps.bin. Metrics (TRL's names): val_rewards/chosen, /rejected,\n"
  "/margins and /accuracies, the implicit rewards beta * (logp - logp_ref) (simpo,\n"
  "orpo: beta * average logp) on the held-out pairs. DIR is the tuned model, with\n"
  "its tokenizer and chat template.\n"
  "\n"
  "data: as 'lmkit reward' (see 'lmkit reward --help' and docs/posttraining.md):\n"
  "  {\"prompt\", \"chosen\", \"rejected\"} strings or message lists, implicit prompts,\n"
  "  Anthropic hh-rlhf dialogues. Empty, identical and too long pairs are counted\n"
  "  and skipped; a malformed record is an error (file:line).\n"
  "\n"
  "options:\n"
  "  --model DIR          the starting model and reference (a decoder with an LM head)\n"
  "  --data FILE          training pairs\n"
  "  --out DIR            where the tuned model, checkpoints and metrics.jsonl go\n"
  "  --loss KIND          sigmoid (default), ipo, hinge, simpo, orpo\n"
  "  --beta B             the loss's beta (0.1): DPO's KL strength, IPO's 1/(2 beta) target,\n"
  "                       SimPO's reward scale (the paper uses 2 to 2.5), ORPO's lambda\n"
  "  --simpo-gamma G      SimPO's target reward margin (0.5)\n"
  "  --eval FILE          held-out pairs\n"
  "  --val-fraction F     hold out this share of --data instead (0: none without --eval)\n"
  "  --max-length N       longest side of a pair in tokens (the model's positions, at most 1024)\n"
  "  --adapter DIR        go on training this LoRA adapter (a PEFT directory) on --model\n"
  "  (--batch counts pairs: each micro-batch holds 2 x batch sequences)\n"
  "With --lora-rank R (or --adapter DIR) only LoRA adapters train and DIR is the\n"
  "adapter; the reference is the base --model with the adapter switched off (also\n"
  "when --adapter continues one), as TRL does with a PEFT model.\n";

typedef struct {
  cli_posttrain p;      /* with LoRA OUT holds the adapter; the reference is the base */
  float beta, gamma;
  int loss;
} dpo_args;

typedef struct {
  lm_pref_data *train, *eval;
  const double *train_ref, *eval_ref;
  dpo_args *a;
  int32_t pad;
  lm_dpo_eval last;
} dpo_ctx;

static lm_status factory(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o, lm_rng *rng,
                         const int64_t *cursor, void *ctx) {
  (void)tok; (void)rng;
  dpo_ctx *c = ctx;
  lm_dpo_opts po = {.loss = c->a->loss, .beta = c->a->beta, .gamma = c->a->gamma, .B = o->batch, .T = c->a->p.max_length,
                    .pad = c->pad, .seed = o->seed};
  int has_eval = c->eval && c->eval->n;
  return lm_objective_dpo(obj, m, c->train, c->train_ref, has_eval ? c->eval : NULL, has_eval ? c->eval_ref : NULL, &po,
                          cursor, &c->last);
}

/* the settings of its own that a resumed run reads back (the shared ones: cli_posttrain_resume) */
static int args_from_json(const cJSON *j, dpo_args *a) {
  const cJSON *ls = cJSON_GetObjectItemCaseSensitive(j, "loss"), *b = cJSON_GetObjectItemCaseSensitive(j, "beta"),
              *g = cJSON_GetObjectItemCaseSensitive(j, "simpo_gamma");
  if (!cJSON_IsString(ls) || lm_pref_loss_from_name(ls->valuestring) < 0 || !cJSON_IsNumber(b) || !cJSON_IsNumber(g)) return 0;
  a->loss = lm_pref_loss_from_name(ls->valuestring); a->beta = (float)b->valuedouble; a->gamma = (float)g->valuedouble;
  return 1;
}

/* ---- OUT/reference_logps.bin: "LMKITREF", n_train, n_eval (uint64), then the doubles */
static const char REF_MAGIC[8] = {'L', 'M', 'K', 'I', 'T', 'R', 'E', 'F'};

static lm_status save_ref(const char *out, const double *tr, int64_t ntr, const double *ev, int64_t nev) {
  size_t bytes = 24 + (size_t)(ntr + nev) * sizeof(double);
  unsigned char *buf = malloc(bytes);
  if (!buf) return lm_error(LM_ERR_NOMEM, "out of memory");
  uint64_t n[2] = {(uint64_t)ntr, (uint64_t)nev};
  memcpy(buf, REF_MAGIC, 8); memcpy(buf + 8, n, 16);
  memcpy(buf + 24, tr, (size_t)ntr * sizeof(double));
  if (nev) memcpy(buf + 24 + (size_t)ntr * sizeof(double), ev, (size_t)nev * sizeof(double));
  char *path = lm_path_join(out, "reference_logps.bin");
  lm_status st = path ? lm_write_file_atomic(path, buf, bytes) : lm_error(LM_ERR_NOMEM, "out of memory");
  free(path); free(buf);
  return st;
}

/* 1: read; 0: no usable file (missing, or for other data) */
static int load_ref(const char *dir, double *tr, int64_t ntr, double *ev, int64_t nev) {
  char *path = lm_path_join(dir, "reference_logps.bin"), *text = NULL;
  size_t len = 0;
  int ok = path && lm_file_exists(path) && !lm_read_file(path, &text, &len);
  uint64_t n[2];
  if (ok) {
    memcpy(n, text + 8, len >= 24 ? 16 : 0);
    ok = len == 24 + (size_t)(ntr + nev) * sizeof(double) && !memcmp(text, REF_MAGIC, 8) && n[0] == (uint64_t)ntr &&
         n[1] == (uint64_t)nev;
  }
  if (ok) {
    memcpy(tr, text + 24, (size_t)ntr * sizeof(double));
    if (nev) memcpy(ev, text + 24 + (size_t)ntr * sizeof(double), (size_t)nev * sizeof(double));
  }
  free(text); free(path);
  lm_clear_error();
  return ok;
}

int cmd_dpo(int argc, char **argv) {
  dpo_args a = {.beta = 0.1f, .gamma = 0.5f, .loss = LM_PREF_SIGMOID};
  lm_train_opts o;
  cli_posttrain_opts(&o, "dpo", 1e-6f);
  cli_train_seen seen = {0};
  const char *v, *setting = NULL;
  int r;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    if (cli_is_help(f)) return cli_posttrain_help(HELP);
    if ((r = cli_train_flag(argc, argv, &i, &o, &seen)) < 0) return 1; else if (r) continue;
    if ((r = cli_posttrain_flag(argc, argv, &i, &a.p)) < 0) return 1; else if (r) { setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--out", &v)) < 0) return 1; else if (r) { o.out_dir = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--loss", &v)) < 0) return 1;
    else if (r) {
      if ((a.loss = lm_pref_loss_from_name(v)) < 0)
        return cli_error("unknown --loss '%s' (sigmoid, ipo, hinge, simpo, orpo)", v);
      setting = f; continue;
    }
    if ((r = cli_opt(argc, argv, &i, "--beta", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, 1e-6f, 1e6f, &a.beta)) return 1; setting = f; continue; }
    if ((r = cli_opt(argc, argv, &i, "--simpo-gamma", &v)) < 0) return 1;
    else if (r) { if (cli_f32(f, v, -1e6f, 1e6f, &a.gamma)) return 1; setting = f; continue; }
    return cli_unknown("dpo", f);
  }
  char *state = NULL, *run_dir = NULL;
  cJSON *saved = NULL;
  if (o.resume_dir) {
    if (cli_posttrain_no_settings(setting, &seen)) return 1;
    lm_train_opts so;
    lm_train_opts_default(&so);
    if (cli_posttrain_resume("dpo", &o, &seen, &a.p, &state, &run_dir, &saved) ||
        (!args_from_json(saved, &a) && cli_posttrain_malformed("dpo", run_dir)) ||
        (lm_train_read_state(state, &so, NULL) && cli_fail())) {
      cJSON_Delete(saved); free(state); free(run_dir); return 1;
    }
    o.batch = so.batch;   /* the reference pass below runs in the run's batches */
  } else if (cli_posttrain_check("dpo", &a.p, o.out_dir, 1)) return 1;
  lm_set_threads((int)seen.threads);
  int rc = 0, uses_ref = lm_pref_loss_uses_reference(a.loss);
  lm_model *m = NULL;
  lm_tokenizer *tok = NULL;
  lm_chat_config cc = {0};
  lm_pref_data train = {0}, eval = {0};
  double *train_ref = NULL, *eval_ref = NULL;
#define FAIL() do { rc = cli_fail(); goto done; } while (0)
  /* the starting model: the reference, and the policy of a new run */
  if (lm_model_load(&m, a.p.model)) FAIL();
  if ((rc = cli_posttrain_decoder(m, a.p.model, "preference optimisation"))) goto done;
  if ((rc = cli_posttrain_chat(m, &a.p, &tok, &cc))) goto done;
  int64_t eot = lm_tokenizer_eot(tok);
  int32_t pad = (int32_t)(eot >= 0 ? eot : 0);
  /* LoRA: the policy is the base + the adapter (new, --adapter's, or the checkpoint's); the
   * reference is the base alone, the adapter switched off */
  int lora = a.p.lora.rank > 0 || a.p.adapter || a.p.lora_run;
  if (lora && (rc = cli_posttrain_lora(m, "dpo", &a.p, state, o.seed, "", "; the reference is the base (adapter off)")))
    goto done;
  if ((rc = cli_posttrain_prefs("dpo", &a.p, &cc, tok, o.seed, &train, &eval))) goto done;
  cJSON *j = NULL;
  if (!state) {
    int64_t per_epoch = (train.n + o.batch - 1) / o.batch;
    cli_train_finish(&o, &seen, (per_epoch + o.grad_accum - 1) / o.grad_accum);
    if ((j = cli_posttrain_json("dpo", &a.p))) {
      cJSON_AddStringToObject(j, "loss", lm_pref_loss_name(a.loss));
      cJSON_AddNumberToObject(j, "beta", a.beta);
      cJSON_AddNumberToObject(j, "simpo_gamma", a.gamma);
      cli_posttrain_json_end(j, &a.p, &o);
    }
  } else cli_train_finish(&o, &seen, 1);
  /* a resumed run into another directory takes its settings along, so that it can be resumed too */
  if ((rc = cli_posttrain_save(o.out_dir, saved, j))) goto done;
  o.context = a.p.max_length;
  if (uses_ref) {
    /* the reference: the starting model's log-probabilities, once; a resumed run reads them back */
    train_ref = malloc((size_t)(2 * train.n) * sizeof *train_ref);
    eval_ref = malloc((size_t)(2 * eval.n + 1) * sizeof *eval_ref);
    if (!train_ref || !eval_ref) { rc = cli_error("out of memory"); goto done; }
    if (!(state && load_ref(run_dir, train_ref, 2 * train.n, eval_ref, 2 * eval.n))) {
      double t0 = lm_time_sec();
      if (lora) lm_lora_enable(m, 0);
      lm_status st = lm_pref_logps(m, &train, o.batch, pad, train_ref);
      if (!st) st = lm_pref_logps(m, &eval, o.batch, pad, eval_ref);
      if (lora) lm_lora_enable(m, 1);
      if (st) FAIL();
      fprintf(stderr, "lmkit dpo: reference log-probabilities of %lld pairs in %.1f s\n", (long long)(train.n + eval.n),
              lm_time_sec() - t0);
    }
    if (save_ref(o.out_dir, train_ref, 2 * train.n, eval_ref, 2 * eval.n)) FAIL();
  }
  if (state && !lora) {   /* the policy continues from the checkpoint (LoRA: its adapter is on the base already) */
    lm_model_free(m);
    m = NULL;
    if (lm_model_load(&m, state)) FAIL();
  }
  char gamma[48] = "";
  if (a.loss == LM_PREF_SIMPO) snprintf(gamma, sizeof gamma, ", gamma %g", (double)a.gamma);
  char plan[1200];
  cli_posttrain_plan(plan, sizeof plan, &o, state);
  fprintf(stderr, "lmkit dpo: %lld pairs (%s), %lld held out; loss %s, beta %g%s; %s; %d threads\n", (long long)train.n,
          cc.source, (long long)eval.n, lm_pref_loss_name(a.loss), (double)a.beta, gamma, plan, lm_get_threads());
  {
    dpo_ctx ctx = {&train, &eval, train_ref, eval_ref, &a, pad, {0}};
    if (lm_train_run(m, tok, &o, factory, &ctx, NULL, NULL)) FAIL();
    if (ctx.last.pairs)
      fprintf(stderr, "lmkit dpo: held-out implicit-reward accuracy %.4f over %lld pairs, margin %.4f (chosen %.4f, "
              "rejected %.4f)\n", ctx.last.accuracies, (long long)ctx.last.pairs, ctx.last.margins, ctx.last.chosen,
              ctx.last.rejected);
  }
  rc = cli_posttrain_finish("dpo", a.p.model, o.out_dir, &cc, 0, lora);
#undef FAIL
done:
  free(train_ref); free(eval_ref);
  lm_pref_data_free(&train); lm_pref_data_free(&eval);
  lm_chat_config_free(&cc);
  lm_tokenizer_free(tok);
  lm_model_free(m);
  cJSON_Delete(saved);
  free(state); free(run_dir);
  return rc;
}
