#!/usr/bin/env bash
# Inference benchmark: a TinyLlama-1.1B-shaped Llama (22 layers, 2048 wide, 32 heads / 4 KV heads,
# SwiGLU FFN 5632, vocab 32000; random weights, f32) through lmkit's KV-cache session: prefill and
# greedy decode tokens/s (medians of RUNS runs in one process, after a warm-up), decode as a share of
# the DRAM read bandwidth limit measured in the same program (bench/generate.c). About 4.4 GB of
# weights stream per decoded token, so decode is bandwidth-bound; f32 is the baseline that the
# quantized types of the GGUF issue improve on.
#   bash bench/generate_llama.sh [RUNS]     (default 3; THREADS=2, PROMPT=256, DECODE=32, BUILD=build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -x "$BUILD/bench_generate" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$BUILD" -j "$(nproc)" --target bench_generate; }
THREADS=${THREADS:-2}
RUNS=${1:-3}
echo "load before: $(uptime)"
env -u OPENBLAS_CORETYPE OMP_NUM_THREADS="$THREADS" "$BUILD/bench_generate" tinyllama "$THREADS" "${PROMPT:-256}" \
  "${DECODE:-32}" "$RUNS" 16
echo "load after:  $(uptime)"
