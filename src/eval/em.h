/* em.h — generation scored by exact match (src/eval/em.c, em_data.c).
 *
 * A record is JSONL {"input": ..., "target": ...} ("prompt" is taken for
 * "input", "answer" for "target"; the target may be an array of acceptable
 * answers, as SQuAD's). The model continues the prompt (k solved examples
 * "input target" separated by blank lines, then the input) by lm_generate (greedy
 * unless told otherwise) until a stop string, its end-of-text token or the
 * token limit; the output, cut before the stop string, matches when its
 * normalized form equals a normalized target's. */
#ifndef LM_EVAL_EM_H
#define LM_EVAL_EM_H

#include <stddef.h>
#include <stdint.h>
#include "lmkit.h"

typedef struct {
  char *input;
  char **targets; int n_targets;
  int64_t line;   /* 1-based, in the file */
} lm_em_item;

typedef struct { lm_em_item *items; int64_t n; } lm_em_set;

lm_status lm_em_parse(const char *text, size_t len, const char *name, lm_em_set *s);
lm_status lm_em_read(const char *path, lm_em_set *s);
void lm_em_free(lm_em_set *s);

/* How outputs and targets are compared: strip (surrounding whitespace), lower (strip + lowercase),
 * squad (SQuAD's normalize_answer: lowercase, drop ASCII punctuation, drop the words a/an/the,
 * collapse whitespace). */
typedef enum { LM_EM_STRIP, LM_EM_LOWER, LM_EM_SQUAD } lm_em_norm;
lm_status lm_em_norm_parse(const char *name, lm_em_norm *out);
char *lm_em_normalize(const char *s, lm_em_norm mode);   /* malloc'ed; NULL when out of memory */

typedef struct {
  int shots;                  /* examples from train before each prompt (0) */
  const lm_em_set *train;     /* where the shots come from (required when shots > 0) */
  uint64_t seed;              /* which shots: a pure function of (seed, item index) */
  const char *stop;           /* the output ends before it ("\n"); "" or NULL: none */
  lm_em_norm norm;
  lm_gen_opts gen;            /* the decoding (greedy: temperature 0) */
  int progress;
} lm_em_opts;

typedef struct { int64_t n; double em, em_stderr; } lm_em_result;

/* Per item: its shots (indices into train), the prompt, the output (cut at the stop string) and
 * whether it matched; return non-zero to stop with an error already set. */
typedef struct {
  int64_t index;
  const int64_t *shots; int n_shots;
  const char *prompt, *output;
  int match;
} lm_em_detail;
typedef lm_status (*lm_em_callback)(const lm_em_detail *d, void *user);

lm_status lm_em_eval(lm_model *m, const lm_tokenizer *tok, const lm_em_set *test, const lm_em_opts *o, lm_em_result *r,
                     lm_em_callback cb, void *user);

#endif
