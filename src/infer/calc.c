/* calc.c — the safe arithmetic evaluator behind the calculator tool (calc.h).
 *
 * A recursive-descent parser over a bounded byte range:
 *   sum     = product { ("+" | "-") product }
 *   product = unary { ("*" | "/" | "×" | "÷") unary }
 *   unary   = ("+" | "-") unary | power
 *   power   = atom [ ("^" | "**") unary ]          right-associative; -2^2 = -(2^2)
 *   atom    = number | "(" sum ")"
 * Every value is a double checked after each step (finite, |x| <= 1e15), so a
 * hostile expression can neither overflow nor run long: the input is at most
 * 256 bytes and nesting at most 64 deep (fuzz/fuzz_calc.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "infer/calc.h"

#define LIMIT 1e15
#define MAX_DEPTH 64

typedef struct { const char *s; size_t n, i; int depth, bad; } parser;

static void skip(parser *p) { while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t')) p->i++; }

/* consumes tok when it comes next (after spaces) */
static int eat(parser *p, const char *tok) {
  skip(p);
  size_t k = strlen(tok);
  if (p->n - p->i >= k && !memcmp(p->s + p->i, tok, k)) { p->i += k; return 1; }
  return 0;
}

static double check(parser *p, double x) {
  if (!isfinite(x) || fabs(x) > LIMIT) p->bad = 1;
  return p->bad ? 0 : x;
}

static int digit(parser *p) { return p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9'; }

/* digits [. digits] [e [+-] digits], validated here and converted by strtod on a copy (exact rounding) */
static double number(parser *p) {
  size_t a = p->i;
  int any = 0;
  while (digit(p)) { p->i++; any = 1; }
  if (p->i < p->n && p->s[p->i] == '.') { p->i++; while (digit(p)) { p->i++; any = 1; } }
  if (!any) { p->bad = 1; return 0; }
  if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
    p->i++;
    if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
    if (!digit(p)) { p->bad = 1; return 0; }
    while (digit(p)) p->i++;
  }
  char buf[LM_CALC_MAX_EXPR + 1];
  memcpy(buf, p->s + a, p->i - a);   /* the whole input is at most LM_CALC_MAX_EXPR bytes */
  buf[p->i - a] = 0;
  return check(p, strtod(buf, NULL));
}

static double sum(parser *p);
static double unary(parser *p);

static double atom(parser *p) {
  skip(p);
  if (eat(p, "(")) {
    if (++p->depth > MAX_DEPTH) { p->bad = 1; return 0; }
    double x = sum(p);
    p->depth--;
    if (!eat(p, ")")) p->bad = 1;
    return p->bad ? 0 : x;
  }
  return number(p);
}

static double power(parser *p) {
  double x = atom(p);
  if (p->bad) return 0;
  if (eat(p, "**") || eat(p, "^")) {
    if (++p->depth > MAX_DEPTH) { p->bad = 1; return 0; }
    double e = unary(p);
    p->depth--;
    if (p->bad) return 0;
    if (x == 0 && e < 0) { p->bad = 1; return 0; }
    return check(p, pow(x, e));   /* a negative base with a fractional exponent is NaN: an error */
  }
  return x;
}

static double unary(parser *p) {
  if (eat(p, "-") || eat(p, "\xe2\x88\x92")) {   /* also U+2212 minus */
    if (++p->depth > MAX_DEPTH) { p->bad = 1; return 0; }
    double x = -unary(p);
    p->depth--;
    return p->bad ? 0 : x;
  }
  if (eat(p, "+")) {
    if (++p->depth > MAX_DEPTH) { p->bad = 1; return 0; }
    double x = unary(p);
    p->depth--;
    return p->bad ? 0 : x;
  }
  return power(p);
}

static double product(parser *p) {
  double x = unary(p);
  while (!p->bad) {
    if (eat(p, "**")) { p->i -= 2; break; }   /* a power, not a product: power() already took it */
    if (eat(p, "*") || eat(p, "\xc3\x97")) x = check(p, x * unary(p));
    else if (eat(p, "/") || eat(p, "\xc3\xb7")) {
      double y = unary(p);
      if (!p->bad && y == 0) p->bad = 1;
      x = p->bad ? 0 : check(p, x / y);
    } else break;
  }
  return p->bad ? 0 : x;
}

static double sum(parser *p) {
  double x = product(p);
  while (!p->bad) {
    if (eat(p, "+")) x = check(p, x + product(p));
    else if (eat(p, "-") || eat(p, "\xe2\x88\x92")) x = check(p, x - product(p));
    else break;
  }
  return p->bad ? 0 : x;
}

int lm_calc_eval(const char *expr, size_t n, double *value) {
  if (n > LM_CALC_MAX_EXPR) return -1;
  parser p = {.s = expr, .n = n};
  double x = sum(&p);
  skip(&p);
  if (p.bad || p.i != p.n) return -1;
  *value = x == 0 ? 0 : x;   /* no "-0" */
  return 0;
}

int lm_calc_result(const char *expr, size_t n, char *out, size_t cap) {
  double x;
  int k;
  if (lm_calc_eval(expr, n, &x)) k = snprintf(out, cap, "error");
  else if (x == floor(x)) k = snprintf(out, cap, "%.0f", x);   /* |x| <= 1e15: exact as an integer */
  else k = snprintf(out, cap, "%.10g", x);
  return k < 0 ? 0 : (size_t)k < cap ? k : (int)cap - 1;
}

int lm_calc_splice(const char *text, size_t n, char *out, size_t cap) {
  size_t lc = strlen(LM_CALC_CLOSE), lo = strlen(LM_CALC_OPEN);
  if (n < lc || memcmp(text + n - lc, LM_CALC_CLOSE, lc)) return 0;
  size_t end = n - lc;
  /* the last opening tag before the closing one, with no other closing tag between them */
  for (size_t i = end + 1; i-- > 0;) {
    if (i + lc <= end && !memcmp(text + i, LM_CALC_CLOSE, lc)) return 0;
    if (i + lo <= end && !memcmp(text + i, LM_CALC_OPEN, lo)) {
      int k = snprintf(out, cap, "%s", LM_CALC_ARROW);
      if (k < 0 || (size_t)k >= cap) return 0;
      return k + lm_calc_result(text + i + lo, end - i - lo, out + k, cap - (size_t)k);
    }
  }
  return 0;
}
