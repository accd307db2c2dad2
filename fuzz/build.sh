#!/usr/bin/env bash
# build.sh — builds the fuzz targets in fuzz/ into build-fuzz/.
# With clang + libFuzzer: fuzz_tokenizer (ASan + UBSan + libFuzzer); run e.g.
#   build-fuzz/fuzz_tokenizer build-fuzz/corpus fuzz/corpus -max_total_time=60   (new inputs go to the first dir)
# Without them: a gcc-built replay driver, build-fuzz/fuzz_tokenizer FILE...
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$SRC/build-fuzz}
mkdir -p "$OUT"
TOK="tokenizer bpe wordpiece unigram precompiled pipeline pattern normalizers pretokenizers decoders"
LIB_SRCS="$(for f in $TOK; do printf '%s ' "$SRC/src/tokenizer/$f.c"; done)$SRC/src/base/error.c $SRC/src/base/io.c $SRC/src/base/mem.c"
FLAGS="-g -O1 -D_GNU_SOURCE -DLM_SOURCE_DIR=\"$SRC\" -I$SRC/include -I$SRC/src $(pkg-config --cflags libpcre2-8 libcjson libutf8proc)"
LIBS="$(pkg-config --libs libpcre2-8 libcjson libutf8proc) -lm"
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' > "$OUT/probe.c"
if command -v clang >/dev/null && clang -fsanitize=fuzzer "$OUT/probe.c" -o "$OUT/probe" 2>/dev/null; then
  clang $FLAGS -DLM_LIBFUZZER -fsanitize=fuzzer,address,undefined $LIB_SRCS "$SRC/fuzz/fuzz_tokenizer.c" $LIBS -o "$OUT/fuzz_tokenizer"
  echo "built $OUT/fuzz_tokenizer (libFuzzer); run: mkdir -p $OUT/corpus; $OUT/fuzz_tokenizer $OUT/corpus $SRC/fuzz/corpus -max_total_time=60"
else
  gcc $FLAGS -fsanitize=address,undefined $LIB_SRCS "$SRC/fuzz/fuzz_tokenizer.c" $LIBS -o "$OUT/fuzz_tokenizer"
  echo "built $OUT/fuzz_tokenizer (plain replay driver: clang/libFuzzer not found); run: $OUT/fuzz_tokenizer FILE..."
fi
rm -f "$OUT/probe.c" "$OUT/probe"
