#!/usr/bin/env bash
# End-to-end fine-tuning of a decoder: pre-train a tiny GPT-2 with `lmkit train`
# on a generated corpus, then
#   - `finetune --task classify` on a generated keyword task (the label says
#     whether the sentence holds a word of the positive or the negative list):
#     dev accuracy well above chance, and the output directory is a
#     GPT2ForSequenceClassification: config.json names the class, pad_token_id
#     and the real label names; model.safetensors holds the base model's
#     transformer.* tensors and score.weight (labels, n_embd) without bias, and
#     nothing else; `predict` labels stdin;
#   - `finetune --task tokens` on generated CoNLL NER data: dev entity F1 well
#     above chance, a GPT2ForTokenClassification directory (classifier.weight,
#     classifier.bias), `predict` tags words;
#   - `--task qa` on a decoder: one clear error line.
source "$(dirname "$0")/lib.sh"
one_error() { [ "$3" -ne 0 ] && [ "$(wc -l < "$1")" -eq 1 ] && grep -q '^lmkit: error: ' "$1" && grep -qF -- "$2" "$1"; }

python3 - "$T" <<'PY'
import random, sys
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
def rows(n):
    return [(sent(random.choice(pos if i % 2 else neg)), "positive" if i % 2 else "negative") for i in range(n)]
train, dev = rows(400), rows(100)
with open(f"{d}/train.tsv", "w") as f:
    f.write("sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in train))
with open(f"{d}/dev.tsv", "w") as f:
    f.write("label\ttext\n" + "".join(f"{l}\t{s}\n" for s, l in dev))
with open(f"{d}/dev.txt", "w") as f:
    f.write("".join(s + "\n" for s, _ in dev))
with open(f"{d}/dev.labels", "w") as f:
    f.write("".join(l + "\n" for _, l in dev))

people = ["John", "Mary", "Peter", "Anna", "Paul", "Lucy", "Mark", "Emma"]
surnames = ["Smith", "Brown", "Jones", "Moore"]
cities = ["Paris", "London", "Berlin", "Rome", "Madrid", "Vienna"]
verbs = ["lives in", "went to", "loves", "visited", "works in"]
things = ["ball", "car", "hat", "cup", "box", "kite"]
def ner():
    w, t = [], []
    w.append(random.choice(people)); t.append("B-PER")
    if random.random() < 0.4: w.append(random.choice(surnames)); t.append("I-PER")
    for x in random.choice(verbs).split(): w.append(x); t.append("O")
    w.append(random.choice(cities)); t.append("B-LOC")
    if random.random() < 0.5:
        for x in ["with", "the"]: w.append(x); t.append("O")
        w.append(random.choice(things)); t.append("O")
    w.append("."); t.append("O")
    return w, t
def conll(path, n):
    out = []
    with open(path, "w") as f:
        f.write("-DOCSTART- -X- O\n\n")
        for _ in range(n):
            w, t = ner()
            out.append((w, t))
            f.write("".join(f"{a} X {b}\n" for a, b in zip(w, t)) + "\n")
    return out
conll(f"{d}/ner_train.txt", 300)
nd = conll(f"{d}/ner_dev.txt", 60)
with open(f"{d}/ner_in.txt", "w") as f:
    f.write("".join(" ".join(w) + "\n" for w, _ in nd[:10]))
with open(f"{d}/ner_gold.txt", "w") as f:
    f.write("".join(" ".join(a + "/" + b for a, b in zip(w, t)) + "\n" for w, t in nd[:10]))
with open(f"{d}/corpus.txt", "w") as f:
    for i in range(1500):
        f.write(sent(random.choice(pos + neg)) + "\n")
        f.write(" ".join(ner()[0]) + "\n")
PY

# the safetensors header of a file: {name: shape}, with struct + json (no safetensors package)
st_names() {
  python3 -c 'import json,struct,sys; d=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",d[:8])[0]; h=json.loads(d[8:8+n]); h.pop("__metadata__",None); print(json.dumps({k:v["shape"] for k,v in h.items()}))' "$1"
}

"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 400 --out "$T/tok" > /dev/null 2>&1
"$BIN" train --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 2 --heads 2 --dim 32 --context 32 --batch 16 \
  --steps 60 --lr 3e-3 --warmup 6 --eval-every 60 --eval-batches 2 --seed 7 --threads 2 --quiet --out "$T/pre" \
  > /dev/null 2> "$T/pre.err"
check "pre-train a tiny GPT-2" "[ -f $T/pre/model.safetensors ] && grep -q GPT2LMHeadModel $T/pre/config.json"
st_names "$T/pre/model.safetensors" > "$T/pre.names"

# ---- sequence classification
"$BIN" finetune --model "$T/pre" --task classify --data "$T/train.tsv" --eval "$T/dev.tsv" --out "$T/ft" \
  --epochs 5 --batch 16 --lr 3e-3 --seed 1 --threads 2 --quiet > "$T/ft.out" 2> "$T/ft.err"; rc=$?
acc=$(sed -n 's/^eval accuracy \([0-9.]*\).*/\1/p' "$T/ft.out")
check "classify: fine-tune runs and reaches dev accuracy >= 0.8, chance 0.5 (got ${acc:-none})" \
  "[ $rc -eq 0 ] && [ -n '$acc' ] && python3 -c 'import sys; sys.exit(not $acc >= 0.8)'"
check "classify: config.json is GPT2ForSequenceClassification with pad_token_id and the label names" \
  "python3 -c 'import json,sys; c=json.load(open(\"$T/ft/config.json\")); p=c.get(\"pad_token_id\"); sys.exit(not (c[\"architectures\"]==[\"GPT2ForSequenceClassification\"] and c[\"model_type\"]==\"gpt2\" and type(p) is int and 0<=p<c[\"vocab_size\"] and c[\"id2label\"]=={\"0\":\"negative\",\"1\":\"positive\"} and c[\"label2id\"]=={\"negative\":0,\"positive\":1}))'"
st_names "$T/ft/model.safetensors" > "$T/ft.names"
check "classify: model.safetensors = the base model's transformer.* tensors + score.weight (2, 32), no bias, nothing else" \
  "python3 -c 'import json,sys; a=json.load(open(\"$T/pre.names\")); b=json.load(open(\"$T/ft.names\")); s=b.pop(\"score.weight\",None); sys.exit(not (s==[2,32] and b==a and all(k.startswith(\"transformer.\") for k in b)))'"
"$BIN" predict --model "$T/ft" --threads 2 < "$T/dev.txt" > "$T/pred.txt" 2> "$T/pred.err"; rc=$?
check "classify: predict prints one label per input line" \
  "[ $rc -eq 0 ] && [ \$(wc -l < $T/pred.txt) -eq 100 ] && ! grep -qvE '^(positive|negative)\$' $T/pred.txt"
agree=$(paste "$T/pred.txt" "$T/dev.labels" | awk '$1==$2{n++} END{print n+0}')
check "classify: predict agrees with the dev labels ($agree/100)" "[ $agree -ge 80 ]"
printf 'the film was great\n' | "$BIN" predict --model "$T/ft" --probs --threads 2 > "$T/probs.txt" 2>&1
check "classify: predict --probs prints JSON probabilities" \
  "python3 -c 'import json,sys; o=json.loads(open(\"$T/probs.txt\").read()); sys.exit(not (o[\"label\"] in (\"positive\",\"negative\") and abs(sum(o[\"probs\"].values())-1)<1e-3))'"

# ---- token classification
"$BIN" finetune --model "$T/pre" --task tokens --data "$T/ner_train.txt" --eval "$T/ner_dev.txt" --out "$T/ner" \
  --epochs 5 --batch 16 --lr 5e-3 --seed 1 --threads 2 --quiet > "$T/ner.out" 2> "$T/ner.err"; rc=$?
f1=$(sed -n 's/^eval entity f1 \([0-9.]*\).*/\1/p' "$T/ner.out")
check "tokens: fine-tune runs and reaches dev entity F1 >= 0.8 (got ${f1:-none})" \
  "[ $rc -eq 0 ] && [ -n '$f1' ] && python3 -c 'import sys; sys.exit(not $f1 >= 0.8)'"
check "tokens: config.json is GPT2ForTokenClassification with the tags in order of first appearance" \
  "python3 -c 'import json,sys; c=json.load(open(\"$T/ner/config.json\")); t=[l.split()[-1] for l in open(\"$T/ner_train.txt\") if l.strip() and not l.startswith(\"-DOCSTART-\")]; o=list(dict.fromkeys(t)); sys.exit(not (c[\"architectures\"]==[\"GPT2ForTokenClassification\"] and c[\"model_type\"]==\"gpt2\" and len(o)==4 and c[\"id2label\"]=={str(i):n for i,n in enumerate(o)} and c[\"label2id\"]=={n:i for i,n in enumerate(o)}))'"
st_names "$T/ner/model.safetensors" > "$T/ner.names"
check "tokens: model.safetensors = transformer.* + classifier.weight (4, 32) + classifier.bias (4), nothing else" \
  "python3 -c 'import json,sys; a=json.load(open(\"$T/pre.names\")); b=json.load(open(\"$T/ner.names\")); w=b.pop(\"classifier.weight\",None); x=b.pop(\"classifier.bias\",None); sys.exit(not (w==[4,32] and x==[4] and b==a))'"
"$BIN" predict --model "$T/ner" --threads 2 < "$T/ner_in.txt" > "$T/ner_pred.txt" 2> "$T/ner_pred.err"; rc=$?
same=$(paste -d '\n' "$T/ner_pred.txt" "$T/ner_gold.txt" | paste - - | awk -F'\t' '$1==$2{n++} END{print n+0}')
check "tokens: predict tags dev sentences (word/TAG), $same of 10 as gold" \
  "[ $rc -eq 0 ] && [ \$(wc -l < $T/ner_pred.txt) -eq 10 ] && [ $same -ge 8 ]"

# ---- question answering reads [CLS] question [SEP] context [SEP]: an encoder's input
printf '{"data": []}\n' > "$T/qa.json"
"$BIN" finetune --model "$T/pre" --task qa --data "$T/qa.json" --out "$T/qa" --steps 1 --lr 1e-3 --threads 2 --quiet \
  > /dev/null 2> "$T/e_qa"; rc=$?
check "qa on a GPT-2 model: one error line saying it needs an encoder" "one_error $T/e_qa 'needs an encoder' $rc"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
