#!/usr/bin/env bash
# lmkit serve under load and faults, bounded (tests/cli/serve_load.mjs does one round):
#   32 concurrent streaming chat clients on 8 slots, with 8 malformed-JSON clients, 3 oversized
#   bodies and 8 streams abandoned after two chunks at the same time. Required: no crash, every
#   well-formed request answered completely ([DONE], finish_reason, usage), malformed ones 400,
#   oversized 413; afterwards no busy slot and no queue (abandoned streams freed theirs), and the
#   resident memory after rounds 2 and 3 back near the one after round 1 (no growth per round).
#   When an ASan+UBSan build of lmkit is there (LMKIT_ASAN_BIN, default the build-asan next to
#   the release build), one round runs against it too and its log must be free of reports.
set -u
source "$(dirname "$0")/serve_lib.sh"
ASAN_BIN="${LMKIT_ASAN_BIN:-$(dirname "$(cd "${LMKIT_BIN:-build}" && pwd)")/build-asan}/lmkit"
serve_model "$T"

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
settled() {   # no busy slot and no queue (abandoned streams freed theirs), within 2 s
  for _ in $(seq 20); do
    curl -s "http://127.0.0.1:$PORT/metrics" > "$T/metrics.txt"
    grep -q "^lmkit_slots_busy 0" "$T/metrics.txt" && grep -q "^lmkit_queue_length 0" "$T/metrics.txt" && return 0
    sleep 0.1
  done
  return 1
}

# glibc gives threads malloc arenas of their own; two keep the resident size a measure of what is in use
MALLOC_ARENA_MAX=2 start_server "$BIN" "$T/serve.log" --model "$T/model" --parallel 8 --max-body 1048576
check "server up (port $PORT)" '[ -n "$PORT" ]'
R=()
for round in 1 2 3; do
  node "$SRC/tests/cli/serve_load.mjs" "http://127.0.0.1:$PORT" 32 40 > "$T/round$round.json" 2>&1
  rc=$?
  check "round $round: 32 streams complete, malformed 400, oversized 413, abandoned streams ($(cat "$T/round$round.json"))" '[ $rc -eq 0 ]'
  check "round $round: the server is alive, no slot busy, no queue afterwards" 'kill -0 $SPID && settled'
  sleep 1   # connection threads end after their clients close
  R+=("$(rss "$SPID")")
done
# (a leak per request is LeakSanitizer's to find, below; this catches memory that grows with the load)
check "resident memory after rounds 2 and 3 (${R[1]}, ${R[2]} kB) within 10% + 16 MB of round 1's (${R[0]} kB)" \
  '[ "${R[2]}" -le $(( R[0] * 11 / 10 + 16384 )) ] && [ "${R[1]}" -le $(( R[0] * 11 / 10 + 16384 )) ]'
gen=$(awk '/^lmkit_generated_tokens_total/ {print $2}' "$T/metrics.txt")
check "metrics count the generated tokens ($gen)" '[ "${gen:-0}" -ge $((3 * 32)) ]'
kill -TERM "$SPID"; wait "$SPID"; src=$?
check "SIGTERM after the load: exit 0 (rc $src)" '[ $src -eq 0 ]'

if [ -x "$ASAN_BIN" ] && "$ASAN_BIN" serve --help > /dev/null 2>&1; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    start_server "$ASAN_BIN" "$T/asan.log" --model "$T/model" --parallel 8
  node "$SRC/tests/cli/serve_load.mjs" "http://127.0.0.1:$PORT" 32 24 > "$T/asan_round.json" 2>&1
  rc=$?
  check "ASan+UBSan build: a round of load and faults ($(cat "$T/asan_round.json"))" '[ $rc -eq 0 ] && settled'
  kill -TERM "$SPID"; wait "$SPID"; src=$?
  check "ASan+UBSan build: no sanitizer report, exit 0 after SIGTERM (rc $src)" \
    '[ $src -eq 0 ] && ! grep -q -E "ERROR: (Address|Leak)Sanitizer|runtime error" "$T/asan.log"'
  grep -E -A12 "ERROR: (Address|Leak)Sanitizer|runtime error" "$T/asan.log" | head -40
else
  echo "skip the ASan round: no $ASAN_BIN with 'serve' (make test builds it)"
fi

serve_done test_serve_load
