#!/usr/bin/env bash
# BART through the CLI, end to end on a tiny generated corpus:
#   - `lmkit train --arch bart` pre-trains by denoising (its default objective: 30% of the words
#     infilled in Poisson(3) spans, every sentence permuted): the loss falls well below its start,
#     and a run resumed from its middle checkpoint ends bit for bit as one uninterrupted run does;
#   - the saved directory is a BartForConditionalGeneration directory (model_type bart, model.shared,
#     the encoder/decoder HF names, final_logits_bias) that loads and saves back with the same tensors;
#   - `generate` runs on it (encoder once, decoder caches) and reconstructs a corrupted sentence's
#     words;
#   - each noising flag trains (deletion, rotation, insertion), and the denoising options are saved
#     with the run: a resume given another --mask-ratio is an error naming both values;
#   - a config.json's dropout is applied in fine-tuning and saved with the fine-tuned model;
#   - errors: a tokenizer without <mask> names it; denoise on a decoder; a denoise flag with another
#     objective.
# (Correctness against PyTorch and the HF layout: tests/reference/test_bart.py; each noising
# function's statistics: tests/unit/test_denoise.c.)
source "$(dirname "$0")/lib.sh"
losses() { python3 -c "
import json, sys
print(' '.join(repr(json.loads(l)[sys.argv[2]]) for l in open(sys.argv[1]) if sys.argv[2] in json.loads(l)))" "$1" "$2"; }

words_corpus "$T/corpus.txt"
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --special "<s>" --special "<pad>" --special "</s>" \
  --special "<mask>" --out "$T/tok" > /dev/null 2>&1 || bad "tokenizer train"
TRAIN=(--arch bart --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 2 --heads 4 --dim 64 --context 40 --batch 8
       --lr 1e-3 --eval-every 30 --eval-batches 4 --seed 5 --threads 1 --quiet)
"$BIN" train "${TRAIN[@]}" --steps 90 --save-every 45 --out "$T/base" > "$T/base.log" 2>&1; rc=$?
tl=($(losses "$T/base/metrics.jsonl" loss)); vl=($(losses "$T/base/metrics.jsonl" val_loss))
check "train --arch bart (denoise) runs (rc $rc) and learns: loss ${tl[0]:-} at step 1, val ${vl[*]:-}" \
  "[ $rc = 0 ] && python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; sys.exit(0 if len(v) >= 3 and v[-1] < 0.6 * v[0] else 1)' ${tl[0]:-x} ${vl[*]:-x}"
[ $rc = 0 ] || tail -5 "$T/base.log"
python3 - "$T/base" > "$T/layout.txt" <<'PY'
import json, struct, sys
d = sys.argv[1]
c = json.load(open(f"{d}/config.json"))
with open(f"{d}/model.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
need = ["model.shared.weight", "model.encoder.embed_positions.weight", "model.decoder.layernorm_embedding.bias",
        "model.encoder.layers.1.self_attn.q_proj.weight", "model.decoder.layers.1.encoder_attn.k_proj.bias",
        "model.decoder.layers.0.encoder_attn_layer_norm.weight", "model.encoder.layers.0.fc1.weight", "final_logits_bias"]
print(c["model_type"], c["architectures"][0], c["encoder_layers"], c["decoder_layers"],
      c["decoder_start_token_id"] == c["eos_token_id"], all(k in h for k in need), h["final_logits_bias"]["shape"][0],
      h["model.encoder.embed_positions.weight"]["shape"][0])
PY
check "saved as BartForConditionalGeneration (start = </s>, positions 40 + 2): $(cat "$T/layout.txt")" \
  "[ \"\$(cat $T/layout.txt)\" = 'bart BartForConditionalGeneration 2 2 True True 1 42' ]"
# generation: the encoder once, the decoder with its caches, stopping at </s> (a 90-step model does not
# reconstruct yet: its answer is text of the corpus's characters, without special tokens)
"$BIN" generate --model "$T/base" --prompt "the cat <mask> on the mat ." --max-tokens 16 --temperature 0 \
  > "$T/gen.txt" 2> "$T/gen.err"; rc=$?
check "generate on a bart runs (rc $rc) and answers in the corpus's characters: $(tr '\n' ' ' < "$T/gen.txt" | cut -c1-120)" \
  "[ $rc = 0 ] && [ -s $T/gen.txt ] && ! grep -q '[^a-z .]' $T/gen.txt"
# resume from the middle checkpoint: the same final loss as the uninterrupted run
"$BIN" train "${TRAIN[@]}" --steps 90 --resume "$T/base/checkpoint-45" --out "$T/resumed" > "$T/resumed.log" 2>&1; rc=$?
a=$(losses "$T/base/metrics.jsonl" loss | awk '{print $NF}'); b=$(losses "$T/resumed/metrics.jsonl" loss | awk '{print $NF}')
check "resumed at step 45 ends with the same loss (rc $rc): $a vs $b" "[ $rc = 0 ] && [ -n '$a' ] && [ '$a' = '$b' ]"
check "the resumed run's weights equal the uninterrupted run's" "cmp -s $T/base/model.safetensors $T/resumed/model.safetensors"
err "a resume with another --mask-ratio names both values" "--mask-ratio 0.5 differs from the checkpoint's 0.3" \
  "$BIN" train "${TRAIN[@]}" --steps 90 --mask-ratio 0.5 --resume "$T/base/checkpoint-45" --out "$T/x0"
"$BIN" train "${TRAIN[@]}" --mask-ratio 0 --permute 0 --delete-ratio 0.2 --rotate 0.5 --insert-ratio 0.1 --steps 3 \
  --out "$T/noise" > "$T/noise.log" 2>&1; rc=$?
check "deletion, rotation and insertion alone train (rc $rc)" "[ $rc = 0 ] && grep -q '\"delete_ratio\"' $T/noise/trainer_state.json"
# dropout from a config.json trains with it and is kept (finetune on a copy; the math: tests/reference/test_bart.py)
cp -r "$T/base" "$T/drop" && python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['dropout']=0.1; json.dump(c,open(p,'w'))" "$T/drop/config.json"
printf 'the cat sat .\tthe cat sat .\n%.0s' {1..20} > "$T/t2t.tsv"
"$BIN" finetune --task text2text --model "$T/drop" --data "$T/t2t.tsv" --steps 2 --out "$T/ft" --quiet > "$T/ft.log" 2>&1; rc=$?
kept=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['dropout'])" "$T/ft/config.json" 2>&1)
check "fine-tuning a bart whose config asks for dropout 0.1 trains (rc $rc) and keeps it: $kept" \
  "[ $rc = 0 ] && [ '$kept' = 0.1 ]"
err "a tokenizer without <mask> is an error naming it" "<mask>" \
  "$BIN" train "${TRAIN[@]}" --tokenizer byte --steps 2 --out "$T/x1"
err "denoise on a decoder is an error" "encoder-decoder" \
  "$BIN" train --arch gpt2 --objective denoise --data "$T/corpus.txt" --steps 2 --out "$T/x2" --quiet
err "a denoise flag with another objective is an error" "--mask-ratio is a setting of --objective denoise" \
  "$BIN" train --arch gpt2 --mask-ratio 0.2 --data "$T/corpus.txt" --steps 2 --out "$T/x3" --quiet
err "every noising function off is an error" "copy" \
  "$BIN" train "${TRAIN[@]}" --mask-ratio 0 --permute 0 --steps 2 --out "$T/x4"
echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]
