#!/usr/bin/env bash
# End-to-end BERT fine-tuning: pre-train a tiny BERT with masked LM on a
# generated corpus, fine-tune it on a generated sentiment-like task (the label
# says whether the sentence holds a word from the positive or the negative
# list), require dev accuracy well above chance (also with batches grouped by
# length, deterministically), label stdin with `predict`,
# print embeddings with `embed`, check the default learning rate chosen by the
# model's width (and that --lr wins), and get one clear error line (or the
# documented truncation note) for each kind of bad input.
source "$(dirname "$0")/lib.sh"
# one "lmkit: error:" line, containing $2, and a non-zero exit; $1 is the stderr file, $3 the exit code
one_error() { [ "$3" -ne 0 ] && [ "$(wc -l < "$1")" -eq 1 ] && grep -q '^lmkit: error: ' "$1" && grep -qF -- "$2" "$1"; }

python3 - "$T" <<'PY'
import json, random, sys
d = sys.argv[1]
random.seed(3)
pos = ["good", "great", "happy", "nice", "love"]
neg = ["bad", "awful", "sad", "poor", "hate"]
fill = ["the", "cat", "dog", "sat", "on", "a", "mat", "and", "it", "was", "very", "today", "we", "saw",
        "movie", "film", "story", "book", "really", "quite"]
def sent(kw):
    w = [random.choice(fill) for _ in range(random.randint(3, 8))]
    w.insert(random.randint(0, len(w)), kw)
    return " ".join(w)
with open(f"{d}/corpus.txt", "w") as f:
    for i in range(2000):
        f.write(sent(random.choice(pos + neg)) + "\n")
def rows(n):
    return [(sent(random.choice(pos if i % 2 else neg)), "positive" if i % 2 else "negative") for i in range(n)]
train, dev = rows(400), rows(100)
with open(f"{d}/train.tsv", "w") as f:          # text column first
    f.write("sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in train))
with open(f"{d}/dev.tsv", "w", newline="") as f:  # label first, an extra column, CRLF, a blank line
    f.write("label\tid\ttext\r\n" + "".join(f"{l}\t{i}\t{s}\r\n" for i, (s, l) in enumerate(dev)) + "\r\n")
with open(f"{d}/dev.txt", "w") as f:
    f.write("".join(s + "\n" for s, _ in dev))
with open(f"{d}/dev.labels", "w") as f:
    f.write("".join(l + "\n" for _, l in dev))
with open(f"{d}/train.jsonl", "w") as f:
    for s, l in train[:40]:
        f.write(json.dumps({"text": s, "label": l}) + "\n")
with open(f"{d}/bad_label.tsv", "w") as f:
    f.write("sentence\tlabel\nthe cat was good\tpositive\nthe dog was meh\tneutral\n")
with open(f"{d}/no_label.tsv", "w") as f:
    f.write("sentence\tstars\nthe cat was good\t5\n")
with open(f"{d}/bad.jsonl", "w") as f:
    f.write(json.dumps({"text": "a good film", "label": "positive"}) + "\n")
    f.write('{"text": "a bad film", "label": \n')
with open(f"{d}/long.tsv", "w") as f:
    f.write("sentence\tlabel\n")
    f.write(" ".join(["good"] * 200) + "\tpositive\n" + " ".join(["bad"] * 200) + "\tnegative\n")
    f.write("good\tpositive\nbad\tnegative\n")
PY

"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --out "$T/tok" \
  --special [PAD] --special [CLS] --special [SEP] --special [MASK] --special [UNK] > /dev/null 2>&1
"$BIN" train --arch bert --objective mlm --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 2 --heads 2 --dim 32 \
  --context 32 --batch 16 --steps 80 --lr 2e-3 --warmup 8 --eval-every 40 --eval-batches 2 --seed 7 --threads 2 \
  --quiet --out "$T/pre" > /dev/null 2> "$T/pre.err"
check "pre-train a tiny BERT" "[ -f $T/pre/model.safetensors ] && [ -f $T/pre/tokenizer.json ]"

"$BIN" finetune --model "$T/pre" --task classify --data "$T/train.tsv" --eval "$T/dev.tsv" --out "$T/ft" \
  --epochs 5 --batch 16 --lr 3e-3 --seed 1 --threads 2 --quiet > "$T/ft.out" 2> "$T/ft.err"
acc=$(sed -n 's/^eval accuracy \([0-9.]*\).*/\1/p' "$T/ft.out")
check "fine-tune reaches dev accuracy >= 0.8 (got ${acc:-none})" "[ -n '$acc' ] && python3 -c 'import sys; sys.exit(not $acc >= 0.8)'"
check "config.json names the labels (id2label, label2id)" \
  "python3 -c 'import json,sys; c=json.load(open(\"$T/ft/config.json\")); sys.exit(not (c[\"id2label\"]=={\"0\":\"negative\",\"1\":\"positive\"} and c[\"label2id\"]=={\"negative\":0,\"positive\":1} and c[\"architectures\"]==[\"BertForSequenceClassification\"]))'"
check "metrics.jsonl has val_accuracy and the final eval_accuracy" \
  "grep -q '\"val_accuracy\"' $T/ft/metrics.jsonl && grep -q '\"eval_accuracy\"' $T/ft/metrics.jsonl"

# batches grouped by length (HF's group_by_length) learn as well, and the same seed gives the same run
for r in 1 2; do
  "$BIN" finetune --model "$T/pre" --task classify --data "$T/train.tsv" --eval "$T/dev.tsv" --out "$T/ftg$r" \
    --epochs 5 --batch 16 --lr 3e-3 --seed 1 --threads 2 --quiet --group-by-length > "$T/ftg$r.out" 2> /dev/null
done
acc=$(sed -n 's/^eval accuracy \([0-9.]*\).*/\1/p' "$T/ftg1.out")
check "fine-tune --group-by-length reaches dev accuracy >= 0.8 (got ${acc:-none}), deterministically" \
  "[ -n '$acc' ] && python3 -c 'import sys; sys.exit(not $acc >= 0.8)' && cmp -s $T/ftg1/model.safetensors $T/ftg2/model.safetensors"
check "--group-by-length changes the batches" "! cmp -s $T/ft/model.safetensors $T/ftg1/model.safetensors"

"$BIN" predict --model "$T/ft" --threads 2 < "$T/dev.txt" > "$T/pred.txt" 2> "$T/pred.err"
check "predict prints one label per input line" "[ \$(wc -l < $T/pred.txt) -eq 100 ] && ! grep -qvE '^(positive|negative)\$' $T/pred.txt"
agree=$(paste "$T/pred.txt" "$T/dev.labels" | awk '$1==$2{n++} END{print n+0}')
check "predict agrees with the dev labels ($agree/100)" "[ $agree -ge 80 ]"
printf 'the film was great\n' | "$BIN" predict --model "$T/ft" --probs --threads 2 > "$T/probs.txt" 2>&1
check "predict --probs prints JSON probabilities" \
  "python3 -c 'import json,sys; o=json.loads(open(\"$T/probs.txt\").read()); sys.exit(not (o[\"label\"] in (\"positive\",\"negative\") and abs(sum(o[\"probs\"].values())-1)<1e-3))'"

# an ensemble: several --model average the softmax probabilities, labels matched by name (ftr numbers
# them the other way round: its training file starts with a positive example)
tail -n +2 "$T/train.jsonl" > "$T/train_rev.jsonl"
"$BIN" finetune --model "$T/pre" --task classify --data "$T/train_rev.jsonl" --out "$T/ftr" --steps 20 --batch 8 --lr 3e-3 \
  --threads 2 --quiet > /dev/null 2>&1
head -20 "$T/dev.txt" > "$T/dev20.txt"
for m in ft ftr; do "$BIN" predict --model "$T/$m" --probs --threads 2 < "$T/dev20.txt" > "$T/p_$m.jsonl" 2> /dev/null; done
"$BIN" predict --model "$T/ft" --model "$T/ftr" --probs --threads 2 < "$T/dev20.txt" > "$T/p_ens.jsonl" 2> /dev/null
"$BIN" predict --model "$T/ft" --model "$T/ftr" --threads 2 < "$T/dev20.txt" > "$T/p_ens.txt" 2> /dev/null
check "predict --model A --model B: the mean of their probabilities by label name, argmax as the label" \
  "python3 -c '
import json, sys
r = lambda f: [json.loads(l) for l in open(f)]
a, b, e = r(\"$T/p_ft.jsonl\"), r(\"$T/p_ftr.jsonl\"), r(\"$T/p_ens.jsonl\")
labels = [l.strip() for l in open(\"$T/p_ens.txt\")]
ok = len(e) == 20 and len(labels) == 20 and json.load(open(\"$T/ftr/config.json\"))[\"label2id\"][\"positive\"] == 0
for x, y, z, lab in zip(a, b, e, labels):
    mean = {k: (x[\"probs\"][k] + y[\"probs\"][k]) / 2 for k in x[\"probs\"]}
    ok = ok and all(abs(mean[k] - z[\"probs\"][k]) < 2e-6 for k in mean) and z[\"label\"] == lab == max(mean, key=mean.get)
sys.exit(not ok)'"
"$BIN" predict --model "$T/ft" --model "$T/pre" < /dev/null > /dev/null 2> "$T/e9"; rc=$?
check "an ensemble with a model that is not a classifier: one error line" "one_error $T/e9 'an ensemble takes classification models only' $rc"

head -5 "$T/dev.txt" | "$BIN" embed --model "$T/pre" --pool cls --threads 2 > "$T/e_cls.jsonl" 2> "$T/e.err"
head -5 "$T/dev.txt" | "$BIN" embed --model "$T/pre" --pool mean --threads 2 > "$T/e_mean.jsonl" 2>> "$T/e.err"
check "embed prints JSONL vectors of the model width" \
  "python3 -c 'import json,sys; L=[json.loads(l) for l in open(\"$T/e_cls.jsonl\")]; sys.exit(not (len(L)==5 and all(len(o[\"embedding\"])==32 and isinstance(o[\"text\"],str) for o in L)))'"
check "cls and mean pooling differ" "[ -s $T/e_mean.jsonl ] && ! cmp -s $T/e_cls.jsonl $T/e_mean.jsonl"

"$BIN" finetune --model "$T/pre" --task classify --data "$T/train.jsonl" --out "$T/ftj" --steps 2 --batch 8 --threads 2 --quiet > /dev/null 2> "$T/j.err"
check "fine-tune reads JSONL" "[ -f $T/ftj/model.safetensors ] && grep -q positive $T/ftj/config.json"

# the default learning rate follows the model's width (docs/finetune.md) and says so; --lr wins.
# 2 steps without warmup: step 1's lr is half the peak (cosine at the midpoint)
lr1() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["lr"])' "$1"; }
DL=(--task classify --data "$T/train.jsonl" --steps 2 --batch 8 --warmup-ratio 0 --threads 2 --quiet)
"$BIN" finetune --model "$T/pre" "${DL[@]}" --out "$T/ftd" > /dev/null 2> "$T/d.err"
a=$(lr1 "$T/ftd/metrics.jsonl")
"$BIN" finetune --model "$T/pre" "${DL[@]}" --lr 3e-3 --out "$T/ftl" > /dev/null 2> "$T/l.err"
b=$(lr1 "$T/ftl/metrics.jsonl")
check "a 32-wide model fine-tunes at lr 3e-4 by default and says so (step-1 lr $a); --lr 3e-3 wins silently ($b)" \
  "grep -qF 'lr 3e-4 (the default for models narrower than 384; this one is 32 wide; --lr to change)' $T/d.err && \
   ! grep -q 'default for models' $T/l.err && python3 -c 'import sys; sys.exit(not (abs(${a:-1} - 1.5e-4) < 1e-9 and abs(${b:-1} - 1.5e-3) < 1e-9))'"

# bad input: one clear error line each
FT="$BIN finetune --model $T/pre --task classify --out $T/bad --threads 2 --quiet --steps 2 --lr 1e-3"  # an explicit --lr: no default-lr note, so errors are the only stderr line
$FT --data "$T/train.tsv" --eval "$T/bad_label.tsv" > /dev/null 2> "$T/e1"; rc=$?
check "eval label never seen in training: error names file:line" "one_error $T/e1 'bad_label.tsv:3: label' $rc"
$FT --data "$T/no_label.tsv" > /dev/null 2> "$T/e2"; rc=$?
check "TSV without a label column: error names the file and the header" "one_error $T/e2 'no_label.tsv: the header row [\"sentence\", \"stars\"]' $rc"
$FT --data "$T/bad.jsonl" > /dev/null 2> "$T/e3"; rc=$?
check "malformed JSONL line: error names file:line" "one_error $T/e3 'bad.jsonl:2: malformed JSON' $rc"
"$BIN" finetune --model "$T/pre" --task nope --data "$T/train.tsv" --out "$T/bad" > /dev/null 2> "$T/e4"; rc=$?
check "unknown --task: one error line listing the tasks" "one_error $T/e4 \"unknown --task 'nope' (available: classify, tokens, qa, text2text)\" $rc"
"$BIN" finetune --model "$T/pre" --task classify --lr 1e-3 --data "$T/missing.tsv" --out "$T/bad" > /dev/null 2> "$T/e5"; rc=$?
check "missing data file: one error line" "one_error $T/e5 'missing.tsv' $rc"
"$BIN" finetune --model "$T/pre" --task tokens --group-by-length --data "$T/train.tsv" --out "$T/bad" > /dev/null 2> "$T/e8"; rc=$?
check "--group-by-length outside --task classify: one error line" "one_error $T/e8 '--group-by-length is for --task classify' $rc"
"$BIN" predict --model "$T/pre" < /dev/null > /dev/null 2> "$T/e6"; rc=$?
check "predict with a model that is not a classifier: one error line" "one_error $T/e6 'not a sequence-classification model' $rc"
"$BIN" embed --model "$T/pre" --pool max < /dev/null > /dev/null 2> "$T/e7"; rc=$?
check "embed --pool max: one error line" "one_error $T/e7 \"unknown --pool 'max'\" $rc"

# too long for the context: truncated, counted and reported (not an error)
$FT --data "$T/long.tsv" --context 16 > /dev/null 2> "$T/long.err"; rc=$?
check "long training texts are truncated and reported" "[ $rc -eq 0 ] && grep -q 'truncated 2 of 4 training texts to 14 tokens' $T/long.err"
python3 -c "print(' '.join(['good'] * 300))" | "$BIN" predict --model "$T/ft" > "$T/lp.txt" 2> "$T/lp.err"; rc=$?
check "predict truncates inputs longer than the positions and reports it" "[ $rc -eq 0 ] && [ \$(wc -l < $T/lp.txt) -eq 1 ] && grep -q 'truncated 1 of 1 inputs' $T/lp.err"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
