#!/usr/bin/env bash
# GRPO learns single-digit addition (issue #11's learning test; docs/rl.md "Proof").
#   - a tiny GPT-2 (2 layers, 64 wide) is pre-trained on the 100 facts "a+b=c" and
#     "a+b=<answer>c</answer>" (a, b in 0..9);
#   - `lmkit sft` on 70 of the pairs teaches the chat format, with a bad habit: the completion is
#     "<answer>c</answer>" one time in four and "<answer>c+1</answer>" three times in four, so its
#     greedy answer is off by one: accuracy < 0.3 on the 70 pairs (GRPO's tasks);
#   - GRPO with the arith reward (the number in <answer>...</answer> must equal the task's answer),
#     100 steps of 8 tasks x 8 completions, takes the greedy accuracy on its 70 tasks over 0.8,
#     the sampled accuracy of the last steps above the first steps', and the greedy accuracy on
#     the 30 held-out pairs (never seen by sft or grpo) up by at least 0.4. With these data
#     (seeds 4, 6, 7) the tasks went 0.07 -> 0.97 and the held-out pairs 0.13 -> 0.93, and with a
#     later build of the tree (other engineers' changes since) 0.06 -> 0.97 and 0.10 -> 0.80; with seeds
#     5, 7, 8 and 6, 8, 9 the held-out pairs went 0.33 -> 0.77 and 0.10 -> 0.77 (tasks 0.19 -> 0.87,
#     0.09 -> 0.93), which is why the held-out check is a gain and not "> 0.8" (docs/rl.md).
# Everything runs on one thread: deterministic, and 2 OpenMP threads lose to contention on a busy
# machine. About 15 s of CPU (2 minutes of wall time at load 12 on 2 cores).
source "$(dirname "$0")/lib.sh"
# mean of field F over training lines [a, b) of run R
mean_of() { python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if "\"loss\"" in l]
xs = [r[sys.argv[2]] for r in rows[int(sys.argv[3]):int(sys.argv[4])]]
print(sum(xs) / len(xs))' "$@"; }

python3 - "$T" <<'PY'
import json, random, sys
d = sys.argv[1]
pairs = [(a, b) for a in range(10) for b in range(10)]
random.seed(4); random.shuffle(pairs)
held, train = pairs[:30], pairs[30:]
random.seed(6)
allp = list(pairs)
with open(f"{d}/corpus.txt", "w") as f:
    for _ in range(60):
        random.shuffle(allp)
        for a, b in allp: f.write(f"{a}+{b}={a + b}\n{a}+{b}=<answer>{a + b}</answer>\n")
random.seed(7)
with open(f"{d}/sft.jsonl", "w") as f:   # right one time in four, else off by one
    for i in range(800):
        a, b = random.choice(train)
        x = a + b if random.random() < 0.25 else a + b + 1
        f.write(json.dumps({"prompt": f"{a}+{b}=", "completion": f"<answer>{x}</answer>"}) + "\n")
for name, s in (("tasks", train), ("held", held)):
    with open(f"{d}/{name}.jsonl", "w") as f:
        for a, b in s: f.write(json.dumps({"prompt": f"{a}+{b}=", "answer": a + b}) + "\n")
PY
"$BIN" tokenizer train --data "$T/corpus.txt" "$T/sft.jsonl" --vocab-size 300 --out "$T/tok" --threads 1 > /dev/null 2>&1
"$BIN" train --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 2 --heads 4 --dim 64 --context 64 --batch 8 --steps 600 \
  --lr 3e-3 --threads 1 --quiet --out "$T/base" > /dev/null 2>&1
"$BIN" sft --model "$T/base" --data "$T/sft.jsonl" --max-length 64 --steps 600 --lr 3e-3 --threads 1 --quiet --out "$T/sft" > /dev/null 2>&1
check "base and SFT models trained" "[ -f $T/sft/model.safetensors ]"

# greedy accuracy of model M on the tasks of FILE
acc() { "$BIN" grpo --policy "$1" --prompts "$T/tasks.jsonl" --eval "$2" --reward arith --eval-only --max-length 64 \
  --max-new-tokens 10 --threads 1 --quiet | python3 -c 'import json,sys; print(json.load(sys.stdin)["val_reward"])'; }
b_train=$(acc "$T/sft" "$T/tasks.jsonl"); b_held=$(acc "$T/sft" "$T/held.jsonl")
check "before: greedy accuracy ${b_train:-?} on the 70 tasks < 0.3 (${b_held:-?} on the 30 held out)" "! ge '${b_train:-1}' 0.3"
"$BIN" grpo --policy "$T/sft" --prompts "$T/tasks.jsonl" --eval "$T/held.jsonl" --reward arith --max-length 64 --max-new-tokens 10 \
  --out "$T/g" --steps 100 --batch 8 --generations 8 --lr 5e-4 --eval-every 50 --threads 1 --quiet > /dev/null 2> "$T/g.err"; rc=$?
check "grpo --reward arith: runs (rc $rc)" "[ $rc = 0 ] && [ -f $T/g/model.safetensors ]"
a_train=$(acc "$T/g" "$T/tasks.jsonl"); a_held=$(acc "$T/g" "$T/held.jsonl")
check "after 100 steps: greedy accuracy ${a_train:-?} on the 70 tasks > 0.8" "ge '${a_train:-0}' 0.81"
check "after 100 steps: greedy accuracy on the 30 held-out pairs ${b_held:-?} -> ${a_held:-?} (a gain >= 0.4)" \
  "ge '${a_held:-0}' \$(python3 -c 'print(${b_held:-1} + 0.4)')"
r0=$(mean_of "$T/g" reward 0 10); r1=$(mean_of "$T/g" reward 90 100)
check "sampled accuracy rises (${r0:-?} in steps 1-10, ${r1:-?} in 91-100)" "ge '${r1:-0}' \$(python3 -c 'print(${r0:-1} + 0.1)')"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
