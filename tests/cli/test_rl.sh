#!/usr/bin/env bash
# End to end: `lmkit grpo` and `lmkit rloo` on a tiny generated task (docs/rl.md).
#   - a tiny GPT-2 is pre-trained on lines "a+0=a" and "<answer>a</answer>" and instruction-tuned
#     (`lmkit sft`) to answer "a+0=" with "the answer is a" three times in four and
#     "<answer>a</answer>" once: its greedy answer is untagged;
#   - learning: GRPO with the format reward regex:^<answer>\d</answer>$ takes the held-out greedy
#     reward from < 0.3 to >= 0.8 within 30 steps, and the sampled reward of the last steps beats the
#     first steps' (the model does not learn the digits themselves at this size and budget: a
#     formatting task, not arithmetic);
#   - determinism and resume: --resume from a checkpoint repeats the rest of the run exactly
#     (same rollouts, rewards, losses) and ends at the same model;
#   - rloo with its KL-shaped reward and grpo with --beta (k3) and --loss dapo hold a reference
#     and log a KL; a reward command (--reward-cmd) scores; the arith reward reads the tasks'
#     answers;
#   - the calculator: a model tuned to write a call gets " → RESULT" spliced by generate --calc and
#     in grpo's rollouts with --calc;
#   - --cot appends its instruction to the task;
#   - bad options, tasks and reward commands are one clear error each.
source "$(dirname "$0")/lib.sh"
# field F of the last evaluation line of run R
last_val() { grep '"val_reward"' "$1/metrics.jsonl" | tail -1 | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$2"; }
# mean of field F over training lines [a, b) of run R
mean_of() { python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if "\"loss\"" in l]
xs = [r[sys.argv[2]] for r in rows[int(sys.argv[3]):int(sys.argv[4])]]
print(sum(xs) / len(xs))' "$@"; }

source "$(dirname "$0")/rl_lib.sh"
rl_setup
python3 - "$T" <<'PY'
import json, sys
d = sys.argv[1]
with open(f"{d}/calc.jsonl", "w") as f:   # a model that calls the calculator
    for i in range(64): f.write(json.dumps({"prompt": "go", "completion": "<|calc|>77*33<|/calc|>"}) + "\n")
with open(f"{d}/noanswer.jsonl", "w") as f:
    f.write(json.dumps({"prompt": "1+0=", "answer": 1}) + "\n" + json.dumps({"prompt": "2+0="}) + "\n")
with open(f"{d}/malformed.jsonl", "w") as f:
    f.write(json.dumps({"prompt": "1+0=", "answer": 1}) + "\n" + json.dumps({"prompt": 7}) + "\n")
PY
"$BIN" sft --model "$T/base" --data "$T/calc.jsonl" --max-length 64 --steps 80 --lr 3e-3 --quiet --out "$T/calc" > /dev/null 2>&1
check "base and SFT models trained" "[ -f $T/sft/model.safetensors ] && [ -f $T/calc/model.safetensors ]"

FORMAT='regex:^<answer>\d</answer>$'
COMMON=(--policy "$T/sft" --prompts "$T/tasks.jsonl" --eval "$T/tasks.jsonl" --max-length 40 --max-new-tokens 12 --quiet)
# ---- learning
before=$("$BIN" grpo "${COMMON[@]}" --reward "$FORMAT" --eval-only | python3 -c 'import json,sys; print(json.load(sys.stdin)["val_reward"])')
check "grpo: the SFT model's greedy format reward ${before:-?} < 0.3" "! ge '${before:-1}' 0.3"
"$BIN" grpo "${COMMON[@]}" --reward "$FORMAT" --out "$T/g" --steps 30 --batch 4 --generations 8 --lr 5e-4 \
  --eval-every 10 --save-every 10 > /dev/null 2> "$T/g.err"; rc=$?
check "grpo: runs (rc $rc)" "[ $rc = 0 ] && grep -q 'saved to' $T/g.err"
after=$(last_val "$T/g" val_reward)
check "grpo: held-out greedy format reward ${after:-?} >= 0.8 after 30 steps" "ge '${after:-0}' 0.8"
r0=$(mean_of "$T/g" reward 0 5); r1=$(mean_of "$T/g" reward 25 30)
check "grpo: sampled reward rises (${r0:-?} in steps 1-5, ${r1:-?} in 26-30)" "ge '${r1:-0}' \$(python3 -c 'print(${r0:-1} + 0.1)')"
check "grpo: metrics lines carry reward, kl, clipfrac, entropy, completion_len" \
  "[ \$(grep '\"loss\"' $T/g/metrics.jsonl | grep -c '\"reward\": .*\"reward_std\": .*\"kl\": .*\"clipfrac\": .*\"entropy\": .*\"completion_len\": .*\"stopped\": ') = 30 ]"
check "grpo: the output is a GPT2LMHeadModel with tokenizer and settings" \
  "grep -q GPT2LMHeadModel $T/g/config.json && [ -f $T/g/tokenizer.json ] && grep -q '\"command\":[[:space:]]*\"grpo\"' $T/g/posttrain.json"

# ---- resume from the step-10 checkpoint: steps 11..30 repeat exactly
curve() { grep '"loss"' "$1" | sed 's/, "tokens_per_sec": [^,]*, "step_ms": [^,]*//'; }
curve "$T/g/metrics.jsonl" | tail -20 > "$T/g.tail"
"$BIN" grpo --resume "$T/g/checkpoint-10" --out "$T/g2" --quiet > /dev/null 2> "$T/g2.err"; rc=$?
curve "$T/g2/metrics.jsonl" > "$T/g2.all" 2> /dev/null
check "grpo: resume repeats rollouts, rewards and losses exactly (rc $rc)" "[ -s $T/g2.all ] && diff -q $T/g.tail $T/g2.all > /dev/null"
check "grpo: resumed model equals the uninterrupted one" "cmp -s $T/g/model.safetensors $T/g2/model.safetensors"
err "grpo: resume with a setting" "--beta cannot be given with --resume" "$BIN" grpo --resume "$T/g" --beta 0.5

# ---- the KL terms (a reward that varies within every group: the completion's length), rloo, arith
cat > "$T/len.py" <<'PY'
import json, sys
for line in sys.stdin:
    print(len(json.loads(line)["completion"]) / 10)
PY
"$BIN" grpo "${COMMON[@]}" --reward-cmd "python3 $T/len.py" --out "$T/gb" --steps 3 --batch 2 --generations 4 --lr 1e-3 \
  --beta 0.04 --loss dapo --eval-every 3 > /dev/null 2> "$T/gb.err"; rc=$?
check "grpo --beta 0.04 --loss dapo: runs and logs a KL > 0 once the policy moved (rc $rc)" \
  "[ $rc = 0 ] && ge \$(mean_of $T/gb kl 1 3) 1e-9"
"$BIN" rloo "${COMMON[@]}" --reward-cmd "python3 $T/len.py" --out "$T/rl" --steps 3 --batch 2 --generations 4 --lr 1e-3 \
  --eval-every 3 > /dev/null 2> "$T/rl.err"; rc=$?
check "rloo: runs with its KL-shaped reward (kl logged > 0) (rc $rc)" "[ $rc = 0 ] && ge \$(mean_of $T/rl kl 1 3) 1e-9 && grep -q '\"command\":[[:space:]]*\"rloo\"' $T/rl/posttrain.json"
"$BIN" grpo "${COMMON[@]}" --reward arith --out "$T/gc" --steps 1 --batch 2 --generations 4 --lr 1e-4 --eval-every 1 \
  > /dev/null 2> "$T/gc.err"; rc=$?
# the command scores every completion by its length in characters / 10: a positive mean (tests/unit/test_rewards.c checks the numbers)
cmd_ok() { python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if "\"loss\"" in l][0]
sys.exit(not r["reward"] > 0)' "$T/gb/metrics.jsonl"; }
check "grpo --reward-cmd: the command's numbers are the rewards" cmd_ok
check "grpo --reward arith: runs (rc $rc)" "[ $rc = 0 ] && grep -q '\"val_reward\"' $T/gc/metrics.jsonl"

# ---- the calculator in generation
out=$("$BIN" generate --model "$T/calc" --user go --temperature 0 --max-tokens 24 --calc 2> /dev/null)
check "generate --calc: the call's result is spliced ('$out')" "[[ '$out' == *'<|calc|>77*33<|/calc|> → 2541'* ]]"
out=$("$BIN" generate --model "$T/calc" --user go --temperature 0 --max-tokens 24 2> /dev/null)
check "generate without --calc: the call, no result ('$out')" "[[ '$out' == *'<|calc|>77*33<|/calc|>'* && '$out' != *'→'* ]]"
# in rollouts: the greedy completion of "go" holds the spliced result only with --calc
echo '{"prompt": "go"}' > "$T/go.jsonl"
calc_reward() { "$BIN" grpo --policy "$T/calc" --prompts "$T/go.jsonl" --eval "$T/go.jsonl" --reward 'regex:<\|/calc\|> → 2541' \
  --eval-only --max-length 64 --max-new-tokens 40 "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["val_reward"])'; }
check "grpo --calc: rollouts splice the calculator's result" "[ \"\$(calc_reward --calc)\" = 1 ] && [ \"\$(calc_reward)\" = 0 ]"

# ---- --cot: the instruction joins the prompt the policy (and a reward command) sees
cat > "$T/cot.py" <<'PY'
import json, sys
for line in sys.stdin:
    print(int(json.loads(line)["prompt"].count("+0=\n\nLet's think step by step.") == 1))
PY
cot_reward() { "$BIN" grpo "${COMMON[@]}" --max-length 64 --reward-cmd "python3 $T/cot.py" --eval-only "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["val_reward"])'; }
check "grpo --cot: \"Let's think step by step.\" after the task, only when asked" "[ \"\$(cot_reward --cot)\" = 1 ] && [ \"\$(cot_reward)\" = 0 ]"

# ---- errors
err "grpo: --reward required" "--reward SPEC or --reward-cmd CMD is required" "$BIN" grpo --policy "$T/sft" --prompts "$T/tasks.jsonl" --out "$T/x"
err "grpo: unknown --loss" "unknown --loss 'ppo'" "$BIN" grpo "${COMMON[@]}" --reward arith --loss ppo --out "$T/x"
err "grpo: --generations 1" "invalid value for --generations" "$BIN" grpo "${COMMON[@]}" --reward arith --generations 1 --out "$T/x"
err "grpo: a bad regex" "missing closing parenthesis" "$BIN" grpo "${COMMON[@]}" --reward 'regex:(a' --out "$T/x"
err "grpo: arith needs answers" "noanswer.jsonl:2: the arith reward needs \"answer\"" \
  "$BIN" grpo --policy "$T/sft" --prompts "$T/noanswer.jsonl" --reward arith --max-length 40 --max-new-tokens 12 --out "$T/x"
err "grpo: a malformed task" "malformed.jsonl:2: \"prompt\" must be a string or a message list" \
  "$BIN" grpo --policy "$T/sft" --prompts "$T/malformed.jsonl" --reward arith --max-length 40 --max-new-tokens 12 --out "$T/x"
err "grpo: not a reward model" "not a reward model" "$BIN" grpo "${COMMON[@]}" --reward "$T/base" --out "$T/x"
err "grpo: a failing reward command" "--reward-cmd 'exit 4' failed (exit status 4)" \
  "$BIN" grpo "${COMMON[@]}" --reward-cmd "exit 4" --out "$T/x" --steps 1 --batch 1 --generations 2
err "rloo: no --beta" "unknown option '--beta'" "$BIN" rloo "${COMMON[@]}" --reward arith --beta 0.1 --out "$T/x"
err "grpo: LoRA refused" "does not train LoRA adapters yet" "$BIN" grpo "${COMMON[@]}" --reward arith --lora-rank 4 --out "$T/x"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
