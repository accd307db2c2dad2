#!/usr/bin/env bash
# The prompt side of RL (docs/rl.md): chain-of-thought prompting in generate and chat, and
# `lmkit toolformer` on conversations (tests/reference/test_toolformer.py checks its losses and
# filtering rule on plain text against PyTorch).
#   - generate --cot: a raw prompt gets " Let's think step by step." (echoed); a --user message
#     gets "\n\n" + the instruction (the prompt grows by exactly those tokens, --stats), and
#     --cot-text replaces it; chat --cot: each user turn holds the instruction (/save);
#   - toolformer on {"prompt", "completion"} and {"messages"} records: the calls go in the
#     (last) assistant turn only, the prompt is untouched, and the scores depend on the prompt
#     (the rendered prompt is the context);
#   - errors: --cot without a user message.
source "$(dirname "$0")/lib.sh"

for i in $(seq 40); do printf 'so 12 + 7 = 19 apples\nthe answer is 3\n'; done > "$T/corpus.txt"
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 280 --out "$T/tok" > /dev/null 2>&1
"$BIN" train --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 1 --heads 2 --dim 32 --context 96 --steps 2 \
  --threads 1 --quiet --out "$T/m" > /dev/null 2>&1
check "a tiny chat-capable model" "[ -f $T/m/model.safetensors ]"
G=(--model "$T/m" --max-tokens 2 --temperature 0 --threads 1)

# ---- --cot
out=$("$BIN" generate "${G[@]}" --prompt "Q: what is 2+2? A:" --cot 2> /dev/null)
raw_ok() { [[ "$out" == "Q: what is 2+2? A: Let's think step by step."* ]]; }
check "generate --prompt --cot: the instruction follows the raw prompt" raw_ok
ptoks() { "$BIN" generate "${G[@]}" --user "what is 2+2?" --stats "$@" 2>&1 > /dev/null | sed -n 's/^prompt \([0-9]*\) tokens.*/\1/p'; }
n0=$(ptoks); n1=$(ptoks --cot); n2=$(ptoks --cot-text "Show your work.")
k1=$(printf '\n\nLet'"'"'s think step by step.' | "$BIN" tokenizer encode --tokenizer "$T/m" --ids | wc -w)
k2=$(printf '\n\nShow your work.' | "$BIN" tokenizer encode --tokenizer "$T/m" --ids | wc -w)
check "generate --user --cot: the prompt grows by the instruction's tokens ($n0 -> $n1, +$k1)" "[ -n '$n0' ] && [ \$(( ${n1:-0} - ${n0:-0} )) -ge $k1 ] && [ \$(( ${n1:-0} - ${n0:-0} )) -le \$(( $k1 + 1 )) ]"
check "generate --cot-text: another instruction ($n0 -> $n2, +$k2)" "[ -n '$n2' ] && [ \$(( ${n2:-0} - ${n0:-0} )) -ge $k2 ] && [ \$(( ${n2:-0} - ${n0:-0} )) -le \$(( $k2 + 1 )) ]"
printf 'hello\nagain\n/save %s\n' "$T/conv.json" | "$BIN" chat "${G[@]}" --cot > /dev/null 2>&1
conv_ok() { python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
u = [m["content"] for m in c if m["role"] == "user"]
sys.exit(u != ["hello\n\nLet'"'"'s think step by step.", "again\n\nLet'"'"'s think step by step."])' "$T/conv.json"; }
check "chat --cot: every user turn holds the instruction" conv_ok
printf 'hello\n/save %s\n' "$T/conv0.json" | "$BIN" chat "${G[@]}" > /dev/null 2>&1
check "chat without --cot: the user turn as typed" "grep -q '\"hello\"' $T/conv0.json"
echo '[{"role": "system", "content": "be brief"}]' > "$T/sys.json"
err "generate --cot: needs a user message" "--cot needs a user message" "$BIN" generate "${G[@]}" --messages "$T/sys.json" --cot

# ---- toolformer on conversations
python3 - "$T" <<'PY'
import json, sys
d = sys.argv[1]
with open(f"{d}/chat.jsonl", "w") as f:
    f.write(json.dumps({"prompt": "what is 12 + 7?", "completion": "12 + 7 = 19 apples", "k": 1}) + "\n")
    f.write(json.dumps({"prompt": "what is 3 * 4?", "completion": "3 * 4 = 12 here"}) + "\n")
    f.write(json.dumps({"messages": [{"role": "user", "content": "5 + 5 = 10?"}, {"role": "assistant", "content": "2 + 2 = 4 first"},
                                     {"role": "user", "content": "and 1 + 1 = 2?"}, {"role": "assistant", "content": "1 + 1 = 2 sure"}]}) + "\n")
    f.write(json.dumps({"text": "12 + 7 = 19 apples"}) + "\n")
PY
"$BIN" toolformer --model "$T/m" --data "$T/chat.jsonl" --out "$T/aug.jsonl" --report "$T/rep.jsonl" --threshold -1e9 --threads 1 \
  > /dev/null 2> "$T/tf.err"; rc=$?
aug_ok() { python3 -c '
import json, sys
A = "<|calc|>"; R = "<|/calc|> \u2192 "
a = [json.loads(l) for l in open(sys.argv[1] + "/aug.jsonl")]
ok = a[0] == {"prompt": "what is 12 + 7?", "completion": "12 + 7 = " + A + "12 + 7" + R + "19 19 apples", "k": 1}
ok &= a[1]["prompt"] == "what is 3 * 4?" and a[1]["completion"] == "3 * 4 = " + A + "3 * 4" + R + "12 12 here"
m = a[2]["messages"]
ok &= [x["content"] for x in m] == ["5 + 5 = 10?", "2 + 2 = 4 first", "and 1 + 1 = 2?", "1 + 1 = " + A + "1 + 1" + R + "2 2 sure"]
sys.exit(not ok)' "$T"; }
check "toolformer: calls in the completion / last assistant turn only, prompts and other members kept (rc $rc)" "[ $rc = 0 ] && aug_ok"
# the same completion after a different context (the rendered prompt, or none for text) scores differently
ctx_ok() { python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1] + "/rep.jsonl")]
ok = len(r) == 4 and r[0]["expression"] == r[3]["expression"] == "12 + 7" and r[0]["at"] == r[3]["at"]
sys.exit(not (ok and abs(r[0]["loss_call"] - r[3]["loss_call"]) > 1e-6))' "$T"; }
check "toolformer: a conversation is scored after its rendered prompt" ctx_ok

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
