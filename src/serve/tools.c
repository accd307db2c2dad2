/* tools.c — tool calls into the prompt and out of the answer (tools.h).
 *
 * The rewrite for templates that do not read `tools` renders its pieces (the tools' system
 * text, an assistant's calls) with the Jinja engine and Qwen 2.5's own expressions, so `tojson`
 * spells the JSON exactly as Qwen's template does (tests/cli/test_serve_tools.sh compares the
 * two renderings through @huggingface/jinja). */
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "infer/chat_generate.h"
#include "serve/tools.h"

/* Qwen 2.5's tool description, after the caller's system message (if any) and a blank line */
static const char SYSTEM_TPL[] =
  "{%- if has_system %}{{- system + '\\n\\n' }}{%- endif %}"
  "{{- \"# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with "
  "function signatures within <tools></tools> XML tags:\\n<tools>\" }}"
  "{%- for tool in tools %}{{- \"\\n\" }}{{- tool | tojson }}{%- endfor %}"
  "{{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
  "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
  "<args-json-object>}\\n</tool_call>\" }}";

/* an assistant message's content and calls, as Qwen 2.5 writes them after "<|im_start|>assistant" */
static const char CALLS_TPL[] =
  "{%- if content %}{{- content + '\\n' }}{%- endif %}"
  "{%- for c in calls %}{%- if not loop.first %}{{- '\\n' }}{%- endif %}"
  "{{- '<tool_call>\\n{\"name\": \"' + c.function.name + '\", \"arguments\": ' }}{{- c.function.arguments | tojson }}"
  "{{- '}\\n</tool_call>' }}"
  "{%- endfor %}";

static lm_status render(const char *tpl, const char *name, const cJSON *vars, char **out) {
  lm_template *t = NULL;
  size_t n;
  lm_status st = lm_template_parse(&t, tpl, strlen(tpl), name);
  if (!st) st = lm_template_render(t, vars, out, &n);
  lm_template_free(t);
  return st;
}

/* the function objects of an assistant's tool_calls with their arguments parsed (request.c checked them) */
static cJSON *parsed_calls(const cJSON *calls) {
  cJSON *out = cJSON_CreateArray();
  for (const cJSON *c = calls ? calls->child : NULL; out && c; c = c->next) {
    cJSON *f = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(c, "function"), 1);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(f, "arguments");
    cJSON *args = a ? cJSON_Parse(a->valuestring) : NULL;
    if (!f || !args || !cJSON_ReplaceItemInObjectCaseSensitive(f, "arguments", args)) {
      cJSON_Delete(f); cJSON_Delete(args); cJSON_Delete(out);
      return NULL;
    }
    cJSON *c2 = cJSON_Duplicate(c, 1);
    if (!c2 || !cJSON_ReplaceItemInObjectCaseSensitive(c2, "function", f)) { cJSON_Delete(c2); cJSON_Delete(f); cJSON_Delete(out); return NULL; }
    cJSON_AddItemToArray(out, c2);
  }
  return out;
}

static cJSON *text_message(const char *role, const char *content) {
  cJSON *m = cJSON_CreateObject();
  if (m && (!cJSON_AddStringToObject(m, "role", role) || !cJSON_AddStringToObject(m, "content", content))) {
    cJSON_Delete(m);
    return NULL;
  }
  return m;
}

static int has_calls(const cJSON *m) { return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m, "tool_calls")) > 0; }
static int is_role(const cJSON *m, const char *role) {
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role");
  return cJSON_IsString(r) && !strcmp(r->valuestring, role);
}

/* A template that reads `tools`: the messages as they are, the calls' arguments as objects. */
static lm_status messages_for_tools_template(const cJSON *msgs, cJSON *out) {
  for (const cJSON *m = msgs->child; m; m = m->next) {
    cJSON *c = cJSON_Duplicate(m, 1);
    if (c && has_calls(m)) {
      cJSON *calls = parsed_calls(cJSON_GetObjectItemCaseSensitive(m, "tool_calls"));
      if (!calls || !cJSON_ReplaceItemInObjectCaseSensitive(c, "tool_calls", calls)) { cJSON_Delete(calls); cJSON_Delete(c); c = NULL; }
    }
    if (!c) return lm_error(LM_ERR_NOMEM, "out of memory");
    cJSON_AddItemToArray(out, c);
  }
  return LM_OK;
}

/* Any other template: plain messages (see tools.h). tools: NULL when they stay out of the prompt. */
static lm_status messages_rewritten(const cJSON *msgs, const cJSON *tools, cJSON *out) {
  lm_status st = LM_OK;
  const cJSON *m = msgs->child;
  if (tools) {
    cJSON *vars = cJSON_CreateObject();
    int sys = is_role(m, "system");
    if (sys && !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "content"))) {
      cJSON_Delete(vars);
      return lm_error(LM_ERR_FORMAT, "'messages[0].content': with tools, the system message must be a string (the tools are "
                      "described after it)");
    }
    char *text = NULL;
    if (!vars || !cJSON_AddBoolToObject(vars, "has_system", sys) ||
        (sys && !cJSON_AddStringToObject(vars, "system", cJSON_GetObjectItemCaseSensitive(m, "content")->valuestring)) ||
        !cJSON_AddItemToObject(vars, "tools", cJSON_Duplicate(tools, 1)))
      st = lm_error(LM_ERR_NOMEM, "out of memory");
    if (!st) st = render(SYSTEM_TPL, "lmkit's tools system message", vars, &text);
    cJSON_Delete(vars);
    cJSON *sm = st ? NULL : text_message("system", text);
    free(text);
    if (!st && !sm) st = lm_error(LM_ERR_NOMEM, "out of memory");
    if (st) return st;
    cJSON_AddItemToArray(out, sm);
    if (sys) m = m->next;
  }
  while (m && !st) {
    cJSON *add = NULL;
    if (is_role(m, "tool")) {   /* a run of tool results: one user message */
      size_t len = 0;
      char *text = NULL;
      for (; m && is_role(m, "tool") && !st; m = m->next) {
        const char *c = cJSON_GetObjectItemCaseSensitive(m, "content")->valuestring;
        size_t k = strlen(c), need = len + k + 40;
        char *t = realloc(text, need);
        if (!t) { st = lm_error(LM_ERR_NOMEM, "out of memory"); break; }
        text = t;
        len += (size_t)snprintf(text + len, need - len, "%s<tool_response>\n%s\n</tool_response>", len ? "\n" : "", c);
      }
      if (!st && !(add = text_message("user", text))) st = lm_error(LM_ERR_NOMEM, "out of memory");
      free(text);
    } else if (has_calls(m)) {
      cJSON *vars = cJSON_CreateObject();
      const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
      char *text = NULL;
      if (content && !cJSON_IsString(content) && !cJSON_IsNull(content))
        st = lm_error(LM_ERR_FORMAT, "an assistant message with tool_calls must have a string or null content");
      else if (!vars || !cJSON_AddItemToObject(vars, "calls", parsed_calls(cJSON_GetObjectItemCaseSensitive(m, "tool_calls"))) ||
               (cJSON_IsString(content) && !cJSON_AddStringToObject(vars, "content", content->valuestring)))
        st = lm_error(LM_ERR_NOMEM, "out of memory");
      if (!st) st = render(CALLS_TPL, "lmkit's tool calls", vars, &text);
      cJSON_Delete(vars);
      if (!st && !(add = text_message("assistant", text))) st = lm_error(LM_ERR_NOMEM, "out of memory");
      free(text);
      m = m->next;
    } else {
      if (!(add = cJSON_Duplicate(m, 1))) st = lm_error(LM_ERR_NOMEM, "out of memory");
      m = m->next;
    }
    if (add) cJSON_AddItemToArray(out, add);
  }
  return st;
}

lm_status lm_tools_chat_prompt(const lm_chat_config *cc, const lm_request *r, char **prompt, char **forced,
                               const char **param) {
  *prompt = *forced = NULL;
  *param = "messages";
  const cJSON *tools = r->tool_choice != LM_TOOL_CHOICE_NONE ? r->tools : NULL;
  int reads_tools = strstr(cc->template, "tools") != NULL;
  if (tools && reads_tools && !strstr(cc->template, LM_TOOL_OPEN)) {
    *param = "tools";
    return lm_error(LM_ERR_UNSUPPORTED, "the model's chat template (%s) writes tool calls in a syntax lmkit does not read: "
                    "lmkit reads %s{\"name\": ..., \"arguments\": {...}}%s blocks (Hermes, Qwen 2.5)", cc->source,
                    LM_TOOL_OPEN, LM_TOOL_CLOSE);
  }
  cJSON *req = cJSON_CreateObject(), *msgs = req ? cJSON_AddArrayToObject(req, "messages") : NULL;
  lm_status st = msgs ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st) st = reads_tools ? messages_for_tools_template(r->messages, msgs) : messages_rewritten(r->messages, tools, msgs);
  if (!st && reads_tools && tools && !cJSON_AddItemToObject(req, "tools", cJSON_Duplicate(tools, 1)))
    st = lm_error(LM_ERR_NOMEM, "out of memory");
  if (!st) st = lm_chat_generation_prompt(cc, req, prompt, NULL);
  cJSON_Delete(req);
  if (st) return st;
  char f[128] = "";
  if (tools && r->tool_choice == LM_TOOL_CHOICE_REQUIRED) snprintf(f, sizeof f, "%s", LM_TOOL_OPEN);
  /* up to the colon: a byte-level BPE writes the space with what follows it (" {"), so a prompt ending in
   * the space would start the arguments at a token boundary the model never saw */
  if (tools && r->tool_choice == LM_TOOL_CHOICE_FUNCTION)   /* names are at most 64 bytes (request.c) */
    snprintf(f, sizeof f, "%s\n{\"name\": \"%s\", \"arguments\":", LM_TOOL_OPEN, r->tool_choice_name);
  *forced = lm_strdup(f);
  if (!*forced) { free(*prompt); *prompt = NULL; return lm_error(LM_ERR_NOMEM, "out of memory"); }
  return LM_OK;
}

/* ------------------------------------------------------------------ the answer */

static const char *find(const char *text, size_t from, size_t n, const char *what) {
  size_t k = strlen(what);
  return n >= k && from <= n - k ? memmem(text + from, n - from, what, k) : NULL;
}

size_t lm_tools_content_end(const char *text, size_t n) {
  const char *at = find(text, 0, n, LM_TOOL_OPEN);
  if (at) return (size_t)(at - text);
  size_t k = strlen(LM_TOOL_OPEN);
  for (size_t p = k - 1; p > 0; p--)   /* the longest end of the text that begins the tag */
    if (p <= n && !memcmp(text + n - p, LM_TOOL_OPEN, p)) return n - p;
  return n;
}

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

static int declared(const cJSON *tools, const char *name) {
  for (const cJSON *t = tools ? tools->child : NULL; t; t = t->next)
    if (!strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name")->valuestring, name))
      return 1;
  return 0;
}

/* one block's JSON, text[a..b): a call object, or NULL */
static cJSON *call_of(const char *text, size_t a, size_t b, const cJSON *tools, uint64_t seq, int k) {
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(text + a, b - a, &end, 0);
  if (!j) return NULL;
  for (const char *p = end; p && p < text + b; p++)
    if (!is_space(*p)) { cJSON_Delete(j); return NULL; }
  const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name"), *args = cJSON_GetObjectItemCaseSensitive(j, "arguments");
  cJSON *call = NULL;
  if (cJSON_IsObject(j) && cJSON_IsString(name) && declared(tools, name->valuestring) && (!args || cJSON_IsObject(args)) &&
      cJSON_GetArraySize(j) == 1 + !!args) {
    char id[48], *a_text = args ? cJSON_PrintUnformatted(args) : lm_strdup("{}");
    snprintf(id, sizeof id, "call_%llu_%d", (unsigned long long)seq, k);
    call = cJSON_CreateObject();
    cJSON *f = call ? cJSON_AddObjectToObject(call, "function") : NULL;
    if (!a_text || !f || !cJSON_AddStringToObject(call, "id", id) || !cJSON_AddStringToObject(call, "type", "function") ||
        !cJSON_AddStringToObject(f, "name", name->valuestring) || !cJSON_AddStringToObject(f, "arguments", a_text)) {
      cJSON_Delete(call);
      call = NULL;
    } else {   /* OpenAI's key order: id, type, function */
      cJSON_DetachItemViaPointer(call, f);
      cJSON_AddItemToObject(call, "function", f);
    }
    free(a_text);
  }
  cJSON_Delete(j);
  return call;
}

lm_status lm_tools_parse(const char *text, size_t n, const cJSON *tools, int done, uint64_t seq, lm_tool_output *out) {
  memset(out, 0, sizeof *out);
  out->calls = cJSON_CreateArray();
  if (!out->calls) return lm_error(LM_ERR_NOMEM, "out of memory");
  const char *first = find(text, 0, n, LM_TOOL_OPEN);
  out->content_end = out->rest = first ? (size_t)(first - text) : n;
  if (!first) return LM_OK;
  size_t lo = strlen(LM_TOOL_OPEN), lc = strlen(LM_TOOL_CLOSE), at = out->rest;
  for (int k = 0;; k++) {
    size_t p = at;
    while (p < n && is_space(text[p])) p++;
    if (p == n) { out->rest = n; return LM_OK; }
    if (n - p < lo ? memcmp(text + p, LM_TOOL_OPEN, n - p) : memcmp(text + p, LM_TOOL_OPEN, lo)) break;   /* other text */
    const char *close = n - p >= lo ? find(text, p + lo, n, LM_TOOL_CLOSE) : NULL;
    if (!close) { out->pending = !done; break; }   /* still open */
    cJSON *c = call_of(text, p + lo, (size_t)(close - text), tools, seq, k);
    if (!c) break;
    cJSON_AddItemToArray(out->calls, c);
    at = (size_t)(close - text) + lc;
  }
  out->rest = at;
  return LM_OK;
}
