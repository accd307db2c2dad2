#!/usr/bin/env bash
# Tool calls in lmkit serve (src/serve/tools.c, docs/serve.md "Tool calls"), with a real model:
#   - a tiny GPT-2 that `lmkit sft` tunes here (about 30 s) on conversations in lmkit's tool format
#     (the tools described in the system message, calls as <tool_call> blocks, results as
#     <tool_response>): it calls get_weather for Paris, answers the tool's result, greets "Hello"
#     without a call, and writes a calculator call for "go";
#   - the official `openai` npm SDK (tests/cli/serve_tools.mjs): tool_calls with parsed arguments
#     and finish_reason "tool_calls", streamed delta.tool_calls, the round trip with the assistant's
#     call and a "tool" message, tool_choice required/{function}/none/auto, 400 naming the field
#     for malformed tools, and the calculator (serve --calc) spliced mid-answer;
#   - the prompt: POST /apply-template of a conversation with tools, calls and results is, for a
#     model without a tools template (ChatML), byte for byte what Qwen 2.5's own template renders
#     in @huggingface/jinja; a model whose template is Qwen 2.5's gets the tools passed through,
#     the same bytes again; a template with another call syntax (Llama 3.1) is a 400 naming tools;
#   - lmkit chat --calc shows the calculator's call and result on a line of its own.
set -u
source "$(dirname "$0")/serve_lib.sh"

python3 - "$T" <<'PY'
import json, sys
d = sys.argv[1]
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
SYS = "You help with the weather."
# lmkit's tools system message (docs/serve.md): Qwen 2.5's, after the caller's system message
TOOLS_SYS = (SYS + "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
  "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" + json.dumps(TOOL, ensure_ascii=False) +
  "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
  "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>")
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
S = lambda c: {"role": "system", "content": c}
U = lambda c: {"role": "user", "content": c}
A = lambda c: {"role": "assistant", "content": c}
Q = "What is the weather in Paris?"
convs = [[S(TOOLS_SYS), U(Q), A(CALL)],
         [S(TOOLS_SYS), U(Q), A(CALL), U("<tool_response>\n18 C\n</tool_response>"), A("It is 18 C in Paris.")],
         [S(TOOLS_SYS), U("Hello"), A("Hi! Ask me about the weather.")],
         [U("go"), A("<|calc|>77*33<|/calc|>")]]
with open(d + "/sft.jsonl", "w") as f:
    for i in range(48):
        f.write(json.dumps({"messages": convs[i % len(convs)]}, ensure_ascii=False) + "\n")
with open(d + "/corpus.txt", "w") as f:
    for i in range(40):
        for c in convs:
            for m in c: f.write(m["content"] + "\n")
json.dump({"tool": TOOL, "system": SYS}, open(d + "/case.json", "w"))
PY
# a conversation with calls and results: the request, and the cases for Qwen 2.5's template
python3 - "$T" "$SRC/tests/reference/chat_templates.json" <<'PY'
import json, sys
d, fixture = sys.argv[1], sys.argv[2]
case = json.load(open(d + "/case.json"))
tpl = {t["name"]: t["template"] for t in json.load(open(fixture))["templates"]}
TOOL2 = {"type": "function", "function": {"name": "add", "description": "a + b, exactly",
         "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}
calls = [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 2}}},
         {"id": "call_2", "type": "function", "function": {"name": "add", "arguments": {"a": 1.5, "b": -2}}}]
msgs = [{"role": "system", "content": case["system"]}, {"role": "user", "content": "Zürich, and 1.5 + -2?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
        {"role": "tool", "tool_call_id": "call_2", "content": "-0.5"},
        {"role": "assistant", "content": "21 degrees; -0.5."}, {"role": "user", "content": "Thanks."}]
tools = [case["tool"], TOOL2]
# the request as an OpenAI client sends it: arguments as JSON strings
sent = json.loads(json.dumps(msgs))
for c in sent[2]["tool_calls"]: c["function"]["arguments"] = json.dumps(c["function"]["arguments"])
json.dump({"messages": sent, "tools": tools}, open(d + "/render_req.json", "w"))
cases = [{"template": tpl["Qwen/Qwen2.5-7B-Instruct"], "vars": {"messages": msgs, "tools": tools, "add_generation_prompt": True}}]
json.dump(cases, open(d + "/render_cases.json", "w"))
json.dump({"chat_template": tpl["Qwen/Qwen2.5-7B-Instruct"], "eos_token": "<|im_end|>"}, open(d + "/qwen_config.json", "w"))
json.dump({"chat_template": tpl["meta-llama/Llama-3.1-8B-Instruct"]}, open(d + "/llama_config.json", "w"))
PY

"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 1000 --out "$T/tok" \
  --special "<|endoftext|>" --special "<|im_start|>" --special "<|im_end|>" > "$T/tok.log" 2>&1
"$BIN" train --data "$T/corpus.txt" --tokenizer "$T/tok" --out "$T/base" --layers 2 --heads 4 --dim 64 --context 288 \
  --steps 1 --batch 1 --threads 1 --quiet > "$T/train.log" 2>&1
"$BIN" sft --model "$T/base" --data "$T/sft.jsonl" --max-length 288 --steps 60 --lr 5e-3 --batch 4 --threads 2 --quiet \
  --out "$T/model" > "$T/sft.log" 2>&1
check "a tiny model tuned to call tools (lmkit sft)" '[ -f "$T/model/model.safetensors" ] && grep -q "48 conversations" "$T/sft.log"'

start_server "$BIN" "$T/serve.log" --model "$T/model" --parallel 2 --calc
check "lmkit serve --calc starts (port $PORT)" '[ -n "$PORT" ] && grep -q "calculator on" "$T/serve.log"'
URL="http://127.0.0.1:$PORT"

# ---- the official SDK
node "$SRC/tests/cli/serve_tools.mjs" "$URL" "$T/case.json" > "$T/sdk.log" 2>&1
rc=$?
sed 's/^/     sdk: /' "$T/sdk.log"
check "the openai SDK with tools: every check passes (rc $rc)" \
  '[ $rc -eq 0 ] && ! grep -q "^FAIL" "$T/sdk.log" && [ "$(grep -c "^ok" "$T/sdk.log")" -ge 18 ]'

# ---- the prompt, against Qwen 2.5's template in @huggingface/jinja
node "$SRC/tests/reference/jinja_ref.mjs" "$T/render_cases.json" > "$T/render_ref.json"
apply() { curl -s -o "$T/$2" -w '%{http_code}' -d @"$T/render_req.json" "$1/apply-template"; }
same_prompt() {
  python3 - "$T/render_ref.json" "$T/$1" <<'PY'
import json, sys
ref = json.load(open(sys.argv[1]))[0]
got = json.load(open(sys.argv[2]))["prompt"]
if not ref["ok"] or ref["out"] != got:
    i = next((k for k in range(min(len(got), len(ref.get("out", "")))) if got[k] != ref["out"][k]), 0)
    print("differ at %d: ref %r / lmkit %r" % (i, ref.get("out", ref.get("err"))[i - 40:i + 40], got[i - 40:i + 40]))
    sys.exit(1)
PY
}
check "a ChatML model: tools, calls and results render as Qwen 2.5's template does (@huggingface/jinja)" \
  '[ "$(apply "$URL" chatml.json)" = 200 ] && same_prompt chatml.json'

# tool_choice: "required" and a named function start the answer with the call's opening; "none"
# leaves the tools out
forced() {
  python3 - "$T/render_req.json" "$1" > "$T/choice_req.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); r["tool_choice"] = json.loads(sys.argv[2]); print(json.dumps(r))
PY
  curl -s -d @"$T/choice_req.json" "$URL/apply-template" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["prompt"][-70:]))'
}
check "tool_choice required: the answer starts with <tool_call>" \
  '[[ "$(forced "\"required\"")" == *"<|im_start|>assistant\\n<tool_call>\"" ]]'
check "tool_choice {function}: the answer starts with the call up to its arguments" \
  '[[ "$(forced "{\"type\": \"function\", \"function\": {\"name\": \"add\"}}")" == *"assistant\\n<tool_call>\\n{\\\"name\\\": \\\"add\\\", \\\"arguments\\\":\"" ]]'
curl -s -d "$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r["tool_choice"]="none"; print(json.dumps(r))' "$T/render_req.json")" \
  "$URL/apply-template" > "$T/none.json"
check "tool_choice none: no tools in the prompt (the earlier calls and results still are)" \
  '! grep -q "# Tools" "$T/none.json" && grep -q "<tool_response>" "$T/none.json" && grep -q "<tool_call>" "$T/none.json"'

# a model whose template reads tools: passed through; one with another call syntax: refused
cp -r "$T/model" "$T/qwen" && cp "$T/qwen_config.json" "$T/qwen/tokenizer_config.json"
cp -r "$T/model" "$T/llama" && cp "$T/llama_config.json" "$T/llama/tokenizer_config.json"
start_server "$BIN" "$T/qwen.log" --model "$T/qwen" --parallel 1
check "a model with Qwen 2.5's template: the same prompt, its template fed the tools" \
  '[ -n "$PORT" ] && [ "$(apply "http://127.0.0.1:$PORT" qwen.json)" = 200 ] && same_prompt qwen.json'
start_server "$BIN" "$T/llama.log" --model "$T/llama" --parallel 1
check "a template with another tool-call syntax (Llama 3.1): 400 naming tools" \
  '[ -n "$PORT" ] && [ "$(apply "http://127.0.0.1:$PORT" llama.json)" = 400 ] &&
   grep -q "\"param\":\"tools\"" "$T/llama.json" && grep -q "syntax lmkit does not read" "$T/llama.json"'

# ---- lmkit chat --calc: the call and its result on a line of their own (stderr), the answer on stdout
echo go | "$BIN" chat --model "$T/model" --calc --temperature 0 --max-tokens 16 --threads 1 > "$T/chat.out" 2> "$T/chat.err"
check "lmkit chat --calc: '[calc] 77*33 → 2541' shown as it happens" \
  'grep -qF "[calc] 77*33 → 2541" "$T/chat.err" && grep -qF "<|calc|>77*33<|/calc|> → 2541" "$T/chat.out"'
serve_done test_serve_tools
