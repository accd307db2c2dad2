/* cmd_train.c — `lmkit train`: pre-trains a GPT-2 family model with the
 * causal-LM objective (or a BERT model with MLM) on text files or token
 * shards, with a live progress bar, periodic evaluation and checkpoints, and
 * exact resume. `--resume DIR` takes the command that started the run: flags
 * given again must equal the saved settings, and --out defaults to the run.
 * Launched by `mpirun -np P`, it trains data-parallel (src/train/dist.c): MPI
 * is initialised here and only then, rank 0 alone prints, and an error on any
 * rank aborts the whole job (MPI_Abort) instead of leaving the others waiting. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"
#include "model/block.h"
#include "model/config.h"
#include "model/family.h"
#include "tokenizer/tokenizer.h"
#include "train/dist.h"
#include "train/train.h"
#include "train_counted.h"

static const char *HELP =
  "usage: lmkit train --data FILE|DIR... --out DIR [options]\n"
  "       lmkit train --resume DIR [the options that started the run] [--steps N]\n"
  "\n"
  "Pre-trains a model with the causal language-modelling objective (next-token\n"
  "prediction). Text files are tokenized on the fly; directories made by\n"
  "'lmkit data prepare' are memory-mapped. The model directory written to --out\n"
  "(config.json, model.safetensors, tokenizer.json) loads in Hugging Face\n"
  "transformers; trainer_state.json + optimizer.safetensors beside it allow an\n"
  "exact resume. Metrics go to DIR/metrics.jsonl.\n"
  "\n"
  "Resuming: re-run the command that started the run with --resume DIR added. DIR\n"
  "is a run directory (training continues from its newest complete checkpoint) or\n"
  "one DIR/checkpoint-N. Options given again must equal the run's saved settings (a\n"
  "differing one is an error naming both values); --steps may extend the run; --out\n"
  "defaults to the run directory, where training continues in place and appends to\n"
  "metrics.jsonl. A checkpoint is written as checkpoint-N.tmp and renamed when\n"
  "complete, so a run killed at any moment resumes from its last complete save.\n"
  "\n"
  "data and output:\n"
  "  --data FILE|DIR...   training text files or prepared shard directories\n"
  "  --out DIR            where the model and checkpoints are written (with --resume:\n"
  "                       the run directory)\n"
  "  --tokenizer T        'byte' (default), 'gpt2', or a tokenizer directory\n"
  "  --val-fraction F     last fraction of the tokens held out for validation (0.05)\n"
  "model (new):\n"
  "  --arch NAME          model family: gpt2 (decoder, default), bert (encoder), llama,\n"
  "                       mistral, qwen2 (decoders with RoPE, RMSNorm, SwiGLU), t5 or bart\n"
  "                       (encoder-decoder, --layers each; docs/models.md); the past\n"
  "                       (docs/classic.md): rnn (Elman, tanh), lstm (--dim wide,\n"
  "                       truncated BPTT over --context windows), ngram (Kneser-Ney,\n"
  "                       counted in one pass: no steps, no resume)\n"
  "  --order N            ngram: the order (3)\n"
  "  --objective NAME     clm (gpt2 default); mlm+nsp (bert default: masked LM + next\n"
  "                       sentence prediction) or mlm (RoBERTa: no NSP, dynamic masks);\n"
  "                       span-corruption (t5 default: 15% noise in spans of mean 3, each\n"
  "                       span one sentinel; the tokenizer needs <extra_id_0>, <extra_id_1>...\n"
  "                       counting down; --context is the encoder's input); denoise (bart\n"
  "                       default: BART's noising, the paper's best setting: 30% of words\n"
  "                       infilled, each Poisson(3) span one <mask>, every sentence permuted;\n"
  "                       the tokenizer needs <mask>; docs/encdec.md)\n"
  "  --mask-ratio X       denoise: share of words infilled (0.3); --poisson-lambda X their\n"
  "                       mean span in words (3); --permute X share of sentences permuted (1);\n"
  "                       --delete-ratio X tokens deleted (0); --rotate X probability of\n"
  "                       rotating the document (0); --insert-ratio X random tokens\n"
  "                       inserted per token (0)\n"
  "  --mlm-prob X         share of tokens chosen for masked LM (0.15)\n"
  "  --share-layers       ALBERT: all layers share one set of weights (bert)\n"
  "  --layers N           transformer blocks (6); rnn, lstm: recurrent layers\n"
  "  --heads N            attention heads (6)\n"
  "  --kv-heads N         key/value heads, dividing --heads: grouped-query attention\n"
  "                       (llama, mistral, qwen2; default: --heads)\n"
  "  --dim N              model width, divisible by --heads (384)\n"
  "  --ffn N              feed-forward width (4 * dim; gated families 8/3 * dim rounded\n"
  "                       up to a multiple of 32, the same parameter count)\n"
  "  --ffn relu|gated-gelu  t5: T5 v1.0's ReLU FFN (default) or v1.1's gated GELU\n"
  "  --dropout P          dropout rate in training, in [0, 1): embeddings, attention\n"
  "                       probabilities and residual branches (llama: attention only;\n"
  "                       t5, bart: also the FFN activation, bart's activation_dropout) (0)\n"
  "  --attn-dropout P     the attention probabilities' rate, if other than --dropout\n"
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
  "  --precision P        fp32, or bf16: the linears' matrix products in bf16 through oneDNN\n"
  "                       (fp32 accumulation, master weights and AdamW state; fp32 where the\n"
  "                       CPU lacks AVX512-BF16/AMX) (fp32)\n"
  "bookkeeping:\n"
  "  --eval-every N       validation loss every N steps (100)\n"
  "  --eval-batches N     batches per validation (20)\n"
  "  --save-every N       checkpoint to DIR/checkpoint-STEP every N steps (0: end only)\n"
  "  --keep-checkpoints K keep the newest K checkpoint-STEP directories, deleting older\n"
  "                       ones after each save (3; 0 keeps all)\n"
  "  --time-limit MIN     stop after the first step that ends MIN minutes into training:\n"
  "                       evaluate, save into DIR and stop; the schedule is still --steps'\n"
  "                       and --resume DIR continues it (0: none)\n"
  "  --resume DIR         continue the run in DIR (a run or checkpoint directory) bit-exactly\n"
  "  --threads N          threads per process (default: all cores; under mpirun, the\n"
  "                       machine's cores divided by the ranks on it)\n"
  "  --zero 0|1           under mpirun: 1 shards the AdamW state across the ranks\n"
  "                       (ZeRO-1: 1/P of the optimiser memory each, the same result) (0)\n"
  "  --checkpoint-activations  recompute each block's activations in backward: less memory\n"
  "                       for long contexts, the same gradients, about 1/3 more compute\n"
  "  --quiet              no progress bar\n"
  "\n"
  "Data parallel: 'mpirun -np P lmkit train ...' (Open MPI) runs P ranks, each on\n"
  "--batch sequences of every micro-batch: P ranks at --batch B train as one process\n"
  "at P x B. Gradients are averaged over the ranks as backward produces them; rank 0\n"
  "logs and writes the checkpoints; a run resumes with the same P. The causal-LM\n"
  "objective only. See docs/scaling-out.md (hostfiles, threads per rank).\n";

typedef struct { float train, val; } last_losses;

static void on_step(const lm_train_event *ev, void *user) {
  last_losses *l = user;
  l->train = ev->train_loss;
  if (!isnan(ev->val_loss)) l->val = ev->val_loss;
}

static int is_flag(const char *s) { return s[0] == '-' && s[1] == '-'; }

/* --objective denoise's flags and the field of lm_denoise_opts each sets */
#define N_DENOISE 6
static const char *const DENOISE_FLAGS[N_DENOISE] = {"--mask-ratio", "--poisson-lambda", "--permute", "--delete-ratio",
                                                     "--rotate", "--insert-ratio"};
static float *denoise_field(lm_denoise_opts *d, int j) {
  float *f[N_DENOISE] = {&d->mask_ratio, &d->poisson_lambda, &d->permute, &d->delete_ratio, &d->rotate, &d->insert};
  return f[j];
}

/* The settings that define a run. On --resume each one given must equal what the run saved;
 * given[] holds the text as typed (NULL: not given), to name it in an error. */
enum { F_TOKENIZER, F_ARCH, F_OBJECTIVE, F_MLM_PROB, F_SHARE, F_LAYERS, F_HEADS, F_KV_HEADS, F_DIM, F_FFN, F_CONTEXT,
       F_POSITIONS, F_DROPOUT, F_ATTN_DROPOUT, F_BATCH, F_GRAD_ACCUM, F_WARMUP, F_LR, F_MIN_LR, F_WEIGHT_DECAY, F_CLIP,
       F_VAL_FRACTION, F_SEED, F_PRECISION, F_N };
static const char *const FLAG_NAMES[F_N] = {
  "--tokenizer", "--arch", "--objective", "--mlm-prob", "--share-layers", "--layers", "--heads", "--kv-heads", "--dim",
  "--ffn", "--context", "--positions", "--dropout", "--attn-dropout", "--batch", "--grad-accum", "--warmup", "--lr", "--min-lr", "--weight-decay",
  "--clip", "--val-fraction", "--seed", "--precision"};

typedef struct {
  const char *given[F_N];
  const char *tok_spec, *arch;
  int64_t layers, heads, kv_heads, dim, ffn, positions;
  float dropout, attn_dropout;   /* attn_dropout < 0: as dropout */
  int share;
  const char *ffn_kind;          /* t5's --ffn relu|gated-gelu, or NULL */
} run_flags;

/* The FFN width of a new model: --ffn, else 4 * dim, or for a gated FFN (three matrices instead of
 * two) 8/3 * dim rounded up to a multiple of 32, which keeps the parameter count of 4 * dim. */
static int64_t ffn_width(const run_flags *rf, const lm_config *c) {
  if (rf->ffn) return rf->ffn;
  return c->glu ? (8 * rf->dim / 3 + 31) / 32 * 32 : 0;
}

/* The same tokenizer: vocabulary, end-of-text id and the ids of a probe text. */
static int same_tokenizer(const lm_tokenizer *a, const lm_tokenizer *b) {
  if (lm_tokenizer_vocab_size(a) != lm_tokenizer_vocab_size(b) || lm_tokenizer_eot(a) != lm_tokenizer_eot(b)) return 0;
  static const char probe[] = "The quick brown fox, 12345 times: h\xc3\xa9llo w\xc3\xb6rld!\n\t[CLS] <|endoftext|> end.";
  uint32_t *x = NULL, *y = NULL; size_t nx = 0, ny = 0;
  int same = !lm_tokenizer_encode(a, probe, sizeof probe - 1, 1, &x, &nx) &&
             !lm_tokenizer_encode(b, probe, sizeof probe - 1, 1, &y, &ny) && nx == ny && !memcmp(x, y, nx * sizeof *x);
  free(x); free(y);
  lm_clear_error();
  return same;
}

static int differs(int f, const char *given, const char *saved, const char *ckpt) {
  return cli_error("%s %s differs from the checkpoint's %s (%s): leave it out or give the saved value to resume, "
                   "or start a new run without --resume", FLAG_NAMES[f], given, saved, ckpt);
}

/* --resume: every setting given again must equal the run's; returns the exit code (0: all equal). */
static int check_resume_flags(const run_flags *rf, const lm_train_opts *o, const lm_train_opts *saved,
                              const lm_config *c, const lm_tokenizer *tok, const char *ckpt) {
  char buf[64];
  const char *const *g = rf->given;
#define INT_SAME(f, mine, theirs) \
  if (g[f] && (int64_t)(mine) != (int64_t)(theirs)) { snprintf(buf, sizeof buf, "%lld", (long long)(theirs)); return differs(f, g[f], buf, ckpt); }
#define FLT_SAME(f, mine, theirs) \
  if (g[f] && (mine) != (theirs)) { snprintf(buf, sizeof buf, "%g", (double)(theirs)); return differs(f, g[f], buf, ckpt); }
  if (g[F_ARCH] && strcmp(rf->arch, lm_arch_name(c->arch))) return differs(F_ARCH, g[F_ARCH], lm_arch_name(c->arch), ckpt);
  if (g[F_OBJECTIVE] && strcmp(o->objective, saved->objective)) return differs(F_OBJECTIVE, g[F_OBJECTIVE], saved->objective, ckpt);
  if (g[F_SHARE] && !c->share_layers)
    return cli_error("--share-layers differs from the checkpoint (%s), whose layers are not shared", ckpt);
  INT_SAME(F_LAYERS, rf->layers, lm_family_of(c)->own_body ? c->rnn_layers : c->n_layer)
  INT_SAME(F_HEADS, rf->heads, c->n_head)
  INT_SAME(F_KV_HEADS, rf->kv_heads, lm_kv_heads(c))
  INT_SAME(F_DIM, rf->dim, c->n_embd)
  INT_SAME(F_FFN, rf->ffn, lm_ffn_width(c))
  FLT_SAME(F_DROPOUT, rf->dropout, lm_family_of(c)->hidden_dropout ? c->resid_pdrop : c->attn_pdrop)
  FLT_SAME(F_ATTN_DROPOUT, rf->attn_dropout, c->attn_pdrop)
  INT_SAME(F_CONTEXT, o->context, saved->context)
  if (g[F_POSITIONS]) {
    /* a new run's position table is the larger of --positions and --context */
    int64_t ctx = g[F_CONTEXT] ? o->context : saved->context;
    INT_SAME(F_POSITIONS, rf->positions > ctx ? rf->positions : ctx, c->n_positions)
  }
  INT_SAME(F_BATCH, o->batch, saved->batch)
  INT_SAME(F_GRAD_ACCUM, o->grad_accum, saved->grad_accum)
  INT_SAME(F_WARMUP, o->warmup, saved->warmup)
  FLT_SAME(F_MLM_PROB, o->mlm_prob, saved->mlm_prob)
  FLT_SAME(F_LR, o->lr, saved->lr)
  FLT_SAME(F_MIN_LR, o->min_lr, saved->min_lr)
  FLT_SAME(F_WEIGHT_DECAY, o->weight_decay, saved->weight_decay)
  FLT_SAME(F_CLIP, o->clip, saved->clip)
  FLT_SAME(F_VAL_FRACTION, o->val_fraction, saved->val_fraction)
  if (g[F_PRECISION] && o->precision != saved->precision)
    return differs(F_PRECISION, g[F_PRECISION], saved->precision == LM_PRECISION_BF16 ? "bf16" : "fp32", ckpt);
  if (g[F_SEED] && o->seed != saved->seed) {
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)saved->seed);
    return differs(F_SEED, g[F_SEED], buf, ckpt);
  }
#undef INT_SAME
#undef FLT_SAME
  if (g[F_TOKENIZER]) {
    lm_tokenizer *t = NULL;
    if (lm_tokenizer_load(&t, rf->tok_spec)) return cli_fail();
    int same = same_tokenizer(t, tok);
    if (!same) snprintf(buf, sizeof buf, "tokenizer (vocabulary %lld vs %lld%s)", (long long)lm_tokenizer_vocab_size(t),
                        (long long)lm_tokenizer_vocab_size(tok),
                        lm_tokenizer_vocab_size(t) == lm_tokenizer_vocab_size(tok) ? ", and it encodes text differently" : "");
    lm_tokenizer_free(t);
    if (!same) return differs(F_TOKENIZER, g[F_TOKENIZER], buf, ckpt);
  }
  return 0;
}

/* The run directory of a resumed state: --resume's DIR, or the parent of a DIR named checkpoint-N. */
static char *run_dir_of(const char *resume_dir, const char *state) {
  char *d = strdup(resume_dir);
  if (!d) return NULL;
  size_t n = strlen(d);
  while (n > 1 && d[n - 1] == '/') d[--n] = 0;
  if (strcmp(state, resume_dir)) return d;   /* DIR is a run: its newest checkpoint was chosen */
  char *base = strrchr(d, '/');
  const char *name = base ? base + 1 : d;
  int ckpt = !strncmp(name, "checkpoint-", 11) && name[11];
  for (const char *p = name + 11; ckpt && *p; p++) ckpt = *p >= '0' && *p <= '9';
  if (!ckpt) return d;
  if (!base) { free(d); return strdup("."); }
  if (base == d) base[1] = 0; else *base = 0;
  return d;
}

int cmd_train(int argc, char **argv) {
  lm_train_opts o;
  lm_train_opts_default(&o);
  run_flags rf = {.tok_spec = "byte", .arch = "gpt2", .layers = 6, .heads = 6, .dim = 384, .attn_dropout = -1};
  const char *v;
  int64_t order = 3, threads = 0, zero = 0;
  int steps_set = 0, r;
  const char *dn_given[N_DENOISE] = {0};
  const char **data = calloc(argc, sizeof *data);
  int n_data = 0;
  if (!data) return cli_error("out of memory");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); free(data); return 0; }
    if (!strcmp(a, "--data")) {
      if (i + 1 >= argc || is_flag(argv[i + 1])) { free(data); return cli_error("--data needs at least one file or directory"); }
      while (i + 1 < argc && !is_flag(argv[i + 1])) data[n_data++] = argv[++i];
      continue;
    }
    if (!strcmp(a, "--quiet")) { o.progress = 0; continue; }
    if (!strcmp(a, "--checkpoint-activations")) { o.checkpoint_activations = 1; continue; }
    if (!strcmp(a, "--share-layers")) { rf.share = 1; rf.given[F_SHARE] = ""; continue; }
#define OPT(name) ((r = cli_opt(argc, argv, &i, name, &v)) < 0 ? (free(data), 1) : r == 0 ? 0 : 2)
#define NUM(dst, lo, hi) do { int64_t x_; if (cli_i64(a, v, lo, hi, &x_)) { free(data); return 1; } dst = x_; } while (0)
#define FLT(dst, lo, hi) do { if (cli_f32(a, v, lo, hi, &dst)) { free(data); return 1; } } while (0)
#define GIVEN(f) (rf.given[f] = v)
    int k;
    if ((k = OPT("--out")) == 1) return 1; else if (k) { o.out_dir = v; continue; }
    if ((k = OPT("--resume")) == 1) return 1; else if (k) { o.resume_dir = v; continue; }
    if ((k = OPT("--precision")) == 1) return 1; else if (k) { if (cli_precision(a, v, &o.precision)) { free(data); return 1; } GIVEN(F_PRECISION); continue; }
    if ((k = OPT("--tokenizer")) == 1) return 1; else if (k) { rf.tok_spec = GIVEN(F_TOKENIZER); continue; }
    if ((k = OPT("--arch")) == 1) return 1; else if (k) { rf.arch = GIVEN(F_ARCH); continue; }
    if ((k = OPT("--objective")) == 1) return 1; else if (k) { o.objective = GIVEN(F_OBJECTIVE); continue; }
    if ((k = OPT("--mlm-prob")) == 1) return 1; else if (k) { FLT(o.mlm_prob, 0.001f, 0.9f); GIVEN(F_MLM_PROB); continue; }
    int dk = -1;
    for (int j = 0; j < N_DENOISE && dk < 0; j++)
      if ((k = OPT(DENOISE_FLAGS[j])) == 1) return 1; else if (k) dk = j;
    if (dk >= 0) { FLT(*denoise_field(&o.denoise, dk), 0, dk == 1 ? 30 : 1); dn_given[dk] = v; continue; }
    if ((k = OPT("--order")) == 1) return 1; else if (k) { NUM(order, 1, 8); continue; }
    if ((k = OPT("--layers")) == 1) return 1; else if (k) { NUM(rf.layers, 1, 1024); GIVEN(F_LAYERS); continue; }
    if ((k = OPT("--heads")) == 1) return 1; else if (k) { NUM(rf.heads, 1, 1024); GIVEN(F_HEADS); continue; }
    if ((k = OPT("--kv-heads")) == 1) return 1; else if (k) { NUM(rf.kv_heads, 1, 1024); GIVEN(F_KV_HEADS); continue; }
    if ((k = OPT("--dim")) == 1) return 1; else if (k) { NUM(rf.dim, 1, 65536); GIVEN(F_DIM); continue; }
    if ((k = OPT("--ffn")) == 1) return 1;
    else if (k && (!strcmp(v, "relu") || !strcmp(v, "gated-gelu"))) { rf.ffn_kind = v; continue; }
    else if (k) { NUM(rf.ffn, 1, 1 << 20); GIVEN(F_FFN); continue; }
    if ((k = OPT("--dropout")) == 1) return 1; else if (k) { FLT(rf.dropout, 0, 0.999f); GIVEN(F_DROPOUT); continue; }
    if ((k = OPT("--attn-dropout")) == 1) return 1; else if (k) { FLT(rf.attn_dropout, 0, 0.999f); GIVEN(F_ATTN_DROPOUT); continue; }
    if ((k = OPT("--context")) == 1) return 1; else if (k) { NUM(o.context, 1, 1 << 20); GIVEN(F_CONTEXT); continue; }
    if ((k = OPT("--positions")) == 1) return 1; else if (k) { NUM(rf.positions, 1, 1 << 20); GIVEN(F_POSITIONS); continue; }
    if ((k = OPT("--batch")) == 1) return 1; else if (k) { NUM(o.batch, 1, 1 << 20); GIVEN(F_BATCH); continue; }
    if ((k = OPT("--grad-accum")) == 1) return 1; else if (k) { NUM(o.grad_accum, 1, 1 << 20); GIVEN(F_GRAD_ACCUM); continue; }
    if ((k = OPT("--steps")) == 1) return 1; else if (k) { NUM(o.steps, 1, INT64_MAX / 2); steps_set = 1; continue; }
    if ((k = OPT("--warmup")) == 1) return 1; else if (k) { NUM(o.warmup, 0, INT64_MAX / 2); GIVEN(F_WARMUP); continue; }
    if ((k = OPT("--lr")) == 1) return 1; else if (k) { FLT(o.lr, 0, 10); GIVEN(F_LR); continue; }
    if ((k = OPT("--min-lr")) == 1) return 1; else if (k) { FLT(o.min_lr, 0, 10); GIVEN(F_MIN_LR); continue; }
    if ((k = OPT("--weight-decay")) == 1) return 1; else if (k) { FLT(o.weight_decay, 0, 10); GIVEN(F_WEIGHT_DECAY); continue; }
    if ((k = OPT("--clip")) == 1) return 1; else if (k) { FLT(o.clip, 0, 1e9); GIVEN(F_CLIP); continue; }
    if ((k = OPT("--val-fraction")) == 1) return 1; else if (k) { FLT(o.val_fraction, 0, 0.9f); GIVEN(F_VAL_FRACTION); continue; }
    if ((k = OPT("--seed")) == 1) return 1; else if (k) { if (cli_u64(a, v, &o.seed)) { free(data); return 1; } GIVEN(F_SEED); continue; }
    if ((k = OPT("--eval-every")) == 1) return 1; else if (k) { NUM(o.eval_every, 0, INT64_MAX / 2); continue; }
    if ((k = OPT("--eval-batches")) == 1) return 1; else if (k) { NUM(o.eval_batches, 1, 1 << 20); continue; }
    if ((k = OPT("--save-every")) == 1) return 1; else if (k) { NUM(o.save_every, 0, INT64_MAX / 2); continue; }
    if ((k = OPT("--keep-checkpoints")) == 1) return 1; else if (k) { NUM(o.keep_checkpoints, 0, INT64_MAX / 2); continue; }
    if ((k = OPT("--time-limit")) == 1) return 1; else if (k) { float mins; FLT(mins, 0, 1e7f); o.time_limit = mins * 60.0; continue; }
    if ((k = OPT("--threads")) == 1) return 1; else if (k) { NUM(threads, 1, 4096); continue; }
    if ((k = OPT("--zero")) == 1) return 1; else if (k) { NUM(zero, 0, 1); continue; }
    free(data);
    return cli_unknown("train", a);
  }
#undef GIVEN
  o.data = data; o.n_data = n_data;
  if (!o.out_dir && !o.resume_dir) { free(data); return cli_error("--out DIR is required (see 'lmkit train --help')"); }
  if (!o.resume_dir && n_data == 0) { free(data); return cli_error("--data is required (see 'lmkit train --help')"); }
  const lm_family *fam = lm_family_by_type(rf.arch);
  if (!fam) { free(data); return cli_error("--arch %s is not supported (available: %s)", rf.arch, lm_family_list()); }
  lm_config cfg;
  lm_config_default(&cfg, fam->arch);
  /* the family's own head says what it pre-trains with: next-token (LM) or masked LM + NSP */
  int masked = cfg.head == LM_HEAD_PRETRAIN;
  if (!o.resume_dir && masked && !rf.given[F_OBJECTIVE]) o.objective = "mlm+nsp";
  if (!o.resume_dir && cfg.n_enc_layer > 0 && !rf.given[F_OBJECTIVE] && fam->objective) o.objective = fam->objective;
  if (strcmp(o.objective, "clm") && strcmp(o.objective, "mlm") && strcmp(o.objective, "mlm+nsp") &&
      strcmp(o.objective, "span-corruption") && strcmp(o.objective, "denoise")) {
    free(data);
    return cli_error("unknown --objective '%s' (clm, mlm, mlm+nsp, span-corruption, denoise)", o.objective);
  }
  for (int j = 0; j < N_DENOISE && !o.resume_dir; j++)
    if (dn_given[j] && strcmp(o.objective, "denoise")) {
      free(data);
      return cli_error("%s is a setting of --objective denoise (this run's objective is %s)", DENOISE_FLAGS[j], o.objective);
    }
  if (rf.ffn_kind && cfg.n_enc_layer <= 0) { free(data); return cli_error("--ffn %s is for --arch t5", rf.ffn_kind); }
  if (!rf.given[F_WARMUP]) o.warmup = o.steps / 10 < 100 ? o.steps / 10 : 100;
  if (!rf.given[F_MIN_LR]) o.min_lr = o.lr / 10;
  /* an mpirun job's ranks (a group of one otherwise: MPI is not started) */
  lm_dist *dist = NULL;
  if (lm_dist_init(&dist)) { free(data); return cli_fail(); }
  int P = lm_dist_size(dist), rank0 = lm_dist_rank(dist) == 0;
  o.dist = dist; o.zero = (int)zero;
  if (zero && P == 1 && rank0)
    fprintf(stderr, "lmkit train: --zero 1 shards the optimiser state across the ranks of an mpirun job; one process keeps it whole\n");
  if (!threads && lm_dist_local_size(dist) > 1) {   /* the ranks on this machine share its cores */
    long cores = sysconf(_SC_NPROCESSORS_ONLN) / lm_dist_local_size(dist);
    threads = cores > 1 ? cores : 1;
  }
  lm_set_threads((int)threads);

  lm_tokenizer *tok = NULL;
  lm_model *m = NULL;
  char *state = NULL, *run_dir = NULL;
  int rc = 0;
  if (o.resume_dir) {
    /* the newest complete state of the run (or the checkpoint named), its saved settings and model */
    int64_t at = 0;
    lm_train_opts saved;
    lm_train_opts_default(&saved);
    if (lm_train_find_resume(o.resume_dir, &state, &at) || lm_train_read_state(state, &saved, &at) ||
        lm_tokenizer_load(&tok, state) || lm_model_load(&m, state)) { rc = cli_fail(); goto done; }
    if ((rc = check_resume_flags(&rf, &o, &saved, lm_model_config(m), tok, state))) goto done;
    for (int j = 0; j < N_DENOISE; j++)
      if (dn_given[j] && (strcmp(saved.objective, "denoise") || *denoise_field(&o.denoise, j) != *denoise_field(&saved.denoise, j))) {
        char buf[32];
        snprintf(buf, sizeof buf, "%g", (double)*denoise_field(&saved.denoise, j));
        rc = strcmp(saved.objective, "denoise")
                 ? cli_error("%s: the run in %s trains with %s, not denoise", DENOISE_FLAGS[j], state, saved.objective)
                 : cli_error("%s %s differs from the checkpoint's %s (%s): leave it out or give the saved value to "
                             "resume", DENOISE_FLAGS[j], dn_given[j], buf, state);
        goto done;
      }
    if (!(run_dir = run_dir_of(o.resume_dir, state))) { rc = cli_error("out of memory"); goto done; }
    if (!o.out_dir) o.out_dir = run_dir;
    int64_t target = steps_set ? o.steps : saved.steps;
    if (target < at) { rc = cli_error("--steps %lld is below the step %lld that %s is at", (long long)target, (long long)at, state); goto done; }
    char *ro = realpath(o.out_dir, NULL), *rr = realpath(run_dir, NULL);
    int in_place = ro && rr && !strcmp(ro, rr);
    free(ro); free(rr);
    if (target == at && in_place) {
      if (rank0) fprintf(stderr, "lmkit train: the run in %s is complete (step %lld of %lld): nothing to do; pass --steps above %lld to extend it\n",
              o.out_dir, (long long)at, (long long)target, (long long)at);
      goto done;
    }
    {
      /* (the library refuses this too; said here before anything is loaded or printed) */
      char *newest = NULL; int64_t newest_step = -1;
      if (lm_train_find_resume(o.out_dir, &newest, &newest_step)) lm_clear_error();
      free(newest);
      if (newest_step > at) {
        rc = cli_error("%s holds a newer state (step %lld) than the step-%lld checkpoint %s: resume from the newest "
                       "(--resume %s), or pass another --out to branch off at step %lld", o.out_dir,
                       (long long)newest_step, (long long)at, state, o.out_dir, (long long)at);
        goto done;
      }
    }
    if (rank0) fprintf(stderr, "lmkit train: resuming at step %lld from %s into %s\n", (long long)at, state, o.out_dir);
    o.resume_dir = state;
    if (!steps_set) o.steps = 0;   /* 0: keep the checkpoint's planned steps */
  } else {
    if (lm_tokenizer_load(&tok, rf.tok_spec)) { rc = cli_fail(); goto done; }
    cfg.vocab_size = lm_tokenizer_vocab_size(tok);
    cfg.share_layers = rf.share;
    if (masked) {   /* masked LM pads its [CLS] A [SEP] B [SEP] examples */
      int64_t pad = lm_tokenizer_token_id(tok, "[PAD]");
      if (pad < 0) pad = lm_tokenizer_token_id(tok, "<pad>");
      cfg.pad_token_id = pad >= 0 ? pad : 0;
    } else if (cfg.n_enc_layer > 0) {   /* an encoder-decoder: its decoder starts from the pad token (T5) or </s> (BART) */
      int64_t pad = lm_tokenizer_token_id(tok, "<pad>"), eos = lm_tokenizer_token_id(tok, "</s>");
      int start_eos = cfg.decoder_start_token_id == cfg.eos_token_id;   /* the family's default says which */
      if (eos < 0) eos = lm_tokenizer_eot(tok);
      cfg.pad_token_id = pad >= 0 ? pad : 0;
      cfg.eos_token_id = eos >= 0 ? eos : 0;
      cfg.decoder_start_token_id = start_eos ? cfg.eos_token_id : cfg.pad_token_id;
      if (cfg.bos_token_id >= 0) cfg.bos_token_id = lm_tokenizer_token_id(tok, "<s>");
      cfg.n_enc_layer = rf.layers;
      cfg.head_dim = rf.dim / rf.heads;
      if (rf.ffn_kind && !strcmp(rf.ffn_kind, "gated-gelu")) { cfg.glu = 1; cfg.act = LM_ACT_GELU_TANH; cfg.tie_embeddings = 0; }
      if (!rf.ffn) rf.ffn = 4 * rf.dim;   /* T5's d_ff = 4 d_model, gated or not */
    } else {        /* a decoder's documents end with the end-of-text token */
      int64_t eot = lm_tokenizer_eot(tok);
      cfg.bos_token_id = cfg.eos_token_id = eot >= 0 ? eot : 0;
    }
    cfg.n_layer = rf.layers; cfg.n_head = rf.heads; cfg.n_embd = rf.dim; cfg.n_inner = ffn_width(&rf, &cfg);
    cfg.n_positions = rf.positions > o.context ? rf.positions : o.context;
    if (!fam->own_body && rf.dim % rf.heads) { rc = cli_error("--dim %lld is not divisible by --heads %lld", (long long)rf.dim, (long long)rf.heads); goto done; }
    if (rf.kv_heads && !cfg.rope) { rc = cli_error("--kv-heads: the %s family has no grouped-query attention", rf.arch); goto done; }
    if (rf.kv_heads && rf.heads % rf.kv_heads) {
      rc = cli_error("--heads %lld is not a multiple of --kv-heads %lld", (long long)rf.heads, (long long)rf.kv_heads);
      goto done;
    }
    cfg.n_kv_head = rf.kv_heads == rf.heads ? 0 : rf.kv_heads;
    /* dropout: --dropout everywhere the family drops (Llama: attention only), --attn-dropout for attention */
    lm_config_set_dropout(&cfg, rf.dropout, rf.attn_dropout);
    if (fam->own_body) {   /* no blocks (src/model/classic/): --layers are its own, one width, no heads */
      cfg.rnn_layers = rf.layers; cfg.ngram_order = order;
      cfg.n_layer = 0; cfg.n_head = 1; cfg.n_inner = 0;
      if (fam->logits_body) cfg.n_embd = cfg.vocab_size;
    }
    if (lm_model_create(&m, &cfg, o.seed)) { rc = cli_fail(); goto done; }
  }
  if (lm_family_of(lm_model_config(m))->fit) { rc = cli_train_counted(m, tok, &o); goto done; }   /* counted, not trained */
  const lm_config *c = lm_model_config(m);
  char shape[96];   /* a recurrent family's layers are its own, without heads */
  if (lm_family_of(c)->own_body) snprintf(shape, sizeof shape, "%lld recurrent layers", (long long)c->rnn_layers);
  else snprintf(shape, sizeof shape, "%lld layers, %lld heads", (long long)c->n_layer, (long long)c->n_head);
  if (rank0)
    fprintf(stderr, "lmkit train: %s, %s, dim %lld, vocab %lld, context %lld: %.2fM parameters; ", lm_arch_name(c->arch), shape,
            (long long)c->n_embd, (long long)c->vocab_size, (long long)c->n_positions, lm_model_num_params(m) / 1e6);
  if (rank0 && P > 1)
    fprintf(stderr, "%d ranks x %lld threads, batch %d x %lld%s\n", P, (long long)lm_get_threads(), P, (long long)o.batch,
            zero ? ", ZeRO-1" : "");
  else if (rank0)
    fprintf(stderr, "%lld threads\n", (long long)lm_get_threads());
  last_losses ll = {NAN, NAN};
  if (lm_train(m, tok, &o, on_step, &ll)) { rc = cli_fail(); goto done; }
  if (rank0) {
    printf("train loss %.4f  val loss %.4f\n", ll.train, ll.val);
    fprintf(stderr, "lmkit train: model saved to %s\n", o.out_dir);
  }
done:
  /* an error on one rank of a job ends every rank (the others would wait for it forever) */
  if (rc && P > 1) { fflush(stdout); lm_dist_abort(dist, "stopping the whole job after the error above"); }
  lm_dist_free(dist);
  lm_model_free(m);
  lm_tokenizer_free(tok);
  free(state); free(run_dir);
  free(data);
  return rc;
}
