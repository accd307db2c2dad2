"""The Kneser-Ney n-gram model (src/model/classic/ngram.c) against a small Python
implementation written here from Chen & Goodman's interpolated modified
Kneser-Ney: raw counts at the highest order, continuation counts N1+(.g) below,
three discounts per order from the counts of counts (clamped to [0, c]; 0.5, 1,
1.5 when a count of counts is 0), the unigram level interpolated with 1/V, an
unseen context backing off entirely. For orders 1..5 on a small token stream,
every probability of every vocabulary item after contexts seen, partly seen and
unseen (and the empty one) must equal the reference to 1e-12 relative, and sum
to 1 over the vocabulary."""
import os
import random
import subprocess
import tempfile
from collections import defaultdict

from refutil import BIN, Tally

DRIVER = os.path.join(BIN, "ref_ngram")


def discounts(counts):
    nc = defaultdict(int)
    for c in counts.values():
        if 1 <= c <= 4:
            nc[c] += 1
    if not all(nc[i] for i in (1, 2, 3, 4)):
        return (0.5, 1.0, 1.5)
    Y = nc[1] / (nc[1] + 2 * nc[2])
    clamp = lambda x, hi: min(max(x, 0.0), hi)
    return (clamp(1 - 2 * Y * nc[2] / nc[1], 1), clamp(2 - 3 * Y * nc[3] / nc[2], 2), clamp(3 - 4 * Y * nc[4] / nc[3], 3))


class KN:
    def __init__(self, ids, order, V):
        self.order, self.V = order, V
        self.c = {order: defaultdict(float)}
        for p in range(len(ids) - order + 1):
            self.c[order][tuple(ids[p:p + order])] += 1
        for k in range(order - 1, 0, -1):
            self.c[k] = defaultdict(float)
            for g in self.c[k + 1]:
                self.c[k][g[1:]] += 1   # one per distinct left neighbour
        self.d = {k: discounts(self.c[k]) for k in self.c}
        self.h = {}
        for k in range(2, order + 1):
            h = defaultdict(lambda: [0.0, 0, 0, 0])
            for g, c in self.c[k].items():
                s = h[g[:-1]]
                s[0] += c
                s[1 if c < 2 else 2 if c < 3 else 3] += 1
            self.h[k] = h

    def disc(self, k, c):
        d = self.d[k]
        return 0 if c <= 0 else d[0] if c < 2 else d[1] if c < 3 else d[2]

    def prob(self, ctx, w):
        total = sum(self.c[1].values())
        n = [0, 0, 0]
        for c in self.c[1].values():
            n[0 if c < 2 else 1 if c < 3 else 2] += 1
        d = self.d[1]
        c = self.c[1].get((w,), 0)
        p = max(c - self.disc(1, c), 0) / total + (d[0] * n[0] + d[1] * n[1] + d[2] * n[2]) / total / self.V
        for k in range(2, self.order + 1):
            if k - 1 > len(ctx):
                break
            h = tuple(ctx[len(ctx) - (k - 1):])
            s = self.h[k].get(h)
            if not s or s[0] <= 0:
                continue
            c = self.c[k].get(h + (w,), 0)
            d = self.d[k]
            p = max(c - self.disc(k, c), 0) / s[0] + (d[0] * s[1] + d[1] * s[2] + d[2] * s[3]) / s[0] * p
        return p


def main():
    t = Tally()
    rng = random.Random(7)
    V = 23
    # a stream with structure (repeated phrases) and noise, so that every count of counts occurs
    phrases = [[rng.randrange(V - 3) for _ in range(rng.randrange(2, 6))] for _ in range(12)]
    ids = []
    while len(ids) < 3000:
        ids += rng.choice(phrases) if rng.random() < 0.8 else [rng.randrange(V)]
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "ids.txt"), "w") as f:
            f.write(" ".join(map(str, ids)))
        contexts = [[], ids[100:104], ids[-3:], [V - 1, V - 2, V - 1], [ids[5], V - 1], phrases[0], phrases[3][:2] + [V - 2]]
        contexts += [[rng.randrange(V) for _ in range(rng.randrange(1, 5))] for _ in range(20)]
        with open(os.path.join(d, "ctx.txt"), "w") as f:
            f.writelines(" ".join(map(str, c)) + "\n" for c in contexts)
        for order in (1, 2, 3, 4, 5):
            r = subprocess.run([DRIVER, os.path.join(d, "ids.txt"), str(order), str(V), os.path.join(d, "ctx.txt")],
                               capture_output=True, text=True)
            if not t.check(r.returncode == 0, "order %d: driver failed: %s" % (order, r.stderr)):
                continue
            lines = r.stdout.splitlines()
            ref = KN(ids, order, V)
            for k in range(1, order + 1):
                got = tuple(map(float, lines[k - 1].split()))
                t.check(all(abs(a - b) <= 1e-12 for a, b in zip(got, ref.d[k])), "order %d: discounts of order %d %s vs %s" % (order, k, got, ref.d[k]))
            worst_sum = worst = 0.0
            for ctx, line in zip(contexts, lines[order:]):
                p = list(map(float, line.split()))
                q = [ref.prob(ctx, w) for w in range(V)]
                worst_sum = max(worst_sum, abs(sum(p) - 1))
                worst = max(worst, max(abs(a - b) / b for a, b in zip(p, q)))
            t.check(worst_sum < 1e-12, "order %d: probabilities sum to 1 (off by %.2e)" % (order, worst_sum))
            t.check(worst < 1e-12, "order %d: equal to the reference (rel err %.2e)" % (order, worst))
            print("order %d: %d contexts x %d ids, sum-to-1 off by %.1e, rel err %.1e vs the Python reference" % (
                order, len(contexts), V, worst_sum, worst))
        r = subprocess.run([DRIVER, os.path.join(d, "ids.txt"), "9", str(V), os.path.join(d, "ctx.txt")], capture_output=True, text=True)
        t.check(r.returncode != 0 and "order 9 is not in 1..8" in r.stderr, "order 9 refused: %s" % r.stderr)
    t.finish()


if __name__ == "__main__":
    main()
