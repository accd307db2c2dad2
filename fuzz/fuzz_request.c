/* fuzz_request.c — libFuzzer target for the server's request-body parser (src/serve/request.c).
 *
 * The first byte picks the route (chat, completions, embeddings, tokenize, detokenize), the rest is
 * the body, not NUL-terminated. A parse must fail with a message, or succeed with every field
 * inside the range the server relies on: at most 4 non-empty stop strings, sampling values in
 * OpenAI's ranges, the route's required field present, no stray include_usage or top_logprobs.
 * Build with fuzz/build_request.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "serve/request.h"

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
  lm_request_free(&r);
  free(buf);
  return 0;
}

