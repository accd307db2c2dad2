"""bow_sst2.py — the bag-of-words baseline of the SST-2 benchmarks (bench/bert_sst2.sh,
bench/quality.sh): logistic regression on unigram + bigram counts (features seen at least
twice in training), Adam, 5 epochs, trained on TRAIN and scored on DEV, both TSV files with
a header row and label<TAB>text lines (label first, as ../shared/data/sst2 has them).

    /usr/bin/python3 bench/bow_sst2.py TRAIN DEV
prints one line: 'baseline: bag-of-words ... dev accuracy X'."""
import collections, sys, time
import torch

def load(p):
    rows = [l.split("\t", 1) for l in open(p, encoding="utf-8").read().splitlines()[1:] if l]
    return [r[1] for r in rows], torch.tensor([int(r[0]) for r in rows])

def feats(s):
    w = s.split()
    return w + [a + " " + b for a, b in zip(w, w[1:])]

def main(train, dev):
    t0 = time.time()
    tr_x, tr_y = load(train)
    dv_x, dv_y = load(dev)
    counts = collections.Counter(f for s in tr_x for f in set(feats(s)))
    vocab = {f: i for i, (f, c) in enumerate(counts.most_common()) if c >= 2}
    def bag(xs):
        idx, off = [], []
        for s in xs:
            off.append(len(idx))
            idx += [vocab[f] for f in feats(s) if f in vocab]
        return torch.tensor(idx, dtype=torch.long), torch.tensor(off, dtype=torch.long)
    torch.manual_seed(0)
    model = torch.nn.EmbeddingBag(len(vocab), 2, mode="sum")
    torch.nn.init.zeros_(model.weight)
    bias = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam(list(model.parameters()) + [bias], lr=0.02)
    for _ in range(5):
        perm = torch.randperm(len(tr_x))
        for i in range(0, len(tr_x), 256):
            b = perm[i:i + 256].tolist()
            idx, off = bag([tr_x[j] for j in b])
            loss = torch.nn.functional.cross_entropy(model(idx, off) + bias, tr_y[b]) + 1e-6 * model.weight.pow(2).sum()
            opt.zero_grad(); loss.backward(); opt.step()
    idx, off = bag(dv_x)
    acc = (torch.argmax(model(idx, off) + bias, 1) == dv_y).float().mean().item()
    print(f"baseline: bag-of-words logistic regression ({len(vocab)} uni+bigram features, {len(tr_x)} training "
          f"examples): dev accuracy {acc:.4f} on {len(dv_x)} examples, {time.time() - t0:.1f} s")

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
