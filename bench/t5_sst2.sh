#!/usr/bin/env bash
# SST-2 as text to text (issue #10): pre-train a small T5 by span corruption on a few MB
# of the English corpus of scripts/corpus.sh, fine-tune it with `finetune --task text2text`
# on SST-2's training phrases written as `sst2 sentence: TEXT<TAB>positive|negative`, and
# report its dev accuracy (exact match of the generated label) on the 1,821 held-out
# sentences of ../shared/data/sst2/sentences.tsv -- the dev set bench/bert_sst2.sh scores
# the BERT classifier on -- next to the bag-of-words baseline (bench/bow_sst2.py) trained
# and scored on the same files in the same run, and to the BERT classifier (with --bert:
# bench/bert_sst2.sh run in the same invocation with the same pre-training minutes;
# otherwise its last results.tsv, if any, labelled as from an earlier run).
#
#   bash bench/t5_sst2.sh [--quick] [--minutes M | --steps N] [--mb MB] [--epochs E]
#                         [--layers L] [--heads H] [--dim D] [--lr X] [--ft-lr X] [--bert]
#
#   --minutes M  span-corruption pre-training time (default 20): as many steps as fit in M
#                minutes at the speed of a 10-step probe run now (the schedule completes)
#   --steps N    instead of --minutes
#   --mb MB      megabytes of the corpus to pre-train on (8)
#   --epochs E   fine-tuning epochs over the 67,349 training phrases (1)
#   --quick      a smoke run: 2 MB, 2 layers x 128, 30 pre-training steps of batch 32,
#                fine-tuning on 3,000 phrases (all 1,821 dev sentences), one thread
#                (on a loaded 2-core machine two OpenMP threads can be many times slower)
# The model is 4+4 layers x 256 (4 heads of 64, d_ff 1024, relu, tied), input context 128,
# batch 32, pre-training lr 1e-3, fine-tuning lr 1e-3 (T5's fine-tuning uses a constant
# 1e-3 with Adafactor; here AdamW, warmup 10%, cosine). Results: WORK/results.tsv
# (WORK=runs/t5_sst2 by default). The machine load is printed at start and end.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/lmkit
DATA=${DATA:-../shared/data}
W=${WORK:-runs/t5_sst2}
MINUTES=20 STEPS="" MB=8 EPOCHS=1 LAYERS=4 HEADS=4 DIM=256 LR=1e-3 FT_LR=1e-3 BERT=0 QUICK=0 FT_N=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift; continue ;;
    --bert) BERT=1; shift; continue ;;
    --minutes) MINUTES=$2 ;; --steps) STEPS=$2 ;; --mb) MB=$2 ;; --epochs) EPOCHS=$2 ;;
    --layers) LAYERS=$2 ;; --heads) HEADS=$2 ;; --dim) DIM=$2 ;; --lr) LR=$2 ;; --ft-lr) FT_LR=$2 ;;
    -h|--help) sed -n 2,26p "$0"; exit 0 ;;
    *) echo "t5_sst2: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift 2
done
THREADS=()
if [ "$QUICK" = 1 ]; then MB=2 LAYERS=2 HEADS=4 DIM=128 STEPS=${STEPS:-30} FT_N=3000 W=${WORK:-runs/t5_sst2_quick} THREADS=(--threads 1); fi
[ -x "$BIN" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$BUILD" -j "$(nproc)"; }
for f in sst2/train.tsv sst2/sentences.tsv; do
  [ -f "$DATA/$f" ] || { echo "t5_sst2: $DATA/$f not found (../shared/data, see its README)" >&2; exit 1; }
done
unset OPENBLAS_CORETYPE
mkdir -p "$W"
echo "load at start: $(uptime)"

# 1. data: the first MB of the corpus, lower-cased as SST-2 is; SST-2 as input<TAB>target
[ -s "$W/english.txt" ] || bash scripts/corpus.sh "$W/english.txt"
head -c "$((MB * 1000000))" "$W/english.txt" | tr 'A-Z' 'a-z' > "$W/pretrain.txt"
t2t() {  # label<TAB>text with a header -> sst2 sentence: text<TAB>negative|positive
  awk -F'\t' 'NR > 1 && NF >= 2 { sub(/\r$/, "", $2); l = $1 == 1 ? "positive" : "negative"; print "sst2 sentence: " $2 "\t" l }' "$1"
}
t2t "$DATA/sst2/train.tsv" > "$W/train.tsv"
if [ "$FT_N" -gt 0 ]; then
  /usr/bin/python3 -c "import random, sys; l = open(sys.argv[1]).readlines(); random.Random(1).shuffle(l); sys.stdout.writelines(l[:int(sys.argv[2])])" \
    "$W/train.tsv" "$FT_N" > "$W/train_sub.tsv"
  mv "$W/train_sub.tsv" "$W/train.tsv"
fi
t2t "$DATA/sst2/sentences.tsv" > "$W/dev.tsv"
echo "pre-training text: $(wc -c < "$W/pretrain.txt") bytes; fine-tuning: $(wc -l < "$W/train.tsv") phrases; dev: $(wc -l < "$W/dev.tsv") sentences"
SENT=(); for k in $(seq 99 -1 0); do SENT+=(--special "<extra_id_$k>"); done
[ -s "$W/tok/tokenizer.json" ] || "$BIN" tokenizer train --data "$W/pretrain.txt" --vocab-size 8192 --special "<pad>" \
  --special "</s>" --special "<unk>" "${SENT[@]}" --out "$W/tok" > /dev/null 2>&1

pretrain() {  # pretrain OUT STEPS
  rm -rf "$1"
  "$BIN" train --arch t5 --objective span-corruption --tokenizer "$W/tok" --data "$W/pretrain.txt" --out "$1" \
    --layers "$LAYERS" --heads "$HEADS" --dim "$DIM" --context 128 --batch 32 --steps "$2" --lr "$LR" \
    --warmup $(( $2 / 20 + 1 )) --eval-every 500 --seed 1 --quiet "${THREADS[@]}"
}
if [ -z "$STEPS" ]; then
  pretrain "$W/probe" 10 > /dev/null 2>&1
  STEPS=$(/usr/bin/python3 -c "import json; ms=sorted(json.loads(l)['step_ms'] for l in open('$W/probe/metrics.jsonl') if '\"loss\"' in l)[2:]; print(max(1, int($MINUTES*60000/ms[len(ms)//2])))")
  echo "probe: $MINUTES minutes of pre-training fit $STEPS steps at this machine's speed now"
fi

# 2. span-corruption pre-training
t0=$(date +%s.%N)
pretrain "$W/t5" "$STEPS"
t1=$(date +%s.%N)
/usr/bin/python3 - "$W/t5/metrics.jsonl" "$t0" "$t1" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tps = statistics.median(r["tokens_per_sec"] for r in rows if "loss" in r)
val = [r["val_loss"] for r in rows if "val_loss" in r]
print(f"pre-training: {rows[-1]['step']} steps in {float(sys.argv[3]) - float(sys.argv[2]):.0f} s, median "
      f"{tps:.0f} tokens/s, span-corruption val loss {val[-1] if val else float('nan'):.3f}")
PY

# 3. text-to-text fine-tuning; the dev accuracy is the exact match of the generated label
f0=$(date +%s.%N)
"$BIN" finetune --model "$W/t5" --task text2text --data "$W/train.tsv" --eval "$W/dev.tsv" --out "$W/sst2" \
  --epochs "$EPOCHS" --batch 32 --lr "$FT_LR" --context 128 --max-target 8 --seed 1 --quiet "${THREADS[@]}" > "$W/finetune.txt"
f1=$(date +%s.%N)
acc=$(sed -n 's/^eval exact match \([0-9.]*\).*/\1/p' "$W/finetune.txt")
other=$(/usr/bin/python3 -c "
import collections, sys
p = [l.strip() for l in open(sys.argv[1])]
c = collections.Counter(x for x in p if x not in ('positive', 'negative'))
print(sum(c.values()), c.most_common(3))" "$W/sst2/eval_predictions.txt")
pre_s=$(/usr/bin/python3 -c "print(round($t1 - $t0))"); ft_s=$(/usr/bin/python3 -c "print(round($f1 - $f0))")
printf 'model\tpretrain_steps\tpretrain_s\tfinetune_s\tdev_accuracy\n' > "$W/results.tsv"
printf 't5_text2text\t%s\t%s\t%s\t%s\n' "$STEPS" "$pre_s" "$ft_s" "$acc" >> "$W/results.tsv"
echo "lmkit T5 text-to-text: $STEPS span-corruption steps (~$pre_s s) + $EPOCHS epoch(s) of fine-tuning ($ft_s s): dev accuracy $acc (outputs that are neither label: $other)"

# 4. the others on the same dev set: bag-of-words in this run; the BERT classifier in this run with --bert
/usr/bin/python3 bench/bow_sst2.py "$DATA/sst2/train.tsv" "$DATA/sst2/sentences.tsv"
if [ "$BERT" = 1 ]; then
  if [ "$QUICK" = 1 ]; then WORK="$W/bert" BUILD="$BUILD" bash bench/bert_sst2.sh --ensemble 1 --sentence-epochs 0 --steps "$STEPS" --layers "$LAYERS" --dim "$DIM" | grep '^lmkit BERT'
  else WORK="$W/bert" BUILD="$BUILD" bash bench/bert_sst2.sh --ensemble 1 --sentence-epochs 0 --minutes "$MINUTES" | grep '^lmkit BERT'; fi
elif [ -s runs/bert_sst2/results.tsv ]; then
  echo "lmkit BERT classifier (an earlier run of bench/bert_sst2.sh, not this one): $(tail -1 runs/bert_sst2/results.tsv | awk -F'\t' '{print "dev accuracy " $5 " after " $1 " MLM steps"}')"
else
  echo "lmkit BERT classifier: not run (--bert runs bench/bert_sst2.sh with the same minutes)"
fi
echo "load at end: $(uptime)"
