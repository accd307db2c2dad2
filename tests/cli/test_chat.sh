#!/usr/bin/env bash
# `lmkit chat` driven through a pipe (stdin not a terminal: one user turn or command per line):
#   - /system, /reset and /save produce the right JSON message lists: the system message first
#     (also when set after a turn, and replaced by a second /system), /reset keeps only it,
#     '/system' alone removes it;
#   - every answer streamed to stdout is the assistant message saved, and is the model's greedy
#     answer (seeded sampling) to the whole conversation so far (`generate --messages` on the saved list up to that
#     turn), so the history reaches the template turn after turn;
#   - at a terminal (a pty from `script`): libedit's "> " prompt, the --history file, the same answer;
#   - --system starts with a system message; a model without a chat template or ChatML tokens,
#     unknown commands, /save without a file, a missing --model: one clear error line each.
# The tiny model is trained for a few steps only: its answers are not judged, only the machinery.
source "$(dirname "$0")/lib.sh"
err() {
  local name="$1" want="$2"; shift 2
  local out; out=$("$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -ne 0 ] && [ "$(echo "$out" | grep -c '^lmkit: error: ')" = 1 ] && echo "$out" | grep -qF -- "$want"; then ok "error: $name"; else bad "error: $name (rc=$rc: $out)"; fi
}

python3 - "$T/corpus.txt" <<'PY'
import random, sys
r = random.Random(4)
w = "hello there how are you today the weather is fine thanks for asking good bye see you".split()
open(sys.argv[1], "w").write("\n".join(" ".join(r.choice(w) for _ in range(10)) for _ in range(500)) + "\n")
PY
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --out "$T/tok" > /dev/null 2>&1
"$BIN" train --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 1 --heads 2 --dim 32 --context 256 --batch 4 \
  --steps 60 --seed 1 --threads 2 --quiet --out "$T/m" > /dev/null 2>&1
G="--temperature 1 --top-k 5 --seed 7 --max-tokens 10 --threads 2"   # sampled: varied answers, the same each run

printf 'hello\n/system Be brief.\nhow are you\n/save %s\n/system Be kind.\n/save %s\n/reset\n/save %s\n\nthanks\n/save %s\n/system\n/save %s\n' \
  "$T/c1.json" "$T/c2.json" "$T/c3.json" "$T/c4.json" "$T/c5.json" | "$BIN" chat --model "$T/m" $G > "$T/chat.out" 2> "$T/chat.err"
rc=$?
check "chat through a pipe: exit 0" "[ $rc = 0 ]"
python3 - "$T" <<'PY' > "$T/json_check.out"
import json, sys
d = sys.argv[1]
c = [json.load(open(f"{d}/c{i}.json")) for i in range(1, 6)]
roles = lambda m: [x["role"] for x in m]
problems = []
if roles(c[0]) != ["system", "user", "assistant", "user", "assistant"] or c[0][0]["content"] != "Be brief." \
   or c[0][1]["content"] != "hello" or c[0][3]["content"] != "how are you":
    problems.append("/save after /system: %r" % c[0])
if c[1][0]["content"] != "Be kind." or c[1][1:] != c[0][1:]:
    problems.append("a second /system replaces the first")
if c[2] != [{"role": "system", "content": "Be kind."}]:
    problems.append("/reset keeps only the system message: %r" % c[2])
if roles(c[3]) != ["system", "user", "assistant"] or c[3][1]["content"] != "thanks":
    problems.append("a turn after /reset")
if c[4] != c[3][1:]:
    problems.append("'/system' alone removes it")
answers = [c[0][2]["content"], c[0][4]["content"], c[3][2]["content"]]
out = open(f"{d}/chat.out").read()
if out != "".join(a + "\n" for a in answers):
    problems.append("stdout is not the saved answers: %r vs %r" % (out, answers))
# the conversations up to each answer, for generate --messages
json.dump([c[0][1]], open(f"{d}/upto1.json", "w"))
json.dump(c[0][:4], open(f"{d}/upto2.json", "w"))
json.dump(c[3][:2], open(f"{d}/upto3.json", "w"))
for i, a in enumerate(answers):
    open(f"{d}/answer{i + 1}.txt", "w").write(a + "\n")
print("ok" if not problems else "; ".join(problems))
PY
check "/system, /reset, /save: the JSON message lists ($(cat $T/json_check.out))" "grep -qx ok $T/json_check.out"
check "commands report on stderr" "grep -q '(system message set)' $T/chat.err && grep -q '(conversation cleared)' $T/chat.err && grep -q '(saved 5 messages to ' $T/chat.err && grep -q '(system message removed)' $T/chat.err"
same=1
for i in 1 2 3; do
  "$BIN" generate --model "$T/m" --messages "$T/upto$i.json" $G > "$T/gen$i.out" 2> /dev/null
  cmp -s "$T/gen$i.out" "$T/answer$i.txt" || same=0
done
check "each answer is the seeded answer to the conversation so far (generate --messages)" "[ $same = 1 ]"
# the first turn had no system message; --system gives one from the start
printf 'hello\n/save %s\n' "$T/s.json" | "$BIN" chat --model "$T/m" --system "Be brief." $G > /dev/null 2>&1
check "--system starts the conversation with it" "python3 -c \"import json,sys; m=json.load(open('$T/s.json')); sys.exit(not (m[0]=={'role':'system','content':'Be brief.'} and m[1]=={'role':'user','content':'hello'}))\""

# at a terminal (a pty from util-linux's `script`): libedit reads the lines, shows the "> " prompt
# and keeps the history file; the conversation is the same
(printf 'hello\n/save %s\n/quit\n' "$T/tty.json"; sleep 2) | \
  script -qec "'$BIN' chat --model '$T/m' $G --history '$T/hist.txt'" /dev/null > "$T/tty.out" 2>&1
check "at a terminal: prompt, history file, the same answer" \
  "grep -q '^> hello' $T/tty.out && grep -qx 'hello' $T/hist.txt && grep -q '^/save' $T/hist.txt && python3 -c \"import json,sys; a=json.load(open('$T/tty.json')); b=json.load(open('$T/upto1.json')); sys.exit(not (a[:1]==b and a[1]['content']+'\\n'==open('$T/answer1.txt').read()))\""

out=$(printf '/bogus\nhello\n/save\n' | "$BIN" chat --model "$T/m" $G 2>&1 >/dev/null); rc=$?
check "unknown command and /save without a file: errors, the chat goes on, exit 1" \
  "[ $rc = 1 ] && echo \"\$out\" | grep -q '^lmkit: error: unknown command /bogus' && echo \"\$out\" | grep -q '^lmkit: error: /save needs a file name'"
err "no --model" "--model DIR is required" "$BIN" chat
"$BIN" train --tokenizer byte --data "$T/corpus.txt" --layers 1 --heads 2 --dim 32 --context 32 --batch 2 --steps 1 \
  --threads 2 --quiet --out "$T/plain" > /dev/null 2>&1
err "a model without a chat template or ChatML tokens" "lacks the ChatML tokens" "$BIN" chat --model "$T/plain"
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --special "[PAD]" --special "[CLS]" --special "[SEP]" \
  --special "[MASK]" --special "[UNK]" --out "$T/btok" > /dev/null 2>&1
"$BIN" train --arch bert --objective mlm --tokenizer "$T/btok" --data "$T/corpus.txt" --layers 1 --heads 2 --dim 32 \
  --context 32 --batch 2 --steps 1 --threads 2 --quiet --out "$T/bert" > /dev/null 2>&1
err "chat with an encoder" "chat needs a decoder with an LM head" "$BIN" chat --model "$T/bert"
err "/save into a missing directory" "nope/x.json" bash -c "printf '/save $T/nope/x.json\n' | '$BIN' chat --model '$T/m' $G"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
