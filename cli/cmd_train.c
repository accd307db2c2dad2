/* cmd_train.c — `lmkit train`: pre-trains a GPT-2 family model with the
 * causal-LM objective on text files or token shards, with a live progress
 * bar, periodic evaluation and checkpoints, and exact resume. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "tokenizer/tokenizer.h"

static const char *HELP =
  "usage: lmkit train --data FILE|DIR... --out DIR [options]\n"
  "       lmkit train --resume DIR --out DIR [--steps N] [--threads N]\n"
  "\n"
  "Pre-trains a model with the causal language-modelling objective (next-token\n"
  "prediction). Text files are tokenized on the fly; directories made by\n"
  "'lmkit data prepare' are memory-mapped. The model directory written to --out\n"
  "(config.json, model.safetensors, tokenizer.json) loads in Hugging Face\n"
  "transformers; trainer_state.json + optimizer.safetensors beside it allow an\n"
  "exact resume. Metrics go to DIR/metrics.jsonl.\n"
  "\n"
  "data and output:\n"
  "  --data FILE|DIR...   training text files or prepared shard directories\n"
  "  --out DIR            where the model and checkpoints are written\n"
  "  --tokenizer T        'byte' (default), 'gpt2', or a tokenizer directory\n"
  "  --val-fraction F     last fraction of the tokens held out for validation (0.05)\n"
  "model (new):\n"
  "  --arch gpt2|bert     model family: GPT-2 decoder (default) or BERT encoder\n"
  "  --objective NAME     clm (gpt2 default); mlm+nsp (bert default: masked LM + next\n"
  "                       sentence prediction) or mlm (RoBERTa: no NSP, dynamic masks)\n"
  "  --mlm-prob X         share of tokens chosen for masked LM (0.15)\n"
  "  --share-layers       ALBERT: all layers share one set of weights (bert)\n"
  "  --layers N           transformer blocks (6)\n"
  "  --heads N            attention heads (6)\n"
  "  --dim N              model width, divisible by --heads (384)\n"
  "  --context N          tokens per training sequence; also the model's positions (256)\n"
  "                       bert needs a tokenizer with [CLS] [SEP] [MASK] [PAD] (a vocab.txt\n"
  "                       directory, or 'lmkit tokenizer train --special [PAD] --special [CLS] ...')\n"
  "  --positions N        the model's position table if larger than --context\n"
  "optimisation:\n"
  "  --batch N            sequences per micro-batch (8)\n"
  "  --grad-accum N       micro-batches per optimiser step (1)\n"
  "  --steps N            optimiser steps (1000)\n"
  "  --lr X               peak learning rate (6e-4)\n"
  "  --min-lr X           final learning rate of the cosine decay (lr/10)\n"
  "  --warmup N           linear warmup steps (100, at most steps/10 by default)\n"
  "  --weight-decay X     AdamW decoupled weight decay on weight matrices (0.1)\n"
  "  --clip X             clip the global gradient norm to X; 0 disables (1.0)\n"
  "  --seed N             initialisation and data order seed (1337)\n"
  "bookkeeping:\n"
  "  --eval-every N       validation loss every N steps (100)\n"
  "  --eval-batches N     batches per validation (20)\n"
  "  --save-every N       checkpoint to DIR/checkpoint-STEP every N steps (0: end only)\n"
  "  --resume DIR         continue the run saved in DIR bit-exactly; --steps may extend it\n"
  "  --threads N          threads (default: all cores)\n"
  "  --quiet              no progress bar\n";

typedef struct { float train, val; } last_losses;

static void on_step(const lm_train_event *ev, void *user) {
  last_losses *l = user;
  l->train = ev->train_loss;
  if (!isnan(ev->val_loss)) l->val = ev->val_loss;
}

static int is_flag(const char *s) { return s[0] == '-' && s[1] == '-'; }

int cmd_train(int argc, char **argv) {
  lm_train_opts o;
  lm_train_opts_default(&o);
  const char *tok_spec = "byte", *arch = "gpt2", *v;
  int64_t layers = 6, heads = 6, dim = 384, positions = 0, threads = 0;
  int share = 0, objective_set = 0, warmup_set = 0, min_lr_set = 0, steps_set = 0, hyper_flags = 0, r;
  const char **data = calloc(argc, sizeof *data);
  int n_data = 0;
  if (!data) return cli_error("out of memory");
  const char *bad_resume = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); free(data); return 0; }
    if (!strcmp(a, "--data")) {
      if (i + 1 >= argc || is_flag(argv[i + 1])) { free(data); return cli_error("--data needs at least one file or directory"); }
      while (i + 1 < argc && !is_flag(argv[i + 1])) data[n_data++] = argv[++i];
      continue;
    }
    if (!strcmp(a, "--quiet")) { o.progress = 0; continue; }
    if (!strcmp(a, "--share-layers")) { share = 1; hyper_flags++; if (!bad_resume) bad_resume = a; continue; }
#define OPT(name) ((r = cli_opt(argc, argv, &i, name, &v)) < 0 ? (free(data), 1) : r == 0 ? 0 : 2)
#define NUM(dst, lo, hi) do { int64_t x_; if (cli_i64(a, v, lo, hi, &x_)) { free(data); return 1; } dst = x_; } while (0)
#define FLT(dst, lo, hi) do { if (cli_f32(a, v, lo, hi, &dst)) { free(data); return 1; } } while (0)
#define HYPER() do { hyper_flags++; if (!bad_resume) bad_resume = a; } while (0)
    int k;
    if ((k = OPT("--out")) == 1) return 1; else if (k) { o.out_dir = v; continue; }
    if ((k = OPT("--resume")) == 1) return 1; else if (k) { o.resume_dir = v; continue; }
    if ((k = OPT("--tokenizer")) == 1) return 1; else if (k) { tok_spec = v; HYPER(); continue; }
    if ((k = OPT("--arch")) == 1) return 1; else if (k) { arch = v; HYPER(); continue; }
    if ((k = OPT("--objective")) == 1) return 1; else if (k) { o.objective = v; objective_set = 1; HYPER(); continue; }
    if ((k = OPT("--mlm-prob")) == 1) return 1; else if (k) { FLT(o.mlm_prob, 0.001f, 0.9f); HYPER(); continue; }
    if ((k = OPT("--layers")) == 1) return 1; else if (k) { NUM(layers, 1, 1024); HYPER(); continue; }
    if ((k = OPT("--heads")) == 1) return 1; else if (k) { NUM(heads, 1, 1024); HYPER(); continue; }
    if ((k = OPT("--dim")) == 1) return 1; else if (k) { NUM(dim, 1, 65536); HYPER(); continue; }
    if ((k = OPT("--context")) == 1) return 1; else if (k) { NUM(o.context, 1, 1 << 20); HYPER(); continue; }
    if ((k = OPT("--positions")) == 1) return 1; else if (k) { NUM(positions, 1, 1 << 20); HYPER(); continue; }
    if ((k = OPT("--batch")) == 1) return 1; else if (k) { NUM(o.batch, 1, 1 << 20); HYPER(); continue; }
    if ((k = OPT("--grad-accum")) == 1) return 1; else if (k) { NUM(o.grad_accum, 1, 1 << 20); HYPER(); continue; }
    if ((k = OPT("--steps")) == 1) return 1; else if (k) { NUM(o.steps, 1, INT64_MAX / 2); steps_set = 1; continue; }
    if ((k = OPT("--warmup")) == 1) return 1; else if (k) { NUM(o.warmup, 0, INT64_MAX / 2); warmup_set = 1; HYPER(); continue; }
    if ((k = OPT("--lr")) == 1) return 1; else if (k) { FLT(o.lr, 0, 10); HYPER(); continue; }
    if ((k = OPT("--min-lr")) == 1) return 1; else if (k) { FLT(o.min_lr, 0, 10); min_lr_set = 1; HYPER(); continue; }
    if ((k = OPT("--weight-decay")) == 1) return 1; else if (k) { FLT(o.weight_decay, 0, 10); HYPER(); continue; }
    if ((k = OPT("--clip")) == 1) return 1; else if (k) { FLT(o.clip, 0, 1e9); HYPER(); continue; }
    if ((k = OPT("--val-fraction")) == 1) return 1; else if (k) { FLT(o.val_fraction, 0, 0.9f); HYPER(); continue; }
    if ((k = OPT("--seed")) == 1) return 1; else if (k) { if (cli_u64(a, v, &o.seed)) { free(data); return 1; } HYPER(); continue; }
    if ((k = OPT("--eval-every")) == 1) return 1; else if (k) { NUM(o.eval_every, 0, INT64_MAX / 2); continue; }
    if ((k = OPT("--eval-batches")) == 1) return 1; else if (k) { NUM(o.eval_batches, 1, 1 << 20); continue; }
    if ((k = OPT("--save-every")) == 1) return 1; else if (k) { NUM(o.save_every, 0, INT64_MAX / 2); continue; }
    if ((k = OPT("--threads")) == 1) return 1; else if (k) { NUM(threads, 1, 4096); continue; }
    free(data);
    return cli_unknown("train", a);
  }
  o.data = data; o.n_data = n_data;
  if (!o.out_dir) { free(data); return cli_error("--out DIR is required (see 'lmkit train --help')"); }
  if (o.resume_dir && hyper_flags) {
    free(data);
    return cli_error("%s cannot be changed when resuming: the run's settings come from %s/trainer_state.json", bad_resume, o.resume_dir);
  }
  if (!o.resume_dir && n_data == 0) { free(data); return cli_error("--data is required (see 'lmkit train --help')"); }
  int bert = !strcmp(arch, "bert");
  if (strcmp(arch, "gpt2") && !bert) { free(data); return cli_error("--arch %s is not supported (available: gpt2, bert)", arch); }
  if (!o.resume_dir && bert && !objective_set) o.objective = "mlm+nsp";
  if (strcmp(o.objective, "clm") && strcmp(o.objective, "mlm") && strcmp(o.objective, "mlm+nsp")) {
    free(data);
    return cli_error("unknown --objective '%s' (clm, mlm, mlm+nsp)", o.objective);
  }
  if (share && !bert) { free(data); return cli_error("--share-layers is supported for --arch bert only"); }
  if (o.resume_dir && !steps_set) o.steps = 0;   /* 0: keep the checkpoint's planned steps */
  if (!warmup_set) o.warmup = o.steps / 10 < 100 ? o.steps / 10 : 100;
  if (!min_lr_set) o.min_lr = o.lr / 10;
  lm_set_threads((int)threads);

  lm_tokenizer *tok = NULL;
  lm_model *m = NULL;
  int rc = 0;
  if (o.resume_dir) {
    if (lm_tokenizer_load(&tok, o.resume_dir) || lm_model_load(&m, o.resume_dir)) { rc = cli_fail(); goto done; }
  } else {
    if (lm_tokenizer_load(&tok, tok_spec)) { rc = cli_fail(); goto done; }
    lm_config cfg;
    lm_config_default(&cfg, bert ? LM_ARCH_BERT : LM_ARCH_GPT2);
    cfg.vocab_size = lm_tokenizer_vocab_size(tok);
    if (bert) {
      int64_t pad = lm_tokenizer_token_id(tok, "[PAD]");
      if (pad < 0) pad = lm_tokenizer_token_id(tok, "<pad>");
      cfg.pad_token_id = pad >= 0 ? pad : 0;
      cfg.head = LM_HEAD_PRETRAIN;
      cfg.share_layers = share;
    }
    cfg.n_layer = layers; cfg.n_head = heads; cfg.n_embd = dim;
    cfg.n_positions = positions > o.context ? positions : o.context;
    if (!bert) {
      int64_t eot = lm_tokenizer_eot(tok);
      cfg.bos_token_id = cfg.eos_token_id = eot >= 0 ? eot : 0;
    }
    if (dim % heads) { rc = cli_error("--dim %lld is not divisible by --heads %lld", (long long)dim, (long long)heads); goto done; }
    if (lm_model_create(&m, &cfg, o.seed)) { rc = cli_fail(); goto done; }
  }
  const lm_config *c = lm_model_config(m);
  fprintf(stderr, "lmkit train: %s, %lld layers, %lld heads, dim %lld, vocab %lld, context %lld: %.2fM parameters; %lld threads\n",
          lm_arch_name(c->arch), (long long)c->n_layer, (long long)c->n_head, (long long)c->n_embd,
          (long long)c->vocab_size, (long long)c->n_positions, lm_model_num_params(m) / 1e6, (long long)lm_get_threads());
  last_losses ll = {NAN, NAN};
  if (lm_train(m, tok, &o, on_step, &ll)) { rc = cli_fail(); goto done; }
  printf("train loss %.4f  val loss %.4f\n", ll.train, ll.val);
  fprintf(stderr, "lmkit train: model saved to %s\n", o.out_dir);
done:
  lm_model_free(m);
  lm_tokenizer_free(tok);
  free(data);
  return rc;
}
