/* fuzz_request.c — libFuzzer target for the server's request-body parser (src/serve/request.c).
 *
 * The first byte picks the route (chat, completions, embeddings, tokenize, detokenize), the rest is
 * the body, not NUL-terminated. A parse must fail with a message, or succeed with every field
 * inside the range the server relies on: at most 4 non-empty stop strings, sampling values in
 * OpenAI's ranges, the route's required field present, no stray include_usage or top_logprobs.
 * An accepted chat request is rendered as the server renders it (serve/tools.h, ChatML), and the
 * body's bytes are read as a model's answer with the request's tools (or two fixed ones): the
 * content and the calls must tile the text, each call's arguments a JSON object, and a finished
 * answer leaves nothing pending. Build with fuzz/build_request.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "serve/request.h"
#include "serve/tools.h"

/* chat_generate.c's stop-token search (not run here) asks the tokenizer; the target does not link it */
int64_t lm_tokenizer_vocab_size(const lm_tokenizer *tok) { (void)tok; abort(); }
int64_t lm_tokenizer_token_id(const lm_tokenizer *t, const char *token) { (void)t; (void)token; abort(); }

static void check_answer(const char *text, size_t n, const cJSON *tools, int done) {
  lm_tool_output o;
  if (lm_tools_parse(text, n, tools, done, 1, &o)) return;   /* out of memory */
  if (o.content_end > o.rest || o.rest > n || (done && o.pending)) abort();
  if (cJSON_GetArraySize(o.calls) && o.rest == o.content_end) abort();
  for (const cJSON *c = o.calls->child; c; c = c->next) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "function");
    cJSON *a = cJSON_Parse(cJSON_GetObjectItemCaseSensitive(f, "arguments")->valuestring);
    if (!cJSON_IsObject(a)) abort();
    cJSON_Delete(a);
  }
  size_t ce = lm_tools_content_end(text, n);
  if (ce > n || ce > o.content_end) abort();
  cJSON_Delete(o.calls);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!size) return 0;
  lm_req_kind kind = (lm_req_kind)(data[0] % LM_REQ_KINDS);
  char *buf = malloc(size - 1 ? size - 1 : 1);
  if (!buf) return 0;
  memcpy(buf, data + 1, size - 1);
  lm_request r;
  const char *param = NULL;
  lm_status st = lm_request_parse(&r, kind, buf, size - 1, &param);
  if (!param) abort();
  if (st) {
    if (!*lm_last_error()) abort();
    free(buf);
    return 0;
  }
  if (r.kind != kind || r.n_stop < 0 || r.n_stop > LM_REQ_MAX_STOP) abort();
  for (int i = 0; i < r.n_stop; i++) if (!r.stop[i] || !*r.stop[i]) abort();
  if (!(r.temperature >= 0 && r.temperature <= 2) || !(r.top_p >= 0 && r.top_p <= 1) || r.top_k < 0) abort();
  if (r.max_tokens != -1 && r.max_tokens < 1) abort();
  if (r.top_logprobs < 0 || r.top_logprobs > LM_REQ_MAX_TOP_LOGPROBS || (r.top_logprobs && !r.logprobs)) abort();
  if (r.include_usage && !r.stream) abort();
  if (kind == LM_REQ_CHAT && (!r.messages || !cJSON_IsArray(r.messages))) abort();
  if (kind == LM_REQ_COMPLETION && !r.prompt) abort();
  if ((kind == LM_REQ_EMBEDDING || kind == LM_REQ_TOKENIZE) && (r.n_inputs < 1 || !r.inputs)) abort();
  for (int64_t i = 0; i < r.n_inputs; i++) if (!r.inputs[i]) abort();
  for (int64_t i = 0; i < r.n_ids; i++) if (r.ids[i] < 0) abort();
  if (kind == LM_REQ_DETOKENIZE && r.n_ids && !r.ids) abort();
  if (kind == LM_REQ_CHAT) {
    lm_chat_config cc = {.template = (char *)LM_CHATML_TEMPLATE, .source = (char *)"ChatML", .is_default = 1};
    char *prompt = NULL, *forced = NULL;
    const char *p2;
    if (!lm_tools_chat_prompt(&cc, &r, &prompt, &forced, &p2) && (!prompt || !forced)) abort();
    free(prompt); free(forced);
  }
  static const char FIXED[] = "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
                              "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}]";
  cJSON *fixed = cJSON_Parse(FIXED);
  for (int done = 0; done < 2; done++) check_answer(buf, size - 1, r.tools ? r.tools : fixed, done);
  cJSON_Delete(fixed);
  lm_request_free(&r);
  free(buf);
  return 0;
}

