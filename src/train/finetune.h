/* finetune.h — BERT fine-tuning for sequence classification (docs/finetune.md):
 * the labelled-text reader, the encoded data set, the trainer objective over
 * it (src/train/objectives/cls.c) and the driver that wires it into
 * lm_train_run (src/train/finetune.c).
 *
 * Data files are TSV with a header row, or JSONL, holding a label and a text
 * per example (see lm_cls_read). Labels are strings; ids are given in order of
 * first appearance in the training file, and the names go into the model's
 * config.json as Hugging Face id2label / label2id. Examples are encoded as
 * [CLS] text [SEP], cut to the context, and padded per batch to the batch's
 * longest with an attention mask. */
#ifndef LM_TRAIN_FINETUNE_H
#define LM_TRAIN_FINETUNE_H

#include <stdint.h>
#include <stdio.h>
#include "lmkit.h"
#include "base/base.h"
#include "train/train.h"

/* ---- label set: names in id order */
typedef struct { char **names; int64_t n; } lm_cls_labels;
int64_t lm_cls_label_find(const lm_cls_labels *l, const char *name);   /* id or -1 */
void lm_cls_labels_free(lm_cls_labels *l);

/* ---- raw rows of a data file */
typedef struct {
  int64_t n;          /* examples */
  char **texts;       /* (n) */
  int32_t *labels;    /* (n) ids into the label set */
  int64_t *lines;     /* (n) 1-based line of each example in the file */
} lm_cls_rows;

/* Reads `path`. The format is sniffed from the first non-blank line: '{' means JSONL (one
 * object per line with a "label" (string or number) and a "sentence", "text" or "content"
 * string), anything else TSV: a header row naming a `label` column and a text column
 * (`sentence`, `text` or `content`, first of these in that order), in any order, other columns
 * ignored. TSV has no quoting or escapes: a field is the bytes between tabs. Blank lines are
 * skipped, a UTF-8 BOM and CRLF line ends are accepted. With grow, unseen labels are appended
 * to `labels` (training); without, an unseen label is an error naming file:line. Errors name
 * the file (and line, or the header). At least one example is required. */
lm_status lm_cls_read(const char *path, lm_cls_labels *labels, int grow, lm_cls_rows *rows);
/* The same over text in memory (`name` is used in messages). */
lm_status lm_cls_parse(const char *text, size_t len, const char *name, lm_cls_labels *labels, int grow,
                       lm_cls_rows *rows);
void lm_cls_rows_free(lm_cls_rows *r);

/* ---- encoded examples */
typedef struct {
  int64_t n;
  uint32_t *ids;        /* tokens of every example, no specials */
  int64_t *off;         /* (n+1) example i is ids[off[i] .. off[i+1]) */
  int32_t *labels;      /* (n), or NULL for unlabelled input */
  int64_t context;      /* longest sequence: text tokens + [CLS] + [SEP] */
  int64_t n_truncated;  /* examples whose text was cut to context - 2 tokens */
  int32_t cls, sep, pad;  /* the frame (lm_seq_frame): cls, sep -1 for decoders */
} lm_cls_data;

/* The ids of [CLS], [SEP], [PAD] (or <s>, </s>, <pad>); an error says which is missing. */
lm_status lm_cls_special_ids(const lm_tokenizer *tok, int32_t *cls, int32_t *sep, int32_t *pad);
/* How a model reads one sequence: encoders (the family pools the first token) as [CLS] text [SEP]
 * padded with [PAD]; decoders as the text itself (open = close = -1) padded with pad_token_id, or
 * the end-of-text id. */
lm_status lm_seq_frame(const lm_config *cfg, const lm_tokenizer *tok, int32_t *open, int32_t *close, int32_t *pad);
static inline int64_t lm_frame_len(int32_t open, int32_t close) { return (open >= 0) + (close >= 0); }
/* Tokenizes n texts (labels may be NULL) framed for cfg's family (lm_seq_frame), each cut to fit
 * the context (context >= 3). */
lm_status lm_cls_encode(lm_cls_data *d, const lm_config *cfg, const lm_tokenizer *tok, const char *const *texts,
                        const int32_t *labels, int64_t n, int64_t context);
void lm_cls_data_free(lm_cls_data *d);
/* Lays out examples idx[0..nb) as (nb, T) ids + mask (+ labels when the data has them),
 * padded to the longest; returns T. */
int64_t lm_cls_fill(const lm_cls_data *d, const int64_t *idx, int64_t nb, int32_t *ids, uint8_t *mask,
                    int32_t *labels);

/* Accuracy and mean cross-entropy of a classify-head BERT over labelled data (batches of 32;
 * reserves the model for them, so not for use between training steps). */
lm_status lm_cls_accuracy(lm_model *m, const lm_cls_data *d, double *acc, double *loss);

/* The trainer objective: shuffled epochs over `train` (the order of epoch e is a pure function
 * of (seed, e), so the cursor (epoch, index) resumes exactly), micro-batches of B padded to
 * their longest, lm_forward/backward with the labels. evaluate = mean loss over all of
 * `eval` (NAN when eval is NULL); the accuracy of that pass goes to *last_acc if not NULL.
 * group_by_length: each run of 50 batches of an epoch's order is sorted by length, longest
 * first (lm_epochs_group_by_length), so batches pad little. Reserves the model for (B, train->context). */
lm_status lm_objective_cls(lm_objective *o, lm_model *m, const lm_cls_data *train, const lm_cls_data *eval,
                           int64_t B, uint64_t seed, int group_by_length, const int64_t *cursor, double *last_acc);

/* ---- the driver */
typedef struct {
  const char *model_dir;    /* pre-trained BERT directory (config, weights, tokenizer) */
  const char *train_path, *eval_path;   /* eval may be NULL */
  const char *out_dir;
  int64_t epochs;           /* 3; steps = epochs * ceil(n_train / batch) unless steps > 0 */
  int64_t steps;
  int64_t batch;            /* 32 */
  int64_t context;          /* 128, capped to the model's positions */
  int64_t eval_every;       /* 0: once per epoch */
  float lr;                 /* 3e-5 */
  float warmup_ratio;       /* 0.1 */
  float weight_decay;       /* 0.01 */
  float clip;               /* 1.0 */
  float dropout;            /* -1: the model config's rates; else lm_config_set_dropout */
  float attn_dropout;       /* -1: as dropout */
  int group_by_length;      /* 0; classify: batch examples of similar length (lm_objective_cls) */
  uint64_t seed;            /* 42 */
  int progress;
} lm_finetune_opts;

typedef struct {
  int64_t n_train, n_eval, n_labels, steps, context;
  int64_t train_truncated, eval_truncated;
  double eval_accuracy, eval_loss;   /* NAN without eval data */
} lm_finetune_result;

void lm_finetune_opts_default(lm_finetune_opts *o);
/* Checks the options and model_dir (its family has the head; QA needs an encoder), loads the
 * tokenizer and the config; *context = the options' context capped to the model's positions. */
lm_status lm_finetune_setup(const lm_finetune_opts *fo, int head, const char *task, int64_t min_context,
                            lm_tokenizer **tok, int64_t *context, lm_config *cfg);
/* lm_model_load_head of model_dir with the options' dropout rates (--dropout / --attn-dropout). */
lm_status lm_finetune_load(lm_model **m, const lm_finetune_opts *fo, int head, int64_t n_labels);
/* The trainer options of a fine-tuning run over n_train examples: steps = epochs * ceil(n_train /
 * batch) unless --steps, warmup over warmup_ratio of them then cosine to 0, torch's AdamW
 * defaults, an evaluation per epoch unless eval_every, no checkpoints on the way. */
void lm_finetune_train_opts(const lm_finetune_opts *fo, int64_t n_train, int64_t context, lm_train_opts *o);
/* out_dir/metrics.jsonl opened for appending the final evaluation (*path malloc'ed; NULL and an
 * error set when it cannot be opened, *path NULL when out of memory). */
FILE *lm_finetune_open_metrics(const char *out_dir, char **path);
/* Loads model_dir with a fresh classification head sized to the training labels, fine-tunes
 * it with lm_train_run, writes out_dir (model, tokenizer, label names in config.json,
 * metrics.jsonl with val_loss/val_accuracy per evaluation and a final eval line). */
lm_status lm_finetune_classify(const lm_finetune_opts *o, lm_finetune_result *res);

#endif
