#!/usr/bin/env bash
# train --precision bf16 (src/kernels/mm.c, docs/training.md): a 300-step curve of a tiny GPT-2 in bf16
# ends within 1% of fp32's (the mean of the last 20 training losses, and the final validation loss);
# the same seed and threads give the same bf16 curve and weights bit for bit, at 1 and 2 threads; a
# bf16 run resumed from its checkpoint ends on the same weights, with or without --precision (the run
# saves it), and an explicit other precision on resume is an error; where oneDNN may not use bf16
# (ONEDNN_MAX_CPU_ISA=AVX2, as on a CPU without AVX512-BF16/AMX) it says so and trains in fp32, the
# fp32 run's bits; a bad value is an error naming it; the shared train flags (sft) list it.
# (Each product against fp32 and its definition: tests/unit/test_mm.c.)
source "$(dirname "$0")/lib.sh"
curve() { python3 -c "
import json, sys
print(' '.join(repr((d['loss'], d['grad_norm'])) for d in map(json.loads, open(sys.argv[1])) if 'loss' in d))" "$1"; }
# within PCT % of each other: the mean of the last 20 training losses, and the last validation loss
close() { python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
def summary(p):
    rows = [json.loads(l) for l in open(p)]
    tr = [r['loss'] for r in rows if 'loss' in r][-20:]
    va = [r['val_loss'] for r in rows if 'val_loss' in r]
    return sum(tr) / len(tr), va[-1]
(a_tr, a_va), (b_tr, b_va), pct = summary(sys.argv[1]), summary(sys.argv[2]), float(sys.argv[3])
print(f"fp32 {a_tr:.4f}/{a_va:.4f} bf16 {b_tr:.4f}/{b_va:.4f}", file=sys.stderr)
sys.exit(not (abs(b_tr - a_tr) <= pct / 100 * a_tr and abs(b_va - a_va) <= pct / 100 * a_va))
EOF
}
native() { "$BIN" info --system 2>/dev/null | grep -q "bf16 products: *yes"; }

head -c 200000 /usr/share/games/fortunes/fortunes > "$T/corpus.txt" 2>/dev/null || \
  python3 -c "import random; r=random.Random(1); print('\n'.join(' '.join(r.choice(['the','cat','sat','on','a','mat','dog','ran']) for _ in range(12)) for _ in range(3000)))" > "$T/corpus.txt"
RUN=(--data "$T/corpus.txt" --layers 2 --heads 2 --dim 64 --context 64 --batch 8 --steps 300 --eval-every 150
     --eval-batches 4 --lr 3e-3 --seed 3 --quiet)

"$BIN" train "${RUN[@]}" --threads 1 --out "$T/f32" > /dev/null 2>&1
"$BIN" train "${RUN[@]}" --threads 1 --precision bf16 --out "$T/b16" > "$T/b16.log" 2>&1; rc=$?
if native; then
  check "train --precision bf16 (rc $rc): 300 steps end within 1% of fp32's loss (last 20 steps, validation)" \
    '[ $rc = 0 ] && close "$T/f32/metrics.jsonl" "$T/b16/metrics.jsonl" 1'
  check "and its curve is not fp32's (the products did run in bf16)" \
    '[ "$(curve $T/f32/metrics.jsonl)" != "$(curve $T/b16/metrics.jsonl)" ] && ! grep -q "note:" "$T/b16.log"'
  "$BIN" train "${RUN[@]}" --threads 1 --precision bf16 --out "$T/b16b" > /dev/null 2>&1
  check "the same seed and threads give the same bf16 curve and weights, bit for bit" \
    '[ "$(curve $T/b16/metrics.jsonl)" = "$(curve $T/b16b/metrics.jsonl)" ] && cmp -s "$T/b16/model.safetensors" "$T/b16b/model.safetensors"'
  SHORT=("${RUN[@]/300/60}")
  "$BIN" train "${SHORT[@]}" --threads 2 --precision bf16 --out "$T/t2a" > /dev/null 2>&1
  "$BIN" train "${SHORT[@]}" --threads 2 --precision bf16 --out "$T/t2b" > /dev/null 2>&1
  check "also at 2 threads" '[ -n "$(curve $T/t2a/metrics.jsonl)" ] && [ "$(curve $T/t2a/metrics.jsonl)" = "$(curve $T/t2b/metrics.jsonl)" ] && cmp -s "$T/t2a/model.safetensors" "$T/t2b/model.safetensors"'
  "$BIN" train "${SHORT[@]}" --threads 1 --precision bf16 --save-every 30 --out "$T/s" > /dev/null 2>&1
  "$BIN" train "${SHORT[@]}" --threads 1 --precision bf16 --resume "$T/s/checkpoint-30" --out "$T/r" > /dev/null 2>&1; rc=$?
  check "a bf16 run resumed at step 30 (rc $rc) ends on the uninterrupted run's weights" \
    '[ $rc = 0 ] && cmp -s "$T/s/model.safetensors" "$T/r/model.safetensors"'
  "$BIN" train --resume "$T/s/checkpoint-30" --threads 1 --out "$T/r2" --quiet > /dev/null 2>&1; rc=$?
  check "the run's precision is saved with it: resumed without --precision (rc $rc) it goes on in bf16" \
    '[ $rc = 0 ] && cmp -s "$T/s/model.safetensors" "$T/r2/model.safetensors"'
  err "resuming a bf16 run with --precision fp32 is an error naming both" "precision fp32 differs from the checkpoint's bf16" \
    "$BIN" train --resume "$T/s/checkpoint-30" --precision fp32 --threads 1 --out "$T/r3" --quiet
fi
"$BIN" train "${RUN[@]/300/20}" --threads 1 --save-every 10 --out "$T/f" > /dev/null 2>&1
err "resuming an fp32 run with --precision bf16 is an error naming both" "precision bf16 differs from the checkpoint's fp32" \
  "$BIN" train --resume "$T/f/checkpoint-10" --precision bf16 --threads 1 --out "$T/f2" --quiet
if native; then :
else
  echo "skip the bf16 curve checks: this CPU has no bf16 products"
fi

ONEDNN_MAX_CPU_ISA=AVX2 "$BIN" train "${RUN[@]}" --threads 1 --precision bf16 --out "$T/fb" > "$T/fb.log" 2>&1; rc=$?
check "without AVX512-BF16 (ONEDNN_MAX_CPU_ISA=AVX2; rc $rc) bf16 says it trains in fp32" \
  '[ $rc = 0 ] && grep -q "note: --precision bf16: .*training in fp32" "$T/fb.log"'
check "and does: the fp32 run's curve and weights, bit for bit" \
  '[ "$(curve $T/f32/metrics.jsonl)" = "$(curve $T/fb/metrics.jsonl)" ] && cmp -s "$T/f32/model.safetensors" "$T/fb/model.safetensors"'

err "train --precision fp16 is an error naming it" "unknown precision 'fp16'" \
  "$BIN" train "${RUN[@]}" --precision fp16 --out "$T/bad"
"$BIN" sft --help 2>&1 | grep -q -- "--precision" && ok "sft --help lists --precision" || bad "sft --help lists --precision"

echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]
