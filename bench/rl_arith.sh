#!/usr/bin/env bash
# RL on arithmetic word problems (issue #11's benchmark; docs/rl.md "bench/rl_arith").
#   1. data: bench/rl_arith_data.py (2-3 digit +, -, *; one and two steps; worked solutions with
#      calculator calls; train / held-out split; 4-digit multiplications);
#   2. a small GPT pre-trained on the train problems' worked solutions, then SFT'd on them (with
#      the chain-of-thought instruction: the worked solution; without: the direct answer);
#   3. GRPO from the SFT model with the arith reward (--cot --calc, --beta for a KL);
#   4. a reward model on (correct vs wrong last step) pairs, then PPO from the SFT model against
#      it with the same number of optimiser steps;
#   5. rollout throughput, batched vs one sequence at a time, at 16 sequences (bench_rollout).
# Reports held-out accuracy (greedy, arith) of SFT, GRPO and PPO and their KL to the reference;
# the calculator vs none on 4-digit multiplication; CoT vs direct on the two-step problems;
# reward and accuracy curves as PNG (gnuplot: apt-get install gnuplot-nox); all into $WORK.
#   bash bench/rl_arith.sh                  full run (about an hour on 2 quiet cores)
#   SCALE=quick bash bench/rl_arith.sh      a small run (minutes on a quiet machine) to check the path
#   SCALE=medium bash bench/rl_arith.sh     in between (4 layers x 128, 1200 + 800 steps, 40 RL steps)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/lmkit
W=${WORK:-runs/rl_arith}
SCALE=${SCALE:-full}
THREADS=${THREADS:-2}
[ -x "$BIN" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$BUILD" -j "$(nproc)"; }
[ -x "$BUILD/bench_rollout" ] || cmake --build "$BUILD" --target bench_rollout > /dev/null
export OMP_WAIT_POLICY=passive
if [ "$SCALE" = medium ]; then
  N_TRAIN=3000; N_HELD=100; LAYERS=4; DIM=128; HEADS=4; VOCAB=512; PRE=1200; SFT=800; RM=300; RL=40; EVAL_EVERY=20; ROLL="16 32 16 1"
elif [ "$SCALE" = quick ]; then
  N_TRAIN=1500; N_HELD=100; LAYERS=2; DIM=96; HEADS=4; VOCAB=512; PRE=300; SFT=300; RM=150; RL=12; EVAL_EVERY=4; ROLL="16 32 16 1"
else
  N_TRAIN=8000; N_HELD=300; LAYERS=4; DIM=192; HEADS=6; VOCAB=1024; PRE=3000; SFT=1500; RM=600; RL=200; EVAL_EVERY=40; ROLL="16 32 32 3"
fi
CTX=192; NEW=64
mkdir -p "$W"
echo "load: $(uptime)"
echo "scale: $SCALE ($LAYERS layers x $DIM, vocab $VOCAB, context $CTX; $N_TRAIN train / $N_HELD held-out problems; $RL RL steps)"
t_all=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t_all )) s] $*"; }
secs() { local t0=$1; echo $(( $(date +%s) - t0 )); }

# ---- data, pre-training, SFT
/usr/bin/python3 bench/rl_arith_data.py "$W/data" "$N_TRAIN" "$N_HELD"
D=$W/data
[ -s "$W/tok/tokenizer.json" ] || "$BIN" tokenizer train --data "$D/corpus.txt" --vocab-size $VOCAB --out "$W/tok" > /dev/null 2>&1
if [ ! -s "$W/base/model.safetensors" ]; then
  t0=$(date +%s)
  "$BIN" train --tokenizer "$W/tok" --data "$D/corpus.txt" --layers $LAYERS --heads $HEADS --dim $DIM --context $CTX \
    --batch 16 --steps $PRE --lr 2e-3 --threads $THREADS --quiet --out "$W/base" 2>&1 | tail -1
  stamp "pre-trained in $(secs $t0) s"
fi
if [ ! -s "$W/sft/model.safetensors" ]; then
  t0=$(date +%s)
  "$BIN" sft --model "$W/base" --data "$D/sft.jsonl" --max-length $CTX --batch 16 --steps $SFT --lr 1e-3 --threads $THREADS \
    --quiet --out "$W/sft" 2>&1 | tail -1
  stamp "SFT in $(secs $t0) s"
fi

# greedy accuracy (arith) of model $1 on tasks $2, more flags after
acc() {
  local m=$1 f=$2; shift 2
  "$BIN" grpo --policy "$m" --prompts "$f" --eval "$f" --reward arith --eval-only --max-length $CTX --max-new-tokens $NEW \
    --threads $THREADS --quiet "$@" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["val_reward"])'
}
sft_held=$(acc "$W/sft" "$D/held.jsonl" --cot --calc)
sft_multi_direct=$(acc "$W/sft" "$D/held_multi.jsonl" --calc)
sft_multi_cot=$(acc "$W/sft" "$D/held_multi.jsonl" --cot --calc)
mul4_calc=$(acc "$W/sft" "$D/mul4.jsonl" --cot --calc)
mul4_none=$(acc "$W/sft" "$D/mul4.jsonl" --cot)
stamp "SFT evaluated"

# ---- GRPO
RLF=(--prompts "$D/tasks.jsonl" --eval "$D/held.jsonl" --cot --calc --max-length $CTX --max-new-tokens $NEW
     --steps $RL --eval-every $EVAL_EVERY --threads $THREADS --quiet)
t0=$(date +%s)
"$BIN" grpo --policy "$W/sft" "${RLF[@]}" --reward arith --beta 0.04 --batch 4 --generations 8 --lr 2e-5 \
  --out "$W/grpo" > /dev/null 2> "$W/grpo.err" || { tail -3 "$W/grpo.err"; exit 1; }
grpo_s=$(secs $t0)
grpo_held=$(acc "$W/grpo" "$D/held.jsonl" --cot --calc)
stamp "GRPO: $RL steps in $grpo_s s"

# ---- reward model, PPO
t0=$(date +%s)
"$BIN" reward --model "$W/sft" --data "$D/prefs.jsonl" --max-length $CTX --batch 8 --steps $RM --lr 5e-4 --val-fraction 0.1 --threads $THREADS \
  --quiet --out "$W/rm" > /dev/null 2> "$W/rm.err" || { tail -3 "$W/rm.err"; exit 1; }
rm_acc=$(/usr/bin/python3 -c '
import json, sys
v = [json.loads(l)["val_accuracy"] for l in open(sys.argv[1]) if "val_accuracy" in l]
print(v[-1] if v else "?")' "$W/rm/metrics.jsonl")
stamp "reward model: $RM steps in $(secs $t0) s, held-out pair accuracy $rm_acc"
ppo_held=skipped; ppo_kl=skipped; ppo_s=0
if "$BIN" ppo --help > /dev/null 2>&1; then
  t0=$(date +%s)
  "$BIN" ppo --policy "$W/sft" --reward "$W/rm" "${RLF[@]}" --batch 16 --ppo-epochs 4 --mini-batches 1 --lr 2e-5 \
    --out "$W/ppo" > /dev/null 2> "$W/ppo.err" || { tail -3 "$W/ppo.err"; exit 1; }
  ppo_s=$(secs $t0)
  ppo_held=$(acc "$W/ppo" "$D/held.jsonl" --cot --calc)
  stamp "PPO: $RL steps in $ppo_s s"
else
  echo "PPO: skipped ('lmkit ppo' is not in this build)"
fi

# ---- curves and KL
/usr/bin/python3 - "$W" <<'PY'
import json, os, sys
w = sys.argv[1]
out = {}
for run, reward, kl in (("grpo", "reward", "kl"), ("ppo", "objective/scores", "objective/kl")):
    p = f"{w}/{run}/metrics.jsonl"
    if not os.path.exists(p):
        continue
    rows = [json.loads(l) for l in open(p)]
    train = [r for r in rows if reward in r]
    with open(f"{w}/{run}_curve.tsv", "w") as f:
        for r in train: f.write(f"{r['step']}\t{r[reward]}\n")
    with open(f"{w}/{run}_val.tsv", "w") as f:
        for r in rows:
            if "val_reward" in r: f.write(f"{r['step']}\t{r['val_reward']}\n")
    tail = train[-10:]
    out[run] = sum(r[kl] for r in tail) / max(1, len(tail))
json.dump(out, open(f"{w}/kl.json", "w"))
PY
grpo_kl=$(/usr/bin/python3 -c 'import json,sys; print("%.4g" % json.load(open(sys.argv[1]))["grpo"])' "$W/kl.json")
[ -s "$W/ppo_curve.tsv" ] && ppo_kl=$(/usr/bin/python3 -c 'import json,sys; print("%.4g" % json.load(open(sys.argv[1]))["ppo"])' "$W/kl.json")
if command -v gnuplot > /dev/null; then
  plots="'$W/grpo_curve.tsv' using 1:2 with lines title 'GRPO reward (sampled)', '$W/grpo_val.tsv' using 1:2 with linespoints title 'GRPO held-out accuracy'"
  [ -s "$W/ppo_curve.tsv" ] && plots="$plots, '$W/ppo_curve.tsv' using 1:2 with lines title 'PPO reward-model score', '$W/ppo_val.tsv' using 1:2 with linespoints title 'PPO held-out reward-model score'"
  gnuplot -e "set terminal pngcairo size 900,500; set output '$W/curves.png'; set xlabel 'step'; set key bottom right; plot $plots" \
    2> /dev/null || gnuplot -e "set terminal png size 900,500; set output '$W/curves.png'; set xlabel 'step'; plot $plots"
  echo "curves: $W/curves.png"
else
  echo "curves: gnuplot not found (apt-get install gnuplot-nox); the data are in $W/*_curve.tsv, $W/*_val.tsv"
fi

# ---- rollout throughput
# shellcheck disable=SC2086
roll=$("$BUILD/bench_rollout" $THREADS $ROLL 2>&1 | tail -4) || roll="bench_rollout failed: $roll"

cat <<EOF | tee "$W/report.txt"
== bench/rl_arith ($SCALE) on $(nproc) cores; load at the end: $(cut -d' ' -f1-3 /proc/loadavg)
held-out accuracy (greedy, arith, --cot --calc; $N_HELD problems):
  SFT   $sft_held
  GRPO  $grpo_held   ($RL steps, $grpo_s s; KL to the SFT model (k3, last 10 steps) $grpo_kl)
  PPO   $ppo_held   ($RL steps, $ppo_s s; KL (k1 per completion, last 10 steps) $ppo_kl; reward model pair accuracy $rm_acc)
two-step held-out problems, SFT model with the calculator: direct $sft_multi_direct, chain-of-thought $sft_multi_cot
4-digit multiplication (100), SFT model, chain-of-thought: calculator $mul4_calc, no calculator $mul4_none
rollouts, GPT-2 124M random weights, 16 sequences (bench_rollout $THREADS $ROLL: threads, rows, prompt, new tokens, runs):
$roll
EOF
stamp "done"
