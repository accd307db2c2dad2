#!/usr/bin/env bash
# LoRA end to end (src/model/lora.h, docs/posttraining.md): pre-train a tiny
# GPT-2, then `lmkit sft --lora-rank` on a generated instruction task:
#   - the loss falls; OUT holds the adapter as PEFT writes it
#     (adapter_config.json + adapter_model.safetensors), no full model;
#   - optimizer.safetensors holds state for the adapter only (its exp_avg has
#     exactly as many values as the adapter's tensors), far less than the model;
#   - resume is bit-exact: a run resumed from its step-20 checkpoint writes the
#     same adapter and the same losses as the run that went straight through;
#   - `lmkit lora merge` writes a full model that generates the same greedy
#     text as base + adapter (`generate --adapter`), and `eval --adapter` gives
#     the merged model's loss;
#   - bad input (LoRA flags without a rank, unknown targets, a non-LoRA or
#     broken adapter, an adapter for another base) is one clear error line.
source "$(dirname "$0")/lib.sh"
one_error() { [ "$3" -ne 0 ] && [ "$(wc -l < "$1")" -eq 1 ] && grep -q '^lmkit: error: ' "$1" && grep -qF -- "$2" "$1"; }

python3 - "$T" <<'PY'
import json, random, sys
d = sys.argv[1]
random.seed(5)
words = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "fish", "bird", "star", "rock"]
with open(f"{d}/corpus.txt", "w") as f:
    for _ in range(3000):
        f.write(" ".join(random.choice(words) for _ in range(random.randint(3, 9))) + ".\n")
with open(f"{d}/sft.jsonl", "w") as f:
    for _ in range(300):
        w = [random.choice(words) for _ in range(3)]
        f.write(json.dumps({"messages": [{"role": "user", "content": "reverse: " + " ".join(w)},
                                         {"role": "assistant", "content": " ".join(reversed(w))}]}) + "\n")
PY

# the safetensors header of a file: {name: shape}
st_shapes() {
  python3 -c 'import json,struct,sys; d=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",d[:8])[0]; h=json.loads(d[8:8+n]); h.pop("__metadata__",None); print(json.dumps({k:v["shape"] for k,v in h.items()}))' "$1"
}

"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --special "<|im_start|>" --special "<|im_end|>" --out "$T/tok" > /dev/null 2>&1
"$BIN" train --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 2 --heads 2 --dim 32 --context 64 --batch 16 \
  --steps 60 --lr 3e-3 --warmup 6 --eval-every 60 --eval-batches 2 --seed 7 --threads 2 --quiet --out "$T/base" \
  > /dev/null 2> "$T/base.err"
check "pre-train a tiny GPT-2" "[ -f $T/base/model.safetensors ]"

SFT=(sft --model "$T/base" --data "$T/sft.jsonl" --max-length 64 --batch 16 --lr 1e-2 --steps 40 --save-every 20
     --lora-rank 4 --lora-alpha 8 --seed 3 --threads 2 --quiet)
"$BIN" "${SFT[@]}" --out "$T/run" > "$T/run.out" 2> "$T/run.err"; rc=$?
check "sft --lora-rank 4 runs" "[ $rc -eq 0 ] && grep -q 'LoRA r = 4' $T/run.err"
first=$(python3 -c "import json; L=[json.loads(l) for l in open('$T/run/metrics.jsonl')]; L=[x['loss'] for x in L if 'loss' in x]; print(sum(L[:5])/5, sum(L[-5:])/5)")
check "the assistant-token loss falls (first 5 steps vs last 5: $first)" \
  "python3 -c 'import sys; a,b=map(float,\"$first\".split()); sys.exit(not b < 0.9 * a)'"
check "OUT holds the PEFT adapter (adapter_config.json + adapter_model.safetensors) and no full model" \
  "[ -f $T/run/adapter_config.json ] && [ -f $T/run/adapter_model.safetensors ] && [ ! -f $T/run/model.safetensors ]"
check "adapter_config.json: LORA, r 4, lora_alpha 8, all-linear = c_attn c_proj c_fc, Conv1D, the base's path" \
  "python3 -c 'import json,sys; c=json.load(open(\"$T/run/adapter_config.json\")); sys.exit(not (c[\"peft_type\"]==\"LORA\" and c[\"r\"]==4 and c[\"lora_alpha\"]==8 and sorted(c[\"target_modules\"])==[\"c_attn\",\"c_fc\",\"c_proj\"] and c[\"fan_in_fan_out\"] is True and c[\"task_type\"]==\"CAUSAL_LM\" and c[\"base_model_name_or_path\"]==\"$T/base\"))'"
st_shapes "$T/run/adapter_model.safetensors" > "$T/adapter.shapes"
st_shapes "$T/run/optimizer.safetensors" > "$T/opt.shapes"
st_shapes "$T/base/model.safetensors" > "$T/base.shapes"
check "optimizer.safetensors: exp_avg and exp_avg_sq as large as the adapter, not the model" \
  "python3 -c 'import json,math,sys; a=json.load(open(\"$T/adapter.shapes\")); o=json.load(open(\"$T/opt.shapes\")); b=json.load(open(\"$T/base.shapes\")); na=sum(math.prod(s) for s in a.values()); nb=sum(math.prod(s) for s in b.values()); print(\"     adapter\", na, \"values, optimizer\", o, \"model\", nb); sys.exit(not (len(a)==16 and o==dict(exp_avg=[na],exp_avg_sq=[na]) and na*5 < nb))'"
check "checkpoints hold the adapter too" "[ -f $T/run/checkpoint-20/adapter_model.safetensors ] && [ ! -f $T/run/checkpoint-20/model.safetensors ]"

# bit-exact resume: from the step-20 checkpoint into another directory
"$BIN" sft --resume "$T/run/checkpoint-20" --out "$T/resumed" --threads 2 --quiet > /dev/null 2> "$T/res.err"; rc=$?
check "resume from checkpoint-20 runs" "[ $rc -eq 0 ]"
check "resumed: the same adapter, bit for bit" "cmp -s $T/run/adapter_model.safetensors $T/resumed/adapter_model.safetensors"
check "resumed: the same optimizer state, bit for bit" "cmp -s $T/run/optimizer.safetensors $T/resumed/optimizer.safetensors"
check "resumed: the same losses for steps 21-40" \
  "diff <(grep -E '\"step\": (2[1-9]|3[0-9]|40),' $T/run/metrics.jsonl | grep loss | sed 's/, \"tokens_per_sec.*//') <(grep loss $T/resumed/metrics.jsonl | grep -E '\"step\": (2[1-9]|3[0-9]|40),' | sed 's/, \"tokens_per_sec.*//')"

# merge
"$BIN" lora merge --adapter "$T/run" --out "$T/merged" > /dev/null 2> "$T/merge.err"; rc=$?
check "lora merge writes a full model (base named by adapter_config.json)" \
  "[ $rc -eq 0 ] && [ -f $T/merged/model.safetensors ] && [ -f $T/merged/config.json ] && [ -f $T/merged/tokenizer.json ]"
st_shapes "$T/merged/model.safetensors" > "$T/merged.shapes"
check "the merged model has the base's tensors and shapes" "cmp -s $T/base.shapes $T/merged.shapes"
P="reverse: cat sun tree"
"$BIN" generate --model "$T/merged" --prompt "$P" --temperature 0 --max-tokens 12 --threads 2 > "$T/g_merged.txt" 2>&1
"$BIN" generate --adapter "$T/run" --prompt "$P" --temperature 0 --max-tokens 12 --threads 2 > "$T/g_adapter.txt" 2>&1; rc=$?
"$BIN" generate --model "$T/base" --prompt "$P" --temperature 0 --max-tokens 12 --threads 2 > "$T/g_base.txt" 2>&1
check "generate --adapter: base + adapter = the merged model's greedy text ($(head -c 60 $T/g_adapter.txt | tr '\n' ' '))" \
  "[ $rc -eq 0 ] && cmp -s $T/g_merged.txt $T/g_adapter.txt"
check "... and not the base's" "! cmp -s $T/g_base.txt $T/g_adapter.txt"
"$BIN" generate --model "$T/base" --adapter "$T/run" --prompt "$P" --temperature 0 --max-tokens 12 --threads 2 > "$T/g_both.txt" 2>&1
check "generate --model BASE --adapter DIR: the same" "cmp -s $T/g_merged.txt $T/g_both.txt"
head -200 "$T/corpus.txt" > "$T/held.txt"
"$BIN" eval --adapter "$T/run" --data "$T/held.txt" --threads 2 > "$T/e_adapter.txt" 2>&1; rc=$?
"$BIN" eval --model "$T/merged" --data "$T/held.txt" --threads 2 > "$T/e_merged.txt" 2>&1
check "eval --adapter (unmerged) = eval of the merged model: $(cat $T/e_adapter.txt)" \
  "[ $rc -eq 0 ] && cmp -s $T/e_adapter.txt $T/e_merged.txt"

# other targets
"$BIN" sft --model "$T/base" --data "$T/sft.jsonl" --max-length 64 --batch 16 --steps 3 --lora-rank 2 --lora-targets attn \
  --threads 2 --quiet --out "$T/attn" > /dev/null 2>&1
check "--lora-targets attn: target_modules [attn.c_attn, attn.c_proj] (GPT-2's two c_proj told apart)" \
  "python3 -c 'import json,sys; c=json.load(open(\"$T/attn/adapter_config.json\")); sys.exit(not sorted(c[\"target_modules\"])==[\"attn.c_attn\",\"attn.c_proj\"])'"
"$BIN" sft --model "$T/base" --data "$T/sft.jsonl" --max-length 64 --batch 16 --steps 3 --adapter "$T/attn" \
  --threads 2 --quiet --out "$T/attn2" > /dev/null 2>&1; rc=$?
check "sft --adapter DIR goes on training an adapter" "[ $rc -eq 0 ] && [ -f $T/attn2/adapter_model.safetensors ] && ! cmp -s $T/attn/adapter_model.safetensors $T/attn2/adapter_model.safetensors"

# bad input
"$BIN" sft --model "$T/base" --data "$T/sft.jsonl" --out "$T/x1" --lora-alpha 8 > /dev/null 2> "$T/e1"; rc=$?
check "--lora-alpha without --lora-rank: one error" "one_error $T/e1 'need --lora-rank' $rc"
"$BIN" sft --model "$T/base" --data "$T/sft.jsonl" --out "$T/x2" --lora-rank 4 --lora-targets everything > /dev/null 2> "$T/e2"; rc=$?
check "--lora-targets everything: one error" "one_error $T/e2 'all-linear, attn or mlp' $rc"
mkdir -p "$T/ia3" && cp "$T/run/adapter_model.safetensors" "$T/ia3/" && \
  sed 's/"LORA"/"IA3"/' "$T/run/adapter_config.json" > "$T/ia3/adapter_config.json"
"$BIN" generate --model "$T/base" --adapter "$T/ia3" --prompt x > /dev/null 2> "$T/e3"; rc=$?
check "an IA3 adapter: one error naming peft_type" "one_error $T/e3 'peft_type' $rc"
mkdir -p "$T/mlp" && cp "$T/run/adapter_model.safetensors" "$T/mlp/" && \
  python3 -c "import json; c=json.load(open('$T/run/adapter_config.json')); c['target_modules']=['mlp.c_fc']; json.dump(c, open('$T/mlp/adapter_config.json','w'))"
"$BIN" generate --model "$T/base" --adapter "$T/mlp" --prompt x > /dev/null 2> "$T/e4"; rc=$?
check "tensors of modules target_modules does not select: one error naming one" "one_error $T/e4 'unexpected tensor' $rc"
mkdir -p "$T/r8" && cp "$T/run/adapter_model.safetensors" "$T/r8/" && \
  python3 -c "import json; c=json.load(open('$T/run/adapter_config.json')); c['r']=8; json.dump(c, open('$T/r8/adapter_config.json','w'))"
"$BIN" generate --model "$T/base" --adapter "$T/r8" --prompt x > /dev/null 2> "$T/e5"; rc=$?
check "r disagreeing with the tensors: one error naming the tensor and shapes" "one_error $T/e5 'lora_A.weight' $rc"
"$BIN" train --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 2 --heads 2 --dim 48 --context 64 --batch 4 \
  --steps 1 --threads 2 --quiet --out "$T/other" > /dev/null 2>&1
"$BIN" generate --model "$T/other" --adapter "$T/run" --prompt x > /dev/null 2> "$T/e6"; rc=$?
check "an adapter on another base (n_embd 48, not 32): one error" "one_error $T/e6 'shape' $rc"
"$BIN" lora merge --adapter "$T/nothing" --out "$T/x3" > /dev/null 2> "$T/e7"; rc=$?
check "lora merge of a missing adapter: one error" "one_error $T/e7 'adapter_config.json' $rc"
echo '{"r": 4}' > "$T/bad.json"; mkdir -p "$T/nocfg" && cp "$T/bad.json" "$T/nocfg/adapter_config.json"
"$BIN" generate --adapter "$T/nocfg" --prompt x > /dev/null 2> "$T/e8"; rc=$?
check "an adapter without base_model_name_or_path and no --model: one error" "one_error $T/e8 'base_model_name_or_path' $rc"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
