#!/usr/bin/env bash
# RL on arithmetic word problems (issue #11's benchmark; docs/rl.md "bench/rl_arith").
#   1. data: bench/rl_arith_data.py (2-3 digit +, -, *; one and two steps; worked solutions with
#      calculator calls; train / held-out split; 2-4 digit multiplications whose answer copies the
#      calculator's result; held-out 4-digit multiplications);
#   2. a small GPT pre-trained on the train problems' worked solutions, then SFT'd on them (with the
#      chain-of-thought instruction: the worked solution; without: the direct answer), saving a
#      checkpoint every SFT_SAVE steps;
#   3. RL starts from the first SFT checkpoint whose greedy accuracy on 100 *train* tasks (dev.jsonl)
#      is at least START_DEV (0.6): there it samples right answers 30-60% of the time at TEMP 0.5, so
#      GRPO's groups carry signal, and it still has room (session 6 started at 0.3: it sampled right
#      answers 3-15% of the time, most groups were all wrong, and GRPO stayed flat);
#   4. GRPO from there with the arith reward (--cot --calc, 4 tasks x 16 completions, lr 2e-4,
#      --beta 0.04 for a KL);
#   5. a reward model (from the final SFT model) on preference pairs whose wrong side differs
#      visibly (answer off by 1-10, two digits swapped, the last step's operation changed, a digit
#      of the problem's numbers miscopied into a call, and the RL start's own wrong greedy answers
#      on train tasks), its pair accuracy on a held-out 10%;
#      PPO from the RL start against it, with about the same time as GRPO (PPO_STEPS), lr 3e-5 and
#      a KL penalty of KL_COEF (0.2: at TRL's 0.05 and lr 1e-4 the policy drifted 4 nats from the
#      start and lost half its accuracy);
#   6. rollout throughput, batched vs one sequence at a time, at 16 sequences (bench_rollout).
# Reports held-out accuracy (greedy, arith) before and after GRPO and PPO and their KL to the
# reference; the calculator vs none on 4-digit multiplication; CoT vs direct on the two-step
# problems; reward and accuracy curves as PNG (gnuplot: apt-get install gnuplot-nox); all into $WORK.
#   bash bench/rl_arith.sh --quick          a 2-3 minute run that checks the path (figures meaningless)
#   SCALE=medium bash bench/rl_arith.sh     4 layers x 128, 450 + 1000 steps (about 40 min at THREADS=1, load 15-20;
#                                           with WORK's tokenizer, base and SFT model reused: RL and the rest, ~20 min)
#   bash bench/rl_arith.sh                  4 layers x 192, 3000 pre-training steps (about an hour on 2 quiet cores)
# Environment: BUILD (build), WORK (runs/rl_arith), SCALE (full|medium|quick), THREADS (2), TEMP (rollout
# temperature, 0.5), START_DEV (0.6), KL_COEF (PPO's, 0.2).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = --quick ] && SCALE=quick
BUILD=${BUILD:-build}
BIN=$BUILD/lmkit
SCALE=${SCALE:-full}
W=${WORK:-runs/rl_arith}
THREADS=${THREADS:-2}
[ -x "$BIN" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$BUILD" -j "$(nproc)"; }
[ -x "$BUILD/bench_rollout" ] || cmake --build "$BUILD" --target bench_rollout > /dev/null
export OMP_WAIT_POLICY=passive
if [ "$SCALE" = medium ]; then
  N_TRAIN=3000; N_HELD=100; LAYERS=4; DIM=128; HEADS=4; VOCAB=512; CTX=128; PRE=450; SFT=1000; SFT_SAVE=50; RM=200
  GRPO_STEPS=40; PPO_STEPS=80; SAVE=8; ROLL="16 32 16 1"
elif [ "$SCALE" = quick ]; then
  N_TRAIN=600; N_HELD=50; LAYERS=2; DIM=64; HEADS=2; VOCAB=400; CTX=128; PRE=100; SFT=60; SFT_SAVE=20; RM=40
  GRPO_STEPS=4; PPO_STEPS=8; SAVE=4; ROLL="16 8 4 1"
else
  N_TRAIN=8000; N_HELD=300; LAYERS=4; DIM=192; HEADS=6; VOCAB=1024; CTX=192; PRE=3000; SFT=1500; SFT_SAVE=50; RM=600
  GRPO_STEPS=200; PPO_STEPS=400; SAVE=40; ROLL="16 32 32 3"
fi
NEW=$(( CTX > 128 ? 64 : 56 ))   # a completion fits in 56 tokens; the longest prompt (CoT, template) in 72
mkdir -p "$W"
echo "load: $(uptime)"
echo "scale: $SCALE ($LAYERS layers x $DIM, vocab $VOCAB, context $CTX; $N_TRAIN train / $N_HELD held-out problems;" \
     "GRPO $GRPO_STEPS steps, PPO $PPO_STEPS steps)"
t_all=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t_all )) s] $*"; }
secs() { local t0=$1; echo $(( $(date +%s) - t0 )); }
py() { /usr/bin/python3 "$@"; }

# ---- data, pre-training, SFT
py bench/rl_arith_data.py "$W/data" "$N_TRAIN" "$N_HELD"
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
    --save-every $SFT_SAVE --keep-checkpoints 0 --quiet --out "$W/sft" 2>&1 | tail -1
  stamp "SFT in $(secs $t0) s"
fi

# greedy accuracy (arith) of model $1 on tasks $2, more flags after
acc() {
  local m=$1 f=$2; shift 2
  "$BIN" grpo --policy "$m" --prompts "$f" --eval "$f" --reward arith --eval-only --max-length $CTX --max-new-tokens $NEW \
    --threads $THREADS --quiet "$@" | py -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["val_reward"])'
}
sft_held=$(acc "$W/sft" "$D/held.jsonl" --cot --calc)
sft_multi_direct=$(acc "$W/sft" "$D/held_multi.jsonl" --calc)
sft_multi_cot=$(acc "$W/sft" "$D/held_multi.jsonl" --cot --calc)
mul4_calc=$(acc "$W/sft" "$D/mul4.jsonl" --cot --calc)
mul4_none=$(acc "$W/sft" "$D/mul4.jsonl" --cot)
stamp "SFT evaluated (held-out $sft_held)"

# ---- the RL start: the first SFT checkpoint at >= START_DEV on the train tasks of dev.jsonl (the final
# model when none is)
START=$W/sft; start_step=$SFT; start_dev="(final)"
START_DEV=${START_DEV:-0.6}
for c in $(cd "$W/sft" && ls -d checkpoint-[0-9]* | sort -t- -k2 -n); do
  a=$(acc "$W/sft/$c" "$D/dev.jsonl" --cot --calc)
  echo "  SFT $c: dev (train tasks) accuracy $a"
  if py -c 'import sys; sys.exit(float(sys.argv[1]) < float(sys.argv[2]))' "$a" "$START_DEV"; then
    START=$W/sft/$c; start_step=${c#checkpoint-}; start_dev=$a; break
  fi
done
start_held=$(acc "$START" "$D/held.jsonl" --cot --calc)
stamp "RL starts from $START (SFT step $start_step of $SFT; dev $start_dev, held-out $start_held)"

# ---- GRPO
# rollouts at temperature 0.5 (TEMP): the model's errors are single digits copied wrongly into a
# calculator call, and each digit's error rate grows with the temperature (session 6's medium start,
# 0.61 greedy: 0.33 of its samples right at 0.5, 0.13 at 0.8; its 0.34-greedy checkpoint: 0.16 and 0.06)
TEMP=${TEMP:-0.5}
RLF=(--prompts "$D/tasks.jsonl" --eval "$D/held.jsonl" --cot --calc --max-length $CTX --max-new-tokens $NEW
     --temperature "$TEMP" --save-every $SAVE --keep-checkpoints 0 --threads $THREADS --quiet)
t0=$(date +%s)
rm -rf "$W/grpo"
"$BIN" grpo --policy "$START" "${RLF[@]}" --steps $GRPO_STEPS --eval-every $SAVE --reward arith --beta 0.04 --batch 4 \
  --generations 16 --lr 2e-4 --out "$W/grpo" > /dev/null 2> "$W/grpo.err" || { tail -3 "$W/grpo.err"; exit 1; }
grpo_s=$(secs $t0)
grpo_held=$(acc "$W/grpo" "$D/held.jsonl" --cot --calc)
stamp "GRPO: $GRPO_STEPS steps in $grpo_s s, held-out $start_held -> $grpo_held"

# ---- reward model: synthetic pairs + the RL start's own wrong greedy answers on train tasks
rm -f "$D/own.jsonl"
sed -n "101,$((100 + N_TRAIN / 6))p" "$D/tasks.jsonl" > "$D/samples.jsonl"
"$BIN" grpo --policy "$START" --prompts "$D/samples.jsonl" --eval "$D/samples.jsonl" --eval-only --cot --calc \
  --reward-cmd "/usr/bin/python3 bench/rl_arith_data.py record $D/samples.jsonl $D/own.jsonl" \
  --max-length $CTX --max-new-tokens $NEW --threads $THREADS --quiet > /dev/null
py bench/rl_arith_data.py prefs "$D" "$D/own.jsonl"
t0=$(date +%s)
rm -rf "$W/rm"
"$BIN" reward --model "$W/sft" --data "$D/prefs.jsonl" --max-length $CTX --batch 8 --steps $RM --lr 5e-4 --val-fraction 0.1 \
  --threads $THREADS --quiet --out "$W/rm" > /dev/null 2> "$W/rm.err" || { tail -3 "$W/rm.err"; exit 1; }
rm_acc=$(py -c '
import json, sys
v = [json.loads(l)["val_accuracy"] for l in open(sys.argv[1]) if "val_accuracy" in l]
print("%.3f" % v[-1] if v else "?")' "$W/rm/metrics.jsonl")
stamp "reward model: $RM steps in $(secs $t0) s, held-out pair accuracy $rm_acc"

# ---- PPO
t0=$(date +%s)
rm -rf "$W/ppo"
"$BIN" ppo --policy "$START" --reward "$W/rm" "${RLF[@]}" --steps $PPO_STEPS --eval-every $SAVE --batch 16 --ppo-epochs 4 \
  --mini-batches 1 --lr 3e-5 --kl-coef "${KL_COEF:-0.2}" --missing-eos-penalty 1 --out "$W/ppo" > /dev/null 2> "$W/ppo.err" \
  || { tail -3 "$W/ppo.err"; exit 1; }
ppo_s=$(secs $t0)
ppo_held=$(acc "$W/ppo" "$D/held.jsonl" --cot --calc)
stamp "PPO: $PPO_STEPS steps in $ppo_s s, held-out $start_held -> $ppo_held"

# ---- curves: held-out accuracy of every checkpoint (PPO's own eval is the reward model's score)
: > "$W/ppo_acc.tsv"
printf '0\t%s\n' "$start_held" > "$W/ppo_acc.tsv"
for c in $(cd "$W/ppo" && ls -d checkpoint-[0-9]* | sort -t- -k2 -n); do
  printf '%s\t%s\n' "${c#checkpoint-}" "$(acc "$W/ppo/$c" "$D/held.jsonl" --cot --calc)" >> "$W/ppo_acc.tsv"
done
printf '%s\t%s\n' "$PPO_STEPS" "$ppo_held" >> "$W/ppo_acc.tsv"
py - "$W" "$start_held" <<'PY'
import json, sys
w, start = sys.argv[1], float(sys.argv[2])
out = {}
for run, reward, kl in (("grpo", "reward", "kl"), ("ppo", "objective/scores", "objective/kl")):
    rows = [json.loads(l) for l in open(f"{w}/{run}/metrics.jsonl")]
    train = [r for r in rows if reward in r]
    with open(f"{w}/{run}_curve.tsv", "w") as f:   # step, reward, its mean over the last 8 steps
        for i, r in enumerate(train):
            last = [x[reward] for x in train[max(0, i - 7): i + 1]]
            f.write(f"{r['step']}\t{r[reward]}\t{sum(last) / len(last)}\n")
    if run == "grpo":
        with open(f"{w}/grpo_acc.tsv", "w") as f:
            f.write(f"0\t{start}\n")
            for r in rows:
                if "val_reward" in r: f.write(f"{r['step']}\t{r['val_reward']}\n")
    tail = train[-10:]
    out[run] = sum(r[kl] for r in tail) / max(1, len(tail))
json.dump(out, open(f"{w}/kl.json", "w"))
PY
grpo_kl=$(py -c 'import json,sys; print("%.4g" % json.load(open(sys.argv[1]))["grpo"])' "$W/kl.json")
ppo_kl=$(py -c 'import json,sys; print("%.4g" % json.load(open(sys.argv[1]))["ppo"])' "$W/kl.json")
if command -v gnuplot > /dev/null; then
  g="set xlabel 'step'; set key below; set yrange [*:*];"
  gnuplot -e "set terminal pngcairo size 1200,560; set output '$W/curves.png'; set multiplot layout 1,2;
    set title 'GRPO (arith reward, $grpo_s s)'; $g
    plot '$W/grpo_curve.tsv' using 1:2 with lines lc rgb '#c0a0e0' title 'reward (sampled accuracy of the step)', '$W/grpo_curve.tsv' using 1:3 with lines lw 2 title '... its mean over 8 steps', '$W/grpo_acc.tsv' using 1:2 with linespoints lw 2 title 'held-out accuracy (greedy)';
    set title 'PPO (reward model, $ppo_s s)'; $g set ytics nomirror; set y2tics; set y2label 'reward-model score';
    plot '$W/ppo_curve.tsv' using 1:2 axes x1y2 with lines lc rgb '#c0a0e0' title 'reward-model score (sampled, right axis)', '$W/ppo_curve.tsv' using 1:3 axes x1y2 with lines lw 2 title '... its mean over 8 steps', '$W/ppo_acc.tsv' using 1:2 with linespoints lw 2 title 'held-out accuracy (greedy)';
    unset multiplot" 2> "$W/gnuplot.err" || echo "gnuplot failed: $(head -3 "$W/gnuplot.err")"
  echo "curves: $W/curves.png"
else
  echo "curves: gnuplot not found (apt-get install gnuplot-nox); the data are in $W/*_curve.tsv, $W/*_acc.tsv"
fi

# ---- rollout throughput
# shellcheck disable=SC2086
roll=$("$BUILD/bench_rollout" $THREADS $ROLL 2>&1 | tail -4) || roll="bench_rollout failed: $roll"

cat <<EOF | tee "$W/report.txt"
== bench/rl_arith ($SCALE, threads $THREADS) on $(nproc) cores; load at the end: $(cut -d' ' -f1-3 /proc/loadavg)
held-out accuracy (greedy, arith, --cot --calc; $N_HELD problems; RL rollouts at temperature $TEMP):
  SFT, final ($SFT steps)           $sft_held
  RL start (SFT step $start_step)          $start_held
  GRPO from the start   $grpo_held   ($GRPO_STEPS steps, $grpo_s s; KL to the start (k3, mean of the last 10 steps) $grpo_kl)
  PPO from the start    $ppo_held   ($PPO_STEPS steps, $ppo_s s; KL (k1 per completion, last 10 steps) $ppo_kl, kl_coef ${KL_COEF:-0.2})
reward model: held-out pair accuracy $rm_acc (chance 0.5; $(grep -c . "$D/prefs.jsonl") pairs: $(py -c '
import collections, json, sys
n = collections.Counter(json.loads(l)["kind"] for l in open(sys.argv[1]))
print(", ".join(f"{v} {k}" for k, v in sorted(n.items())))' "$D/prefs.jsonl"))
two-step held-out problems, final SFT model with the calculator: direct $sft_multi_direct, chain-of-thought $sft_multi_cot
4-digit multiplication (100 held out), final SFT model, chain-of-thought: calculator $mul4_calc, no calculator $mul4_none
rollouts, GPT-2 124M random weights, 16 sequences (bench_rollout $THREADS $ROLL: threads, rows, prompt, new tokens, runs):
$roll
EOF
stamp "done"
