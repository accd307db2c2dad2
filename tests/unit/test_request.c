/* test_request.c — the server's request-body parser (src/serve/request.c): what it accepts and
 * stores, and that each refusal names the field (OpenAI's error.param) in its message. */
#include <criterion/criterion.h>
#include <string.h>
#include "base/base.h"
#include "serve/request.h"

static lm_request parse_ok(lm_req_kind k, const char *body) {
  lm_request r;
  const char *param;
  lm_status st = lm_request_parse(&r, k, body, strlen(body), &param);
  cr_assert_eq(st, LM_OK, "%s: %s", body, lm_last_error());
  return r;
}

Test(request, chat_fields) {
  lm_request r = parse_ok(LM_REQ_CHAT,
    "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_completion_tokens\":7,"
    "\"temperature\":0,\"top_p\":0.5,\"top_k\":3,\"seed\":12,\"stop\":[\"a\",\"bc\"],\"stream\":true,"
    "\"stream_options\":{\"include_usage\":true},\"logprobs\":true,\"top_logprobs\":4,\"n\":1,\"user\":\"u\","
    "\"frequency_penalty\":0,\"tool_choice\":\"none\",\"tools\":[],\"retrieval\":{\"index\":\"docs\",\"k\":2}}");
  cr_assert(cJSON_IsArray(r.messages));
  cr_assert_eq(r.max_tokens, 7); cr_assert_eq(r.temperature, 0); cr_assert_float_eq(r.top_p, 0.5, 1e-7);
  cr_assert_eq(r.top_k, 3); cr_assert(r.has_seed && r.seed == 12);
  cr_assert_eq(r.n_stop, 2); cr_assert_str_eq(r.stop[1], "bc");
  cr_assert(r.stream && r.include_usage && r.logprobs); cr_assert_eq(r.top_logprobs, 4);
  cr_assert_str_eq(r.retrieval, "docs"); cr_assert_eq(r.retrieval_k, 2);
  lm_request_free(&r);
}

Test(request, defaults_and_nulls) {
  lm_request r = parse_ok(LM_REQ_COMPLETION, "{\"prompt\":\"abc\",\"stop\":null,\"max_tokens\":null,\"logprobs\":2}");
  cr_assert_str_eq(r.prompt, "abc");
  cr_assert_eq(r.max_tokens, -1); cr_assert_eq(r.temperature, 1); cr_assert_eq(r.top_p, 1); cr_assert_eq(r.n_stop, 0);
  cr_assert(r.logprobs); cr_assert_eq(r.top_logprobs, 2, "completions' logprobs N = alternatives per token");
  lm_request_free(&r);
  r = parse_ok(LM_REQ_EMBEDDING, "{\"input\":[\"a\",\"b\",\"c\"],\"encoding_format\":\"base64\"}");
  cr_assert_eq(r.n_inputs, 3); cr_assert_str_eq(r.inputs[2], "c"); cr_assert(r.base64);
  lm_request_free(&r);
  r = parse_ok(LM_REQ_DETOKENIZE, "{\"tokens\":[0,5,70000]}");
  cr_assert_eq(r.n_ids, 3); cr_assert_eq(r.ids[2], 70000);
  lm_request_free(&r);
  r = parse_ok(LM_REQ_TOKENIZE, "{\"content\":\"x y\"}");
  cr_assert_str_eq(r.inputs[0], "x y"); cr_assert_eq(r.add_special, 0); cr_assert_eq(r.parse_special, 1);
  lm_request_free(&r);
  r = parse_ok(LM_REQ_TOKENIZE, "{\"content\":\"x\",\"add_special\":true,\"parse_special\":false}");
  cr_assert_eq(r.add_special, 1); cr_assert_eq(r.parse_special, 0);
  lm_request_free(&r);
}

typedef struct { lm_req_kind kind; const char *body; lm_status st; const char *param, *msg; } bad_case;

Test(request, refusals_name_the_field) {
  static const bad_case cases[] = {
    {LM_REQ_CHAT, "{\"messages\": [", LM_ERR_FORMAT, "", "not valid JSON"},
    {LM_REQ_CHAT, "[1]", LM_ERR_FORMAT, "", "must be a JSON object"},
    {LM_REQ_CHAT, "{}", LM_ERR_FORMAT, "messages", "'messages' is required"},
    {LM_REQ_CHAT, "{\"messages\":[]}", LM_ERR_FORMAT, "messages", "non-empty list"},
    {LM_REQ_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", LM_ERR_FORMAT, "messages", "messages[0].role"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", LM_ERR_FORMAT, "messages", "messages[0].content"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"temperature\":\"hot\"}", LM_ERR_FORMAT, "temperature", "a number"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"temperature\":2.5}", LM_ERR_RANGE, "temperature", "between 0 and 2"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"max_tokens\":1.5}", LM_ERR_FORMAT, "max_tokens", "an integer"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"max_tokens\":0}", LM_ERR_RANGE, "max_tokens", "between 1"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", LM_ERR_RANGE, "stop", "at most 4"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"stop\":\"\"}", LM_ERR_RANGE, "stop", "not be empty"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"stream_options\":{\"include_usage\":true}}", LM_ERR_FORMAT,
     "stream_options", "only allowed with"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"top_logprobs\":2}", LM_ERR_FORMAT, "top_logprobs", "needs"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"n\":2}", LM_ERR_UNSUPPORTED, "n", "must be 1"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"presence_penalty\":0.5}", LM_ERR_UNSUPPORTED, "presence_penalty", "only 0"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"retrieval\":{\"k\":3}}", LM_ERR_FORMAT, "retrieval",
     "'retrieval.index' is required"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"retrieval\":{\"index\":\"d\",\"k\":0}}", LM_ERR_RANGE, "retrieval",
     "retrieval.k"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"retrieval\":{\"index\":\"d\",\"top\":1}}", LM_ERR_UNSUPPORTED,
     "retrieval", "retrieval.top"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"colour\":1}", LM_ERR_UNSUPPORTED, "", "unknown field 'colour'"},
    {LM_REQ_CHAT, "{\"messages\":[{\"role\":\"user\"}],\"seed\":1,\"seed\":2}", LM_ERR_FORMAT, "seed", "given twice"},
    {LM_REQ_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", LM_ERR_RANGE, "prompt", "at most 1"},
    {LM_REQ_COMPLETION, "{\"prompt\":\"a\",\"echo\":true}", LM_ERR_UNSUPPORTED, "echo", "only false"},
    {LM_REQ_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":9}", LM_ERR_RANGE, "logprobs", "between 0 and 5"},
    {LM_REQ_COMPLETION, "{\"prompt\":\"a\",\"messages\":[]}", LM_ERR_UNSUPPORTED, "", "unknown field 'messages'"},
    {LM_REQ_EMBEDDING, "{\"input\":[1,2]}", LM_ERR_FORMAT, "input", "token-id inputs"},
    {LM_REQ_EMBEDDING, "{\"input\":\"a\",\"encoding_format\":\"hex\"}", LM_ERR_FORMAT, "encoding_format", "base64"},
    {LM_REQ_TOKENIZE, "{\"content\":[\"a\"]}", LM_ERR_FORMAT, "content", "a string"},
    {LM_REQ_DETOKENIZE, "{\"tokens\":[1,-2]}", LM_ERR_FORMAT, "tokens", "tokens[1]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const bad_case *c = &cases[i];
    lm_request r;
    const char *param = NULL;
    lm_status st = lm_request_parse(&r, c->kind, c->body, strlen(c->body), &param);
    cr_assert_eq(st, c->st, "%s: status %d, expected %d (%s)", c->body, st, c->st, lm_last_error());
    cr_assert_str_eq(param, c->param, "%s: param '%s'", c->body, param);
    cr_assert(strstr(lm_last_error(), c->msg), "%s: message '%s' lacks '%s'", c->body, lm_last_error(), c->msg);
    cr_assert_null(r.body, "a refused request is freed");
  }
}

Test(request, body_is_not_nul_terminated) {
  const char body[] = "{\"prompt\":\"abc\"}XXXX";
  lm_request r;
  const char *param;
  cr_assert_eq(lm_request_parse(&r, LM_REQ_COMPLETION, body, 16, &param), LM_OK, "%s", lm_last_error());
  cr_assert_str_eq(r.prompt, "abc");
  lm_request_free(&r);
  cr_assert_neq(lm_request_parse(&r, LM_REQ_COMPLETION, body, 10, &param), LM_OK, "a cut body is malformed");
}
