#!/usr/bin/env bash
# Quality benchmark (issue #4): pre-train a small BERT with masked-LM on a few
# MB of English (Debian's fortunes + tinyshakespeare), fine-tune it on SST-2's
# training set with a random 5% held out as the dev split, and report dev
# accuracy, wall time and tokens/s next to a bag-of-words logistic regression
# trained on the same split in the same run.
#   bash bench/bert_sst2.sh [PRETRAIN_STEPS] [EPOCHS]     (default 2000, 2)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/lmkit
SST=${SST:-../shared/data/sst2/train.tsv}
STEPS=${1:-2000}
EPOCHS=${2:-2}
W=${WORK:-runs/bert_sst2}
[ -x "$BIN" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$BUILD" -j "$(nproc)"; }
[ -f "$SST" ] || { echo "bert_sst2: $SST not found (the SST-2 training set from shared/data)" >&2; exit 1; }
unset OPENBLAS_CORETYPE
mkdir -p "$W"
echo "load: $(uptime)"

# 1. data: pre-training text, and SST-2 split 95/5 with a fixed seed
if [ ! -s "$W/pretrain.txt" ]; then
  find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' -print0 | sort -z | xargs -0 cat | sed 's/^%$//' > "$W/pretrain.txt"
  [ -f ../shared/data/tinyshakespeare/input.txt ] && cat ../shared/data/tinyshakespeare/input.txt >> "$W/pretrain.txt"
fi
/usr/bin/python3 - "$SST" "$W" <<'PY'
import random, sys
rows = open(sys.argv[1], encoding="utf-8").read().splitlines()
header, rows = rows[0], rows[1:]
random.Random(1234).shuffle(rows)
n_dev = len(rows) // 20
with open(sys.argv[2] + "/dev.tsv", "w") as f: f.write(header + "\n" + "\n".join(rows[:n_dev]) + "\n")
with open(sys.argv[2] + "/train.tsv", "w") as f: f.write(header + "\n" + "\n".join(rows[n_dev:]) + "\n")
print(f"sst2: {len(rows) - n_dev} train, {n_dev} dev examples")
PY
echo "pre-training text: $(wc -c < "$W/pretrain.txt") bytes"

# 2. tokenizer and MLM pre-training
t0=$(date +%s.%N)
"$BIN" tokenizer train --data "$W/pretrain.txt" --vocab-size 8192 --special "[PAD]" --special "[UNK]" \
  --special "[CLS]" --special "[SEP]" --special "[MASK]" --out "$W/tok" > /dev/null
"$BIN" train --arch bert --objective mlm --tokenizer "$W/tok" --data "$W/pretrain.txt" --out "$W/bert" \
  --layers 4 --heads 4 --dim 256 --context 128 --batch 32 --steps "$STEPS" --lr 1e-3 --warmup 100 \
  --eval-every 500 --seed 1 --quiet
t1=$(date +%s.%N)
pre_tps=$(/usr/bin/python3 -c "import json,statistics; print(round(statistics.median(json.loads(l)['tokens_per_sec'] for l in open('$W/bert/metrics.jsonl') if '\"loss\"' in l)))")

# 3. fine-tune on SST-2
"$BIN" finetune --model "$W/bert" --task classify --data "$W/train.tsv" --eval "$W/dev.tsv" --out "$W/sst2" \
  --epochs "$EPOCHS" --batch 32 --lr 1e-4 --context 64 --seed 1 --quiet | tee "$W/finetune.out"
t2=$(date +%s.%N)

# 4. the baseline: bag-of-words logistic regression (unigrams + bigrams), same split
/usr/bin/python3 - "$W" <<'PY'
import collections, sys, time
import torch
t0 = time.time()
def load(p):
    rows = [l.split("\t") for l in open(p, encoding="utf-8").read().splitlines()[1:] if l]
    return [r[1] for r in rows], torch.tensor([int(r[0]) for r in rows])
def feats(s):
    w = s.split()
    return w + [a + " " + b for a, b in zip(w, w[1:])]
tr_x, tr_y = load(sys.argv[1] + "/train.tsv")
dv_x, dv_y = load(sys.argv[1] + "/dev.tsv")
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
opt = torch.optim.Adam(list(model.parameters()) + [bias], lr=0.02, weight_decay=0)
for epoch in range(5):
    perm = torch.randperm(len(tr_x))
    for i in range(0, len(tr_x), 256):
        b = perm[i:i + 256].tolist()
        idx, off = bag([tr_x[j] for j in b])
        loss = torch.nn.functional.cross_entropy(model(idx, off) + bias, tr_y[b]) + 1e-6 * model.weight.pow(2).sum()
        opt.zero_grad(); loss.backward(); opt.step()
idx, off = bag(dv_x)
acc = (torch.argmax(model(idx, off) + bias, 1) == dv_y).float().mean().item()
print(f"baseline: bag-of-words logistic regression ({len(vocab)} uni+bigram features): dev accuracy {acc:.4f}, {time.time() - t0:.1f} s")
PY
/usr/bin/python3 - "$t0" "$t1" "$t2" "$pre_tps" "$W" <<'PY'
import sys
t0, t1, t2, tps = (float(x) for x in sys.argv[1:5])
print(f"lmkit: pre-training {t1 - t0:.0f} s ({tps:.0f} tokens/s), fine-tuning {t2 - t1:.0f} s; see the dev accuracy above")
PY
