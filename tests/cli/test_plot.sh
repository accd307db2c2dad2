#!/usr/bin/env bash
# test_plot.sh — `lmkit plot` writes PNGs through gnuplot: from a sweep's runs.jsonl (a synthetic
# Chinchilla sweep written here, with one run's metrics.jsonl in SWEEP/runs/NAME) the IsoFLOP,
# frontier and loss-against-compute plots; from metrics.jsonl files the loss curves; bad input is
# a one-line error.
source "$(dirname "$0")/lib.sh"
command -v gnuplot > /dev/null || { echo "FAIL gnuplot is not installed (scripts/install-deps.sh installs gnuplot-nox)"; exit 1; }

mkdir -p "$T/sw/runs/r0"
python3 - "$T/sw" <<'PY'
import json, random, sys
random.seed(5)
E, A, B, a, b = 1.69, 406.4, 410.7, 0.34, 0.28
G = (a * A / (b * B)) ** (1 / (a + b))
with open(sys.argv[1] + "/runs.jsonl", "w") as f:
    for c in range(4):
        C = 1e18 * 10 ** c
        nopt = G * (C / 6) ** (b / (a + b))
        for k in range(-2, 3):
            N = nopt * 10 ** (k / 2); D = C / (6 * N)
            L = (E + A / N ** a + B / D ** b) * (1 + 0.005 * random.gauss(0, 1))
            f.write(json.dumps({"run": "r%d" % (5 * c + k + 2), "params": N, "tokens": D, "flops": C, "val_loss": L, "steps": 100}) + "\n")
with open(sys.argv[1] + "/runs/r0/metrics.jsonl", "w") as f:
    for s in range(1, 101):
        f.write('{"step": %d, "loss": %.6f, "lr": 0.001}\n' % (s, 6 / s ** 0.3))
        if s % 50 == 0:
            f.write('{"step": %d, "val_loss": %.6f}\n' % (s, 6.2 / s ** 0.3))
PY
tmps() { find /tmp -maxdepth 1 -name 'lmkit-plot-*' 2>/dev/null | wc -l; }
before=$(tmps)
png() { python3 -c "import sys; d=open(sys.argv[1],'rb').read(); sys.exit(not (d[:8]==b'\x89PNG\r\n\x1a\n' and len(d) > 5000))" "$1"; }

"$BIN" plot --sweep "$T/sw" --title "synthetic" > "$T/out.txt" 2>&1
check "sweep plots written to SWEEP/plots" 'png "$T/sw/plots/isoflop.png" && png "$T/sw/plots/frontier.png" && png "$T/sw/plots/curves.png"'
check "says where they went" 'grep -q "sw/plots/isoflop.png" "$T/out.txt"'
"$BIN" plot --sweep "$T/sw/runs.jsonl" --out "$T/p2" > /dev/null 2>&1
check "a runs.jsonl file, --out DIR (no metrics: no curves.png)" 'png "$T/p2/isoflop.png" && png "$T/p2/frontier.png" && [ ! -e "$T/p2/curves.png" ]'
"$BIN" plot --metrics "$T/sw/runs/r0" "$T/sw/runs/r0/metrics.jsonl" --out "$T/curves.png" > /dev/null 2>&1
check "loss curves from metrics.jsonl" 'png "$T/curves.png"'
check "no temporary files left" '[ "$(tmps)" -le "$before" ]'

echo '{"step": 1, "val_loss": 2}' > "$T/noloss.jsonl"
err "metrics without training loss" "noloss.jsonl: no training-loss lines" "$BIN" plot --metrics "$T/noloss.jsonl" --out "$T/x.png"
err "metrics without --out" "--metrics needs --out FILE.png" "$BIN" plot --metrics "$T/noloss.jsonl"
err "neither or both" "give --sweep SWEEP or --metrics RUN..." "$BIN" plot
head -3 "$T/sw/runs.jsonl" > "$T/few.jsonl"
err "too few runs to fit" "at least 5 runs" "$BIN" plot --sweep "$T/few.jsonl" --out "$T/p3"
echo '{"params": 1, "tokens": 2, "val_loss": 3, "loss": 4}' > "$T/bad.jsonl"
err "a bad runs.jsonl line" "bad.jsonl:1: unknown key \"loss\"" "$BIN" plot --sweep "$T/bad.jsonl" --out "$T/p3"
echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]
