#!/usr/bin/env bash
# T5 through the CLI, end to end on a tiny generated corpus:
#   - `lmkit train --arch t5` pre-trains by span corruption (its default objective): the loss falls
#     well below its start, and a run resumed from its middle checkpoint ends bit for bit as one
#     uninterrupted run does;
#   - the saved directory is a T5ForConditionalGeneration directory (model_type t5, encoder/decoder
#     HF tensor names, shared embeddings); `--ffn gated-gelu` saves the v1.1 layout (wi_0/wi_1,
#     lm_head);
#   - `generate` answers (encoder once, decoder caches) and stops at </s>;
#   - errors: a tokenizer without T5's sentinels names <extra_id_0>; --ffn gated-gelu on a decoder,
#     span corruption on a decoder, clm on t5, eval's next-token loss on t5.
# (Correctness against PyTorch and the HF layouts: tests/reference/test_t5.py, test_span.py.)
source "$(dirname "$0")/lib.sh"
losses() { python3 -c "
import json, sys
print(' '.join(repr(json.loads(l)[sys.argv[2]]) for l in open(sys.argv[1]) if sys.argv[2] in json.loads(l)))" "$1" "$2"; }

words_corpus "$T/corpus.txt"
SENT=(); for k in 19 18 17 16 15 14 13 12 11 10 9 8 7 6 5 4 3 2 1 0; do SENT+=(--special "<extra_id_$k>"); done
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 320 --special "<pad>" --special "</s>" "${SENT[@]}" \
  --out "$T/tok" > /dev/null 2>&1 || bad "tokenizer train"
TRAIN=(--arch t5 --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 2 --heads 4 --dim 64 --context 48 --batch 8
       --lr 3e-3 --eval-every 30 --eval-batches 4 --seed 5 --threads 1 --quiet)
"$BIN" train "${TRAIN[@]}" --steps 90 --save-every 45 --out "$T/base" > "$T/base.log" 2>&1; rc=$?
tl=($(losses "$T/base/metrics.jsonl" loss)); vl=($(losses "$T/base/metrics.jsonl" val_loss))
check "train --arch t5 (span corruption) runs (rc $rc) and learns: loss ${tl[0]:-} at step 1, val ${vl[*]:-}" \
  "[ $rc = 0 ] && python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; sys.exit(0 if len(v) >= 3 and v[-1] < 0.6 * v[0] else 1)' ${tl[0]:-x} ${vl[*]:-x}"
[ $rc = 0 ] || tail -5 "$T/base.log"
python3 - "$T/base" > "$T/layout.txt" <<'PY'
import json, struct, sys
d = sys.argv[1]
c = json.load(open(f"{d}/config.json"))
with open(f"{d}/model.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
need = ["shared.weight", "encoder.block.1.layer.1.DenseReluDense.wi.weight", "decoder.block.1.layer.1.EncDecAttention.k.weight",
        "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "encoder.final_layer_norm.weight"]
print(c["model_type"], c["architectures"][0], c["feed_forward_proj"], c["num_layers"], c["num_decoder_layers"],
      all(k in h for k in need), "lm_head.weight" in h)
PY
check "saved as T5ForConditionalGeneration (v1.0 layout, tied): $(cat "$T/layout.txt")" \
  "[ \"\$(cat $T/layout.txt)\" = 't5 T5ForConditionalGeneration relu 2 2 True False' ]"
check "info describes the encoder-decoder" "\"$BIN\" info $T/base | grep -q '2 encoder + 2 decoder' && \"$BIN\" info $T/base | grep -q 'relative bias, 32 buckets'"
# generation: the encoder once, the decoder with its caches, stopping at </s>; the answer alone (no prompt echo)
"$BIN" generate --model "$T/base" --prompt "the cat <extra_id_0> on the <extra_id_1> ." --max-tokens 12 --temperature 0 \
  > "$T/gen.txt" 2> "$T/gen.err"; rc=$?
check "generate on a t5 runs (rc $rc) and answers with sentinels: $(tr '\n' ' ' < "$T/gen.txt" | cut -c1-120)" \
  "[ $rc = 0 ] && grep -q '^<extra_id_0>' $T/gen.txt && ! grep -q '</s>' $T/gen.txt"
# resume from the middle checkpoint: the same final loss as the uninterrupted run
"$BIN" train "${TRAIN[@]}" --steps 90 --save-every 45 --out "$T/base" --resume "$T/base/checkpoint-45" --out "$T/resumed" \
  > "$T/resumed.log" 2>&1; rc=$?
a=$(losses "$T/base/metrics.jsonl" loss | awk '{print $NF}'); b=$(losses "$T/resumed/metrics.jsonl" loss | awk '{print $NF}')
check "resumed at step 45 ends with the same loss (rc $rc): $a vs $b" "[ $rc = 0 ] && [ -n '$a' ] && [ '$a' = '$b' ]"
"$BIN" train "${TRAIN[@]}" --ffn gated-gelu --steps 3 --out "$T/v11" > "$T/v11.log" 2>&1; rc=$?
check "--ffn gated-gelu trains and saves wi_0/wi_1 and lm_head (rc $rc)" \
  "[ $rc = 0 ] && grep -q '\"feed_forward_proj\": \"gated-gelu\"' $T/v11/config.json && grep -q 'wi_0' $T/v11/model.safetensors && grep -q 'lm_head.weight' $T/v11/model.safetensors"
err "a tokenizer without sentinels names <extra_id_0>" "<extra_id_0>" \
  "$BIN" train "${TRAIN[@]}" --tokenizer byte --steps 2 --out "$T/x1"
err "--ffn gated-gelu on a decoder is an error" "--ffn gated-gelu is for --arch t5" \
  "$BIN" train --arch gpt2 --ffn gated-gelu --data "$T/corpus.txt" --steps 2 --out "$T/x2" --quiet
err "span corruption on a decoder is an error" "encoder-decoder" \
  "$BIN" train --arch gpt2 --objective span-corruption --data "$T/corpus.txt" --steps 2 --out "$T/x3" --quiet
err "eval (next-token loss) on a t5 is a clear error, not NaN" "encoder-decoder" \
  "$BIN" eval --model "$T/base" --data "$T/corpus.txt"
printf '{"prompt": "a b", "completion": "c d"}\n%.0s' {1..20} > "$T/sft.jsonl"
err "sft (decoder batches) on a t5 names the missing encoder input, not a NaN loss" "needs the encoder's input" \
  "$BIN" sft --model "$T/base" --data "$T/sft.jsonl" --out "$T/x5" --steps 2 --quiet
err "clm on t5 is an error" "causal" \
  "$BIN" train "${TRAIN[@]}" --objective clm --steps 2 --out "$T/x4"
echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]
