#!/usr/bin/env bash
# lmkit serve --threads N decodes on N threads whatever OMP_NUM_THREADS says. OpenMP's thread count
# is per thread: the engine thread (and a connection thread computing embeddings) would otherwise
# start from OMP_NUM_THREADS or every core, not from --threads. Checked by the OpenMP workers the
# server's first requests create (threads named as the process, counted before and after): none
# at --threads 1 under OMP_NUM_THREADS=4, two at --threads 3 under OMP_NUM_THREADS=1. The model is
# wide enough (dim 256) that every decode step's linears fork.
set -u
source "$(dirname "$0")/serve_lib.sh"
python3 -c "print('\n'.join('the quick brown fox %d jumps over the lazy dog' % i for i in range(400)))" > "$T/corpus.txt"
"$BIN" train --data "$T/corpus.txt" --tokenizer byte --out "$T/model" --layers 1 --heads 4 --dim 256 --context 128 \
  --steps 1 --batch 2 --threads 1 --quiet > "$T/train.log" 2>&1
check "a 1-layer dim-256 model" '[ -f "$T/model/model.safetensors" ]'

workers() { local n=0; for t in /proc/$SPID/task/*; do [ "$(cat "$t/comm")" = lmkit ] && n=$((n + 1)); done; echo $n; }
decode_on() {   # decode_on OMP_NUM_THREADS --threads EXPECTED_NEW_WORKERS
  local omp=$1 th=$2 want=$3 before after
  OMP_NUM_THREADS=$omp start_server "$BIN" "$T/serve$th.log" --model "$T/model" --threads "$th"
  check "server up (OMP_NUM_THREADS=$omp, --threads $th)" '[ -n "$PORT" ]'
  before=$(workers)
  curl -s "http://127.0.0.1:$PORT/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt": "the quick brown fox", "max_tokens": 8, "temperature": 0}' > "$T/out$th.json"
  curl -s "http://127.0.0.1:$PORT/v1/embeddings" -H 'Content-Type: application/json' \
    -d '{"input": "the quick brown fox jumps over the lazy dog"}' > "$T/emb$th.json"
  after=$(workers)
  check "--threads $th: a completion and an embedding" \
    'grep -q "\"completion_tokens\":8" "$T/out$th.json" && grep -q "\"embedding\"" "$T/emb$th.json"'
  check "--threads $th under OMP_NUM_THREADS=$omp: $want new OpenMP workers (threads named lmkit: $before before, $after after)" \
    '[ $((after - before)) -eq "$want" ]'
  kill "$SPID"; wait "$SPID" 2>/dev/null
}
decode_on 4 1 0
decode_on 1 3 2
serve_done test_serve_threads
