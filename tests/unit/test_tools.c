/* test_tools.c — tool calls in the server (src/serve/tools.c): reading calls out of answers
 * (complete, cut off, malformed, undeclared, mixed with text), the prompt's forced openings and
 * the tools fields of a request. The ChatML rendering against Qwen 2.5's template and the
 * round trip through a real model are tests/cli/test_serve_tools.sh's. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/base.h"
#include "serve/request.h"
#include "serve/tools.h"

static const char TOOLS[] =
  "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"}}},"
  "{\"type\":\"function\",\"function\":{\"name\":\"add\"}}]";

static lm_tool_output parse(const char *text, int done) {
  cJSON *tools = cJSON_Parse(TOOLS);
  lm_tool_output o;
  cr_assert_eq(lm_tools_parse(text, strlen(text), tools, done, 7, &o), LM_OK);
  cJSON_Delete(tools);
  return o;
}

static const char *arg(const lm_tool_output *o, int k) {
  return cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(o->calls, k), "function"), "arguments")->valuestring;
}

Test(tools, parse_calls) {
  const char *t = "Let me see.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"n\": 2}}\n</tool_call>\n"
                  "<tool_call>{\"name\": \"add\"}</tool_call>\n";
  lm_tool_output o = parse(t, 1);
  cr_assert_eq(cJSON_GetArraySize(o.calls), 2);
  cr_assert_eq(o.content_end, strlen("Let me see.\n"));
  cr_assert_eq(o.rest, strlen(t), "trailing whitespace is not content");
  const cJSON *c0 = cJSON_GetArrayItem(o.calls, 0);
  cr_assert_str_eq(cJSON_GetObjectItem(c0, "id")->valuestring, "call_7_0");
  cr_assert_str_eq(cJSON_GetObjectItem(c0, "type")->valuestring, "function");
  cr_assert_str_eq(arg(&o, 0), "{\"city\":\"Paris\",\"n\":2}");
  cr_assert_str_eq(arg(&o, 1), "{}", "no arguments: an empty object");
  cJSON_Delete(o.calls);
}

Test(tools, no_call_is_all_content) {
  lm_tool_output o = parse("It is sunny.", 1);
  cr_assert_eq(cJSON_GetArraySize(o.calls), 0);
  cr_assert_eq(o.content_end, 12); cr_assert_eq(o.rest, 12);
  cJSON_Delete(o.calls);
}

Test(tools, bad_blocks_stay_content) {
  const char *cases[] = {
    "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": }</tool_call>",   /* bad JSON */
    "<tool_call>{\"name\": \"delete_all\", \"arguments\": {}}</tool_call>",              /* undeclared */
    "<tool_call>{\"name\": \"add\", \"arguments\": \"1+2\"}</tool_call>",                /* arguments not an object */
    "<tool_call>{\"name\": \"add\", \"arguments\": {}, \"x\": 1}</tool_call>",           /* an extra key */
    "<tool_call>[1, 2]</tool_call>",
    "<tool_call>{\"name\": \"add\"} trailing</tool_call>",
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    lm_tool_output o = parse(cases[i], 1);
    cr_assert_eq(cJSON_GetArraySize(o.calls), 0, "%s", cases[i]);
    cr_assert_eq(o.content_end, 0); cr_assert_eq(o.rest, 0, "%s: the whole text is content", cases[i]);
    cJSON_Delete(o.calls);
  }
  /* a good call, then text: the call stands, the text after it is content */
  const char *t = "<tool_call>{\"name\": \"add\"}</tool_call> and then <tool_call>{\"name\": \"add\"}</tool_call>";
  lm_tool_output o = parse(t, 1);
  cr_assert_eq(cJSON_GetArraySize(o.calls), 1);
  cr_assert_str_eq(t + o.rest, " and then <tool_call>{\"name\": \"add\"}</tool_call>");
  cJSON_Delete(o.calls);
}

Test(tools, open_block_pending_then_content) {
  const char *t = "<tool_call>\n{\"name\": \"add\", \"argu";
  lm_tool_output o = parse(t, 0);
  cr_assert(o.pending); cr_assert_eq(cJSON_GetArraySize(o.calls), 0); cr_assert_eq(o.rest, 0);
  cJSON_Delete(o.calls);
  o = parse(t, 1);   /* cut off at the end (max_tokens): content */
  cr_assert(!o.pending); cr_assert_eq(o.rest, 0);
  cJSON_Delete(o.calls);
  o = parse("<tool_ca", 0);   /* a tag still arriving: not a call yet; lm_tools_content_end holds it back */
  cr_assert(!o.pending); cr_assert_eq(cJSON_GetArraySize(o.calls), 0);
  cr_assert_eq(lm_tools_content_end("<tool_ca", 8), 0);
  cJSON_Delete(o.calls);
}

Test(tools, content_end_holds_a_partial_tag) {
  cr_assert_eq(lm_tools_content_end("abc <tool", 9), 4);
  cr_assert_eq(lm_tools_content_end("abc <", 5), 4);
  cr_assert_eq(lm_tools_content_end("a < b", 5), 5);
  cr_assert_eq(lm_tools_content_end("x<tool_call>{", 13), 1);
}

static lm_request request(const char *body) {
  lm_request r;
  const char *param;
  cr_assert_eq(lm_request_parse(&r, LM_REQ_CHAT, body, strlen(body), &param), LM_OK, "%s", lm_last_error());
  return r;
}

Test(tools, request_fields) {
  char body[1024];
  snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":%s,"
           "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"add\"}},\"parallel_tool_calls\":false}", TOOLS);
  lm_request r = request(body);
  cr_assert_eq(cJSON_GetArraySize(r.tools), 2);
  cr_assert_eq(r.tool_choice, LM_TOOL_CHOICE_FUNCTION); cr_assert_str_eq(r.tool_choice_name, "add");
  cr_assert(r.single_tool_call);
  lm_request_free(&r);
  r = request("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
              "[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"add\",\"arguments\":\"{\\\"a\\\":1}\"}}]},"
              "{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"1\"}]}");
  cr_assert_null(r.tools); cr_assert_eq(r.tool_choice, LM_TOOL_CHOICE_AUTO); cr_assert(!r.single_tool_call);
  lm_request_free(&r);
}

/* the prompt of a ChatML model (a directory without tokenizer_config.json) and the forced openings */
Test(tools, forced_openings) {
  char dir[] = "/tmp/lmkit_test_tools_XXXXXX";
  cr_assert(mkdtemp(dir));
  lm_chat_config cc;
  cr_assert_eq(lm_chat_config_load(&cc, dir), LM_OK);
  rmdir(dir);
  const char *choices[] = {"\"auto\"", "\"required\"", "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}", "\"none\""};
  const char *want[] = {"", "<tool_call>", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\":", ""};
  for (int i = 0; i < 4; i++) {
    char body[1024];
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":%s,\"tool_choice\":%s}", TOOLS,
             choices[i]);
    lm_request r = request(body);
    char *prompt, *forced;
    const char *param;
    cr_assert_eq(lm_tools_chat_prompt(&cc, &r, &prompt, &forced, &param), LM_OK, "%s", lm_last_error());
    cr_assert_str_eq(forced, want[i]);
    cr_assert_eq(strstr(prompt, "<|im_start|>system\n# Tools\n") == prompt, i != 3, "%s: %s", choices[i], prompt);
    cr_assert(strstr(prompt, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"));
    free(prompt); free(forced);
    lm_request_free(&r);
  }
  lm_chat_config_free(&cc);
}
