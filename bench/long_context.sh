#!/usr/bin/env bash
# Long-context training memory and speed: GPT-2 124M (12 layers, 12 heads, 768 wide, vocabulary 50257),
# batch 1, context T = 1024, 2048, 4096 (positions = T): peak RSS and the median step (forward, backward,
# clip, AdamW) of
#   before      lmkit at revision BEFORE (default e78e701^: the dense kernel that kept (B,NH,T,T) per layer)
#   lmkit       this tree (tiled attention: O(T) per layer)
#   lmkit ckpt  this tree with activation checkpointing (train --checkpoint-activations)
#   pytorch     PyTorch CPU, the same model with its (T,T) attention (sdpa: with F.scaled_dot_product_attention)
# all in the same run, on the same threads. A configuration whose estimated need is above the memory
# available is skipped (said so), not run into the OOM killer; the limit is MEM_MB (default: MemAvailable).
#   bash bench/long_context.sh [STEPS]     (timed steps after one warm-up; default 2; 0: the warm-up
#                                          step alone, timed, for the memory figures on a busy machine)
# Environment: TS="1024 2048 4096", THREADS=2, BUILD=build, BEFORE=<git revision>, OLD_BIN=<its bench_train_gpt2>,
# IMPLS="before lmkit ckpt torch" (add sdpa where PyTorch >= 2.0 has F.scaled_dot_product_attention).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BEFORE=${BEFORE:-e78e701^}
STEPS=${1:-2}
TS=${TS:-"1024 2048 4096"}
IMPLS=${IMPLS:-"before lmkit ckpt torch"}
unset OPENBLAS_CORETYPE   # forces AVX2 kernels on some machines and halves sgemm
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS
MEM_MB=${MEM_MB:-$(awk '/MemAvailable/ {print int($2 / 1024)}' /proc/meminfo)}

[ -x "$BUILD/bench_train_gpt2" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
  cmake --build "$BUILD" -j "$(nproc)" --target bench_train_gpt2 >/dev/null; }
OLD_BIN=${OLD_BIN:-}   # a bench_train_gpt2 built at BEFORE already (else it is built here, in a temporary tree)
if [[ " $IMPLS " == *" before "* && -z "$OLD_BIN" ]]; then
  OLD=$(mktemp -d /tmp/lmkit_before.XXXXXX)
  trap 'rm -rf "$OLD"' EXIT
  git archive "$BEFORE" | tar -x -C "$OLD"
  echo "building lmkit at $BEFORE ($(git rev-parse --short "$BEFORE")) in $OLD ..."
  cmake -S "$OLD" -B "$OLD/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$OLD/build" -j "$(nproc)" --target bench_train_gpt2 >/dev/null
  OLD_BIN=$OLD/build/bench_train_gpt2
fi

echo "load before: $(uptime)"
echo "memory available: $MEM_MB MB; threads: $THREADS; timed steps: $STEPS (median)"
PEAK=$("$BUILD/bench_train_gpt2" 1 1 64 64 1 8 1 2>/dev/null | sed 's/.*"sgemm_peak_gflops": \([0-9.]*\).*/\1/')
printf "%-7s %-12s %10s %9s %9s %6s\n" T impl "RSS MB" "step s" "tok/s" MFU
for T in $TS; do
  # a rough need in MB: weights, gradients and AdamW state (2 GB), logits (T x 50257 x 2), activations
  # ~ 24 (N,C)-sized buffers per layer; the dense (T,T) attention adds 12 layers x 12 heads x T^2 x 4 B
  # (+ one more for backward); PyTorch's dense attention keeps ~3 such matrices per layer
  base=$(( 2000 + T * 50257 * 8 / 1048576 + 12 * 24 * T * 768 * 4 / 1048576 ))
  tt=$(( 12 * 12 * T * T * 4 / 1048576 ))
  for impl in $IMPLS; do
    case $impl in
      before) need=$(( base + tt + tt / 12 )); cmd=("$OLD_BIN" 12 12 768 50257 1 "$T" "$(( STEPS > 0 ? STEPS : 1 ))" "$T") ;;
      lmkit)  need=$base; cmd=("$BUILD/bench_train_gpt2" 12 12 768 50257 1 "$T" "$STEPS" "$T") ;;
      ckpt)   need=$base; cmd=("$BUILD/bench_train_gpt2" 12 12 768 50257 1 "$T" "$STEPS" "$T" 1) ;;
      torch)  need=$(( base * 2 + 3 * tt )); cmd=(/usr/bin/python3 bench/train_gpt2_torch.py 12 12 768 50257 1 "$T" "$STEPS" "$PEAK" "$THREADS" dense) ;;
      sdpa)   need=$(( base * 2 )); cmd=(/usr/bin/python3 bench/train_gpt2_torch.py 12 12 768 50257 1 "$T" "$STEPS" "$PEAK" "$THREADS" sdpa) ;;
      *) echo "unknown impl $impl" >&2; exit 2 ;;
    esac
    if (( need > MEM_MB )); then
      printf "%-7s %-12s %10s   skipped: needs about %d MB, %d MB available\n" "$T" "$impl" - "$need" "$MEM_MB"
      continue
    fi
    line=$("${cmd[@]}" 2>&1 | tail -1) || true
    if [[ "$line" != *peak_rss_mb* ]]; then printf "%-7s %-12s failed: %s\n" "$T" "$impl" "$line"; continue; fi
    /usr/bin/python3 -c 'import json, sys; r = json.loads(sys.argv[1])
print("%-7s %-12s %10.0f %9.2f %9.1f %6.3f" % (sys.argv[2], sys.argv[3], r["peak_rss_mb"], r["step_s"], r["tokens_per_s"], r["mfu"]))' \
      "$line" "$T" "$impl"
  done
done
echo "load after: $(uptime)"
