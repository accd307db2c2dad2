/* ref_template.c — the lmkit side of test_jinja.py: renders each case of a JSON file with
 * src/infer/template.c and prints the results as JSON, in the format jinja_ref.mjs prints.
 *
 *   ref_template CASES.json > RESULTS.json
 * CASES.json: [{"template": "...", "vars": {...}}, ...]
 * RESULTS.json: [{"ok": true, "out": "..."} | {"ok": false, "err": "..."}, ...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "infer/template.h"

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: ref_template CASES.json\n"); return 2; }
  char *text;
  size_t n;
  if (lm_read_file(argv[1], &text, &n)) { fprintf(stderr, "%s\n", lm_last_error()); return 1; }
  cJSON *cases = cJSON_ParseWithLength(text, n);
  free(text);
  if (!cJSON_IsArray(cases)) { fprintf(stderr, "%s: expected a JSON array\n", argv[1]); return 1; }
  cJSON *res = cJSON_CreateArray();
  for (cJSON *c = cases->child; c; c = c->next) {
    const cJSON *tp = cJSON_GetObjectItemCaseSensitive(c, "template"), *vars = cJSON_GetObjectItemCaseSensitive(c, "vars");
    cJSON *r = cJSON_CreateObject();
    lm_template *t = NULL;
    char *out = NULL;
    size_t len;
    lm_status st = cJSON_IsString(tp) ? lm_template_parse(&t, tp->valuestring, strlen(tp->valuestring), "chat template")
                                      : lm_error(LM_ERR_ARG, "case without a template");
    if (!st) st = lm_template_render(t, vars, &out, &len);
    if (!st && strlen(out) != len) st = lm_error(LM_ERR_FORMAT, "output holds a NUL byte");
    cJSON_AddBoolToObject(r, "ok", st == LM_OK);
    if (st == LM_OK) cJSON_AddStringToObject(r, "out", out);
    else {
      cJSON_AddStringToObject(r, "err", lm_last_error());
      cJSON_AddNumberToObject(r, "status", st);
    }
    free(out);
    lm_template_free(t);
    cJSON_AddItemToArray(res, r);
  }
  char *s = cJSON_PrintUnformatted(res);
  fputs(s, stdout);
  free(s);
  cJSON_Delete(res);
  cJSON_Delete(cases);
  return 0;
}
