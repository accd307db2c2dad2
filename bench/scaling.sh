#!/usr/bin/env bash
# scaling.sh — a scaling-law study on this machine (issue #13): a sweep of GPT sizes at several
# compute budgets on tinyshakespeare + fortunes, the Chinchilla fits (approach 3 with bootstrap
# intervals, approach 2's IsoFLOP minima), the compute-optimal tokens per parameter, and the error
# of the fit's prediction for one held-out larger run (trained at a budget above the sweep's, at
# the size the fit calls compute-optimal). Chinchilla's published figures are printed beside ours
# (E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28, ~20 tokens per parameter): a different data
# set, tokenizer and scale, so they are a landmark rather than a target.
#
#   bench/scaling.sh                 # the default sweep: ~1 h or more on 2 cores (untimed so far)
#   bench/scaling.sh --tiny          # a ~2-minute smoke run at tiny budgets (numbers meaningless)
#   BUDGETS=3e11,1e12 HOLDOUT=3e12 SIZES=auto OUT=/tmp/sc bench/scaling.sh
#
# The default ladder (SIZES) is the same six sizes at every budget, 1x32 to 4x64: lmkit sweep's
# auto ladder centres on Chinchilla's ~20 tokens per parameter, but at these budgets, with bytes
# as tokens and N counting non-embedding parameters only, the compute-optimal models are the
# smallest ones at hundreds of tokens per parameter (measured 2026-12-02: with the auto ladder
# every IsoFLOP profile fell monotonically towards its smallest size, so the fit was unbounded).
#   bench/scaling.sh --publish       # also copy the plots to docs/scaling-*.png
#
# Everything lands in $OUT (default build/bench-scaling); re-running continues the sweep where it
# stopped (lmkit sweep is resumable). Prints the load average before and after: figures taken
# on a loaded machine are slower, not different (the losses do not depend on the load).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${LMKIT_BIN:-build}/lmkit
TINY=0 PUBLISH=0
for a in "$@"; do
  case $a in
    --tiny) TINY=1 ;;
    --publish) PUBLISH=1 ;;
    *) echo "usage: bench/scaling.sh [--tiny] [--publish]" >&2; exit 2 ;;
  esac
done
if [ $TINY = 1 ]; then
  BUDGETS=${BUDGETS:-1e9,3e9,1e10} HOLDOUT=${HOLDOUT:-3e10} CONTEXT=${CONTEXT:-32} BATCH=${BATCH:-4}
  OUT=${OUT:-build/bench-scaling-tiny}
else
  BUDGETS=${BUDGETS:-3e11,1e12,3e12} HOLDOUT=${HOLDOUT:-6e12} CONTEXT=${CONTEXT:-128} BATCH=${BATCH:-8}
  OUT=${OUT:-build/bench-scaling} SIZES=${SIZES:-1x32,2x32,3x32,2x64,3x64,4x64}
fi
SIZES=${SIZES:-auto}
THREADS=${THREADS:-$(nproc)}
[ -x "$BIN" ] || { echo "build lmkit first (make build)" >&2; exit 1; }
mkdir -p "$OUT"
unset OPENBLAS_CORETYPE

# the corpus: tinyshakespeare when present, and the fortunes files
if [ ! -s "$OUT/corpus.txt" ]; then
  : > "$OUT/corpus.txt"
  [ -f /work/shared/data/tinyshakespeare/input.txt ] && cat /work/shared/data/tinyshakespeare/input.txt >> "$OUT/corpus.txt"
  find /usr/share/games/fortunes -type f ! -name '*.dat' ! -name '*.u8' -print0 | sort -z | xargs -0 cat | grep -v '^%$' >> "$OUT/corpus.txt"
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "corpus: $(stat -c %s "$OUT/corpus.txt") bytes (byte tokenizer); budgets $BUDGETS, sizes $SIZES; held-out run at $HOLDOUT; context $CONTEXT, batch $BATCH, $THREADS threads"
t0=$(date +%s)
COMMON=(--data "$OUT/corpus.txt" --context "$CONTEXT" --batch "$BATCH" --threads "$THREADS" --quiet)
"$BIN" sweep "${COMMON[@]}" --budgets "$BUDGETS" --sizes "$SIZES" --out "$OUT/sweep"
t1=$(date +%s)
"$BIN" fit --sweep "$OUT/sweep" --json > "$OUT/fit.json"
"$BIN" fit --sweep "$OUT/sweep" > "$OUT/fit.txt"

# the held-out run: the ladder size nearest the fit's N_opt at HOLDOUT, trained by the same sweep code
SIZE=$(python3 - "$OUT/fit.json" "$HOLDOUT" "$BIN" "$OUT/corpus.txt" "$CONTEXT" "$BATCH" <<'EOF'
import json, math, subprocess, sys
fit, C = json.load(open(sys.argv[1])), float(sys.argv[2])
s, a = fit["alpha"] + fit["beta"], None
G = (fit["alpha"] * fit["A"] / (fit["beta"] * fit["B"])) ** (1 / s)
n_opt = G * (C / 6) ** (fit["beta"] / s)
# the sizes lmkit sweep would consider at C, from its own plan (--dry-run lists N for each)
out = subprocess.run([sys.argv[3], "sweep", "--data", sys.argv[4], "--budgets", sys.argv[2], "--context", sys.argv[5],
                      "--batch", sys.argv[6], "--out", "/nonexistent", "--dry-run"], capture_output=True, text=True, check=True).stdout
best = min((abs(math.log(float(l.split()[2]) / n_opt)), l.split()[0].split("-")[1]) for l in out.splitlines()[1:])
print(best[1])
EOF
)
"$BIN" sweep "${COMMON[@]}" --budgets "$HOLDOUT" --sizes "$SIZE" --out "$OUT/holdout"
t2=$(date +%s)
python3 - "$OUT/holdout/runs.jsonl" "$OUT/sweep" "$BIN" > "$OUT/holdout.txt" <<'EOF'
import json, subprocess, sys
run = json.loads(open(sys.argv[1]).readline())
pred = json.loads(subprocess.run([sys.argv[3], "fit", "--sweep", sys.argv[2], "--json", "--predict",
                                  "%r,%r" % (run["params"], run["tokens"])], capture_output=True, text=True, check=True).stdout)["predict"][0]
err = (pred["val_loss"] - run["val_loss"]) / run["val_loss"]
print("held-out run %s (N %.4g, D %.4g, C %.3g): val_loss %.4f, predicted %.4f [%.4f, %.4f]: error %+.2f%%%s" % (
    run["run"], run["params"], run["tokens"], run["flops"], run["val_loss"], pred["val_loss"], pred["ci"][0], pred["ci"][1],
    100 * err, "" if pred["ci"][0] <= run["val_loss"] <= pred["ci"][1] else " (outside the 95% interval)"))
EOF
"$BIN" plot --sweep "$OUT/sweep" --out "$OUT/plots" --title "lmkit sweep, $(nproc) cores" 2>/dev/null

python3 - "$OUT/fit.json" <<'EOF'
import json, sys
f = json.load(open(sys.argv[1]))
ci = f["ci"]
print("\n%-26s %-30s %s" % ("", "lmkit (this sweep)", "Chinchilla (Hoffmann et al. 2022)"))
for k, ref in (("E", 1.69), ("A", 406.4), ("B", 410.7), ("alpha", 0.34), ("beta", 0.28)):
    print("%-26s %-30s %g" % (k, "%.4g [%.4g, %.4g]" % (f[k], ci[k][0], ci[k][1]), ref))
print("%-26s %-30s %s" % ("N_opt ∝ C^a", "%.3f [%.3f, %.3f]" % (f["a"], ci["a"][0], ci["a"][1]), "0.46 (approach 3), 0.49 (approach 2)"))
if "isoflop_a" in f:
    print("%-26s %-30s %s" % ("IsoFLOP (approach 2) a", "%.3f" % f["isoflop_a"], "0.49"))
o = f["optimum"][-1]
print("%-26s %-30s %s" % ("tokens/param at C=%.3g" % o["flops"], "%.1f" % o["tokens_per_param"], "~20"))
EOF
cat "$OUT/holdout.txt"
echo "runs: $(wc -l < "$OUT/sweep/runs.jsonl") in $((t1 - t0)) s, held-out run $((t2 - t1)) s; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "plots: $OUT/plots/{isoflop,frontier,curves}.png; full report: $OUT/fit.txt"
if [ $PUBLISH = 1 ]; then
  for p in isoflop frontier curves; do cp "$OUT/plots/$p.png" "docs/scaling-$p.png"; done
  echo "copied to docs/scaling-{isoflop,frontier,curves}.png"
fi
