"""sst2_sentences.py — the whole training sentences among SST-2's training phrases
(bench/bert_sst2.sh's second fine-tuning stage).

GLUE's SST-2 train.tsv holds every phrase of each of the ~6,900 training sentences (67,349
lines), most of them a few words long; the dev set (sentences.tsv) holds whole sentences.
A whole sentence is a phrase that no other phrase contains. This keeps the phrases of at
least 4 words that are not inside a longer one (checked at word boundaries), in a fixed
shuffled order (seed 1) whose first line has the label train.tsv starts with, so that
`lmkit finetune` numbers the labels the same way on both files.

    /usr/bin/python3 bench/sst2_sentences.py TRAIN.tsv OUT.tsv
TRAIN is label<TAB>text with a header row (../shared/data/sst2/train.tsv); OUT the same."""
import random, sys

def main(src, dst):
    rows = [l.split("\t", 1) for l in open(src, encoding="utf-8").read().splitlines()[1:] if l]
    first = rows[0][0]
    # longest first: a phrase is kept unless a kept (longer or equal) one contains it
    items = sorted(((t.strip(), lab) for lab, t in rows), key=lambda x: -len(x[0]))
    kept, text = [], "\n"
    for t, lab in items:
        if len(t.split()) < 4:
            continue
        if any(p in text for p in ("\n" + t + " ", " " + t + " ", " " + t + "\n", "\n" + t + "\n")):
            continue
        kept.append((t, lab))
        text += t + "\n"
    random.seed(1)
    head = next(i for i, (_, lab) in enumerate(kept) if lab == first)
    rest = kept[:head] + kept[head + 1:]
    random.shuffle(rest)
    with open(dst, "w", encoding="utf-8") as f:
        f.write("label\tsentence\n")
        for t, lab in [kept[head]] + rest:
            f.write(f"{lab}\t{t}\n")
    print(f"sst2_sentences: {len(kept)} whole sentences of {len(rows)} phrases -> {dst}", file=sys.stderr)

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
