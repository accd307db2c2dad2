#!/usr/bin/env bash
# build_request.sh — builds the libFuzzer target for the server's request bodies (fuzz_request)
# with clang's -fsanitize=fuzzer,address,undefined, and writes a seed corpus (a valid body of each
# route) and a dictionary of the fields beside it. The parser is a pure function of the bytes, so
# only request.c, tools.c (rendering with ChatML: the template engine and chat_generate.c, whose two
# tokenizer calls the target stubs) and the error helpers are compiled in.
#
#   fuzz/build_request.sh                 # -> build-fuzz/
#   build-fuzz/fuzz_request -dict=build-fuzz/request.dict build-fuzz/corpus_request -max_total_time=60
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-fuzz}
CC=${CC:-clang}
mkdir -p "$OUT/corpus_request"
# shellcheck disable=SC2046
$CC -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -D_GNU_SOURCE \
  -Iinclude -Isrc $(pkg-config --cflags libcjson libutf8proc) fuzz/fuzz_request.c \
  src/serve/request.c src/serve/tools.c src/infer/template.c src/infer/chat_generate.c src/base/error.c src/base/mem.c \
  src/base/io.c $(pkg-config --libs libcjson libutf8proc) -lm -o "$OUT/fuzz_request"
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
seeds = [
  (0, {"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
       "max_tokens": 8, "temperature": 0.5, "top_p": 0.9, "stop": ["\n", "END"], "seed": 3, "stream": True,
       "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 2, "n": 1}),
  (1, {"model": "m", "prompt": "Once upon", "max_tokens": 4, "logprobs": 2, "stop": "x", "echo": False}),
  (2, {"model": "m", "input": ["a", "b"], "encoding_format": "base64"}),
  (3, {"content": "hello", "add_special": False, "with_pieces": True}),
  (4, {"tokens": [1, 2, 3]}),
  (0, {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "w?"},
                    {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
                     "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
                    {"role": "tool", "tool_call_id": "c", "content": "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>"}],
       "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}],
       "tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": False}),
]
for i, (k, body) in enumerate(seeds):
    with open(os.path.join(out, "corpus_request", "seed%d" % i), "wb") as f:
        f.write(bytes([k]) + json.dumps(body).encode())
keys = set()
for _, b in seeds:
    keys.update(b)
keys.update(["tools", "tool_choice", "retrieval", "response_format", "frequency_penalty", "presence_penalty", "best_of",
             "user", "max_completion_tokens", "top_k", "parallel_tool_calls", "role", "content", "null", "true", "false",
             "tool_calls", "tool_call_id", "function", "name", "arguments", "<tool_call>", "</tool_call>", "required"])
with open(os.path.join(out, "request.dict"), "w") as f:
    f.write("".join('"\\"%s\\""\n' % k for k in sorted(keys)))
PY
echo "built $OUT/fuzz_request; run: $OUT/fuzz_request -dict=$OUT/request.dict $OUT/corpus_request -max_total_time=60"
