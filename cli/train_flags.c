/* train_flags.c — the trainer's flags, parsed one way for every command that
 * runs the one trainer (sft, reward, dpo): steps or epochs, learning rate and
 * schedule, batch, accumulation, clipping, evaluation and checkpoint cadence,
 * seed, threads, progress, resume. See cli.h. */
#include <stdlib.h>
#include <string.h>
#include "cli.h"

const char *const CLI_TRAIN_FLAGS_HELP =
  "training (the one trainer's flags):\n"
  "  --steps N            optimiser steps (default: --epochs over the data)\n"
  "  --epochs N           passes over the training examples when --steps is not given (1)\n"
  "  --batch N            examples (or packed rows) per micro-batch (8)\n"
  "  --grad-accum N       micro-batches per optimiser step (1)\n"
  "  --lr X               peak learning rate (see the command's default)\n"
  "  --min-lr X           final learning rate of the cosine decay (lr/10)\n"
  "  --warmup N           linear warmup steps (steps/10, at most 100)\n"
  "  --weight-decay X     AdamW decoupled weight decay on weight matrices (0.0)\n"
  "  --clip X             clip the global gradient norm; 0 disables (1.0)\n"
  "  --eval-every N       held-out evaluation every N steps (once per epoch)\n"
  "  --save-every N       checkpoint to OUT/checkpoint-STEP every N steps (0: end only)\n"
  "  --keep-checkpoints K newest checkpoints kept (3; 0 keeps all)\n"
  "  --seed N             data order, initialisation and noise (1337)\n"
  "  --threads N          threads (default: all cores)\n"
  "  --resume DIR         continue the run saved in DIR (a run or one of its checkpoints)\n"
  "                       bit-exactly; --steps may extend it; the run's --eval-every,\n"
  "                       --save-every and --keep-checkpoints hold unless given again\n"
  "  --precision P        fp32, or bf16: the linears' matrix products in bf16 through oneDNN\n"
  "                       (fp32 accumulation, master weights and AdamW state; fp32 where the\n"
  "                       CPU lacks AVX512-BF16/AMX) (fp32)\n"
  "  --checkpoint-activations  recompute each block's activations in backward: less memory\n"
  "                       for long contexts, the same gradients, about 1/3 more compute\n"
  "  --quiet              no progress bar\n";

int cli_train_flag(int argc, char **argv, int *i, lm_train_opts *o, cli_train_seen *seen) {
  const char *a = argv[*i], *v;
  int r;
  if (!strcmp(a, "--quiet")) { o->progress = 0; return 1; }
  if (!strcmp(a, "--checkpoint-activations")) { o->checkpoint_activations = 1; return 1; }
#define OPT(name) ((r = cli_opt(argc, argv, i, name, &v)) < 0 ? -1 : r)
#define NUM(dst, lo, hi) do { int64_t x_; if (cli_i64(a, v, lo, hi, &x_)) return -1; dst = x_; } while (0)
#define FLT(dst, lo, hi) do { if (cli_f32(a, v, lo, hi, &dst)) return -1; } while (0)
  if ((r = OPT("--steps"))) { if (r < 0) return -1; NUM(o->steps, 1, INT64_MAX / 2); seen->steps = 1; return 1; }
  if ((r = OPT("--epochs"))) { if (r < 0) return -1; NUM(seen->epochs, 1, 1 << 20); return 1; }
  if ((r = OPT("--batch"))) { if (r < 0) return -1; NUM(o->batch, 1, 1 << 20); seen->hyper = a; return 1; }
  if ((r = OPT("--grad-accum"))) { if (r < 0) return -1; NUM(o->grad_accum, 1, 1 << 20); seen->hyper = a; return 1; }
  if ((r = OPT("--lr"))) { if (r < 0) return -1; FLT(o->lr, 0, 10); seen->lr = 1; seen->hyper = a; return 1; }
  if ((r = OPT("--min-lr"))) { if (r < 0) return -1; FLT(o->min_lr, 0, 10); seen->min_lr = 1; seen->hyper = a; return 1; }
  if ((r = OPT("--warmup"))) { if (r < 0) return -1; NUM(o->warmup, 0, INT64_MAX / 2); seen->warmup = 1; seen->hyper = a; return 1; }
  if ((r = OPT("--weight-decay"))) { if (r < 0) return -1; FLT(o->weight_decay, 0, 10); seen->hyper = a; return 1; }
  if ((r = OPT("--clip"))) { if (r < 0) return -1; FLT(o->clip, 0, 1e9f); seen->hyper = a; return 1; }
  if ((r = OPT("--eval-every"))) { if (r < 0) return -1; NUM(o->eval_every, 0, INT64_MAX / 2); seen->eval_every = 1; return 1; }
  if ((r = OPT("--save-every"))) { if (r < 0) return -1; NUM(o->save_every, 0, INT64_MAX / 2); seen->save_every = 1; return 1; }
  if ((r = OPT("--keep-checkpoints"))) { if (r < 0) return -1; NUM(o->keep_checkpoints, 0, 1 << 20); seen->keep_checkpoints = 1; return 1; }
  if ((r = OPT("--seed"))) { if (r < 0) return -1; if (cli_u64(a, v, &o->seed)) return -1; seen->hyper = a; return 1; }
  if ((r = OPT("--threads"))) { if (r < 0) return -1; NUM(seen->threads, 1, 4096); return 1; }
  if ((r = OPT("--resume"))) { if (r < 0) return -1; o->resume_dir = v; return 1; }
  if ((r = OPT("--precision"))) { if (r < 0 || cli_precision(a, v, &o->precision)) return -1; return 1; }
#undef OPT
#undef NUM
#undef FLT
  return 0;
}

int cli_precision(const char *flag, const char *s, int *out) {
  if (!strcmp(s, "fp32")) *out = LM_PRECISION_FP32;
  else if (!strcmp(s, "bf16")) *out = LM_PRECISION_BF16;
  else return cli_error("%s: unknown precision '%s' (fp32 or bf16)", flag, s);
  return 0;
}

void cli_train_finish(lm_train_opts *o, const cli_train_seen *seen, int64_t steps_per_epoch) {
  if (!seen->steps && !o->resume_dir) o->steps = (seen->epochs ? seen->epochs : 1) * (steps_per_epoch > 0 ? steps_per_epoch : 1);
  if (o->resume_dir && !seen->steps) o->steps = 0;   /* 0: keep the checkpoint's planned steps */
  if (!seen->warmup) o->warmup = o->steps / 10 < 100 ? o->steps / 10 : 100;
  if (!seen->min_lr) o->min_lr = o->lr / 10;
  if (!seen->eval_every) o->eval_every = steps_per_epoch > 0 ? steps_per_epoch : 100;
}
