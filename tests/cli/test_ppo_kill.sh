#!/usr/bin/env bash
# `lmkit ppo` killed with SIGKILL at random moments (mid-rollout, mid-update, mid-save) and resumed
# every time by re-running its command with --resume, ends exactly where an uninterrupted run with
# the same seed ends: the same metrics.jsonl (rollout figures, losses, the adaptive kl_coef), the
# same policy and the same value model (OUT/value). Along the way no checkpoint directory that
# lacks a file (the policy's or the value model's) ever looks complete, *.tmp leftovers are
# cleaned up, and only the newest 3 checkpoints remain. (test_train_kill.sh does the same for
# `lmkit train`; test_ppo.sh checks one resume from a chosen checkpoint.)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/rl_lib.sh"
rl_setup
python3 - "$T" <<'PY'
import json, random, sys
random.seed(7)
with open(f"{sys.argv[1]}/prefs.jsonl", "w") as f:   # the reward model prefers the tagged answer
    for i in range(200):
        a = random.randrange(10)
        f.write(json.dumps({"prompt": f"{a}+0=", "chosen": f"<answer>{a}</answer>", "rejected": f"the answer is {a}"}) + "\n")
PY
"$BIN" reward --model "$T/sft" --data "$T/prefs.jsonl" --max-length 40 --steps 20 --lr 1e-3 --quiet --out "$T/rm" > /dev/null 2>&1
check "policy and reward model trained" "[ -f $T/sft/model.safetensors ] && [ -f $T/rm/model.safetensors ]"

# 20 iterations of 2 epochs x 2 mini-batches; a checkpoint every iteration (4 steps)
CMD=("$BIN" ppo --policy "$T/sft" --reward "$T/rm" --prompts "$T/tasks.jsonl" --max-length 40 --max-new-tokens 10 --batch 2
     --ppo-epochs 2 --mini-batches 2 --lr 5e-4 --target-kl 1 --kl-horizon 100 --missing-eos-penalty 1 --seed 11
     --threads 1 --quiet --steps 80 --save-every 4)
# what a user does after a crash: the run's settings come from OUT (posttrain.json, trainer_state.json),
# its checkpoint cadence and retention included (test_posttrain_resume.sh)
RESUME=("$BIN" ppo --resume "$T/run" --threads 1 --quiet)
curve() { grep '"loss"' "$1" | sed 's/, "tokens_per_sec": [^,]*, "step_ms": [^,}]*//'; }

"${CMD[@]}" --out "$T/ref" > /dev/null 2> "$T/ref.err"
check "uninterrupted reference run" "[ -f $T/ref/model.safetensors ] && [ -f $T/ref/value/model.safetensors ] && [ \$(curve $T/ref/metrics.jsonl | wc -l) = 80 ]"
# a step's time (the median of step_ms: start-up, which dominates the run's wall time, is not in it)
step_ms=$(grep -o '"step_ms": [0-9.]*' "$T/ref/metrics.jsonl" | awk '{print int($2)}' | sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; print (m > 5 ? m : 5)}')

RANDOM=4711
O="$T/run"; kills=0; done=0; errors=0; midsave=0
# attempt 0 dies during start-up or its first steps; attempt i (1..12) once it has logged 1-3 steps
# past the last step in metrics.jsonl (where the previous attempt died), plus a random delay of
# up to 4 steps: every attempt makes progress, and kills land in rollouts, in updates and in saves
# wherever the machine's speed puts them
for i in $(seq 0 12); do
  if ls "$O" 2> /dev/null | grep -qE '^checkpoint-[0-9]+$' || [ -f "$O/trainer_state.json" ]; then run=("${RESUME[@]}"); else run=("${CMD[@]}" --out "$O"); fi
  prev=$(last_step "$O/metrics.jsonl")
  target=$(( i == 0 ? 0 : ${prev:-0} + 1 + RANDOM % 3 ))
  kill_at "$O/metrics.jsonl" $target $(( i == 0 ? RANDOM % 400 : RANDOM % (4 * step_ms) )) "$T/err.$i" "${run[@]}"
  if [ $rc -eq 0 ]; then done=1; break; fi
  if [ $rc -eq 137 ]; then kills=$((kills+1)); else errors=$((errors+1)); echo "attempt $i: rc=$rc: $(cat "$T/err.$i")"; fi
  [ -n "$(find "$O" -name '*.tmp*' 2> /dev/null)" ] && midsave=$((midsave+1))
  # never an incomplete directory that looks complete: the policy's files and the value model's
  bad=$(incomplete_checkpoints "$O" config.json model.safetensors trainer_state.json optimizer.safetensors tokenizer.json \
        value/config.json value/model.safetensors)
  [ -z "$bad" ] || { errors=$((errors+1)); echo "attempt $i: $bad"; }
done
echo "killed $kills times ($midsave of them mid-save); finished before the last kill: $done"
if [ $done = 0 ]; then "${RESUME[@]}" > /dev/null 2> "$T/err.last" || { errors=$((errors+1)); cat "$T/err.last"; }; fi

check "killed at least 8 times" "[ $kills -ge 8 ]"
check "every restart resumed or started without an error" "[ $errors = 0 ]"
check "the run completed" "[ -f $O/model.safetensors ] && grep -Eq '\"step\":[[:space:]]*80,' $O/trainer_state.json"
check "the metrics (rollout figures, losses, kl_coef) equal the uninterrupted run's" \
  "diff <(curve $T/ref/metrics.jsonl) <(curve $O/metrics.jsonl) > $T/curve.diff"
check "the policy equals the uninterrupted run's" "cmp -s $T/ref/model.safetensors $O/model.safetensors"
check "the value model equals the uninterrupted run's" "cmp -s $T/ref/value/model.safetensors $O/value/model.safetensors"
check "no *.tmp leftovers remain" "[ -z \"\$(find $O -name '*.tmp*')\" ]"
check "only the newest 3 checkpoints are kept" "[ \"\$(cd $O && ls -d checkpoint-* | sort -t- -k2 -n | tr '\n' ' ')\" = 'checkpoint-68 checkpoint-72 checkpoint-76 ' ]"
"${RESUME[@]}" > /dev/null 2> "$T/again.err"; rc=$?
check "re-running the finished run changes nothing and says why" \
  "[ $rc = 1 ] && grep -q 'is at step 80 already; pass --steps above it' $T/again.err && cmp -s $T/ref/model.safetensors $O/model.safetensors"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
