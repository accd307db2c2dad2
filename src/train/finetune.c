/* finetune.c — `lmkit finetune --task classify`: fine-tunes a pre-trained
 * model directory (an encoder such as BERT, or a decoder such as GPT-2) for
 * sequence classification (docs/finetune.md).
 *
 * Steps: read the training file (labels numbered in order of first
 * appearance) and the eval file (its labels must all occur in training), load
 * the tokenizer and the encoder with a freshly initialised pooler + classifier
 * (lm_model_load_head), encode [CLS] text [SEP] cut to the context, then run
 * the shared trainer (lm_train_run) with the classification objective of
 * objectives/cls.c as its factory: warmup over the first 10% of the steps,
 * cosine decay to 0, AdamW with weight decay 0.01, gradient clipping at 1.
 * Each evaluation writes val_loss and val_accuracy to metrics.jsonl (the
 * objective's eval_fields); at the end the label names are written into config.json as
 * id2label / label2id, and the final eval accuracy and loss are appended. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/heads.h"
#include "tokenizer/tokenizer.h"
#include "model/config.h"
#include "model/model.h"
#include "train/finetune.h"

void lm_finetune_opts_default(lm_finetune_opts *o) {
  memset(o, 0, sizeof *o);
  o->epochs = 3; o->batch = 32; o->context = 128;
  o->lr = 3e-5f; o->warmup_ratio = 0.1f; o->weight_decay = 0.01f; o->clip = 1.0f;
  o->dropout = o->attn_dropout = -1;
  o->seed = 42; o->progress = 1;
}

lm_status lm_finetune_load(lm_model **m, const lm_finetune_opts *fo, int head, int64_t n_labels) {
  lm_status st = lm_model_load_head(m, fo->model_dir, head, n_labels, fo->seed);
  if (!st) lm_config_set_dropout(&(*m)->cfg, fo->dropout, fo->attn_dropout);
  return st;
}

typedef struct {
  const lm_cls_data *train, *eval;
  int64_t batch;
  int group_by_length;
  double last_acc;
} ft_ctx;

static lm_status factory(lm_objective *obj, lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o, lm_rng *rng,
                         const int64_t *cursor, void *ctx) {
  (void)tok; (void)rng;
  ft_ctx *c = ctx;
  return lm_objective_cls(obj, m, c->train, c->eval, o->batch, o->seed, c->group_by_length, cursor, &c->last_acc);
}

lm_status lm_finetune_setup(const lm_finetune_opts *fo, int head, const char *task, int64_t min_context,
                            lm_tokenizer **tok, int64_t *context, lm_config *cfg) {
  *tok = NULL;
  if (!fo->model_dir || !fo->train_path || !fo->out_dir)
    return lm_error(LM_ERR_ARG, "fine-tuning needs a model directory, training data and an output directory");
  if (fo->batch < 1 || fo->epochs < 0 || fo->steps < 0 || fo->context < min_context)
    return lm_error(LM_ERR_ARG, "batch >= 1, epochs >= 0, steps >= 0 and context >= %lld are required", (long long)min_context);
  char *cfgpath = lm_path_join(fo->model_dir, "config.json");
  if (!cfgpath) return LM_ERR_NOMEM;
  lm_status st = lm_dir_exists(fo->model_dir) ? lm_config_load(cfg, cfgpath)
                                               : lm_error(LM_ERR_IO, "%s: no such model directory", fo->model_dir);
  free(cfgpath);
  if (st) return st;
  const lm_family *f = lm_family_of(cfg);
  if (!lm_family_class_for(f, head))
    return lm_error(LM_ERR_UNSUPPORTED, "%s is a %s model, which has no %s head", fo->model_dir, f->model_type,
                    lm_head_name(head));
  /* [CLS] question [SEP] context [SEP] with segments: an encoder's input */
  if (head == LM_HEAD_QA && f->pool != LM_POOL_FIRST)
    return lm_error(LM_ERR_UNSUPPORTED, "%s is a %s model: question answering reads [CLS] question [SEP] context [SEP], "
                    "which needs an encoder (bert)", fo->model_dir, f->model_type);
  *context = fo->context < cfg->n_positions ? fo->context : cfg->n_positions;
  if (*context < min_context)
    return lm_error(LM_ERR_RANGE, "%s: the model has %lld positions, fewer than the %lld %s needs", fo->model_dir,
                    (long long)cfg->n_positions, (long long)min_context, task);
  st = lm_tokenizer_load(tok, fo->model_dir);
  if (!st && lm_tokenizer_vocab_size(*tok) > cfg->vocab_size)
    st = lm_error(LM_ERR_ARG, "%s: the tokenizer has %lld ids but the model only %lld", fo->model_dir,
                  (long long)lm_tokenizer_vocab_size(*tok), (long long)cfg->vocab_size);
  if (st) { lm_tokenizer_free(*tok); *tok = NULL; }
  return st;
}

void lm_finetune_train_opts(const lm_finetune_opts *fo, int64_t n_train, int64_t context, lm_train_opts *o) {
  int64_t per_epoch = (n_train + fo->batch - 1) / fo->batch;
  lm_train_opts_default(o);
  o->out_dir = fo->out_dir;
  o->batch = fo->batch;
  o->context = context;
  o->steps = fo->steps > 0 ? fo->steps : fo->epochs * per_epoch;
  o->warmup = (int64_t)(fo->warmup_ratio * (double)o->steps + 0.5);
  o->lr = fo->lr; o->min_lr = 0;
  o->weight_decay = fo->weight_decay; o->clip = fo->clip;
  o->beta1 = 0.9f; o->beta2 = 0.999f; o->eps = 1e-8f;   /* torch AdamW defaults, as run_glue uses */
  o->eval_every = fo->eval_every > 0 ? fo->eval_every : per_epoch;
  o->eval_batches = 0;
  o->val_fraction = 0;
  o->seed = fo->seed;
  o->progress = fo->progress;
  o->save_every = 0;
}

FILE *lm_finetune_open_metrics(const char *out_dir, char **path) {
  *path = lm_path_join(out_dir, "metrics.jsonl");
  if (!*path) return NULL;
  FILE *f = fopen(*path, "a");
  if (!f) lm_error(LM_ERR_IO, "%s: cannot open for appending", *path);
  return f;
}

static lm_status read_and_encode(const char *path, const lm_config *cfg, const lm_tokenizer *tok, lm_cls_labels *labels,
                                 int grow, int64_t context, lm_cls_data *d) {
  lm_cls_rows rows;
  lm_status st = lm_cls_read(path, labels, grow, &rows);
  if (st) return st;
  st = lm_cls_encode(d, cfg, tok, (const char *const *)rows.texts, rows.labels, rows.n, context);
  if (st) lm_error_prefix(st, "%s", path);
  lm_cls_rows_free(&rows);
  return st;
}

lm_status lm_finetune_classify(const lm_finetune_opts *fo, lm_finetune_result *res) {
  memset(res, 0, sizeof *res);
  res->eval_accuracy = res->eval_loss = NAN;
  lm_tokenizer *tok = NULL;
  lm_model *m = NULL;
  lm_cls_labels labels = {0};
  lm_cls_data train = {0}, eval = {0};
  ft_ctx ctx = {0};
  char *cpath = NULL, *mpath = NULL;
  lm_config cfg;
  int64_t context;
  lm_status st = lm_finetune_setup(fo, LM_HEAD_CLASSIFY, "classification", 3, &tok, &context, &cfg);
  if (st) return st;
  if (!st) st = read_and_encode(fo->train_path, &cfg, tok, &labels, 1, context, &train);
  if (!st && labels.n < 2)
    st = lm_error(LM_ERR_ARG, "%s: every example has the label '%s': classification needs at least 2 labels",
                  fo->train_path, labels.names[0]);
  if (!st && fo->eval_path) st = read_and_encode(fo->eval_path, &cfg, tok, &labels, 0, context, &eval);
  if (!st) st = lm_finetune_load(&m, fo, LM_HEAD_CLASSIFY, labels.n);
  if (st) goto done;
  /* decoders pool the last real token; HF needs the padding id in the config to find it */
  if (m->cfg.pad_token_id < 0) m->cfg.pad_token_id = train.pad;

  lm_train_opts o;
  lm_finetune_train_opts(fo, train.n, train.context > eval.context ? train.context : eval.context, &o);
  o.objective = "cls";
  if (o.steps < 1) { st = lm_error(LM_ERR_ARG, "nothing to train: 0 epochs and no --steps"); goto done; }
  ctx.train = &train; ctx.eval = fo->eval_path ? &eval : NULL; ctx.batch = fo->batch; ctx.last_acc = NAN;
  ctx.group_by_length = fo->group_by_length;
  if ((st = lm_mkdir_p(fo->out_dir))) goto done;
  st = lm_train_run(m, tok, &o, factory, &ctx, NULL, NULL);
  if (st) goto done;

  cpath = lm_path_join(fo->out_dir, "config.json");
  if (!cpath) { st = LM_ERR_NOMEM; goto done; }
  if ((st = lm_config_set_label_names(cpath, (const char *const *)labels.names, labels.n))) goto done;
  if (fo->eval_path && (st = lm_cls_accuracy(m, &eval, &res->eval_accuracy, &res->eval_loss))) goto done;
  FILE *f = lm_finetune_open_metrics(fo->out_dir, &mpath);
  if (!f) { st = mpath ? LM_ERR_IO : LM_ERR_NOMEM; goto done; }
  if (fo->eval_path)
    fprintf(f, "{\"step\": %lld, \"eval_loss\": %.9g, \"eval_accuracy\": %.6f, \"eval_examples\": %lld}\n",
            (long long)o.steps, res->eval_loss, res->eval_accuracy, (long long)eval.n);
  fclose(f);
  res->n_train = train.n; res->n_eval = eval.n; res->n_labels = labels.n; res->steps = o.steps;
  res->context = context; res->train_truncated = train.n_truncated; res->eval_truncated = eval.n_truncated;
done:
  free(cpath); free(mpath);
  lm_model_free(m);
  lm_tokenizer_free(tok);
  lm_cls_data_free(&train); lm_cls_data_free(&eval);
  lm_cls_labels_free(&labels);
  return st;
}
