/* fuzz_template.c — libFuzzer target for the chat-template engine (src/infer/template.c).
 *
 * The input is a template; when it holds a NUL byte, the bytes after it are the variables
 * (a JSON object), else a fixed chat request is used (messages with a system turn, a tool call
 * and a tool result, tools, bos/eos, add_generation_prompt). Beyond "no crash, no leak, no
 * undefined behaviour": a template that parses renders the same bytes twice (no state leaks
 * between renders), and every prompt is valid UTF-8 (the engine keeps all strings valid).
 * Build with fuzz/build_template.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "base/base.h"
#include "infer/template.h"

static const char *VARS =
  "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi \\u00e9\\ud83d\\ude00\"},"
  " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\","
  " \"arguments\": {\"x\": 1, \"10\": [1.5, true, null]}}}]}, {\"role\": \"tool\", \"content\": \"42\"},"
  " {\"role\": \"assistant\", \"content\": \"<think>r</think> ok\"}], \"tools\": [{\"type\": \"function\", \"function\":"
  " {\"name\": \"f\", \"parameters\": {\"type\": \"object\"}}}], \"add_generation_prompt\": true,"
  " \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}";

static int valid_utf8(const char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
    if (k <= 0) return 0;
    i += (size_t)k;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *src = (const char *)data;
  const uint8_t *nul = memchr(data, 0, size);
  size_t tlen = nul ? (size_t)(nul - data) : size;
  char *tcopy = malloc(tlen ? tlen : 1);   /* not NUL-terminated on purpose */
  if (!tcopy) return 0;
  if (tlen) memcpy(tcopy, src, tlen);
  cJSON *vars = NULL;
  if (nul) {
    size_t vlen = size - tlen - 1;
    vars = cJSON_ParseWithLength((const char *)nul + 1, vlen);
    if (!cJSON_IsObject(vars)) { cJSON_Delete(vars); vars = NULL; }
  }
  if (!vars) vars = cJSON_Parse(VARS);
  lm_template *t;
  if (lm_template_parse(&t, tcopy, tlen, "fuzz") == LM_OK) {
    char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    lm_status sa = lm_template_render(t, vars, &a, &na);
    lm_status sb = lm_template_render(t, vars, &b, &nb);
    if (sa != sb) abort();
    if (sa == LM_OK) {
      if (na != nb || memcmp(a, b, na)) abort();
      if (!valid_utf8(a, na)) abort();
    }
    free(a);
    free(b);
    lm_template_free(t);
  }
  cJSON_Delete(vars);
  free(tcopy);
  return 0;
}
