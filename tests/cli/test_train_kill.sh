#!/usr/bin/env bash
# A training run killed with SIGKILL at random moments (mid-step, mid-save, mid-cleanup),
# and resumed every time by re-running its command with --resume added, ends exactly
# where an uninterrupted run with the same seed ends: the same loss curve in
# metrics.jsonl and the same weights. Along the way no incomplete checkpoint is ever
# taken for a complete one, *.tmp leftovers are cleaned up, and only the newest
# --keep-checkpoints directories remain.
source "$(dirname "$0")/lib.sh"

python3 - "$T/corpus.txt" <<'PY'
import random, sys
random.seed(2)
names = ["alice", "bob", "carol", "dave", "erin"]
verbs = ["likes", "sees", "helps", "calls", "finds"]
with open(sys.argv[1], "w") as f:
    for i in range(2000):
        f.write(f"{random.choice(names)} {random.choice(verbs)} {random.choice(names)}.\n")
PY

CMD=("$BIN" train --data "$T/corpus.txt" --layers 2 --heads 2 --dim 32 --context 32 --batch 8 --lr 3e-3
     --warmup 5 --eval-every 10 --eval-batches 2 --seed 11 --threads 1 --quiet --steps 80 --save-every 2)
strip() { sed 's/, "tokens_per_sec.*/}/' "$1"; }

# the uninterrupted run, timed to size the random delays
t0=$(date +%s%N)
"${CMD[@]}" --out "$T/ref" > /dev/null 2> "$T/ref.err"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "uninterrupted reference run" "[ -f $T/ref/model.safetensors ] && [ \$(grep -c '\"loss\"' $T/ref/metrics.jsonl) = 80 ]"
step_ms=$(( ms / 80 > 5 ? ms / 80 : 5 ))

RANDOM=4242
O="$T/run"; kills=0; done=0; errors=0; fresh=0; midsave=0
# attempt 0 dies during start-up or its first steps; attempt i (1..10) once the run has logged
# about step 7i, plus a random delay of up to 3 steps, so that kills land mid-step and mid-save
# wherever the machine's speed puts them
for i in $(seq 0 10); do
  # what a user would do: re-run the command, with --resume once a checkpoint exists
  if ls "$O" 2> /dev/null | grep -qE '^checkpoint-[0-9]+$' || [ -f "$O/trainer_state.json" ]; then args=(--resume "$O"); else args=(--out "$O"); fresh=$((fresh+1)); fi
  target=$(( i == 0 ? 0 : 7 * i - 3 + RANDOM % 5 ))
  kill_at "$O/metrics.jsonl" $target $(( i == 0 ? RANDOM % 400 : RANDOM % (3 * step_ms) )) "$T/err.$i" "${CMD[@]}" "${args[@]}"
  if [ $rc -eq 0 ]; then done=1; break; fi
  if [ $rc -eq 137 ]; then kills=$((kills+1)); else errors=$((errors+1)); echo "attempt $i: rc=$rc: $(cat "$T/err.$i")"; fi
  # a kill inside a save leaves a checkpoint-N.tmp or NAME.tmp.PID behind (cleaned at the next start)
  [ -n "$(find "$O" -name '*.tmp*' 2> /dev/null)" ] && midsave=$((midsave+1))
  # never an incomplete directory that looks complete
  bad=$(incomplete_checkpoints "$O" config.json model.safetensors trainer_state.json optimizer.safetensors tokenizer.json)
  [ -z "$bad" ] || { errors=$((errors+1)); echo "attempt $i: $bad"; }
done
echo "killed $kills times ($midsave of them mid-save, $fresh fresh starts); finished before the last kill: $done"
if [ $done = 0 ]; then "${CMD[@]}" --resume "$O" > /dev/null 2> "$T/err.last" || { errors=$((errors+1)); cat "$T/err.last"; }; fi

check "killed at least 8 times" "[ $kills -ge 8 ]"
check "every restart resumed or started without an error" "[ $errors = 0 ]"
check "the run completed" "[ -f $O/model.safetensors ] && grep -Eq '\"step\":[[:space:]]*80,' $O/trainer_state.json"
check "the loss curve equals the uninterrupted run's" "diff <(strip $T/ref/metrics.jsonl) <(strip $O/metrics.jsonl) > $T/curve.diff"
check "the weights equal the uninterrupted run's" "cmp -s $T/ref/model.safetensors $O/model.safetensors"
check "no *.tmp leftovers remain" "[ -z \"\$(find $O -name '*.tmp*')\" ]"
check "only the newest 3 checkpoints are kept" "[ \"\$(cd $O && ls -d checkpoint-* | sort -t- -k2 -n | tr '\n' ' ')\" = 'checkpoint-74 checkpoint-76 checkpoint-78 ' ]"
# the same command once more: nothing to do
"${CMD[@]}" --resume "$O" > /dev/null 2> "$T/again.err"; rc=$?
check "re-running a finished run is a no-op that says so" "[ $rc = 0 ] && grep -q 'complete (step 80 of 80)' $T/again.err"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
