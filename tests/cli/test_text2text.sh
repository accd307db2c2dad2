#!/usr/bin/env bash
# `lmkit finetune --task text2text` and `lmkit predict` on an encoder-decoder, end to end:
#   - a tiny T5 (from `lmkit train --arch t5`, one step: no pre-training to speak of) is fine-tuned on a
#     synthetic text-to-text task, `copy: w1 .. wk` -> `w1 .. wk` and `reverse: w1 .. wk` -> `wk .. w1`
#     over 10 words (k = 3..5, chance exact match ~0): exact match rises from the first evaluation to
#     >= 0.3 at the end, ROUGE-L is reported (targets average > 3 words) and above exact match;
#   - metrics.jsonl has val_exact_match / val_rouge_l per evaluation and a final eval line;
#   - `predict` prints, line for line, what the evaluation wrote to eval_predictions.txt (greedy), and
#     runs with --beams; short targets (labels) get exact match only, --rouge on forces ROUGE-L;
#   - bad input: a malformed TSV line and JSONL record name file:line, an empty target is an error,
#     an input longer than the context is truncated and counted (finetune and predict); a decoder-only
#     model and generation flags on a classifier are refused.
# (The loss is span corruption's padded encoder-decoder loss, vs PyTorch in tests/reference/test_t5.py;
# ROUGE-L vs rouge-score in tests/reference/test_rouge.py; the readers in tests/unit/test_text2text.c.)
source "$(dirname "$0")/lib.sh"
python3 - "$T" <<'PY'
import random, sys
d = sys.argv[1]
r = random.Random(3)
W = ["red", "blue", "green", "cat", "dog", "sun", "tree", "car", "fish", "bird"]
with open(f"{d}/corpus.txt", "w") as f:
    for _ in range(2000):
        f.write(" ".join(r.choice(W) for _ in range(r.randint(4, 9))) + " .\n")
def ex():
    w = [r.choice(W) for _ in range(r.randint(3, 5))]
    t = r.choice(["copy", "reverse"])
    return f"{t}: {' '.join(w)}", " ".join(w if t == "copy" else w[::-1])
for name, n in (("train.tsv", 2000), ("dev.tsv", 100)):
    with open(f"{d}/{name}", "w") as f:
        for _ in range(n):
            f.write("%s\t%s\n" % ex())
with open(f"{d}/labels.jsonl", "w") as f:   # short targets: exact match only
    for _ in range(64):
        w = [r.choice(W) for _ in range(4)]
        f.write('{"input": "first: %s", "target": "%s"}\n' % (" ".join(w), w[0]))
PY
SENT=(); for k in 9 8 7 6 5 4 3 2 1 0; do SENT+=(--special "<extra_id_$k>"); done
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --special "<pad>" --special "</s>" "${SENT[@]}" \
  --out "$T/tok" > /dev/null 2>&1 || bad "tokenizer train"
"$BIN" train --arch t5 --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 2 --heads 4 --dim 64 --context 32 --batch 8 \
  --steps 1 --seed 1 --threads 1 --quiet --out "$T/base" > /dev/null 2>&1 || bad "train --arch t5"
FT=(--model "$T/base" --task text2text --threads 1 --quiet)

"$BIN" finetune "${FT[@]}" --data "$T/train.tsv" --eval "$T/dev.tsv" --out "$T/ft" --epochs 6 --batch 16 --lr 3e-3 \
  > "$T/ft.out" 2> "$T/ft.err"; rc=$?
line=$(grep '^eval exact match' "$T/ft.out")
em=$(sed -n 's/^eval exact match \([0-9.]*\).*/\1/p' "$T/ft.out"); rl=$(sed -n 's/.*rouge-l \([0-9.]*\).*/\1/p' "$T/ft.out")
first=$(python3 -c "import json; print([json.loads(l) for l in open('$T/ft/metrics.jsonl') if 'val_exact_match' in l][0]['val_exact_match'])" 2>/dev/null)
check "finetune --task text2text runs (rc $rc) and learns copy/reverse: exact match ${first:-?} at the first evaluation -> ${em:-?} (ROUGE-L ${rl:-?})" \
  "[ $rc = 0 ] && ge ${em:-0} 0.3 && ge ${em:-0} \$(python3 -c 'print(${first:-1} + 0.2)') && ge ${rl:-0} ${em:-1}"
[ $rc = 0 ] || tail -3 "$T/ft.err"
check "eval prints exact match, ROUGE-L and loss: $line" "echo '$line' | grep -q 'rouge-l .* eval loss .* (100 examples, targets of 3.[0-9] words'"
check "metrics.jsonl: val_exact_match, val_rouge_l per evaluation and a final eval line" \
  "[ \$(grep -c '\"val_rouge_l\"' $T/ft/metrics.jsonl) = 6 ] && tail -1 $T/ft/metrics.jsonl | grep -q '\"eval_exact_match\": $em.*\"eval_rouge_l\"'"
check "the saved model is a T5ForConditionalGeneration directory with its tokenizer" \
  "grep -q T5ForConditionalGeneration $T/ft/config.json && [ -s $T/ft/tokenizer.json ]"

# predict: the evaluation's outputs, line for line, at the evaluation's cap: the longest target in
# tokens, EOS included (finetune_text2text.c; the targets' ids split at 10, the newline byte);
# predict's default of 128 lets an output the cap stopped run on
cap=$(cut -f2 "$T/train.tsv" "$T/dev.tsv" | "$BIN" tokenizer encode --tokenizer "$T/tok" --ids |
      awk '{ for (i = 1; i <= NF; i++) { if ($i == 10) { if (n > m) m = n; n = 0 } else n++ } } END { if (n > m) m = n; print m + 1 }')
cut -f1 "$T/dev.tsv" | "$BIN" predict --model "$T/ft" --threads 1 --max-tokens "$cap" > "$T/pred.txt" 2> "$T/pred.err"; rc=$?
check "predict (rc $rc) prints the evaluation's outputs ($(wc -l < "$T/pred.txt") lines, $(head -1 "$T/pred.txt"))" \
  "[ $rc = 0 ] && [ \$(wc -l < $T/pred.txt) = 100 ] && cmp -s $T/pred.txt $T/ft/eval_predictions.txt"
em2=$(paste "$T/pred.txt" <(cut -f2 "$T/dev.tsv") | awk -F'\t' '$1 == $2 {n++} END {printf "%.4f", n / NR}')
check "predict's outputs score the evaluation's exact match ($em2 vs $em)" "[ '$em2' = '$em' ]"
head -5 "$T/dev.tsv" | cut -f1 | "$BIN" predict --model "$T/ft" --threads 1 --beams 3 --max-tokens 10 > "$T/beam.txt"; rc=$?
check "predict --beams 3 runs (rc $rc): $(head -1 "$T/beam.txt")" "[ $rc = 0 ] && [ \$(wc -l < $T/beam.txt) = 5 ]"

# short targets: exact match only, unless forced
"$BIN" finetune "${FT[@]}" --data "$T/labels.jsonl" --eval "$T/labels.jsonl" --out "$T/lab" --steps 2 --batch 8 > "$T/lab.out" 2>&1
check "labels (1 word): exact match without ROUGE-L: $(grep '^eval' "$T/lab.out")" \
  "grep -q '^eval exact match [0-9.]*  eval loss' $T/lab.out && ! grep -q rouge_l $T/lab/metrics.jsonl"
"$BIN" finetune "${FT[@]}" --data "$T/labels.jsonl" --eval "$T/labels.jsonl" --out "$T/lab2" --steps 2 --batch 8 --rouge on \
  > "$T/lab2.out" 2>&1
check "--rouge on reports ROUGE-L for short targets" "grep -q 'rouge-l' $T/lab2.out && grep -q eval_rouge_l $T/lab2/metrics.jsonl"

# bad input
printf 'copy: a b\ta b\nno tab on this line\n' > "$T/bad1.tsv"
err "a line without a tab names file:line" "bad1.tsv:2: no tab" "$BIN" finetune "${FT[@]}" --data "$T/bad1.tsv" --out "$T/x1"
printf 'copy: a b\ta b\n\ncopy: c\t\n' > "$T/bad2.tsv"
err "an empty target names file:line" "bad2.tsv:3: empty target" "$BIN" finetune "${FT[@]}" --data "$T/bad2.tsv" --out "$T/x2"
printf '{"input": "a", "target": "b"}\n{"input": "a", "label": "b"}\n' > "$T/bad3.jsonl"
err "a JSONL record with another member names it and file:line" 'bad3.jsonl:2: unknown or repeated member "label"' \
  "$BIN" finetune "${FT[@]}" --data "$T/bad3.jsonl" --out "$T/x3"
err "a malformed eval file is named too" "bad1.tsv:2" "$BIN" finetune "${FT[@]}" --data "$T/train.tsv" --eval "$T/bad1.tsv" --out "$T/x4"
long=$(python3 -c "print('copy: ' + ' '.join(['red'] * 40))")
{ head -20 "$T/train.tsv"; printf '%s\tred red\n' "$long"; } > "$T/long.tsv"
"$BIN" finetune "${FT[@]}" --data "$T/long.tsv" --eval "$T/long.tsv" --out "$T/long" --steps 1 --batch 4 > /dev/null 2> "$T/long.err"; rc=$?
check "an input longer than the context is truncated and counted (rc $rc): $(grep truncated "$T/long.err")" \
  "[ $rc = 0 ] && grep -q 'truncated 1 of 21 training and 1 of 21 eval inputs to 32 tokens' $T/long.err"
echo "$long" | "$BIN" predict --model "$T/ft" --threads 1 --max-tokens 4 > /dev/null 2> "$T/plong.err"; rc=$?
check "predict counts a truncated input too (rc $rc)" "[ $rc = 0 ] && grep -q 'truncated 1 of 1 inputs to 32 tokens' $T/plong.err"
"$BIN" train --data "$T/corpus.txt" --tokenizer "$T/tok" --layers 1 --heads 2 --dim 16 --context 16 --steps 1 --quiet \
  --out "$T/gpt" > /dev/null 2>&1
err "a decoder-only model is refused, naming sft" "lmkit sft" "$BIN" finetune --model "$T/gpt" --task text2text --data "$T/train.tsv" --out "$T/x5" --quiet
err "generation flags are for text2text" "are for --task text2text" "$BIN" finetune --model "$T/base" --task classify --beams 2 --data "$T/train.tsv" --out "$T/x6"
err "an unknown --rouge value" "--rouge" "$BIN" finetune "${FT[@]}" --rouge maybe --data "$T/train.tsv" --out "$T/x7"
echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]
