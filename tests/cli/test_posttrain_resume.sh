#!/usr/bin/env bash
# `--resume RUN` of a post-training run (sft, reward, dpo, grpo, rloo, ppo) keeps the run's checkpoint
# cadence (--save-every), retention (--keep-checkpoints) and --eval-every, which posttrain.json holds
# (the trainer's saved settings do not: in `lmkit train` they are the caller's); given again on
# --resume they replace the saved ones, also for the next resume. For each command:
#   1. a run of 4 steps with --save-every 1 --keep-checkpoints 2 --eval-every 2;
#   2. `--resume RUN --steps 8` alone: checkpoints at 5, 6, 7, the newest 2 kept (checkpoint-6/-7;
#      before this was fixed: no new checkpoint, and checkpoint-2/-3 of the first run stayed), and
#      evaluations at steps 6 and 8;
#   3. `--resume RUN --steps 12 --save-every 2 --keep-checkpoints 1`: checkpoint-10 alone;
#   4. `--resume RUN --steps 16` alone again: checkpoint-14 alone (step 3's values were saved).
# Then: a posttrain.json written before these keys existed resumes with the command's defaults, and a
# malformed value is one clear error. (test_ppo_kill.sh resumes a SIGKILLed ppo run the same way.)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/rl_lib.sh"
rl_setup
python3 - "$T" <<'PY'
import json, random, sys
random.seed(7)
with open(f"{sys.argv[1]}/prefs.jsonl", "w") as f:
    for i in range(64):
        a = random.randrange(10)
        f.write(json.dumps({"prompt": f"{a}+0=", "chosen": f"<answer>{a}</answer>", "rejected": f"the answer is {a}"}) + "\n")
PY
"$BIN" reward --model "$T/sft" --data "$T/prefs.jsonl" --max-length 40 --steps 4 --quiet --threads 1 --out "$T/rm" > /dev/null 2>&1
check "policy and reward model trained" "[ -f $T/sft/model.safetensors ] && [ -f $T/rm/model.safetensors ]"

ckpts() { (cd "$1" && ls -d checkpoint-[0-9]* 2> /dev/null | sort -t- -k2 -n | tr '\n' ' '); }
evals() { grep -o '"step": [0-9]*, "val_[a-z_]*' "$1/metrics.jsonl" | grep -o '"step": [0-9]*' | grep -o '[0-9]*' | tr '\n' ' '; }
RL=(--prompts "$T/tasks.jsonl" --eval "$T/tasks.jsonl" --reward arith --max-length 40 --max-new-tokens 8 --batch 2)
run_cmd() {   # the command line that starts run $1 of command $2
  case $2 in
    sft) echo sft --model "$T/base" --data "$T/sft.jsonl" --val-fraction 0.1 --max-length 40 --batch 4;;
    reward) echo reward --model "$T/sft" --data "$T/prefs.jsonl" --val-fraction 0.1 --max-length 40 --batch 4;;
    dpo) echo dpo --model "$T/sft" --data "$T/prefs.jsonl" --val-fraction 0.1 --max-length 40 --batch 4;;
    grpo|rloo) echo "$2" --policy "$T/sft" "${RL[@]}" --generations 4;;
    ppo) echo ppo --policy "$T/sft" --reward "$T/rm" "${RL[@]}" --ppo-epochs 1 --mini-batches 1;;
  esac
}
for c in sft reward dpo grpo rloo ppo; do
  O="$T/$c"
  # shellcheck disable=SC2046
  "$BIN" $(run_cmd "$O" $c) --steps 4 --save-every 1 --keep-checkpoints 2 --eval-every 2 --lr 1e-3 --seed 3 --threads 1 \
    --quiet --out "$O" > /dev/null 2> "$T/$c.0.err"
  check "$c: 4 steps, checkpoints 2 and 3 kept" "[ '$(ckpts "$O")' = 'checkpoint-2 checkpoint-3 ' ]"
  "$BIN" $c --resume "$O" --steps 8 --threads 1 --quiet > /dev/null 2> "$T/$c.1.err"
  check "$c --resume RUN --steps 8 alone keeps --save-every 1 --keep-checkpoints 2 ($(ckpts "$O"))" \
    "[ '$(ckpts "$O")' = 'checkpoint-6 checkpoint-7 ' ]"
  check "$c: ... and --eval-every 2 (evaluations at steps $(evals "$O"))" "[ '$(evals "$O")' = '2 4 6 8 ' ]"
  "$BIN" $c --resume "$O" --steps 12 --save-every 2 --keep-checkpoints 1 --threads 1 --quiet > /dev/null 2> "$T/$c.2.err"
  check "$c --resume with --save-every 2 --keep-checkpoints 1 given again: they win ($(ckpts "$O"))" \
    "[ '$(ckpts "$O")' = 'checkpoint-10 ' ]"
  "$BIN" $c --resume "$O" --steps 16 --threads 1 --quiet > /dev/null 2> "$T/$c.3.err"
  check "$c: the next --resume alone keeps them ($(ckpts "$O"))" "[ '$(ckpts "$O")' = 'checkpoint-14 ' ]"
done
check "sft --resume says the run's batch and steps ($(grep -o '[0-9]* steps of [0-9x ]*' "$T/sft.1.err"))" \
  "grep -q '8 steps of 4 x 40' $T/sft.1.err"

# a run saved before posttrain.json held the cadence: the command's defaults (end only, 3 kept), as then
python3 - "$T/grpo/posttrain.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for k in ("eval_every", "save_every", "keep_checkpoints"): j.pop(k)
json.dump(j, open(sys.argv[1], "w"))
PY
"$BIN" grpo --resume "$T/grpo" --steps 18 --threads 1 --quiet > /dev/null 2> "$T/old.err"; rc=$?
check "a posttrain.json without the cadence resumes with the defaults (rc $rc; $(ckpts "$T/grpo"))" \
  "[ $rc = 0 ] && [ '$(ckpts "$T/grpo")' = 'checkpoint-14 checkpoint-16 ' ]"   # 16: the resumed state, kept first
python3 - "$T/ppo/posttrain.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
j["keep_checkpoints"] = "2"
json.dump(j, open(sys.argv[1], "w"))
PY
err "a malformed keep_checkpoints in posttrain.json is one clear error" "posttrain.json: malformed settings" \
  "$BIN" ppo --resume "$T/ppo" --steps 20 --threads 1 --quiet

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
