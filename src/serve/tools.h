/* tools.h — tool calls on /v1/chat/completions (docs/serve.md "Tool calls").
 *
 * One syntax, Hermes / Qwen 2.5's: the model answers a call as
 *
 *   <tool_call>
 *   {"name": "get_weather", "arguments": {"city": "Paris"}}
 *   </tool_call>
 *
 * (several blocks for several calls). Into the prompt:
 *   - a template that reads `tools` and writes <tool_call> (Qwen 2.5/3, Hermes 2 Pro, SmolLM3...)
 *     gets the request's tools as the variable `tools`, and the assistant's earlier calls with
 *     their arguments parsed into objects (as transformers and vLLM hand them to templates);
 *   - a template that does not read `tools` (ChatML, the default of models lmkit trains, and
 *     most others) gets the messages rewritten into plain ones, so that the ChatML rendering is
 *     Qwen 2.5's byte for byte: the tools described in the system message (appended to the
 *     caller's system message after a blank line), an assistant's calls as <tool_call> blocks in
 *     its content, tool results as a user message of <tool_response> blocks;
 *   - a template that reads `tools` but writes calls in another syntax (Llama 3.1, Mistral...)
 *     is refused with a message, rather than parsed wrongly.
 * tool_choice "required" starts the answer with "<tool_call>", a named function with the
 * block's opening up to the arguments' colon; "none" leaves the tools out of the prompt. (What
 * the model writes after that is parsed as any answer: a model that does not complete a valid
 * call gets its text back as content.)
 *
 * Out of the answer: the text before the first <tool_call> is content; then each complete
 * block that holds {"name": a declared tool, "arguments": an object} becomes a tool call
 * {"id", "type": "function", "function": {"name", "arguments": a JSON string}}; from the first
 * block that does not (malformed JSON, an unknown name, text between blocks, a block cut off
 * at the end) the text is content again. */
#ifndef LM_SERVE_TOOLS_H
#define LM_SERVE_TOOLS_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "infer/template.h"
#include "serve/request.h"

#define LM_TOOL_OPEN "<tool_call>"
#define LM_TOOL_CLOSE "</tool_call>"

/* The prompt of a chat request (with the generation prompt) and the text the answer is made to
 * start with (*forced, "" unless tool_choice forces a call; both malloc'ed). Errors name the
 * field: *param is "messages" or "tools". */
lm_status lm_tools_chat_prompt(const lm_chat_config *cc, const lm_request *r, char **prompt, char **forced,
                               const char **param);

typedef struct {
  size_t content_end;   /* text[0..content_end): content (before the first <tool_call>) */
  size_t rest;          /* text[rest..n): content again (n: none) */
  int pending;          /* a block still open at the end (not done yet): rest is where it starts */
  cJSON *calls;         /* OpenAI's tool_calls list (maybe empty); ids "call_<seq>_<k>" */
} lm_tool_output;

/* Parses an answer text[0..n) as above; done: the answer is complete (an open block is then
 * content). out->calls is the caller's to free (cJSON_Delete). */
lm_status lm_tools_parse(const char *text, size_t n, const cJSON *tools, int done, uint64_t seq, lm_tool_output *out);

/* Where the answer stops being content: the first <tool_call>, or where a partial one may
 * begin at the end of text[0..n) (so streaming never sends its first bytes as content). */
size_t lm_tools_content_end(const char *text, size_t n);

#endif
