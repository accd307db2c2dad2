#!/usr/bin/env bash
# End-to-end BERT pre-training with the CLI on data this test generates:
# masked-LM (+ next-sentence prediction) loss falls, a resumed run repeats the
# uninterrupted one bit for bit, ALBERT-style sharing trains a smaller model,
# and bad setups give one clear error line.
source "$(dirname "$0")/lib.sh"

python3 - "$T/corpus.txt" <<'PY'
import random, sys
random.seed(2)
animals = ["cat", "dog", "bird", "fish", "horse"]
colors = ["red", "blue", "green", "black", "white"]
with open(sys.argv[1], "w") as f:
    for i in range(4000):
        a, c = random.choice(animals), random.choice(colors)
        f.write(f"the {c} {a} sat on the mat. the {a} was {c}.\n")
PY
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 400 --special "[PAD]" --special "[CLS]" --special "[SEP]" \
  --special "[MASK]" --special "[UNK]" --out "$T/tok" > /dev/null 2>&1
COMMON="--arch bert --tokenizer $T/tok --data $T/corpus.txt --layers 2 --heads 2 --dim 32 --context 32 --batch 16 --lr 3e-3 --warmup 5 --eval-every 20 --eval-batches 4 --seed 3 --threads 2 --quiet"
"$BIN" train $COMMON --steps 80 --save-every 40 --out "$T/a" > "$T/a.out" 2> "$T/a.err"
check "bert mlm+nsp trains" "[ -f $T/a/model.safetensors ] && grep -q '\"model_type\": \"bert\"' $T/a/config.json"
first=$(grep '"loss"' "$T/a/metrics.jsonl" | head -1 | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')
last=$(grep '"loss"' "$T/a/metrics.jsonl" | tail -1 | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')
# uniform MLM over 400 ids is ln 400 = 5.99, plus ln 2 = 0.69 for NSP
check "mlm+nsp loss falls ($first -> $last)" "python3 -c 'import sys; sys.exit(not ($last < $first - 1.5))'"
"$BIN" train --resume "$T/a/checkpoint-40" --out "$T/b" --threads 2 --quiet > /dev/null 2>&1
grep '"loss"' "$T/a/metrics.jsonl" | sed -n '41,80p' | sed 's/, "tokens_per_sec.*//' > "$T/a.tail"
grep '"loss"' "$T/b/metrics.jsonl" | sed 's/, "tokens_per_sec.*//' > "$T/b.all"
check "bert resume continues the loss curve bit-exactly" "[ -s $T/b.all ] && diff -q $T/a.tail $T/b.all >/dev/null"

"$BIN" train $COMMON --objective mlm --steps 40 --out "$T/r" > /dev/null 2>&1
check "mlm alone (RoBERTa recipe) trains" "grep -q '\"val_loss\"' $T/r/metrics.jsonl"
"$BIN" train $COMMON --objective mlm --layers 4 --share-layers --steps 10 --out "$T/s" > /dev/null 2>&1
n_shared=$("$BIN" info "$T/s" | sed -n 's/^parameters: *\([0-9]*\).*/\1/p')
n_plain=$("$BIN" info "$T/r" | sed -n 's/^parameters: *\([0-9]*\).*/\1/p')
check "--share-layers: 4 shared layers hold fewer parameters than 2 plain ones ($n_shared < $n_plain)" "[ -n \"$n_shared\" ] && [ \"$n_shared\" -lt \"$n_plain\" ]"

err() {
  local name="$1" want="$2"; shift 2
  local out; out=$("$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -ne 0 ] && [ "$(echo "$out" | grep -c '^lmkit: error: ')" = 1 ] && echo "$out" | grep -q -- "$want"; then ok "error: $name"; else bad "error: $name (rc=$rc: $out)"; fi
}
err "bert with a tokenizer lacking [MASK]" "MASK" "$BIN" train --arch bert --tokenizer byte --data "$T/corpus.txt" --out "$T/x" --steps 1 --quiet
err "clm objective on bert" "mlm" "$BIN" train --arch bert --objective clm --tokenizer "$T/tok" --data "$T/corpus.txt" --out "$T/x" --steps 1 --quiet
err "mlm on gpt2" "bert" "$BIN" train --objective mlm --data "$T/corpus.txt" --out "$T/x" --steps 1 --quiet
# layer sharing is the general block's: a decoder shares its layers too
"$BIN" train --share-layers --layers 3 --heads 2 --dim 32 --context 16 --data "$T/corpus.txt" --out "$T/g" --steps 2 --quiet > /dev/null 2>&1
check "--share-layers on gpt2 trains and saves its layers" "grep -q '\"share_layers\": true' $T/g/config.json"

err "generate with an encoder" "decoder" "$BIN" generate --model "$T/a" --prompt "the cat"
err "eval of an encoder" "decoder" "$BIN" eval --model "$T/a" --data "$T/corpus.txt"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
