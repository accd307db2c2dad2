#!/usr/bin/env bash
# Data-parallel training over Open MPI (src/train/dist.c), 2 ranks on this machine:
# - 2 ranks at --batch 4 train as 1 process at --batch 8 on the same sequences (and 2 ranks at 2 with
#   --grad-accum 2 and ZeRO-1 as 1 process at 4 with --grad-accum 2): the loss and
#   grad-norm curve agree to rel 1e-5 per step over 20 steps, the final weights to 1e-4 of each
#   tensor's largest value (fp32 reduction order: a batch of 8 rows summed in one matmul vs two
#   means of 4 averaged by MPI_Allreduce, which AdamW's per-element g / sqrt(v) amplifies where a
#   gradient is near its rounding noise; measured 1.1e-7 / 7.7e-7 on the curves, 3.3e-6 / 2.9e-5 on
#   the weights), but for the attention key bias, whose true gradient is 0 (see close() below);
# - ZeRO-1 (--zero 1) gives plain data parallelism's curve and weights bit for bit (with 2 ranks a
#   reduced element is a + b either way, and the global norm is summed from the same pieces);
# - the same seed and threads give the same curve and weights (determinism);
# - resume under MPI, with and without ZeRO-1, ends bit-identical to the uninterrupted run;
#   resuming a 2-rank run with another rank count is an error naming it;
# - rank 0 alone logs (one summary line, one result line, one metrics.jsonl);
# - the same for BERT's mlm+nsp, T5's span corruption and BART's denoising (objectives/share.c);
# - a rank killed with SIGKILL, or a rank that fails with an lmkit error, ends the job within
#   seconds with a non-zero status and a message saying which rank and why; no hang.
source "$(dirname "$0")/lib.sh"
command -v mpirun > /dev/null || { echo "FAIL mpirun not found (scripts/install-deps.sh installs openmpi-bin)"; exit 1; }
# Open MPI refuses root unless told; --oversubscribe: 2 ranks on however few cores the machine has;
# --bind-to none: ranks are not pinned to one core each (the tests' threads are not either)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
MPI=(mpirun --oversubscribe --bind-to none -np 2)
curve() { python3 -c "
import json, sys
print(' '.join(repr((d['loss'], d['grad_norm'])) for d in map(json.loads, open(sys.argv[1])) if 'loss' in d))" "$1"; }
# close A B: the curves of two metrics.jsonl agree to rel 1e-5 at every step, and the weights of
# two model directories to 1e-4 of each tensor's largest magnitude; prints the worst of each
close() { /usr/bin/python3 - "$1" "$2" <<'EOF'
import json, struct, sys, numpy as np
def curve(d): return [(x['loss'], x['grad_norm']) for x in map(json.loads, open(d + '/metrics.jsonl')) if 'loss' in x]
def weights(d):
    b = open(d + '/model.safetensors', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: np.frombuffer(b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]], np.float32)
            for k, v in h.items() if k != '__metadata__'}
a, b = curve(sys.argv[1]), curve(sys.argv[2])
wa, wb = weights(sys.argv[1]), weights(sys.argv[2])
ok = len(a) == len(b) == 20 and wa.keys() == wb.keys()
rc = max((abs(x - y) / max(abs(y), 1e-30) for p, q in zip(a, b) for x, y in zip(p, q)), default=1)
# The key bias (the middle third of c_attn.bias) has a gradient that is zero in exact arithmetic
# (softmax ignores a constant added to every score of a row), so what backward computes for it is
# rounding noise, which AdamW's g / sqrt(v) turns into lr-sized steps of either sign: it is held to
# |a - b| <= lr x steps instead. Every other weight to 1e-4 of its tensor's largest magnitude.
rw, kb = 0.0, 0.0
for k in (wa if ok else []):
    x, y = wa[k].copy(), wb[k].copy()
    if k.endswith('c_attn.bias'):
        C = x.size // 3
        kb = max(kb, float(np.abs(x[C:2 * C] - y[C:2 * C]).max())); x[C:2 * C] = y[C:2 * C]
    elif k.endswith(('attention.self.key.bias', 'k_proj.bias')):   # BERT's and BART's, tensors of their own
        kb = max(kb, float(np.abs(x - y).max())); x = y
    rw = max(rw, float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-30)))
print(f"curve rel {rc:.2e}, weights rel {rw:.2e}, key bias abs {kb:.1e}")
sys.exit(not (ok and rc <= 1e-5 and rw <= 1e-4 and kb <= 20 * 3e-3))
EOF
}

head -c 100000 /usr/share/games/fortunes/fortunes > "$T/corpus.txt" 2>/dev/null || \
  python3 -c "import random; r=random.Random(1); print('\n'.join(' '.join(r.choice(['the','cat','sat','on','a','mat','dog','ran']) for _ in range(12)) for _ in range(3000)))" > "$T/corpus.txt"
RUN=(--data "$T/corpus.txt" --layers 2 --heads 2 --dim 32 --context 32 --steps 20 --warmup 2 --eval-every 10
     --eval-batches 2 --lr 3e-3 --seed 5 --threads 1 --quiet)

"$BIN" train "${RUN[@]}" --batch 8 --out "$T/one" > /dev/null 2>&1
"${MPI[@]}" "$BIN" train "${RUN[@]}" --batch 4 --save-every 10 --out "$T/dp" > "$T/dp.out" 2> "$T/dp.err"; rc=$?
r=$(close "$T/dp" "$T/one"); c=$?
check "2 ranks at batch 4 (rc $rc) = 1 process at batch 8: $r" '[ $rc = 0 ] && [ $c = 0 ]'
check "rank 0 alone logs: one summary line, one result line" \
  '[ "$(grep -c "lmkit train: gpt2" "$T/dp.err")" = 1 ] && grep -q "2 ranks x 1 threads" "$T/dp.err" &&
   [ "$(grep -c "train loss" "$T/dp.out")" = 1 ] && [ "$(grep -c "\"loss\"" "$T/dp/metrics.jsonl")" = 20 ]'
check "the validation loss is the job's (one process at batch 8 evaluates the same windows)" \
  '[ "$(grep -c val_loss "$T/dp/metrics.jsonl")" = 2 ] && python3 -c "
import json,sys
v=lambda d:[x[\"val_loss\"] for x in map(json.loads,open(d+\"/metrics.jsonl\")) if \"val_loss\" in x]
a,b=v(\"$T/dp\"),v(\"$T/one\"); sys.exit(not all(abs(x-y)<=1e-5*abs(y) for x,y in zip(a,b)))"'

"$BIN" train "${RUN[@]}" --batch 4 --grad-accum 2 --out "$T/one-acc" > /dev/null 2>&1
"${MPI[@]}" "$BIN" train "${RUN[@]}" --batch 2 --grad-accum 2 --zero 1 --out "$T/dp-acc" > /dev/null 2>&1; rc=$?
r=$(close "$T/dp-acc" "$T/one-acc"); c=$?
check "with --grad-accum 2 and ZeRO-1 (rc $rc) too: $r" '[ $rc = 0 ] && [ $c = 0 ]'

"${MPI[@]}" "$BIN" train "${RUN[@]}" --batch 4 --save-every 10 --out "$T/dp2" > /dev/null 2>&1; rc=$?
check "the same seed and threads give the same curve and weights (rc $rc)" \
  '[ $rc = 0 ] && [ "$(curve $T/dp/metrics.jsonl)" = "$(curve $T/dp2/metrics.jsonl)" ] && cmp -s "$T/dp/model.safetensors" "$T/dp2/model.safetensors"'

"${MPI[@]}" "$BIN" train "${RUN[@]}" --batch 4 --zero 1 --save-every 10 --out "$T/zero" > /dev/null 2> "$T/zero.err"; rc=$?
check "ZeRO-1 (rc $rc) = plain data parallelism, curve and weights bit for bit" \
  '[ $rc = 0 ] && [ "$(curve $T/dp/metrics.jsonl)" = "$(curve $T/zero/metrics.jsonl)" ] && cmp -s "$T/dp/model.safetensors" "$T/zero/model.safetensors"'
check "ZeRO-1's checkpoint holds the full AdamW state (gathered on rank 0): the plain run's bytes" \
  'cmp -s "$T/dp/optimizer.safetensors" "$T/zero/optimizer.safetensors" && cmp -s "$T/dp/checkpoint-10/optimizer.safetensors" "$T/zero/checkpoint-10/optimizer.safetensors"'

for z in 0 1; do
  "${MPI[@]}" "$BIN" train "${RUN[@]}" --batch 4 --zero $z --resume "$T/dp/checkpoint-10" --out "$T/res$z" > /dev/null 2> "$T/res$z.err"; rc=$?
  check "resume under MPI at step 10 (--zero $z, rc $rc) ends on the uninterrupted run's weights and curve, bit for bit" \
    '[ $rc = 0 ] && cmp -s "$T/dp/model.safetensors" "$T/res$z/model.safetensors" && cmp -s "$T/dp/optimizer.safetensors" "$T/res$z/optimizer.safetensors" &&
     [ "$(curve $T/dp/metrics.jsonl | cut -d" " -f21-)" = "$(curve $T/res$z/metrics.jsonl)" ]'
done
err "resuming a 2-rank run in one process is an error naming the rank count" "trained on 2 data-parallel ranks" \
  "$BIN" train --resume "$T/dp" --steps 25 --out "$T/one-res" --quiet

# failures end the job: an lmkit error on rank 0 alone (OUT holds a run already)...
s0=$(date +%s)
"${MPI[@]}" "$BIN" train "${RUN[@]}" --batch 4 --out "$T/dp" > /dev/null 2> "$T/fail.err"; rc=$?
dt=$(( $(date +%s) - s0 ))
check "an error on one rank (rc $rc) aborts the whole job in ${dt}s with the message and the rank" \
  '[ $rc != 0 ] && [ $dt -le 30 ] && grep -q "already holds a run" "$T/fail.err" && grep -q "rank 0 of 2" "$T/fail.err"'

# the objectives that draw their examples (objectives/share.c): every rank draws the job's batch and
# trains on its rows, token losses over the job's count, so 2 ranks at 4 = 1 process at 8 again
# (MLM's masked tokens differ in number between the two halves of a batch: a mean of the ranks' means
# would not be the job's mean)
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --special "[PAD]" --special "[CLS]" --special "[SEP]" \
  --special "[MASK]" --special "[UNK]" --out "$T/btok" > /dev/null 2>&1
SENT=(); for k in 9 8 7 6 5 4 3 2 1 0; do SENT+=(--special "<extra_id_$k>"); done
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --special "<pad>" --special "</s>" "${SENT[@]}" \
  --out "$T/ttok" > /dev/null 2>&1
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --special "<s>" --special "<pad>" --special "</s>" \
  --special "<mask>" --out "$T/atok" > /dev/null 2>&1
for spec in "bert mlm+nsp btok" "t5 span-corruption ttok" "bart denoise atok"; do
  read -r a ob tk <<< "$spec"
  X=(--arch "$a" --objective "$ob" --tokenizer "$T/$tk")
  "$BIN" train "${RUN[@]}" "${X[@]}" --batch 8 --out "$T/one-$a" > /dev/null 2>&1
  "${MPI[@]}" "$BIN" train "${RUN[@]}" "${X[@]}" --batch 4 --out "$T/dp-$a" > /dev/null 2> "$T/dp-$a.err"; rc=$?
  r=$(close "$T/dp-$a" "$T/one-$a"); c=$?
  check "$a $ob: 2 ranks at batch 4 (rc $rc) = 1 process at batch 8: $r" '[ $rc = 0 ] && [ $c = 0 ]'
  [ $rc = 0 ] || tail -3 "$T/dp-$a.err"
  check "$a $ob: the validation loss is the job's" \
    '[ "$(grep -c val_loss "$T/dp-$a/metrics.jsonl")" = 2 ] && python3 -c "
import json,sys
v=lambda d:[x[\"val_loss\"] for x in map(json.loads,open(d+\"/metrics.jsonl\")) if \"val_loss\" in x]
a,b=v(\"$T/dp-$a\"),v(\"$T/one-$a\"); sys.exit(not (len(a)==len(b)==2 and all(abs(x-y)<=1e-5*abs(y) for x,y in zip(a,b))))"'
done

# ... and a rank killed with SIGKILL in the middle of training
"${MPI[@]}" "$BIN" train "${RUN[@]}" --batch 4 --steps 100000 --out "$T/kill" > /dev/null 2> "$T/kill.err" &
mp=$!
for _ in $(seq 1 300); do [ -s "$T/kill/metrics.jsonl" ] && break; sleep 0.1; done
victim=$(pgrep -P $mp -f "lmkit train" | tail -1)
s0=$(date +%s)
[ -n "$victim" ] && kill -9 "$victim"
for _ in $(seq 1 300); do kill -0 $mp 2> /dev/null || break; sleep 0.1; done
if kill -0 $mp 2> /dev/null; then kill -9 $mp; bad "a killed rank ends the job (mpirun still running after 30 s)"
else
  wait $mp; rc=$?; dt=$(( $(date +%s) - s0 ))
  check "a rank killed with SIGKILL (pid ${victim:-none}) ends the job (rc $rc) in ${dt}s, saying so" \
    '[ -n "$victim" ] && [ $rc != 0 ] && [ $dt -le 30 ] && grep -qiE "signal 9|killed" "$T/kill.err"'
fi

echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]
