/* cmd_distill.c — `lmkit distill`: DistilBERT-style knowledge distillation of
 * a pre-trained BERT (the teacher) into a student with fewer layers, over
 * text files or token shards (src/train/objectives/distill.c does the work;
 * docs/distill.md explains it). Prints the teacher's and the student's sizes
 * and a forward-speed comparison of the two on one batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cli.h"
#include "base/base.h"
#include "train/distill.h"

static const char *HELP =
  "usage: lmkit distill --teacher DIR --student-layers N --data FILE|DIR... --out DIR [options]\n"
  "       lmkit distill --resume DIR --out DIR [--steps N] [--teacher DIR] [--threads N]\n"
  "\n"
  "Knowledge distillation (DistilBERT): trains a BERT student with fewer layers to\n"
  "match a pre-trained BERT teacher. The student has the teacher's width, heads,\n"
  "vocabulary, embeddings and heads, and starts from evenly spaced teacher layers\n"
  "(every other one for half the depth). Each batch is masked as in BERT\n"
  "pre-training; the loss at the masked positions is\n"
  "  alpha_ce * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + alpha_mlm * MLM\n"
  "The student (config.json, model.safetensors, the teacher's tokenizer.json) is\n"
  "written to --out with trainer_state.json, optimizer.safetensors and\n"
  "distill.json for an exact resume; metrics go to DIR/metrics.jsonl.\n"
  "\n"
  "teacher and student:\n"
  "  --teacher DIR        pre-trained BERT directory with a tokenizer (pre-training head,\n"
  "                       e.g. from 'lmkit train --arch bert')\n"
  "  --student-layers N   layers of the student, 1 .. teacher's layers - 1\n"
  "  --temperature T      softmax temperature of the soft targets (2.0)\n"
  "  --alpha-ce X         weight of the soft-target KL term (5.0)\n"
  "  --alpha-mlm X        weight of the masked-LM cross-entropy (2.0)\n"
  "  --objective NAME     mlm (default, as DistilBERT) or mlm+nsp (also the student's\n"
  "                       next-sentence loss, weight 1)\n"
  "  --mlm-prob X         share of tokens chosen for masked LM (0.15)\n"
  "data and output:\n"
  "  --data FILE|DIR...   training text files or prepared shard directories\n"
  "  --out DIR            where the student and checkpoints are written\n"
  "  --val-fraction F     last fraction of the tokens held out for validation (0.05)\n"
  "optimisation:\n"
  "  --context N          tokens per sequence (the teacher's positions, at most 128)\n"
  "  --batch N            sequences per micro-batch (8)\n"
  "  --grad-accum N       micro-batches per optimiser step (1)\n"
  "  --steps N            optimiser steps (1000)\n"
  "  --lr X               peak learning rate (5e-4)\n"
  "  --min-lr X           final learning rate of the cosine decay (lr/10)\n"
  "  --warmup N           linear warmup steps (steps/10, at most 100)\n"
  "  --weight-decay X     AdamW decoupled weight decay on weight matrices (0.01)\n"
  "  --clip X             clip the global gradient norm to X; 0 disables (1.0)\n"
  "  --seed N             data order and masking seed (1337)\n"
  "bookkeeping:\n"
  "  --eval-every N       validation loss every N steps (100)\n"
  "  --eval-batches N     batches per validation (20)\n"
  "  --save-every N       checkpoint to DIR/checkpoint-STEP every N steps (0: end only)\n"
  "  --resume DIR         continue the run saved in DIR bit-exactly (its distill.json names\n"
  "                       the teacher; --teacher overrides a moved one); --steps may extend it\n"
  "  --threads N          threads (default: all cores)\n"
  "  --quiet              no progress bar\n";

static int is_flag(const char *s) { return s[0] == '-' && s[1] == '-'; }

static double file_mb(const char *dir, const char *name) {
  char *p = lm_path_join(dir, name);
  struct stat sb;
  double mb = p && stat(p, &sb) == 0 ? (double)sb.st_size / 1e6 : NAN;
  free(p);
  return mb;
}

int cmd_distill(int argc, char **argv) {
  lm_distill_opts d;
  lm_distill_opts_default(&d);
  lm_train_opts *o = &d.train;
  const char *v, *bad_resume = NULL, *objective = NULL;
  int64_t threads = 0;
  int warmup_set = 0, min_lr_set = 0, steps_set = 0, layers_set = 0, r;
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
    if (!strcmp(a, "--quiet")) { o->progress = 0; continue; }
#define OPT(name) ((r = cli_opt(argc, argv, &i, name, &v)) < 0 ? (free(data), 1) : r == 0 ? 0 : 2)
#define NUM(dst, lo, hi) do { int64_t x_; if (cli_i64(a, v, lo, hi, &x_)) { free(data); return 1; } dst = x_; } while (0)
#define FLT(dst, lo, hi) do { if (cli_f32(a, v, lo, hi, &dst)) { free(data); return 1; } } while (0)
#define HYPER() do { if (!bad_resume) bad_resume = a; } while (0)
    int k;
    if ((k = OPT("--out")) == 1) return 1; else if (k) { o->out_dir = v; continue; }
    if ((k = OPT("--resume")) == 1) return 1; else if (k) { o->resume_dir = v; continue; }
    if ((k = OPT("--teacher")) == 1) return 1; else if (k) { d.teacher_dir = v; continue; }
    if ((k = OPT("--student-layers")) == 1) return 1; else if (k) { NUM(d.student_layers, 1, 1024); layers_set = 1; HYPER(); continue; }
    if ((k = OPT("--temperature")) == 1) return 1; else if (k) { FLT(d.temperature, 0.01f, 100); HYPER(); continue; }
    if ((k = OPT("--alpha-ce")) == 1) return 1; else if (k) { FLT(d.alpha_ce, 0, 1000); HYPER(); continue; }
    if ((k = OPT("--alpha-mlm")) == 1) return 1; else if (k) { FLT(d.alpha_mlm, 0, 1000); HYPER(); continue; }
    if ((k = OPT("--objective")) == 1) return 1; else if (k) { objective = v; HYPER(); continue; }
    if ((k = OPT("--mlm-prob")) == 1) return 1; else if (k) { FLT(o->mlm_prob, 0.001f, 0.9f); HYPER(); continue; }
    if ((k = OPT("--context")) == 1) return 1; else if (k) { NUM(o->context, 5, 1 << 20); HYPER(); continue; }
    if ((k = OPT("--batch")) == 1) return 1; else if (k) { NUM(o->batch, 1, 1 << 20); HYPER(); continue; }
    if ((k = OPT("--grad-accum")) == 1) return 1; else if (k) { NUM(o->grad_accum, 1, 1 << 20); HYPER(); continue; }
    if ((k = OPT("--steps")) == 1) return 1; else if (k) { NUM(o->steps, 1, INT64_MAX / 2); steps_set = 1; continue; }
    if ((k = OPT("--warmup")) == 1) return 1; else if (k) { NUM(o->warmup, 0, INT64_MAX / 2); warmup_set = 1; HYPER(); continue; }
    if ((k = OPT("--lr")) == 1) return 1; else if (k) { FLT(o->lr, 0, 10); HYPER(); continue; }
    if ((k = OPT("--min-lr")) == 1) return 1; else if (k) { FLT(o->min_lr, 0, 10); min_lr_set = 1; HYPER(); continue; }
    if ((k = OPT("--weight-decay")) == 1) return 1; else if (k) { FLT(o->weight_decay, 0, 10); HYPER(); continue; }
    if ((k = OPT("--clip")) == 1) return 1; else if (k) { FLT(o->clip, 0, 1e9); HYPER(); continue; }
    if ((k = OPT("--val-fraction")) == 1) return 1; else if (k) { FLT(o->val_fraction, 0, 0.9f); HYPER(); continue; }
    if ((k = OPT("--seed")) == 1) return 1; else if (k) { if (cli_u64(a, v, &o->seed)) { free(data); return 1; } HYPER(); continue; }
    if ((k = OPT("--eval-every")) == 1) return 1; else if (k) { NUM(o->eval_every, 0, INT64_MAX / 2); continue; }
    if ((k = OPT("--eval-batches")) == 1) return 1; else if (k) { NUM(o->eval_batches, 1, 1 << 20); continue; }
    if ((k = OPT("--save-every")) == 1) return 1; else if (k) { NUM(o->save_every, 0, INT64_MAX / 2); continue; }
    if ((k = OPT("--threads")) == 1) return 1; else if (k) { NUM(threads, 1, 4096); continue; }
#undef OPT
#undef NUM
#undef FLT
#undef HYPER
    free(data);
    return cli_unknown("distill", a);
  }
  o->data = data; o->n_data = n_data;
  int rc = 0;
#define FAIL(...) do { rc = cli_error(__VA_ARGS__); goto done; } while (0)
  if (!o->out_dir) FAIL("--out DIR is required (see 'lmkit distill --help')");
  if (o->resume_dir) {
    if (bad_resume)
      FAIL("%s cannot be changed when resuming: the run's settings come from %s/trainer_state.json and distill.json",
           bad_resume, o->resume_dir);
  } else {
    if (!d.teacher_dir) FAIL("--teacher DIR is required (see 'lmkit distill --help')");
    if (!layers_set) FAIL("--student-layers N is required (see 'lmkit distill --help')");
    if (n_data == 0) FAIL("--data is required (see 'lmkit distill --help')");
  }
  if (objective) {
    if (!strcmp(objective, "mlm")) d.nsp = 0;
    else if (!strcmp(objective, "mlm+nsp")) d.nsp = 1;
    else FAIL("unknown --objective '%s' (mlm, mlm+nsp)", objective);
  }
  if (o->resume_dir && !steps_set) o->steps = 0;   /* 0: keep the checkpoint's planned steps */
  if (!warmup_set) o->warmup = o->steps / 10 < 100 ? o->steps / 10 : 100;
  if (!min_lr_set) o->min_lr = o->lr / 10;
  lm_set_threads((int)threads);

  lm_distill_result res;
  fprintf(stderr, "lmkit distill: teacher %s -> %s; %lld threads\n", o->resume_dir ? "(from the checkpoint)" : d.teacher_dir,
          o->out_dir, (long long)lm_get_threads());
  if (lm_distill(&d, &res)) { rc = cli_fail(); goto done; }
  double st_mb = file_mb(o->out_dir, "model.safetensors");
  printf("teacher: %lld layers, %lld parameters (%.2f MB fp32)\n", (long long)res.teacher_layers,
         (long long)res.teacher_params, res.teacher_params * 4 / 1e6);
  printf("student: %lld layers from teacher layers", (long long)res.student_layers);
  for (int64_t l = 0; l < res.student_layers && l < 64; l++) printf(" %lld", (long long)res.layers[l]);
  printf(", %lld parameters (%.2f MB fp32, model.safetensors %.2f MB): %.2fx the teacher's\n",
         (long long)res.student_params, res.student_params * 4 / 1e6, st_mb,
         res.teacher_params ? (double)res.student_params / (double)res.teacher_params : NAN);
  printf("distill loss %.4f -> %.4f (kl %.4f, student mlm %.4f, teacher mlm %.4f)  val loss %.4f\n", res.first_loss,
         res.last_loss, res.last_kl, res.last_mlm, res.teacher_mlm, res.val_loss);
  if (res.teacher_tps > 0 && res.student_tps > 0)
    printf("forward speed on %lld x %lld tokens: teacher %.0f tok/s, student %.0f tok/s: %.2fx faster\n",
           (long long)res.speed_B, (long long)res.speed_T, res.teacher_tps, res.student_tps, res.student_tps / res.teacher_tps);
  fprintf(stderr, "lmkit distill: student saved to %s\n", o->out_dir);
#undef FAIL
done:
  free(data);
  return rc;
}
