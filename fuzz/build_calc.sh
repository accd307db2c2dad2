#!/usr/bin/env bash
# build_calc.sh — builds the libFuzzer targets for the calculator tool (fuzz_calc) and for the
# arithmetic finder of `lmkit toolformer` (fuzz_toolformer) with clang's
# -fsanitize=fuzzer,address,undefined (float-divide-by-zero and float-cast-overflow included),
# seeds its corpus with expressions and writes a dictionary of the grammar's tokens.
#
#   fuzz/build_calc.sh            # -> build-fuzz/
#   build-fuzz/fuzz_calc -dict=build-fuzz/calc.dict build-fuzz/corpus_calc -max_total_time=60
#   build-fuzz/fuzz_toolformer -dict=build-fuzz/calc.dict build-fuzz/corpus_calc -max_total_time=60
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-fuzz}
CC=${CC:-clang}
mkdir -p "$OUT/corpus_calc"
FLAGS="-g -O1 -fsanitize=fuzzer,address,undefined,float-divide-by-zero,float-cast-overflow -fno-sanitize-recover=all
  -fno-omit-frame-pointer -D_GNU_SOURCE -Iinclude -Isrc"
# shellcheck disable=SC2086
$CC $FLAGS fuzz/fuzz_calc.c src/infer/calc.c -lm -o "$OUT/fuzz_calc"
# shellcheck disable=SC2086
$CC $FLAGS fuzz/fuzz_toolformer.c src/train/toolformer_find.c src/infer/calc.c src/base/mem.c src/base/error.c -lm \
  -o "$OUT/fuzz_toolformer"
i=0
for e in "77*33" "2^3^2" "-(1.5e3 - 2**-1) / 7" "((1+2)*(3-4))/5" "6 × 7 ÷ 2" "1/0" "10^16" "(-8)^0.5" "2x" "so 12 + 7 = 19 and (3-4)*2 = -2." "v1.2+3, 4+4x"; do
  printf '%s' "$e" > "$OUT/corpus_calc/seed$i"; i=$((i + 1))
done
printf '%s\n' '"+"' '"-"' '"*"' '"/"' '"^"' '"**"' '"("' '")"' '"."' '"e"' '"e-"' '"\xC3\x97"' '"\xC3\xB7"' '"\xE2\x88\x92"' '"<|calc|>"' \
  '"<|/calc|>"' '"9999999"' > "$OUT/calc.dict"
echo "built $OUT/fuzz_calc and $OUT/fuzz_toolformer; run: $OUT/fuzz_calc -dict=$OUT/calc.dict $OUT/corpus_calc -max_total_time=60"
