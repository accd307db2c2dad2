/* mc.h — multiple-choice evaluation by log-likelihood, as EleutherAI's
 * lm-evaluation-harness scores HellaSwag (src/eval/mc.c).
 *
 * A task record is {"ctx": "...", "endings": ["...", ...], "label": k} (the
 * field names of the HF hellaswag dataset, whose other fields are allowed and
 * not read). Each ending is scored as the summed log-probability of the
 * continuation " " + ending after the prompt; acc takes the highest sum,
 * acc_norm the highest sum divided by the continuation's length in bytes. */
#ifndef LM_EVAL_MC_H
#define LM_EVAL_MC_H

#include <stddef.h>
#include <stdint.h>
#include "lmkit.h"

typedef struct {
  char *ctx;
  char **endings;
  int n_endings;
  int label;
  int64_t line;   /* 1-based, in the file */
} lm_mc_item;

typedef struct { lm_mc_item *items; int64_t n; } lm_mc_set;

/* The reader the eval tasks' record files share (mc_data.c): each non-blank line of the text is
 * parsed into an item of `size` bytes (zeroed first) by parse, which sets *skip for a line that is
 * not a record (a header); on an error the partial item is freed by item_free and so are the
 * others. No records is an error naming the file. */
typedef struct {
  size_t size;
  lm_status (*parse)(void *user, const char *p, size_t l, const char *name, int64_t line, void *item, int *skip);
  void (*item_free)(void *item);
  void *user;
} lm_eval_reader;
lm_status lm_eval_parse(const lm_eval_reader *r, const char *text, size_t len, const char *name, void **items, int64_t *n);
lm_status lm_eval_read(const lm_eval_reader *r, const char *path, void **items, int64_t *n);

/* Parses JSONL text (len bytes); errors say "name:LINE: ...". Blank lines are skipped. */
lm_status lm_mc_parse(const char *text, size_t len, const char *name, lm_mc_set *s);
lm_status lm_mc_read(const char *path, lm_mc_set *s);
void lm_mc_free(lm_mc_set *s);

/* Summed log-probability (nats) of the tokens of cont after context, lm-eval's way: the context's
 * trailing spaces move to the continuation, the continuation's tokens are those of
 * encode(context + cont) past encode(context), an empty context is the end-of-text token, and a
 * pair longer than the model's positions keeps its last tokens. *n_cont: the continuation's tokens.
 * m must be an LM-head decoder reserved for (1, n_positions) (lm_mc_eval does it). */
lm_status lm_loglik(lm_model *m, const lm_tokenizer *tok, const char *context, const char *cont, double *ll,
                    int64_t *n_cont);

typedef struct {
  int shots;                  /* examples from train before each prompt (0) */
  const lm_mc_set *train;     /* where the shots come from (required when shots > 0) */
  uint64_t seed;              /* which shots: a pure function of (seed, item index) */
  int progress;               /* a progress bar on stderr */
} lm_mc_opts;

typedef struct {
  int64_t n;
  double acc, acc_norm, acc_stderr, acc_norm_stderr;   /* stderr: sample std / sqrt(n), as lm-eval */
} lm_mc_result;

/* Per item: the prompt's shots (indices into train), each ending's log-likelihood and byte length,
 * and the predictions; return non-zero to stop with an error already set. */
typedef struct {
  int64_t index;
  const int64_t *shots; int n_shots;
  const double *loglik; const int64_t *bytes; int n;
  int pred, pred_norm, label;
} lm_mc_detail;
typedef lm_status (*lm_mc_callback)(const lm_mc_detail *d, void *user);

lm_status lm_mc_eval(lm_model *m, const lm_tokenizer *tok, const lm_mc_set *test, const lm_mc_opts *o, lm_mc_result *r,
                     lm_mc_callback cb, void *user);

/* Shared by the tasks that prompt with solved examples (mc.c, em.c): item i's k shots, distinct
 * indices below n_train drawn by an rng seeded by (seed, i), never i itself when `same` (the shots
 * come from the evaluated set); and lm-eval's standard error of a mean of 0/1 scores. */
void lm_eval_shots(uint64_t seed, int64_t i, int64_t n_train, int same, int k, int64_t *shots);
double lm_eval_stderr(double p, int64_t n);

#endif
