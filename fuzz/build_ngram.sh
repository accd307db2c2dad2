#!/usr/bin/env bash
# build_ngram.sh — builds the libFuzzer target of the n-gram model's file (fuzz_ngram) with clang's
# -fsanitize=fuzzer,address,undefined and writes a seed corpus of small valid files (orders 1..5,
# 2- and 4-byte ids) and a few broken ones.
#
#   fuzz/build_ngram.sh             # -> build-fuzz/
#   build-fuzz/fuzz_ngram build-fuzz/corpus_ngram -max_total_time=60
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-fuzz}
CC=${CC:-clang}
mkdir -p "$OUT/corpus_ngram"
FLAGS="-g -O1 -fsanitize=fuzzer,address,undefined,float-divide-by-zero -fno-sanitize-recover=all -fno-omit-frame-pointer
  -D_GNU_SOURCE -Iinclude -Isrc"
# shellcheck disable=SC2086
$CC $FLAGS fuzz/fuzz_ngram.c src/model/classic/ngram.c src/base/error.c src/base/mem.c -lm -o "$OUT/fuzz_ngram"
/usr/bin/python3 - "$OUT/corpus_ngram" <<'PY'
import random, struct, sys
random.seed(3)
out = sys.argv[1]
def ngram(order, vocab, ids, width):
    return b"LMNGRAM1" + struct.pack("<IIQQ", order, width, vocab, len(ids)) + b"".join(
        struct.pack("<H" if width == 2 else "<I", i) for i in ids)
k = 0
for order in range(1, 6):
    for V in (3, 17, 257, 70000):
        width = 2 if V <= 65536 else 4
        ids = [random.randrange(V) for _ in range(random.randrange(order, 200))]
        open(f"{out}/seed{k}", "wb").write(ngram(order, V, ids, width)); k += 1
open(f"{out}/short", "wb").write(b"LMNGRAM1\x03\x00")
open(f"{out}/badid", "wb").write(ngram(2, 5, [1, 2, 9], 2))
open(f"{out}/badwidth", "wb").write(ngram(2, 5, [1, 2, 3], 4))
PY
echo "built $OUT/fuzz_ngram; run: $OUT/fuzz_ngram $OUT/corpus_ngram -max_total_time=60"
