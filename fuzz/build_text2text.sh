#!/usr/bin/env bash
# build_text2text.sh — builds the libFuzzer target for the text-to-text reader (fuzz_text2text:
# TSV input<TAB>target lines and JSONL {"input","target"} records, exact match, ROUGE-L) with
# clang's -fsanitize=fuzzer,address,undefined and seeds its corpus with valid and broken files.
#
#   fuzz/build_text2text.sh            # -> build-fuzz/
#   build-fuzz/fuzz_text2text build-fuzz/corpus_text2text -max_total_time=60
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-fuzz}
CC=${CC:-clang}
mkdir -p "$OUT/corpus_text2text"
FLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -D_GNU_SOURCE
  -Iinclude -Isrc $(pkg-config --cflags libcjson)"
# shellcheck disable=SC2086
$CC $FLAGS fuzz/fuzz_text2text.c src/train/text2text_data.c src/eval/rouge.c src/base/lines.c src/base/error.c \
  src/base/io.c src/base/mem.c $(pkg-config --libs libcjson) -lm -o "$OUT/fuzz_text2text"
printf 'input\ttarget\r\nsst2 sentence: good fun\tpositive\n\ncopy: a b\ta b\n' > "$OUT/corpus_text2text/tsv"
printf 'a\tb\nno tab\n' > "$OUT/corpus_text2text/tsv_bad"
printf '{"input": "x \\u00e9", "target": "y"}\n{"target": "t", "input": "i"}\n' > "$OUT/corpus_text2text/jsonl"
printf '{"input": "x", "target": "y", "id": 1}\n' > "$OUT/corpus_text2text/jsonl_bad"
echo "built $OUT/fuzz_text2text; run: $OUT/fuzz_text2text $OUT/corpus_text2text -max_total_time=60"
