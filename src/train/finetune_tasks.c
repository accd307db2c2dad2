/* finetune_tasks.c — `lmkit finetune --task tokens` and `--task qa`: the
 * drivers that fine-tune a pre-trained BERT directory for token
 * classification (NER, CoNLL data) and extractive question answering
 * (SQuAD v1.1) (docs/finetune.md).
 *
 * Both follow lm_finetune_classify (finetune.c): check the model directory is
 * a BERT, load its tokenizer, read and encode the training (and eval) data,
 * load the encoder with a fresh task head (lm_model_load_head), and run the
 * shared trainer (lm_train_run) with the task's objective as factory: warmup
 * over the first warmup_ratio of the steps, cosine decay to 0, AdamW (torch
 * defaults), clipping. Each evaluation's task score (entity F1, or EM and F1)
 * goes on the trainer's val_loss line of metrics.jsonl (the objectives'
 * eval_fields); a final eval line is appended after the run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/heads.h"
#include "model/config.h"
#include "model/model.h"
#include "train/finetune_tasks.h"

typedef struct {
  const void *train, *eval;
  const lm_cls_labels *labels;
} task_ctx;

static lm_status tokens_factory(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o,
                                lm_rng *rng, const int64_t *cursor, void *ctx) {
  (void)tok; (void)rng;
  task_ctx *c = ctx;
  return lm_objective_tokcls(obj, m, c->train, c->eval, c->labels, o->batch, o->seed, cursor, NULL);
}

static lm_status qa_factory(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o,
                            lm_rng *rng, const int64_t *cursor, void *ctx) {
  (void)tok; (void)rng;
  task_ctx *c = ctx;
  return lm_objective_qa(obj, m, c->train, c->eval, o->batch, o->seed, cursor, NULL, NULL);
}

/* ------------------------------------------------------------------ tokens */

lm_status lm_finetune_tokens(const lm_finetune_opts *fo, lm_finetune_tasks_result *res) {
  memset(res, 0, sizeof *res);
  res->eval_loss = res->precision = res->recall = res->f1 = res->accuracy = NAN;
  res->exact_match = res->qa_f1 = NAN;
  lm_tokenizer *tok = NULL;
  lm_model *m = NULL;
  lm_cls_labels labels = {0};
  lm_conll ctrain = {0}, ceval = {0};
  lm_tokcls_data train = {0}, eval = {0};
  task_ctx ctx = {0};
  char *cpath = NULL, *mpath = NULL;
  int64_t context;
  lm_config cfg;
  lm_status st = lm_finetune_setup(fo, LM_HEAD_TOKENS, "token classification", 3, &tok, &context, &cfg);
  if (st) return st;
  if (!st) st = lm_conll_read(fo->train_path, &labels, 1, &ctrain);
  if (!st && labels.n < 2)
    st = lm_error(LM_ERR_ARG, "%s: every word has the tag '%s': token classification needs at least 2 tags",
                  fo->train_path, labels.names[0]);
  if (!st && fo->eval_path) st = lm_conll_read(fo->eval_path, &labels, 0, &ceval);
  if (!st && (st = lm_tokcls_encode(&train, &cfg, tok, &ctrain, context))) lm_error_prefix(st, "%s", fo->train_path);
  if (!st && fo->eval_path && (st = lm_tokcls_encode(&eval, &cfg, tok, &ceval, context))) lm_error_prefix(st, "%s", fo->eval_path);
  if (!st) st = lm_finetune_load(&m, fo, LM_HEAD_TOKENS, labels.n);
  if (st) goto done;
  if (m->cfg.pad_token_id < 0) m->cfg.pad_token_id = train.pad;   /* decoders: the padding the data used */

  lm_train_opts o;
  lm_finetune_train_opts(fo, train.n, train.context > eval.context ? train.context : eval.context, &o);
  o.objective = "tokens";
  if (o.steps < 1) { st = lm_error(LM_ERR_ARG, "nothing to train: 0 epochs and no --steps"); goto done; }
  ctx.train = &train; ctx.eval = fo->eval_path ? &eval : NULL; ctx.labels = &labels;
  if ((st = lm_mkdir_p(fo->out_dir))) goto done;
  if ((st = lm_train_run(m, tok, &o, tokens_factory, &ctx, NULL, NULL))) goto done;

  cpath = lm_path_join(fo->out_dir, "config.json");
  if (!cpath) { st = LM_ERR_NOMEM; goto done; }
  if ((st = lm_config_set_label_names(cpath, (const char *const *)labels.names, labels.n))) goto done;
  if (fo->eval_path) {
    lm_ner_counts k;
    if ((st = lm_tokcls_evaluate(m, &eval, &labels, fo->batch, &res->eval_loss, &k))) goto done;
    lm_ner_scores(&k, &res->precision, &res->recall, &res->f1);
    res->accuracy = k.words ? (double)k.words_correct / (double)k.words : NAN;
  }
  FILE *f = lm_finetune_open_metrics(fo->out_dir, &mpath);
  if (!f) { st = mpath ? LM_ERR_IO : LM_ERR_NOMEM; goto done; }
  if (fo->eval_path)
    fprintf(f, "{\"step\": %lld, \"eval_loss\": %.9g, \"eval_precision\": %.6f, \"eval_recall\": %.6f, \"eval_f1\": %.6f, "
            "\"eval_accuracy\": %.6f, \"eval_sentences\": %lld}\n", (long long)o.steps, res->eval_loss, res->precision,
            res->recall, res->f1, res->accuracy, (long long)eval.n);
  fclose(f);
  res->n_train = train.n; res->n_eval = eval.n; res->n_labels = labels.n; res->steps = o.steps;
  res->context = context; res->train_truncated = train.n_truncated; res->eval_truncated = eval.n_truncated;
done:
  free(cpath); free(mpath);
  lm_model_free(m);
  lm_tokenizer_free(tok);
  lm_tokcls_data_free(&train); lm_tokcls_data_free(&eval);
  lm_conll_free(&ctrain); lm_conll_free(&ceval);
  lm_cls_labels_free(&labels);
  return st;
}

/* ------------------------------------------------------------------ qa */

lm_status lm_finetune_qa(const lm_finetune_opts *fo, int64_t stride, lm_finetune_tasks_result *res) {
  memset(res, 0, sizeof *res);
  res->eval_loss = res->precision = res->recall = res->f1 = res->accuracy = NAN;
  res->exact_match = res->qa_f1 = NAN;
  lm_tokenizer *tok = NULL;
  lm_model *m = NULL;
  lm_squad strain = {0}, seval = {0};
  lm_qa_data train = {0}, eval = {0};
  task_ctx ctx = {0};
  char *mpath = NULL;
  int64_t context;
  lm_config cfg;
  lm_status st = lm_finetune_setup(fo, LM_HEAD_QA, "question answering", 8, &tok, &context, &cfg);
  if (st) return st;
  if (!st) st = lm_squad_read(fo->train_path, &strain);
  if (!st && fo->eval_path) st = lm_squad_read(fo->eval_path, &seval);
  if (!st && (st = lm_qa_encode(&train, tok, &strain, context, stride, 1))) lm_error_prefix(st, "%s", fo->train_path);
  if (!st && fo->eval_path && (st = lm_qa_encode(&eval, tok, &seval, context, stride, 0))) lm_error_prefix(st, "%s", fo->eval_path);
  if (!st) st = lm_finetune_load(&m, fo, LM_HEAD_QA, 2);
  if (st) goto done;

  lm_train_opts o;
  lm_finetune_train_opts(fo, train.n_feat, train.context > eval.context ? train.context : eval.context, &o);
  o.objective = "qa";
  if (o.steps < 1) { st = lm_error(LM_ERR_ARG, "nothing to train: 0 epochs and no --steps"); goto done; }
  ctx.train = &train; ctx.eval = fo->eval_path ? &eval : NULL;
  if ((st = lm_mkdir_p(fo->out_dir))) goto done;
  if ((st = lm_train_run(m, tok, &o, qa_factory, &ctx, NULL, NULL))) goto done;
  if (fo->eval_path &&
      (st = lm_qa_evaluate(m, &eval, fo->batch, &res->eval_loss, &res->exact_match, &res->qa_f1, NULL))) goto done;
  FILE *f = lm_finetune_open_metrics(fo->out_dir, &mpath);
  if (!f) { st = mpath ? LM_ERR_IO : LM_ERR_NOMEM; goto done; }
  if (fo->eval_path)
    fprintf(f, "{\"step\": %lld, \"eval_loss\": %.9g, \"eval_exact_match\": %.6f, \"eval_f1\": %.6f, \"eval_questions\": %lld}\n",
            (long long)o.steps, res->eval_loss, res->exact_match, res->qa_f1, (long long)seval.n);
  fclose(f);
  res->n_train = strain.n; res->n_eval = seval.n; res->n_labels = 2; res->steps = o.steps; res->context = context;
  res->train_features = train.n_feat; res->eval_features = eval.n_feat;
  res->train_bad_answers = strain.n_bad_answers; res->eval_bad_answers = seval.n_bad_answers;
  res->train_skipped = strain.n_skipped; res->eval_skipped = seval.n_skipped;
  res->train_unanswerable = train.n_unanswerable;
  res->train_truncated = train.n_questions_cut; res->eval_truncated = eval.n_questions_cut;
done:
  free(mpath);
  lm_model_free(m);
  lm_tokenizer_free(tok);
  lm_qa_data_free(&train); lm_qa_data_free(&eval);
  lm_squad_free(&strain); lm_squad_free(&seval);
  return st;
}
