#!/usr/bin/env bash
# Dropout in training, through the CLI:
#   - `train --dropout P` writes the rates under the family's HF keys (GPT-2: embd_pdrop, attn_pdrop,
#     resid_pdrop; --attn-dropout apart) and a file without them reads as transformers' defaults;
#   - --dropout 0 is today's run bit for bit (the same loss curve as no flag);
#   - dropout changes the training curve but not evaluation: `lmkit eval` on the saved model equals
#     the run's last validation loss;
#   - a run with dropout resumed from its middle checkpoint continues the curve bit for bit (the masks
#     come from the checkpointed rng);
#   - `finetune --dropout P` overrides the base model's rates (saved with the fine-tuned model);
#   - a rate outside [0, 1) is a clear error, as a flag and in config.json;
#   - T5 and BART (`train --arch t5|bart --dropout P`): the config carries the rate (dropout_rate;
#     dropout, attention_dropout, activation_dropout), --dropout 0 is the plain run bit for bit, the
#     same seed gives the same run and a resumed run ends with the same weights.
# (The masks' math against PyTorch, forward and every gradient: tests/reference/test_llama.py,
# test_bert.py, test_t5.py, test_bart.py.)
source "$(dirname "$0")/lib.sh"
curve() { python3 -c "
import json, sys
print(' '.join(repr(json.loads(l)[sys.argv[2]]) for l in open(sys.argv[1]) if sys.argv[2] in json.loads(l)))" "$1" "$2"; }

head -c 200000 /usr/share/games/fortunes/fortunes > "$T/corpus.txt" 2>/dev/null || \
  python3 -c "import random; r=random.Random(1); print('\n'.join(' '.join(r.choice(['the','cat','sat','on','a','mat','dog','ran']) for _ in range(12)) for _ in range(3000)))" > "$T/corpus.txt"
RUN=(--data "$T/corpus.txt" --layers 2 --heads 2 --dim 32 --context 32 --batch 4 --steps 40 --eval-every 20
     --eval-batches 2 --lr 3e-3 --seed 3 --threads 1 --quiet)
"$BIN" train "${RUN[@]}" --out "$T/plain" > /dev/null 2>&1
"$BIN" train "${RUN[@]}" --dropout 0 --out "$T/zero" > /dev/null 2>&1
check "--dropout 0 is the run without dropout, bit for bit" \
  '[ -n "$(curve $T/plain/metrics.jsonl loss)" ] && [ "$(curve $T/plain/metrics.jsonl loss)" = "$(curve $T/zero/metrics.jsonl loss)" ]'

"$BIN" train "${RUN[@]}" --dropout 0.2 --attn-dropout 0.1 --save-every 20 --out "$T/drop" > "$T/drop.log" 2>&1; rc=$?
keys=$(python3 -c "import json,sys; c=json.load(open(sys.argv[1])); print(c['embd_pdrop'], c['attn_pdrop'], c['resid_pdrop'])" "$T/drop/config.json" 2>&1)
check "train --dropout 0.2 --attn-dropout 0.1 (rc $rc) writes embd/attn/resid_pdrop: $keys" '[ $rc = 0 ] && [ "$keys" = "0.2 0.1 0.2" ]'
check "dropout changes the training curve" '[ "$(curve $T/plain/metrics.jsonl loss)" != "$(curve $T/drop/metrics.jsonl loss)" ]'
lastval=$(curve "$T/drop/metrics.jsonl" val_loss | tr ' ' '\n' | tail -1)
ev=$("$BIN" eval --model "$T/drop" --data "$T/corpus.txt" --threads 1 2>/dev/null | awk '{print $2}')
check "evaluation has no dropout: the run's last val loss $lastval, eval of the whole text $ev (finite, close)" \
  "python3 -c 'import sys, math; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if math.isfinite(b) and abs(a - b) < 0.5 else 1)' $lastval ${ev:-nan}"

"$BIN" train "${RUN[@]}" --dropout 0.2 --attn-dropout 0.1 --save-every 20 --resume "$T/drop/checkpoint-20" --out "$T/res" > /dev/null 2>&1
a=$(curve "$T/drop/metrics.jsonl" loss | tr ' ' '\n' | tail -20 | tr '\n' ' ')
b=$(curve "$T/res/metrics.jsonl" loss | tr ' ' '\n' | tail -20 | tr '\n' ' ')
check "a dropout run resumed at step 20 continues the curve bit for bit" '[ "$(echo $a | wc -w)" -eq 20 ] && [ "$a" = "$b" ]'
check "and ends with the same weights" 'cmp -s "$T/drop/model.safetensors" "$T/res/model.safetensors"'
err=$("$BIN" train "${RUN[@]}" --dropout 0.2 --attn-dropout 0.3 --resume "$T/drop" --steps 60 --out "$T/res2" 2>&1); rc=$?
check "resuming with another --attn-dropout is refused: $err" '[ $rc != 0 ] && echo "$err" | grep -q -- "--attn-dropout"'

err=$("$BIN" train "${RUN[@]}" --dropout 1 --out "$T/x" 2>&1); rc=$?
check "--dropout 1 is a clear error: $err" '[ $rc != 0 ] && echo "$err" | grep -q -- "--dropout"'
cp -r "$T/plain" "$T/badcfg"
python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['resid_pdrop']=1.5; json.dump(c, open(p,'w'))" "$T/badcfg/config.json"
err=$("$BIN" eval --model "$T/badcfg" --data "$T/corpus.txt" 2>&1); rc=$?
check "resid_pdrop = 1.5 in config.json is a clear error: $err" '[ $rc != 0 ] && echo "$err" | grep -q "resid_pdrop"'

python3 -c "
import random; r = random.Random(2)
print('label\ttext')
for _ in range(64):
    y = r.randrange(2); print(y, ' '.join(r.choice(['good', 'fine', 'great'] if y else ['bad', 'poor', 'awful']) for _ in range(4)), sep='\t')" > "$T/cls.tsv"
FT=(finetune --model "$T/plain" --task classify --data "$T/cls.tsv" --steps 4 --batch 8 --seed 1 --threads 1 --quiet)
"$BIN" "${FT[@]}" --dropout 0.3 --attn-dropout 0.05 --out "$T/ft" > /dev/null 2>&1; rc=$?
keys=$(python3 -c "import json,sys; c=json.load(open(sys.argv[1])); print(c['embd_pdrop'], c['attn_pdrop'], c['resid_pdrop'])" "$T/ft/config.json" 2>&1)
check "finetune --dropout 0.3 --attn-dropout 0.05 (rc $rc) on a model trained without dropout: $keys" '[ $rc = 0 ] && [ "$keys" = "0.3 0.05 0.3" ]'
"$BIN" "${FT[@]}" --out "$T/ft0" > /dev/null 2>&1
keys=$(python3 -c "import json,sys; c=json.load(open(sys.argv[1])); print(c['embd_pdrop'], c['attn_pdrop'], c['resid_pdrop'])" "$T/ft0/config.json" 2>&1)
check "finetune without --dropout keeps the base model's rates: $keys" '[ "$keys" = "0 0 0" ]'
err=$("$BIN" "${FT[@]}" --dropout 1.0 --out "$T/ft1" 2>&1); rc=$?
check "finetune --dropout 1.0 is a clear error: $err" '[ $rc != 0 ] && echo "$err" | grep -q -- "--dropout"'

# encoder-decoders: T5 drops at its one dropout_rate (embeddings, attention, residual branches, FFN
# activation, final norms), BART at dropout / attention_dropout / activation_dropout (= --dropout)
words_corpus "$T/words.txt"
SENT=(); for k in 9 8 7 6 5 4 3 2 1 0; do SENT+=(--special "<extra_id_$k>"); done
"$BIN" tokenizer train --data "$T/words.txt" --vocab-size 300 --special "<s>" --special "<pad>" --special "</s>" \
  --special "<mask>" "${SENT[@]}" --out "$T/edtok" > /dev/null 2>&1 || bad "tokenizer train"
ED=(--tokenizer "$T/edtok" --data "$T/words.txt" --layers 1 --heads 2 --dim 32 --context 24 --batch 4 --steps 12
    --eval-every 6 --eval-batches 2 --lr 3e-3 --seed 3 --threads 1 --quiet)
"$BIN" train --arch t5 "${ED[@]}" --out "$T/t5plain" > /dev/null 2>&1
"$BIN" train --arch t5 "${ED[@]}" --dropout 0 --out "$T/t5zero" > /dev/null 2>&1
check "t5: --dropout 0 is the run without dropout, bit for bit" \
  '[ -n "$(curve $T/t5plain/metrics.jsonl loss)" ] && cmp -s "$T/t5plain/model.safetensors" "$T/t5zero/model.safetensors"'
"$BIN" train --arch t5 "${ED[@]}" --dropout 0.1 --save-every 6 --out "$T/t5a" > "$T/t5a.log" 2>&1; rc=$?
"$BIN" train --arch t5 "${ED[@]}" --dropout 0.1 --save-every 6 --out "$T/t5b" > /dev/null 2>&1
rate=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['dropout_rate'])" "$T/t5a/config.json" 2>&1)
check "train --arch t5 --dropout 0.1 runs (rc $rc) and saves dropout_rate $rate" '[ $rc = 0 ] && [ "$rate" = 0.1 ]'
[ $rc = 0 ] || tail -3 "$T/t5a.log"
check "t5: dropout changes the curve; the same seed gives the same run, bit for bit" \
  '[ "$(curve $T/t5plain/metrics.jsonl loss)" != "$(curve $T/t5a/metrics.jsonl loss)" ] && cmp -s "$T/t5a/model.safetensors" "$T/t5b/model.safetensors"'
"$BIN" train --arch t5 "${ED[@]}" --dropout 0.1 --save-every 6 --resume "$T/t5a/checkpoint-6" --out "$T/t5r" > /dev/null 2>&1
a=$(curve "$T/t5a/metrics.jsonl" loss | tr ' ' '\n' | tail -6 | tr '\n' ' ')
b=$(curve "$T/t5r/metrics.jsonl" loss | tr ' ' '\n' | tail -6 | tr '\n' ' ')
check "t5: a dropout run resumed at step 6 continues the curve and ends with the same weights" \
  '[ "$(echo $a | wc -w)" -eq 6 ] && [ "$a" = "$b" ] && cmp -s "$T/t5a/model.safetensors" "$T/t5r/model.safetensors"'
err=$("$BIN" train --arch t5 "${ED[@]}" --dropout 0.1 --attn-dropout 0.2 --out "$T/t5x" 2>&1); rc=$?
check "t5: --attn-dropout other than --dropout is an error (one dropout_rate): $err" '[ $rc != 0 ] && echo "$err" | grep -q dropout_rate'
"$BIN" train --arch bart "${ED[@]}" --dropout 0.1 --attn-dropout 0.05 --steps 3 --out "$T/bart" > /dev/null 2>&1; rc=$?
keys=$(python3 -c "import json,sys; c=json.load(open(sys.argv[1])); print(c['dropout'], c['attention_dropout'], c['activation_dropout'])" "$T/bart/config.json" 2>&1)
check "train --arch bart --dropout 0.1 --attn-dropout 0.05 (rc $rc) saves dropout, attention_dropout, activation_dropout: $keys" \
  '[ $rc = 0 ] && [ "$keys" = "0.1 0.05 0.1" ]'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
