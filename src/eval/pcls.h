/* pcls.h — classification by prompt (src/eval/pcls.c): each record's text goes
 * into a prompt template, and every label word is scored as an ending after
 * it, so that the task is multiple-choice (mc.h) and scored by lm_mc_eval.
 *
 * Records are JSONL {"text": ..., "label": ...} ("sentence" is taken for
 * "text", GLUE's "idx" is allowed and not read) or TSV TEXT<TAB>LABEL lines
 * (SST-2's files; a first line "sentence<TAB>label" or "text<TAB>label" is a
 * header). A label is a string or an integer; an integer k (or a string of
 * digits that is not itself a label word) names the k-th label word. */
#ifndef LM_EVAL_PCLS_H
#define LM_EVAL_PCLS_H

#include <stddef.h>
#include <stdint.h>
#include "eval/mc.h"

typedef struct {
  char *text, *label;
  int64_t line;   /* 1-based, in the file */
} lm_pcls_item;

typedef struct { lm_pcls_item *items; int64_t n; } lm_pcls_set;

/* Parses JSONL (the first non-blank line starts with '{') or TSV text; errors say "name:LINE: ...". */
lm_status lm_pcls_parse(const char *text, size_t len, const char *name, lm_pcls_set *s);
lm_status lm_pcls_read(const char *path, lm_pcls_set *s);
void lm_pcls_free(lm_pcls_set *s);

#define LM_PCLS_TEMPLATE "{text}\nLabel:"

/* The label words when none are given: the distinct labels of the sets, in byte order (malloc'ed
 * array of pointers into the sets). Labels that are all numbers are an error: they need words. */
lm_status lm_pcls_default_words(const lm_pcls_set *const *sets, int n_sets, const char ***words, int *n_words);

/* The multiple-choice task of s: ctx = tmpl with every "{text}" replaced by the record's text,
 * endings = the label words, label = the record's word. A label that is neither a word nor the
 * index of one is an error naming file and line (`name`). */
lm_status lm_pcls_to_mc(const lm_pcls_set *s, const char *name, const char *tmpl, const char *const *words, int n_words,
                       lm_mc_set *out);

#endif
