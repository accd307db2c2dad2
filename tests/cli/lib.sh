# lib.sh — what every CLI test starts with (source it right after the test's comment):
#   BIN    the lmkit binary of the build under test ($LMKIT_BIN, else build/)
#   T      a fresh folder for the test's files, removed at exit; KEEP_T=DIR keeps them in DIR
#   ok / bad / check NAME 'CONDITION'   count a result and print "ok   NAME" or "FAIL NAME"
# and a test ends with
#   echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]
set -u
BIN="${LMKIT_BIN:-build}/lmkit"
T=${KEEP_T:-$(mktemp -d)}; mkdir -p "$T"; [ -n "${KEEP_T:-}" ] || trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
