#!/usr/bin/env bash
# test_sweep.sh — `lmkit sweep` end to end at tiny budgets: 2 budgets x 3 GPT sizes train into
# runs.jsonl (N non-embedding, D = C/(6N) rounded up to whole steps, "run i of n" with an ETA);
# a re-run skips finished runs; a run interrupted after a checkpoint resumes to the same val_loss
# bit for bit, and one trained but not yet recorded is recorded from its metrics; `lmkit fit`
# reads the result; --sizes auto picks sizes near 20 tokens per parameter; a budget too small
# for the smallest model, trainer flags the sweep sets and a changed sweep are errors before
# anything trains.
source "$(dirname "$0")/lib.sh"

grep -v '^%' /usr/share/games/fortunes/computers > "$T/corpus.txt" 2>/dev/null || \
  python3 -c "import random; random.seed(1); print('\n'.join(' '.join(random.choice(['the','cat','sat','on','a','mat','and','dog','ran']) for _ in range(12)) for _ in range(3000)))" > "$T/corpus.txt"
S="--data $T/corpus.txt --budgets 6e8,1.2e9 --sizes 1x32,2x32,3x32 --context 32 --batch 4 --eval-batches 4 --threads 1 --quiet"

# shellcheck disable=SC2086
"$BIN" sweep $S --out "$T/sw" > "$T/sw.out" 2> "$T/sw.err"
check "sweep runs" '[ $? -eq 0 ] && [ "$(wc -l < "$T/sw/runs.jsonl")" -eq 6 ]'
check "says what N counts" 'grep -q "N counts non-embedding parameters, C = 6 N D" "$T/sw.err"'
check "run i of n with an ETA" 'grep -q "run 1 of 6: C6e+08-1x32" "$T/sw.err" && grep -q "run 6 of 6: .*ETA [0-9]* s" "$T/sw.err"'
python3 - "$T/sw/runs.jsonl" > "$T/checks.txt" <<'EOF'
import json, math, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
def say(name, cond): print(("ok " if cond else "FAIL ") + name)
say("flops are the budgets", sorted({r["flops"] for r in runs}) == [6e8, 1.2e9])
# N = 12 L C^2 + 13 L C (weights, biases, two LayerNorms per block) + 2 C (the final LayerNorm)
say("N is non-embedding", all(r["params"] == 12 * r["layers"] * r["dim"] ** 2 + 13 * r["layers"] * r["dim"] + 2 * r["dim"] for r in runs))
say("D = C/(6N) in whole steps", all(r["tokens"] == r["steps"] * 128 and (r["steps"] - 1) * 128 < r["flops"] / (6 * r["params"]) <= r["steps"] * 128 for r in runs))
say("finite losses", all(math.isfinite(r["val_loss"]) and 0 < r["val_loss"] < 10 for r in runs))
small = {r["run"]: r["val_loss"] for r in runs}
say("more compute, lower loss for the same size", small["C1.2e+09-1x32"] < small["C6e+08-1x32"])
EOF
while read -r res name; do if [ "$res" = ok ]; then ok "$name"; else bad "$name"; fi; done < "$T/checks.txt"

cp "$T/sw/runs.jsonl" "$T/want.jsonl"
# shellcheck disable=SC2086
"$BIN" sweep $S --out "$T/sw" > "$T/again.out" 2>&1
check "a re-run skips finished runs" 'cmp -s "$T/sw/runs.jsonl" "$T/want.jsonl" && ! grep -q "run 1 of" "$T/again.out"'

# an interrupted run: its last line and final state gone, its newest checkpoint left
last=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readlines()[-1])['run'])" "$T/sw/runs.jsonl")
head -5 "$T/want.jsonl" > "$T/sw/runs.jsonl"
rm -f "$T/sw/runs/$last/trainer_state.json" "$T/sw/runs/$last/model.safetensors"
# and a trained run whose line was not yet written
mid=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readlines()[2])['run'])" "$T/want.jsonl")
grep -v "\"run\":\"$mid\"" "$T/sw/runs.jsonl" > "$T/sw/r" && mv "$T/sw/r" "$T/sw/runs.jsonl"
# shellcheck disable=SC2086
"$BIN" sweep $S --out "$T/sw" > "$T/resume.out" 2> "$T/resume.err"
check "resumes from the checkpoint" 'grep -q "resuming $last at step" "$T/resume.err"'
strip() { python3 -c "import json,sys; [print(json.dumps({k: v for k, v in json.loads(l).items() if k != 'seconds'}, sort_keys=True)) for l in sorted(open(sys.argv[1]))]" "$1"; }
check "resumed runs end with the same numbers" '[ "$(strip "$T/sw/runs.jsonl" | grep -v "\"$mid\"")" = "$(strip "$T/want.jsonl" | grep -v "\"$mid\"")" ]'
check "a trained, unrecorded run is recorded with its val_loss" \
  '[ "$(strip "$T/sw/runs.jsonl" | grep "\"$mid\"" | sed "s/\"train_loss\": [^,]*,//")" = "$(strip "$T/want.jsonl" | grep "\"$mid\"" | sed "s/\"train_loss\": [^,]*,//")" ]'
check "fit reads a sweep" '"$BIN" fit --sweep "$T/sw" --bootstrap 0 > "$T/fit.txt" 2>&1 && grep -q "^6 runs from" "$T/fit.txt"'

"$BIN" sweep --data "$T/corpus.txt" --budgets 1e9,1e11,1e13 --out "$T/auto" --dry-run > "$T/auto.txt"
python3 - "$T/auto.txt" > "$T/checks.txt" <<'EOF'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
runs = [l for l in lines[1:]]
def say(name, cond): print(("ok " if cond else "FAIL ") + name)
by = {}
for l in runs:
    m = re.match(r"C(\S+)-(\d+)x(\d+)  N (\S+)  D (\S+)  steps (\d+)  tokens/N (\S+)", l)
    by.setdefault(m.group(1), []).append((int(m.group(6)), float(m.group(7))))
say("auto: at most 5 sizes a budget, each >= 10 steps", all(0 < len(v) <= 5 and min(s for s, _ in v) >= 10 for v in by.values()))
say("auto: the largest budget brackets 20 tokens per parameter", min(r for _, r in by["1e+13"]) < 20 < max(r for _, r in by["1e+13"]))
EOF
while read -r res name; do if [ "$res" = ok ]; then ok "$name"; else bad "$name"; fi; done < "$T/checks.txt"
check "dry run writes nothing" '[ ! -e "$T/auto" ]'

# ---- errors, before anything trains
err "budget too small for a size" "budget 2e+08 is too small for size 3x32" "$BIN" sweep --data "$T/corpus.txt" --budgets 1e9,2e8 --sizes 1x32,3x32 --context 32 --batch 4 --out "$T/e1"
err "budget too small for the smallest model" "budget 1e+06 is too small for the smallest model (1x32" "$BIN" sweep --data "$T/corpus.txt" --budgets 1e6 --out "$T/e2"
check "nothing written for a refused sweep" '[ ! -e "$T/e1" ] && [ ! -e "$T/e2" ]'
err "--steps is the sweep's" "--steps is set by the sweep" "$BIN" sweep --data "$T/corpus.txt" --budgets 1e9 --out "$T/e3" --steps 5
# shellcheck disable=SC2086
err "another sweep in SWEEP" "holds another sweep" "$BIN" sweep $S --lr 3e-3 --out "$T/sw"
err "bad sizes" "invalid value for --sizes: '2x33'" "$BIN" sweep --data "$T/corpus.txt" --budgets 1e9 --sizes 2x33 --out "$T/e4"
err "bad budgets" "invalid value for --budgets: '1e9,x'" "$BIN" sweep --data "$T/corpus.txt" --budgets 1e9,x --out "$T/e4"
err "required flags" "--data, --budgets and --out are required" "$BIN" sweep --budgets 1e9

echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]
