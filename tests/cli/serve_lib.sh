# serve_lib.sh — what the lmkit serve tests share (sourced by tests/cli/test_serve*.sh):
#   BIN, SRC, T (a temporary directory, kept with KEEP_T=DIR), ok/bad/check and their counts,
#   serve_model DIR: a tiny GPT-2 (byte-level BPE with the ChatML tokens, 30 steps on a toy
#   corpus, context 512, about a second), serve_index DIR (below), start_server BIN LOG ARGS...: lmkit serve on a free port of
#   127.0.0.1 (sets PORT and SPID; killed at exit), serve_done NAME: the summary and exit status.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SRC="${LMKIT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
PIDS=()
serve_cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; [ -n "${KEEP_T:-}" ] || rm -rf "$T"; }
trap serve_cleanup EXIT   # (replaces lib.sh's trap: the servers go first)

serve_model() {
  local d=$1
  mkdir -p "$d"
  python3 - "$d" <<'PY'
import random, sys
r = random.Random(1)
with open(sys.argv[1] + "/corpus.txt", "w") as f:
    for _ in range(3000):
        f.write("the quick brown fox %d jumps over the lazy dog. hello world, how are you?\n" % r.randint(0, 999))
PY
  "$BIN" tokenizer train --data "$d/corpus.txt" --vocab-size 300 --out "$d/tok" \
    --special "<|endoftext|>" --special "<|im_start|>" --special "<|im_end|>" > "$d/tok.log" 2>&1
  "$BIN" train --data "$d/corpus.txt" --tokenizer "$d/tok" --out "$d/model" --layers 2 --heads 4 --dim 64 --context 512 \
    --steps 30 --lr 3e-3 --batch 8 --threads 1 --quiet > "$d/train.log" 2>&1
}

# serve_index DIR: DIR/docs.idx, a BM25 index (lmkit index) of two documents; the capital of
# Zorbania is in DIR/docs/zorbania.txt
serve_index() {
  mkdir -p "$1/docs"
  printf 'Zorbania is a small country.\n\nThe capital of Zorbania is Quxville, on the river Lem.\n' > "$1/docs/zorbania.txt"
  printf 'Bananas are yellow when ripe.\n\nApples can be red or green.\n' > "$1/docs/fruit.txt"
  "$BIN" index --docs "$1/docs" --out "$1/docs.idx" > "$1/index.log" 2>&1
}

start_server() {
  local bin=$1 log=$2; shift 2
  "$bin" serve --port 0 --threads 1 "$@" > "$log" 2>&1 &
  SPID=$!; PIDS+=("$SPID"); PORT=""
  for _ in $(seq 300); do
    PORT=$(grep -o 'listening on http://[0-9.]*:[0-9]*' "$log" | sed 's/.*://')
    [ -n "$PORT" ] && return 0
    kill -0 "$SPID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

serve_done() {
  echo "$1: $pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}
