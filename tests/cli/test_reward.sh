#!/usr/bin/env bash
# End to end: `lmkit reward` and `lmkit score` on tiny generated data.
#   - a tiny GPT-2 pre-trained on a generated "reverse these words" corpus gets the
#     scalar head and learns a synthetic preference (the preferred answer is the
#     plain reversal; the rejected one adds a filler word or hedges with "well,")
#     to >= 0.95 held-out pair accuracy, with --center-rewards;
#   - the output is a GPT2ForSequenceClassification directory (num_labels 1,
#     pad_token_id, score.weight (1, n_embd) and no LM head) with the tokenizer;
#   - `lmkit score` ranks the held-out pairs as the evaluation did, one line per
#     record, message-list prompts too; malformed lines are refused with stdin:LINE;
#   - --resume from a checkpoint continues the loss curve bit-exactly;
#   - empty / identical / too long pairs are counted and skipped, hh-rlhf dialogues
#     and implicit prompts are read, malformed records are refused with file:line;
#   - LoRA (--lora-rank): adapters + the scalar head train (>= 0.9 accuracy), the
#     optimizer state is adapter-sized, resume is bit-exact, `lmkit score --adapter`
#     equals `lmkit score` of `lmkit lora merge`'s output; --adapter goes on training.
source "$(dirname "$0")/lib.sh"
# err NAME TEXT CMD...: exits non-zero with one "lmkit: error:" line containing TEXT

python3 - "$T" <<'PY'
import json, random, sys
d = sys.argv[1]
random.seed(5)
W = ["sun", "moon", "red", "blue", "cat", "dog", "fish", "tree"]
FILLER = ["um", "like", "so"]
def words(): return [random.choice(W) for _ in range(random.randint(2, 4))]
with open(f"{d}/corpus.txt", "w") as f:
    for _ in range(2000):
        w = words(); f.write("reverse: " + " ".join(w) + "\n" + " ".join(w[::-1]) + "\n")
def pair():
    w = words(); ans = w[::-1]
    if random.random() < 0.5: bad = "well, " + " ".join(ans)
    else:
        b = list(ans); b.insert(random.randint(0, len(b)), random.choice(FILLER)); bad = " ".join(b)
    return {"prompt": "reverse: " + " ".join(w), "chosen": " ".join(ans), "rejected": bad}
train, dev = [pair() for _ in range(320)], [pair() for _ in range(100)]
for name, rows in (("prefs", train), ("dev", dev)):
    with open(f"{d}/{name}.jsonl", "w") as f: f.write("".join(json.dumps(r) + "\n" for r in rows))
# score's input: each dev pair as two records, chosen then rejected; every other one with a message-list prompt
with open(f"{d}/score_in.jsonl", "w") as f:
    for i, r in enumerate(dev):
        p = r["prompt"] if i % 2 else [{"role": "user", "content": r["prompt"]}]
        for resp in (r["chosen"], r["rejected"]): f.write(json.dumps({"prompt": p, "response": resp}) + "\n")
# bad records: 2 empty, 1 identical, 1 too long; an hh-rlhf dialogue and an implicit prompt are good
good = dev[0]
recs = [good,
        {"prompt": "reverse: sun", "chosen": "", "rejected": "sun"},
        {"prompt": "reverse: sun", "chosen": "sun", "rejected": "   "},
        {"prompt": "reverse: sun", "chosen": "sun", "rejected": "sun"},
        {"prompt": "reverse: " + "dog " * 60, "chosen": "dog", "rejected": "well, dog"},
        {"chosen": "\n\nHuman: reverse: red cat\n\nAssistant: cat red",
         "rejected": "\n\nHuman: reverse: red cat\n\nAssistant: well, cat red"},
        {"chosen": [{"role": "user", "content": "reverse: sun"}, {"role": "assistant", "content": "sun"}],
         "rejected": [{"role": "user", "content": "reverse: sun"}, {"role": "assistant", "content": "um sun"}]}]
with open(f"{d}/bad.jsonl", "w") as f: f.write("".join(json.dumps(r) + "\n" for r in recs) + "\n")
with open(f"{d}/allbad.jsonl", "w") as f: f.write("".join(json.dumps(r) + "\n" for r in recs[1:5]))
with open(f"{d}/malformed.jsonl", "w") as f:
    f.write(json.dumps(good) + "\n\n" + json.dumps({"prompt": "x", "chosen": ["no"], "rejected": "y"}) + "\n")
with open(f"{d}/notjson.jsonl", "w") as f: f.write(json.dumps(good) + "\n{\"prompt\": \"x\",\n")
PY

"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --special "<|endoftext|>" --special "<|im_start|>" \
  --special "<|im_end|>" --out "$T/tok" > /dev/null 2>&1
"$BIN" train --tokenizer "$T/tok" --data "$T/corpus.txt" --layers 2 --heads 4 --dim 64 --context 64 --steps 30 \
  --lr 3e-3 --quiet --out "$T/base" > /dev/null 2>&1
check "base model trained" "[ -f $T/base/model.safetensors ]"

# ---- train: held-out accuracy, centering, checkpoints
RUN=(--model "$T/base" --data "$T/prefs.jsonl" --eval "$T/dev.jsonl" --max-length 48 --batch 8 --lr 1e-3 --steps 40
     --center-rewards 0.01 --save-every 20 --eval-every 20 --seed 3 --quiet)
"$BIN" reward "${RUN[@]}" --out "$T/rm" > "$T/rm.out" 2> "$T/rm.err"; rc=$?
check "reward: runs (rc $rc)" "[ $rc = 0 ] && grep -q 'saved to' $T/rm.err"
acc=$(grep -o 'held-out pair accuracy [0-9.]*' "$T/rm.err" | awk '{print $4}')
check "reward: held-out pair accuracy ${acc:-?} >= 0.95" "python3 -c 'import sys; sys.exit(not float(\"${acc:-0}\") >= 0.95)'"
check "reward: metrics.jsonl has val_accuracy and val_margin" \
  "tail -1 $T/rm/metrics.jsonl | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(not (r[\"step\"]==40 and r[\"val_accuracy\"]>=0.95 and r[\"val_margin\"]>0))'"
check "reward: training lines carry the step's accuracy and margin" \
  "[ \$(grep '\"loss\"' $T/rm/metrics.jsonl | grep -c '\"accuracy\": .*\"margin\": ') = 40 ]"
check "reward: loss falls" "python3 - $T/rm/metrics.jsonl <<'PY'
import json, sys
L = [json.loads(l)['loss'] for l in open(sys.argv[1]) if '\"loss\"' in l]
sys.exit(not (sum(L[-5:]) / 5 < 0.5 * sum(L[:5]) / 5))
PY"
check "reward: a GPT2ForSequenceClassification (num_labels 1) with pad_token_id, score.weight and a tokenizer" "python3 - $T/rm <<'PY'
import json, struct, sys
d = sys.argv[1]
c = json.load(open(d + '/config.json'))
raw = open(d + '/model.safetensors', 'rb').read()
h = json.loads(raw[8:8 + struct.unpack('<Q', raw[:8])[0]])
ok = (c['architectures'] == ['GPT2ForSequenceClassification'] and len(c.get('id2label', {'0': 0})) == 1
      and c.get('pad_token_id') is not None and h['score.weight']['shape'] == [1, c['n_embd']]
      and not any(k.startswith('lm_head') for k in h))
import os
sys.exit(not (ok and os.path.exists(d + '/tokenizer.json') and os.path.exists(d + '/posttrain.json')))
PY"
check "reward: progress says how many pairs and the template" "grep -q '320 pairs (ChatML (default)), 100 held out' $T/rm.err"

# ---- resume from the step-20 checkpoint: steps 21..40 repeat exactly
# (timings differ from run to run: compare step, loss, lr and gradient norm)
curve() { grep '"loss"' "$1" | sed 's/, "tokens_per_sec.*//'; }
curve "$T/rm/metrics.jsonl" | tail -20 > "$T/rm.tail"
"$BIN" reward --resume "$T/rm/checkpoint-20" --out "$T/rm2" --quiet > /dev/null 2> "$T/rm2.err"; rc=$?
curve "$T/rm2/metrics.jsonl" > "$T/rm2.all" 2> /dev/null
check "reward: resume continues the loss curve bit-exactly (rc $rc)" "[ -s $T/rm2.all ] && diff -q $T/rm.tail $T/rm2.all > /dev/null"
check "reward: resumed model equals the uninterrupted one" "cmp -s $T/rm/model.safetensors $T/rm2/model.safetensors"
check "reward: the resumed run dir can be resumed too (its posttrain.json)" "[ -f $T/rm2/posttrain.json ]"
err "reward: resume with a setting" "--lr cannot be given with --resume" "$BIN" reward --resume "$T/rm" --lr 1
err "reward: resume a run of another command" "this is an 'lmkit reward' run, not an 'lmkit dpo' one" "$BIN" dpo --resume "$T/rm" --quiet

# ---- score
"$BIN" score --model "$T/rm" --batch 7 < "$T/score_in.jsonl" > "$T/scores.txt" 2> "$T/score.err"; rc=$?
check "score: one reward per record (rc $rc)" "[ $rc = 0 ] && [ \$(wc -l < $T/scores.txt) = \$(wc -l < $T/score_in.jsonl) ]"
sacc=$(paste - - < "$T/scores.txt" | awk '{n++; if ($1 > $2) k++} END {printf "%.4f", k / n}')
check "score: ranks held-out pairs as the evaluation did (${sacc} vs ${acc:-?})" "[ '$sacc' = '${acc:-x}' ]"
"$BIN" score --model "$T/rm" --batch 1 < <(head -4 "$T/score_in.jsonl") > "$T/scores1.txt" 2>&1
check "score: batch size does not change the scores" \
  "paste -d' ' $T/scores1.txt <(head -4 $T/scores.txt) | awk '{d = \$1 - \$2; if (d < 0) d = -d; if (d > 1e-4) bad = 1} END {exit bad}'"
err "score: malformed line names it" "stdin:2:" "$BIN" score --model "$T/rm" < <(printf '%s\n%s\n' '{"prompt": "a", "response": "b"}' '{"prompt": "a"}')
err "score: not JSON" "stdin:1: not valid JSON" "$BIN" score --model "$T/rm" < <(echo 'hello')
err "score: an LM model" "not a reward model" "$BIN" score --model "$T/base" < /dev/null

# ---- LoRA: the base frozen, adapters + the scalar head (modules_to_save) train; OUT is the adapter
# st_shape FILE TENSOR: a safetensors tensor's shape, as "a b"
st_shape() { python3 -c 'import json,struct,sys; raw=open(sys.argv[1],"rb").read(); h=json.loads(raw[8:8+struct.unpack("<Q",raw[:8])[0]]); print(*h[sys.argv[2]]["shape"])' "$1" "$2"; }
LRUN=(--model "$T/base" --data "$T/prefs.jsonl" --eval "$T/dev.jsonl" --max-length 48 --batch 8 --lr 3e-3 --steps 30
      --save-every 15 --eval-every 15 --seed 3 --quiet --lora-rank 8 --lora-targets all-linear)
"$BIN" reward "${LRUN[@]}" --out "$T/rml" > /dev/null 2> "$T/rml.err"; rc=$?
check "reward LoRA: runs (rc $rc)" "[ $rc = 0 ] && grep -q 'saved the LoRA adapter and scalar head' $T/rml.err"
lacc=$(grep -o 'held-out pair accuracy [0-9.]*' "$T/rml.err" | awk '{print $4}')
check "reward LoRA: held-out pair accuracy ${lacc:-?} >= 0.9" "python3 -c 'import sys; sys.exit(not float(\"${lacc:-0}\") >= 0.9)'"
ntr=$(grep -o '[0-9]* trainable values' "$T/rml.err" | awk '{print $1}'); nall=$(grep -o 'the [0-9]* of the base frozen' "$T/rml.err" | awk '{print $2}')
check "reward LoRA: OUT is a PEFT adapter (SEQ_CLS) with score.weight, no full model" "python3 - $T/rml <<'PY'
import json, os, struct, sys
d = sys.argv[1]
c = json.load(open(d + '/adapter_config.json'))
raw = open(d + '/adapter_model.safetensors', 'rb').read()
h = json.loads(raw[8:8 + struct.unpack('<Q', raw[:8])[0]])
sys.exit(not (c['peft_type'] == 'LORA' and c['r'] == 8 and c['task_type'] == 'SEQ_CLS' and c['modules_to_save']
              and h['base_model.model.score.weight']['shape'][0] == 1 and not os.path.exists(d + '/model.safetensors')))
PY"
check "reward LoRA: optimizer state adapter-sized ($ntr of ${nall:-?} values)" \
  "[ \"\$(st_shape $T/rml/checkpoint-15/optimizer.safetensors exp_avg)\" = '${ntr:-x}' ] && [ \$((${ntr:-1} * 5)) -lt ${nall:-0} ]"
curve "$T/rml/metrics.jsonl" | tail -15 > "$T/rml.tail"
"$BIN" reward --resume "$T/rml/checkpoint-15" --out "$T/rml2" --quiet > /dev/null 2> "$T/rml2.err"; rc=$?
curve "$T/rml2/metrics.jsonl" > "$T/rml2.all" 2> /dev/null
check "reward LoRA: resume continues the loss curve bit-exactly (rc $rc)" "[ -s $T/rml2.all ] && diff -q $T/rml.tail $T/rml2.all > /dev/null"
check "reward LoRA: resumed adapter equals the uninterrupted one" "cmp -s $T/rml/adapter_model.safetensors $T/rml2/adapter_model.safetensors"
"$BIN" score --adapter "$T/rml" < "$T/score_in.jsonl" > "$T/lscores.txt" 2> "$T/lscore.err"; rc=$?
lsacc=$(paste - - < "$T/lscores.txt" | awk '{n++; if ($1 > $2) k++} END {printf "%.4f", k / n}')
check "score --adapter: one reward per record, ranks held-out pairs (${lsacc}) (rc $rc)" \
  "[ $rc = 0 ] && [ \$(wc -l < $T/lscores.txt) = \$(wc -l < $T/score_in.jsonl) ] && python3 -c 'import sys; sys.exit(not $lsacc >= 0.9)'"
"$BIN" lora merge --adapter "$T/rml" --out "$T/rml_merged" > /dev/null 2> "$T/merge.err"; rc=$?
check "lora merge of a reward adapter: a GPT2ForSequenceClassification (rc $rc)" \
  "[ $rc = 0 ] && grep -q GPT2ForSequenceClassification $T/rml_merged/config.json"
"$BIN" score --model "$T/rml_merged" < "$T/score_in.jsonl" > "$T/mscores.txt" 2> /dev/null
check "score --adapter equals score of the merged model" "[ -s $T/mscores.txt ] && cmp -s $T/lscores.txt $T/mscores.txt"
"$BIN" reward --model "$T/base" --data "$T/prefs.jsonl" --max-length 48 --steps 2 --lr 1e-3 --quiet --adapter "$T/rml" \
  --out "$T/rml3" > /dev/null 2> "$T/rml3.err"; rc=$?
check "reward --adapter: goes on training the adapter and its head (rc $rc)" \
  "[ $rc = 0 ] && [ -f $T/rml3/adapter_model.safetensors ] && grep -q '\"adapter\"' $T/rml3/posttrain.json && ! cmp -s $T/rml/adapter_model.safetensors $T/rml3/adapter_model.safetensors"
err "reward: --adapter with --lora-rank" "cannot be given with it" "$BIN" reward --model "$T/base" --data "$T/prefs.jsonl" --adapter "$T/rml" --lora-rank 4 --out "$T/x8"
err "reward: --lora-alpha without a rank" "need --lora-rank" "$BIN" reward --model "$T/base" --data "$T/prefs.jsonl" --lora-alpha 4 --out "$T/x9"
err "reward: resume with a LoRA setting" "--lora-rank cannot be given with --resume" "$BIN" reward --resume "$T/rml" --lora-rank 4

# ---- held-out share, bad records, formats
"$BIN" reward --model "$T/base" --data "$T/prefs.jsonl" --val-fraction 0.25 --max-length 48 --steps 2 --quiet --out "$T/vf" > /dev/null 2> "$T/vf.err"; rc=$?
check "reward --val-fraction: 80 of 320 pairs held out (rc $rc)" "grep -q '240 pairs (ChatML (default)), 80 held out' $T/vf.err"
"$BIN" reward --model "$T/base" --data "$T/bad.jsonl" --max-length 48 --steps 2 --quiet --out "$T/bad" > /dev/null 2> "$T/bad.err"; rc=$?
check "bad records: counted and skipped, the rest (incl. hh-rlhf, implicit prompt) used (rc $rc)" \
  "[ $rc = 0 ] && grep -q 'skipped 2 pairs with an empty response, 1 identical, 1 longer than 48 tokens, 0 without a shared prompt' $T/bad.err && grep -q ' 3 pairs (' $T/bad.err"
err "no usable pair" "no usable preference pair (2 with an empty response, 1 identical, 1 longer than 48 tokens" \
  "$BIN" reward --model "$T/base" --data "$T/allbad.jsonl" --max-length 48 --steps 2 --quiet --out "$T/x1"
err "malformed record: file:line and field" "malformed.jsonl:3: chosen[0] is not a message" \
  "$BIN" reward --model "$T/base" --data "$T/malformed.jsonl" --steps 2 --quiet --out "$T/x2"
err "invalid JSON: file:line" "notjson.jsonl:2: not valid JSON" \
  "$BIN" reward --model "$T/base" --data "$T/notjson.jsonl" --steps 2 --quiet --out "$T/x3"
err "missing data file" "nope.jsonl" "$BIN" reward --model "$T/base" --data "$T/nope.jsonl" --out "$T/x4"
err "--max-length past the model's positions" "longer than the model's 64 positions" \
  "$BIN" reward --model "$T/base" --data "$T/prefs.jsonl" --max-length 100 --out "$T/x5"
err "--eval with --val-fraction" "not both" "$BIN" reward --model "$T/base" --data "$T/prefs.jsonl" --eval "$T/dev.jsonl" --val-fraction 0.1 --out "$T/x6"
err "missing --model" "--model DIR is required" "$BIN" reward --data "$T/prefs.jsonl" --out "$T/x7"
err "unknown option" "unknown option '--frobnicate'" "$BIN" reward --frobnicate
check "reward --help documents the formats" "$BIN reward --help | grep -q 'hh-rlhf'"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
