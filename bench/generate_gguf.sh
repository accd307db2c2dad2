#!/usr/bin/env bash
# Quantized inference side by side with llama.cpp (issue #12): for GPT-2 124M and the TinyLlama-1.1B
# shape (22 layers, 2048 wide, 32/4 heads, FFN 5632; GPT-2's 50257-token vocabulary so that both
# load the same file), random weights written as GGUF by bench_generate (GPT-2: f32, q8_0, q4_0;
# TinyLlama: f16, q8_0, q4_0; both also q4_k, the q4_0 file's blocks made Q4_K by
# tests/cli/gguf_q4k.py, which lmkit keeps exactly as A8 blocks), then on each file in the same run:
#   - lmkit (bench/generate.c): prefill PROMPT tokens, decode DECODE greedy tokens, the read
#     bandwidth measured in the same program just before each decode run (sums on THREADS over
#     256 MiB, best of 3) and the decode's share of bandwidth / bytes per token, each run against
#     its own reading (medians over the runs);
#   - llama.cpp (node-llama-cpp 3.21.1's prebuilt, bench/llamacpp_bench.mjs): the same two figures.
# Prints a table with the ratios to llama.cpp, and the machine's load before and after (these
# machines are shared: a loaded run says so) and lmkit's peak resident memory (it loads the file
# for generation only: Q8_0/Q4_0 stay blocks and f16 stays f16, with no f32 copy; Q8_0/Q4_0 prompts
# and decode steps run the panel kernel of src/kernels/quant.c on weights repacked at load, f16
# prompts converted panels x sgemm).
# A quick look: MODELS=tinyllama PROMPT=128 DECODE=16 bash bench/generate_gguf.sh 1
#   bash bench/generate_gguf.sh [RUNS]   (default 3; THREADS=2 PROMPT=512 DECODE=64 BUILD=build
#                                         GGUF_DIR=/tmp/lmkit-bench-gguf MODELS="gpt2 tinyllama"
#                                         TYPES="q4_0 q4_k": some of f32|f16 q8_0 q4_0 q4_k
#                                         OMP_WAIT_POLICY: passed through when set)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -x "$BUILD/bench_generate" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$BUILD" -j "$(nproc)" --target bench_generate; }
[ -f third_party/npm/node_modules/node-llama-cpp/package.json ] || { echo "node-llama-cpp missing: run scripts/install-deps.sh" >&2; exit 1; }
THREADS=${THREADS:-2} PROMPT=${PROMPT:-512} DECODE=${DECODE:-64} RUNS=${1:-3}
DIR=${GGUF_DIR:-/tmp/lmkit-bench-gguf}
mkdir -p "$DIR"
out=$(mktemp); trap 'rm -f "$out"' EXIT
echo "load before: $(uptime)"
for shape in ${MODELS:-gpt2 tinyllama}; do
  types="f32 q8_0 q4_0 q4_k"; [ "$shape" = tinyllama ] && types="f16 q8_0 q4_0 q4_k"
  for t in ${TYPES:-$types}; do
    f="$DIR/$shape-$t.gguf"
    if [ "$t" = q4_k ]; then   # lmkit writes no Q4_K: the q4_0 file's blocks converted (tests/cli/gguf_q4k.py)
      [ -s "$DIR/$shape-q4_0.gguf" ] || "$BUILD/bench_generate" write "$shape" q4_0 "$DIR/$shape-q4_0.gguf"
      [ -s "$f" ] || /usr/bin/python3 tests/cli/gguf_q4k.py "$DIR/$shape-q4_0.gguf" "$f" > /dev/null
    fi
    [ -s "$f" ] || "$BUILD/bench_generate" write "$shape" "$t" "$f"
    env -u OPENBLAS_CORETYPE OMP_NUM_THREADS="$THREADS" "$BUILD/bench_generate" "$f" "$THREADS" "$PROMPT" "$DECODE" "$RUNS" 16 \
      2>/dev/null | sed "s/^{/{\"shape\": \"$shape\", \"type\": \"$t\", /" >> "$out"
    node bench/llamacpp_bench.mjs "$f" "$THREADS" "$PROMPT" "$DECODE" "$RUNS" 16 | sed "s/^{/{\"shape\": \"$shape\", \"type\": \"$t\", /" >> "$out"
    tail -2 "$out"
  done
done
echo "load after:  $(uptime)"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {}
for r in rows: by.setdefault((r["shape"], r["type"]), {})["lmkit" if r["impl"] == "lmkit" else "llama"] = r
print(f"{'model':10} {'type':5} | {'prefill tok/s':>13} {'llama.cpp':>9} {'ratio':>5} | {'decode tok/s':>12} {'llama.cpp':>9} {'ratio':>5} | {'lmkit RSS':>9} | {'of bandwidth':>12}")
for (shape, t), d in by.items():
    a, b = d.get("lmkit"), d.get("llama")
    if not a or not b: continue
    print(f"{shape:10} {t:5} | {a['prefill_tok_s']:13.1f} {b['prefill_tok_s']:9.1f} {a['prefill_tok_s'] / b['prefill_tok_s']:5.2f} | "
          f"{a['decode_tok_s']:12.2f} {b['decode_tok_s']:9.2f} {a['decode_tok_s'] / b['decode_tok_s']:5.2f} | "
          f"{a['peak_rss_mb']:6.0f} MB | "
          f"{a['bw_fraction']:6.2f} ({a['weight_mb_per_token']:.0f} MB/token, {a['bandwidth_gbs']:.1f} GB/s)")
PY
