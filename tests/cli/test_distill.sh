#!/usr/bin/env bash
# End-to-end knowledge distillation with the CLI on data this test generates:
# pre-train a tiny 4-layer BERT teacher, distill a 2-layer student
# (DistilBERT: soft-target KL at temperature 2 + MLM), check the student is
# smaller, its distillation loss falls (and the KL alone, with --alpha-mlm 0),
# it loads (`lmkit info`), a
# resumed run repeats the uninterrupted one bit for bit, and bad setups give
# one clear error line.
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
"$BIN" train --arch bert --objective mlm --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 4 --heads 2 --dim 32 \
  --context 32 --batch 16 --lr 3e-3 --warmup 5 --steps 300 --eval-every 150 --eval-batches 4 --seed 3 --threads 2 \
  --quiet --out "$T/teacher" > /dev/null 2>&1
check "teacher (4-layer bert) trained" "[ -f $T/teacher/model.safetensors ] && [ -f $T/teacher/tokenizer.json ]"

DIST="--data $T/corpus.txt --context 32 --batch 16 --lr 1e-3 --warmup 4 --eval-every 20 --eval-batches 4 --seed 5 --threads 2 --quiet"
"$BIN" distill --teacher "$T/teacher" --student-layers 2 $DIST --steps 40 --save-every 20 --out "$T/s" > "$T/s.out" 2> "$T/s.err"
check "distill runs and writes the student" "[ -f $T/s/model.safetensors ] && [ -f $T/s/tokenizer.json ] && [ -f $T/s/distill.json ]"
cat "$T/s.out"
check "student starts from teacher layers 0 and 3" "grep -q 'from teacher layers 0 3,' $T/s.out"
check "a speed comparison is printed" "grep -q 'forward speed on 16 x 32 tokens: teacher [0-9]* tok/s, student [0-9]* tok/s' $T/s.out"

n_teacher=$("$BIN" info "$T/teacher" | sed -n 's/^parameters: *\([0-9]*\).*/\1/p')
n_student=$("$BIN" info "$T/s" 2>/dev/null | sed -n 's/^parameters: *\([0-9]*\).*/\1/p')
check "the student loads (lmkit info) and is smaller ($n_student < $n_teacher parameters)" \
  "[ -n \"$n_student\" ] && [ \"$n_student\" -lt \"$n_teacher\" ]"
check "the student's config says 2 layers" "grep -q '\"num_hidden_layers\": 2' $T/s/config.json"

# mean of the first and last 8 logged values of a metrics key
mean() { grep "\"$2\"" "$1" | sed "s/.*\"$2\": \([0-9.e+-]*\).*/\1/" | python3 -c "
import sys; v = [float(x) for x in sys.stdin]; k = min(8, len(v) // 2)
print(sum(v[:k]) / k if '$3' == 'first' else sum(v[-k:]) / k)"; }
l0=$(mean "$T/s/metrics.jsonl" loss first); l1=$(mean "$T/s/metrics.jsonl" loss last)
check "distillation loss falls ($l0 -> $l1, means of 8 steps)" "python3 -c 'import sys; sys.exit(not ($l1 < $l0 - 0.05))'"
# the soft-target term alone (the MLM term dominates the sum above): KL(teacher || student) must fall
"$BIN" distill --teacher "$T/teacher" --student-layers 2 --alpha-mlm 0 $DIST --steps 40 --out "$T/k" > /dev/null 2>&1
k0=$(mean "$T/k/metrics.jsonl" distill_kl first); k1=$(mean "$T/k/metrics.jsonl" distill_kl last)
check "--alpha-mlm 0: KL(teacher || student) at temperature 2 falls ($k0 -> $k1)" \
  "python3 -c 'import sys; sys.exit(not ($k1 < 0.7 * $k0))'"

"$BIN" distill --resume "$T/s/checkpoint-20" --out "$T/r" --threads 2 --quiet > /dev/null 2>&1
grep '"loss"' "$T/s/metrics.jsonl" | sed -n '21,40p' | sed 's/, "tokens_per_sec.*//' > "$T/s.tail"
grep '"loss"' "$T/r/metrics.jsonl" | sed 's/, "tokens_per_sec.*//' > "$T/r.all"
check "resume continues the distillation loss curve bit-exactly" "[ -s $T/r.all ] && diff -q $T/s.tail $T/r.all >/dev/null"

err() {
  local name="$1" want="$2"; shift 2
  local out; out=$("$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -ne 0 ] && [ "$(echo "$out" | grep -c '^lmkit: error: ')" = 1 ] && echo "$out" | grep -q -- "$want"; then ok "error: $name"; else bad "error: $name (rc=$rc: $out)"; fi
}
"$BIN" train --tokenizer byte --data "$T/corpus.txt" --layers 1 --heads 2 --dim 16 --context 16 --batch 2 --steps 1 \
  --threads 2 --quiet --out "$T/gpt" > /dev/null 2>&1
err "teacher is a gpt2 model" "not\|bert" "$BIN" distill --teacher "$T/gpt" --student-layers 1 $DIST --steps 1 --out "$T/x"
err "--student-layers equal to the teacher's" "1 to 3 layers" "$BIN" distill --teacher "$T/teacher" --student-layers 4 $DIST --steps 1 --out "$T/x"
err "--student-layers 0" "student-layers" "$BIN" distill --teacher "$T/teacher" --student-layers 0 $DIST --steps 1 --out "$T/x"
err "no teacher" "teacher" "$BIN" distill --student-layers 2 $DIST --steps 1 --out "$T/x"
err "missing teacher directory" "nope" "$BIN" distill --teacher "$T/nope" --student-layers 2 $DIST --steps 1 --out "$T/x"
err "--temperature 0" "temperature" "$BIN" distill --teacher "$T/teacher" --student-layers 2 --temperature 0 $DIST --steps 1 --out "$T/x"
err "--alpha-ce -1" "alpha-ce" "$BIN" distill --teacher "$T/teacher" --student-layers 2 --alpha-ce -1 $DIST --steps 1 --out "$T/x"
err "unknown objective" "objective" "$BIN" distill --teacher "$T/teacher" --student-layers 2 --objective clm $DIST --steps 1 --out "$T/x"
err "changing the loss on resume" "temperature" "$BIN" distill --resume "$T/s/checkpoint-20" --temperature 3 --out "$T/x"
check "--help documents every flag" "\"$BIN\" distill --help | grep -q -- --alpha-mlm && \"$BIN\" --help | grep -q distill"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
