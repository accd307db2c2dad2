#!/usr/bin/env bash
# Training benchmark of an encoder-decoder: lmkit vs PyTorch CPU on the same T5 in one run:
# median step time, tokens/s (input + target tokens), MFU (against the sgemm peak lmkit
# measures) and peak RSS, medians of RUNS runs. Default: the issue's t5-small shape (6+6
# layers, d_model 512, 8 heads, d_ff 2048, vocab 32128, input 512 / target 114, batch 8,
# 2 threads). The machine's load is printed: on a shared machine the figures move with it.
#   bash bench/train_t5.sh [STEPS] [RUNS] [CONFIG...]
#   CONFIG: LAYERS HEADS DIM FF VOCAB BATCH INPUT TARGET (e.g. 2 4 128 512 8000 4 128 32 for a quick look)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -x "$BUILD/bench_train_t5" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$BUILD" -j "$(nproc)" --target bench_train_t5; }
unset OPENBLAS_CORETYPE
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS
STEPS=${1:-3}; RUNS=${2:-3}; shift $(( $# < 2 ? $# : 2 ))
CFG=("$@"); [ ${#CFG[@]} -eq 8 ] || CFG=(6 8 512 2048 32128 8 512 114)
echo "load: $(uptime)"
/usr/bin/python3 - "$BUILD" "$STEPS" "$THREADS" "$RUNS" "${CFG[@]}" <<'PY'
import json, os, statistics, subprocess, sys
build, steps, threads, runs, cfg = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
run = lambda cmd: json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
med = lambda rs, k: statistics.median(r[k] for r in rs)
for gated in ("0", "1"):
    ours = [run([os.path.join(build, "bench_train_t5"), *cfg, steps, gated]) for _ in range(runs)]
    peak = str(med(ours, "sgemm_peak_gflops"))
    theirs = [run(["/usr/bin/python3", "bench/train_t5_torch.py", *cfg, steps, peak, threads, gated]) for _ in range(runs)]
    name = "v1.1 gated-gelu" if gated == "1" else "v1.0 relu"
    print(f"T5 {name}: L{cfg[0]}+{cfg[0]} C{cfg[2]} FF{cfg[3]} V{cfg[4]} B{cfg[5]} input {cfg[6]} target {cfg[7]}, {threads} threads")
    for impl, rs in (("lmkit", ours), ("pytorch", theirs)):
        print(f"  {impl:<8} step {med(rs, 'step_s'):8.3f} s  {med(rs, 'tokens_per_s'):8.1f} tok/s  MFU {med(rs, 'mfu'):6.1%}  "
              f"RSS {med(rs, 'peak_rss_mb'):6.0f} MB")
    print(f"  lmkit/pytorch tokens/s: {med(ours, 'tokens_per_s') / med(theirs, 'tokens_per_s'):.2f}x; sgemm peak "
          f"{float(peak):.0f} GFLOP/s; medians of {runs} runs x {steps} steps")
PY
