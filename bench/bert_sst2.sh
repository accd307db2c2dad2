#!/usr/bin/env bash
# SST-2 quality benchmark (issues #4, #15): pre-train a small BERT with masked LM on
# the English corpus of scripts/corpus.sh (~40 MB: fortunes, GCIDE, WordNet glosses,
# tinyshakespeare, SST-2 training sentences, Alpaca), fine-tune it on SST-2's
# training phrases (../shared/data/sst2/train.tsv) and report accuracy on the
# 1,821 whole held-out sentences of ../shared/data/sst2/sentences.tsv, next to a
# bag-of-words logistic regression trained and scored on the same files in the
# same run (bench/bow_sst2.py).
#
#   bash bench/bert_sst2.sh [--steps N | --minutes M] [--epochs E] [--curve K]
#                           [--layers L] [--heads H] [--dim D] [--lr X] [--ft-lr X] [--dropout P]
#                           [--pt-dropout P] [--sst-repeat R]
#                           [--precision fp32|bf16] [--pt-context T] [--pt-batch B]
#
#   --steps N     MLM pre-training steps (default 4000: ~20 minutes on 2 nearly quiet cores
#                 at context 64 in bf16, 295 ms a step; docs/finetune.md)
#   --minutes M   instead of --steps: as many steps as fit in M minutes at the speed of
#                 a 20-step probe run on this machine now (the schedule still completes)
#   --epochs E    fine-tuning epochs over the 67,349 training phrases (1)
#   --curve K     also fine-tune from K-1 earlier checkpoints, evenly spaced, and from no
#                 pre-training at all: accuracy against pre-training steps (1: the end only)
#   --dropout P   fine-tuning dropout (0.1, BERT's); --pt-dropout P pre-training's (0)
#   --sst-repeat R  the SST-2 training sentences (scripts/corpus.sh --only sst2, ~0.7 MB)
#                 are put R more times into the pre-training text (9: ~15% of it), task-
#                 adaptive pre-training; 0: the corpus alone
#   --precision   pre-training's matrix products (`train --precision`; bf16: the same curve
#                 as fp32, ~1.3-1.4x the steps a minute)
#   --pt-context T, --pt-batch B  pre-training's context (64) and sequences a step (64): the
#                 tokens of 128 x 32 a step, the same MLM curve, a little faster
# The model is 4 layers x 256 (4 heads) by default, context 64, batch 64, lr 1e-3, no
# dropout in pre-training (~1.3 passes over the text do not overfit; Cramming, Geiping
# & Goldstein 2022, drops it too). Fine-tuning: one epoch at batch 32, context 64, batches
# grouped by length (`finetune --group-by-length`), `lmkit finetune`'s own learning rate,
# chosen by the model's width (3e-4 under 384) unless --ft-lr is given; docs/finetune.md
# says why. Results: WORK/results.tsv (WORK=runs/bert_sst2 by default); the budget line
# sums pre-training and the last fine-tuning. The machine load is printed at start and end.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/lmkit
DATA=${DATA:-../shared/data}
W=${WORK:-runs/bert_sst2}
STEPS=4000 MINUTES="" EPOCHS=1 CURVE=1 LAYERS=4 HEADS=4 DIM=256 LR=1e-3 FT_LR="" DROPOUT=0.1 PT_DROPOUT=0 REPEAT=9
PRECISION=bf16 PT_CONTEXT=64 PT_BATCH=64
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS=$2 ;; --minutes) MINUTES=$2 ;; --epochs) EPOCHS=$2 ;; --curve) CURVE=$2 ;;
    --layers) LAYERS=$2 ;; --heads) HEADS=$2 ;; --dim) DIM=$2 ;; --lr) LR=$2 ;; --ft-lr) FT_LR=$2 ;;
    --dropout) DROPOUT=$2 ;; --pt-dropout) PT_DROPOUT=$2 ;; --sst-repeat) REPEAT=$2 ;;
    --precision) PRECISION=$2 ;; --pt-context) PT_CONTEXT=$2 ;; --pt-batch) PT_BATCH=$2 ;;
    -h|--help) sed -n 2,36p "$0"; exit 0 ;;
    *) echo "bert_sst2: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift 2
done
[ -x "$BIN" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$BUILD" -j "$(nproc)"; }
for f in sst2/train.tsv sst2/sentences.tsv; do
  [ -f "$DATA/$f" ] || { echo "bert_sst2: $DATA/$f not found (../shared/data, see its README)" >&2; exit 1; }
done
unset OPENBLAS_CORETYPE
mkdir -p "$W"
echo "load at start: $(uptime)"

# 1. data: the corpus, lower-cased as SST-2 is; the SST-2 files as they are
[ -s "$W/english.txt" ] || bash scripts/corpus.sh "$W/english.txt"
[ -s "$W/pretrain.txt" ] || tr 'A-Z' 'a-z' < "$W/english.txt" > "$W/pretrain.txt"
TEXT=("$W/pretrain.txt")
if [ "$REPEAT" -gt 0 ]; then
  # first in --data, so that the validation tail (the last 5%) stays the corpus's own end
  [ -s "$W/sst2.txt" ] || bash scripts/corpus.sh "$W/sst2.txt" --only sst2 > /dev/null
  for ((r = 0; r < REPEAT; r++)); do tr 'A-Z' 'a-z' < "$W/sst2.txt"; done > "$W/sst2_x$REPEAT.txt"
  TEXT=("$W/sst2_x$REPEAT.txt" "$W/pretrain.txt")
fi
echo "pre-training text: $(cat "${TEXT[@]}" | wc -c) bytes (the SST-2 training sentences $REPEAT more times); train: $DATA/sst2/train.tsv; dev: $DATA/sst2/sentences.tsv"
"$BIN" tokenizer train --data "$W/pretrain.txt" --vocab-size 8192 --special "[PAD]" --special "[UNK]" \
  --special "[CLS]" --special "[SEP]" --special "[MASK]" --out "$W/tok" > /dev/null 2>&1

pretrain() {  # pretrain OUT STEPS [extra flags]
  local out=$1 steps=$2; shift 2
  rm -rf "$out"
  "$BIN" train --arch bert --objective mlm --tokenizer "$W/tok" --data "${TEXT[@]}" --out "$out" \
    --layers "$LAYERS" --heads "$HEADS" --dim "$DIM" --context "$PT_CONTEXT" --batch "$PT_BATCH" --steps "$steps" --lr "$LR" \
    --warmup $(( steps / 20 + 1 )) --dropout "$PT_DROPOUT" --precision "$PRECISION" \
    --eval-every 300 --seed 1 --quiet "$@"
}
if [ -n "$MINUTES" ]; then
  pretrain "$W/probe" 20 > /dev/null 2>&1
  STEPS=$(/usr/bin/python3 -c "import json; ms=[json.loads(l)['step_ms'] for l in open('$W/probe/metrics.jsonl') if '\"loss\"' in l][5:]; ms.sort(); print(int($MINUTES*60000/ms[len(ms)//2]))")
  echo "probe: ${MINUTES} minutes of pre-training fit $STEPS steps at this machine's speed now"
fi

# 2. pre-training, with checkpoints for the curve
EVERY=$(( STEPS / CURVE ))
t0=$(date +%s.%N)
pretrain "$W/bert" "$STEPS" --save-every "$EVERY" --keep-checkpoints 0
t1=$(date +%s.%N)
/usr/bin/python3 - "$W/bert/metrics.jsonl" "$t0" "$t1" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tps = statistics.median(r["tokens_per_sec"] for r in rows if "loss" in r)
val = [r["val_loss"] for r in rows if "val_loss" in r]
print(f"pre-training: {rows[-1]['step']} steps in {float(sys.argv[3]) - float(sys.argv[2]):.0f} s, median "
      f"{tps:.0f} tokens/s, MLM val loss {val[-1]:.3f}")
PY

# 3. fine-tuning from each point of the curve (0: one step from a random initialisation, i.e. no pre-training)
printf 'pretrain_steps\tpretrain_s\tfinetune_s\tdev_accuracy\n' > "$W/results.tsv"
points=""
[ "$CURVE" -gt 1 ] && points="0"
for ((k = 1; k < CURVE; k++)); do points="$points $(( k * EVERY ))"; done
points="$points $STEPS"
for s in $points; do
  if [ "$s" = 0 ]; then pretrain "$W/bert0" 1 > /dev/null 2>&1; src=$W/bert0; pre_s=0
  elif [ "$s" = "$STEPS" ]; then src=$W/bert; pre_s=$(/usr/bin/python3 -c "print(round($t1 - $t0))")
  else src=$W/bert/checkpoint-$s; pre_s=$(/usr/bin/python3 -c "print(round(($t1 - $t0) * $s / $STEPS))"); fi
  f0=$(date +%s.%N)
  acc=$("$BIN" finetune ${FT_LR:+--lr "$FT_LR"} --model "$src" --task classify --data "$DATA/sst2/train.tsv" --eval "$DATA/sst2/sentences.tsv" \
    --out "$W/sst2-$s" --epochs "$EPOCHS" --batch 32 --dropout "$DROPOUT" --context 64 --group-by-length --seed 1 --quiet \
    | sed -n 's/^eval accuracy \([0-9.]*\).*/\1/p')
  f1=$(date +%s.%N)
  ft_s=$(/usr/bin/python3 -c "print(round($f1 - $f0))")
  printf '%s\t%s\t%s\t%s\n' "$s" "$pre_s" "$ft_s" "$acc" >> "$W/results.tsv"
  echo "lmkit BERT: $s pre-training steps (~$pre_s s) + $EPOCHS fine-tuning epoch(s) ($ft_s s): dev accuracy $acc"
done
echo "budget: pre-training $pre_s s + fine-tuning $ft_s s = $(( (pre_s + ft_s) / 60 )) min $(( (pre_s + ft_s) % 60 )) s (issue #15: <= 30 min)"

# 4. the baseline on the same files
/usr/bin/python3 bench/bow_sst2.py "$DATA/sst2/train.tsv" "$DATA/sst2/sentences.tsv"
echo "load at end: $(uptime)"
