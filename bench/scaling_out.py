"""scaling_out.py -- when does communication dominate data-parallel training? (docs/scaling-out.md)

A model of one optimiser step on P ranks, each a machine like the one the figures were measured on:

  compute   t_c = 6 N g / F                      N parameters, g tokens per rank per step (weak scaling: the
                                                 global batch grows with P), F model FLOP/s per rank; with
                                                 --tokens G (a fixed global batch): g = G / P
  backward  t_b = 2/3 t_c                        the part of the step a bucketed allreduce can hide behind
  allreduce t_ar = 2 (P-1)/P * 4N / BW + k * 2 (P-1) * alpha
                                                 ring: reduce-scatter + all-gather of the fp32 gradient (4N
                                                 bytes), BW bytes/s per link, k buckets, alpha per message
  AdamW     t_o = 28 N / MB                      one pass over params, grads, m, v (28 bytes/param) at MB bytes/s;
                                                 ZeRO-1: each rank updates N/P of them, t_o / P
  step      plain:  t_c + max(0, t_ar - t_b) + t_o
            ZeRO-1: t_c + max(0, t_ar/2 - t_b) + t_ar/2 + t_o/P
                    (reduce-scatter = half the allreduce's bytes, overlapped with backward as plain
                    DP's; the all-gather of the updated parameters, the other half, follows the
                    optimiser step and is exposed in lmkit's implementation)
  efficiency = t_c / step; communication dominates when the exposed communication exceeds t_c.
  optimiser memory per rank: 8N bytes (m, v), ZeRO-1 8N/P.

usage: python3 bench/scaling_out.py [--flops F] [--per-rank g | --tokens G] [--alpha S] [--membw B] [--buckets K]
defaults: F = 2.27e11 (6 N x 303.6 tokens/s: lmkit's GPT-2 124M training on this machine's 2 cores, quiet, docs/PERFORMANCE.md), g = 512
(bench/train_mpi.sh's B8xT64 per rank), alpha = 30 us (TCP over Ethernet), MB = 2e10 bytes/s, K = layers + 1.
GPT-2's own 0.5M tokens per step (as llm.c trains it): --tokens 524288.
"""
import argparse

MODELS = [("GPT-2 124M", 124.4e6, 12), ("1B (Llama-3.2-1B shape)", 1.24e9, 16)]
RANKS = [8, 16, 32, 64]
LINKS_GBIT = [10, 25, 100]


def step(n, layers, p, bw, a, zero):
    tc = 6 * n * (a.tokens / p if a.tokens else a.per_rank) / a.flops
    tb = 2 / 3 * tc
    k = a.buckets or layers + 1
    tar = 2 * (p - 1) / p * 4 * n / bw + k * 2 * (p - 1) * a.alpha
    to = 28 * n / a.membw
    exposed = max(0.0, tar / 2 - tb) + tar / 2 if zero else max(0.0, tar - tb)
    return tc, tar, exposed, tc + exposed + (to / p if zero else to), 8 * n / (p if zero else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flops", type=float, default=2.27e11, help="model FLOP/s one rank achieves (6 N tokens/s)")
    ap.add_argument("--per-rank", type=float, default=512, help="tokens per rank per step (weak scaling)")
    ap.add_argument("--tokens", type=float, default=0, help="tokens per global step (strong scaling; 0: --per-rank)")
    ap.add_argument("--alpha", type=float, default=30e-6, help="seconds per message (latency)")
    ap.add_argument("--membw", type=float, default=2e10, help="bytes/s of the optimiser's pass")
    ap.add_argument("--buckets", type=int, default=0, help="buckets per step (0: layers + 1)")
    a = ap.parse_args()
    batch = f"{a.tokens:.0f} tokens per global step" if a.tokens else f"{a.per_rank:.0f} tokens per rank per step"
    print(f"per rank {a.flops / 1e9:.0f} GFLOP/s (model FLOPs), {batch}, "
          f"latency {a.alpha * 1e6:.0f} us, optimiser pass at {a.membw / 1e9:.0f} GB/s")
    for name, n, layers in MODELS:
        print(f"\n{name}: {n / 1e6:.0f}M parameters, gradient {4 * n / 1e9:.2f} GB (fp32); AdamW pass "
              f"{28 * n / a.membw:.2f} s")
        print(f"{'link':>8} {'P':>3} {'compute s':>10} {'allreduce s':>12} | {'exposed s':>9} {'eff':>5} {'AdamW GB':>8}"
              f" | {'ZeRO-1 exposed':>14} {'eff':>5} {'AdamW GB':>8}")
        for gbit in LINKS_GBIT:
            bw = gbit * 1e9 / 8
            for p in RANKS:
                tc, tar, ex, st, mem = step(n, layers, p, bw, a, 0)
                _, _, exz, stz, memz = step(n, layers, p, bw, a, 1)
                flag = lambda e: "*" if e > tc else " "
                print(f"{gbit:>5}Gb/s {p:>3} {tc:>10.2f} {tar:>12.3f} | {ex:>8.3f}{flag(ex)} {tc / st:>5.0%} {mem / 1e9:>8.2f}"
                      f" | {exz:>13.3f}{flag(exz)} {tc / stz:>5.0%} {memz / 1e9:>8.3f}")
            # plain DP's exposed allreduce (t_ar - t_b, t_ar ~ 8N/BW at large P) exceeds the compute
            # t_c = 6 N g / F when g < (3/5) (8N/BW) F / (6N) = 0.8 F / BW tokens per rank: N cancels
            gstar = 0.8 * a.flops / bw
            where = (f", i.e. from P ~ {a.tokens / gstar:.0f}" if a.tokens else "")
            print(f"{'':>8}     plain DP: communication dominates below {gstar:.0f} tokens per rank per step{where}")
    print("\n* = the exposed communication exceeds the compute: communication dominates the step")


if __name__ == "__main__":
    main()
