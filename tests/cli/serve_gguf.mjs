// serve_gguf.mjs — the client side of test_gguf_serve.sh: one greedy chat request and the same
// request streamed, through the official `openai` npm SDK, against `lmkit serve --model FILE.gguf`.
//
//   node serve_gguf.mjs BASE_URL USER_MESSAGE MAX_TOKENS
// Prints the answer, then the streamed answer, each as one JSON string line; exits 1 on an error.
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = process.env.LMKIT_SRC || path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const sdk = path.join(root, "third_party/npm/node_modules/openai/index.mjs");
const { default: OpenAI } = await import(pathToFileURL(sdk).href);

const [base, user, maxTokens] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base + "/v1", apiKey: "none", maxRetries: 0, timeout: 60000 });
const req = { model: "m", messages: [{ role: "user", content: user }], max_tokens: Number(maxTokens), temperature: 0 };
const chat = await client.chat.completions.create(req);
console.log(JSON.stringify(chat.choices[0].message.content));
let streamed = "";
for await (const chunk of await client.chat.completions.create({ ...req, stream: true }))
  streamed += chunk.choices[0]?.delta?.content ?? "";
console.log(JSON.stringify(streamed));
