// gguf_llamacpp.mjs — llama.cpp's side of test_gguf.sh: node-llama-cpp's prebuilt llama.cpp (installed
// by scripts/install-deps.sh into third_party/npm) loads a GGUF file lmkit wrote and continues a prompt
// greedily on the CPU.
//
//   node gguf_llamacpp.mjs FILE.gguf PROMPT N
// Prints the prompt and its N-token greedy continuation (the text, as `lmkit generate` prints it).
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = process.env.LMKIT_SRC || path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const pkg = path.join(root, "third_party/npm/node_modules/node-llama-cpp/dist/index.js");
const { getLlama } = await import(pathToFileURL(pkg).href);

const [file, prompt, n] = process.argv.slice(2);
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath: file });
const ctx = await model.createContext({ contextSize: 64, threads: 1 });
const seq = ctx.getSequence();
const out = [];
for await (const t of seq.evaluate(model.tokenize(prompt, false), { temperature: 0 })) {
  out.push(t);
  if (out.length >= Number(n)) break;
}
console.log(prompt + model.detokenize(out));
process.exit(0);
