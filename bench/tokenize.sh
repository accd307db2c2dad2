#!/usr/bin/env bash
# tokenize.sh — GPT-2 tokenizer encode throughput: lmkit (1 thread, all threads)
# next to js-tiktoken under Node, on the same corpus, with an id-for-id check;
# then `lmkit data prepare` throughput. Usage: bench/tokenize.sh [BUILD_DIR] [CORPUS]
# Corpus: /work/shared/data/tinyshakespeare/input.txt if present, else the
# fortunes files (/usr/share/games/fortunes) concatenated.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
CORPUS=${2:-}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ -z "$CORPUS" ]; then
  if [ -f /work/shared/data/tinyshakespeare/input.txt ]; then CORPUS=/work/shared/data/tinyshakespeare/input.txt
  else
    find /usr/share/games/fortunes -type f ! -name '*.dat' ! -name '*.u8' -print0 | sort -z | xargs -0 cat > "$TMP/fortunes.txt"
    CORPUS=$TMP/fortunes.txt
  fi
fi
# a corpus of a few MB: repeat small inputs up to >= 4 MB
cp "$CORPUS" "$TMP/corpus.txt"
while [ "$(stat -c %s "$TMP/corpus.txt")" -lt 4000000 ]; do cat "$CORPUS" >> "$TMP/corpus.txt"; done
echo "corpus: $CORPUS, $(stat -c %s "$TMP/corpus.txt") bytes (repeated to >= 4 MB); $(nproc) cores"
[ -x "$BUILD/bench_tokenize" ] || cmake --build "$BUILD" --target bench_tokenize lmkit_cli >/dev/null
"$BUILD/bench_tokenize" "$TMP/corpus.txt" gpt2 "$TMP/lmkit.ids"

TIKTOKEN=$SRC/third_party/npm/node_modules/js-tiktoken/dist/index.cjs
if command -v node >/dev/null && [ -f "$TIKTOKEN" ]; then
  node -e '
    const {getEncoding} = require(process.argv[1]); const fs = require("fs");
    const enc = getEncoding("gpt2"); const s = fs.readFileSync(process.argv[2], "utf8");
    const mb = Buffer.byteLength(s) / 1e6; let best = 1e30, ids;
    for (let r = 0; r < 3; r++) { const t0 = process.hrtime.bigint(); ids = enc.encode(s);
      const dt = Number(process.hrtime.bigint() - t0) / 1e9; if (dt < best) best = dt; }
    console.log(`tiktoken (js-tiktoken ${require(process.argv[1].replace(/dist.*/, "package.json")).version}, node ${process.version}) encode 1 thread: ${(mb / best).toFixed(2).padStart(7)} MB/s`);
    fs.writeFileSync(process.argv[3], ids.join(" ") + "\n");' "$TIKTOKEN" "$TMP/corpus.txt" "$TMP/tiktoken.ids"
  if cmp -s "$TMP/lmkit.ids" "$TMP/tiktoken.ids"; then echo "ids: identical to tiktoken ($(wc -w < "$TMP/lmkit.ids") tokens)"
  else echo "ids: DIFFERENT from tiktoken"; exit 1; fi
else
  echo "tiktoken: node or js-tiktoken missing (run scripts/install-deps.sh)"
fi

# data prepare: the same corpus split into 8 files, all threads vs 1 thread
split -n l/8 "$TMP/corpus.txt" "$TMP/part."
for th in 1 $(nproc); do
  "$BUILD/lmkit" data prepare --tokenizer gpt2 --data "$TMP"/part.* --out "$TMP/shards$th" --threads "$th" 2>&1 | tail -1 |
    sed "s/^/data prepare --threads $th: /"
done
