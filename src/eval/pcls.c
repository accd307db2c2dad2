/* pcls.c — classification by prompt (pcls.h): reading the records and turning
 * them into the multiple-choice task that mc.c scores (each label word is an
 * ending after the prompt, so there is one scorer for both tasks).
 *
 * The reader takes JSONL or TSV, told apart by the first non-blank line; each
 * JSON line is parsed by cJSON with its length (bounds-checked), each TSV line
 * must hold exactly one tab. Errors name the file and line. No model here, so
 * that the fuzz target (fuzz/fuzz_study.c) links without it. */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "eval/pcls.h"

static int digits(const char *s) { return s[0] && strlen(s) < 10 && strspn(s, "0123456789") == strlen(s); }

static lm_status json_item(const char *p, size_t l, const char *name, int64_t line, lm_pcls_item *it) {
  cJSON *o = cJSON_ParseWithLength(p, l);
  lm_status st = LM_OK;
#define BAD(...) do { st = lm_error(LM_ERR_FORMAT, __VA_ARGS__); goto done; } while (0)
  if (!o || !cJSON_IsObject(o)) BAD("%s:%lld: not a JSON object", name, (long long)line);
  const cJSON *text = NULL, *label = NULL;
  for (const cJSON *c = o->child; c; c = c->next) {
    if (!strcmp(c->string, "text") || !strcmp(c->string, "sentence")) {
      if (text) BAD("%s:%lld: give \"text\" or \"sentence\", not both", name, (long long)line);
      text = c;
    } else if (!strcmp(c->string, "label")) label = c;
    else if (strcmp(c->string, "idx"))
      BAD("%s:%lld: unknown key \"%s\" (a record is {\"text\", \"label\"})", name, (long long)line, c->string);
  }
  if (!cJSON_IsString(text)) BAD("%s:%lld: \"text\" must be a string", name, (long long)line);
  char num[32];
  const char *lab = NULL;
  if (cJSON_IsString(label) && label->valuestring[0]) lab = label->valuestring;
  else if (cJSON_IsNumber(label) && label->valuedouble >= 0 && label->valuedouble < 1e9 &&
           label->valuedouble == (double)(int64_t)label->valuedouble) {
    snprintf(num, sizeof num, "%lld", (long long)label->valuedouble);
    lab = num;
  } else BAD("%s:%lld: \"label\" must be a non-empty string or a label index", name, (long long)line);
  if (!(it->text = lm_strdup(text->valuestring)) || !(it->label = lm_strdup(lab))) st = LM_ERR_NOMEM;
#undef BAD
done:
  cJSON_Delete(o);
  return st;
}

static lm_status tsv_item(const char *p, size_t l, const char *name, int64_t line, lm_pcls_item *it) {
  const char *tab = memchr(p, '\t', l);
  if (!tab || memchr(tab + 1, '\t', l - (size_t)(tab + 1 - p)) || tab == p || tab + 1 == p + l)
    return lm_error(LM_ERR_FORMAT, "%s:%lld: expected TEXT<TAB>LABEL (one tab, both non-empty)", name, (long long)line);
  if (memchr(p, 0, l)) return lm_error(LM_ERR_FORMAT, "%s:%lld: a NUL byte in the line", name, (long long)line);
  size_t a = (size_t)(tab - p);
  if (!(it->text = lm_xmalloc(a + 1)) || !(it->label = lm_xmalloc(l - a))) return LM_ERR_NOMEM;
  memcpy(it->text, p, a); it->text[a] = 0;
  memcpy(it->label, tab + 1, l - a - 1); it->label[l - a - 1] = 0;
  return LM_OK;
}

static void item_free(void *item) { lm_pcls_item *it = item; free(it->text); free(it->label); }

void lm_pcls_free(lm_pcls_set *s) {
  for (int64_t i = 0; i < s->n; i++) item_free(&s->items[i]);
  free(s->items);
  s->items = NULL; s->n = 0;
}

/* user: the format, -1 until the first line tells (then 1: JSONL, 0: TSV) */
static lm_status parse_item(void *user, const char *p, size_t l, const char *name, int64_t line, void *item, int *skip) {
  int *json = user;
  lm_pcls_item *it = item;
  it->line = line;
  if (*json < 0) {
    *json = p[0] == '{';
    if (!*json && ((l == 14 && !memcmp(p, "sentence\tlabel", 14)) || (l == 10 && !memcmp(p, "text\tlabel", 10)))) {
      *skip = 1;
      return LM_OK;
    }
  }
  return *json ? json_item(p, l, name, line, it) : tsv_item(p, l, name, line, it);
}

lm_status lm_pcls_parse(const char *text, size_t len, const char *name, lm_pcls_set *s) {
  int json = -1;
  lm_eval_reader r = {sizeof(lm_pcls_item), parse_item, item_free, &json};
  void *items = NULL;
  lm_status st = lm_eval_parse(&r, text, len, name, &items, &s->n);
  s->items = items;
  return st;
}

lm_status lm_pcls_read(const char *path, lm_pcls_set *s) {
  int json = -1;
  lm_eval_reader r = {sizeof(lm_pcls_item), parse_item, item_free, &json};
  void *items = NULL;
  lm_status st = lm_eval_read(&r, path, &items, &s->n);
  s->items = items;
  return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

lm_status lm_pcls_default_words(const lm_pcls_set *const *sets, int n_sets, const char ***words, int *n_words) {
  int64_t total = 0;
  for (int k = 0; k < n_sets; k++) total += sets[k]->n;
  const char **w = lm_xmalloc((size_t)(total ? total : 1) * sizeof *w);
  if (!w) return LM_ERR_NOMEM;
  int64_t n = 0, numeric = 1;
  for (int k = 0; k < n_sets; k++)
    for (int64_t i = 0; i < sets[k]->n; i++) { w[n++] = sets[k]->items[i].label; numeric &= digits(w[n - 1]); }
  qsort(w, (size_t)n, sizeof *w, cmp_str);
  int64_t u = 0;
  for (int64_t i = 0; i < n; i++)
    if (!u || strcmp(w[u - 1], w[i])) w[u++] = w[i];
  if (numeric) { free(w); return lm_error(LM_ERR_ARG, "the labels are numbers: --labels WORD,WORD,... names them (label 0's word first)"); }
  if (u < 2) {
    lm_status st = lm_error(LM_ERR_ARG, "the records have a single label (\"%s\"): --labels gives the others", n ? w[0] : "");
    free(w);
    return st;
  }
  if (u > 1 << 16) { free(w); return lm_error(LM_ERR_ARG, "%lld distinct labels: too many to score each", (long long)u); }
  *words = w; *n_words = (int)u;
  return LM_OK;
}

/* tmpl with each "{text}" replaced by text (malloc'ed) */
static char *render(const char *tmpl, const char *text) {
  size_t lt = strlen(text), n = 1;
  for (const char *p = tmpl; *p;) {
    if (!strncmp(p, "{text}", 6)) { n += lt; p += 6; } else { n++; p++; }
  }
  char *o = lm_xmalloc(n), *w = o;
  if (!o) return NULL;
  for (const char *p = tmpl; *p;) {
    if (!strncmp(p, "{text}", 6)) { memcpy(w, text, lt); w += lt; p += 6; } else *w++ = *p++;
  }
  *w = 0;
  return o;
}

lm_status lm_pcls_to_mc(const lm_pcls_set *s, const char *name, const char *tmpl, const char *const *words, int n_words,
                       lm_mc_set *out) {
  out->items = NULL; out->n = 0;
  if (!strstr(tmpl, "{text}")) return lm_error(LM_ERR_ARG, "the template \"%s\" has no {text}", tmpl);
  if (n_words < 2) return lm_error(LM_ERR_ARG, "classification needs at least 2 label words (%d given)", n_words);
  for (int k = 0; k < n_words; k++) {
    if (!words[k][0]) return lm_error(LM_ERR_ARG, "label word %d is empty", k);
    for (int j = 0; j < k; j++)
      if (!strcmp(words[j], words[k])) return lm_error(LM_ERR_ARG, "label word \"%s\" is given twice", words[k]);
  }
  if (!(out->items = calloc((size_t)s->n, sizeof *out->items))) return lm_error(LM_ERR_NOMEM, "out of memory");
  lm_status st = LM_OK;
  for (int64_t i = 0; i < s->n && !st; i++) {
    const lm_pcls_item *it = &s->items[i];
    int lab = 0;
    while (lab < n_words && strcmp(words[lab], it->label)) lab++;
    if (lab == n_words && digits(it->label) && atoll(it->label) < n_words) lab = (int)atoll(it->label);
    if (lab == n_words) {
      st = lm_error(LM_ERR_FORMAT, "%s:%lld: label \"%s\" is not one of the %d label words (%s, ...)", name,
                    (long long)it->line, it->label, n_words, words[0]);
      break;
    }
    lm_mc_item *m = &out->items[i];
    out->n = i + 1;
    m->line = it->line;
    m->label = lab;
    if (!(m->ctx = render(tmpl, it->text)) || !(m->endings = calloc((size_t)n_words, sizeof *m->endings))) { st = LM_ERR_NOMEM; break; }
    m->n_endings = n_words;
    for (int k = 0; k < n_words && !st; k++)
      if (!(m->endings[k] = lm_strdup(words[k]))) st = LM_ERR_NOMEM;
  }
  if (st) lm_mc_free(out);
  return st;
}
