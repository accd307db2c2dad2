#!/usr/bin/env bash
# `make bench`: every benchmark, each printing lmkit's figure beside its peer's.
# Long (tens of minutes): benchmarks are never part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== tokenizer (vs tiktoken)";            bash bench/tokenize.sh
echo "== Unigram tokenizer (vs sentencepiece, HF tokenizers)"; bash bench/tokenize_unigram.sh
echo "== training step (vs PyTorch CPU)";     bash bench/train_gpt2.sh
echo "== generation (vs llama.cpp figures)";  bash bench/generate_gpt2.sh
if [ -x build/lmkit ] && build/lmkit finetune --help >/dev/null 2>&1; then
  echo "== BERT on SST-2 (vs bag-of-words)"; bash bench/bert_sst2.sh
fi
