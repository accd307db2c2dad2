// serve_load.mjs — one round of test_serve_load.sh's load and faults against a running `lmkit serve`:
// N concurrent streaming chat clients (well-formed: each must get every chunk, a finish_reason
// and data: [DONE]), and at the same time clients that send malformed JSON (must get 400), bodies
// over the limit (must get 413, or the connection closed on them), and streams abandoned after
// their first chunks (the server must free their slots).
//
//   node serve_load.mjs BASE_URL N_STREAMS MAX_TOKENS
// Prints a JSON summary; exits 1 when a well-formed request was not answered completely.
const [base, nStr, maxTok] = process.argv.slice(2);
const N = Number(nStr), MAX = Number(maxTok);
const post = (path, body, signal) => fetch(base + path, { method: "POST", headers: { "Content-Type": "application/json" },
  body, signal });

async function stream(k) {
  const r = await post("/v1/chat/completions", JSON.stringify({ messages: [{ role: "user", content: "client " + k }],
    max_tokens: MAX, temperature: 0.8, seed: k, stream: true, stream_options: { include_usage: true } }));
  if (r.status !== 200) return { ok: false, why: "status " + r.status };
  const raw = await r.text();
  const events = raw.split("\n\n").filter(e => e.length);
  if (events[events.length - 1] !== "data: [DONE]") return { ok: false, why: "no [DONE]" };
  let text = "", finish = null, usage = null;
  for (const e of events.slice(0, -1)) {
    const c = JSON.parse(e.slice(6));
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) { text += ch.delta.content ?? ""; finish = ch.finish_reason ?? finish; }
  }
  const ok = !!finish && !!usage && usage.completion_tokens >= 1 && usage.completion_tokens <= MAX;
  return { ok, why: ok ? "" : `finish ${finish} usage ${JSON.stringify(usage)}` };
}

async function malformed(k) {
  const bodies = ['{"messages": [', '{"messages": "hi"}', '[1,2]', '{"messages":[{"role":"user","content":"x"}],"max_tokens":-1}'];
  const r = await post("/v1/chat/completions", bodies[k % bodies.length]);
  const j = await r.json();
  return { ok: r.status === 400 && !!j.error?.message, why: "status " + r.status };
}

async function oversized() {
  try {
    const r = await post("/v1/chat/completions", '{"messages": "' + "x".repeat(3 << 20) + '"}');
    return { ok: r.status === 413, why: "status " + r.status };
  } catch (e) {
    return { ok: true, why: "closed" };   // the server may close before the upload ends
  }
}

async function abandon(k) {
  const ac = new AbortController();
  try {
    const r = await post("/v1/chat/completions", JSON.stringify({ messages: [{ role: "user", content: "bye " + k }],
      max_tokens: Math.min(4 * MAX, 96), stream: true }), ac.signal);
    const rd = r.body.getReader();
    await rd.read(); await rd.read();
    ac.abort();
  } catch (e) { /* the abort itself */ }
  return { ok: true };
}

const tasks = [];
for (let k = 0; k < N; k++) tasks.push(stream(k).then(r => ({ kind: "stream", ...r })));
for (let k = 0; k < 8; k++) tasks.push(malformed(k).then(r => ({ kind: "malformed", ...r })));
for (let k = 0; k < 3; k++) tasks.push(oversized().then(r => ({ kind: "oversized", ...r })));
for (let k = 0; k < 8; k++) tasks.push(abandon(k).then(r => ({ kind: "abandoned", ...r })));
const t0 = Date.now();
const res = await Promise.all(tasks.map(p => p.catch(e => ({ kind: "?", ok: false, why: String(e) }))));
const sum = {};
for (const r of res) {
  sum[r.kind] ??= { ok: 0, bad: 0, why: [] };
  if (r.ok) sum[r.kind].ok++; else { sum[r.kind].bad++; sum[r.kind].why.push(r.why); }
}
console.log(JSON.stringify({ seconds: (Date.now() - t0) / 1000, ...sum }));
process.exit(res.every(r => r.ok) ? 0 : 1);
