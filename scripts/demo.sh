#!/usr/bin/env bash
# The main job, end to end, on the default corpus (Debian's fortunes, ~2.5 MB of
# English): train a BPE tokenizer, pre-train a small GPT for about 2-3 minutes on
# 2 cores with a live progress bar, report train/val loss, save the model
# directory, and generate a few samples. `make demo` builds and runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/lmkit
OUT=${LMKIT_DEMO_DIR:-runs/demo}
STEPS=${LMKIT_DEMO_STEPS:-750}
mkdir -p "$OUT"

# 1. corpus: every fortune file (skip the .dat indexes and the .u8 links), records separated by blank lines
CORPUS="$OUT/fortunes.txt"
if [ ! -s "$CORPUS" ]; then
  find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' -print0 | sort -z |
    xargs -0 cat | sed 's/^%$//' > "$CORPUS"
fi
echo "corpus: $CORPUS ($(wc -c < "$CORPUS") bytes)"

# the benchmarks' note applies here too: OPENBLAS_CORETYPE=Haswell halves sgemm on newer CPUs
unset OPENBLAS_CORETYPE

# 2. tokenizer: byte-level BPE learned on the corpus
"$BIN" tokenizer train --data "$CORPUS" --vocab-size 2048 --out "$OUT/tokenizer"

# 3. pre-train a small GPT-2 (4 layers, 4 heads, width 256, context 128)
"$BIN" train --tokenizer "$OUT/tokenizer" --data "$CORPUS" --out "$OUT/model" \
  --layers 4 --heads 4 --dim 256 --context 128 --batch 16 --steps "$STEPS" \
  --lr 1e-3 --warmup 50 --eval-every 100 --eval-batches 10 --seed 1337

# 4. what it learned
"$BIN" info "$OUT/model"
for prompt in "The meaning of life is" "Q: Why did the programmer" "A computer"; do
  echo "---"
  "$BIN" generate --model "$OUT/model" --prompt "$prompt" --max-tokens 60 --temperature 0.8 --top-k 40 --seed 7
done
echo "---"
echo "model saved in $OUT/model (config.json, model.safetensors, tokenizer.json: loads in Hugging Face transformers)"
