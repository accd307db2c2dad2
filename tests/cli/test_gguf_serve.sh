#!/usr/bin/env bash
# serve, chat and ask on a quantized GGUF file (docs/gguf.md), end to end:
#   - a tiny GPT-2 with the ChatML tokens and its own chat template (tokenizer_config.json) is
#     quantized to q8_0 by `lmkit quantize`; the file carries the template (tokenizer.chat_template);
#   - `lmkit serve --model FILE.gguf`: POST /apply-template renders the file's template; one greedy
#     chat request and the same request streamed through the official `openai` npm SDK
#     (tests/cli/serve_gguf.mjs) answer what `lmkit generate --model FILE.gguf --user -` answers;
#     /v1/embeddings, which needs the f32 weights the file was loaded without, is an error that says so;
#   - `lmkit chat --model FILE.gguf` through a pipe saves the same assistant answer.
# That generation keeps no f32 copy of the blocks (and gives the same logits): tests/unit/test_gguf_qonly.c.
source "$(dirname "$0")/serve_lib.sh"
serve_model "$T"
python3 - "$T/model" <<'PY'
import json, sys
tpl = ("{% for m in messages %}<|im_start|>{{ m.role }} (from the gguf)\n{{ m.content }}<|im_end|>\n{% endfor %}"
       "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
json.dump({"chat_template": tpl, "eos_token": "<|im_end|>"}, open(sys.argv[1] + "/tokenizer_config.json", "w"))
PY
"$BIN" quantize --type q8_0 "$T/model" "$T/m.gguf" --quiet
check "quantize the chat model to q8_0" '[ -s "$T/m.gguf" ]'
rm -rf "$T/model"   # only the file from here on

# generate's greedy answers (one JSON line per stdin line)
printf 'hello, how are you?\n' | "$BIN" generate --model "$T/m.gguf" --user - --temperature 0 --max-tokens 12 --threads 1 \
  > "$T/gen.jsonl" 2> "$T/gen.err"
check "generate --user on the GGUF file" '[ -s "$T/gen.jsonl" ]'

start_server "$BIN" "$T/serve.log" --model "$T/m.gguf" --parallel 2
check "lmkit serve --model FILE.gguf starts ($PORT)" '[ -n "$PORT" ]'
URL="http://127.0.0.1:$PORT"
curl -s -d '{"messages":[{"role":"user","content":"hi"}]}' "$URL/apply-template" > "$T/tpl.json"
check "serve renders the file's chat template ($(head -c 80 "$T/tpl.json"))" 'grep -qF "user (from the gguf)" "$T/tpl.json"'
node "$SRC/tests/cli/serve_gguf.mjs" "$URL" "hello, how are you?" 12 > "$T/sdk.out" 2> "$T/sdk.err"
rc=$?
check "the openai SDK: a chat request and a streamed one (rc $rc $(head -c 200 "$T/sdk.err"))" '[ $rc -eq 0 ] && [ "$(wc -l < "$T/sdk.out")" -eq 2 ]'
python3 - "$T/gen.jsonl" "$T/sdk.out" > "$T/cmp.out" <<'PY'
import json, sys
want = json.loads(open(sys.argv[1]).readline())["response"]
got = [json.loads(l) for l in open(sys.argv[2])]
print(repr(want), repr(got))
sys.exit(0 if want and got == [want, want] else 1)
PY
rc=$?
check "serve's answer and streamed answer == generate's greedy answer ($(cat "$T/cmp.out"))" '[ $rc -eq 0 ]'
code=$(curl -s -o "$T/emb.json" -w '%{http_code}' -d '{"input":"hello"}' "$URL/v1/embeddings")
check "/v1/embeddings on a file loaded for generation: an error naming why ($code $(head -c 160 "$T/emb.json"))" \
  '[ "${code:0:1}" != 2 ] && grep -q "loaded for generation only" "$T/emb.json"'
kill "$SPID"; wait "$SPID" 2>/dev/null

# chat through a pipe: the same greedy answer, saved by /save
printf 'hello, how are you?\n/save %s\n' "$T/conv.json" | "$BIN" chat --model "$T/m.gguf" --temperature 0 --max-tokens 12 \
  --threads 1 > "$T/chat.out" 2> "$T/chat.err"
rc=$?
python3 - "$T/gen.jsonl" "$T/conv.json" <<'PY'
import json, sys
want = json.loads(open(sys.argv[1]).readline())["response"]
conv = json.load(open(sys.argv[2]))
sys.exit(0 if conv[-1] == {"role": "assistant", "content": want} else 1)
PY
check "chat --model FILE.gguf: the same greedy answer (rc $rc $(head -c 200 "$T/chat.err"))" '[ $? -eq 0 ] && [ $rc -eq 0 ]'
serve_done "test_gguf_serve"
