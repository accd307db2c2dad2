#!/usr/bin/env bash
# End-to-end instruction tuning: a base model is not an assistant, `lmkit sft` makes one.
#   - the task: "reverse: fca" -> "acf" (three letters of a-h; 60 of the 512 strings held out of
#     all training text); a byte-level tokenizer with the ChatML special tokens; a tiny GPT-2
#     pre-trained with `lmkit train` on plain text of the task ("reverse: fca", "acf" on the next line);
#   - `lmkit generate --user -` (greedy, one JSON line per prompt, one model load) on the held-out
#     prompts in the chat template: the base answers none exactly and never ends its turn;
#   - `lmkit sft` on 2000 conversations: exact-answer accuracy >= 0.9 on the held-out prompts, and
#     the answers end with <|im_end|> (stop rate >= 0.9), which generate does not print;
#     generate --user / --system / --messages (a message list, a chat request body on stdin);
#   - resume: a run resumed from its middle checkpoint continues the loss curve bit for bit and
#     ends with the same weights;
#   - --packing runs, learns and answers; NEFTune changes training and resumes bit-exactly;
#   - bad input: records with no assistant turn, an empty answer or longer than --max-length are
#     counted, reported and skipped; a malformed line, or a record in no known format, is one
#     error naming file:line.
# Threads: 1 (tiny models: more OpenMP threads only add synchronisation on 2 shared cores). The
# settings (byte-level letters, 600 steps at 3e-3) learn the task on every seed tried (16 of 16
# runs, packed or not); with merged tokens or digits the same model often stalls on a plateau.
source "$(dirname "$0")/lib.sh"
one_error() { [ "$3" -ne 0 ] && [ "$(wc -l < "$1")" -eq 1 ] && grep -q '^lmkit: error: ' "$1" && grep -qF -- "$2" "$1"; }

python3 - "$T" <<'PY'
import json, random, sys
d = sys.argv[1]
r = random.Random(7)
# the task: "reverse: fca" -> "acf", three letters of a-h (512 strings, 60 held out)
def ex():
    return "".join(r.choice("abcdefgh") for _ in range(3))
test = []
while len(test) < 60:
    w = ex()
    if w not in test:
        test.append(w)
held = set(test)
def other():                       # never one of the held-out prompts
    while True:
        w = ex()
        if w not in held:
            return w
def conv(w):
    return {"messages": [{"role": "user", "content": "reverse: " + w}, {"role": "assistant", "content": w[::-1]}]}
with open(f"{d}/corpus.txt", "w") as f:
    for _ in range(3000):
        w = other()
        f.write("reverse: " + w + "\n" + w[::-1] + "\n")
with open(f"{d}/train.jsonl", "w") as f:
    for _ in range(2000):
        f.write(json.dumps(conv(other())) + "\n")
with open(f"{d}/prompts.txt", "w") as f:
    f.write("".join("reverse: " + w + "\n" for w in test))
with open(f"{d}/answers.txt", "w") as f:
    f.write("".join(w[::-1] + "\n" for w in test))
# bad input: 40 good records, then one of each kind to skip, in the formats sft reads
with open(f"{d}/mixed.jsonl", "w") as f:
    for _ in range(40):
        f.write(json.dumps(conv(other())) + "\n")
    f.write(json.dumps({"messages": [{"role": "user", "content": "reverse: abc"}]}) + "\n")         # no assistant
    f.write(json.dumps({"prompt": "reverse: def", "completion": ""}) + "\n")                         # empty answer
    f.write("\n")                                                                                    # blank: ignored
    f.write(json.dumps({"instruction": "reverse: " + "a" * 60, "input": "", "output": "a"}) + "\n")  # too long
    f.write(json.dumps({"instruction": "reverse:", "input": "abc", "output": "cba"}) + "\n")         # Alpaca
with open(f"{d}/malformed.jsonl", "w") as f:
    f.write(json.dumps(conv(other())) + "\n" + json.dumps(conv(other())) + "\n")
    f.write('{"messages": [{"role": "user", "content": "reverse: abc"}\n')
with open(f"{d}/unknown.jsonl", "w") as f:
    f.write(json.dumps(conv(other())) + "\n" + json.dumps({"question": "?", "answer": "!"}) + "\n")
with open(f"{d}/msgs.json", "w") as f:
    json.dump([{"role": "user", "content": "reverse: " + test[0]}], f)
with open(f"{d}/request.json", "w") as f:
    json.dump({"model": "x", "messages": [{"role": "user", "content": "reverse: " + test[0]}],
               "add_generation_prompt": True}, f)
PY

# score FILE: "accuracy stop_rate" of generate's JSON lines against answers.txt
score() {
  python3 - "$1" "$T/answers.txt" "$T/prompts.txt" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ans = open(sys.argv[2]).read().splitlines()
prompts = open(sys.argv[3]).read().splitlines()
assert len(rows) == len(ans) and [r["prompt"] for r in rows] == prompts, "one JSON line per prompt, in order"
acc = sum(r["response"] == a for r, a in zip(rows, ans)) / len(ans)
stop = sum(bool(r["stopped"]) for r in rows) / len(ans)
print(f"{acc:.3f} {stop:.3f}")
PY
}
ge() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)" "$1" "$2"; }
le() { ge "$2" "$1"; }
GEN=(--temperature 0 --max-tokens 16 --threads 1)
SFT=(--data "$T/train.jsonl" --lr 3e-3 --val-fraction 0.05 --threads 1 --quiet)
val_losses() { python3 -c "
import json, sys
print(' '.join(str(json.loads(l)['val_loss']) for l in open(sys.argv[1]) if 'val_loss' in l))" "$1" 2>/dev/null; }
last() { echo "${@: -1}"; }

# ---- tokenizer and base model
# A byte-level vocabulary (256 bytes + the 3 special tokens: no merges fit), so that each letter is
# one token and the answer's tokens are the prompt's.
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 259 --out "$T/tok" \
  --special "<|endoftext|>" --special "<|im_start|>" --special "<|im_end|>" > "$T/tok.log" 2>&1
ids=($(printf '<|im_start|>assistant\n<|im_end|>' | "$BIN" tokenizer encode --tokenizer "$T/tok" --ids --allow-special 2>&1))
check "the tokenizer has <|im_start|> and <|im_end|> as single special tokens (${ids[*]})" \
  '[ ${#ids[@]} -ge 3 ] && [ "${ids[0]}" -ge 256 ] && [ "${ids[-1]}" -ge 256 ] && [ "${ids[0]}" != "${ids[-1]}" ]'
"$BIN" train --data "$T/corpus.txt" --tokenizer "$T/tok" --out "$T/base" --layers 2 --heads 4 --dim 64 --context 128 \
  --steps 100 --lr 3e-3 --batch 16 --eval-every 50 --threads 1 --quiet > "$T/base.log" 2>&1
check "lmkit train: a tiny base model ($(tail -1 "$T/base.log"))" '[ -f "$T/base/model.safetensors" ]'

# ---- the base model in the chat template
"$BIN" generate --model "$T/base" --user - "${GEN[@]}" < "$T/prompts.txt" > "$T/base.jsonl" 2> "$T/base_gen.err"
read -r acc0 stop0 < <(score "$T/base.jsonl")
check "the base model is not an assistant: exact answers $acc0 on 60 held-out prompts, ends its turn $stop0" \
  'le "$acc0" 0.1'

# ---- SFT: 600 steps, a checkpoint at 300
"$BIN" sft --model "$T/base" --out "$T/sft" "${SFT[@]}" --max-length 64 --batch 16 --steps 600 --save-every 300 \
  --eval-every 300 > "$T/sft.log" 2>&1
rc=$?
check "lmkit sft trains and saves (rc $rc)" \
  '[ $rc -eq 0 ] && [ -f "$T/sft/model.safetensors" ] && [ -f "$T/sft/posttrain.json" ] && [ -d "$T/sft/checkpoint-300" ]'
vl=($(val_losses "$T/sft/metrics.jsonl"))
check "held-out assistant-token loss: ${vl[*]} at steps 300, 600" '[ ${#vl[@]} -eq 2 ] && le "${vl[1]}" 0.05'
"$BIN" generate --model "$T/sft" --user - "${GEN[@]}" < "$T/prompts.txt" > "$T/sft.jsonl" 2> "$T/sft_gen.err"
read -r acc1 stop1 < <(score "$T/sft.jsonl")
check "after SFT: exact answers $acc1 on the 60 held-out prompts (base: $acc0)" 'ge "$acc1" 0.9'
check "after SFT: the answer ends with <|im_end|> within 16 tokens in $stop1 of them (base: $stop0)" 'ge "$stop1" 0.9'
check "generate does not print the end-of-turn token" '! grep -q "im_end\|im_start\|endoftext" "$T/sft.jsonl"'

# one conversation: --user, --messages (a list, a request body) and --system
p0=$(head -1 "$T/prompts.txt"); a0=$(head -1 "$T/answers.txt")
out=$("$BIN" generate --model "$T/sft" --user "$p0" "${GEN[@]}" 2> "$T/e.txt")
check "generate --user \"$p0\" prints the answer and stops: '$out'" '[ "$out" = "$a0" ]'
out2=$("$BIN" generate --model "$T/sft" --messages "$T/msgs.json" "${GEN[@]}" 2>&1)
out3=$("$BIN" generate --model "$T/sft" --messages - "${GEN[@]}" < "$T/request.json" 2>&1)
check "generate --messages: a message list, and a chat request body on stdin, give the same answer ('$out2', '$out3')" \
  '[ "$out2" = "$a0" ] && [ "$out3" = "$a0" ]'
"$BIN" generate --model "$T/sft" --system "You reverse letters." --user "$p0" "${GEN[@]}" > "$T/sys.txt" 2>&1
rc=$?
check "generate --system runs with a system turn first ('$(head -c 20 "$T/sys.txt")': this model never saw one)" \
  '[ $rc -eq 0 ] && [ -s "$T/sys.txt" ]'
"$BIN" generate --model "$T/sft" --user "$p0" --prompt "x" "${GEN[@]}" > /dev/null 2> "$T/e.txt"
rc=$?
check "generate: --prompt with --user is one clear error" 'one_error "$T/e.txt" "--prompt" $rc'
printf '[{"role": "user"' > "$T/broken.json"
"$BIN" generate --model "$T/sft" --messages "$T/broken.json" "${GEN[@]}" > /dev/null 2> "$T/e.txt"
rc=$?
check "generate --messages with malformed JSON: one error naming the file ($(cat "$T/e.txt"))" \
  'one_error "$T/e.txt" "broken.json" $rc'

# ---- resume from the middle checkpoint: the same curve, the same weights
"$BIN" sft --resume "$T/sft/checkpoint-300" --out "$T/sft_r" --threads 1 --quiet > "$T/resume.log" 2>&1
rc=$?
# same_curve A B FROM: how many steps after FROM have bit-identical losses in both metrics files (0 if any differs)
same_curve() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
def curve(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r and r["step"] > int(sys.argv[3])}
try:
    a, b = curve(sys.argv[1]), curve(sys.argv[2])
    print(len(a) if a and a == b else 0)
except OSError:
    print(0)
PY
}
same=$(same_curve "$T/sft/metrics.jsonl" "$T/sft_r/metrics.jsonl" 300)
check "sft --resume from checkpoint-300: steps 301-600 bit-identical ($same equal losses)" '[ $rc -eq 0 ] && [ "$same" = 300 ]'
check "the resumed run ends with identical weights" 'cmp -s "$T/sft/model.safetensors" "$T/sft_r/model.safetensors"'
"$BIN" sft --resume "$T/sft/checkpoint-300" --lr 1 --out "$T/sft_r2" > /dev/null 2> "$T/e.txt"
rc=$?
check "sft --resume with a changed setting: one clear error ($(cat "$T/e.txt"))" 'one_error "$T/e.txt" "--resume" $rc'

# ---- packing: rows of 128 tokens hold 4 conversations of 30 tokens; runs, learns, answers
"$BIN" sft --model "$T/base" --out "$T/pk" "${SFT[@]}" --packing --max-length 128 --batch 6 --steps 500 \
  --eval-every 250 > "$T/pk.log" 2>&1
rc=$?
vp=($(val_losses "$T/pk/metrics.jsonl"))
check "sft --packing: 500 steps of 6 rows x 128 tokens, held-out loss ${vp[*]} at steps 250, 500" \
  '[ $rc -eq 0 ] && grep -q "packed" "$T/pk.log" && [ ${#vp[@]} -eq 2 ] && le "${vp[1]}" 0.05'
"$BIN" generate --model "$T/pk" --user - "${GEN[@]}" < "$T/prompts.txt" > "$T/pk.jsonl" 2>/dev/null
read -r acc2 stop2 < <(score "$T/pk.jsonl")
check "after packed SFT: exact answers $acc2, ends its turn $stop2" 'ge "$acc2" 0.9 && ge "$stop2" 0.9'

# ---- NEFTune (noise on the embeddings while training) with packing: the noise changes training,
# and a resumed run continues it bit for bit (the noise comes from the checkpointed rng)
NEF=(--packing --max-length 128 --batch 6 --steps 20 --eval-every 20)
"$BIN" sft --model "$T/base" --out "$T/nf" "${SFT[@]}" "${NEF[@]}" --neftune-alpha 5 --save-every 10 > "$T/nf.log" 2>&1
rc1=$?
"$BIN" sft --model "$T/base" --out "$T/nf0" "${SFT[@]}" "${NEF[@]}" > /dev/null 2>&1
"$BIN" sft --resume "$T/nf/checkpoint-10" --out "$T/nf_r" --threads 1 --quiet > /dev/null 2>&1
rc2=$?
l1=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['loss'])" "$T/nf/metrics.jsonl" 2>/dev/null)
l0=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['loss'])" "$T/nf0/metrics.jsonl" 2>/dev/null)
check "--neftune-alpha 5: the noise changes the first step's loss ($l1 vs $l0 without)" \
  '[ $rc1 -eq 0 ] && [ -n "$l1" ] && [ -n "$l0" ] && [ "$l1" != "$l0" ]'
same=$(same_curve "$T/nf/metrics.jsonl" "$T/nf_r/metrics.jsonl" 10)
check "packed NEFTune run resumed from checkpoint-10: steps 11-20 bit-identical ($same equal losses), same weights" \
  '[ $rc2 -eq 0 ] && [ "$same" = 10 ] && cmp -s "$T/nf/model.safetensors" "$T/nf_r/model.safetensors"'

# ---- bad input
"$BIN" sft --model "$T/base" --data "$T/mixed.jsonl" --out "$T/mx" --max-length 64 --steps 2 --threads 1 --quiet \
  > "$T/mx.log" 2>&1
rc=$?
check "records without an assistant turn, with an empty answer, longer than --max-length: counted and skipped ($(grep skipped "$T/mx.log"))" \
  '[ $rc -eq 0 ] && grep -q "skipped 1 without an assistant turn, 1 with an empty one, 1 longer than 64 tokens" "$T/mx.log" && grep -q "41 conversations" "$T/mx.log"'
"$BIN" sft --model "$T/base" --data "$T/malformed.jsonl" --out "$T/ml" --steps 2 --quiet > /dev/null 2> "$T/e.txt"
rc=$?
check "a malformed line: one error naming file:line ($(cat "$T/e.txt"))" 'one_error "$T/e.txt" "malformed.jsonl:3" $rc'
"$BIN" sft --model "$T/base" --data "$T/unknown.jsonl" --out "$T/uk" --steps 2 --quiet > /dev/null 2> "$T/e.txt"
rc=$?
check "a record in no known format: one error naming file:line ($(cat "$T/e.txt"))" 'one_error "$T/e.txt" "unknown.jsonl:2" $rc'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
