#!/usr/bin/env bash
# End to end: `lmkit ppo` (RLHF with a value model; docs/rl.md) on a tiny generated task.
#   - the tiny policy of rl_lib.sh (a GPT-2 instruction-tuned to answer "a+0=" mostly with "the
#     answer is a"), and a reward model (`lmkit reward`) that learns to prefer "<answer>a</answer>";
#   - learning: 32 steps (4 iterations) raise the reward model's score of the greedy answers and of
#     the sampled ones;
#   - ppo runs against it: metrics.jsonl carries TRL's objective/kl, objective/scores,
#     objective/rlhf_reward, policy/clipfrac, policy/entropy, loss/value and loss/policy on every
#     step; OUT/value is the value model (a tokens head) beside the policy;
#   - the value model starts from the reward model (its score layer at every token) by default, or
#     from the policy with --value-init policy;
#   - determinism: the same command gives the same metrics and models; --resume from the first
#     iteration's checkpoint repeats the rest exactly (policy, value model and kl_coef of the
#     adaptive controller included);
#   - bad options and prompts are one clear error each.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/rl_lib.sh"
rl_setup
python3 - "$T" <<'PY'
import json, random, sys
d = sys.argv[1]
random.seed(7)
with open(f"{d}/prefs.jsonl", "w") as f:   # the reward model prefers the tagged answer
    for i in range(200):
        a = random.randrange(10)
        f.write(json.dumps({"prompt": f"{a}+0=", "chosen": f"<answer>{a}</answer>", "rejected": f"the answer is {a}"}) + "\n")
with open(f"{d}/bad.jsonl", "w") as f:
    f.write(json.dumps({"prompt": "1+0="}) + "\n" + json.dumps({"question": "2+0="}) + "\n")
PY
"$BIN" reward --model "$T/sft" --data "$T/prefs.jsonl" --max-length 40 --steps 30 --lr 1e-3 --quiet --out "$T/rm" > /dev/null 2>&1
check "policy and reward model trained" "[ -f $T/sft/model.safetensors ] && grep -q ForSequenceClassification $T/rm/config.json"

COMMON=(--policy "$T/sft" --reward "$T/rm" --prompts "$T/tasks.jsonl" --max-length 40 --max-new-tokens 10 --batch 2
        --ppo-epochs 2 --mini-batches 2 --lr 5e-4 --target-kl 1 --kl-horizon 100 --missing-eos-penalty 1 --quiet)
# ---- a run: 2 iterations of 2 epochs x 2 mini-batches = 8 steps
"$BIN" ppo "${COMMON[@]}" --out "$T/p" --steps 8 --save-every 4 > /dev/null 2> "$T/p.err"; rc=$?
check "ppo: runs (rc $rc)" "[ $rc = 0 ] && grep -q 'saved to' $T/p.err"
check "ppo: every step logs objective/kl, objective/scores, objective/rlhf_reward, policy/clipfrac, policy/entropy, loss/value, loss/policy" \
  "[ \$(grep '\"loss\"' $T/p/metrics.jsonl | grep '\"objective/kl\": ' | grep '\"objective/scores\": ' | grep '\"objective/rlhf_reward\": ' | grep '\"policy/clipfrac\": ' | grep '\"policy/entropy\": ' | grep '\"loss/value\": ' | grep -c '\"loss/policy\": ') = 8 ]"
fields_ok() { python3 - "$T/p/metrics.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
ok = all(math.isfinite(r[k]) for r in rows for k in r)
# a rollout batch's figures hold for the steps of its iteration; the first uses the starting kl_coef
ok &= rows[0]["objective/kl_coef"] == 0.05 and rows[0]["objective/scores"] == rows[3]["objective/scores"]
# the adaptive controller moved kl_coef for the second batch
ok &= rows[4]["objective/kl_coef"] != 0.05
# rlhf_reward = scores - kl_coef * kl
ok &= all(abs(r["objective/rlhf_reward"] - (r["objective/scores"] - r["objective/kl_coef"] * r["objective/kl"])) < 1e-4 for r in rows)
sys.exit(not ok)
PY
}
check "ppo: the metrics are consistent (iteration figures, adaptive kl_coef, rlhf_reward = scores - kl_coef kl)" fields_ok
check "ppo: OUT holds the policy (GPT2LMHeadModel) and OUT/value the value model (GPT2ForTokenClassification)" \
  "grep -q GPT2LMHeadModel $T/p/config.json && grep -q GPT2ForTokenClassification $T/p/value/config.json && [ -f $T/p/checkpoint-4/value/model.safetensors ]"
check "ppo: the value model started from the reward model (value_init reward)" "grep -q '\"value_init\":[[:space:]]*\"reward\"' $T/p/posttrain.json"

# ---- learning: the reward model's score of the greedy answers rises (4 iterations, lr 2e-3)
score_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["val_reward"])'; }
LEARN=(--policy "$T/sft" --reward "$T/rm" --prompts "$T/tasks.jsonl" --eval "$T/tasks.jsonl" --max-length 40 --max-new-tokens 10
       --batch 4 --ppo-epochs 4 --mini-batches 2 --missing-eos-penalty 1 --threads 2 --quiet)
before=$("$BIN" ppo "${LEARN[@]}" --eval-only | score_of)
"$BIN" ppo "${LEARN[@]}" --lr 2e-3 --steps 32 --eval-every 32 --out "$T/l" > /dev/null 2>&1
after=$(grep '"val_reward"' "$T/l/metrics.jsonl" | tail -1 | score_of)
check "ppo: the reward model's mean score of the greedy answers rises by > 0.3 in 32 steps (${before:-?} -> ${after:-?})" \
  "ge '${after:-0}' \$(python3 -c 'print(${before:-1} + 0.3)')"
first_last() { python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if "\"loss\"" in l]
print(rows[0]["objective/scores"] if sys.argv[2] == "first" else rows[-1]["objective/scores"])' "$T/l/metrics.jsonl" "$1"; }
s0=$(first_last first); s1=$(first_last last)
check "ppo: the sampled completions' mean score rises by > 0.5 from the first iteration to the fourth (${s0:-?} -> ${s1:-?})" \
  "ge '${s1:-0}' \$(python3 -c 'print(${s0:-1} + 0.5)')"

# ---- determinism and resume
curve() { grep '"loss"' "$1" | sed 's/, "tokens_per_sec": [^,]*, "step_ms": [^,]*//'; }
"$BIN" ppo "${COMMON[@]}" --out "$T/q" --steps 8 --save-every 4 > /dev/null 2>&1
check "ppo: the same seed gives the same metrics, policy and value model" \
  "diff -q <(curve $T/p/metrics.jsonl) <(curve $T/q/metrics.jsonl) > /dev/null && cmp -s $T/p/model.safetensors $T/q/model.safetensors && cmp -s $T/p/value/model.safetensors $T/q/value/model.safetensors"
# what a save killed mid-write leaves in OUT and in OUT/value (the final save writes the value model
# into OUT/value file by file): the next run in OUT removes it
mkdir -p "$T/r/value" "$T/r/checkpoint-2.tmp"
touch "$T/r/value/model.safetensors.tmp.4242" "$T/r/value/config.json.tmp.4243" "$T/r/optimizer.safetensors.tmp.4244"
"$BIN" ppo --resume "$T/p/checkpoint-4" --out "$T/r" --quiet > /dev/null 2> "$T/r.err"; rc=$?
check "ppo: a killed save's leftovers in OUT and OUT/value are removed" "[ -z \"\$(find $T/r -name '*.tmp*')\" ]"
check "ppo: --resume from checkpoint-4 repeats steps 5-8 exactly (rc $rc)" \
  "[ $rc = 0 ] && diff -q <(curve $T/p/metrics.jsonl | tail -4) <(curve $T/r/metrics.jsonl) > /dev/null"
check "ppo: the resumed policy and value model equal the uninterrupted ones" \
  "cmp -s $T/p/model.safetensors $T/r/model.safetensors && cmp -s $T/p/value/model.safetensors $T/r/value/model.safetensors"
check "ppo: the adaptive kl_coef is checkpointed" "grep -q '\"kl_coef\"' $T/p/checkpoint-4/trainer_state.json"

# ---- the value model from the policy, one epoch and one mini-batch (old log-probs from the update's own forward)
"$BIN" ppo "${COMMON[@]}" --value-init policy --ppo-epochs 1 --mini-batches 1 --out "$T/v" --steps 2 > /dev/null 2> "$T/v.err"; rc=$?
check "ppo --value-init policy --ppo-epochs 1: runs (rc $rc)" "[ $rc = 0 ] && grep -q '\"value_init\":[[:space:]]*\"policy\"' $T/v/posttrain.json && [ -f $T/v/value/model.safetensors ]"

# ---- errors
err "ppo: --steps a multiple of the iteration" "--steps must be a multiple of --ppo-epochs x --mini-batches (4)" \
  "$BIN" ppo "${COMMON[@]}" --out "$T/x" --steps 6
err "ppo: --save-every a multiple of the iteration" "--save-every must be a multiple" \
  "$BIN" ppo "${COMMON[@]}" --out "$T/x" --steps 8 --save-every 3
err "ppo: unknown --value-init" "unknown --value-init 'critic' (reward, policy)" "$BIN" ppo "${COMMON[@]}" --value-init critic --out "$T/x"
err "ppo: --value-init reward needs a reward model" "--value-init reward needs a reward-model directory" \
  "$BIN" ppo --policy "$T/sft" --reward arith --value-init reward --prompts "$T/tasks.jsonl" --out "$T/x"
err "ppo: a reward model that is not one" "$T/base: not a reward model" \
  "$BIN" ppo "${COMMON[@]}" --reward "$T/base" --out "$T/x" --steps 4
err "ppo: --gamma out of range" "--gamma" "$BIN" ppo "${COMMON[@]}" --gamma 1.5 --out "$T/x"
err "ppo: --ppo-epochs 0" "--ppo-epochs" "$BIN" ppo "${COMMON[@]}" --ppo-epochs 0 --out "$T/x"
err "ppo: a prompt line without \"prompt\"" "bad.jsonl:2: no \"prompt\"" \
  "$BIN" ppo --policy "$T/sft" --reward "$T/rm" --prompts "$T/bad.jsonl" --max-length 40 --max-new-tokens 10 --out "$T/x"
err "ppo: --policy required" "--policy DIR is required" "$BIN" ppo --reward "$T/rm" --prompts "$T/tasks.jsonl" --out "$T/x"
err "ppo: resume with a setting" "--vf-coef cannot be given with --resume" "$BIN" ppo --resume "$T/p" --vf-coef 0.5

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
