#!/usr/bin/env bash
# `lmkit --help` lists every command that exists (one cli/cmd_NAME.c each), grouped
# by the life stages tokenize -> pre-train -> post-train -> use -> study, and every
# command it lists answers --help.
set -u
BIN="${LMKIT_BIN:-build}/lmkit"
SRC="${LMKIT_SRC:-.}"
pass=0; fail=0
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

help=$("$BIN" --help); rc=$?
check "--help exits 0" "[ $rc = 0 ]"
check "the life stages, in order" "[ \"\$(echo \"\$help\" | grep -E '^[a-z-]+:\$' | grep -v '^other:' | tr '\n' ' ')\" = 'tokenize: pre-train: post-train: use: study: ' ]"
check "the one-line summary names every stage" "echo \"\$help\" | grep -q 'tokenize -> pre-train -> post-train -> use -> study'"
# every command that exists is listed, under a stage
for f in "$SRC"/cli/cmd_*.c; do
  name=$(basename "$f" .c); name=${name#cmd_}
  check "lists '$name'" "echo \"\$help\" | grep -qE '^  $name +[a-z]'"
done
# every command listed exists and documents itself
for name in $(echo "$help" | sed -n 's/^  \([a-z][a-z0-9-]*\)  .*/\1/p'); do
  check "'lmkit $name --help' works" "\"$BIN\" $name --help > /dev/null 2>&1 && [ -f \"$SRC/cli/cmd_$name.c\" ]"
done
check "no command without a stage" "! echo \"\$help\" | grep -q '^other:'"
check "no arguments: usage on stderr, exit 2" "\"$BIN\" > /dev/null 2> /dev/null; [ \$? = 2 ]"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
