# corpus.sh — sourced by the tokenizer benchmarks (tokenize.sh, tokenize_unigram.sh).
# bench_corpus TMP [CORPUS]: writes TMP/corpus.txt, CORPUS repeated to >= 4 MB, and sets
# CORPUS to the file used: by default /work/shared/data/tinyshakespeare/input.txt if
# present, else the fortunes files (/usr/share/games/fortunes) concatenated.
bench_corpus() {
  local tmp=$1
  CORPUS=${2:-}
  if [ -z "$CORPUS" ]; then
    if [ -f /work/shared/data/tinyshakespeare/input.txt ]; then CORPUS=/work/shared/data/tinyshakespeare/input.txt
    else
      find /usr/share/games/fortunes -type f ! -name '*.dat' ! -name '*.u8' -print0 | sort -z | xargs -0 cat > "$tmp/fortunes.txt"
      CORPUS=$tmp/fortunes.txt
    fi
  fi
  cp "$CORPUS" "$tmp/corpus.txt"
  while [ "$(stat -c %s "$tmp/corpus.txt")" -lt 4000000 ]; do cat "$CORPUS" >> "$tmp/corpus.txt"; done
}
