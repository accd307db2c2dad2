/* mc_data.c — reads multiple-choice task records (mc.h): one JSON object a
 * line, {"ctx", "endings", "label"} as the HF hellaswag dataset names them.
 * Each line is parsed by cJSON with its length (bounds-checked); an error
 * names the file and line; a key that is neither read nor one of HellaSwag's
 * other fields is refused. Apart from the scoring (mc.c) so that the fuzz
 * target (fuzz/fuzz_study.c) links without the model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "eval/mc.h"

/* fields of the HF hellaswag dataset that are not read */
static const char *const OTHER_KEYS[] = {"ind", "activity_label", "ctx_a", "ctx_b", "source_id", "split", "split_type"};

static lm_status parse_item(void *user, const char *s, size_t len, const char *name, int64_t line, void *item, int *skip) {
  (void)user; (void)skip;
  lm_mc_item *it = item;
  it->line = line;
  cJSON *o = cJSON_ParseWithLength(s, len);
  lm_status st = LM_OK;
#define BAD(...) do { st = lm_error(LM_ERR_FORMAT, __VA_ARGS__); goto done; } while (0)
  if (!o || !cJSON_IsObject(o)) BAD("%s:%lld: not a JSON object", name, (long long)line);
  for (const cJSON *c = o->child; c; c = c->next) {
    int known = !strcmp(c->string, "ctx") || !strcmp(c->string, "endings") || !strcmp(c->string, "label");
    for (size_t k = 0; k < sizeof OTHER_KEYS / sizeof *OTHER_KEYS && !known; k++) known = !strcmp(c->string, OTHER_KEYS[k]);
    if (!known) BAD("%s:%lld: unknown key \"%s\" (a record is {\"ctx\", \"endings\", \"label\"})", name, (long long)line, c->string);
  }
  const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(o, "ctx"), *end = cJSON_GetObjectItemCaseSensitive(o, "endings"),
              *lab = cJSON_GetObjectItemCaseSensitive(o, "label");
  if (!cJSON_IsString(ctx)) BAD("%s:%lld: \"ctx\" must be a string", name, (long long)line);
  if (!cJSON_IsArray(end) || cJSON_GetArraySize(end) < 2) BAD("%s:%lld: \"endings\" must be an array of at least 2 strings", name, (long long)line);
  int n = cJSON_GetArraySize(end);
  /* the label: a number, or a string of digits as in the HF dataset ("3") */
  double lv = -1;
  if (cJSON_IsNumber(lab)) lv = lab->valuedouble;
  else if (cJSON_IsString(lab) && lab->valuestring[0] && strspn(lab->valuestring, "0123456789") == strlen(lab->valuestring) &&
           strlen(lab->valuestring) < 6)
    lv = atof(lab->valuestring);
  else BAD("%s:%lld: \"label\" must be the index of the right ending", name, (long long)line);
  if (lv != floor(lv) || lv < 0 || lv >= n)
    BAD("%s:%lld: \"label\" %g is not an index of the %d endings", name, (long long)line, lv, n);
  it->label = (int)lv;
  if (!(it->ctx = lm_strdup(ctx->valuestring)) || !(it->endings = calloc((size_t)n, sizeof *it->endings))) {
    st = lm_error(LM_ERR_NOMEM, "out of memory");
    goto done;
  }
  it->n_endings = n;
  int k = 0;
  for (const cJSON *e = end->child; e; e = e->next, k++) {
    if (!cJSON_IsString(e)) BAD("%s:%lld: ending %d is not a string", name, (long long)line, k);
    if (!(it->endings[k] = lm_strdup(e->valuestring))) { st = LM_ERR_NOMEM; goto done; }
  }
#undef BAD
done:
  cJSON_Delete(o);
  return st;
}

static void item_free(void *item) {
  lm_mc_item *it = item;
  for (int k = 0; k < it->n_endings; k++) free(it->endings[k]);
  free(it->endings); free(it->ctx);
}

void lm_mc_free(lm_mc_set *s) {
  for (int64_t i = 0; i < s->n; i++) item_free(&s->items[i]);
  free(s->items);
  s->items = NULL; s->n = 0;
}

/* ---- the reader every task's records share (mc.h) ---- */
lm_status lm_eval_parse(const lm_eval_reader *r, const char *text, size_t len, const char *name, void **items, int64_t *n) {
  char *a = NULL;
  int64_t cap = 0, line = 0, k = 0;
  size_t at = 0, l;
  const char *p;
  lm_status st = LM_OK;
  *items = NULL; *n = 0;
  while (!st && lm_next_line(text, len, &at, &line, &p, &l)) {
    if (k == cap) {
      cap = cap ? 2 * cap : 64;
      char *w = lm_xrealloc(a, (size_t)cap * r->size);
      if (!w) { st = LM_ERR_NOMEM; break; }
      a = w;
    }
    void *it = a + (size_t)k * r->size;
    int skip = 0;
    memset(it, 0, r->size);
    st = r->parse(r->user, p, l, name, line, it, &skip);
    if (st || skip) r->item_free(it);
    else k++;
  }
  if (!st && !k) st = lm_error(LM_ERR_FORMAT, "%s: no records", name);
  if (st) {
    for (int64_t i = 0; i < k; i++) r->item_free(a + (size_t)i * r->size);
    free(a);
    return st;
  }
  *items = a; *n = k;
  return LM_OK;
}

lm_status lm_eval_read(const lm_eval_reader *r, const char *path, void **items, int64_t *n) {
  char *text = NULL; size_t len = 0;
  lm_status st = lm_read_file(path, &text, &len);
  if (!st) st = lm_eval_parse(r, text, len, path, items, n);
  free(text);
  return st;
}

static const lm_eval_reader MC = {sizeof(lm_mc_item), parse_item, item_free, NULL};

lm_status lm_mc_parse(const char *text, size_t len, const char *name, lm_mc_set *s) {
  void *items = NULL;
  lm_status st = lm_eval_parse(&MC, text, len, name, &items, &s->n);
  s->items = items;
  return st;
}

lm_status lm_mc_read(const char *path, lm_mc_set *s) {
  void *items = NULL;
  lm_status st = lm_eval_read(&MC, path, &items, &s->n);
  s->items = items;
  return st;
}
