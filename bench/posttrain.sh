#!/usr/bin/env bash
# Post-training benchmark (issue #8): the whole path from text to an assistant,
# on this machine, with what each step buys.
#   1. pre-train a ~23M-parameter GPT on English text (Debian's fortunes +
#      tinyshakespeare from ../shared/data; no instruction data);
#   2. SFT it on ../shared/data/instruct (Alpaca-style), 5% held out;
#   3. a reward model on ../shared/data/preference, 10% held out;
#   4. DPO from the SFT model on the same preferences.
# Reports: held-out response loss and stop rate, base vs SFT; reward-model pair
# accuracy; DPO implicit-reward accuracy; the reward model's win rate of DPO
# over SFT answers on held-out prompts; SFT tokens/s and MFU against PyTorch
# CPU on the same model and batch; LoRA step time and peak RSS against full
# fine-tuning.
#   bash bench/posttrain.sh            full run (about 40 minutes on 2 quiet cores)
#   SCALE=quick bash bench/posttrain.sh   a small run (minutes) to check the path
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/lmkit
SHARED=${SHARED:-../shared/data}
W=${WORK:-runs/posttrain}
SCALE=${SCALE:-full}
THREADS=${THREADS:-2}
[ -x "$BIN" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$BUILD" -j "$(nproc)"; }
for f in instruct/alpaca_subset_train.jsonl.gz instruct/alpaca_libre_ok.jsonl.gz preference/alpaca_synthetic_prefs_train.jsonl.gz tinyshakespeare/input.txt; do
  [ -f "$SHARED/$f" ] || { echo "posttrain: $SHARED/$f not found (shared/data)" >&2; exit 1; }
done
unset OPENBLAS_CORETYPE
export OMP_NUM_THREADS=$THREADS
if [ "$SCALE" = quick ]; then
  LAYERS=2; DIM=128; HEADS=4; VOCAB=2048; PRE_STEPS=150; SFT_STEPS=60; RM_STEPS=40; DPO_STEPS=30; N_GEN=20; MAXLEN=192
else
  LAYERS=6; DIM=512; HEADS=8; VOCAB=8192; PRE_STEPS=600; SFT_STEPS=300; RM_STEPS=150; DPO_STEPS=100; N_GEN=50; MAXLEN=256
fi
mkdir -p "$W"
echo "load: $(uptime)"
echo "scale: $SCALE ($LAYERS layers x $DIM, vocab $VOCAB, context $MAXLEN)"
t_all=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t_all )) s] $*"; }

# ---- data
if [ ! -s "$W/pretrain.txt" ]; then
  find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' -print0 | sort -z | xargs -0 cat | sed 's/^%$//' > "$W/pretrain.txt"
  cat "$SHARED/tinyshakespeare/input.txt" >> "$W/pretrain.txt"
fi
/usr/bin/python3 - "$SHARED" "$W" <<'PY'
import gzip, json, random, sys
shared, w = sys.argv[1], sys.argv[2]
rows = []
for f in ("instruct/alpaca_subset_train.jsonl.gz", "instruct/alpaca_libre_ok.jsonl.gz"):
    rows += [json.loads(l) for l in gzip.open(f"{shared}/{f}", "rt", encoding="utf-8") if l.strip()]
random.Random(7).shuffle(rows)
n_held = len(rows) // 20
with open(f"{w}/sft_held.jsonl", "w") as f:
    for r in rows[:n_held]: f.write(json.dumps(r) + "\n")
with open(f"{w}/sft_train.jsonl", "w") as f:
    for r in rows[n_held:]: f.write(json.dumps(r) + "\n")
prefs = [json.loads(l) for l in gzip.open(f"{shared}/preference/alpaca_synthetic_prefs_train.jsonl.gz", "rt", encoding="utf-8") if l.strip()]
random.Random(8).shuffle(prefs)
n_held = len(prefs) // 10
with open(f"{w}/prefs_held.jsonl", "w") as f:
    for r in prefs[:n_held]: f.write(json.dumps(r) + "\n")
with open(f"{w}/prefs_train.jsonl", "w") as f:
    for r in prefs[n_held:]: f.write(json.dumps(r) + "\n")
# held-out prompts for generation: user turns of the held-out instructions
with open(f"{w}/prompts.txt", "w") as f:
    for r in rows[:n_held]:
        u = r["instruction"] + ("\n\n" + r["input"] if r.get("input") else "")
        f.write(json.dumps(u) + "\n")
print(f"data: {len(rows) - len(rows)//20} SFT train / {len(rows)//20} held out; {len(prefs) - n_held} preference pairs / {n_held} held out")
PY
echo "pre-training text: $(wc -c < "$W/pretrain.txt") bytes"

# ---- 1. tokenizer and pre-training
if [ ! -f "$W/base/model.safetensors" ]; then
  "$BIN" tokenizer train --data "$W/pretrain.txt" --vocab-size $VOCAB --out "$W/tok" > /dev/null 2>&1
  "$BIN" data prepare --tokenizer "$W/tok" --data "$W/pretrain.txt" --out "$W/shards" > /dev/null 2>&1
  stamp "pre-training"
  "$BIN" train --tokenizer "$W/tok" --data "$W/shards" --layers $LAYERS --heads $HEADS --dim $DIM --context $MAXLEN \
    --batch 8 --steps $PRE_STEPS --lr 6e-4 --eval-every $((PRE_STEPS / 4)) --threads $THREADS --quiet --out "$W/base" > "$W/base.log" 2>&1
fi
stamp "base: $(tail -1 "$W/base.log")"

# ---- 2. SFT
if [ ! -f "$W/sft/model.safetensors" ]; then
  stamp "SFT"
  "$BIN" sft --model "$W/base" --data "$W/sft_train.jsonl" --eval "$W/sft_held.jsonl" --max-length $MAXLEN --packing \
    --batch 8 --steps $SFT_STEPS --lr 3e-4 --eval-every $((SFT_STEPS / 3)) --threads $THREADS --quiet --out "$W/sft" > "$W/sft.log" 2>&1
fi
base_loss=$("$BIN" sft --model "$W/base" --eval "$W/sft_held.jsonl" --eval-only --max-length $MAXLEN 2>/dev/null | sed 's/.*"val_loss": \([0-9.]*\).*/\1/')
sft_loss=$("$BIN" sft --model "$W/sft" --eval "$W/sft_held.jsonl" --eval-only --max-length $MAXLEN 2>/dev/null | sed 's/.*"val_loss": \([0-9.]*\).*/\1/')
sft_tps=$(grep '"tokens_per_sec"' "$W/sft/metrics.jsonl" | sed 's/.*"tokens_per_sec": \([0-9.]*\).*/\1/' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

# stop rate: responses that end with the end-of-turn token within 256 tokens
stop_rate() {
  head -n $N_GEN "$W/prompts.txt" | /usr/bin/python3 -c 'import json,sys; [print(json.loads(l).replace("\n", " ")) for l in sys.stdin]' \
    | "$BIN" generate --model "$1" --user - --max-tokens 256 --temperature 0 --threads $THREADS 2>/dev/null > "$2"
  /usr/bin/python3 - "$2" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
print("%.2f" % (sum(1 for x in r if x["stopped"]) / max(1, len(r))))
PY
}
stamp "generating from base and SFT"
base_stop=$(stop_rate "$W/base" "$W/gen_base.jsonl")
sft_stop=$(stop_rate "$W/sft" "$W/gen_sft.jsonl")

# ---- 3. reward model
if [ ! -f "$W/rm/model.safetensors" ]; then
  stamp "reward model"
  "$BIN" reward --model "$W/sft" --data "$W/prefs_train.jsonl" --eval "$W/prefs_held.jsonl" --max-length $MAXLEN \
    --batch 8 --steps $RM_STEPS --lr 1e-4 --eval-every $((RM_STEPS / 2)) --threads $THREADS --quiet --out "$W/rm" > "$W/rm.log" 2>&1
fi
rm_acc=$(grep '"val_loss"' "$W/rm/metrics.jsonl" | tail -1 | sed 's/.*"val_accuracy": \([0-9.]*\).*/\1/')

# ---- 4. DPO
if [ ! -f "$W/dpo/model.safetensors" ]; then
  stamp "DPO"
  "$BIN" dpo --model "$W/sft" --data "$W/prefs_train.jsonl" --eval "$W/prefs_held.jsonl" --max-length $MAXLEN --beta 0.1 \
    --batch 8 --steps $DPO_STEPS --lr 5e-5 --eval-every $((DPO_STEPS / 2)) --threads $THREADS --quiet --out "$W/dpo" > "$W/dpo.log" 2>&1
fi
dpo_acc=$(grep '"val_loss"' "$W/dpo/metrics.jsonl" | tail -1 | sed 's/.*"val_rewards\/accuracies": \([0-9.]*\).*/\1/')

# win rate of DPO over SFT answers, judged by the reward model on held-out prompts
stamp "win rate"
head -n $N_GEN "$W/prompts.txt" | /usr/bin/python3 -c 'import json,sys; [print(json.loads(l).replace("\n", " ")) for l in sys.stdin]' \
  | "$BIN" generate --model "$W/dpo" --user - --max-tokens 256 --temperature 0 --threads $THREADS 2>/dev/null > "$W/gen_dpo.jsonl"
for k in sft dpo; do
  /usr/bin/python3 -c 'import json,sys; [print(json.dumps({"prompt": r["prompt"], "response": r["response"]})) for r in map(json.loads, open(sys.argv[1]))]' \
    "$W/gen_$k.jsonl" | "$BIN" score --model "$W/rm" --threads $THREADS > "$W/score_$k.txt"
done
# a pair where either answer is too long to score (null) is left out
win=$(paste "$W/score_sft.txt" "$W/score_dpo.txt" | awk '$1 != "null" && $2 != "null" {n++; if ($2 > $1) w++; else if ($2 == $1) w += 0.5} END {printf "%.2f (%d scored)", w / n, n}')

# ---- speed: SFT's training step against PyTorch CPU, same model and batch
stamp "speed vs PyTorch"
V=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$W/base/config.json")
ours=$("$BUILD/bench_train_gpt2" $LAYERS $HEADS $DIM $V 8 $MAXLEN 5 $MAXLEN | tail -1)
peak=$(echo "$ours" | sed 's/.*"sgemm_peak_gflops": \([0-9.]*\).*/\1/')
theirs=$(/usr/bin/python3 bench/train_gpt2_torch.py $LAYERS $HEADS $DIM $V 8 $MAXLEN 5 "$peak" $THREADS | tail -1)
num() { echo "$1" | sed "s/.*\"$2\": \([0-9.]*\).*/\1/"; }

# ---- LoRA against full fine-tuning: step time and peak RSS on the same SFT data
stamp "LoRA vs full"
lora_run() {
  /usr/bin/time -v "$BIN" sft --model "$W/base" --data "$W/sft_train.jsonl" --max-length $MAXLEN --packing --batch 8 --steps 10 \
    --eval-every 0 --threads $THREADS --quiet --out "$W/$1" "${@:2}" > /dev/null 2> "$W/$1.time"
  step=$(grep '"step_ms"' "$W/$1/metrics.jsonl" | sed 's/.*"step_ms": \([0-9.]*\).*/\1/' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  rss=$(grep 'Maximum resident' "$W/$1.time" | awk '{print $NF / 1024}')
  echo "$step $rss"
}
rm -rf "$W/full10" "$W/lora10"
read full_ms full_rss < <(lora_run full10)
read lora_ms lora_rss < <(lora_run lora10 --lora-rank 8 --lora-alpha 16)

echo
echo "== post-training, $SCALE scale ($(( $(date +%s) - t_all )) s in all; load now: $(cut -d' ' -f1-3 /proc/loadavg))"
printf "held-out response loss   base %.3f   SFT %.3f\n" "$base_loss" "$sft_loss"
printf "stop rate (<= 256 tok)   base %s   SFT %s   (%d held-out prompts, greedy)\n" "$base_stop" "$sft_stop" $N_GEN
printf "reward model             held-out pair accuracy %s\n" "$rm_acc"
printf "DPO                      held-out implicit-reward accuracy %s\n" "$dpo_acc"
printf "DPO vs SFT               reward-model win rate %s of %d held-out prompts\n" "$win" $N_GEN
printf "SFT step (B8 x T%d)      lmkit %s tok/s (MFU %s)   PyTorch %s tok/s (MFU %s)   %.2fx   [in the SFT run: median %s tok/s]\n" \
  $MAXLEN "$(num "$ours" tokens_per_s)" "$(num "$ours" mfu)" "$(num "$theirs" tokens_per_s)" "$(num "$theirs" mfu)" \
  "$(/usr/bin/python3 -c "print($(num "$ours" tokens_per_s) / $(num "$theirs" tokens_per_s))")" "$sft_tps"
printf "LoRA r=8 vs full         step %s ms vs %s ms   peak RSS %s MB vs %s MB\n" "$lora_ms" "$full_ms" "$lora_rss" "$full_rss"
