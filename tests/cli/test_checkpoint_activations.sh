#!/usr/bin/env bash
# --checkpoint-activations through the CLI: training with it gives the run without it bit for bit (the
# loss and gradient-norm curve and the saved weights), with dropout on; a run started without it resumes
# with it and still ends on the same weights; sft accepts it (the shared train flags).
# (The gradients of one step, bit for bit, for GPT-2, packed rows, Mistral and BERT: tests/unit/test_checkpoint.c.)
source "$(dirname "$0")/lib.sh"
curve() { python3 -c "
import json, sys
print(' '.join(repr((d['loss'], d['grad_norm'])) for d in map(json.loads, open(sys.argv[1])) if 'loss' in d))" "$1"; }

head -c 100000 /usr/share/games/fortunes/fortunes > "$T/corpus.txt" 2>/dev/null || \
  python3 -c "import random; r=random.Random(1); print('\n'.join(' '.join(r.choice(['the','cat','sat','on','a','mat','dog','ran']) for _ in range(12)) for _ in range(3000)))" > "$T/corpus.txt"
RUN=(--data "$T/corpus.txt" --layers 3 --heads 2 --dim 32 --context 32 --batch 4 --steps 8 --eval-every 4
     --eval-batches 2 --lr 3e-3 --seed 3 --threads 2 --dropout 0.1 --quiet)
"$BIN" train "${RUN[@]}" --out "$T/plain" > /dev/null 2>&1
"$BIN" train "${RUN[@]}" --checkpoint-activations --out "$T/ckpt" > "$T/ckpt.log" 2>&1; rc=$?
check "train --checkpoint-activations (rc $rc) has the plain run's loss and grad-norm curve, bit for bit" \
  '[ $rc = 0 ] && [ -n "$(curve $T/plain/metrics.jsonl)" ] && [ "$(curve $T/plain/metrics.jsonl)" = "$(curve $T/ckpt/metrics.jsonl)" ]'
check "and saves the same weights" 'cmp -s "$T/plain/model.safetensors" "$T/ckpt/model.safetensors"'

"$BIN" train "${RUN[@]}" --save-every 4 --out "$T/saved" > /dev/null 2>&1
"$BIN" train "${RUN[@]}" --resume "$T/saved/checkpoint-4" --checkpoint-activations --out "$T/res" > "$T/res.log" 2>&1; rc=$?
check "a run resumed at step 4 with --checkpoint-activations (rc $rc) ends on the same weights" \
  '[ $rc = 0 ] && cmp -s "$T/plain/model.safetensors" "$T/res/model.safetensors"'

"$BIN" sft --help 2>&1 | grep -q -- "--checkpoint-activations" && ok "sft --help lists --checkpoint-activations" || \
  bad "sft --help lists --checkpoint-activations"

echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]
