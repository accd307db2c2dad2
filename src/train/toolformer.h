/* toolformer.h — Toolformer's augmented data for the calculator (Schick et
 * al. 2023; docs/rl.md "Toolformer"): calls are inserted into text where they
 * help the model predict what follows, and nowhere else.
 *
 *   lm_toolformer_find(text, &c, &n);                 // candidate calls
 *   lm_toolformer_score(m, tok, ctx, nctx, text, c, n, &opts);   // losses, keep
 *   char *aug = lm_toolformer_apply(text, c, n);     // the kept calls inserted
 *
 * Candidates: every arithmetic expression in the text (numbers joined by
 * + - * / × ÷ ^, parentheses, at least one operator, a value the calculator
 * computes) gets one call, inserted right after the expression, or after the
 * "=" that follows it, where the result is written:
 *
 *   "so 77 + 33 = 110 apples"  ->  "so 77 + 33 = <|calc|>77 + 33<|/calc|> → 110 110 apples"
 *
 * i.e. text[0..at) + " <|calc|>E<|/calc|> → R" + text[at..), the form that
 * generation with --calc produces (the model writes the call, the splice adds
 * " → R"). Filtering: with L(x) the summed negative log-likelihood of the
 * first `window` tokens of text[at..) after context x, a call is kept when
 *
 *   min(L(none), L(call without result)) - L(call with result) >= threshold
 *
 * where none is text[0..at), the call without result text[0..at) +
 * " <|calc|>E<|/calc|>" (Toolformer's L-_i; lmkit sums the window's tokens
 * equally where the paper weights them 1, .8, .6, .4, .2). The three token
 * sequences are ctx + ids(text[0..at)) + ids(call) + ids(text[at..)), each
 * piece tokenized alone so the scored tokens are the same in all three; a
 * sequence longer than the model's positions loses tokens at its front. The
 * log-likelihoods are lm_pref_logps's (the DPO reference cache). */
#ifndef LM_TRAIN_TOOLFORMER_H
#define LM_TRAIN_TOOLFORMER_H

#include <stddef.h>
#include <stdint.h>
#include "lmkit.h"
#include "base/base.h"

typedef struct {
  size_t start, end;            /* the expression: text[start..end) */
  size_t at;                    /* where the call goes */
  char result[40];              /* the calculator's result text */
  double loss_none, loss_no_result, loss_call;   /* summed NLL of the window's tokens */
  int64_t scored;               /* tokens in the window (0: nothing follows; never kept) */
  int keep;
} lm_toolformer_cand;

typedef struct {
  double threshold;             /* tau (1.0) */
  int64_t window;               /* following tokens scored (5) */
  int64_t batch;                /* candidates per forward pass (3 sequences each) */
} lm_toolformer_opts;

/* The candidate calls of text, in order (*c malloc'ed, NULL when none). */
lm_status lm_toolformer_find(const char *text, lm_toolformer_cand **c, int64_t *n);
/* Scores every candidate and sets keep. ctx (n_ctx ids, may be 0) precedes the text: a chat
 * record's rendered prompt; m must have the LM head. */
lm_status lm_toolformer_score(lm_model *m, const lm_tokenizer *tok, const uint32_t *ctx, int64_t n_ctx,
                              const char *text, lm_toolformer_cand *c, int64_t n, const lm_toolformer_opts *o);
/* The call text inserted for c: " <|calc|>E<|/calc|>" and, with_result, " → R" (malloc'ed). */
char *lm_toolformer_call(const char *text, const lm_toolformer_cand *c, int with_result);
/* text with every kept call inserted (malloc'ed; NULL when out of memory). */
char *lm_toolformer_apply(const char *text, const lm_toolformer_cand *c, int64_t n);

#endif
