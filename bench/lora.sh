#!/usr/bin/env bash
# LoRA vs full fine-tuning (docs/posttraining.md, "LoRA"): the same `lmkit sft`
# run on the same model, data and batch, once training every parameter and once
# training rank-R adapters on every linear (the base frozen). Reports the median
# optimiser step time (metrics.jsonl step_ms), peak RSS (/usr/bin/time -v), the
# trainable values and the size of optimizer.safetensors. CPU seconds per step (user + system over
# the whole run, loading included) are less sensitive than wall time to other jobs on the machine.
#
#   bench/lora.sh [BUILD_DIR]      env: DIM (512) LAYERS (8) HEADS (8) CTX (256) BATCH (8) STEPS (30) RANK (16)
# Instruction data: ../shared/data/instruct/alpaca_subset_train.jsonl.gz when present, else generated.
set -eu
BUILD=${1:-build}
BIN="$BUILD/lmkit"
DIM=${DIM:-512}; LAYERS=${LAYERS:-8}; HEADS=${HEADS:-8}; CTX=${CTX:-256}; BATCH=${BATCH:-8}; STEPS=${STEPS:-30}; RANK=${RANK:-16}
T=${KEEP_T:-$(mktemp -d)}; [ -n "${KEEP_T:-}" ] || trap 'rm -rf "$T"' EXIT; mkdir -p "$T"
unset OPENBLAS_CORETYPE
SRC="$(dirname "$0")/../../shared/data/instruct/alpaca_subset_train.jsonl.gz"
if [ -f "$SRC" ]; then
  gzip -dc "$SRC" | head -2000 > "$T/sft.jsonl"
else
  python3 - "$T/sft.jsonl" <<'PY'
import json, random, sys
random.seed(1)
w = "the a cat dog sun moon red blue green tree fish bird star rock river hill".split()
with open(sys.argv[1], "w") as f:
    for _ in range(2000):
        q = " ".join(random.choice(w) for _ in range(random.randint(5, 40)))
        f.write(json.dumps({"prompt": "Repeat: " + q, "completion": q}) + "\n")
PY
fi
python3 -c "
import json,sys
for l in open('$T/sft.jsonl'):
    r=json.loads(l); print(' '.join(str(v) for v in r.values() if isinstance(v,str)))" > "$T/text.txt"
"$BIN" tokenizer train --data "$T/text.txt" --vocab-size 4096 --out "$T/tok" > /dev/null 2>&1
# a base of the benchmark's size (its weights do not matter for speed)
"$BIN" train --tokenizer "$T/tok" --data "$T/text.txt" --layers "$LAYERS" --heads "$HEADS" --dim "$DIM" --context "$CTX" \
  --batch 2 --steps 1 --quiet --out "$T/base" > /dev/null 2>&1
run() {   # name, extra flags
  /usr/bin/time -v "$BIN" sft --model "$T/base" --data "$T/sft.jsonl" --max-length "$CTX" --packing --batch "$BATCH" \
    --steps "$STEPS" --eval-every 0 --quiet --out "$T/$1" "${@:2}" > /dev/null 2> "$T/$1.time"
  python3 - "$T/$1" "$1" <<'PY'
import json, os, re, statistics, struct, sys
d, name = sys.argv[1], sys.argv[2]
ms = [json.loads(l)["step_ms"] for l in open(f"{d}/metrics.jsonl") if '"step_ms"' in l][3:]
tv = open(d + ".time").read()
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv).group(1)) / 1024
cpu = sum(float(re.search(rf"{k} time \(seconds\): ([0-9.]+)", tv).group(1)) for k in ("User", "System"))
with open(f"{d}/optimizer.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
state = h["exp_avg"]["shape"][0]
steps = sum(1 for l in open(f"{d}/metrics.jsonl") if '"step_ms"' in l)
print(f"{name:5s} step {statistics.median(ms):8.1f} ms (median of {len(ms)}), CPU {cpu / steps:6.2f} s/step (whole run)  peak RSS {rss:7.1f} MiB  "
      f"trainable {state:>10,d}  optimizer.safetensors {os.path.getsize(f'{d}/optimizer.safetensors') / 2**20:7.2f} MiB")
PY
}
echo "sft: dim $DIM, $LAYERS layers, context $CTX, batch $BATCH packed, $STEPS steps, $(nproc) cores; LoRA rank $RANK on all linears"
run full
run lora --lora-rank "$RANK"
