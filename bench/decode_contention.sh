#!/usr/bin/env bash
# Decode under contention (issue #12): greedy decode tokens/s of one GGUF file at 1 and THREADS
# threads, alone and while a one-core busy loop (`yes > /dev/null`) runs beside it, with the
# machine's load before and after. A decode step is one OpenMP parallel region whose threads take
# chunks of each operation (src/infer/session.c), so a busy neighbour should cost a share of the
# speed, not a collapse (before that change 2 threads ran up to ~15x slower than 1 on a loaded host).
#   bash bench/decode_contention.sh [FILE.gguf]   (default: the GPT-2 q4_0 file of generate_gguf.sh;
#       THREADS=2 DECODE=64 RUNS=3 BUILD=build; a loaded machine says so in the load lines)
# Quick: DECODE=16 RUNS=1 bash bench/decode_contention.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
THREADS=${THREADS:-2} DECODE=${DECODE:-64} RUNS=${RUNS:-3}
[ -x "$BUILD/bench_generate" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$BUILD" -j "$(nproc)" --target bench_generate; }
F=${1:-${GGUF_DIR:-/tmp/lmkit-bench-gguf}/gpt2-q4_0.gguf}
if [ ! -s "$F" ]; then mkdir -p "$(dirname "$F")"; "$BUILD/bench_generate" write gpt2 q4_0 "$F"; fi
busy=""
trap '[ -n "$busy" ] && kill "$busy" 2>/dev/null; true' EXIT
echo "load before: $(uptime)"
echo "file: $F, decode $DECODE tokens, median of $RUNS runs"
for neighbour in alone busy; do
  if [ "$neighbour" = busy ]; then yes > /dev/null & busy=$!; fi
  for th in 1 "$THREADS"; do
    r=$(OMP_NUM_THREADS=$th "$BUILD/bench_generate" "$F" "$th" 16 "$DECODE" "$RUNS" 16 2>/dev/null | tail -1)
    /usr/bin/python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%-5s %d threads: decode %7.2f tok/s  (%.2f of the bandwidth measured in the same run, %.1f GB/s)" % (sys.argv[2], r["threads"], r["decode_tok_s"], r["bw_fraction"], r["bandwidth_gbs"]))' "$r" "$neighbour"
  done
  if [ -n "$busy" ]; then kill "$busy"; busy=""; fi
done
echo "load after:  $(uptime)"
