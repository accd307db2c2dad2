#!/usr/bin/env bash
# The past, end to end (docs/classic.md): an n-gram, an RNN and an LSTM trained
# by `lmkit train` on a small generated corpus, then run by the commands that
# run transformers: the loss falls (the n-gram's validation loss is far below
# uniform), eval prints perplexity and bits per byte and scores multiple
# choice, generate samples with a seed (reproducibly, past the context too),
# info describes each, an RNN/LSTM run resumes bit-exactly, the n-gram file
# survives a save/load, and bad input is one clear error.
source "$(dirname "$0")/lib.sh"

python3 - "$T/corpus.txt" "$T/mc.jsonl" <<'PY'
import json, random, sys
random.seed(1)
names = ["alice", "bob", "carol", "dave", "erin"]
verbs = ["likes", "sees", "helps", "calls", "finds"]
with open(sys.argv[1], "w") as f:
    for i in range(2000):
        f.write(f"{random.choice(names)} {random.choice(verbs)} {random.choice(names)}.\n")
with open(sys.argv[2], "w") as f:   # the right ending is a sentence of the corpus' shape
    for i in range(8):
        good = f"{random.choice(verbs)} {random.choice(names)}."
        f.write(json.dumps({"ctx": random.choice(names), "endings": [good, "zq xv zq xv.", "... ,,, ..."], "label": 0}) + "\n")
PY
head -c 4000 "$T/corpus.txt" > "$T/dev.txt"
U=5.549   # ln 257: uniform over the byte tokenizer's ids

# ---- n-gram
"$BIN" train --arch ngram --order 4 --data "$T/corpus.txt" --out "$T/ng" --quiet > "$T/ng.out" 2> "$T/ng.err"; rc=$?
vl=$(sed -n 's/.*val loss \([0-9.]*\).*/\1/p' "$T/ng.out")
check "ngram: train counts and saves (rc $rc)" "[ $rc = 0 ] && [ -f $T/ng/ngram.bin ] && [ -f $T/ng/config.json ] && [ -f $T/ng/tokenizer.json ]"
check "ngram: validation loss far below uniform ($vl)" "python3 -c 'import sys; sys.exit(not 0 < $vl < 0.3 * $U)'"
out=$("$BIN" eval --model "$T/ng" --data "$T/corpus.txt" --quiet --threads 2)
check "ngram: eval prints perplexity and bits per byte ($out)" "echo '$out' | grep -q 'perplexity' && echo '$out' | grep -q 'bits/byte'"
out=$("$BIN" eval --model "$T/ng" --task multiple-choice --data "$T/mc.jsonl" --quiet --threads 2)
check "ngram: multiple-choice by log-likelihood picks the corpus-like ending ($out)" "echo '$out' | grep -q 'acc 1.0000'"
g1=$("$BIN" generate --model "$T/ng" --prompt "alice " --max-tokens 40 --seed 5 --temperature 0.8 --top-k 20 --threads 2)
g2=$("$BIN" generate --model "$T/ng" --prompt "alice " --max-tokens 40 --seed 5 --temperature 0.8 --top-k 20 --threads 2)
check "ngram: generate samples reproducibly with a seed ($g1)" "[ \${#g1} -gt 20 ] && [ \"$g1\" = \"$g2\" ]"
gg=$("$BIN" generate --model "$T/ng" --prompt "bob " --max-tokens 30 --temperature 0 --threads 2)
check "ngram: greedy decoding continues with corpus words ($gg)" "echo '$gg' | grep -Eq 'bob (likes|sees|helps|calls|finds) '"
"$BIN" info "$T/ng" > "$T/ng.info"
check "ngram: info says the order and the counts" "grep -q 'order:            4' $T/ng.info && grep -q '4-grams:' $T/ng.info"
cp -r "$T/ng" "$T/ng2"
printf 'LMNGRAM1\001\000' > "$T/ng2/ngram.bin"
err "ngram: a truncated ngram.bin is an error naming it" "ngram.bin" "$BIN" eval --model "$T/ng2" --data "$T/corpus.txt"
sed -i 's/"order": 4/"order": 3/' "$T/ng2/config.json"; cp "$T/ng/ngram.bin" "$T/ng2/"
err "ngram: an order that differs from the file's is an error" "order 4" "$BIN" info "$T/ng2"
err "ngram: --order out of range" "--order" "$BIN" train --arch ngram --order 9 --data "$T/corpus.txt" --out "$T/x"
err "rnn: dropout is refused, not ignored" "dropout is not implemented" "$BIN" train --arch rnn --dropout 0.1 --data "$T/corpus.txt" --out "$T/x" --steps 1
err "lstm: bf16 products are refused, not silently fp32" "fp32 only" "$BIN" train --arch lstm --precision bf16 --data "$T/corpus.txt" --out "$T/x" --steps 1
err "ngram: beam search (KV caches) is refused by name" "beam search do not support it" "$BIN" generate --model "$T/ng" --prompt "a" --beams 2

# ---- RNN and LSTM on the one trainer
for arch in rnn lstm; do
  COMMON="--arch $arch --layers 2 --dim 48 --data $T/corpus.txt --context 32 --batch 8 --lr 1e-2 --warmup 5 --eval-every 20 --eval-batches 2 --seed 7 --threads 2 --quiet"
  "$BIN" train $COMMON --steps 40 --save-every 20 --out "$T/$arch" > "$T/$arch.out" 2> "$T/$arch.err"; rc=$?
  first=$(grep '"loss"' "$T/$arch/metrics.jsonl" | head -1 | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')
  last=$(grep '"loss"' "$T/$arch/metrics.jsonl" | tail -1 | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')
  check "$arch: loss falls ($first -> $last, rc $rc)" "[ $rc = 0 ] && python3 -c 'import sys; sys.exit(not ($last < 0.6 * $U and $last < $first))'"
  "$BIN" train --resume "$T/$arch/checkpoint-20" --out "$T/$arch-b" --threads 2 --quiet > /dev/null 2> "$T/$arch-b.err"
  grep '"loss"' "$T/$arch/metrics.jsonl" | sed -n '21,40p' | sed 's/, "tokens_per_sec.*//' > "$T/$arch.tail"
  grep '"loss"' "$T/$arch-b/metrics.jsonl" | sed 's/, "tokens_per_sec.*//' > "$T/$arch-b.all"
  check "$arch: resume continues the loss curve bit-exactly" "[ -s $T/$arch-b.all ] && diff -q $T/$arch.tail $T/$arch-b.all >/dev/null"
  check "$arch: resumed model equals the uninterrupted one" "cmp -s $T/$arch/model.safetensors $T/$arch-b/model.safetensors"
  err "$arch: resume with other --layers names both" "--layers 3 differs from the checkpoint's 2" "$BIN" train $COMMON --layers 3 --resume "$T/$arch"
  out=$("$BIN" eval --model "$T/$arch" --data "$T/dev.txt" --quiet --threads 2)
  check "$arch: eval prints perplexity and bits per byte ($out)" "echo '$out' | grep -q 'bits/byte'"
  out=$("$BIN" eval --model "$T/$arch" --task multiple-choice --data "$T/mc.jsonl" --quiet --threads 2)
  check "$arch: multiple-choice runs ($out)" "echo '$out' | grep -q 'acc_norm'"
  g1=$("$BIN" generate --model "$T/$arch" --prompt "alice " --max-tokens 60 --seed 5 --temperature 0.7 --threads 2 2> /dev/null)
  g2=$("$BIN" generate --model "$T/$arch" --prompt "alice " --max-tokens 60 --seed 5 --temperature 0.7 --threads 2 2> /dev/null)
  check "$arch: generate past the context, reproducible with a seed" "[ \${#g1} -gt 40 ] && [ \"$g1\" = \"$g2\" ]"
  "$BIN" info "$T/$arch" > "$T/$arch.info"
  check "$arch: info describes the recurrent layers" "grep -q 'layers:           2 ' $T/$arch.info"
done

echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]
