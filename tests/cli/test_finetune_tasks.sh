#!/usr/bin/env bash
# End-to-end fine-tuning for token classification and question answering:
# pre-train a tiny BERT with masked LM on a generated corpus, fine-tune it on
# a generated NER set (names from a list tagged PER, cities LOC, the rest O)
# to dev entity F1 >= 0.8, and on a generated SQuAD set ("what color is the
# ball ?" over "the ball is red .") to dev exact match well above chance; and
# get a counted skip or one clear error line for each kind of bad input.
source "$(dirname "$0")/lib.sh"
one_error() { [ "$3" -ne 0 ] && [ "$(wc -l < "$1")" -eq 1 ] && grep -q '^lmkit: error: ' "$1" && grep -qF -- "$2" "$1"; }

python3 - "$T" <<'PY'
import json, random, sys
d = sys.argv[1]
random.seed(5)
people = ["John", "Mary", "Peter", "Anna", "Paul", "Lucy", "Mark", "Emma"]
surnames = ["Smith", "Brown", "Jones", "Moore"]
cities = ["Paris", "London", "Berlin", "Rome", "Madrid", "Vienna"]
verbs = ["lives in", "went to", "loves", "visited", "works in"]
things = ["ball", "car", "hat", "cup", "box", "kite"]
colors = ["red", "blue", "green", "black", "white", "yellow"]
def ner():
    w, t = [], []
    p = random.choice(people); w.append(p); t.append("B-PER")
    if random.random() < 0.4: w.append(random.choice(surnames)); t.append("I-PER")
    for x in random.choice(verbs).split(): w.append(x); t.append("O")
    w.append(random.choice(cities)); t.append("B-LOC")
    if random.random() < 0.5:
        for x in ["with", "the"]: w.append(x); t.append("O")
        w.append(random.choice(things)); t.append("O")
    w.append("."); t.append("O")
    return w, t
def conll(path, n, crlf=False):
    nl = "\r\n" if crlf else "\n"
    with open(path, "w", newline="") as f:
        f.write("-DOCSTART- -X- O" + nl + nl)
        for _ in range(n):
            w, t = ner()
            f.write("".join(f"{a} X {b}{nl}" for a, b in zip(w, t)) + nl)
conll(f"{d}/ner_train.txt", 300)
conll(f"{d}/ner_dev.txt", 60, crlf=True)
def qa_set(n, bad=0):
    paras = []
    for i in range(n):
        th, c, o = random.choice(things), random.choice(colors), random.choice(things)
        oc = random.choice([x for x in colors if x != c])
        ctx = f"the {o} is {oc} . the color of the {th} is {c} ." if o != th else f"the color of the {th} is {c} ."
        a = ctx.rindex(f" {c} .") + 1
        qas = [{"id": f"q{i}", "question": f"what color is the {th} ?", "answers": [{"text": c, "answer_start": a}]}]
        if i < bad:
            qas.append({"id": f"bad{i}", "question": "what ?", "answers": [{"text": c, "answer_start": len(ctx) + 5}]})
        paras.append({"context": ctx, "qas": qas})
    return {"version": "1.1", "data": [{"title": "colors", "paragraphs": paras}]}
json.dump(qa_set(300, bad=3), open(f"{d}/qa_train.json", "w"))
json.dump(qa_set(60), open(f"{d}/qa_dev.json", "w"))
with open(f"{d}/corpus.txt", "w") as f:
    for _ in range(1500):
        w, _t = ner(); f.write(" ".join(w) + "\n")
        p = qa_set(1)["data"][0]["paragraphs"][0]
        f.write(p["context"] + " " + p["qas"][0]["question"] + "\n")
with open(f"{d}/ner_unseen.txt", "w") as f:
    f.write("John B-PER\nlives O\n\nACME B-ORG\nhires O\n")
with open(f"{d}/ner_notag.txt", "w") as f:
    f.write("John B-PER\nlives\n")
with open(f"{d}/qa_bad.json", "w") as f:
    f.write('{"data": [{"paragraphs": [{"context": "x", "qas": [}]}]}')
PY

"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --out "$T/tok" \
  --special [PAD] --special [CLS] --special [SEP] --special [MASK] --special [UNK] > /dev/null 2>&1
"$BIN" train --arch bert --objective mlm --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 2 --heads 2 --dim 32 \
  --context 48 --batch 16 --steps 40 --lr 2e-3 --warmup 4 --eval-every 40 --eval-batches 2 --seed 7 --threads 2 \
  --quiet --out "$T/pre" > /dev/null 2> "$T/pre.err"
check "pre-train a tiny BERT" "[ -f $T/pre/model.safetensors ] && [ -f $T/pre/tokenizer.json ]"

# ---- token classification
"$BIN" finetune --model "$T/pre" --task tokens --data "$T/ner_train.txt" --eval "$T/ner_dev.txt" --out "$T/ner" \
  --epochs 5 --batch 16 --lr 5e-3 --seed 1 --threads 2 --quiet > "$T/ner.out" 2> "$T/ner.err"
f1=$(sed -n 's/^eval entity f1 \([0-9.]*\).*/\1/p' "$T/ner.out")
check "tokens: dev entity F1 >= 0.8 (got ${f1:-none})" \
  "[ -n '$f1' ] && python3 -c 'import sys; sys.exit(not $f1 >= 0.8)'"
check "tokens: config.json is BertForTokenClassification with the tags in order of appearance" \
  "python3 -c 'import json,sys; c=json.load(open(\"$T/ner/config.json\")); sys.exit(not (c[\"architectures\"]==[\"BertForTokenClassification\"] and c[\"id2label\"][\"0\"]==\"B-PER\" and set(c[\"label2id\"])=={\"B-PER\",\"I-PER\",\"O\",\"B-LOC\"}))'"
check "tokens: metrics.jsonl has val_f1 and the final eval_f1" \
  "grep -q '\"val_f1\"' $T/ner/metrics.jsonl && grep -q '\"eval_f1\"' $T/ner/metrics.jsonl"
# predict: a few dev sentences -> word/TAG lines matching the gold tags
python3 -c "
import sys
ss=open('$T/ner_dev.txt').read().replace('\r','').split('\n\n')[1:6]
s=[[l.split() for l in x.splitlines()] for x in ss]
open('$T/ner_in.txt','w').write(''.join(' '.join(w[0] for w in x)+'\n' for x in s))
open('$T/ner_gold.txt','w').write(''.join(' '.join(w[0]+'/'+w[-1] for w in x)+'\n' for x in s))"
"$BIN" predict --model "$T/ner" --threads 2 < "$T/ner_in.txt" > "$T/ner_pred.txt" 2> "$T/ner_pred.err"; rc=$?
check "tokens: predict tags dev sentences as gold (word/TAG per line)" \
  "[ $rc -eq 0 ] && [ \$(wc -l < $T/ner_gold.txt) -eq 5 ] && cmp -s $T/ner_gold.txt $T/ner_pred.txt"

# ---- question answering
"$BIN" finetune --model "$T/pre" --task qa --data "$T/qa_train.json" --eval "$T/qa_dev.json" --out "$T/qa" \
  --epochs 6 --batch 16 --lr 3e-3 --seed 1 --threads 2 --quiet > "$T/qa.out" 2> "$T/qa.err"
em=$(sed -n 's/^eval exact match \([0-9.]*\).*/\1/p' "$T/qa.out")
check "qa: dev exact match >= 0.5 (chance ~ 1/6 of the colour words; got ${em:-none})" \
  "[ -n '$em' ] && python3 -c 'import sys; sys.exit(not $em >= 0.5)'"
check "qa: answers outside their context are skipped, counted and reported" \
  "grep -q 'skipped 3 training answers whose span is outside the context' $T/qa.err"
check "qa: config.json is BertForQuestionAnswering; metrics.jsonl has eval_exact_match" \
  "grep -q BertForQuestionAnswering $T/qa/config.json && grep -q '\"eval_exact_match\"' $T/qa/metrics.jsonl"
# predict: a JSON line -> {"answer": ..., "score": ...}; a malformed line is one error naming the line
printf '%s\n' '{"question": "what color is the kite ?", "context": "the car is blue . the color of the kite is green ."}' \
  '{"question": "what color is the cup ?", "context": "the color of the cup is white ."}' > "$T/qa_in.txt"
"$BIN" predict --model "$T/qa" --threads 2 < "$T/qa_in.txt" > "$T/qa_pred.txt" 2> "$T/qa_pred.err"; rc=$?
check "qa: predict returns the answer text and a score per line" \
  "[ $rc -eq 0 ] && python3 -c 'import json,sys; r=[json.loads(l) for l in open(\"$T/qa_pred.txt\")]; sys.exit(not ([x[\"answer\"] for x in r]==[\"green\",\"white\"] and all(isinstance(x[\"score\"],float) for x in r)))'"
printf '%s\n' '{"question": "what ?", "context": "x"}' '{"question": "what ?"' | \
  "$BIN" predict --model "$T/qa" --threads 2 > /dev/null 2> "$T/e_qa"; rc=$?
check "qa: predict on a malformed line: one error naming <stdin>:LINE" "one_error $T/e_qa '<stdin>:2:' $rc"
# a window of 16 tokens: contexts slide over several windows (stride 4) and still train and score
"$BIN" finetune --model "$T/pre" --task qa --data "$T/qa_train.json" --eval "$T/qa_dev.json" --out "$T/qaw" \
  --steps 4 --batch 8 --context 16 --stride 4 --seed 1 --threads 2 --quiet > "$T/qaw.out" 2> "$T/qaw.err"; rc=$?
check "qa: short windows with a stride run and score" "[ $rc -eq 0 ] && grep -q '^eval exact match' $T/qaw.out"

# ---- bad input: one clear error line each
FT="$BIN finetune --model $T/pre --out $T/bad --threads 2 --quiet --steps 2 --lr 1e-3"  # an explicit --lr: no default-lr note, so errors are the only stderr line
$FT --task tokens --data "$T/ner_train.txt" --eval "$T/ner_unseen.txt" > /dev/null 2> "$T/e1"; rc=$?
check "tokens: eval tag never seen in training: error names file:line" "one_error $T/e1 \"ner_unseen.txt:4: tag 'B-ORG'\" $rc"
$FT --task tokens --data "$T/ner_notag.txt" > /dev/null 2> "$T/e2"; rc=$?
check "tokens: a line without a tag column: error names file:line" "one_error $T/e2 'ner_notag.txt:2' $rc"
$FT --task qa --data "$T/qa_bad.json" > /dev/null 2> "$T/e3"; rc=$?
check "qa: malformed SQuAD JSON: error names the file" "one_error $T/e3 'qa_bad.json: malformed JSON' $rc"
$FT --task qa --data "$T/missing.json" > /dev/null 2> "$T/e4"; rc=$?
check "qa: missing data file: one error line" "one_error $T/e4 'missing.json' $rc"
$FT --task ner --data "$T/ner_train.txt" > /dev/null 2> "$T/e5"; rc=$?
check "unknown task: one error line listing the tasks" "one_error $T/e5 'available: classify, tokens, qa' $rc"
# sentences longer than the context: cut, counted and reported (not an error)
$FT --task tokens --data "$T/ner_train.txt" --context 6 > /dev/null 2> "$T/long.err"; rc=$?
check "tokens: sentences longer than the context are truncated and reported" \
  "[ $rc -eq 0 ] && grep -q 'truncated [0-9]* of 300 training sentences to 4 tokens' $T/long.err"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
