"""Runs bench_train_gpt2 (lmkit) and train_gpt2_torch.py (PyTorch) on the same
configs, RUNS times each, and prints the medians side by side.
usage: train_gpt2_report.py BUILD_DIR STEPS THREADS RUNS"""
import json
import os
import statistics
import subprocess
import sys

CONFIGS = [(12, 12, 768, 50257, 4, 64), (6, 6, 384, 50257, 8, 256)]


def run(cmd):
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def med(rs, k):
    return statistics.median(r[k] for r in rs)


def main():
    build, steps, threads, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    here = os.path.dirname(os.path.abspath(__file__))
    print(f"{'impl':<8} {'config':<20} {'step s':>8} {'tok/s':>8} {'MFU':>6} {'RSS MB':>7}")
    for cfg in CONFIGS:
        args = [str(x) for x in cfg]
        ours = [run([os.path.join(build, "bench_train_gpt2"), *args, steps]) for _ in range(runs)]
        peak = str(med(ours, "sgemm_peak_gflops"))
        theirs = [run(["/usr/bin/python3", os.path.join(here, "train_gpt2_torch.py"), *args, steps, peak, threads])
                  for _ in range(runs)]
        for name, rs in (("lmkit", ours), ("pytorch", theirs)):
            c = f"L{cfg[0]} C{cfg[2]} B{cfg[4]}xT{cfg[5]}"
            print(f"{name:<8} {c:<20} {med(rs, 'step_s'):8.3f} {med(rs, 'tokens_per_s'):8.1f} "
                  f"{med(rs, 'mfu'):6.1%} {med(rs, 'peak_rss_mb'):7.0f}")
        print(f"  lmkit/pytorch tokens/s: {med(ours, 'tokens_per_s') / med(theirs, 'tokens_per_s'):.2f}x; "
              f"sgemm peak {float(peak):.0f} GFLOP/s; medians of {runs} runs x {steps} steps")


if __name__ == "__main__":
    main()
