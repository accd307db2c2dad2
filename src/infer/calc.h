/* calc.h — the calculator tool (docs/rl.md "The calculator"): a safe
 * arithmetic evaluator, and the text protocol a model uses to call it.
 *
 * A model writes  <|calc|>EXPR<|/calc|>  and generation (lm_generate, RL
 * rollouts) splices  " → RESULT"  right after the closing tag (the arrow is
 * U+2192, one space either side, no newline), then lets the model go on:
 *
 *   What is 77*33? <|calc|>77*33<|/calc|> → 2541 so the answer is 2541
 *
 * EXPR: decimal numbers (digits, an optional fraction, an optional exponent
 * e±N), + - * / (also × ÷), ^ or ** (right-associative powers), unary signs,
 * parentheses, spaces. Nothing else: no names, no functions. RESULT is the
 * value (an integer when it is one, else %.10g), or "error" for anything
 * that is not such an expression, a division by zero, a non-real power, a
 * value past ±1e15 at any step, nesting deeper than 64, or EXPR longer than
 * 256 bytes. It never executes code and all arithmetic is in double, so no
 * input can overflow an integer. */
#ifndef LM_INFER_CALC_H
#define LM_INFER_CALC_H

#include <stddef.h>

#define LM_CALC_OPEN "<|calc|>"
#define LM_CALC_CLOSE "<|/calc|>"
#define LM_CALC_ARROW " \xe2\x86\x92 "   /* " → " */
#define LM_CALC_MAX_EXPR 256

/* Evaluates expr[0..n); 0 and *value on success, -1 for "error". */
int lm_calc_eval(const char *expr, size_t n, double *value);
/* The result text of expr[0..n) (the number, or "error") into out (>= 32 bytes); returns its length. */
int lm_calc_result(const char *expr, size_t n, char *out, size_t cap);
/* When text[0..n) ends with a closing tag whose call opened after the last closing tag before it,
 * writes the text to splice (" → RESULT") into out (>= 40 bytes) and returns its length; else 0. */
int lm_calc_splice(const char *text, size_t n, char *out, size_t cap);

#endif
