#!/usr/bin/env bash
# `lmkit generate --beams` on a tiny trained GPT-2 (byte tokenizer):
#   - --beams 1 prints what greedy (--temperature 0) prints;
#   - --no-repeat-ngram 2 never repeats a pair of tokens (bytes), the prompt (which generate echoes) included;
#   - --length-penalty and --early-stopping run;
#   - errors: --beams 0, a NaN length penalty, --no-repeat-ngram -1, beams with --calc.
# (Beam search against an exhaustive reference, for GPT-2 and T5: tests/unit/test_beam.c.)
source "$(dirname "$0")/lib.sh"
python3 - "$T" <<'PY'
import random, sys
r = random.Random(7)
W = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "red"]
with open(f"{sys.argv[1]}/corpus.txt", "w") as f:
    for _ in range(800):
        f.write(" ".join(r.choice(W) for _ in range(r.randint(4, 8))) + " .\n")
PY
"$BIN" train --arch gpt2 --tokenizer byte --data "$T/corpus.txt" --layers 1 --heads 2 --dim 32 --context 64 --batch 8 \
  --steps 40 --lr 3e-3 --seed 3 --threads 1 --quiet --out "$T/m" > "$T/train.log" 2>&1 || { tail -3 "$T/train.log"; bad "train"; }
G=(generate --model "$T/m" --prompt "the cat" --max-tokens 24 --threads 1)
"$BIN" "${G[@]}" --temperature 0 > "$T/greedy.txt" 2> "$T/e1"; r1=$?
"$BIN" "${G[@]}" --beams 1 > "$T/beam1.txt" 2> "$T/e2"; r2=$?
check "--beams 1 equals greedy (rc $r1 $r2): '$(head -c 60 "$T/beam1.txt")'" \
  "[ $r1 = 0 ] && [ $r2 = 0 ] && [ -s $T/greedy.txt ] && cmp -s $T/greedy.txt $T/beam1.txt"
"$BIN" "${G[@]}" --beams 4 --no-repeat-ngram 2 --max-tokens 40 > "$T/nr.txt" 2> "$T/e3"; r3=$?
check "--beams 4 --no-repeat-ngram 2 never repeats a byte pair (rc $r3): '$(head -c 60 "$T/nr.txt")'" \
  "[ $r3 = 0 ] && [ -s $T/nr.txt ] && python3 -c '
import sys
s = open(sys.argv[1], \"rb\").read()[:-1]   # the prompt, its continuation, the newline generate ends with
pairs = [s[i:i+2] for i in range(len(s) - 1)]
sys.exit(len(pairs) != len(set(pairs)))' $T/nr.txt"
"$BIN" "${G[@]}" --beams 3 --length-penalty 2 --early-stopping > "$T/lp.txt" 2> "$T/e4"; r4=$?
check "--beams 3 --length-penalty 2 --early-stopping runs (rc $r4)" "[ $r4 = 0 ] && [ -s $T/lp.txt ]"
err "--beams 0 is an error" "--beams" "$BIN" "${G[@]}" --beams 0
err "a NaN length penalty is an error" "--length-penalty" "$BIN" "${G[@]}" --beams 2 --length-penalty nan
err "--no-repeat-ngram -1 is an error" "--no-repeat-ngram" "$BIN" "${G[@]}" --beams 2 --no-repeat-ngram -1
err "beams with --calc is an error" "calculator" "$BIN" "${G[@]}" --beams 2 --calc
echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]
