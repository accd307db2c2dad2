#!/usr/bin/env bash
# Fine-tuning hyper-parameter sweep for small BERTs on SST-2 (issue #15): the
# measurements behind `lmkit finetune`'s size-dependent defaults (docs/finetune.md).
# Pre-trains one small BERT once with bench/bert_sst2.sh's recipe (masked LM on the
# lower-cased English corpus of scripts/corpus.sh, BPE vocab 8192 with BERT specials,
# context 128, batch 32, lr 1e-3, dropout 0.1), then fine-tunes it on a fixed random
# subset of SST-2's training phrases over a grid of learning rate x warmup x epochs and
# scores every run on the 1,821 whole sentences of ../shared/data/sst2/sentences.tsv.
# One job at a time, one thread each (the numbers compare runs, not machines).
#
#   bash bench/finetune_sweep.sh [--steps N] [--subset K] [--lrs "A B .."]
#                                [--warmups "0 0.1"] [--epochs "1 2"] [--layers L] [--dim D] [--quick]
#                                [--model DIR]
#
#   --steps N     MLM pre-training steps (600)
#   --model DIR   fine-tune this pre-trained BERT instead (e.g. runs/quality/sst2/bert, left by
#                 bench/quality.sh sst2); WORK then defaults to runs/finetune_sweep_model
#   --subset K    training phrases the sweep fine-tunes on, drawn with seed 1 (8000; 0 = all 67,349)
#   --lrs         fine-tuning peak learning rates ("3e-5 1e-4 3e-4 1e-3")
#   --warmups     warmup ratios ("0 0.1"); --epochs: epoch counts ("1 2"); epochs > 1 are run at
#                 the warmup ratio 0.1 only, to keep the grid small
#   --quick       a smoke run: 2 layers x 128, 30 pre-training steps, 1,000 phrases, lrs 1e-4 1e-3
# The pre-trained model and each cell's result are kept in WORK (runs/finetune_sweep), so a
# re-run skips what is done; results: WORK/sweep.tsv (lr, warmup, epochs, steps, seconds,
# dev accuracy), sorted and printed at the end with the bag-of-words baseline on the same files;
# each run's metrics.jsonl is kept as WORK/ft-LR-WARMUP-EPOCHS.metrics.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/lmkit
DATA=${DATA:-../shared/data}
W=${WORK:-runs/finetune_sweep}
MODEL="" STEPS=600 SUBSET=8000 LRS="3e-5 1e-4 3e-4 1e-3" WARMUPS="0 0.1" EPOCHS="1 2" LAYERS=4 HEADS=4 DIM=256
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) STEPS=30 SUBSET=1000 LRS="1e-4 1e-3" LAYERS=2 DIM=128 W=${WORK:-runs/finetune_sweep_quick}; shift; continue ;;
    --steps) STEPS=$2 ;; --subset) SUBSET=$2 ;; --lrs) LRS=$2 ;; --warmups) WARMUPS=$2 ;; --epochs) EPOCHS=$2 ;;
    --layers) LAYERS=$2 ;; --dim) DIM=$2 ;; --model) MODEL=$2; W=${WORK:-runs/finetune_sweep_model} ;;
    -h|--help) sed -n 2,26p "$0"; exit 0 ;;
    *) echo "finetune_sweep: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift 2
done
[ -x "$BIN" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$BUILD" -j "$(nproc)"; }
for f in sst2/train.tsv sst2/sentences.tsv; do
  [ -f "$DATA/$f" ] || { echo "finetune_sweep: $DATA/$f not found (../shared/data, see its README)" >&2; exit 1; }
done
unset OPENBLAS_CORETYPE
mkdir -p "$W"
echo "load at start: $(uptime)"

# 1. data: the corpus lower-cased (as bench/bert_sst2.sh), a fixed subset of the training phrases
if [ -n "$MODEL" ]; then
  [ -s "$MODEL/model.safetensors" ] || { echo "finetune_sweep: $MODEL/model.safetensors not found" >&2; exit 1; }
  ln -sfn "$(cd "$MODEL" && pwd)" "$W/bert"
else
  [ -s "$W/english.txt" ] || bash scripts/corpus.sh "$W/english.txt"
  [ -s "$W/pretrain.txt" ] || tr 'A-Z' 'a-z' < "$W/english.txt" > "$W/pretrain.txt"
fi
/usr/bin/python3 - "$DATA/sst2/train.tsv" "$SUBSET" "$W/train.tsv" <<'PY'
import random, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
rows, k = lines[1:], int(sys.argv[2])
if 0 < k < len(rows): rows = random.Random(1).sample(rows, k)
open(sys.argv[3], "w", encoding="utf-8").write("\n".join([lines[0]] + rows) + "\n")
PY
echo "fine-tuning on $(( $(wc -l < "$W/train.tsv") - 1 )) training phrases; dev: the 1,821 sentences of $DATA/sst2/sentences.tsv"

# 2. pre-training, once
if [ ! -s "$W/bert/model.safetensors" ]; then
  [ -s "$W/tok/tokenizer.json" ] || "$BIN" tokenizer train --data "$W/pretrain.txt" --vocab-size 8192 --special "[PAD]" \
    --special "[UNK]" --special "[CLS]" --special "[SEP]" --special "[MASK]" --out "$W/tok" > /dev/null 2>&1
  rm -rf "$W/bert"
  t0=$(date +%s)
  "$BIN" train --arch bert --objective mlm --tokenizer "$W/tok" --data "$W/pretrain.txt" --out "$W/bert" \
    --layers "$LAYERS" --heads "$HEADS" --dim "$DIM" --context 128 --batch 32 --steps "$STEPS" --lr 1e-3 \
    --warmup $(( STEPS / 20 + 1 )) --dropout 0.1 --eval-every "$STEPS" --seed 1 --threads 1 --quiet
  echo "pre-training: $STEPS steps in $(( $(date +%s) - t0 )) s, MLM val loss $(grep -o '"val_loss": *[0-9.]*' "$W/bert/metrics.jsonl" | tail -1 | grep -o '[0-9.]*$')"
fi
"$BIN" info "$W/bert" 2>/dev/null | grep -i param || true

# 3. the grid, one fine-tuning run at a time
[ -s "$W/sweep.tsv" ] || printf 'lr\twarmup\tepochs\tsteps\tseconds\tdev_accuracy\n' > "$W/sweep.tsv"
cell() {  # cell LR WARMUP EPOCHS
  local key="$1	$2	$3"
  grep -q "^$key	" "$W/sweep.tsv" && return 0
  local out=$W/ft-$1-$2-$3 t0 acc steps
  t0=$(date +%s.%N)
  acc=$("$BIN" finetune --model "$W/bert" --task classify --data "$W/train.tsv" --eval "$DATA/sst2/sentences.tsv" \
    --out "$out" --epochs "$3" --batch 32 --lr "$1" --warmup-ratio "$2" --context 64 --seed 1 --threads 1 --quiet \
    2> "$out.err" | sed -n 's/^eval accuracy \([0-9.]*\).*/\1/p')
  [ -n "$acc" ] || { echo "finetune_sweep: fine-tuning lr $1 warmup $2 epochs $3 failed:" >&2; cat "$out.err" >&2; exit 1; }
  steps=$(sed -n 's/.* \([0-9]*\) steps, context.*/\1/p' "$out.err")
  printf '%s\t%s\t%s\t%s\t%.0f\t%s\n' "$1" "$2" "$3" "$steps" "$(/usr/bin/python3 -c "print($(date +%s.%N) - $t0)")" "$acc" >> "$W/sweep.tsv"
  echo "lr $1 warmup $2 epochs $3 ($steps steps): dev accuracy $acc"
  cp "$out/metrics.jsonl" "$out.metrics.jsonl"; rm -rf "$out"   # the curve stays, the weights go
}
for e in $EPOCHS; do
  for lr in $LRS; do
    if [ "$e" = 1 ]; then for wu in $WARMUPS; do cell "$lr" "$wu" 1; done
    else cell "$lr" 0.1 "$e"; fi
  done
done

# 4. the table and the baseline on the same files
echo "== $W/sweep.tsv (best first)"
head -1 "$W/sweep.tsv"; tail -n +2 "$W/sweep.tsv" | sort -t$'\t' -k6,6gr
/usr/bin/python3 bench/bow_sst2.py "$W/train.tsv" "$DATA/sst2/sentences.tsv"
echo "load at end: $(uptime)"
