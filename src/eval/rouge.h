/* rouge.h — ROUGE-L as Google's rouge-score package (rouge_scorer, the
 * metric T5 and most summarisation papers report) computes it without
 * stemming (src/eval/rouge.c; checked against a port of it in
 * tests/reference/test_rouge.py). */
#ifndef LM_EVAL_ROUGE_H
#define LM_EVAL_ROUGE_H

#include <stdint.h>

/* ROUGE-L of a prediction against its target. Both are tokenized as rouge-score's default
 * tokenizer does: ASCII letters lower-cased, every byte other than [a-z0-9] a separator, so the
 * tokens are the maximal runs of [a-z0-9]. With L the length of their longest common subsequence,
 * precision = L / |pred|, recall = L / |target|, F = 2 P R / (P + R); all 0 when either side has no
 * token. p, r may be NULL. Returns F, or -1 when out of memory. (Python's str.lower, which the
 * package calls, maps a few non-ASCII letters to ASCII ones, e.g. U+212A KELVIN SIGN to 'k';
 * here every non-ASCII byte is a separator.) */
double lm_rouge_l(const char *target, const char *pred, double *p, double *r);

#endif
