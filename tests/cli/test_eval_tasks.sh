#!/usr/bin/env bash
# test_eval_tasks.sh — `lmkit eval --task classify` and `--task exact-match` from the command line
# (their numbers are checked against PyTorch in tests/reference/test_eval_tasks.py):
#   - classify on SST-2-style TSV (header, numeric labels + --labels) prints acc ± interval and one line
#     per class whose counts add up; --report has acc_ci95, classes, labels and the template;
#   - exact-match on JSONL prints em ± interval; --details has one line per record and
#     EM is the mean of their matches; it runs on a T5 (encoder-decoder) too;
#   - flags of another task, a template without {text}, one label word, an unknown normalization are
#     one-line errors.
. "$(dirname "$0")/lib.sh"

python3 - "$T" <<'PY'
import json, random, sys
d = sys.argv[1]
r = random.Random(7)
W = ["red", "blue", "green", "cat", "dog", "sun", "tree"]
with open(f"{d}/corpus.txt", "w") as f:
    for _ in range(200):
        w = r.choice(W)
        f.write(f"Q: say {w}\nA: {w}\n\n")
with open(f"{d}/sst.tsv", "w") as f:
    f.write("sentence\tlabel\n")
    for i in range(12):
        f.write(f"a {r.choice(W)} thing {i}\t{i % 2}\n")
with open(f"{d}/qa.jsonl", "w") as f:
    for w in W:
        f.write(json.dumps({"input": f"Q: say {w}\nA:", "target": w}) + "\n")
PY
"$BIN" train --data "$T/corpus.txt" --out "$T/m" --layers 2 --heads 2 --dim 48 --context 64 --batch 8 --steps 30 \
  --lr 3e-3 --seed 1 --threads 2 --quiet > "$T/train.log" 2>&1 || { bad "train"; tail -3 "$T/train.log"; }

"$BIN" eval --model "$T/m" --task classify --data "$T/sst.tsv" --labels negative,positive \
  --template 'Review: {text}\nSentiment:' --report "$T/cls.json" --threads 2 --quiet > "$T/cls.out" 2> "$T/cls.err"; rc=$?
check "classify runs (rc $rc) and prints acc ± interval" "[ $rc = 0 ] && grep -qE '^classify  n 12  shots 0  acc [0-9.]+ ± [0-9.]+' '$T/cls.out'"
check "classify prints per-class counts that add up to n" "python3 - '$T/cls.out' <<'PY'
import re, sys
rows = [l.split() for l in open(sys.argv[1]) if l.startswith('  ')]
assert [r[0] for r in rows] == ['negative', 'positive'], rows
assert sum(int(r[2]) for r in rows) == 12 and sum(int(r[-1]) for r in rows) == 12, rows
PY"
check "classify --report: acc_ci95, classes, labels, template" "python3 -c '
import json, sys; j = json.load(open(sys.argv[1]))
lo, hi = j[\"acc_ci95\"]; assert lo <= j[\"acc\"] <= hi and j[\"task\"] == \"classify\" and j[\"n\"] == 12
assert j[\"labels\"] == [\"negative\", \"positive\"] and j[\"template\"] == \"Review: {text}\nSentiment:\"
assert [c[\"n\"] for c in j[\"classes\"]] == [6, 6]' '$T/cls.json'"

"$BIN" eval --model "$T/m" --task exact-match --data "$T/qa.jsonl" --report "$T/em.json" --details "$T/em.jsonl" \
  --threads 2 --quiet > "$T/em.out" 2> "$T/em.err"; rc=$?
em=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["em"])' "$T/em.json" 2>/dev/null)
check "exact-match runs (rc $rc), prints em ± interval, one detail line per record" \
  "[ $rc = 0 ] && grep -qE '^exact-match  n 7  shots 0  em [0-9.]+ ± [0-9.]+' '$T/em.out' && [ \$(wc -l < '$T/em.jsonl') = 7 ]"
check "em ($em) is the mean of the details' matches" "python3 -c '
import json, sys; m = [json.loads(l)[\"match\"] for l in open(sys.argv[1])]
assert abs(sum(m) / len(m) - float(sys.argv[2])) < 1e-12' '$T/em.jsonl' '$em'"
"$BIN" eval --model "$T/m" --task exact-match --data "$T/qa.jsonl" --shots 2 --em-normalize squad --max-tokens 4 \
  --stop '' --threads 2 --quiet > "$T/em2.out" 2>&1; rc=$?
check "exact-match with shots, squad normalization, no stop string, 4 tokens (rc $rc)" "[ $rc = 0 ] && grep -q '^exact-match  n 7  shots 2' '$T/em2.out'"

# an encoder-decoder: the input goes to the encoder
SENT=(); for k in 3 2 1 0; do SENT+=(--special "<extra_id_$k>"); done
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --special "<pad>" --special "</s>" "${SENT[@]}" --out "$T/tok" > /dev/null 2>&1
"$BIN" train --arch t5 --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 1 --heads 2 --dim 32 --context 32 --batch 4 \
  --steps 4 --seed 5 --threads 2 --quiet --out "$T/t5" > "$T/t5.log" 2>&1 || { bad "train --arch t5"; tail -3 "$T/t5.log"; }
"$BIN" eval --model "$T/t5" --task exact-match --data "$T/qa.jsonl" --max-tokens 4 --threads 2 --quiet > "$T/t5.out" 2>&1; rc=$?
check "exact-match on a T5 runs (rc $rc)" "[ $rc = 0 ] && grep -q '^exact-match  n 7' '$T/t5.out'"

err "--template is for classify" "--template and --labels are for --task classify" \
  "$BIN" eval --model "$T/m" --task exact-match --data "$T/qa.jsonl" --template '{text}'
err "--stop is for exact-match" "are for --task exact-match" "$BIN" eval --model "$T/m" --data "$T/corpus.txt" --stop x
err "--max-tokens is for exact-match" "are for --task exact-match" \
  "$BIN" eval --model "$T/m" --task classify --data "$T/sst.tsv" --labels a,b --max-tokens 3
err "a template without {text}" 'has no {text}' \
  "$BIN" eval --model "$T/m" --task classify --data "$T/sst.tsv" --labels a,b --template 'Text:'
err "one label word" "at least 2 label words" "$BIN" eval --model "$T/m" --task classify --data "$T/sst.tsv" --labels a
err "unknown normalization" "unknown normalization 'upper'" \
  "$BIN" eval --model "$T/m" --task exact-match --data "$T/qa.jsonl" --em-normalize upper
err "unknown task" "classify, exact-match" "$BIN" eval --model "$T/m" --task rouge --data "$T/qa.jsonl"

echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]
