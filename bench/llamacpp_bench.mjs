// llamacpp_bench.mjs — llama.cpp's side of bench/generate_gguf.sh: node-llama-cpp's prebuilt llama.cpp
// (pinned 3.21.1, installed by scripts/install-deps.sh into third_party/npm) on the same GGUF file
// as lmkit, measured the way bench/generate.c measures lmkit: prefill of PROMPT tokens into a fresh
// sequence, and DECODE greedy tokens after DECODE_PREFILL prompt tokens (only the decode timed);
// medians of RUNS runs after a warm-up. Prints one JSON line.
//
//   node bench/llamacpp_bench.mjs FILE.gguf [THREADS=2] [PROMPT=512] [DECODE=128] [RUNS=3] [DECODE_PREFILL=16]
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = process.env.LMKIT_SRC || path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const { getLlama } = await import(pathToFileURL(path.join(root, "third_party/npm/node_modules/node-llama-cpp/dist/index.js")).href);

const [file, T = "2", P = "512", D = "128", R = "3", DP = "16"] = process.argv.slice(2);
const threads = Number(T), prompt = Number(P), decode = Number(D), runs = Number(R), dprefill = Number(DP);
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath: file });
const ctx = await model.createContext({ contextSize: Math.max(prompt, dprefill + decode) + 8, threads, batchSize: prompt,
                                        sequences: 1 });
const seq = ctx.getSequence();
// a prompt of real tokens (the same text always): the vocabulary's ids in a fixed scramble
let text = "";
for (let i = 0; text.length < prompt * 8; i++) text += `word${(i * 7919) % 1000} and ${(i * 104729) % 977}, `;
const tokens = model.tokenize(text, false).slice(0, prompt);
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };

const pre = [], dec = [];
for (let k = 0; k <= runs; k++) {
  await seq.clearHistory();
  const t = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(tokens);
  if (k > 0) pre.push(prompt / ((performance.now() - t) / 1000));
}
for (let k = 0; k <= runs; k++) {
  await seq.clearHistory();
  let n = 0, t = 0;
  for await (const tok of seq.evaluate(tokens.slice(0, dprefill), { temperature: 0 })) {
    if (n === 0) t = performance.now();   // the first token ends the prompt's prefill
    if (++n > decode) break;
  }
  if (k > 0) dec.push(decode / ((performance.now() - t) / 1000));
}
console.log(JSON.stringify({ impl: "llama.cpp (node-llama-cpp 3.21.1)", model: file, threads, prefill_tokens: prompt,
                             prefill_tok_s: +median(pre).toFixed(1), decode_tokens: decode, decode_tok_s: +median(dec).toFixed(2) }));
process.exit(0);
