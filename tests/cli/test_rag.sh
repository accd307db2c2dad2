#!/usr/bin/env bash
# End-to-end retrieval: `lmkit index` and `lmkit ask` on a corpus and questions this test generates.
#   - recall: 300 facts ("The capital of Zorbia is Quellport.") among filler sentences in six
#     files; for 100 questions ("What is the capital of Zorbia?") the passage holding the fact is
#     among the 5 that `ask --retrieve-only` lists (BM25) for >= 90% of them;
#   - dense: a tiny BERT (pre-trained here for a few steps) gives every passage a vector; the
#     vectors equal `lmkit embed --pool mean` of the passage, L2-normalised; dense search with a
#     passage's own text finds that passage first; hybrid's order equals reciprocal-rank fusion
#     (k = 60) of the BM25 and dense rankings computed here in Python;
#   - ask: with a tiny chat model, the prompt holds the passage with the fact as numbered source
#     [1] (file and lines) and the question, the answer is the model's greedy answer to exactly
#     that prompt (generate --messages), and the sources list names the file and the byte range
#     holding the fact (the tiny model's answer text itself is not judged);
#   - bad input: one clear error line each.
source "$(dirname "$0")/lib.sh"
REF="${LMKIT_BIN:-build}/ref_rag"
err() {
  local name="$1" want="$2"; shift 2
  local out; out=$("$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -ne 0 ] && [ "$(echo "$out" | grep -c '^lmkit: error: ')" = 1 ] && echo "$out" | grep -qF -- "$want"; then ok "error: $name"; else bad "error: $name (rc=$rc: $out)"; fi
}

python3 - "$T" <<'PY'
import json, os, random, sys
d = sys.argv[1]
r = random.Random(3)
syl = ["zor", "bia", "quel", "port", "ven", "dra", "mil", "tok", "sar", "lun", "gri", "fel", "oth", "ram", "kes", "ula"]
names = set()
while len(names) < 60:
    names.add("".join(r.choice(syl) for _ in range(3)).capitalize())
names = sorted(names)
attrs = ["capital", "founder", "export", "river", "language"]
filler = ("the old road winds past fields where farmers grow barley and oats while traders carry salt "
          "along the coast in small boats under grey skies each spring").split()
facts, paras = [], []
for n in names:
    for a in attrs:
        v = "".join(r.choice(syl) for _ in range(2)).capitalize()
        facts.append((n, a, v))
r.shuffle(facts)
os.makedirs(f"{d}/docs", exist_ok=True)
where = []
for k in range(6):
    text = ""
    for (n, a, v) in facts[k * 50:(k + 1) * 50]:
        pre = " ".join(r.choice(filler) for _ in range(r.randint(4, 9))).capitalize() + "."
        post = " ".join(r.choice(filler) for _ in range(r.randint(4, 9))).capitalize() + f", said a visitor from {r.choice(names)}."
        fact = f"The {a} of {n} is {v}."
        start = len((text + pre + " ").encode())
        where.append({"file": f"{d}/docs/part{k}.txt", "start": start, "end": start + len(fact.encode()),
                      "q": f"What is the {a} of {n}?", "fact": fact})
        text += pre + " " + fact + " " + post + "\n\n"
    open(f"{d}/docs/part{k}.txt", "w").write(text)
r.shuffle(where)
json.dump(where[:100], open(f"{d}/questions.json", "w"))
# the corpus the tiny models learn their tokenizers and weights from
open(f"{d}/corpus.txt", "w").write("".join(open(f"{d}/docs/part{k}.txt").read() for k in range(6)))
PY

# ---- recall@5 with BM25
"$BIN" index --docs "$T/docs" --out "$T/bm25.idx" --chunk-size 40 --overlap 10 > "$T/index.out" 2> "$T/index.err"
check "index: builds and reports passages" "grep -q 'indexed 6 documents: [0-9]* passages, [0-9]* terms -> ' $T/index.out"
python3 - "$T" "$BIN" <<'PY' > "$T/recall.out"
import json, re, subprocess, sys
d, lmkit = sys.argv[1], sys.argv[2]
qs = json.load(open(f"{d}/questions.json"))
hit = 0
for q in qs:
    out = subprocess.run([lmkit, "ask", "--index", f"{d}/bm25.idx", "--retrieve-only", "--mode", "bm25", "--k", "5", q["q"]],
                         capture_output=True, text=True, check=True).stdout
    srcs = re.findall(r"^\[(\d+)\] (.*), lines? [\d-]+ \(bytes (\d+)-(\d+)\)$", out, re.M)
    hit += any(f == q["file"] and int(s) <= q["start"] and q["end"] <= int(e) for _, f, s, e in srcs[:5])
print(hit / len(qs))
PY
recall=$(cat "$T/recall.out")
check "bm25 recall@5 on 100 generated questions >= 0.9 ($recall)" "python3 -c 'import sys; sys.exit(not float(\"$recall\") >= 0.9)'"

# ---- dense vectors from a tiny BERT
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --special "[PAD]" --special "[CLS]" --special "[SEP]" \
  --special "[MASK]" --special "[UNK]" --out "$T/btok" > /dev/null 2>&1
"$BIN" train --arch bert --objective mlm --tokenizer "$T/btok" --data "$T/corpus.txt" --layers 1 --heads 2 --dim 32 \
  --context 128 --batch 8 --steps 20 --seed 1 --threads 2 --quiet --out "$T/bert" > /dev/null 2>&1
# passages of one paragraph each (a paragraph has 18-28 words, two more than 32): single lines for `embed`
"$BIN" index --docs "$T/docs/part0.txt" "$T/docs/part1.txt" --out "$T/dense.idx" --chunk-size 32 --overlap 0 \
  --embed-model "$T/bert" --threads 2 > "$T/dindex.out" 2> "$T/dindex.err"
check "index --embed-model: vectors of 32 values" "grep -q 'vectors of 32 values from ' $T/dindex.out"
"$REF" chunks "$T/dense.idx" > "$T/dchunks.jsonl"
"$REF" vectors "$T/dense.idx" > "$T/dvecs.jsonl"
python3 -c "
import json
for l in open('$T/dchunks.jsonl'): print(json.loads(l)['text'])" > "$T/dtexts.txt"
"$BIN" embed --model "$T/bert" --pool mean --threads 2 < "$T/dtexts.txt" > "$T/demb.jsonl" 2> /dev/null
python3 - "$T" <<'PY' > "$T/dense_check.out"
import json, math, sys
d = sys.argv[1]
lines = open(f"{d}/dvecs.jsonl").read().splitlines()
vec = [json.loads(l) for l in lines[1:]]
emb = [json.loads(l)["embedding"] for l in open(f"{d}/demb.jsonl")]
texts = [json.loads(l)["text"] for l in open(f"{d}/dchunks.jsonl")]
worst = 0.0
for v, e in zip(vec, emb):
    n = math.sqrt(sum(x * x for x in e))
    worst = max(worst, max(abs(a - b / n) for a, b in zip(v, e)))
ok = len(vec) == len(emb) == len(texts) > 10 and all("\n" not in t for t in texts)
print("ok" if ok and worst < 1e-5 else f"bad {len(vec)} {len(emb)} {worst}")
PY
check "index vectors = embed --pool mean, normalised ($(cat $T/dense_check.out))" "grep -qx ok $T/dense_check.out"
dense_ok=1
for i in 0 5 11; do
  text=$(sed -n "$((i + 1))p" "$T/dtexts.txt")
  first=$("$BIN" ask --index "$T/dense.idx" --mode dense --retrieve-only --k 1 "$text" 2>/dev/null | sed -n 2p)
  want=$(python3 -c "import json; c=[json.loads(l) for l in open('$T/dchunks.jsonl')][$i]; print('%s, ' % c['file'] + ('line %d' % c['lines'][0] if c['lines'][0]==c['lines'][1] else 'lines %d-%d' % tuple(c['lines'])) + ' (bytes %d-%d)' % tuple(c['bytes']))")
  [ "$first" = "[1] $want" ] || dense_ok=0
done
check "dense: a passage's own text finds it first" "[ $dense_ok = 1 ]"
# hybrid = RRF of the BM25 ranking (ref_rag bm25) and the dense ranking (cosine with the question's
# embedding from `lmkit embed`), computed here
python3 -c "
import json
for q in json.load(open('$T/questions.json'))[:20]: print(q['q'])" > "$T/hq.txt"
"$REF" bm25 "$T/dense.idx" < "$T/hq.txt" > "$T/hbm25.jsonl"
"$BIN" embed --model "$T/bert" --pool mean --threads 2 < "$T/hq.txt" > "$T/hemb.jsonl" 2> /dev/null
for q in $(seq 1 20); do
  "$BIN" ask --index "$T/dense.idx" --mode hybrid --retrieve-only --k 5 "$(sed -n ${q}p $T/hq.txt)" | grep '^\[' > "$T/hyb.$q"
done
python3 - "$T" <<'PY' > "$T/hybrid_check.out"
import json, math, sys
d = sys.argv[1]
vec = [json.loads(l) for l in open(f"{d}/dvecs.jsonl").read().splitlines()[1:]]
chunks = [json.loads(l) for l in open(f"{d}/dchunks.jsonl")]
bad = 0
for q, (bl, el) in enumerate(zip(open(f"{d}/hbm25.jsonl"), open(f"{d}/hemb.jsonl"))):
    s = json.loads(bl)
    e = json.loads(el)["embedding"]
    n = math.sqrt(sum(x * x for x in e))
    cos = [sum(a * b / n for a, b in zip(v, e)) for v in vec]
    rb = sorted((i for i in range(len(s)) if s[i] > 0), key=lambda i: (-s[i], i))
    rd = sorted(range(len(cos)), key=lambda i: (-cos[i], i))
    pb = {c: k + 1 for k, c in enumerate(rb)}
    pd = {c: k + 1 for k, c in enumerate(rd)}
    f = [(1 / (60 + pb[i]) if i in pb else 0) + 1 / (60 + pd[i]) for i in range(len(vec))]
    want = sorted(range(len(f)), key=lambda i: (-f[i], i))[:5]
    got = [l.split("(bytes ")[1].rstrip(")\n") for l in open(f"{d}/hyb.{q + 1}")]
    bad += got != ["%d-%d" % tuple(chunks[i]["bytes"]) for i in want]
print("ok" if bad == 0 else f"{bad} of 20 differ")
PY
check "hybrid order = reciprocal-rank fusion of bm25 and dense ($(cat $T/hybrid_check.out))" "grep -qx ok $T/hybrid_check.out"
err "dense retrieval on a BM25-only index" "needs an index with vectors" "$BIN" ask --index "$T/bm25.idx" --mode dense --retrieve-only "x"
mkdir -p "$T/empty_model"
err "a missing embedding model" "the embedding model of the index" "$BIN" ask --index "$T/dense.idx" --mode hybrid --embed-model "$T/empty_model" --retrieve-only "x"

# ---- ask with a tiny chat model (its tokenizer has the ChatML tokens 'tokenizer train' adds)
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 400 --out "$T/gtok" > /dev/null 2>&1
"$BIN" train --tokenizer "$T/gtok" --data "$T/corpus.txt" --layers 1 --heads 2 --dim 32 --context 512 --batch 2 \
  --steps 5 --seed 1 --threads 2 --quiet --out "$T/gpt" > /dev/null 2>&1
q=$(python3 -c "import json; print(json.load(open('$T/questions.json'))[0]['q'])")
"$BIN" ask --model "$T/gpt" --index "$T/bm25.idx" --k 3 --temperature 0 --max-tokens 12 --show-prompt --threads 2 "$q" \
  > "$T/ask.out" 2> "$T/ask.err"; rc=$?
python3 - "$T" "$q" <<'PY' > "$T/ask_check.out"
import json, re, sys
d, q = sys.argv[1], sys.argv[2]
want = json.load(open(f"{d}/questions.json"))[0]
prompt, out = open(f"{d}/ask.err").read(), open(f"{d}/ask.out").read()
problems = []
m = re.search(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", prompt, re.S)
if not m: problems.append("no user turn in the prompt")
user = m.group(1) if m else ""
src1 = re.search(r"^\[1\] (.*), lines? [\d-]+\n(.*?)\n\n\[2\]", user, re.S | re.M)
if not src1 or src1.group(1) != want["file"] or want["fact"] not in src1.group(2):
    problems.append("source [1] is not the passage with the fact")
if not user.endswith("Question: " + q) or "Cite each source you use as [n]" not in user:
    problems.append("the question or the citation instruction is missing")
ans, _, srcs = out.partition("\n\nSources:\n")
s1 = re.match(r"\[1\] (.*), lines? [\d-]+ \(bytes (\d+)-(\d+)\)$", srcs.splitlines()[0] if srcs else "")
if not s1 or s1.group(1) != want["file"] or not (int(s1.group(2)) <= want["start"] and want["end"] <= int(s1.group(3))):
    problems.append("the printed source [1] does not name the fact's file and bytes")
if len(re.findall(r"^\[\d\] ", srcs, re.M)) != 3: problems.append("not 3 sources")
json.dump([{"role": "user", "content": user}], open(f"{d}/ask_msgs.json", "w"))
open(f"{d}/ask_answer.txt", "w").write(ans)
print("ok" if not problems else "; ".join(problems))
PY
check "ask: exit 0" "[ $rc = 0 ]"
check "ask: source [1] in the prompt and in the printed list is the passage with the fact ($(cat $T/ask_check.out))" "grep -qx ok $T/ask_check.out"
"$BIN" generate --model "$T/gpt" --messages "$T/ask_msgs.json" --temperature 0 --max-tokens 12 --threads 2 > "$T/gen.out" 2>/dev/null
check "ask: the answer is the model's greedy answer to that prompt" "[ \"\$(cat $T/gen.out)\" = \"\$(cat $T/ask_answer.txt)\" ]"
"$BIN" ask --model "$T/gpt" --index "$T/bm25.idx" --k 2 --temperature 0 --max-tokens 4 --threads 2 "zzzz qqqq" > "$T/none.out" 2>&1
check "ask: no matching passage is said" "grep -q '(no passage matches the question)' $T/none.out"

# ---- bad input
err "missing index" "no such index" "$BIN" ask --index "$T/nope.idx" --retrieve-only "x"
python3 -c "
d = open('$T/bm25.idx', 'rb').read()
open('$T/v2.idx', 'wb').write(d[:8] + bytes([2]) + d[9:])
open('$T/cut.idx', 'wb').write(d[:len(d) // 2])
open('$T/junk.idx', 'wb').write(b'not an index at all')
open('$T/bin.txt', 'wb').write(b'text\x00more')"
err "an unknown index version" "index format version 2" "$BIN" ask --index "$T/v2.idx" --retrieve-only "x"
err "a truncated index" "not a valid lmkit index" "$BIN" ask --index "$T/cut.idx" --retrieve-only "x"
err "not an index" "no LMRAGIDX magic" "$BIN" ask --index "$T/junk.idx" --retrieve-only "x"
err "overlap >= chunk size" "--overlap 40 must be smaller than --chunk-size 40" "$BIN" index --docs "$T/docs" --out "$T/x.idx" --chunk-size 40 --overlap 40
err "a binary document" "bin.txt: a NUL byte at offset 4" "$BIN" index --docs "$T/bin.txt" --out "$T/x.idx"
mkdir -p "$T/nodocs"; : > "$T/nodocs/empty.txt"
err "documents without words" "hold no words" "$BIN" index --docs "$T/nodocs" --out "$T/x.idx"
err "no --docs" "--docs" "$BIN" index --out "$T/x.idx"
err "a missing document" "nope.txt: no such file" "$BIN" index --docs "$T/nope.txt" --out "$T/x.idx"
err "a missing embedding model (index)" "no such model directory" "$BIN" index --docs "$T/docs" --out "$T/x.idx" --embed-model "$T/nope"
check "a failed index leaves no file" "[ ! -e $T/x.idx ]"
err "ask without a question" "a question is required" "$BIN" ask --index "$T/bm25.idx" --retrieve-only
err "ask without a model" "--model DIR is required" "$BIN" ask --index "$T/bm25.idx" "x"
err "an unknown mode" "unknown retrieval mode 'sparse'" "$BIN" ask --index "$T/bm25.idx" --mode sparse --retrieve-only "x"
err "a prompt longer than the model's context" "more than the model's context of 512" "$BIN" ask --model "$T/gpt" --index "$T/bm25.idx" --k 50 "What is the capital of it?"
err "ask with an encoder" "decoder" "$BIN" ask --model "$T/bert" --index "$T/bm25.idx" "x"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
