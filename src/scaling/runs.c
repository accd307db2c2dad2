/* runs.c — reads a sweep's runs.jsonl: one JSON object per line, one run each
 * (scaling.h). Every line is bounds-checked through cJSON with its length; an
 * error names the file and line. Keys lmkit does not know are refused, so a
 * typo ("val-loss") is never a silently missing value. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "base/base.h"
#include "scaling/scaling.h"

/* What `lmkit sweep` writes beside the four numbers the fits use: informational, not read. */
static const char *const INFO_KEYS[] = {"run", "layers", "heads", "dim", "context", "batch", "steps", "lr",
                                        "params_total", "train_loss", "seconds", "seed", "tokens_per_param"};

static int known_key(const char *k) {
  static const char *const used[] = {"params", "tokens", "flops", "val_loss"};
  for (size_t i = 0; i < sizeof used / sizeof *used; i++)
    if (!strcmp(k, used[i])) return 1;
  for (size_t i = 0; i < sizeof INFO_KEYS / sizeof *INFO_KEYS; i++)
    if (!strcmp(k, INFO_KEYS[i])) return 1;
  return 0;
}

/* a required (or, with optional, possibly absent: *out untouched) positive finite number */
static lm_status number(const cJSON *o, const char *key, int optional, const char *name, int64_t line, double *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v) {
    if (optional) return LM_OK;
    return lm_error(LM_ERR_FORMAT, "%s:%lld: missing \"%s\"", name, (long long)line, key);
  }
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0)
    return lm_error(LM_ERR_FORMAT, "%s:%lld: \"%s\" must be a positive number", name, (long long)line, key);
  *out = v->valuedouble;
  return LM_OK;
}

static lm_status parse_line(const char *s, size_t len, const char *name, int64_t line, lm_scaling_run *r) {
  cJSON *o = cJSON_ParseWithLength(s, len);
  if (!o || !cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return lm_error(LM_ERR_FORMAT, "%s:%lld: not a JSON object", name, (long long)line);
  }
  lm_status st = LM_OK;
  for (const cJSON *c = o->child; c && !st; c = c->next)
    if (!c->string || !known_key(c->string))
      st = lm_error(LM_ERR_FORMAT, "%s:%lld: unknown key \"%s\" (known: params, tokens, flops, val_loss and what "
                    "lmkit sweep writes; docs/scaling.md)", name, (long long)line, c->string ? c->string : "");
  r->flops = 0;
  if (!st) st = number(o, "params", 0, name, line, &r->params);
  if (!st) st = number(o, "tokens", 0, name, line, &r->tokens);
  if (!st) st = number(o, "val_loss", 0, name, line, &r->val_loss);
  if (!st) st = number(o, "flops", 1, name, line, &r->flops);
  if (!st && r->flops == 0) r->flops = 6 * r->params * r->tokens;
  if (!st && !isfinite(r->flops)) st = lm_error(LM_ERR_FORMAT, "%s:%lld: 6 * params * tokens overflows", name, (long long)line);
  r->line = line;
  r->run[0] = 0; r->steps = 0;
  const cJSON *rn = cJSON_GetObjectItemCaseSensitive(o, "run"), *steps = cJSON_GetObjectItemCaseSensitive(o, "steps");
  if (!st && cJSON_IsString(rn)) snprintf(r->run, sizeof r->run, "%s", rn->valuestring);
  if (!st && cJSON_IsNumber(steps) && steps->valuedouble >= 1 && steps->valuedouble < 1e15) r->steps = (int64_t)steps->valuedouble;
  cJSON_Delete(o);
  return st;
}

lm_status lm_scaling_parse(const char *text, size_t len, const char *name, lm_scaling_run **runs, int64_t *n) {
  *runs = NULL; *n = 0;
  lm_scaling_run *v = NULL;
  int64_t cnt = 0, cap = 0, line = 0;
  size_t at = 0, l;
  const char *s;
  while (lm_next_line(text, len, &at, &line, &s, &l)) {
    if (cnt == cap) {
      cap = cap ? 2 * cap : 64;
      lm_scaling_run *w = lm_xrealloc(v, (size_t)cap * sizeof *v);
      if (!w) { free(v); return LM_ERR_NOMEM; }
      v = w;
    }
    lm_status st = parse_line(s, l, name, line, &v[cnt]);
    if (st) { free(v); return st; }
    cnt++;
  }
  *runs = v; *n = cnt;
  return LM_OK;
}

lm_status lm_scaling_read(const char *path, lm_scaling_run **runs, int64_t *n) {
  char *file = lm_dir_exists(path) ? lm_path_join(path, "runs.jsonl") : lm_strdup(path);
  if (!file) return LM_ERR_NOMEM;
  char *text = NULL; size_t len = 0;
  lm_status st = lm_read_file(file, &text, &len);
  if (!st) st = lm_scaling_parse(text, len, file, runs, n);
  free(text); free(file);
  return st;
}
