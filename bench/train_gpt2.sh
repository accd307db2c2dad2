#!/usr/bin/env bash
# Training benchmark: lmkit vs PyTorch CPU on the same GPT-2 configs, batch and
# threads, in one run: median step time, tokens/s, MFU (against the sgemm peak
# lmkit measures on a 4096^2 cblas_sgemm) and peak RSS.
#   bash bench/train_gpt2.sh [STEPS] [RUNS] [PRECISION] [CONFIGS]    (default 5 timed steps, 3 runs, fp32, gpt2)
# PRECISION bf16 adds lmkit --precision bf16 and PyTorch's CPU autocast to bf16, with bf16's speed-up
# over fp32 and the bf16 peak (a 4096^3 oneDNN matmul); a quick look: bash bench/train_gpt2.sh 3 1 bf16
# CONFIGS shakespeare: nanoGPT's shakespeare_char model and batch with dropout 0.2 (issue #15) instead of
# the two GPT-2 configs; a quick look: bash bench/train_gpt2.sh 3 1 fp32 shakespeare (~3 min quiet)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -x "$BUILD/bench_train_gpt2" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$BUILD" -j "$(nproc)" --target bench_train_gpt2; }
# OPENBLAS_CORETYPE=Haswell (set on these machines) forces AVX2 kernels and halves sgemm.
unset OPENBLAS_CORETYPE
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS
echo "load: $(uptime)"
/usr/bin/python3 bench/train_gpt2_report.py "$BUILD" "${1:-5}" "$THREADS" "${2:-3}" "${3:-fp32}" "${4:-gpt2}"
