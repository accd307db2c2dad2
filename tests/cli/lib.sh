# lib.sh — what every CLI test starts with (source it right after the test's comment):
#   BIN    the lmkit binary of the build under test ($LMKIT_BIN, else build/)
#   T      a fresh folder for the test's files, removed at exit; KEEP_T=DIR keeps them in DIR
#   ok / bad / check NAME 'CONDITION'   count a result and print "ok   NAME" or "FAIL NAME"
#   err NAME TEXT CMD...   CMD fails with exactly one "lmkit: error: " line, and it holds TEXT
#   ge X Y                 X >= Y as numbers (X empty: 0)
#   words_corpus FILE      a small seeded corpus of sentences (encoder-decoder tests)
# and a test ends with
#   echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]
set -u
BIN="${LMKIT_BIN:-build}/lmkit"
T=${KEEP_T:-$(mktemp -d)}; mkdir -p "$T"; [ -n "${KEEP_T:-}" ] || trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
err() {
  local name=$1 text=$2; shift 2
  "$@" > "$T/err.out" 2> "$T/err.txt"; local rc=$?
  if [ $rc -ne 0 ] && [ "$(grep -c '^lmkit: error: ' "$T/err.txt")" -eq 1 ] && grep -qF -- "$text" "$T/err.txt"; then ok "$name"
  else bad "$name (rc $rc: $(head -c 300 "$T/err.txt"))"; fi
}
ge() { python3 -c 'import sys; sys.exit(not float(sys.argv[1]) >= float(sys.argv[2]))' "${1:-0}" "$2"; }
# words_corpus FILE: 3000 lines of 4-9 words of a 14-word vocabulary, each ending " ." (seeded: the same file always)
words_corpus() {
  python3 - "$1" <<'PY'
import random, sys
r = random.Random(3)
W = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "red", "blue", "tree", "and", "sun"]
with open(sys.argv[1], "w") as f:
    for _ in range(3000):
        f.write(" ".join(r.choice(W) for _ in range(r.randint(4, 9))) + " .\n")
PY
}
# The kill tests (test_train_kill.sh, test_ppo_kill.sh):
#   last_step METRICS      the step of a metrics.jsonl's last row (empty when none)
#   kill_at METRICS TARGET MS ERRFILE CMD...   runs CMD in the background (stderr to ERRFILE) and
#                          SIGKILLs it MS milliseconds after METRICS logs step TARGET (0: after the
#                          start); rc = its exit status (137: killed, 0: it finished first)
#   incomplete_checkpoints DIR FILE...   prints each DIR/checkpoint-N (not .tmp) lacking a FILE
last_step() { grep -o '"step": [0-9]*' "$1" 2> /dev/null | tail -1 | grep -o '[0-9]*$'; }
kill_at() {
  local metrics=$1 target=$2 ms=$3 errf=$4 pid last; shift 4
  "$@" > /dev/null 2> "$errf" &
  pid=$!
  while [ "$target" -gt 0 ] && kill -0 $pid 2> /dev/null; do
    last=$(last_step "$metrics")
    [ "${last:-0}" -ge "$target" ] && break
    sleep 0.01
  done
  sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
  kill -KILL $pid 2> /dev/null
  wait $pid 2> /dev/null; rc=$?
}
incomplete_checkpoints() {
  local dir=$1 d f; shift
  for d in "$dir"/checkpoint-[0-9]*; do
    case "$d" in *.tmp) continue;; esac
    [ -d "$d" ] || continue
    for f in "$@"; do [ -f "$d/$f" ] || echo "$d lacks $f"; done
  done
}
