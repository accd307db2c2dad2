#!/usr/bin/env bash
# The Llama family through the CLI, end to end on a tiny generated task:
#   - `lmkit train --arch llama` (GQA, SwiGLU, RoPE) learns: the validation loss falls well below the
#     start; a run resumed from its middle checkpoint continues the loss curve bit for bit;
#   - the saved directory is a LlamaForCausalLM directory (config keys, HF tensor names);
#   - `generate` (KV cache) and `eval` run on it; `info` describes the block;
#   - the post-training commands take a Llama: `sft` lowers the held-out assistant loss, `reward`
#     trains a LlamaForSequenceClassification and `score` reads it, `dpo` runs;
#   - LoRA on a Llama: `sft --lora-rank` saves a PEFT adapter of the seven HF modules (q/k/v and
#     gate/up are fused inside lmkit), `generate --adapter` and `lora merge` use it;
#   - `--arch mistral` and `--arch qwen2` train and reload; bad flags are clear errors.
# (Correctness against PyTorch and the HF layouts: tests/reference/test_llama.py.)
source "$(dirname "$0")/lib.sh"
losses() { python3 -c "
import json, sys
print(' '.join(repr(json.loads(l)[sys.argv[2]]) for l in open(sys.argv[1]) if sys.argv[2] in json.loads(l)))" "$1" "$2"; }

python3 - "$T" <<'PY'
import json, random, sys
d = sys.argv[1]
r = random.Random(5)
W = ["sun", "moon", "red", "blue", "cat", "dog", "fish", "tree"]
def words(): return [r.choice(W) for _ in range(r.randint(2, 4))]
with open(f"{d}/corpus.txt", "w") as f:
    for _ in range(2000):
        w = words(); f.write("reverse: " + " ".join(w) + "\n" + " ".join(w[::-1]) + "\n")
with open(f"{d}/sft.jsonl", "w") as f:
    for _ in range(600):
        w = words()
        f.write(json.dumps({"prompt": "reverse: " + " ".join(w), "completion": " ".join(w[::-1])}) + "\n")
with open(f"{d}/prefs.jsonl", "w") as f:
    for _ in range(200):
        w = words(); a = " ".join(w[::-1])
        f.write(json.dumps({"prompt": "reverse: " + " ".join(w), "chosen": a, "rejected": "well, " + a}) + "\n")
PY

"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --special "<|endoftext|>" --special "<|im_start|>" \
  --special "<|im_end|>" --out "$T/tok" > /dev/null 2>&1
TRAIN=(--arch llama --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 2 --heads 4 --kv-heads 2 --dim 64 --context 64
       --batch 8 --lr 3e-3 --eval-every 40 --eval-batches 4 --seed 9 --threads 1 --quiet)
"$BIN" train "${TRAIN[@]}" --steps 120 --save-every 60 --out "$T/base" > "$T/base.log" 2>&1; rc=$?
tl=($(losses "$T/base/metrics.jsonl" loss)); vl=($(losses "$T/base/metrics.jsonl" val_loss))
check "train --arch llama runs (rc $rc) and learns: train loss ${tl[0]:-} at step 1, val loss ${vl[*]}" \
  "[ $rc = 0 ] && python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; sys.exit(0 if len(v) >= 3 and v[-1] < 0.4 * v[0] else 1)' ${tl[0]:-x} ${vl[*]:-x}"
python3 - "$T/base" > "$T/layout.txt" <<'PY'
import json, struct, sys
d = sys.argv[1]
c = json.load(open(f"{d}/config.json"))
with open(f"{d}/model.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
names = set(h) - {"__metadata__"}
want = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
for l in range(2):
    p = f"model.layers.{l}."
    want |= {p + x for x in ("input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                             "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                             "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")}
ok = (names == want and c["architectures"] == ["LlamaForCausalLM"] and c["num_key_value_heads"] == 2
      and h["model.layers.0.self_attn.k_proj.weight"]["shape"] == [32, 64] and c["intermediate_size"] == 192
      and c["hidden_act"] == "silu")
print("ok" if ok else f"names {sorted(names ^ want)} config {c}")
PY
check "the run is a LlamaForCausalLM directory (HF names, k_proj 32x64 for 2 of 4 heads): $(head -c 200 "$T/layout.txt")" \
  'grep -qx ok "$T/layout.txt"'

# resume from the middle checkpoint: the same curve, bit for bit
"$BIN" train "${TRAIN[@]}" --steps 120 --save-every 60 --resume "$T/base/checkpoint-60" --out "$T/resumed" > "$T/res.log" 2>&1
a=$(losses "$T/base/metrics.jsonl" loss | tr ' ' '\n' | tail -60 | tr '\n' ' ')
b=$(losses "$T/resumed/metrics.jsonl" loss | tr ' ' '\n' | tail -60 | tr '\n' ' ')
check "resume at step 60 continues the loss curve bit for bit" '[ "$(echo $a | wc -w)" -eq 60 ] && [ "$a" = "$b" ]'
check "resume ends with the same weights" 'cmp -s "$T/base/model.safetensors" "$T/resumed/model.safetensors"'

out=$("$BIN" generate --model "$T/base" --prompt "reverse: sun cat" --temperature 0 --max-tokens 8 --threads 1 2>/dev/null); rc=$?
check "generate runs on a llama model (rc $rc): '$(echo "$out" | head -2 | tr '\n' '|')'" '[ $rc = 0 ] && [ -n "$out" ]'
ev=$("$BIN" eval --model "$T/base" --data "$T/corpus.txt" --threads 1 2>/dev/null | tail -1)
check "eval runs: $ev" 'echo "$ev" | grep -q "^loss "'
info=$("$BIN" info "$T/base" 2>/dev/null)
check "info describes GQA, SwiGLU and RoPE" 'echo "$info" | grep -q "2 key/value heads" && echo "$info" | grep -q "gated silu" && echo "$info" | grep -q "rotary"'

# post-training on a Llama
"$BIN" sft --model "$T/base" --data "$T/sft.jsonl" --max-length 48 --steps 60 --lr 3e-3 --eval-every 30 --val-fraction 0.1 --threads 1 \
  --quiet --out "$T/sft" > "$T/sft.log" 2>&1; rc=$?
sv=($(losses "$T/sft/metrics.jsonl" val_loss))
check "sft on a llama runs (rc $rc) and the held-out assistant loss falls: ${sv[*]}" \
  "[ $rc = 0 ] && python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; sys.exit(0 if len(v) >= 2 and v[-1] < v[0] else 1)' ${sv[*]:-x}"
"$BIN" reward --model "$T/sft" --data "$T/prefs.jsonl" --max-length 48 --steps 30 --lr 1e-3 --threads 1 --quiet \
  --out "$T/rm" > "$T/rm.log" 2>&1; rc=$?
check "reward on a llama saves a LlamaForSequenceClassification (rc $rc)" \
  "[ $rc = 0 ] && grep -q LlamaForSequenceClassification $T/rm/config.json"
sc=$(printf '{"prompt": "reverse: sun cat", "response": "cat sun"}\n' | "$BIN" score --model "$T/rm" --threads 1 2>/dev/null)
check "score reads it: $sc" 'echo "$sc" | grep -q "[0-9]"'
"$BIN" dpo --model "$T/sft" --data "$T/prefs.jsonl" --max-length 48 --steps 12 --batch 8 --lr 3e-4 --threads 1 --quiet \
  --out "$T/dpo" > "$T/dpo.log" 2>&1; rc=$?
check "dpo on a llama runs (rc $rc)" "[ $rc = 0 ] && [ -f $T/dpo/model.safetensors ]"

# LoRA: PEFT's per-module adapters on the fused matrices
"$BIN" sft --model "$T/base" --data "$T/sft.jsonl" --max-length 48 --steps 20 --lr 3e-3 --threads 1 --quiet \
  --lora-rank 4 --out "$T/lora" > "$T/lora.log" 2>&1; rc=$?
tm=$(python3 -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['target_modules']))" "$T/lora/adapter_config.json" 2>&1)
check "sft --lora-rank on a llama (rc $rc) saves a PEFT adapter of the HF modules: $tm" \
  '[ $rc = 0 ] && [ "$tm" = "q_proj k_proj v_proj o_proj gate_proj up_proj down_proj" ]'
a=$("$BIN" generate --model "$T/base" --adapter "$T/lora" --prompt "reverse: sun cat" --temperature 0 --max-tokens 6 --threads 1 2>/dev/null)
"$BIN" lora merge --adapter "$T/lora" --model "$T/base" --out "$T/merged" > /dev/null 2>&1
b=$("$BIN" generate --model "$T/merged" --prompt "reverse: sun cat" --temperature 0 --max-tokens 6 --threads 1 2>/dev/null)
check "generate --adapter equals generate on the merged model: '$a'" '[ -n "$a" ] && [ "$a" = "$b" ]'

# the relatives
for arch in mistral qwen2; do
  "$BIN" train --arch $arch --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 1 --heads 4 --kv-heads 1 --dim 32 \
    --context 32 --batch 4 --steps 10 --threads 1 --quiet --out "$T/$arch" > "$T/$arch.log" 2>&1; rc=$?
  g=$("$BIN" generate --model "$T/$arch" --prompt "reverse" --max-tokens 4 --threads 1 2>&1 >/dev/null); rc2=$?
  check "train --arch $arch (rc $rc) saves a $arch model that generate reloads (rc $rc2)" \
    "[ $rc = 0 ] && [ $rc2 = 0 ] && grep -q '\"model_type\": \"$arch\"' $T/$arch/config.json"
done

err=$("$BIN" train --arch llama --data "$T/corpus.txt" --heads 4 --kv-heads 3 --dim 64 --steps 1 --out "$T/x" 2>&1); rc=$?
check "--kv-heads that does not divide --heads is a clear error: $err" '[ $rc != 0 ] && echo "$err" | grep -q "kv-heads"'
err=$("$BIN" train --arch llama7 --data "$T/corpus.txt" --steps 1 --out "$T/x" 2>&1); rc=$?
check "an unknown --arch names the families: $err" '[ $rc != 0 ] && echo "$err" | grep -q "llama, mistral, qwen2"'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
