#!/usr/bin/env bash
# Server benchmark (issue #16): lmkit serve on a GPT-2 124M-shaped model (random weights, GPT-2's
# tokenizer; made once by a 1-step `lmkit train` into $OUT/gpt2-124m):
#   - single-stream decode through the server (streamed completions, greedy, no stop) vs
#     `lmkit generate --stats` on the same model, prompt, length, sampling and threads, the two run
#     alternately (generate, serve, generate, serve, ...) so that a change in the machine's load
#     hits both; both rates are the tokens after the first per second from the first token to the
#     last (generate: its decode time, which starts at the first sample; serve: the client's clock
#     from the first streamed token to the end of the stream), and the server's own decode steps
#     alone (lmkit_decode_seconds_total in /metrics), which splits a gap into the forward's cost and
#     the serving around it (sampling, streaming, thread hand-offs);
#   - aggregate generated tokens/s with 1, 4, 8 and 16 concurrent clients (--parallel 16), the
#     speed-up over one client (target: >= 4x at 8), and the median time to first token;
#   - medians of RUNS repetitions, the machine's load before and after, and decode as a share of
#     the DRAM bandwidth limit for one stream (bench_generate measures the bandwidth).
#   bash bench/serve.sh            (RUNS=3 TOKENS=64 THREADS=1 BUILD=build OUT=/tmp/lmkit-bench-serve
#                                   LEVELS="1 4 8 16"; OMP_WAIT_POLICY is passed through and printed)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
TOKENS=${TOKENS:-64}
THREADS=${THREADS:-1}
OUT=${OUT:-/tmp/lmkit-bench-serve}
LEVELS=${LEVELS:-"1 4 8 16"}
BIN="$BUILD/lmkit"
[ -x "$BIN" ] && [ -x "$BUILD/bench_generate" ] || { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
  cmake --build "$BUILD" -j "$(nproc)" --target lmkit_cli bench_generate; }
mkdir -p "$OUT"
M="$OUT/gpt2-124m"
if [ ! -f "$M/model.safetensors" ]; then
  python3 -c "print('\n'.join('the model is random and the words are many %d' % i for i in range(4000)))" > "$OUT/text.txt"
  "$BIN" train --data "$OUT/text.txt" --tokenizer gpt2 --out "$M" --layers 12 --heads 12 --dim 768 --context 1024 \
    --steps 1 --batch 1 --lr 1e-9 --threads "$THREADS" --quiet > "$OUT/train.log" 2>&1
fi
PROMPT="The history of the city begins in the early years of the century, when the first settlers arrived from the coast and"
export OMP_NUM_THREADS="$THREADS"
echo "load before: $(uptime)"
echo "threads $THREADS, OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-(unset)}"

"$BIN" serve --model "$M" --port 0 --parallel 16 --threads "$THREADS" > "$OUT/serve.log" 2>&1 &
SPID=$!
trap 'kill $SPID 2>/dev/null' EXIT
PORT=""
for _ in $(seq 600); do
  PORT=$(grep -o 'listening on http://[0-9.]*:[0-9]*' "$OUT/serve.log" | sed 's/.*://') && [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { cat "$OUT/serve.log"; exit 1; }
bw=$("$BUILD/bench_generate" gpt2 "$THREADS" 16 8 1 16 2>/dev/null | grep '^{' |
  python3 -c "import json,sys; j = json.load(sys.stdin); print(j['bandwidth_gbs'], j['weight_mb_per_token'])")

python3 - "$PORT" "$RUNS" "$TOKENS" "$PROMPT" "$bw" "$BIN" "$LEVELS" "$M" "$THREADS" <<'PY'
import json, re, statistics, subprocess, sys, threading, time, http.client
port, runs, tokens, prompt, binary, levels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], \
    sys.argv[6], [int(x) for x in sys.argv[7].split()]
model, threads = sys.argv[8], sys.argv[9]
bw, weight_mb = (float(x) for x in sys.argv[5].split())

def generate():
    """the peer: lmkit generate on the same prompt, length, sampling and threads; tokens after the
    first per second of its decode time (which starts at the first sample)"""
    r = subprocess.run([binary, "generate", "--model", model, "--prompt", prompt, "--max-tokens", str(tokens),
                        "--temperature", "0", "--no-stop", "--stats", "--threads", threads],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    n, sec = re.search(r"generated (\d+) tokens in ([0-9.]+) s", r.stderr).groups()
    return (int(n) - 1) / float(sec)

def metrics():
    """the server's counters: generated tokens, seconds inside decode steps"""
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
    c.request("GET", "/metrics")
    m = dict(l.split() for l in c.getresponse().read().decode().splitlines() if l and not l.startswith("#"))
    return float(m["lmkit_generated_tokens_total"]), float(m["lmkit_decode_seconds_total"])

def one(k, out):
    """one streamed completion: (time to first token, decode tok/s after it, tokens, start, end)"""
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=600)
    body = json.dumps({"prompt": prompt + " " * (k % 3), "max_tokens": tokens, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}})
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    first, n, buf = None, 0, b""
    while True:
        line = r.readline()
        if not line:
            break
        if line.startswith(b"data: {"):
            j = json.loads(line[6:])
            if j["choices"] and j["choices"][0]["text"] and first is None:
                first = time.perf_counter()
            if j.get("usage"):
                n = j["usage"]["completion_tokens"]
    t1 = time.perf_counter()
    out.append((first - t0, (n - 1) / (t1 - first) if n > 1 else 0, n, t0, t1))

def level(n):
    out = []
    th = [threading.Thread(target=one, args=(k, out)) for k in range(n)]
    for t in th: t.start()
    for t in th: t.join()
    total = sum(o[2] for o in out)
    wall = max(o[4] for o in out) - min(o[3] for o in out)
    return total / wall, statistics.median(o[0] for o in out), statistics.median(o[1] for o in out)

one(0, [])   # warm-up
single, gen, steps = [], [], []
for _ in range(runs):   # alternately, so that the machine's load moves both alike
    gen.append(generate())
    m0 = metrics()
    o = []; one(0, o); single.append(o[0])
    m1 = metrics()
    steps.append((m1[0] - m0[0] - 1) / (m1[1] - m0[1]))   # n tokens: n - 1 decode steps of one row (the last is not fed)
srv = statistics.median(s[1] for s in single)
g = statistics.median(gen)
ratios = [s[1] / x for s, x in zip(single, gen)]
limit = bw * 1e9 / (weight_mb * 1e6)   # one stream reads every weight once per token
print(f"GPT-2 124M shape (random weights), {tokens} tokens greedy, {threads} thread(s), median of {runs}")
print(f"single stream: lmkit serve {srv:.2f} tok/s vs lmkit generate {g:.2f} tok/s ({srv / g:.2f}x; target >= 0.90; "
      f"run by run {' '.join(f'{r:.2f}' for r in ratios)}), TTFT {statistics.median(s[0] for s in single) * 1000:.0f} ms")
print(f"  the server's decode steps alone: {statistics.median(steps):.2f} tok/s ({statistics.median(steps) / g:.2f}x generate); "
      f"DRAM {bw:.1f} GB/s -> bandwidth limit {limit:.1f} tok/s, serve at {srv / limit:.2f} of it")
base = None
rows = []
for n in levels:
    agg, ttft, per = (statistics.median(x) for x in zip(*[level(n) for _ in range(runs)]))
    base = base or agg
    rows.append({"clients": n, "aggregate_tok_s": round(agg, 2), "speedup": round(agg / base, 2), "ttft_ms": round(ttft * 1000),
                 "per_client_tok_s": round(per, 2)})
    print(f"  {n:2d} clients: aggregate {agg:7.2f} tok/s ({agg / base:4.2f}x one client), per client {per:6.2f} tok/s, "
          f"median TTFT {ttft * 1000:6.0f} ms")
print(json.dumps({"impl": "lmkit serve", "single_serve_tok_s": round(srv, 2), "single_generate_tok_s": round(g, 2),
                  "single_serve_steps_tok_s": round(statistics.median(steps), 2), "threads": int(threads),
                  "bandwidth_gbs": bw, "bw_limit_tok_s": round(limit, 2), "levels": rows}))
PY
echo "load after:  $(uptime)"
