#!/usr/bin/env bash
# Data-parallel scaling on this machine: `lmkit train` as 2 MPI ranks x 1 thread against 1 process x 2
# threads, on the same global batch (the ranks at --batch B/2 each), for GPT-2 124M at B8xT64 and the
# 6L/384 config at B8xT256 (bench/train_gpt2's shapes, GPT-2 vocabulary), plus 2 ranks with ZeRO-1.
# Prints the median step time (steps after the first), tokens/s, model FLOP/s (6 x params x tokens/s),
# the 2-rank/1-process ratio (1.00 = as fast as the threads; the machine's limit for this comparison),
# and the load before and after (other users of the cores slow both and make the ratio noisy).
# The ranks are not pinned (MPI_BIND=none, fair to the unpinned threads when other work shares the cores);
# MPI_BIND=core pins each rank to a core, which is better on an otherwise idle machine.
#   bash bench/train_mpi.sh [STEPS] [RUNS]     (default 6 steps, 1 run)
#   bash bench/train_mpi.sh --quick [STEPS]    (6L/384 at B8xT64 alone, ~5x less work)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0; [ "${1:-}" = "--quick" ] && { QUICK=1; shift; }
STEPS=${1:-6}; RUNS=${2:-1}
BUILD=${BUILD:-build}
[ -x "$BUILD/lmkit" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$BUILD" -j "$(nproc)" --target lmkit_cli; }
command -v mpirun > /dev/null || { echo "mpirun not found: bash scripts/install-deps.sh" >&2; exit 1; }
unset OPENBLAS_CORETYPE   # forces AVX2 kernels on these machines (bench/train_gpt2.sh)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
# ~80k GPT-2 tokens of English text: enough windows for every run without repeating an epoch
for f in /usr/share/games/fortunes/{fortunes,literature,riddles,science,wisdom,people}; do [ -f "$f" ] && cat "$f"; done > "$W/corpus.txt"
[ -s "$W/corpus.txt" ] || python3 -c "import random; r=random.Random(1); print('\n'.join(' '.join(r.choice(['the','cat','sat','on','a','mat','dog','ran','far','away']) for _ in range(12)) for _ in range(40000)))" > "$W/corpus.txt"

# run NAME RANKS THREADS BATCH ZERO LAYERS HEADS DIM CONTEXT: prints "median_step_s tokens_per_s params"
run() {
  local name=$1 np=$2 th=$3 b=$4 z=$5 L=$6 H=$7 C=$8 T=$9
  local args=(train --data "$W/corpus.txt" --tokenizer gpt2 --layers "$L" --heads "$H" --dim "$C" --context "$T"
              --batch "$b" --steps "$STEPS" --warmup 1 --eval-every 0 --val-fraction 0.01 --threads "$th" --quiet
              --out "$W/$name")
  rm -rf "${W:?}/$name"
  if [ "$np" = 1 ]; then "$BUILD/lmkit" "${args[@]}" > /dev/null 2> "$W/$name.err"
  else mpirun --oversubscribe --bind-to "${MPI_BIND:-none}" -np "$np" "$BUILD/lmkit" "${args[@]}" --zero "$z" > /dev/null 2> "$W/$name.err"; fi
  /usr/bin/python3 - "$W/$name/metrics.jsonl" "$W/$name.err" <<'EOF'
import json, re, statistics, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
ms = statistics.median(s['step_ms'] for s in steps[1:]) / 1e3
tps = statistics.median(s['tokens_per_sec'] for s in steps[1:])
params = float(re.search(r'([0-9.]+)M parameters', open(sys.argv[2]).read()).group(1)) * 1e6
print(f"{ms:.3f} {tps:.1f} {params:.0f}")
EOF
}

echo "load before: $(uptime)"
echo "cores: $(nproc); $(lscpu | grep -m1 'Model name' | sed 's/  */ /g')"
printf "%-22s %-26s %8s %9s %9s %7s\n" config layout "step s" "tok/s" "GFLOP/s" ratio
CONFIGS=("12 12 768 64 8" "6 6 384 256 8")
[ $QUICK = 1 ] && CONFIGS=("6 6 384 64 8")
for cfg in "${CONFIGS[@]}"; do
  read -r L H C T B <<< "$cfg"
  for r in $(seq 1 "$RUNS"); do
    one=$(run one 1 2 "$B" 0 "$L" "$H" "$C" "$T")
    two=$(run two 2 1 $((B / 2)) 0 "$L" "$H" "$C" "$T")
    zero=$(run zero 2 1 $((B / 2)) 1 "$L" "$H" "$C" "$T")
    base=$(echo "$one" | cut -d' ' -f2)
    for x in "1 rank x 2 threads:$one" "2 ranks x 1 thread:$two" "2 ranks x 1, ZeRO-1:$zero"; do
      read -r s tps n <<< "${x#*:}"
      printf "%-22s %-26s %8.3f %9.1f %9.1f %7.2f\n" "L$L C$C B${B}xT$T" "${x%%:*}" "$s" "$tps" \
        "$(echo "6 * $n * $tps / 1000000000" | bc -l)" "$(echo "$tps / $base" | bc -l)"
    done
  done
done
echo "medians over steps 2..$STEPS of each run; ratio = tokens/s / 1 rank x 2 threads"
echo "load after: $(uptime)"
