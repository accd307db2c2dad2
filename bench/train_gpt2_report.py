"""Runs bench_train_gpt2 (lmkit) and train_gpt2_torch.py (PyTorch) on the same
configs, RUNS times each, and prints the medians side by side.
usage: train_gpt2_report.py BUILD_DIR STEPS THREADS RUNS [PRECISION] [CONFIGS]
CONFIGS gpt2 (default: GPT-2 124M at B4xT64 and 6L/384 at B8xT256, issue #14's) or shakespeare
(nanoGPT's shakespeare_char: 6L/384, 6 heads, 65 characters, B64xT256, dropout 0.2, issue #15's).
PRECISION fp32 (default) or bf16: bf16 runs both in fp32 and in bf16 (lmkit --precision bf16,
PyTorch under CPU autocast) and gives bf16's speed-up over fp32 (issue #14's target: 1.4x) and the
MFU of each against the sgemm peak (and lmkit bf16's against the bf16 peak, a oneDNN matmul).
Interleaved (fp32, bf16, fp32, ...) so that a change of load hits both alike."""
import json
import os
import statistics
import subprocess
import sys

# (layers, heads, dim, vocab, batch, seq, positions, dropout)
CONFIGS = {"gpt2": [(12, 12, 768, 50257, 4, 64, 1024, 0), (6, 6, 384, 50257, 8, 256, 1024, 0)],
           "shakespeare": [(6, 6, 384, 65, 64, 256, 256, 0.2)]}


def run(cmd):
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def med(rs, k):
    return statistics.median(r[k] for r in rs)


def main():
    build, steps, threads, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    precisions = ["fp32", "bf16"] if len(sys.argv) > 5 and sys.argv[5] == "bf16" else ["fp32"]
    configs = CONFIGS[sys.argv[6] if len(sys.argv) > 6 else "gpt2"]
    here = os.path.dirname(os.path.abspath(__file__))
    print(f"{'impl':<13} {'config':<20} {'step s':>8} {'tok/s':>8} {'MFU':>6} {'RSS MB':>7}")
    for cfg in configs:
        args, pos, drop = [str(x) for x in cfg[:6]], str(cfg[6]), str(cfg[7])
        ours = {p: [] for p in precisions}
        for _ in range(runs):
            for p in precisions:
                ours[p].append(run([os.path.join(build, "bench_train_gpt2"), *args, steps, pos, "0", p, drop]))
        peak = str(med(ours["fp32"], "sgemm_peak_gflops"))
        theirs = {p: [] for p in precisions}
        for _ in range(runs):
            for p in precisions:
                theirs[p].append(run(["/usr/bin/python3", os.path.join(here, "train_gpt2_torch.py"), *args, steps, peak,
                                      threads, "dense", p, drop]))
        c = f"L{cfg[0]} C{cfg[2]} B{cfg[4]}xT{cfg[5]}" + (f" p{cfg[7]}" if cfg[7] else "")
        for name, rs in [(f"lmkit {p}", ours[p]) for p in precisions] + [(f"pytorch {p}", theirs[p]) for p in precisions]:
            print(f"{name:<13} {c:<20} {med(rs, 'step_s'):8.3f} {med(rs, 'tokens_per_s'):8.1f} "
                  f"{med(rs, 'mfu'):6.1%} {med(rs, 'peak_rss_mb'):7.0f}")
        for p in precisions:   # where lmkit's step goes besides the products (medians of each part)
            print(f"  lmkit {p} step: forward {med(ours[p], 'forward_s'):.3f} s, backward {med(ours[p], 'backward_s'):.3f} s, "
                  f"clip norm + AdamW {med(ours[p], 'optimizer_s'):.3f} s")
        tps = lambda rs: med(rs, "tokens_per_s")
        print(f"  lmkit/pytorch tokens/s: fp32 {tps(ours['fp32']) / tps(theirs['fp32']):.2f}x"
              + (f", bf16 {tps(ours['bf16']) / tps(theirs['bf16']):.2f}x" if "bf16" in ours else "")
              + f"; sgemm peak {float(peak):.0f} GFLOP/s; medians of {runs} runs x {steps} steps")
        if "bf16" in ours:
            p16 = med(ours["bf16"], "bf16_peak_gflops")
            print(f"  bf16/fp32 tokens/s: lmkit {tps(ours['bf16']) / tps(ours['fp32']):.2f}x (target 1.4x), "
                  f"pytorch {tps(theirs['bf16']) / tps(theirs['fp32']):.2f}x; bf16 peak {p16:.0f} GFLOP/s "
                  f"({p16 / float(peak):.2f}x sgemm); lmkit bf16 MFU vs the bf16 peak "
                  f"{med(ours['bf16'], 'mfu_bf16_peak'):.1%}")


if __name__ == "__main__":
    main()
