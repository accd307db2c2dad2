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
