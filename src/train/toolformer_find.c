/* toolformer_find.c — the text side of Toolformer's calculator data
 * (toolformer.h): finding the arithmetic in a text, the call text, and the
 * text with the kept calls inserted. Apart from the scoring (toolformer.c)
 * so that fuzz/fuzz_toolformer.c can link it with the calculator alone.
 *
 * Finding: a scan for stretches of digits, points, spaces, parentheses and
 * operators that start at a number, a parenthesis or a minus sign before a
 * number, not glued to a word, trimmed of what cannot end an expression, with
 * at least one binary operator and a value the calculator (infer/calc.h)
 * computes. The call goes after the expression, or after the "=" that
 * follows it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "infer/calc.h"
#include "train/toolformer.h"

/* bytes of the operator at s: + - * / ^, × ÷ (U+00D7, U+00F7), U+2212 minus; 0 when none */
static size_t op_len(const char *s) {
  if (*s && strchr("+-*/^", *s)) return 1;
  if (!strncmp(s, "\xc3\x97", 2) || !strncmp(s, "\xc3\xb7", 2)) return 2;
  if (!strncmp(s, "\xe2\x88\x92", 3)) return 3;
  return 0;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_alnum(char c) { return is_digit(c) || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
/* a character that glues a number before it to a word: "v1.2", "x2", "é3" */
static int is_word(char c) { return is_alnum(c) || c == '.' || (unsigned char)c >= 0x80; }

/* the end of the stretch of expression characters from s[i] */
static size_t stretch(const char *s, size_t i) {
  for (;;) {
    size_t k = op_len(s + i);
    if (k) { i += k; continue; }
    if (s[i] && (is_digit(s[i]) || strchr(". ()", s[i]))) { i++; continue; }
    return i;
  }
}

/* the bytes of the operator that ends s[a..e) (0 when none): e may be mid-UTF-8 only past a */
static size_t op_before(const char *s, size_t a, size_t e) {
  for (size_t k = 1; k <= 3 && k <= e - a; k++)
    if (op_len(s + e - k) == k) return k;
  return 0;
}

/* Trims s[*a..*e) to a possible expression: no trailing spaces, points or operators, no
 * unmatched parenthesis at either end. */
static void trim(const char *s, size_t *a, size_t *e) {
  for (int changed = 1; changed && *e > *a;) {
    changed = 0;
    size_t k;
    while (*e > *a && (s[*e - 1] == ' ' || s[*e - 1] == '.')) { (*e)--; changed = 1; }
    while (*e > *a && (k = op_before(s, *a, *e))) { *e -= k; changed = 1; }
    while (*a < *e && s[*a] == ' ') { (*a)++; changed = 1; }
    int open = 0, close = 0;
    for (size_t i = *a; i < *e; i++) { open += s[i] == '('; close += s[i] == ')'; }
    if (close > open && s[*e - 1] == ')') { (*e)--; changed = 1; }
    else if (open > close && s[*a] == '(') { (*a)++; changed = 1; }
  }
}

/* 1 when s[a..e) has an operator after an operand (a digit or ')'), i.e. a binary one */
static int has_binary_op(const char *s, size_t a, size_t e) {
  int operand = 0;
  for (size_t i = a; i < e;) {
    size_t k = op_len(s + i);
    if (k && operand) return 1;
    if (k) { i += k; continue; }
    if (is_digit(s[i]) || s[i] == ')') operand = 1;
    else if (s[i] == '(') operand = 0;
    i++;
  }
  return 0;
}

lm_status lm_toolformer_find(const char *text, lm_toolformer_cand **c, int64_t *n) {
  *c = NULL; *n = 0;
  int64_t cap = 0;
  size_t len = strlen(text);
  for (size_t i = 0; i < len;) {
    /* a start: a digit, a parenthesis, or a minus before a number; not glued to a word */
    int starts = is_digit(text[i]) || text[i] == '(' || (text[i] == '-' && i + 1 < len && (is_digit(text[i + 1]) || text[i + 1] == '('));
    if (!starts || (i > 0 && is_word(text[i - 1]))) { i++; continue; }
    size_t a = i, e = stretch(text, i);
    trim(text, &a, &e);
    size_t next = e > i ? e : i + 1;
    if (e > a && has_binary_op(text, a, e) && (is_digit(text[e - 1]) || text[e - 1] == ')') && !is_alnum(text[e]) &&
        !(text[e] == '.' && is_digit(text[e + 1]))) {   /* not "3+4x", but "3+4." */
      char res[40];
      double v;
      if (!lm_calc_eval(text + a, e - a, &v)) {
        lm_calc_result(text + a, e - a, res, sizeof res);
        size_t at = e, j = e;
        while (text[j] == ' ') j++;
        if (text[j] == '=') at = j + 1;
        if (*n == cap) {
          int64_t nc = cap ? 2 * cap : 8;
          lm_toolformer_cand *c2 = lm_xrealloc(*c, (size_t)nc * sizeof *c2);
          if (!c2) { free(*c); *c = NULL; *n = 0; return LM_ERR_NOMEM; }
          *c = c2; cap = nc;
        }
        lm_toolformer_cand *x = &(*c)[(*n)++];
        memset(x, 0, sizeof *x);
        x->start = a; x->end = e; x->at = at;
        snprintf(x->result, sizeof x->result, "%s", res);
        next = at;
      }
    }
    i = next;
  }
  return LM_OK;
}

char *lm_toolformer_call(const char *text, const lm_toolformer_cand *c, int with_result) {
  size_t k = c->end - c->start, cap = k + strlen(c->result) + 64;
  char *s = malloc(cap);
  if (!s) return NULL;
  snprintf(s, cap, " " LM_CALC_OPEN "%.*s" LM_CALC_CLOSE "%s%s", (int)k, text + c->start,
           with_result ? LM_CALC_ARROW : "", with_result ? c->result : "");
  return s;
}

char *lm_toolformer_apply(const char *text, const lm_toolformer_cand *c, int64_t n) {
  size_t len = strlen(text), cap = len + 1, o = 0, from = 0;
  char **calls = calloc((size_t)(n ? n : 1), sizeof *calls);
  if (!calls) return NULL;
  int ok = 1;
  for (int64_t i = 0; i < n && ok; i++)
    if (c[i].keep) { ok = (calls[i] = lm_toolformer_call(text, &c[i], 1)) != NULL; if (ok) cap += strlen(calls[i]); }
  char *s = ok ? malloc(cap) : NULL;
  for (int64_t i = 0; s && i < n; i++) {   /* candidates come in text order */
    if (!calls[i]) continue;
    memcpy(s + o, text + from, c[i].at - from); o += c[i].at - from; from = c[i].at;
    size_t k = strlen(calls[i]);
    memcpy(s + o, calls[i], k); o += k;
  }
  if (s) { memcpy(s + o, text + from, len - from); s[o + len - from] = 0; }
  for (int64_t i = 0; i < n; i++) free(calls[i]);
  free(calls);
  return s;
}

