#!/usr/bin/env bash
# past_vs_present.sh — the models transformers replaced against a GPT, on tinyshakespeare
# (issue #13, docs/classic.md): an interpolated modified Kneser-Ney n-gram at its best order, an
# Elman RNN, an LSTM and a GPT, all over the same byte tokenizer, trained by `lmkit train` and
# measured by `lmkit eval` in validation bits per byte, under two budgets:
#   - equal wall time: each trained model gets TIME seconds of training (its steps are set from a
#     short calibration run of the same command, so startup is not counted);
#   - equal FLOPs: each gets FLOPS floating-point operations, counted as 6 N per trained token
#     (N: every parameter; the tied head is the matmul the embedding table also serves) plus, for
#     the GPT, 12 L T C per token for attention's two T-long products, forward and backward.
# The n-gram is counted, not trained: it has no FLOPs budget (one pass of hashing) and its time
# is what counting and the order sweep took; its order is the best of 2..6 on a dev split.
# Splits of the file: the first 90% trains, the next 5% is the dev split (n-gram order), the last
# 5% is the validation split every figure is measured on.
#
#   bench/past_vs_present.sh --quick    # TIME=8 s, FLOPS=5e11 per model, orders 2..5: ~3 min on 2 quiet cores
#   bench/past_vs_present.sh            # TIME=30, FLOPS=3e12: ~10 min (the LSTM's FLOPs run is the longest:
#                                       # its recurrence runs one time step after another, at a low FLOP rate)
#   bench/past_vs_present.sh --full     # TIME=300, FLOPS=3e13: figures worth quoting (~1 h)
#   TIME=60 FLOPS=3e13 THREADS=2 OUT=/tmp/pvp bench/past_vs_present.sh --publish
#
# Prints a table (and $OUT/results.tsv) and plots $OUT/past_vs_present.png with gnuplot; --publish
# copies the plot to docs/past_vs_present.png. The load average is printed before and after:
# equal-wall-time results are only fair on a quiet machine (a loaded one gives each model a
# different share of the cores); equal-FLOPs results do not depend on the load.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${LMKIT_BIN:-build}/lmkit
MODE=default PUBLISH=0
for a in "$@"; do
  case $a in
    --quick) MODE=quick ;;
    --full) MODE=full ;;
    --publish) PUBLISH=1 ;;
    *) echo "usage: bench/past_vs_present.sh [--quick|--full] [--publish]" >&2; exit 2 ;;
  esac
done
case $MODE in
  quick) TIME=${TIME:-8} FLOPS=${FLOPS:-5e11} ORDERS=${ORDERS:-"2 3 4 5"} ;;
  full) TIME=${TIME:-300} FLOPS=${FLOPS:-3e13} ORDERS=${ORDERS:-"2 3 4 5 6"} ;;
  *) TIME=${TIME:-30} FLOPS=${FLOPS:-3e12} ORDERS=${ORDERS:-"2 3 4 5 6"} ;;
esac
THREADS=${THREADS:-$(nproc)}
OUT=${OUT:-build/bench-past-vs-present}
DATA=${DATA:-}
for d in "$DATA" ../shared/data/tinyshakespeare/input.txt /work/shared/data/tinyshakespeare/input.txt; do
  [ -n "$d" ] && [ -f "$d" ] && { DATA=$d; break; }
done
[ -f "$DATA" ] || { echo "tinyshakespeare not found: set DATA=.../input.txt (shared/data/tinyshakespeare)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "build lmkit first (make build)" >&2; exit 1; }
command -v gnuplot > /dev/null || echo "(gnuplot not found: the table only; Debian: apt-get install gnuplot-nox)" >&2
mkdir -p "$OUT"
unset OPENBLAS_CORETYPE

# the splits
size=$(stat -c %s "$DATA")
ntrain=$((size * 90 / 100)) ndev=$((size * 5 / 100))
python3 - "$DATA" "$OUT" "$ntrain" "$ndev" <<'EOF'
import sys
data, out, a, b = open(sys.argv[1], "rb").read(), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for name, part in (("train", data[:a]), ("dev", data[a:a + b]), ("val", data[a + b:])):
    open(f"{out}/{name}.txt", "wb").write(part)
EOF
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "data: $DATA ($size bytes: train $ntrain, dev $ndev, val $(stat -c %s "$OUT/val.txt")), byte tokenizer; mode $MODE: TIME $TIME s, FLOPS $FLOPS; $THREADS threads"

now() { date +%s.%N; }
bpb() { "$BIN" eval --model "$1" --data "$2" --context 128 --batch 8 --threads "$THREADS" --quiet | sed -n 's/.*bits\/byte \([0-9.]*\).*/\1/p'; }
calc() { python3 -c "import math; print($1)"; }
printf 'budget\tmodel\tparams\tsteps\ttrain_s\tflops\tval_bpb\n' > "$OUT/results.tsv"

# ---- the n-gram: orders on the dev split, the best one on validation
best= best_dev=99
t0=$(now)
for k in $ORDERS; do
  "$BIN" train --arch ngram --order "$k" --data "$OUT/train.txt" --val-fraction 0 --threads "$THREADS" --quiet --out "$OUT/ngram-$k" > /dev/null
  d=$(bpb "$OUT/ngram-$k" "$OUT/dev.txt")
  echo "  n-gram order $k: dev bits/byte $d"
  if python3 -c "import sys; sys.exit(not $d < $best_dev)"; then best=$k best_dev=$d; fi
done
ng_s=$(calc "$(now) - $t0")
ng_val=$(bpb "$OUT/ngram-$best" "$OUT/val.txt")
echo "  n-gram: best order $best (dev $best_dev), validation $ng_val bits/byte; counting + sweep took $(printf %.1f "$ng_s") s"

# ---- the trained models: one shape each, same batch and context
B=16 T=128
declare -A SHAPE=(
  [rnn]="--arch rnn --layers 2 --dim 256 --lr 1e-3"
  [lstm]="--arch lstm --layers 2 --dim 256 --lr 2e-3"
  [gpt]="--arch gpt2 --layers 4 --heads 4 --dim 128 --lr 1e-3"
)
MODELS="rnn lstm gpt"
run() {   # run NAME STEPS DIR: trains; prints the training seconds
  local s0; s0=$(now)
  # shellcheck disable=SC2086
  "$BIN" train ${SHAPE[$1]} --data "$OUT/train.txt" --context $T --batch $B --steps "$2" --warmup $(( $2 / 10 < 50 ? $2 / 10 : 50 )) \
    --eval-every 0 --val-fraction 0.001 --seed 1 --threads "$THREADS" --quiet --out "$3" > /dev/null 2> "$3.err" || { cat "$3.err" >&2; exit 1; }
  calc "$(now) - $s0"
}
flops_per_token() {   # 6 N (+ 12 L T C for a GPT's attention)
  local n; n=$("$BIN" info "$1" | sed -n 's/^parameters: *\([0-9]*\).*/\1/p')
  if [ "$2" = gpt ]; then calc "6 * $n + 12 * 4 * $T * 128"; else calc "6 * $n"; fi
}
for m in $MODELS; do
  # calibration: 2 steps and 12 steps; the difference is the time of 10 steps without the startup
  a=$(run "$m" 2 "$OUT/cal-$m-a"); b=$(run "$m" 12 "$OUT/cal-$m-b")
  step_s=$(calc "max(($b - $a) / 10, 1e-3)")
  fpt=$(flops_per_token "$OUT/cal-$m-b" "$m")
  params=$("$BIN" info "$OUT/cal-$m-b" | sed -n 's/^parameters: *\([0-9]*\).*/\1/p')
  for budget in time flops; do
    if [ $budget = time ]; then steps=$(calc "max(1, int($TIME / $step_s))"); else steps=$(calc "max(1, int($FLOPS / ($fpt * $B * $T)))"); fi
    secs=$(run "$m" "$steps" "$OUT/$m-$budget")
    v=$(bpb "$OUT/$m-$budget" "$OUT/val.txt")
    fl=$(calc "'%.3g' % ($fpt * $B * $T * $steps)")
    printf '%s\t%s\t%s\t%s\t%.1f\t%s\t%s\n' "$budget" "$m" "$params" "$steps" "$secs" "$fl" "$v" >> "$OUT/results.tsv"
    echo "  $m, equal $budget: $steps steps ($(printf %.1f "$secs") s, $fl FLOPs): validation $v bits/byte"
  done
done
for budget in time flops; do
  printf '%s\tngram-%s\t0\t0\t%.1f\t-\t%s\n' "$budget" "$best" "$ng_s" "$ng_val" >> "$OUT/results.tsv"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "validation bits per byte (lower is better); equal wall time $TIME s, equal FLOPs $FLOPS:"
python3 - "$OUT/results.tsv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
models = []
for r in rows:
    if r["model"] not in models: models.append(r["model"])
print("%-10s %10s | %8s %8s %9s | %8s %10s %9s" % ("model", "params", "steps", "train s", "bpb(time)", "steps", "FLOPs", "bpb(flop)"))
for m in models:
    t = next(r for r in rows if r["model"] == m and r["budget"] == "time")
    f = next(r for r in rows if r["model"] == m and r["budget"] == "flops")
    print("%-10s %10s | %8s %8s %9s | %8s %10s %9s" % (m, t["params"], t["steps"], t["train_s"], t["val_bpb"], f["steps"], f["flops"], f["val_bpb"]))
print("(the n-gram is counted, not trained: its time is counting plus the order sweep, its FLOPs n/a)")
EOF
if command -v gnuplot > /dev/null; then
  awk -F'\t' 'NR > 1 && $1 == "time" {t[$2] = $7} NR > 1 && $1 == "flops" {f[$2] = $7; o[++n] = $2}
              END {for (i = 1; i <= n; i++) print o[i], t[o[i]], f[o[i]]}' "$OUT/results.tsv" > "$OUT/plot.dat"
  gnuplot <<EOF
set terminal pngcairo size 900,520 font ",11"
set output "$OUT/past_vs_present.png"
set title "tinyshakespeare, byte tokenizer: validation bits per byte (lower is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set ylabel "bits per byte"
set yrange [0:*]
set grid ytics
set key top right
plot "$OUT/plot.dat" using 2:xtic(1) title "equal wall time ($TIME s)", "" using 3 title "equal FLOPs ($FLOPS)"
EOF
  echo "plot: $OUT/past_vs_present.png"
  if [ $PUBLISH = 1 ]; then cp "$OUT/past_vs_present.png" docs/past_vs_present.png && echo "copied to docs/past_vs_present.png"; fi
fi
