#!/usr/bin/env bash
# End to end: `lmkit dpo` and its kin on tiny generated data.
#   - a tiny GPT-2 pre-trained on a "reverse these words" corpus is instruction-tuned
#     (`lmkit sft`) on answers of two styles, the plain reversal and (two times in
#     three) one that hedges with "well, ..."; DPO on pairs preferring the plain style reaches >= 0.9
#     implicit-reward accuracy on held-out pairs (beta log pi/pi_ref higher for the
#     chosen answer: the policy moved toward it, relative to where it started);
#   - the reference log-probabilities are cached once in OUT/reference_logps.bin
#     (not for the reference-free simpo and orpo); --resume from a checkpoint
#     continues the loss curve bit-exactly;
#   - LoRA (--lora-rank): the reference is the base with the adapter off (also with
#     --adapter DIR continuing one), held-out accuracy >= 0.85, the optimizer state is
#     adapter-sized, resume is bit-exact;
#   - ipo, hinge, simpo and orpo train too (held-out accuracy >= 0.9);
#   - bad records are counted and skipped, malformed ones refused with file:line,
#     bad options and models refused with one error line.
source "$(dirname "$0")/lib.sh"
# the last evaluation's field of a run
last_val() { grep '"val_loss"' "$1/metrics.jsonl" | tail -1 | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$2"; }

python3 - "$T" <<'PY'
import json, random, sys
d = sys.argv[1]
random.seed(11)
W = ["sun", "moon", "red", "blue", "cat", "dog", "fish", "tree"]
def words(): return [random.choice(W) for _ in range(random.randint(2, 4))]
with open(f"{d}/corpus.txt", "w") as f:
    for _ in range(2000):
        w = words(); f.write("reverse: " + " ".join(w) + "\n" + " ".join(w[::-1]) + "\n")
with open(f"{d}/sft.jsonl", "w") as f:       # two answers in three hedge
    for i in range(600):
        w = words(); ans = " ".join(w[::-1])
        f.write(json.dumps({"prompt": "reverse: " + " ".join(w), "completion": ("well, " if i % 3 else "") + ans}) + "\n")
def pairs(name, n):
    rows = []
    for _ in range(n):
        w = words(); ans = " ".join(w[::-1])
        rows.append({"prompt": "reverse: " + " ".join(w), "chosen": ans, "rejected": "well, " + ans})
    with open(f"{d}/{name}.jsonl", "w") as f: f.write("".join(json.dumps(r) + "\n" for r in rows))
    return rows
pairs("prefs", 240)
dev = pairs("dev", 60)
recs = [dev[0],
        {"prompt": "reverse: sun", "chosen": "", "rejected": "sun"},
        {"prompt": "reverse: sun", "chosen": "sun", "rejected": "sun"},
        {"prompt": "reverse: " + "dog " * 60, "chosen": "dog", "rejected": "well, dog"},
        {"chosen": "\n\nHuman: reverse: red cat\n\nAssistant: cat red",
         "rejected": "\n\nHuman: reverse: red fish\n\nAssistant: well, fish red"}]
with open(f"{d}/bad.jsonl", "w") as f: f.write("".join(json.dumps(r) + "\n" for r in recs))
with open(f"{d}/malformed.jsonl", "w") as f:
    f.write(json.dumps(dev[0]) + "\n" + json.dumps({"prompt": "x", "chosen": "a", "rejected": "b", "margin": "big"}) + "\n")
PY

"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --special "<|endoftext|>" --special "<|im_start|>" \
  --special "<|im_end|>" --out "$T/tok" > /dev/null 2>&1
"$BIN" train --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 2 --heads 4 --dim 64 --context 64 --steps 30 \
  --lr 3e-3 --quiet --out "$T/base" > /dev/null 2>&1
"$BIN" sft --model "$T/base" --data "$T/sft.jsonl" --max-length 48 --steps 40 --lr 3e-3 --quiet --out "$T/sft" > /dev/null 2>&1
check "base and SFT models trained" "[ -f $T/sft/model.safetensors ]"

# ---- DPO (sigmoid)
RUN=(--model "$T/sft" --data "$T/prefs.jsonl" --eval "$T/dev.jsonl" --max-length 48 --batch 8 --lr 3e-4 --steps 24
     --save-every 12 --eval-every 12 --seed 3 --quiet)
"$BIN" dpo "${RUN[@]}" --out "$T/dpo" > /dev/null 2> "$T/dpo.err"; rc=$?
check "dpo: runs (rc $rc)" "[ $rc = 0 ] && grep -q 'saved to' $T/dpo.err"
acc=$(last_val "$T/dpo" "val_rewards/accuracies")
check "dpo: held-out implicit-reward accuracy ${acc:-?} >= 0.9" "ge '$acc' 0.9"
check "dpo: TRL's metrics in the evaluation lines" \
  "tail -1 $T/dpo/metrics.jsonl | grep -q '\"val_rewards/chosen\": .*\"val_rewards/rejected\": .*\"val_rewards/margins\": .*\"val_rewards/accuracies\": '"
check "dpo: and on every training line, over the step's pairs" \
  "[ \$(grep '\"loss\"' $T/dpo/metrics.jsonl | grep -c '\"rewards/chosen\": .*\"rewards/accuracies\": ') = 24 ]"
check "dpo: the reference is computed once and cached" \
  "[ \$(grep -c 'reference log-probabilities of 300 pairs' $T/dpo.err) = 1 ] && [ \$(stat -c %s $T/dpo/reference_logps.bin) = \$((24 + 8 * 600)) ]"
check "dpo: the output is a GPT2LMHeadModel with its tokenizer" \
  "grep -q GPT2LMHeadModel $T/dpo/config.json && [ -f $T/dpo/tokenizer.json ]"
# ---- resume from the step-12 checkpoint: steps 13..24 repeat exactly
curve() { grep '"loss"' "$1" | sed 's/, "tokens_per_sec.*//'; }
curve "$T/dpo/metrics.jsonl" | tail -12 > "$T/dpo.tail"
"$BIN" dpo --resume "$T/dpo/checkpoint-12" --out "$T/dpo2" --quiet > /dev/null 2> "$T/dpo2.err"; rc=$?
curve "$T/dpo2/metrics.jsonl" > "$T/dpo2.all" 2> /dev/null
check "dpo: resume continues the loss curve bit-exactly (rc $rc)" "[ -s $T/dpo2.all ] && diff -q $T/dpo.tail $T/dpo2.all > /dev/null"
check "dpo: resumed model equals the uninterrupted one" "cmp -s $T/dpo/model.safetensors $T/dpo2/model.safetensors"
check "dpo: resume reads the cached reference (no second reference pass)" "! grep -q 'reference log-probabilities' $T/dpo2.err"
check "dpo: the resumed run holds its settings and reference" "[ -f $T/dpo2/posttrain.json ] && cmp -s $T/dpo/reference_logps.bin $T/dpo2/reference_logps.bin"
err "dpo: resume with a setting" "--beta cannot be given with --resume" "$BIN" dpo --resume "$T/dpo" --beta 0.5

# ---- LoRA: only the adapters train; the reference is the base with the adapter switched off
st_shape() { python3 -c 'import json,struct,sys; raw=open(sys.argv[1],"rb").read(); h=json.loads(raw[8:8+struct.unpack("<Q",raw[:8])[0]]); print(*h[sys.argv[2]]["shape"])' "$1" "$2"; }
# the first training line's field
first() { grep '"loss"' "$1/metrics.jsonl" | head -1 | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$2"; }
LRUN=(--model "$T/sft" --data "$T/prefs.jsonl" --eval "$T/dev.jsonl" --max-length 48 --batch 8 --lr 3e-3 --steps 16
      --save-every 8 --eval-every 8 --seed 3 --quiet --lora-rank 8)
"$BIN" dpo "${LRUN[@]}" --out "$T/dpol" > /dev/null 2> "$T/dpol.err"; rc=$?
check "dpo LoRA: runs, OUT is the adapter (rc $rc)" \
  "[ $rc = 0 ] && grep -q 'saved the LoRA adapter' $T/dpol.err && grep -q CAUSAL_LM $T/dpol/adapter_config.json && [ ! -e $T/dpol/model.safetensors ]"
lacc=$(last_val "$T/dpol" "val_rewards/accuracies")
check "dpo LoRA: held-out implicit-reward accuracy ${lacc:-?} >= 0.85" "ge '$lacc' 0.85"
check "dpo LoRA: the reference (base, adapter off) equals the full run's (the same starting model)" \
  "cmp -s $T/dpo/reference_logps.bin $T/dpol/reference_logps.bin"
ntr=$(grep -o '[0-9]* trainable values' "$T/dpol.err" | awk '{print $1}'); nall=$(grep -o 'the [0-9]* of the base frozen' "$T/dpol.err" | awk '{print $2}')
check "dpo LoRA: optimizer state adapter-sized ($ntr of ${nall:-?} values)" \
  "[ \"\$(st_shape $T/dpol/checkpoint-8/optimizer.safetensors exp_avg)\" = '${ntr:-x}' ] && [ \$((${ntr:-1} * 5)) -lt ${nall:-0} ]"
curve "$T/dpol/metrics.jsonl" | tail -8 > "$T/dpol.tail"
"$BIN" dpo --resume "$T/dpol/checkpoint-8" --out "$T/dpol2" --quiet > /dev/null 2> "$T/dpol2.err"; rc=$?
curve "$T/dpol2/metrics.jsonl" > "$T/dpol2.all" 2> /dev/null
check "dpo LoRA: resume continues the loss curve bit-exactly (rc $rc)" "[ -s $T/dpol2.all ] && diff -q $T/dpol.tail $T/dpol2.all > /dev/null"
check "dpo LoRA: resumed adapter equals the uninterrupted one" "cmp -s $T/dpol/adapter_model.safetensors $T/dpol2/adapter_model.safetensors"
# --adapter: the policy starts at the trained adapter, the reference stays the base (adapter off): the
# cached log-probs are the base's, and the first step's implicit rewards are already apart (a fresh
# adapter starts at the reference: margin 0)
"$BIN" dpo --model "$T/sft" --data "$T/prefs.jsonl" --eval "$T/dev.jsonl" --max-length 48 --batch 8 --lr 3e-3 --steps 2 \
  --eval-every 2 --seed 3 --quiet --adapter "$T/dpol" --out "$T/dpol3" > /dev/null 2> "$T/dpol3.err"; rc=$?
check "dpo --adapter: the reference is the base with the adapter off (rc $rc)" \
  "[ $rc = 0 ] && cmp -s $T/dpo/reference_logps.bin $T/dpol3/reference_logps.bin"
m0=$(first "$T/dpol" "rewards/margins"); m3=$(first "$T/dpol3" "rewards/margins")
check "dpo --adapter: step 1 starts away from the reference (margin ${m3:-?}; fresh adapter ${m0:-?})" \
  "python3 -c 'import sys; sys.exit(not (abs(float(\"${m0:-1}\")) < 1e-6 and float(\"${m3:-0}\") > 0.1))'"
a3=$(last_val "$T/dpol3" "val_rewards/accuracies")
check "dpo --adapter: goes on from the adapter (held-out accuracy ${a3:-?} >= 0.85)" "ge '$a3' 0.85"
err "dpo: --adapter with --lora-rank" "cannot be given with it" "$BIN" dpo --model "$T/sft" --data "$T/prefs.jsonl" --adapter "$T/dpol" --lora-rank 4 --out "$T/x5"

# ---- the kin
for spec in "ipo 0.1 3e-4" "hinge 0.1 3e-4" "simpo 2.0 1e-3" "orpo 0.1 2e-3"; do
  set -- $spec
  "$BIN" dpo --model "$T/sft" --data "$T/prefs.jsonl" --eval "$T/dev.jsonl" --max-length 48 --batch 8 --steps 12 \
    --eval-every 12 --seed 3 --quiet --loss "$1" --beta "$2" --lr "$3" --out "$T/$1" > /dev/null 2> "$T/$1.err"; rc=$?
  a=$(last_val "$T/$1" "val_rewards/accuracies" 2> /dev/null)
  check "$1: held-out accuracy ${a:-?} >= 0.9 (rc $rc)" "[ $rc = 0 ] && ge '$a' 0.9"
done
check "simpo and orpo use no reference" "[ ! -e $T/simpo/reference_logps.bin ] && [ ! -e $T/orpo/reference_logps.bin ] && ! grep -q reference $T/orpo.err"

# ---- bad input
"$BIN" dpo --model "$T/sft" --data "$T/bad.jsonl" --max-length 48 --steps 1 --quiet --out "$T/bad" > /dev/null 2> "$T/bad.err"; rc=$?
check "bad records: counted and skipped (rc $rc)" \
  "[ $rc = 0 ] && grep -q 'skipped 1 pairs with an empty response, 1 identical, 1 longer than 48 tokens, 1 without a shared prompt' $T/bad.err && grep -q ' 1 pairs (' $T/bad.err"
err "malformed record: file:line and field" "malformed.jsonl:2: margin must be a number" \
  "$BIN" dpo --model "$T/sft" --data "$T/malformed.jsonl" --out "$T/x1"
err "unknown loss" "unknown --loss 'kto' (sigmoid, ipo, hinge, simpo, orpo)" "$BIN" dpo --model "$T/sft" --data "$T/prefs.jsonl" --loss kto --out "$T/x2"
err "beta must be positive" "invalid value for --beta" "$BIN" dpo --model "$T/sft" --data "$T/prefs.jsonl" --beta 0 --out "$T/x3"
"$BIN" reward --model "$T/sft" --data "$T/dev.jsonl" --max-length 48 --steps 1 --quiet --out "$T/dpo_rm" > /dev/null 2>&1
err "a reward model is not a policy" "preference optimisation needs a decoder with an LM head" \
  "$BIN" dpo --model "$T/dpo_rm" --data "$T/prefs.jsonl" --out "$T/x4"
err "missing --out" "--out DIR is required" "$BIN" dpo --model "$T/sft" --data "$T/prefs.jsonl"
check "dpo --help lists the losses" "$BIN dpo --help | grep -q 'orpo'"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
