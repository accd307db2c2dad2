#!/usr/bin/env bash
# build_study.sh — builds the libFuzzer target for the study stage's readers (fuzz_study: a
# sweep's runs.jsonl and eval task records: multiple-choice, classify, exact-match) with clang's
# -fsanitize=fuzzer,address,undefined and seeds its corpus with valid and broken lines.
#
#   fuzz/build_study.sh            # -> build-fuzz/
#   build-fuzz/fuzz_study -dict=build-fuzz/study.dict build-fuzz/corpus_study -max_total_time=60
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-fuzz}
CC=${CC:-clang}
mkdir -p "$OUT/corpus_study"
FLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -D_GNU_SOURCE
  -Iinclude -Isrc $(pkg-config --cflags libcjson libpcre2-8 libutf8proc)"
# shellcheck disable=SC2086
$CC $FLAGS fuzz/fuzz_study.c src/scaling/runs.c src/eval/mc_data.c src/eval/pcls.c src/eval/em_data.c src/base/lines.c src/base/error.c src/base/io.c src/base/mem.c \
  $(pkg-config --libs libcjson libpcre2-8 libutf8proc) -lm -o "$OUT/fuzz_study"
printf '\000{"run":"C1e+09-2x32","params":25472,"tokens":6656,"flops":1e9,"val_loss":4.28,"steps":52}\n\n{"params":1,"tokens":2,"val_loss":3}\n' > "$OUT/corpus_study/runs"
printf '\000{"params":1,"tokens":2,"val-loss":3}\n' > "$OUT/corpus_study/runs_bad"
printf '\001{"ctx":"A man","endings":["a","b","c"],"label":"2","ind":4}\n{"ctx":"","endings":["x","y"],"label":0}\n' > "$OUT/corpus_study/mc"
printf '\001{"ctx":"A","endings":["a"],"label":0}\n' > "$OUT/corpus_study/mc_bad"
printf '\002sentence\tlabel\nfine day\tpos\n' > "$OUT/corpus_study/pcls_tsv"
printf '\002{"text":"a b","label":1}\n{"sentence":"c","label":"neg","idx":2}\n' > "$OUT/corpus_study/pcls_json"
printf '\003{"input":"Q","target":["The cat!","an  apple "]}\n{"prompt":"","answer":"x"}\n' > "$OUT/corpus_study/em"
printf '%s\n' '"\"params\""' '"\"tokens\""' '"\"flops\""' '"\"val_loss\""' '"\"run\""' '"\"steps\""' '"\"ctx\""' \
  '"\"endings\""' '"\"label\""' '"1e308"' '"-0"' '"\"3\""' > "$OUT/study.dict"
echo "built $OUT/fuzz_study; run: $OUT/fuzz_study -dict=$OUT/study.dict $OUT/corpus_study -max_total_time=60"
