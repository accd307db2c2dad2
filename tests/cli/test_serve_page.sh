#!/usr/bin/env bash
# The chat page of lmkit serve (GET /, src/serve/page.html) in a real browser: headless Chromium
# (Debian's chromium, driven by npm playwright-core; both installed by scripts/install-deps.sh)
# opens the page, types a message, sees the streamed answer complete, types a second one, and the
# second request carries the whole conversation; opened with ?index=docs, the page answers from a
# retrieval index and lists the sources under the answer (tests/cli/serve_page.mjs).
set -u
source "$(dirname "$0")/serve_lib.sh"
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
check "chromium and playwright-core are installed (scripts/install-deps.sh)" \
  '[ -n "$CHROMIUM" ] && [ -f "$SRC/third_party/npm/node_modules/playwright-core/package.json" ]'
[ "$fail" -eq 0 ] || serve_done test_serve_page || exit 1
serve_model "$T"
serve_index "$T"
start_server "$BIN" "$T/serve.log" --model "$T/model" --parallel 2 --index "docs=$T/docs.idx"
check "server up (port $PORT)" '[ -n "$PORT" ]'
timeout 120 node "$SRC/tests/cli/serve_page.mjs" "http://127.0.0.1:$PORT" "$CHROMIUM" > "$T/page.log" 2>&1
rc=$?
sed 's/^/     page: /' "$T/page.log"
check "the chat page in headless Chromium: every check passes (rc $rc)" \
  '[ $rc -eq 0 ] && ! grep -q "^FAIL" "$T/page.log" && [ "$(grep -c "^ok" "$T/page.log")" -eq 7 ]'
serve_done test_serve_page
