/* request.c — parses and checks request bodies (request.h).
 *
 * One table lists every field lmkit reads: its name, the routes that take it, and the function
 * that checks its type and range and stores it. A field absent from the table for the route is
 * refused ("unknown field"), so a client's option is never silently dropped; a JSON null counts
 * as absent, as OpenAI treats it. OpenAI options lmkit cannot honour are accepted only with their
 * neutral value (n 1, penalties 0, echo false...) and refused otherwise, naming the field. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "serve/request.h"

#define K(kind) (1u << (kind))
#define GEN (K(LM_REQ_CHAT) | K(LM_REQ_COMPLETION))
#define ALL ((1u << LM_REQ_KINDS) - 1)

typedef lm_status (*field_fn)(lm_request *r, const cJSON *v, const char *name);

static lm_status type_err(const char *name, const char *want) {
  return lm_error(LM_ERR_FORMAT, "'%s' must be %s", name, want);
}

static lm_status get_int(const cJSON *v, const char *name, int64_t lo, int64_t hi, int64_t *out) {
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble)) return type_err(name, "an integer");
  if (!(v->valuedouble >= (double)lo && v->valuedouble <= (double)hi))
    return lm_error(LM_ERR_RANGE, "'%s' must be between %lld and %lld (got %.17g)", name, (long long)lo, (long long)hi,
                    v->valuedouble);
  *out = (int64_t)v->valuedouble;
  return LM_OK;
}

static lm_status get_num(const cJSON *v, const char *name, double lo, double hi, float *out) {
  if (!cJSON_IsNumber(v)) return type_err(name, "a number");
  if (!(v->valuedouble >= lo && v->valuedouble <= hi))
    return lm_error(LM_ERR_RANGE, "'%s' must be between %g and %g (got %.17g)", name, lo, hi, v->valuedouble);
  *out = (float)v->valuedouble;
  return LM_OK;
}

static lm_status get_bool(const cJSON *v, const char *name, int *out) {
  if (!cJSON_IsBool(v)) return type_err(name, "true or false");
  *out = cJSON_IsTrue(v);
  return LM_OK;
}

static lm_status f_ignored_string(lm_request *r, const cJSON *v, const char *name) {
  (void)r;   /* model, user: one model is served (the reply names it); user is for OpenAI's abuse tracking */
  return cJSON_IsString(v) ? LM_OK : type_err(name, "a string");
}

/* The OpenAI fields of a tool message and of an assistant message's tool calls (the rest of a
 * message is the template's business). Arguments are a JSON string that must hold an object:
 * templates receive them parsed (serve/tools.h). */
static lm_status check_tool_fields(const cJSON *m, int i) {
  const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "tool_call_id");
  if (id && !cJSON_IsString(id)) return lm_error(LM_ERR_FORMAT, "'messages[%d].tool_call_id' must be a string", i);
  if (!strcmp(role->valuestring, "tool") && !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "content")))
    return lm_error(LM_ERR_FORMAT, "'messages[%d].content' of a tool message must be a string (the tool's result)", i);
  const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
  if (!calls || cJSON_IsNull(calls)) return LM_OK;
  if (strcmp(role->valuestring, "assistant")) return lm_error(LM_ERR_FORMAT, "'messages[%d].tool_calls': only assistant messages have tool calls", i);
  if (!cJSON_IsArray(calls)) return lm_error(LM_ERR_FORMAT, "'messages[%d].tool_calls' must be a list", i);
  int k = 0;
  for (const cJSON *c = calls->child; c; c = c->next, k++) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "type"), *f = cJSON_GetObjectItemCaseSensitive(c, "function");
    const cJSON *cid = cJSON_GetObjectItemCaseSensitive(c, "id");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(f, "name"), *a = cJSON_GetObjectItemCaseSensitive(f, "arguments");
    if (!cJSON_IsObject(c)) return lm_error(LM_ERR_FORMAT, "'messages[%d].tool_calls[%d]' must be an object", i, k);
    if (cid && !cJSON_IsString(cid)) return lm_error(LM_ERR_FORMAT, "'messages[%d].tool_calls[%d].id' must be a string", i, k);
    if (t && (!cJSON_IsString(t) || strcmp(t->valuestring, "function")))
      return lm_error(LM_ERR_FORMAT, "'messages[%d].tool_calls[%d].type' must be \"function\"", i, k);
    if (!cJSON_IsObject(f)) return lm_error(LM_ERR_FORMAT, "'messages[%d].tool_calls[%d].function' must be an object", i, k);
    if (!cJSON_IsString(n)) return lm_error(LM_ERR_FORMAT, "'messages[%d].tool_calls[%d].function.name' must be a string", i, k);
    cJSON *args = cJSON_IsString(a) ? cJSON_Parse(a->valuestring) : NULL;
    int ok = cJSON_IsObject(args);
    cJSON_Delete(args);
    if (!ok)
      return lm_error(LM_ERR_FORMAT, "'messages[%d].tool_calls[%d].function.arguments' must be a string holding a JSON object", i, k);
  }
  return LM_OK;
}
static lm_status f_messages(lm_request *r, const cJSON *v, const char *name) {
  if (!cJSON_IsArray(v) || !cJSON_GetArraySize(v)) return type_err(name, "a non-empty list of messages");
  int i = 0;
  for (const cJSON *m = v->child; m; m = m->next, i++) {
    if (!cJSON_IsObject(m)) return lm_error(LM_ERR_FORMAT, "'messages[%d]' must be an object", i);
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    if (!cJSON_IsString(role)) return lm_error(LM_ERR_FORMAT, "'messages[%d].role' must be a string", i);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (c && !cJSON_IsString(c) && !cJSON_IsArray(c) && !cJSON_IsNull(c))
      return lm_error(LM_ERR_FORMAT, "'messages[%d].content' must be a string, a list of parts or null", i);
    lm_status st = check_tool_fields(m, i);
    if (st) return st;
  }
  r->messages = v;
  return LM_OK;
}

static lm_status f_max_tokens(lm_request *r, const cJSON *v, const char *name) {
  return get_int(v, name, 1, INT32_MAX, &r->max_tokens);
}
static lm_status f_temperature(lm_request *r, const cJSON *v, const char *name) {
  return get_num(v, name, 0, 2, &r->temperature);
}
static lm_status f_top_p(lm_request *r, const cJSON *v, const char *name) { return get_num(v, name, 0, 1, &r->top_p); }
static lm_status f_top_k(lm_request *r, const cJSON *v, const char *name) {
  return get_int(v, name, 0, INT32_MAX, &r->top_k);
}

static lm_status f_seed(lm_request *r, const cJSON *v, const char *name) {
  int64_t s = 0;
  lm_status st = get_int(v, name, INT64_MIN / 2, INT64_MAX / 2, &s);   /* doubles: exact below 2^53 */
  if (st) return st;
  r->has_seed = 1; r->seed = (uint64_t)s;
  return LM_OK;
}

static lm_status f_stop(lm_request *r, const cJSON *v, const char *name) {
  if (cJSON_IsString(v)) {
    if (!*v->valuestring) return lm_error(LM_ERR_RANGE, "'%s' must not be empty", name);
    r->stop[0] = v->valuestring; r->n_stop = 1;
    return LM_OK;
  }
  if (!cJSON_IsArray(v)) return type_err(name, "a string or a list of strings");
  if (cJSON_GetArraySize(v) > LM_REQ_MAX_STOP)
    return lm_error(LM_ERR_RANGE, "'%s' takes at most %d sequences", name, LM_REQ_MAX_STOP);
  int i = 0;
  for (const cJSON *s = v->child; s; s = s->next, i++) {
    if (!cJSON_IsString(s) || !*s->valuestring) return lm_error(LM_ERR_FORMAT, "'%s[%d]' must be a non-empty string", name, i);
    r->stop[r->n_stop++] = s->valuestring;
  }
  return LM_OK;
}

static lm_status f_stream(lm_request *r, const cJSON *v, const char *name) { return get_bool(v, name, &r->stream); }

static lm_status f_stream_options(lm_request *r, const cJSON *v, const char *name) {
  if (!cJSON_IsObject(v)) return type_err(name, "an object");
  for (const cJSON *o = v->child; o; o = o->next) {
    if (strcmp(o->string, "include_usage"))
      return lm_error(LM_ERR_UNSUPPORTED, "unknown field '%s.%s' (lmkit knows include_usage)", name, o->string);
    lm_status st = get_bool(o, "stream_options.include_usage", &r->include_usage);
    if (st) return st;
  }
  return LM_OK;
}

static lm_status f_logprobs(lm_request *r, const cJSON *v, const char *name) {
  if (r->kind == LM_REQ_CHAT) return get_bool(v, name, &r->logprobs);
  int64_t n = 0;   /* completions: the number of alternatives per token, 0..5 */
  lm_status st = get_int(v, name, 0, 5, &n);
  if (st) return st;
  r->logprobs = 1; r->top_logprobs = (int)n;
  return LM_OK;
}

static lm_status f_top_logprobs(lm_request *r, const cJSON *v, const char *name) {
  int64_t n = 0;
  lm_status st = get_int(v, name, 0, LM_REQ_MAX_TOP_LOGPROBS, &n);
  r->top_logprobs = (int)n;
  return st;
}

/* OpenAI options lmkit accepts only at their neutral value */
static lm_status f_only_one(lm_request *r, const cJSON *v, const char *name) {
  int64_t n = 0;
  lm_status st = get_int(v, name, 1, INT32_MAX, &n);
  if (!st && n != 1) return lm_error(LM_ERR_UNSUPPORTED, "'%s' must be 1: lmkit returns one choice per request", name);
  return st;
}
static lm_status f_only_zero(lm_request *r, const cJSON *v, const char *name) {
  float x = 0;
  lm_status st = get_num(v, name, -2, 2, &x);
  if (!st && x != 0) return lm_error(LM_ERR_UNSUPPORTED, "'%s' is not supported (only 0)", name);
  return st;
}
static lm_status f_only_false(lm_request *r, const cJSON *v, const char *name) {
  int b = 0;
  lm_status st = get_bool(v, name, &b);
  if (!st && b) return lm_error(LM_ERR_UNSUPPORTED, "'%s' is not supported (only false)", name);
  return st;
}

/* OpenAI's function names: 1..64 of [A-Za-z0-9_-] */
static int tool_name_ok(const char *n) {
  size_t k = strlen(n);
  if (k < 1 || k > 64) return 0;
  for (size_t i = 0; i < k; i++)
    if (!(n[i] == '_' || n[i] == '-' || (n[i] >= '0' && n[i] <= '9') || ((n[i] | 32) >= 'a' && (n[i] | 32) <= 'z'))) return 0;
  return 1;
}

/* tools: [{"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}] */
static lm_status f_tools(lm_request *r, const cJSON *v, const char *name) {
  if (!cJSON_IsArray(v)) return type_err(name, "a list of tools");
  int i = 0;
  for (const cJSON *t = v->child; t; t = t->next, i++) {
    if (!cJSON_IsObject(t)) return lm_error(LM_ERR_FORMAT, "'tools[%d]' must be an object {\"type\": \"function\", \"function\": {...}}", i);
    const cJSON *fn = NULL;
    for (const cJSON *o = t->child; o; o = o->next) {
      if (!strcmp(o->string, "type")) {
        if (!cJSON_IsString(o) || strcmp(o->valuestring, "function"))
          return lm_error(LM_ERR_UNSUPPORTED, "'tools[%d].type' must be \"function\" (the only kind of tool lmkit knows)", i);
      } else if (!strcmp(o->string, "function")) fn = o;
      else return lm_error(LM_ERR_UNSUPPORTED, "unknown field 'tools[%d].%s' (lmkit knows type and function)", i, o->string);
    }
    if (!cJSON_GetObjectItemCaseSensitive(t, "type")) return lm_error(LM_ERR_FORMAT, "'tools[%d].type' is required", i);
    if (!cJSON_IsObject(fn)) return lm_error(LM_ERR_FORMAT, "'tools[%d].function' must be an object {\"name\", ...}", i);
    for (const cJSON *o = fn->child; o; o = o->next) {
      if (!strcmp(o->string, "name")) {
        if (!cJSON_IsString(o) || !tool_name_ok(o->valuestring))
          return lm_error(LM_ERR_FORMAT, "'tools[%d].function.name' must be 1 to 64 letters, digits, '_' or '-'", i);
      } else if (!strcmp(o->string, "description")) {
        if (!cJSON_IsString(o)) return lm_error(LM_ERR_FORMAT, "'tools[%d].function.description' must be a string", i);
      } else if (!strcmp(o->string, "parameters")) {
        if (!cJSON_IsObject(o)) return lm_error(LM_ERR_FORMAT, "'tools[%d].function.parameters' must be a JSON Schema object", i);
      } else if (!strcmp(o->string, "strict")) {
        if (!cJSON_IsBool(o)) return lm_error(LM_ERR_FORMAT, "'tools[%d].function.strict' must be true or false", i);
        if (cJSON_IsTrue(o))
          return lm_error(LM_ERR_UNSUPPORTED, "'tools[%d].function.strict': lmkit does not constrain the arguments to the schema", i);
      } else
        return lm_error(LM_ERR_UNSUPPORTED, "unknown field 'tools[%d].function.%s' (lmkit knows name, description, parameters, strict)",
                        i, o->string);
    }
    const cJSON *fname = cJSON_GetObjectItemCaseSensitive(fn, "name");
    if (!fname) return lm_error(LM_ERR_FORMAT, "'tools[%d].function.name' is required", i);
    int k = 0;
    for (const cJSON *u = v->child; u != t; u = u->next, k++)
      if (!strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(u, "function"), "name")->valuestring,
                  fname->valuestring))
        return lm_error(LM_ERR_FORMAT, "'tools[%d].function.name': '%s' is also tools[%d]'s name", i, fname->valuestring, k);
  }
  r->tools = i ? v : NULL;
  return LM_OK;
}

/* "none" | "auto" | "required" | {"type": "function", "function": {"name": NAME}} */
static lm_status f_tool_choice(lm_request *r, const cJSON *v, const char *name) {
  static const char *const MODES[] = {"none", "auto", "required"};   /* in lm_tool_choice's order */
  if (cJSON_IsString(v)) {
    for (int k = 0; k < 3; k++)
      if (!strcmp(v->valuestring, MODES[k])) { r->tool_choice = (lm_tool_choice)k; return LM_OK; }
    return lm_error(LM_ERR_FORMAT, "'%s' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}", name);
  }
  const cJSON *t = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "type") : NULL;
  const cJSON *f = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "function") : NULL;
  const cJSON *n = cJSON_IsObject(f) ? cJSON_GetObjectItemCaseSensitive(f, "name") : NULL;
  if (!cJSON_IsString(t) || strcmp(t->valuestring, "function") || !cJSON_IsString(n) || cJSON_GetArraySize(v) != 2 ||
      cJSON_GetArraySize(f) != 1)
    return lm_error(LM_ERR_FORMAT, "'%s' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}", name);
  r->tool_choice = LM_TOOL_CHOICE_FUNCTION;
  r->tool_choice_name = n->valuestring;
  return LM_OK;
}
static lm_status f_parallel_tool_calls(lm_request *r, const cJSON *v, const char *name) {
  int b = 1;
  lm_status st = get_bool(v, name, &b);
  r->single_tool_call = !b;
  return st;
}

/* {"index": NAME, "k": K}: answer from the passages of an index the server loaded (--index NAME=PATH) */
static lm_status f_retrieval(lm_request *r, const cJSON *v, const char *name) {
  if (!cJSON_IsObject(v)) return type_err(name, "an object {\"index\": NAME, \"k\": K}");
  r->retrieval_k = 5;
  for (const cJSON *o = v->child; o; o = o->next) {
    lm_status st = LM_OK;
    if (!strcmp(o->string, "index")) {
      if (!cJSON_IsString(o) || !*o->valuestring) return type_err("retrieval.index", "a non-empty string");
      r->retrieval = o->valuestring;
    } else if (!strcmp(o->string, "k")) st = get_int(o, "retrieval.k", 1, 100, &r->retrieval_k);
    else return lm_error(LM_ERR_UNSUPPORTED, "unknown field '%s.%s' (lmkit knows index and k)", name, o->string);
    if (st) return st;
  }
  if (!r->retrieval) return lm_error(LM_ERR_FORMAT, "'%s.index' is required", name);
  return LM_OK;
}
static lm_status f_response_format(lm_request *r, const cJSON *v, const char *name) {
  const cJSON *t = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "type") : NULL;
  if (cJSON_IsString(t) && !strcmp(t->valuestring, "text") && cJSON_GetArraySize(v) == 1) return LM_OK;
  return lm_error(LM_ERR_UNSUPPORTED, "'%s': only {\"type\": \"text\"} (lmkit does not constrain output)", name);
}

/* a string, or a list of strings (the only ones OpenAI's prompt/input take that lmkit reads) */
static lm_status get_texts(lm_request *r, const cJSON *v, const char *name, int max) {
  int n = cJSON_IsString(v) ? 1 : cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
  if (n < 1) return type_err(name, "a string or a non-empty list of strings");
  if (n > max) return lm_error(LM_ERR_RANGE, "'%s' takes at most %d text%s here", name, max, max > 1 ? "s" : "");
  r->inputs = calloc((size_t)n, sizeof *r->inputs);
  if (!r->inputs) return lm_error(LM_ERR_NOMEM, "out of memory");
  if (cJSON_IsString(v)) r->inputs[r->n_inputs++] = v->valuestring;
  else
    for (const cJSON *s = v->child; s; s = s->next) {
      if (!cJSON_IsString(s))
        return lm_error(LM_ERR_FORMAT, "'%s[%lld]' must be a string (token-id inputs are not supported)", name,
                        (long long)r->n_inputs);
      r->inputs[r->n_inputs++] = s->valuestring;
    }
  return LM_OK;
}

static lm_status f_prompt(lm_request *r, const cJSON *v, const char *name) {
  lm_status st = get_texts(r, v, name, 1);   /* one choice per request: one prompt */
  if (!st) r->prompt = r->inputs[0];
  return st;
}
static lm_status f_input(lm_request *r, const cJSON *v, const char *name) { return get_texts(r, v, name, 2048); }
static lm_status f_encoding_format(lm_request *r, const cJSON *v, const char *name) {
  if (cJSON_IsString(v) && !strcmp(v->valuestring, "float")) return LM_OK;
  if (cJSON_IsString(v) && !strcmp(v->valuestring, "base64")) { r->base64 = 1; return LM_OK; }
  return lm_error(LM_ERR_FORMAT, "'%s' must be \"float\" or \"base64\"", name);
}
static lm_status f_content(lm_request *r, const cJSON *v, const char *name) {
  if (!cJSON_IsString(v)) return type_err(name, "a string");
  return get_texts(r, v, name, 1);
}
static lm_status f_add_special(lm_request *r, const cJSON *v, const char *name) { return get_bool(v, name, &r->add_special); }
static lm_status f_parse_special(lm_request *r, const cJSON *v, const char *name) {
  return get_bool(v, name, &r->parse_special);
}
static lm_status f_with_pieces(lm_request *r, const cJSON *v, const char *name) { return get_bool(v, name, &r->with_pieces); }
static lm_status f_tokens(lm_request *r, const cJSON *v, const char *name) {
  if (!cJSON_IsArray(v)) return type_err(name, "a list of token ids");
  int n = cJSON_GetArraySize(v);
  r->ids = malloc(((size_t)n + 1) * sizeof *r->ids);
  if (!r->ids) return lm_error(LM_ERR_NOMEM, "out of memory");
  for (const cJSON *t = v->child; t; t = t->next) {
    int64_t id = 0;
    if (get_int(t, name, 0, INT32_MAX, &id))
      return lm_error(LM_ERR_FORMAT, "'%s[%lld]' must be a token id (an integer >= 0)", name, (long long)r->n_ids);
    r->ids[r->n_ids++] = (int32_t)id;
  }
  return LM_OK;
}

typedef struct { const char *name; unsigned kinds; field_fn fn; int required; } field;

static const field FIELDS[] = {
  {"model", ALL, f_ignored_string, 0},
  {"user", GEN | K(LM_REQ_EMBEDDING), f_ignored_string, 0},
  {"messages", K(LM_REQ_CHAT), f_messages, 1},
  {"prompt", K(LM_REQ_COMPLETION), f_prompt, 1},
  {"max_tokens", GEN, f_max_tokens, 0},
  {"max_completion_tokens", K(LM_REQ_CHAT), f_max_tokens, 0},
  {"temperature", GEN, f_temperature, 0},
  {"top_p", GEN, f_top_p, 0},
  {"top_k", GEN, f_top_k, 0},
  {"seed", GEN, f_seed, 0},
  {"stop", GEN, f_stop, 0},
  {"stream", GEN, f_stream, 0},
  {"stream_options", GEN, f_stream_options, 0},
  {"logprobs", GEN, f_logprobs, 0},
  {"top_logprobs", K(LM_REQ_CHAT), f_top_logprobs, 0},
  {"n", GEN, f_only_one, 0},
  {"best_of", K(LM_REQ_COMPLETION), f_only_one, 0},
  {"frequency_penalty", GEN, f_only_zero, 0},
  {"presence_penalty", GEN, f_only_zero, 0},
  {"echo", K(LM_REQ_COMPLETION), f_only_false, 0},
  {"parallel_tool_calls", K(LM_REQ_CHAT), f_parallel_tool_calls, 0},
  {"tools", K(LM_REQ_CHAT), f_tools, 0},
  {"tool_choice", K(LM_REQ_CHAT), f_tool_choice, 0},
  {"retrieval", K(LM_REQ_CHAT), f_retrieval, 0},
  {"response_format", K(LM_REQ_CHAT), f_response_format, 0},
  {"input", K(LM_REQ_EMBEDDING), f_input, 1},
  {"encoding_format", K(LM_REQ_EMBEDDING), f_encoding_format, 0},
  {"content", K(LM_REQ_TOKENIZE), f_content, 1},
  {"add_special", K(LM_REQ_TOKENIZE), f_add_special, 0},
  {"parse_special", K(LM_REQ_TOKENIZE), f_parse_special, 0},
  {"with_pieces", K(LM_REQ_TOKENIZE), f_with_pieces, 0},
  {"tokens", K(LM_REQ_DETOKENIZE), f_tokens, 1},
};
#define N_FIELDS ((int)(sizeof FIELDS / sizeof FIELDS[0]))

void lm_request_free(lm_request *r) {
  cJSON_Delete(r->body);
  free(r->inputs);
  free(r->ids);
  memset(r, 0, sizeof *r);
}

lm_status lm_request_parse(lm_request *r, lm_req_kind kind, const char *data, size_t len, const char **param) {
  memset(r, 0, sizeof *r);
  r->kind = kind; r->max_tokens = -1; r->tool_choice = LM_TOOL_CHOICE_AUTO; r->temperature = 1.0f; r->top_p = 1.0f; r->parse_special = 1;
  if (param) *param = "";
  const char *end = NULL;
  r->body = cJSON_ParseWithLengthOpts(data, len, &end, 0);
  if (!r->body) {
    size_t at = end && end >= data && end <= data + len ? (size_t)(end - data) : 0;
    return lm_error(LM_ERR_FORMAT, "the body is not valid JSON (near byte %zu)", at);
  }
  if (!cJSON_IsObject(r->body)) { lm_request_free(r); return lm_error(LM_ERR_FORMAT, "the body must be a JSON object"); }
  lm_status st = LM_OK;
  int seen[N_FIELDS] = {0};
  for (const cJSON *v = r->body->child; v && !st; v = v->next) {
    int f = 0;
    while (f < N_FIELDS && !((FIELDS[f].kinds & K(kind)) && !strcmp(FIELDS[f].name, v->string))) f++;
    if (f == N_FIELDS) {
      st = lm_error(LM_ERR_UNSUPPORTED, "unknown field '%s'", v->string);
      if (param) *param = "";
      break;
    }
    if (param) *param = FIELDS[f].name;
    if (seen[f]++) { st = lm_error(LM_ERR_FORMAT, "'%s' is given twice", v->string); break; }
    if (cJSON_IsNull(v)) continue;   /* null: the default */
    st = FIELDS[f].fn(r, v, FIELDS[f].name);
  }
  for (int f = 0; f < N_FIELDS && !st; f++)
    if (FIELDS[f].required && (FIELDS[f].kinds & K(kind)) &&
        (!seen[f] || cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->body, FIELDS[f].name)))) {
      if (param) *param = FIELDS[f].name;
      st = lm_error(LM_ERR_FORMAT, "'%s' is required", FIELDS[f].name);
    }
  if (!st && r->include_usage && !r->stream) {
    if (param) *param = "stream_options";
    st = lm_error(LM_ERR_FORMAT, "'stream_options' is only allowed with \"stream\": true");
  }
  if (!st && r->tool_choice >= LM_TOOL_CHOICE_REQUIRED && !r->tools) {
    if (param) *param = "tool_choice";
    st = lm_error(LM_ERR_FORMAT, "'tool_choice' asks for a tool call but 'tools' declares none");
  }
  if (!st && r->tool_choice == LM_TOOL_CHOICE_FUNCTION) {
    const cJSON *t = r->tools->child;
    while (t && strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name")->valuestring,
                       r->tool_choice_name)) t = t->next;
    if (!t) {
      if (param) *param = "tool_choice";
      st = lm_error(LM_ERR_FORMAT, "'tool_choice' names '%s', which 'tools' does not declare", r->tool_choice_name);
    }
  }
  if (!st && r->tools && r->tool_choice != LM_TOOL_CHOICE_NONE && r->logprobs) {
    if (param) *param = "logprobs";
    st = lm_error(LM_ERR_UNSUPPORTED, "'logprobs' together with 'tools' is not supported");
  }
  if (!st && r->top_logprobs && !r->logprobs) {
    if (param) *param = "top_logprobs";
    st = lm_error(LM_ERR_FORMAT, "'top_logprobs' needs \"logprobs\": true");
  }
  if (st) lm_request_free(r);
  else if (param) *param = "";
  return st;
}
