/* cmd_finetune.c — `lmkit finetune`: fine-tunes a pre-trained model
 * directory (an encoder such as BERT, or a decoder such as GPT-2) on a labelled task: `--task classify` (sequence classification:
 * pooler + linear head on [CLS]; lm_finetune_classify, src/train/finetune.c),
 * `--task tokens` (NER) and `--task qa` (SQuAD) (lm_finetune_tokens /
 * lm_finetune_qa, src/train/finetune_tasks.c) and `--task text2text` (an
 * encoder-decoder such as T5 taught to write a target text for an input text;
 * lm_finetune_text2text, src/train/finetune_text2text.c). This file parses
 * flags, picks the default learning rate by the model's width (LR_BY_WIDTH)
 * and prints the outcome. See docs/finetune.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "model/config.h"
#include "train/finetune.h"
#include "train/finetune_tasks.h"
#include "train/text2text.h"

static const char *HELP =
  "usage: lmkit finetune --model DIR --task classify|tokens|qa|text2text --data TRAIN --out DIR [--eval DEV] [options]\n"
  "\n"
  "Fine-tunes a pre-trained model directory (from 'lmkit train' or Hugging Face) for\n"
  "sequence classification: a freshly initialised head, trained with the model by\n"
  "cross-entropy. An encoder (BERT) reads [CLS] text [SEP] and classifies the pooled\n"
  "[CLS]; a decoder (GPT-2) reads the text and classifies its last real token, as\n"
  "Hugging Face's GPT2ForSequenceClassification does. The model written to --out is\n"
  "a BertForSequenceClassification / GPT2ForSequenceClassification directory whose\n"
  "config.json names the labels (id2label, label2id); use it with 'lmkit predict'.\n"
  "--task tokens trains a linear head on every token (*ForTokenClassification)\n"
  "on CoNLL data ('word ... TAG' per line, blank lines between sentences) and\n"
  "reports entity-level F1; --task qa (encoders) trains start/end span heads\n"
  "(BertForQuestionAnswering) on SQuAD v1.1 JSON and reports exact match and F1.\n"
  "--task text2text trains an encoder-decoder (t5) to write each example's target\n"
  "text for its input text, by cross-entropy on the target; the evaluation decodes\n"
  "every input (greedy unless the generation flags below say otherwise) and reports\n"
  "exact match and, when targets are long, ROUGE-L; 'lmkit predict' runs the result.\n"
  "\n"
  "data (TSV or JSONL, see docs/finetune.md):\n"
  "  TSV:   a header row naming a 'label' column and a text column ('sentence',\n"
  "         'text' or 'content'), in any order; other columns are ignored. There is\n"
  "         no quoting: a field is the bytes between two tabs.\n"
  "  JSONL: one object per line, {\"label\": ..., \"sentence\"|\"text\"|\"content\": ...}.\n"
  "  Blank lines are skipped; CRLF line ends and a UTF-8 BOM are accepted. Labels are\n"
  "  strings, numbered in order of first appearance in TRAIN; a DEV label never seen\n"
  "  in TRAIN is an error naming file:line. Texts longer than --context - 2 tokens are\n"
  "  truncated (counted and reported).\n"
  "  text2text: TSV lines input<TAB>target (an optional first line input<TAB>target\n"
  "  is a header), or JSONL {\"input\": ..., \"target\": ...}; an empty input or target,\n"
  "  a line without exactly one tab or a record with other members is an error naming\n"
  "  file:line. Inputs get </s> and are cut to --context tokens, targets to\n"
  "  --max-target (both counted and reported).\n"
  "\n"
  "options:\n"
  "  --model DIR          pre-trained model directory (bert or gpt2, with its tokenizer)\n"
  "  --task NAME          classify, tokens (NER: CoNLL data, entity F1), qa (SQuAD v1.1\n"
  "                       JSON, exact match and F1) or text2text (encoder-decoders: exact\n"
  "                       match, ROUGE-L); see docs/finetune.md\n"
  "  --stride N           qa: overlap in tokens of the context windows (default: half a window)\n"
  "  --data FILE          training examples\n"
  "  --eval FILE          development examples: loss and accuracy each epoch and at the end\n"
  "  --out DIR            where the fine-tuned model, tokenizer and metrics.jsonl go\n"
  "  --epochs N           passes over the training data (3); steps = N * ceil(examples/batch)\n"
  "  --steps N            optimiser steps instead of --epochs\n"
  "  --batch N            examples per step (32)\n"
  "  --context N          longest input in tokens, [CLS] and [SEP] included (128; at most\n"
  "                       the model's positions)\n"
  "  --lr X               peak learning rate; linear warmup, cosine decay to 0 (default by the\n"
  "                       model's width: 3e-4 under 384, 1e-4 under 768, 3e-5 from 768 up as\n"
  "                       bert-base; printed at start; see docs/finetune.md)\n"
  "  --warmup-ratio X     share of the steps spent warming up (0.1)\n"
  "  --weight-decay X     AdamW weight decay on weight matrices (0.01)\n"
  "  --clip X             clip the global gradient norm; 0 disables (1.0)\n"
  "  --dropout P          training dropout rate in [0, 1) on embeddings, attention and residual\n"
  "                       branches (default: the model's config.json, e.g. BERT's 0.1)\n"
  "  --attn-dropout P     the attention probabilities' rate, if other than --dropout\n"
  "  --group-by-length    classify: sort each run of 50 batches of the shuffled order by length\n"
  "                       (Hugging Face's group_by_length), so batches of short texts pad little\n"
  "                       and an epoch costs less (off)\n"
  "  --eval-every N       evaluate every N steps (default: once per epoch)\n"
  "  --seed N             head initialisation and data order (42)\n"
  "  --threads N          threads (default: all cores)\n"
  "  --quiet              no progress bar\n"
  "\n"
  "text2text:\n"
  "  --max-target N       longest target in tokens, </s> included (128; at most the model's positions)\n"
  "  --rouge auto|on|off  report ROUGE-L (rouge-score's, no stemming); auto: when the eval targets\n"
  "                       average more than 3 words (auto)\n"
  "  --max-tokens N       tokens the evaluation generates at most (default: the longest target)\n"
  "  --temperature X      0 = greedy (0); --top-k N, --top-p X sample as 'lmkit generate' does\n"
  "  --beams N            beam search (--length-penalty X, --early-stopping, --no-repeat-ngram N)\n"
  "  The evaluation writes OUT/eval_predictions.txt, one output per eval line.\n";

/* The default peak learning rate by the model's width (config.json's hidden size): the first
 * row whose bound exceeds it. run_glue's 3e-5 suits bert-base (768) and wider but barely moves
 * the 4-layer x 256 BERTs pre-trained here; ELECTRA-Small (width 256) fine-tunes at 3e-4, and
 * bench/finetune_sweep.sh's runs on such a BERT are in docs/finetune.md with what they did and
 * did not settle. 1e-4 between them is interpolated (ELECTRA-Base fine-tunes at 1e-4; Turc et
 * al. search 3e-5..1e-4 for their compact BERTs of width 256-512), not measured here. */
static const struct { int64_t below; float lr; const char *text, *rule; } LR_BY_WIDTH[] = {
  {384, 3e-4f, "3e-4", "narrower than 384"}, {768, 1e-4f, "1e-4", "of width 384 to 767"},
  {INT64_MAX, 3e-5f, "3e-5", "of width 768 (bert-base) or more"}};

/* Sets o->lr from the model's width when --lr was not given and says so; a config.json that
 * cannot be read is left to the fine-tuning call, which reports it. */
static void default_lr(lm_finetune_opts *o) {
  char *path = lm_path_join(o->model_dir, "config.json");
  lm_config cfg;
  int ok = path && lm_dir_exists(o->model_dir) && !lm_config_load(&cfg, path);
  free(path);
  if (!ok) return;
  size_t i = 0;
  while (cfg.n_embd >= LR_BY_WIDTH[i].below) i++;
  o->lr = LR_BY_WIDTH[i].lr;
  fprintf(stderr, "lmkit finetune: lr %s (the default for models %s; this one is %lld wide; --lr to change)\n",
          LR_BY_WIDTH[i].text, LR_BY_WIDTH[i].rule, (long long)cfg.n_embd);
}

/* --task tokens / qa (src/train/finetune_tasks.c) */
static int finetune_task(const lm_finetune_opts *o, int kind, int64_t stride) {
  lm_finetune_tasks_result r;
  if ((kind == 1 ? lm_finetune_tokens(o, &r) : lm_finetune_qa(o, stride, &r))) return cli_fail();
  if (kind == 1) {
    fprintf(stderr, "lmkit finetune: %lld training sentences, %lld tags, %lld steps, context %lld\n",
            (long long)r.n_train, (long long)r.n_labels, (long long)r.steps, (long long)r.context);
    if (r.train_truncated)
      fprintf(stderr, "lmkit finetune: truncated %lld of %lld training sentences to %lld tokens\n",
              (long long)r.train_truncated, (long long)r.n_train, (long long)r.context - 2);
    if (r.eval_truncated)
      fprintf(stderr, "lmkit finetune: truncated %lld of %lld eval sentences to %lld tokens (cut words count as O)\n",
              (long long)r.eval_truncated, (long long)r.n_eval, (long long)r.context - 2);
    if (o->eval_path)
      printf("eval entity f1 %.4f  precision %.4f  recall %.4f  token accuracy %.4f  eval loss %.4f  (%lld sentences)\n",
             r.f1, r.precision, r.recall, r.accuracy, r.eval_loss, (long long)r.n_eval);
  } else {
    fprintf(stderr, "lmkit finetune: %lld training questions (%lld windows), %lld steps, context %lld\n",
            (long long)r.n_train, (long long)r.train_features, (long long)r.steps, (long long)r.context);
    if (r.train_bad_answers || r.train_skipped)
      fprintf(stderr, "lmkit finetune: skipped %lld training answers whose span is outside the context or whose text "
              "differs from it (%lld questions left without an answer)\n", (long long)r.train_bad_answers,
              (long long)r.train_skipped);
    if (r.eval_bad_answers || r.eval_skipped)
      fprintf(stderr, "lmkit finetune: skipped %lld eval answers whose span is outside the context or whose text "
              "differs from it (%lld questions left without an answer)\n", (long long)r.eval_bad_answers,
              (long long)r.eval_skipped);
    if (r.train_unanswerable)
      fprintf(stderr, "lmkit finetune: skipped %lld training questions whose answer fits in no window\n",
              (long long)r.train_unanswerable);
    if (r.train_truncated || r.eval_truncated)
      fprintf(stderr, "lmkit finetune: cut %lld training and %lld eval questions to their first tokens\n",
              (long long)r.train_truncated, (long long)r.eval_truncated);
    if (o->eval_path)
      printf("eval exact match %.4f  f1 %.4f  eval loss %.4f  (%lld questions, %lld windows)\n", r.exact_match, r.qa_f1,
             r.eval_loss, (long long)r.n_eval, (long long)r.eval_features);
  }
  fprintf(stderr, "lmkit finetune: model saved to %s\n", o->out_dir);
  return 0;
}

/* --task text2text (src/train/finetune_text2text.c) */
static int finetune_text2text(const lm_finetune_opts *o, int64_t max_target, const lm_t2t_eval_opts *eo) {
  lm_t2t_result r;
  if (lm_finetune_text2text(o, max_target, eo, &r)) return cli_fail();
  fprintf(stderr, "lmkit finetune: %lld training examples, %lld steps, inputs of at most %lld tokens, targets of %lld\n",
          (long long)r.n_train, (long long)r.steps, (long long)r.context, (long long)r.max_target);
  if (r.train_src_cut || r.eval_src_cut)
    fprintf(stderr, "lmkit finetune: truncated %lld of %lld training and %lld of %lld eval inputs to %lld tokens "
            "(</s> included)\n", (long long)r.train_src_cut, (long long)r.n_train, (long long)r.eval_src_cut,
            (long long)r.n_eval, (long long)r.context);
  if (r.train_tgt_cut || r.eval_tgt_cut)
    fprintf(stderr, "lmkit finetune: truncated %lld of %lld training and %lld of %lld eval targets to %lld tokens "
            "(</s> included)\n", (long long)r.train_tgt_cut, (long long)r.n_train, (long long)r.eval_tgt_cut,
            (long long)r.n_eval, (long long)r.max_target);
  if (o->eval_path) {
    printf("eval exact match %.4f", r.eval.exact_match);
    if (r.rouge) printf("  rouge-l %.4f", r.eval.rouge_l);
    printf("  eval loss %.4f  (%lld examples, targets of %.1f words on average%s)\n", r.eval.loss, (long long)r.n_eval,
           r.mean_target_words, r.rouge ? "" : "; --rouge on adds ROUGE-L");
  }
  fprintf(stderr, "lmkit finetune: model saved to %s\n", o->out_dir);
  return 0;
}

int cmd_finetune(int argc, char **argv) {
  lm_finetune_opts o;
  lm_finetune_opts_default(&o);
  const char *task = NULL, *v;
  int64_t threads = 0, stride = 0, max_target = 128;
  int r, gen_used = 0, lr_set = 0;
  lm_t2t_eval_opts eo = {.rouge = -1};
  lm_gen_opts_default(&eo.gen);
  eo.gen.temperature = 0; eo.gen.max_tokens = 0;   /* greedy, up to the longest target */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); return 0; }
    if (!strcmp(a, "--quiet")) { o.progress = 0; continue; }
    if (!strcmp(a, "--group-by-length")) { o.group_by_length = 1; continue; }
#define OPT(name) ((r = cli_opt(argc, argv, &i, name, &v)) < 0 ? -1 : r)
#define NUM(dst, lo, hi) do { int64_t x_; if (cli_i64(a, v, lo, hi, &x_)) return 1; dst = x_; } while (0)
#define FLT(dst, lo, hi) do { if (cli_f32(a, v, lo, hi, &dst)) return 1; } while (0)
    int k;
    if ((k = OPT("--model")) < 0) return 1; else if (k) { o.model_dir = v; continue; }
    if ((k = OPT("--task")) < 0) return 1; else if (k) { task = v; continue; }
    if ((k = OPT("--data")) < 0) return 1; else if (k) { o.train_path = v; continue; }
    if ((k = OPT("--eval")) < 0) return 1; else if (k) { o.eval_path = v; continue; }
    if ((k = OPT("--out")) < 0) return 1; else if (k) { o.out_dir = v; continue; }
    if ((k = OPT("--epochs")) < 0) return 1; else if (k) { NUM(o.epochs, 1, 1000000); continue; }
    if ((k = OPT("--steps")) < 0) return 1; else if (k) { NUM(o.steps, 1, INT64_MAX / 2); continue; }
    if ((k = OPT("--batch")) < 0) return 1; else if (k) { NUM(o.batch, 1, 1 << 16); continue; }
    if ((k = OPT("--context")) < 0) return 1; else if (k) { NUM(o.context, 3, 1 << 20); continue; }
    if ((k = OPT("--lr")) < 0) return 1; else if (k) { FLT(o.lr, 0, 10); lr_set = 1; continue; }
    if ((k = OPT("--warmup-ratio")) < 0) return 1; else if (k) { FLT(o.warmup_ratio, 0, 1); continue; }
    if ((k = OPT("--weight-decay")) < 0) return 1; else if (k) { FLT(o.weight_decay, 0, 10); continue; }
    if ((k = OPT("--clip")) < 0) return 1; else if (k) { FLT(o.clip, 0, 1e9); continue; }
    if ((k = OPT("--dropout")) < 0) return 1; else if (k) { FLT(o.dropout, 0, 0.999f); continue; }
    if ((k = OPT("--attn-dropout")) < 0) return 1; else if (k) { FLT(o.attn_dropout, 0, 0.999f); continue; }
    if ((k = OPT("--eval-every")) < 0) return 1; else if (k) { NUM(o.eval_every, 1, INT64_MAX / 2); continue; }
    if ((k = OPT("--seed")) < 0) return 1; else if (k) { if (cli_u64(a, v, &o.seed)) return 1; continue; }
    if ((k = OPT("--stride")) < 0) return 1; else if (k) { NUM(stride, 1, 1 << 20); continue; }
    if ((k = OPT("--threads")) < 0) return 1; else if (k) { NUM(threads, 1, 4096); continue; }
    if ((k = OPT("--max-target")) < 0) return 1; else if (k) { NUM(max_target, 2, 1 << 20); gen_used = 1; continue; }
    if ((k = OPT("--rouge")) < 0) return 1;
    else if (k) {
      eo.rouge = !strcmp(v, "on") ? 1 : !strcmp(v, "off") ? 0 : !strcmp(v, "auto") ? -1 : -2;
      if (eo.rouge == -2) return cli_error("invalid value for --rouge: '%s' (auto, on, off)", v);
      gen_used = 1;
      continue;
    }
    if ((k = cli_gen_flag(argc, argv, &i, &eo.gen)) < 0) return 1; else if (k) { gen_used = 1; continue; }
#undef OPT
#undef NUM
#undef FLT
    return cli_unknown("finetune", a);
  }
  if (!task) return cli_error("--task is required (available: classify, tokens, qa, text2text; see 'lmkit finetune --help')");
  int kind = !strcmp(task, "classify") ? 0 : !strcmp(task, "tokens") ? 1 : !strcmp(task, "qa") ? 2
           : !strcmp(task, "text2text") ? 3 : -1;
  if (kind < 0) return cli_error("unknown --task '%s' (available: classify, tokens, qa, text2text)", task);
  if (gen_used && kind != 3)
    return cli_error("--max-target, --rouge and the generation flags are for --task text2text");
  if (eo.gen.calc || eo.gen.kv_f16) return cli_error("--calc and --kv-type are not for fine-tuning");
  if (o.group_by_length && kind != 0) return cli_error("--group-by-length is for --task classify");
  if (!o.model_dir) return cli_error("--model DIR is required (see 'lmkit finetune --help')");
  if (!o.train_path) return cli_error("--data FILE is required (see 'lmkit finetune --help')");
  if (!o.out_dir) return cli_error("--out DIR is required (see 'lmkit finetune --help')");
  lm_set_threads((int)threads);
  if (!lr_set) default_lr(&o);
  if (kind == 3) {
    eo.gen.seed = o.seed;
    eo.progress = o.progress;
    return finetune_text2text(&o, max_target, &eo);
  }
  if (kind) return finetune_task(&o, kind, stride);
  lm_finetune_result res;
  if (lm_finetune_classify(&o, &res)) return cli_fail();
  fprintf(stderr, "lmkit finetune: %lld training examples, %lld labels, %lld steps, context %lld\n",
          (long long)res.n_train, (long long)res.n_labels, (long long)res.steps, (long long)res.context);
  if (res.train_truncated)
    fprintf(stderr, "lmkit finetune: truncated %lld of %lld training texts to %lld tokens\n",
            (long long)res.train_truncated, (long long)res.n_train, (long long)res.context - 2);
  if (res.eval_truncated)
    fprintf(stderr, "lmkit finetune: truncated %lld of %lld eval texts to %lld tokens\n",
            (long long)res.eval_truncated, (long long)res.n_eval, (long long)res.context - 2);
  if (o.eval_path)
    printf("eval accuracy %.4f  eval loss %.4f  (%lld examples)\n", res.eval_accuracy, res.eval_loss,
           (long long)res.n_eval);
  fprintf(stderr, "lmkit finetune: model saved to %s\n", o.out_dir);
  return 0;
}
