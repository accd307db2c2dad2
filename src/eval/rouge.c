/* rouge.c — ROUGE-L (see rouge.h): tokens are the [a-z0-9] runs of the
 * lower-cased text (rouge-score's tokenize.tokenize without a stemmer), and
 * the longest common subsequence is the textbook dynamic programme kept to
 * two rows, O(|target| |pred|) time and O(|pred|) memory. */
#include <stdlib.h>
#include <string.h>
#include "eval/rouge.h"

typedef struct { const char *s; int64_t n; } span;

static int tok_byte(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* the tokens of s, malloc'ed (NULL with *n = 0 when none or out of memory: *oom tells) */
static span *tokens(const char *s, int64_t *n, int *oom) {
  int64_t k = 0, cap = 0;
  span *t = NULL;
  *n = 0;
  for (const char *p = s; *p;) {
    while (*p && !tok_byte(*p)) p++;
    if (!*p) break;
    const char *b = p;
    while (tok_byte(*p)) p++;
    if (k == cap) {
      cap = cap ? 2 * cap : 16;
      span *g = realloc(t, (size_t)cap * sizeof *t);
      if (!g) { free(t); *oom = 1; return NULL; }
      t = g;
    }
    t[k++] = (span){b, p - b};
  }
  *n = k;
  return t;
}

static int same(span a, span b) {
  if (a.n != b.n) return 0;
  for (int64_t i = 0; i < a.n; i++)
    if (lower(a.s[i]) != lower(b.s[i])) return 0;
  return 1;
}

double lm_rouge_l(const char *target, const char *pred, double *p, double *r) {
  int oom = 0;
  int64_t nt, np;
  span *t = tokens(target, &nt, &oom), *q = tokens(pred, &np, &oom);
  int64_t *row = oom || !nt || !np ? NULL : calloc((size_t)(2 * (np + 1)), sizeof *row);
  double P = 0, R = 0, F = 0;
  if (row) {
    int64_t *prev = row, *cur = row + np + 1;   /* LCS of t[0..i) and q[0..j) in cur[j] */
    for (int64_t i = 1; i <= nt; i++) {
      for (int64_t j = 1; j <= np; j++)
        cur[j] = same(t[i - 1], q[j - 1]) ? prev[j - 1] + 1 : prev[j] > cur[j - 1] ? prev[j] : cur[j - 1];
      int64_t *x = prev; prev = cur; cur = x;
    }
    int64_t lcs = prev[np];
    P = (double)lcs / (double)np;
    R = (double)lcs / (double)nt;
    F = P + R > 0 ? 2 * P * R / (P + R) : 0;
  } else if (nt && np) {
    oom = 1;
  }
  free(row); free(t); free(q);
  if (p) *p = P;
  if (r) *r = R;
  return oom ? -1 : F;
}
