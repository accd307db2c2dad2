#!/usr/bin/env bash
# End-to-end: train a tiny GPT with the CLI on data this test generates, see
# the loss fall, resume bit-exactly, evaluate, generate, inspect, and get one
# clear error line for each kind of bad input.
source "$(dirname "$0")/lib.sh"

# a small, learnable corpus: repeated sentences with some variation
python3 - "$T/corpus.txt" <<'PY'
import random, sys
random.seed(1)
names = ["alice", "bob", "carol", "dave", "erin"]
verbs = ["likes", "sees", "helps", "calls", "finds"]
with open(sys.argv[1], "w") as f:
    for i in range(3000):
        f.write(f"{random.choice(names)} {random.choice(verbs)} {random.choice(names)}.\n")
PY

COMMON="--data $T/corpus.txt --layers 2 --heads 2 --dim 32 --context 32 --positions 64 --batch 8 --lr 3e-3 --warmup 5 --eval-every 10 --eval-batches 4 --seed 7 --threads 2 --quiet"
"$BIN" train $COMMON --steps 60 --save-every 30 --out "$T/a" > "$T/a.out" 2> "$T/a.err"
check "train runs" "[ -f $T/a/model.safetensors ] && [ -f $T/a/config.json ] && [ -f $T/a/tokenizer.json ] && [ -f $T/a/metrics.jsonl ]"
first=$(grep '"loss"' "$T/a/metrics.jsonl" | head -1 | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')
last=$(grep '"loss"' "$T/a/metrics.jsonl" | tail -1 | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')
# uniform prediction over 257 byte ids is ln 257 = 5.55 nats
check "loss falls well below uniform ($first -> $last)" "python3 -c 'import sys; sys.exit(not ($last < 0.5 * 5.549 and $last < $first))'"
check "train prints train and val loss" "grep -q 'val loss' $T/a.out"

# resume from the step-30 checkpoint: steps 31..60 must repeat exactly
"$BIN" train --resume "$T/a/checkpoint-30" --out "$T/b" --threads 2 --quiet > /dev/null 2> "$T/b.err"
grep '"loss"' "$T/a/metrics.jsonl" | sed -n '31,60p' | sed 's/, "tokens_per_sec.*//' > "$T/a.tail"
grep '"loss"' "$T/b/metrics.jsonl" | sed 's/, "tokens_per_sec.*//' > "$T/b.all"
check "resume continues the loss curve bit-exactly" "[ -s $T/b.all ] && diff -q $T/a.tail $T/b.all >/dev/null"
check "resumed model equals uninterrupted model" "cmp -s $T/a/model.safetensors $T/b/model.safetensors"

# re-running the command that started a run, with --resume added: equal flags are accepted,
# --out defaults to the run, training continues in place. Simulate a crash after checkpoint-30:
# the run directory without its final state, and metrics.jsonl with lines past step 30.
cp -r "$T/a" "$T/g"; rm "$T/g/trainer_state.json"
"$BIN" train $COMMON --steps 60 --save-every 30 --resume "$T/g" > "$T/g.out" 2> "$T/g.err"; rc=$?
check "re-run with --resume: accepted, resumes the newest checkpoint in place" "[ $rc = 0 ] && grep -q 'resuming at step 30 from $T/g/checkpoint-30 into $T/g' $T/g.err"
check "in place: metrics.jsonl continues the curve, without the interrupted run's extra lines" "diff <(sed 's/, \"tokens_per_sec.*//' $T/a/metrics.jsonl) <(sed 's/, \"tokens_per_sec.*//' $T/g/metrics.jsonl) >/dev/null"
check "in place: the final model equals the uninterrupted one" "cmp -s $T/a/model.safetensors $T/g/model.safetensors"
"$BIN" train $COMMON --steps 60 --resume "$T/g" > /dev/null 2> "$T/g2.err"; rc=$?
check "re-run of a finished run: nothing to do, exit 0" "[ $rc = 0 ] && grep -q 'complete (step 60 of 60)' $T/g2.err"
"$BIN" train $COMMON --steps 70 --resume "$T/g" > /dev/null 2> "$T/g3.err"; rc=$?
check "--steps extends a finished run in place" "[ $rc = 0 ] && [ \$(grep -c '\"loss\"' $T/g/metrics.jsonl) = 70 ] && grep -Eq '\"step\":[[:space:]]*70,' $T/g/trainer_state.json"
check "extending in place keeps the finished state as checkpoint-60 first (the final save overwrites OUT)" "[ -f $T/g/checkpoint-60/trainer_state.json ]"
"$BIN" train --resume "$T/a/checkpoint-30" --steps 40 --out "$T/h" --threads 2 --quiet > /dev/null 2>&1
check "--resume CHECKPOINT_DIR --out DIR still works" "[ \$(grep -c '\"loss\"' $T/h/metrics.jsonl) = 10 ]"
# --time-limit: the first step past the limit is the last; it evaluates and saves, and --resume finishes the run
"$BIN" train $COMMON --steps 60 --time-limit 0.00001 --out "$T/tl" > /dev/null 2> "$T/tl.err"; rc=$?
check "--time-limit stops early, says so, evaluates and saves its state" "[ $rc = 0 ] && grep -q 'time limit' $T/tl.err && [ \$(grep -c '\"loss\"' $T/tl/metrics.jsonl) -lt 60 ] && tail -1 $T/tl/metrics.jsonl | grep -q val_loss && [ -f $T/tl/model.safetensors ]"
"$BIN" train $COMMON --steps 60 --resume "$T/tl" > /dev/null 2>&1
check "--time-limit: --resume finishes the run as if uninterrupted" "cmp -s $T/a/model.safetensors $T/tl/model.safetensors && diff <(grep '\"loss\"' $T/a/metrics.jsonl | sed 's/, \"tokens_per_sec.*//') <(grep '\"loss\"' $T/tl/metrics.jsonl | sed 's/, \"tokens_per_sec.*//') > /dev/null"
"$BIN" train $COMMON --steps 40 --save-every 5 --keep-checkpoints 2 --out "$T/k" > /dev/null 2>&1
check "--keep-checkpoints 2 keeps the newest two" "[ \"\$(cd $T/k && ls -d checkpoint-* | sort -t- -k2 -n | tr '\n' ' ')\" = 'checkpoint-30 checkpoint-35 ' ]"
"$BIN" train $COMMON --steps 20 --save-every 5 --keep-checkpoints 0 --out "$T/k0" > /dev/null 2>&1
check "--keep-checkpoints 0 keeps all" "[ \$(ls -d $T/k0/checkpoint-* | wc -l) = 3 ]"

# same seed, same data, same threads: same curve
"$BIN" train $COMMON --steps 20 --out "$T/c" > /dev/null 2>&1
"$BIN" train $COMMON --steps 20 --out "$T/d" > /dev/null 2>&1
check "training is deterministic" "diff <(sed 's/, \"tokens_per_sec.*//' $T/c/metrics.jsonl) <(sed 's/, \"tokens_per_sec.*//' $T/d/metrics.jsonl) >/dev/null"

# prepared shards train like text, with a BPE tokenizer trained on the corpus
"$BIN" tokenizer train --data "$T/corpus.txt" --vocab-size 300 --out "$T/tok" > /dev/null 2>&1
"$BIN" data prepare --tokenizer "$T/tok" --data "$T/corpus.txt" --out "$T/shards" > /dev/null 2>&1
"$BIN" train --data "$T/shards" --tokenizer "$T/tok" --layers 1 --heads 2 --dim 32 --context 32 --batch 4 --steps 30 --lr 3e-3 --warmup 3 --threads 2 --quiet --out "$T/s" > "$T/s.out" 2>&1
check "train on prepared shards with a BPE tokenizer" "grep -q 'val loss' $T/s.out && grep -q '\"model\"' $T/s/tokenizer.json"

out=$("$BIN" eval --model "$T/a" --data "$T/corpus.txt" --threads 2)
check "eval prints loss and perplexity ($out)" "echo '$out' | grep -q 'perplexity'"

gen=$("$BIN" generate --model "$T/a" --prompt "alice " --max-tokens 40 --temperature 0 --threads 2)
check "generate continues the prompt" "[ \${#gen} -gt 20 ] && echo \"$gen\" | head -c 6 | grep -q 'alice '"
g1=$("$BIN" generate --model "$T/a" --prompt "bob" --max-tokens 30 --seed 3 --threads 2)
g2=$("$BIN" generate --model "$T/a" --prompt "bob" --max-tokens 30 --seed 3 --threads 2)
check "sampling with a seed is reproducible" "[ \"$g1\" = \"$g2\" ]"

# past the context (64 positions): a sliding window, said once on stderr; the text up to the
# context is what generation gave before (a run that fits); a longer prompt keeps its end
short=$("$BIN" generate --model "$T/a" --prompt "alice " --max-tokens 58 --temperature 0 --no-stop --threads 2 2> "$T/short.err")
long=$("$BIN" generate --model "$T/a" --prompt "alice " --max-tokens 300 --temperature 0 --no-stop --threads 2 2> "$T/long.err"); rc=$?
check "generation past the context works (rc $rc, ${#long} bytes)" "[ $rc = 0 ] && [ \${#long} -ge 300 ]"
check "the sliding window is said once on stderr" "[ \$(grep -c 'sliding window' $T/long.err) = 1 ] && ! grep -q 'sliding window' $T/short.err"
check "the text up to the context is unchanged" "[ \"\${long:0:\${#short}}\" = \"\$short\" ]"
prompt=$(head -c 200 "$T/corpus.txt" | tr '\n' ' ')
out=$("$BIN" generate --model "$T/a" --prompt "$prompt" --max-tokens 20 --temperature 0 --threads 2 2> "$T/lp.err"); rc=$?
check "a prompt longer than the context keeps its end" "[ $rc = 0 ] && grep -q 'prompt is longer' $T/lp.err"

check "info shows the config" "$BIN info $T/a | grep -q 'parameters:'"
check "info --system shows the BLAS" "$BIN info --system | grep -q 'blas core type'"
check "--help documents train" "$BIN train --help | grep -q -- '--grad-accum'"

# bad input: one 'lmkit: error:' line and a non-zero exit
err() { # name, expected substring, command...
  local name="$1" want="$2"; shift 2
  local out; out=$("$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -ne 0 ] && [ "$(echo "$out" | grep -c '^lmkit: error: ')" = 1 ] && echo "$out" | grep -q -- "$want"; then ok "error: $name"; else bad "error: $name (rc=$rc: $out)"; fi
}
err "unknown flag" "--bogus" "$BIN" train --bogus
err "bad number" "--steps" "$BIN" train --data "$T/corpus.txt" --out "$T/x" --steps ten
err "missing data file" "nope.txt" "$BIN" train --data "$T/nope.txt" --out "$T/x" --steps 1
err "missing model dir" "no such model" "$BIN" generate --model "$T/none" --prompt hi
mkdir -p "$T/broken"; cp "$T/a/config.json" "$T/a/tokenizer.json" "$T/broken/"; head -c 1000 "$T/a/model.safetensors" > "$T/broken/model.safetensors"
err "corrupt weights" "model.safetensors" "$BIN" generate --model "$T/broken" --prompt hi
echo '{"model_type": "gpt2", "n_embd": "big"}' > "$T/broken/config.json"
err "corrupt config" "n_embd" "$BIN" info "$T/broken"
err "eval context too long" "context" "$BIN" eval --model "$T/a" --data "$T/corpus.txt" --context 999
err "dim not divisible" "divisible" "$BIN" train --data "$T/corpus.txt" --out "$T/x" --dim 30 --heads 4 --steps 1
err "resume with changed lr" "--lr 1 differs from the checkpoint's 0.003" "$BIN" train --resume "$T/a" --out "$T/x" --lr 1
err "resume with changed layers" "--layers 3 differs from the checkpoint's 2" "$BIN" train $COMMON --layers 3 --steps 60 --resume "$T/a"
err "resume with another tokenizer" "--tokenizer $T/tok differs from the checkpoint's tokenizer" "$BIN" train $COMMON --tokenizer "$T/tok" --resume "$T/a"
err "resume with changed seed" "--seed 8 differs from the checkpoint's 7" "$BIN" train $COMMON --seed 8 --resume "$T/a"
err "resume with --steps below the checkpoint" "below" "$BIN" train --resume "$T/a" --steps 10
err "resume an older checkpoint in place" "newer state (step 60)" "$BIN" train --resume "$T/a/checkpoint-30"
err "resume an unfinished save" "interrupted save" "$BIN" train --resume "$T/a/checkpoint-30.tmp"
mkdir -p "$T/empty"
err "resume a directory without a checkpoint" "no complete checkpoint" "$BIN" train --resume "$T/empty"
err "a new run over a run with checkpoints" "already holds a run" "$BIN" train $COMMON --steps 60 --out "$T/a"
err "shard from another tokenizer" "vocab" "$BIN" train --data "$T/shards" --tokenizer byte --out "$T/x" --steps 1
err "unknown command" "frobnicate" "$BIN" frobnicate

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
