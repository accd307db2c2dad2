/* text2text_data.c — the text-to-text data reader (TSV input<TAB>target lines or JSONL
 * {"input", "target"} records, errors naming file:line) and exact match's whitespace
 * normalisation; declarations and formats in text2text.h. Apart from the model code of
 * finetune_text2text.c so that fuzz/fuzz_text2text.c links it alone. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "train/text2text.h"

/* ------------------------------------------------------------------ reader */

void lm_t2t_rows_free(lm_t2t_rows *r) {
  if (!r) return;
  for (int64_t i = 0; i < r->n; i++) { free(r->inputs[i]); free(r->targets[i]); }
  free(r->inputs); free(r->targets); free(r->lines);
  memset(r, 0, sizeof *r);
}

static int all_blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isspace((unsigned char)s[i])) return 0;
  return 1;
}

static void trim(const char **s, size_t *n) {
  while (*n && ((*s)[0] == ' ' || (*s)[0] == '\r')) { (*s)++; (*n)--; }
  while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\r')) (*n)--;
}

static lm_status add_row(lm_t2t_rows *r, int64_t *cap, const char *name, int64_t line, const char *in, size_t nin,
                         const char *tg, size_t ntg) {
  trim(&in, &nin);   /* blanks around a field (a CRLF file's \r) are not part of it */
  trim(&tg, &ntg);
  if (memchr(in, 0, nin) || memchr(tg, 0, ntg))
    return lm_error(LM_ERR_FORMAT, "%s:%lld: a NUL byte (not a text file?)", name, (long long)line);
  if (all_blank(in, nin)) return lm_error(LM_ERR_FORMAT, "%s:%lld: empty input", name, (long long)line);
  if (all_blank(tg, ntg))
    return lm_error(LM_ERR_FORMAT, "%s:%lld: empty target (every example needs a target text to learn)", name,
                    (long long)line);
  if (r->n == *cap) {
    int64_t c = *cap ? 2 * *cap : 64;
    char **a = lm_xrealloc(r->inputs, (size_t)c * sizeof *a);
    if (!a) return LM_ERR_NOMEM;
    r->inputs = a;
    char **b = lm_xrealloc(r->targets, (size_t)c * sizeof *b);
    if (!b) return LM_ERR_NOMEM;
    r->targets = b;
    int64_t *l = lm_xrealloc(r->lines, (size_t)c * sizeof *l);
    if (!l) return LM_ERR_NOMEM;
    r->lines = l;
    *cap = c;
  }
  char *x = lm_xmalloc(nin + 1), *y = lm_xmalloc(ntg + 1);
  if (!x || !y) { free(x); free(y); return LM_ERR_NOMEM; }
  memcpy(x, in, nin); x[nin] = 0;
  memcpy(y, tg, ntg); y[ntg] = 0;
  r->inputs[r->n] = x; r->targets[r->n] = y; r->lines[r->n] = line;
  r->n++;
  return LM_OK;
}

static lm_status jsonl_row(lm_t2t_rows *r, int64_t *cap, const char *name, int64_t line, const char *s, size_t n) {
  cJSON *j = cJSON_ParseWithLength(s, n);
  if (!j || !cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return lm_error(LM_ERR_FORMAT, "%s:%lld: expected a JSON object {\"input\": ..., \"target\": ...}", name, (long long)line);
  }
  const cJSON *in = NULL, *tg = NULL, *it;
  lm_status st = LM_OK;
  cJSON_ArrayForEach(it, j) {
    const char *k = it->string ? it->string : "";
    if (!strcmp(k, "input") && !in) in = it;
    else if (!strcmp(k, "target") && !tg) tg = it;
    else { st = lm_error(LM_ERR_FORMAT, "%s:%lld: unknown or repeated member \"%.60s\" (a record holds \"input\" and "
                         "\"target\" only)", name, (long long)line, k); break; }
  }
  const char *miss = !in ? "input" : !tg ? "target" : NULL;
  if (!st && miss) st = lm_error(LM_ERR_FORMAT, "%s:%lld: missing \"%s\"", name, (long long)line, miss);
  if (!st && (!cJSON_IsString(in) || !cJSON_IsString(tg)))
    st = lm_error(LM_ERR_FORMAT, "%s:%lld: \"%s\" must be a string", name, (long long)line,
                  !cJSON_IsString(in) ? "input" : "target");
  if (!st) st = add_row(r, cap, name, line, in->valuestring, strlen(in->valuestring), tg->valuestring,
                        strlen(tg->valuestring));
  cJSON_Delete(j);
  return st;
}

static lm_status tsv_row(lm_t2t_rows *r, int64_t *cap, const char *name, int64_t line, const char *s, size_t n,
                         const char *begin, const char *end) {
  const char *tab = memchr(s, '\t', n);
  if (!tab) {   /* lm_next_line trims blanks: `input<TAB>` ends before its tab, `<TAB>target` starts after it */
    if (s > begin && s[-1] == '\t') return lm_error(LM_ERR_FORMAT, "%s:%lld: empty input", name, (long long)line);
    if (s + n < end && s[n] == '\t')
      return lm_error(LM_ERR_FORMAT, "%s:%lld: empty target (every example needs a target text to learn)", name,
                      (long long)line);
    return lm_error(LM_ERR_FORMAT, "%s:%lld: no tab: a line is input<TAB>target", name, (long long)line);
  }
  const char *tg = tab + 1;
  size_t ntg = n - (size_t)(tg - s);
  if (memchr(tg, '\t', ntg))
    return lm_error(LM_ERR_FORMAT, "%s:%lld: more than one tab: a line is input<TAB>target (no quoting; use JSONL for "
                    "texts with tabs)", name, (long long)line);
  return add_row(r, cap, name, line, s, (size_t)(tab - s), tg, ntg);
}

lm_status lm_t2t_parse(const char *text, size_t len, const char *name, lm_t2t_rows *r) {
  memset(r, 0, sizeof *r);
  size_t at = 0;
  int64_t line = 0, cap = 0;
  const char *s; size_t n;
  int jsonl = -1;
  lm_status st = LM_OK;
  while (!st && lm_next_line(text, len, &at, &line, &s, &n)) {
    if (jsonl < 0) {
      jsonl = s[0] == '{';
      if (!jsonl && n == 12 && !memcmp(s, "input\ttarget", 12)) continue;   /* the TSV header */
    }
    st = jsonl ? jsonl_row(r, &cap, name, line, s, n) : tsv_row(r, &cap, name, line, s, n, text, text + len);
  }
  if (!st && r->n == 0) st = lm_error(LM_ERR_FORMAT, "%s: no examples (input<TAB>target lines or JSONL records)", name);
  if (st) lm_t2t_rows_free(r);
  return st;
}

lm_status lm_t2t_read(const char *path, lm_t2t_rows *r) {
  char *text; size_t len;
  memset(r, 0, sizeof *r);
  lm_status st = lm_read_file(path, &text, &len);
  if (st) return st;
  st = lm_t2t_parse(text, len, path, r);
  free(text);
  return st;
}

/* ------------------------------------------------------------------ exact match */

/* s trimmed, blank runs as one space, into a malloc'ed string */
static char *norm_ws(const char *s) {
  char *o = malloc(strlen(s) + 1), *p = o;
  if (!o) return NULL;
  int gap = 0;
  for (; *s; s++) {
    if (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n' || *s == '\v' || *s == '\f') { gap = p > o; continue; }
    if (gap) *p++ = ' ';
    gap = 0;
    *p++ = *s;
  }
  *p = 0;
  return o;
}

int lm_t2t_exact_match(const char *pred, const char *gold) {
  char *a = norm_ws(pred), *b = norm_ws(gold);
  int eq = a && b && !strcmp(a, b);
  free(a); free(b);
  return eq;
}

