/* em_data.c — exact-match task records and the normalization of answers
 * (em.h). One JSON object a line, parsed by cJSON with its length; an error
 * names the file and line; unknown keys are refused. Normalization follows
 * SQuAD's evaluation script (normalize_answer) with utf8proc for lowercase.
 * No model here, so that the fuzz target (fuzz/fuzz_study.c) links without it. */
#include <stdlib.h>
#include <string.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "eval/em.h"
#include "eval/mc.h"

static void item_free(void *item) {
  lm_em_item *it = item;
  for (int k = 0; k < it->n_targets; k++) free(it->targets[k]);
  free(it->targets); free(it->input);
}

void lm_em_free(lm_em_set *s) {
  for (int64_t i = 0; i < s->n; i++) item_free(&s->items[i]);
  free(s->items);
  s->items = NULL; s->n = 0;
}

static lm_status parse_item(void *user, const char *p, size_t l, const char *name, int64_t line, void *item, int *skip) {
  (void)user; (void)skip;
  lm_em_item *it = item;
  it->line = line;
  cJSON *o = cJSON_ParseWithLength(p, l);
  lm_status st = LM_OK;
#define BAD(...) do { st = lm_error(LM_ERR_FORMAT, __VA_ARGS__); goto done; } while (0)
  if (!o || !cJSON_IsObject(o)) BAD("%s:%lld: not a JSON object", name, (long long)line);
  const cJSON *in = NULL, *tg = NULL;
  for (const cJSON *c = o->child; c; c = c->next) {
    int is_in = !strcmp(c->string, "input") || !strcmp(c->string, "prompt");
    int is_tg = !strcmp(c->string, "target") || !strcmp(c->string, "answer");
    if (!is_in && !is_tg && strcmp(c->string, "id"))
      BAD("%s:%lld: unknown key \"%s\" (a record is {\"input\", \"target\"})", name, (long long)line, c->string);
    if ((is_in && in) || (is_tg && tg))
      BAD("%s:%lld: \"%s\" given twice (input/prompt, target/answer are one field each)", name, (long long)line, c->string);
    if (is_in) in = c;
    if (is_tg) tg = c;
  }
  if (!cJSON_IsString(in)) BAD("%s:%lld: \"input\" must be a string", name, (long long)line);
  int n = cJSON_IsString(tg) ? 1 : cJSON_IsArray(tg) ? cJSON_GetArraySize(tg) : 0;
  if (n < 1) BAD("%s:%lld: \"target\" must be a string or a non-empty array of strings", name, (long long)line);
  if (!(it->input = lm_strdup(in->valuestring)) || !(it->targets = calloc((size_t)n, sizeof *it->targets))) {
    st = lm_error(LM_ERR_NOMEM, "out of memory");
    goto done;
  }
  it->n_targets = n;
  const cJSON *t = cJSON_IsString(tg) ? tg : tg->child;
  for (int k = 0; k < n; k++, t = t->next) {
    if (!cJSON_IsString(t)) BAD("%s:%lld: target %d is not a string", name, (long long)line, k);
    if (!(it->targets[k] = lm_strdup(t->valuestring))) { st = LM_ERR_NOMEM; goto done; }
  }
#undef BAD
done:
  cJSON_Delete(o);
  return st;
}

static const lm_eval_reader EM = {sizeof(lm_em_item), parse_item, item_free, NULL};

lm_status lm_em_parse(const char *text, size_t len, const char *name, lm_em_set *s) {
  void *items = NULL;
  lm_status st = lm_eval_parse(&EM, text, len, name, &items, &s->n);
  s->items = items;
  return st;
}

lm_status lm_em_read(const char *path, lm_em_set *s) {
  void *items = NULL;
  lm_status st = lm_eval_read(&EM, path, &items, &s->n);
  s->items = items;
  return st;
}

/* ---- normalization ---- */
static const char *const NORMS[] = {"strip", "lower", "squad"};

lm_status lm_em_norm_parse(const char *name, lm_em_norm *out) {
  for (int k = 0; k < 3; k++)
    if (!strcmp(name, NORMS[k])) { *out = (lm_em_norm)k; return LM_OK; }
  return lm_error(LM_ERR_ARG, "unknown normalization '%s' (strip, lower, squad)", name);
}

static int space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* SQuAD's remove_articles: re.sub(r'\b(a|an|the)\b', ' ', text), \b over Unicode word characters */
static char *drop_articles(char *a) {
  int err;
  PCRE2_SIZE off;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR) "\\b(a|an|the)\\b", PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                                 &err, &off, NULL);
  size_t n = strlen(a);
  PCRE2_SIZE cap = n + n / 2 + 16;
  char *out = re ? lm_xmalloc(cap) : NULL;
  /* invalid UTF-8 is matched byte by byte (PCRE2_UTF would refuse it): no Unicode then */
  int rc = out ? pcre2_substitute(re, (PCRE2_SPTR)a, n, 0, PCRE2_SUBSTITUTE_GLOBAL, NULL, NULL, (PCRE2_SPTR) " ", 1,
                                  (PCRE2_UCHAR *)out, &cap) : -1;
  pcre2_code_free(re);
  if (rc < 0) { free(out); return a; }
  free(a);
  return out;
}

char *lm_em_normalize(const char *s, lm_em_norm mode) {
  size_t n = strlen(s);
  /* lowercase code point by code point (utf8proc's simple mapping); invalid bytes are kept */
  char *a = lm_xmalloc(4 * n + 1), *w = a;
  if (!a) return NULL;
  for (size_t i = 0; i < n;) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
    if (mode == LM_EM_STRIP || k <= 0) { *w++ = s[i++]; continue; }
    w += utf8proc_encode_char(utf8proc_tolower(c), (utf8proc_uint8_t *)w);
    i += (size_t)k;
  }
  *w = 0;
  if (mode == LM_EM_SQUAD) {   /* drop ASCII punctuation, then the articles, then split on whitespace and join by spaces */
    char *q = a;
    for (char *p = a; *p; p++)
      if (!(*p > 0 && *p < 127 && strchr("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", *p))) *q++ = *p;
    *q = 0;
    a = drop_articles(a);
    char *o = a;
    for (char *p = a; *p;) {
      while (*p && space((unsigned char)*p)) p++;
      char *b = p;
      while (*p && !space((unsigned char)*p)) p++;
      if (p == b) continue;
      if (o != a) *o++ = ' ';
      memmove(o, b, (size_t)(p - b));
      o += p - b;
    }
    *o = 0;
    return a;
  }
  char *b = a, *e = a + strlen(a);
  while (b < e && space((unsigned char)*b)) b++;
  while (e > b && space((unsigned char)e[-1])) e--;
  memmove(a, b, (size_t)(e - b));
  a[e - b] = 0;
  return a;
}
