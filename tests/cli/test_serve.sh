#!/usr/bin/env bash
# lmkit serve end to end, on 127.0.0.1 and a free port, with a tiny model the test trains (1 s):
#   - the official `openai` npm SDK (tests/cli/serve_openai.mjs): models, chat, streaming chat with
#     include_usage (== the non-streamed greedy answer), seeded sampling, logprobs, stop strings,
#     completions (streamed and not), embeddings (base64 and float), typed 400 and 401 errors;
#   - curl: the raw SSE framing (data: lines, blank-line separators, [DONE] last, text/event-stream),
#     /health, /metrics, /tokenize + /detokenize round trip, GET / (the page), 401 without the key,
#     413 for an oversized body, 400 naming the field for malformed JSON and wrong types, 400 for
#     prompt + max_tokens beyond the context, 404 and 405;
#   - a full queue answers 503; SIGTERM lets a stream in flight finish, then the server exits 0;
#   - flags: --help, a bad --pool, a missing model, a busy port.
set -u
source "$(dirname "$0")/serve_lib.sh"
serve_model "$T"
check "a tiny model to serve" '[ -f "$T/model/model.safetensors" ]'

# a retrieval index over two documents (lmkit index, BM25)
serve_index "$T"
check "a retrieval index to serve" '[ -f "$T/docs.idx" ]'

KEY=test-key-123
start_server "$BIN" "$T/serve.log" --model "$T/model" --parallel 4 --api-key "$KEY" --index "docs=$T/docs.idx"
check "lmkit serve starts on 127.0.0.1 and a free port ($PORT)" '[ -n "$PORT" ] && grep -q "listening on http://127.0.0.1:" "$T/serve.log"'
check "one warning at start-up: no chat template, ChatML" '[ "$(grep -c "warning: .*no chat template.*ChatML" "$T/serve.log")" -eq 1 ]'
URL="http://127.0.0.1:$PORT"; PORT1=$PORT
AUTH=(-H "Authorization: Bearer $KEY")

# ---- the official SDK
node "$SRC/tests/cli/serve_openai.mjs" "$URL" "$KEY" > "$T/sdk.log" 2>&1
rc=$?
sed 's/^/     sdk: /' "$T/sdk.log"
check "the openai SDK: every check passes (rc $rc)" '[ $rc -eq 0 ] && ! grep -q "^FAIL" "$T/sdk.log" && [ "$(grep -c "^ok" "$T/sdk.log")" -ge 12 ]'

# ---- raw SSE framing
BODY='{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":8,"temperature":0,"stream":true}'
curl -sN -D "$T/sse.h" "${AUTH[@]}" -H 'Content-Type: application/json' -d "$BODY" "$URL/v1/chat/completions" > "$T/sse.txt"
check "SSE: Content-Type text/event-stream" 'grep -qi "^content-type: text/event-stream" "$T/sse.h"'
python3 - "$T/sse.txt" > "$T/sse.check" <<'PY'
import json, sys
raw = open(sys.argv[1], "rb").read().decode()
assert raw.endswith("data: [DONE]\n\n"), "ends with data: [DONE] and a blank line"
events = raw.split("\n\n")[:-1]
assert all(e.startswith("data: ") and "\n" not in e for e in events), "every event is one data: line"
chunks = [json.loads(e[6:]) for e in events[:-1]]
assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
print(len(events))
PY
check "SSE: data: {chunk} events separated by blank lines, role first, finish_reason last, data: [DONE] ($(cat "$T/sse.check") events)" \
  '[ -s "$T/sse.check" ]'

# ---- the other routes
code() { curl -s -o "$T/out.json" -w '%{http_code}' "$@"; }
check "/health: 200 without a key" '[ "$(code "$URL/health")" = 200 ]'
check "GET /: the chat page" '[ "$(code "$URL/")" = 200 ] && grep -q "/v1/chat/completions" "$T/out.json"'
check "/metrics: Prometheus text" '[ "$(code "${AUTH[@]}" "$URL/metrics")" = 200 ] && grep -q "^lmkit_generated_tokens_total [1-9]" "$T/out.json" &&
  grep -q "^lmkit_slots_busy 0" "$T/out.json" && grep -q "^lmkit_queue_length 0" "$T/out.json" && grep -q "^lmkit_decode_tokens_per_second" "$T/out.json"'
code "${AUTH[@]}" -d '{"content":"hello world, how are you?"}' "$URL/tokenize" > /dev/null
ids=$(python3 -c "import json,sys; print(json.dumps({'tokens': json.load(open(sys.argv[1]))['tokens']}))" "$T/out.json")
check "/tokenize then /detokenize gives the text back" '[ "$(code "${AUTH[@]}" -d "$ids" "$URL/detokenize")" = 200 ] &&
  grep -qF "\"content\":\"hello world, how are you?\"" "$T/out.json"'

# ---- retrieval: the last user message answered from the index's passages, listed in "sources"
RQ='{"messages":[{"role":"user","content":"What is the capital of Zorbania?"}],"max_tokens":4,"temperature":0,"retrieval":{"index":"docs","k":2}}'
check "retrieval: the reply lists the passages it was given, the one with the fact first" \
  '[ "$(code "${AUTH[@]}" -d "$RQ" "$URL/v1/chat/completions")" = 200 ] && python3 -c "
import json, sys
j = json.load(open(sys.argv[1]))
s = j[\"sources\"]
assert s[0][\"n\"] == 1 and s[0][\"file\"].endswith(\"zorbania.txt\") and \"Quxville\" in s[0][\"text\"], s
assert j[\"choices\"][0][\"message\"][\"role\"] == \"assistant\"
" "$T/out.json"'
RQS='{"messages":[{"role":"user","content":"What is the capital of Zorbania?"}],"max_tokens":4,"stream":true,"retrieval":{"index":"docs"}}'
curl -sN "${AUTH[@]}" -d "$RQS" "$URL/v1/chat/completions" | head -1 > "$T/rsse.txt"
check "retrieval, streamed: the first chunk carries the sources" 'grep -q "\"sources\":\[{\"n\":1" "$T/rsse.txt"'
check "retrieval: an unknown index is a 400 naming the loaded ones" \
  '[ "$(code "${AUTH[@]}" -d "${RQ/\"docs\"/\"nope\"}" "$URL/v1/chat/completions")" = 400 ] && grep -q "no index named .nope. (this server has: docs)" "$T/out.json"'

# ---- a greedy completion is what lmkit generate writes (server: batched decoder; generate: a session)
same_as_generate() {   # same_as_generate MODEL URL AUTH...: 16 greedy tokens of one prompt, both ways
  local model=$1 url=$2; shift 2
  "$BIN" generate --model "$model" --prompt "the quick" --max-tokens 16 --temperature 0 --no-stop --threads 1 \
    > "$T/gen.txt" 2>/dev/null
  [ "$(code "$@" -d '{"prompt":"the quick","max_tokens":16,"temperature":0}' "$url/v1/completions")" = 200 ] &&
    python3 -c "
import json, sys
got = 'the quick' + json.load(open(sys.argv[1]))['choices'][0]['text']
want = open(sys.argv[2]).read()[:-1]   # generate ends with a newline
assert got == want, (got, want)" "$T/out.json" "$T/gen.txt"
}
check "a greedy completion equals lmkit generate's text (GPT-2)" 'same_as_generate "$T/model" "$URL" "${AUTH[@]}"'

# ---- embeddings equal lmkit embed's (mean pooling on the decoder)
same_embedding() {   # same_embedding SERVER_JSON EMBED_JSONL: every vector within 1e-5
  python3 - "$1" "$2" <<'PY'
import json, sys
a = [d["embedding"] for d in json.load(open(sys.argv[1]))["data"]]
b = [json.loads(l)["embedding"] for l in open(sys.argv[2])]
assert len(a) == len(b) == 2 and all(len(x) == len(y) for x, y in zip(a, b)), (len(a), len(b))
assert all(abs(u - v) <= 1e-5 * (1 + abs(v)) for x, y in zip(a, b) for u, v in zip(x, y))
PY
}
EMB='{"input":["hello world","the lazy dog"],"encoding_format":"float"}'
printf 'hello world\nthe lazy dog\n' | "$BIN" embed --model "$T/model" --pool mean > "$T/emb_ref.jsonl" 2>/dev/null
check "embeddings (decoder, mean pooling) equal lmkit embed --pool mean" \
  '[ "$(code "${AUTH[@]}" -d "$EMB" "$URL/v1/embeddings")" = 200 ] && same_embedding "$T/out.json" "$T/emb_ref.jsonl"'

# ---- limits and errors
check "401 without the API key" '[ "$(code -d "$BODY" "$URL/v1/chat/completions")" = 401 ] && grep -q "API key" "$T/out.json"'
head -c 2000000 /dev/zero | tr '\0' 'a' > "$T/big.txt"
check "413 for a body over the limit (2 MB)" '[ "$(code "${AUTH[@]}" --data-binary @"$T/big.txt" "$URL/v1/completions")" = 413 ]'
check "400 for malformed JSON" '[ "$(code "${AUTH[@]}" -d "{\"prompt\": \"a\"" "$URL/v1/completions")" = 400 ] && grep -q "not valid JSON" "$T/out.json"'
check "400 naming a field of the wrong type" '[ "$(code "${AUTH[@]}" -d "{\"prompt\": \"a\", \"max_tokens\": \"9\"}" "$URL/v1/completions")" = 400 ] &&
  grep -q "\"param\":\"max_tokens\"" "$T/out.json" && grep -q "must be an integer" "$T/out.json"'
check "400 for an unknown field, named" '[ "$(code "${AUTH[@]}" -d "{\"prompt\": \"a\", \"best_off\": 2}" "$URL/v1/completions")" = 400 ] &&
  grep -q "unknown field .best_off" "$T/out.json"'
check "400 when prompt + max_tokens exceed the context" '[ "$(code "${AUTH[@]}" -d "{\"prompt\": \"a b\", \"max_tokens\": 600}" "$URL/v1/completions")" = 400 ] &&
  grep -q "exceed the context of 512" "$T/out.json"'
check "404 for an unknown route, 405 for a wrong method" '[ "$(code "${AUTH[@]}" "$URL/v2/x")" = 404 ] && [ "$(code "${AUTH[@]}" "$URL/v1/completions")" = 405 ]'
check "the server is still up after the errors" '[ "$(code "$URL/health")" = 200 ]'

# ---- a full queue: 1 slot, 1 waiting; a third concurrent request gets 503. The tiny model decodes
# 100 tokens in milliseconds, so the requests ask for most of the context and there are 8 of them:
# enough that some arrive while the slot and the queue are both taken.
start_server "$BIN" "$T/serve_q.log" --model "$T/model" --parallel 1 --queue 1
LONG='{"prompt":"the","max_tokens":480,"temperature":0,"stream":true}'
QP=()
for k in 1 2 3 4 5 6 7 8; do
  curl -sN -o "$T/q$k.txt" -w '%{http_code}' -d "$LONG" "http://127.0.0.1:$PORT/v1/completions" > "$T/q$k.code" & QP+=($!)
done
wait "${QP[@]}"
codes=$(cat "$T"/q?.code | sort | tr '\n' ' ')
check "with 1 slot and a queue of 1, concurrent requests beyond them get 503 ($codes)" \
  'echo "$codes" | grep -q 503 && echo "$codes" | grep -q 200'
check "the requests that were admitted finished completely" \
  'for k in 1 2 3 4 5 6 7 8; do [ "$(cat $T/q$k.code)" != 200 ] || tail -c 14 $T/q$k.txt | grep -q "data: \[DONE\]" || exit 1; done'

# ---- SIGTERM drains: a stream in flight finishes, then the server exits 0
curl -sN -d "$LONG" "http://127.0.0.1:$PORT/v1/completions" > "$T/drain.txt" &
CPID=$!
sleep 0.3
kill -TERM "$SPID"
wait "$CPID"; wait "$SPID"; src=$?
check "SIGTERM: the stream in flight ends with [DONE], the server exits 0 (rc $src)" \
  '[ $src -eq 0 ] && tail -c 14 "$T/drain.txt" | grep -q "data: \[DONE\]" && grep -q "finishing the requests in flight" "$T/serve_q.log"'

# ---- a Llama model (RoPE, grouped-query attention, SwiGLU) batches too
"$BIN" train --arch llama --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 2 --heads 4 --kv-heads 2 --dim 64 \
  --context 256 --batch 8 --steps 20 --lr 3e-3 --threads 1 --quiet --out "$T/llama" > "$T/llama.log" 2>&1
start_server "$BIN" "$T/serve_l.log" --model "$T/llama" --parallel 3
check "Llama: a greedy completion equals lmkit generate's text" 'same_as_generate "$T/llama" "http://127.0.0.1:$PORT"'
for k in 1 2 3; do
  curl -s -o "$T/lc$k.json" -d '{"messages":[{"role":"user","content":"hello"}],"max_tokens":24,"temperature":0.7,"seed":'$k'}' \
    "http://127.0.0.1:$PORT/v1/chat/completions" & LP[$k]=$!
done
wait "${LP[@]}"
check "Llama: three concurrent chats complete" 'for k in 1 2 3; do grep -q "\"finish_reason\":\"\(stop\|length\)\"" "$T/lc$k.json" || exit 1; done'
kill -TERM "$SPID"; wait "$SPID"

# ---- a BERT model serves embeddings (CLS pooling here) and refuses to generate
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --special "[PAD]" --special "[CLS]" --special "[SEP]" \
  --special "[MASK]" --special "[UNK]" --out "$T/btok" > /dev/null 2>&1
"$BIN" train --arch bert --objective mlm --tokenizer "$T/btok" --data "$T/corpus.txt" --layers 2 --heads 2 --dim 32 \
  --context 64 --batch 8 --steps 5 --threads 1 --quiet --out "$T/bert" > "$T/bert.log" 2>&1
start_server "$BIN" "$T/serve_b.log" --model "$T/bert" --pool cls
URL="http://127.0.0.1:$PORT"
printf 'hello world\nthe lazy dog\n' | "$BIN" embed --model "$T/bert" --pool cls > "$T/bemb_ref.jsonl" 2>/dev/null
check "BERT: embeddings (CLS pooling) equal lmkit embed --pool cls" \
  '[ "$(code -d "$EMB" "$URL/v1/embeddings")" = 200 ] && same_embedding "$T/out.json" "$T/bemb_ref.jsonl"'
check "BERT: chat is a 400 saying the model does not generate" \
  '[ "$(code -d "$BODY" "$URL/v1/chat/completions")" = 400 ] && grep -q "not a text generator" "$T/out.json"'
kill -TERM "$SPID"; wait "$SPID"

# ---- flags
check "serve --help" '"$BIN" serve --help | grep -q -- "--parallel"'
"$BIN" serve --model "$T/model" --pool max > "$T/e1" 2>&1; r1=$?
check "a bad --pool is a clear error" '[ $r1 -ne 0 ] && grep -q "unknown --pool .max." "$T/e1"'
"$BIN" serve --model "$T/none" --port 0 > "$T/e2" 2>&1; r2=$?
check "a missing model directory is a clear error" '[ $r2 -ne 0 ] && grep -q "lmkit: error: .*none" "$T/e2"'
timeout 20 "$BIN" serve --model "$T/model" --port "$PORT1" > "$T/e3" 2>&1; r3=$?   # the first server holds it
check "a busy port is a clear error" '[ $r3 -ne 0 ] && grep -q "cannot listen on 127.0.0.1" "$T/e3"'

serve_done test_serve
