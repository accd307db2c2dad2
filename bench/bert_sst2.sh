#!/usr/bin/env bash
# SST-2 quality benchmark (issues #4, #15): a small BERT (4 layers x 256) classifies SST-2
# sentences; accuracy on the 1,821 whole held-out sentences of ../shared/data/sst2/
# sentences.tsv, next to a bag-of-words logistic regression trained and scored on the same
# files in the same run (bench/bow_sst2.py).
#
#   bash bench/bert_sst2.sh [--ensemble K] [--steps N | --minutes M] [--curve K] [--vocab V]
#                           [--epochs E] [--sentence-epochs E] [--layers L] [--heads H] [--dim D]
#                           [--lr X] [--ft-lr X] [--sent-lr X] [--dropout P] [--pt-dropout P]
#                           [--sst-repeat R] [--precision fp32|bf16] [--pt-context T] [--pt-batch B]
#
# The recipe (defaults; docs/finetune.md says why): no pre-training, and K = 8 fine-tunings
# that differ only in --seed (1..K), each one epoch over the 67,349 phrases of train.tsv
# (lr 3e-4, batch 32, context 64, dropout 0.1, batches grouped by length) and then one
# epoch over the 6,815 whole training sentences among them (lr 1e-4; the phrases that no
# other phrase contains, at least 4 words: what the dev set looks like), run two at a time
# at one thread each; their softmax outputs averaged (`lmkit predict --model ... x K`).
# BPE of 32,768 tokens trained on the lower-cased scripts/corpus.sh English (~40 MB). About
# 20 quiet minutes on 2 cores. Masked-LM pre-training of the same BERT on that corpus (with
# the SST-2 training sentences R more times) did not help at this budget (its curve: --steps,
# --curve), so the recipe spends the 30 minutes on the ensemble instead.
#
#   --ensemble K  fine-tunings averaged (8); 1: a single model (seed 1)
#   --steps N     masked-LM pre-training steps before fine-tuning (0: none, the recipe; 4000
#                 at context 64 in bf16 is ~20 quiet minutes, 295 ms a step at 8,192 tokens)
#   --minutes M   instead of --steps: as many steps as fit in M minutes at the speed of a
#                 20-step probe run on this machine now (the schedule still completes)
#   --curve K     with --steps N: also fine-tune (one seed) from K-1 earlier checkpoints,
#                 evenly spaced, and from no pre-training: accuracy against pre-training steps
#   --vocab V     BPE vocabulary (32768; 8192 splits a quarter of SST-2's words, 32768 an eighth)
#   --epochs E    epochs over the phrases (1); --sentence-epochs E over the whole sentences
#                 (1; 0: none)
#   --ft-lr X     the phrase epochs' rate (lmkit finetune's width default: 3e-4 below 384
#                 wide; 6e-4 and 1e-3 diverge here); --sent-lr X the sentence epochs' (1e-4)
#   --dropout P   fine-tuning dropout (0.1, BERT's); --pt-dropout P pre-training's (0)
#   --sst-repeat R  pre-training: the SST-2 training sentences (scripts/corpus.sh --only sst2)
#                 R more times in the text (9), task-adaptive pre-training; 0: the corpus alone
#   --precision   pre-training's matrix products (bf16: the same curve as fp32, ~1.4x faster)
#   --pt-context T, --pt-batch B  pre-training's context (64) and sequences a step (64)
# Results: WORK/results.tsv (WORK=runs/bert_sst2 by default); the budget line sums
# pre-training and all fine-tuning and scoring, as wall time. The load is printed at start and end.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/lmkit
DATA=${DATA:-../shared/data}
W=${WORK:-runs/bert_sst2}
STEPS=0 MINUTES="" EPOCHS=1 SENT_EPOCHS=1 CURVE=1 ENSEMBLE=8 VOCAB=32768 LAYERS=4 HEADS=4 DIM=256 LR=1e-3 FT_LR=""
SENT_LR=1e-4 DROPOUT=0.1 PT_DROPOUT=0 REPEAT=9 PRECISION=bf16 PT_CONTEXT=64 PT_BATCH=64
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS=$2 ;; --minutes) MINUTES=$2 ;; --epochs) EPOCHS=$2 ;; --curve) CURVE=$2 ;;
    --ensemble) ENSEMBLE=$2 ;; --vocab) VOCAB=$2 ;; --sentence-epochs) SENT_EPOCHS=$2 ;; --sent-lr) SENT_LR=$2 ;;
    --layers) LAYERS=$2 ;; --heads) HEADS=$2 ;; --dim) DIM=$2 ;; --lr) LR=$2 ;; --ft-lr) FT_LR=$2 ;;
    --dropout) DROPOUT=$2 ;; --pt-dropout) PT_DROPOUT=$2 ;; --sst-repeat) REPEAT=$2 ;;
    --precision) PRECISION=$2 ;; --pt-context) PT_CONTEXT=$2 ;; --pt-batch) PT_BATCH=$2 ;;
    -h|--help) sed -n 2,41p "$0"; exit 0 ;;
    *) echo "bert_sst2: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift 2
done
[ "$ENSEMBLE" -ge 1 ] && [ "$ENSEMBLE" -le 16 ] || { echo "bert_sst2: --ensemble is 1..16" >&2; exit 2; }
[ "$CURVE" -le 1 ] || [ "$STEPS" -gt 0 ] || [ -n "$MINUTES" ] || { echo "bert_sst2: --curve needs --steps N > 0 or --minutes" >&2; exit 2; }
[ -x "$BIN" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$BUILD" -j "$(nproc)"; }
for f in sst2/train.tsv sst2/sentences.tsv; do
  [ -f "$DATA/$f" ] || { echo "bert_sst2: $DATA/$f not found (../shared/data, see its README)" >&2; exit 1; }
done
unset OPENBLAS_CORETYPE
mkdir -p "$W"
echo "load at start: $(uptime)"
now() { date +%s.%N; }
secs() { /usr/bin/python3 -c "print(round($2 - $1))"; }

# 1. data (not part of the budget): the corpus, lower-cased as SST-2 is; the whole training
# sentences among train.tsv's phrases; the dev texts
[ -s "$W/english.txt" ] || bash scripts/corpus.sh "$W/english.txt"
[ -s "$W/pretrain.txt" ] || tr 'A-Z' 'a-z' < "$W/english.txt" > "$W/pretrain.txt"
[ -s "$W/sst2.txt" ] || bash scripts/corpus.sh "$W/sst2.txt" --only sst2 > /dev/null
TEXT=("$W/pretrain.txt")
if [ "$REPEAT" -gt 0 ]; then
  # first in --data, so that the validation tail (the last 5%) stays the corpus's own end
  for ((r = 0; r < REPEAT; r++)); do tr 'A-Z' 'a-z' < "$W/sst2.txt"; done > "$W/sst2_x$REPEAT.txt"
  TEXT=("$W/sst2_x$REPEAT.txt" "$W/pretrain.txt")
fi
[ -s "$W/sentences_train.tsv" ] || /usr/bin/python3 bench/sst2_sentences.py "$DATA/sst2/train.tsv" "$W/sentences_train.tsv"
tail -n +2 "$DATA/sst2/sentences.tsv" | cut -f2 > "$W/dev.txt"
tail -n +2 "$DATA/sst2/sentences.tsv" | cut -f1 > "$W/dev.labels"
echo "pre-training text: $(cat "${TEXT[@]}" | wc -c) bytes (the SST-2 training sentences $REPEAT more times); train: $DATA/sst2/train.tsv" \
  "($(( $(wc -l < "$W/sentences_train.tsv") - 1 )) whole sentences among its phrases); dev: $DATA/sst2/sentences.tsv"
"$BIN" tokenizer train --data "$W/pretrain.txt" --vocab-size "$VOCAB" --special "[PAD]" --special "[UNK]" \
  --special "[CLS]" --special "[SEP]" --special "[MASK]" --out "$W/tok" > /dev/null 2>&1

pretrain() {  # pretrain OUT STEPS [extra flags]
  local out=$1 steps=$2; shift 2
  rm -rf "$out"
  "$BIN" train --arch bert --objective mlm --tokenizer "$W/tok" --data "${TEXT[@]}" --out "$out" \
    --layers "$LAYERS" --heads "$HEADS" --dim "$DIM" --context "$PT_CONTEXT" --batch "$PT_BATCH" --steps "$steps" --lr "$LR" \
    --warmup $(( steps / 20 + 1 )) --dropout "$PT_DROPOUT" --precision "$PRECISION" \
    --eval-every 300 --seed 1 --quiet "$@"
}
# no pre-training: one step of masked LM on the SST-2 sentences alone gives a model directory with
# the recipe's shape and tokenizer, a random initialisation moved by one small step
init0() {
  local TEXT=("$W/sst2.txt")   # pretrain reads TEXT (bash's locals are seen by the functions called)
  pretrain "$W/bert0" 1 --dropout 0 --precision fp32 > /dev/null 2>&1
}
if [ -n "$MINUTES" ]; then
  pretrain "$W/probe" 20 > /dev/null 2>&1
  STEPS=$(/usr/bin/python3 -c "import json; ms=[json.loads(l)['step_ms'] for l in open('$W/probe/metrics.jsonl') if '\"loss\"' in l][5:]; ms.sort(); print(int($MINUTES*60000/ms[len(ms)//2]))")
  echo "probe: ${MINUTES} minutes of pre-training fit $STEPS steps at this machine's speed now"
fi

# 2. pre-training (none by default), with checkpoints for the curve
pre_total=0
if [ "$STEPS" -gt 0 ]; then
  EVERY=$(( STEPS / CURVE ))
  t0=$(now)
  pretrain "$W/bert" "$STEPS" --save-every "$EVERY" --keep-checkpoints 0
  t1=$(now)
  pre_total=$(secs "$t0" "$t1")
  /usr/bin/python3 - "$W/bert/metrics.jsonl" "$pre_total" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tps = statistics.median(r["tokens_per_sec"] for r in rows if "loss" in r)
val = [r["val_loss"] for r in rows if "val_loss" in r]
print(f"pre-training: {rows[-1]['step']} steps in {sys.argv[2]} s, median {tps:.0f} tokens/s, MLM val loss {val[-1]:.3f}")
PY
fi

# 3. fine-tuning: MEMBER SRC SEED OUT THREADS -> one model (phrases, then whole sentences); prints its accuracy
member() {
  local src=$1 seed=$2 out=$3 th=$4 acc1 acc2=""
  acc1=$("$BIN" finetune ${FT_LR:+--lr "$FT_LR"} --model "$src" --task classify --data "$DATA/sst2/train.tsv" \
    --eval "$DATA/sst2/sentences.tsv" --out "$out.phrases" --epochs "$EPOCHS" --batch 32 --dropout "$DROPOUT" --context 64 \
    --group-by-length --seed "$seed" --threads "$th" --quiet 2> "$out.log" | sed -n 's/^eval accuracy \([0-9.]*\).*/\1/p')
  if [ "$SENT_EPOCHS" -gt 0 ]; then
    acc2=$("$BIN" finetune --lr "$SENT_LR" --model "$out.phrases" --task classify --data "$W/sentences_train.tsv" \
      --eval "$DATA/sst2/sentences.tsv" --out "$out" --epochs "$SENT_EPOCHS" --batch 32 --dropout "$DROPOUT" --context 64 \
      --seed "$seed" --threads "$th" --quiet 2>> "$out.log" | sed -n 's/^eval accuracy \([0-9.]*\).*/\1/p')
  else
    rm -rf "$out"; mv "$out.phrases" "$out"
  fi
  [ -n "$acc1" ] && { [ "$SENT_EPOCHS" = 0 ] || [ -n "$acc2" ]; } || { echo "bert_sst2: fine-tuning $out failed (see $out.log)" >&2; return 1; }
  echo "$acc1${acc2:+ -> $acc2}"
}
accuracy() { paste -d' ' "$1" "$W/dev.labels" | awk '$1 == $2 { n++ } END { printf "%.4f", n / NR }'; }

printf 'pretrain_steps\tpretrain_s\tfinetune_s\tmembers\tdev_accuracy\n' > "$W/results.tsv"
# the curve: one fine-tuning (seed 1) from each earlier checkpoint and from no pre-training
if [ "$CURVE" -gt 1 ]; then
  init0
  for ((k = 0; k < CURVE; k++)); do
    s=$(( k * EVERY ))
    if [ "$s" = 0 ]; then src=$W/bert0; else src=$W/bert/checkpoint-$s; fi
    f0=$(now); acc=$(member "$src" 1 "$W/curve-$s" 2); f1=$(now)
    printf '%s\t%s\t%s\t1\t%s\n' "$s" "$(( pre_total * s / STEPS ))" "$(secs "$f0" "$f1")" "${acc##* }" >> "$W/results.tsv"
    echo "curve: $s pre-training steps + fine-tuning ($(secs "$f0" "$f1") s): dev accuracy $acc"
  done
fi

# the recipe: K members from the end of pre-training (or from no pre-training), JOBS at a time at one
# thread each (each member's run is then the same on any machine), averaged by `lmkit predict`
if [ "$STEPS" -gt 0 ]; then src=$W/bert; else init0; src=$W/bert0; fi
JOBS=$(nproc)
f0=$(now)
for ((k = 1; k <= ENSEMBLE; k++)); do
  th=1; [ "$ENSEMBLE" = 1 ] && th=$JOBS
  member "$src" "$k" "$W/member-$k" "$th" > "$W/member-$k.acc" &
  if (( k % JOBS == 0 || k == ENSEMBLE )); then wait || { echo "bert_sst2: a fine-tuning failed" >&2; exit 1; }; fi
done
stages="after the phrase epochs"; [ "$SENT_EPOCHS" -gt 0 ] && stages="after the phrase epochs -> after the sentence epochs"
for ((k = 1; k <= ENSEMBLE; k++)); do
  [ -s "$W/member-$k.acc" ] || { echo "bert_sst2: member $k failed (see $W/member-$k.log)" >&2; exit 1; }
  echo "member $k (seed $k): dev accuracy $(cat "$W/member-$k.acc") ($stages)"
done
models=(); for ((k = 1; k <= ENSEMBLE; k++)); do models+=(--model "$W/member-$k"); done
"$BIN" predict "${models[@]}" --context 64 < "$W/dev.txt" > "$W/ensemble.pred" 2> /dev/null
f1=$(now)
ft_s=$(secs "$f0" "$f1")
acc=$(accuracy "$W/ensemble.pred")
printf '%s\t%s\t%s\t%s\t%s\n' "$STEPS" "$pre_total" "$ft_s" "$ENSEMBLE" "$acc" >> "$W/results.tsv"
echo "lmkit BERT: $STEPS pre-training steps (${pre_total} s) + $ENSEMBLE fine-tuning(s) averaged ($ft_s s): dev accuracy $acc"
echo "budget: pre-training $pre_total s + fine-tuning and scoring $ft_s s = $(( (pre_total + ft_s) / 60 )) min $(( (pre_total + ft_s) % 60 )) s (issue #15: <= 30 min)"

# 4. the baseline on the same files
/usr/bin/python3 bench/bow_sst2.py "$DATA/sst2/train.tsv" "$DATA/sst2/sentences.tsv"
echo "load at end: $(uptime)"
